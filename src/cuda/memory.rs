//! Device memory ([`DeviceBuffer`]), page-locked host memory ([`PinnedBuffer`]) and
//! synchronous copies between them and the host, each in an explicit [`DeviceContext`]
//! (see [`super::driver`]).

use std::ffi::c_void;

use cudarc::driver::sys;

use super::driver::{check, DeviceContext};
use super::stream::Stream;
use super::CudaError;

/// Device memory (`cuMemAlloc`, 256-byte aligned), freed on drop. Not `CudaSlice`: its
/// per-access event tracking would add work to every launch, and its address is shared
/// with ONNX Runtime, TensorRT and GStreamer, which cudarc cannot track.
pub struct DeviceBuffer {
    ptr: sys::CUdeviceptr,
    len: usize,
    ctx: DeviceContext,
}

impl std::fmt::Debug for DeviceBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeviceBuffer({:#x}, {} bytes)", self.ptr, self.len)
    }
}

impl DeviceBuffer {
    /// `len` bytes of uninitialised device memory (at least 1 byte is allocated).
    pub fn new(ctx: &DeviceContext, len: usize) -> Result<Self, CudaError> {
        let _g = ctx.push()?;
        let mut ptr: sys::CUdeviceptr = 0;
        // SAFETY: out-pointer to a local; context current.
        check(unsafe { sys::cuMemAlloc_v2(&mut ptr, len.max(1)) }, "cuMemAlloc")?;
        Ok(Self {
            ptr,
            len,
            ctx: ctx.clone(),
        })
    }

    /// Device address.
    pub fn ptr(&self) -> u64 {
        self.ptr
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Synchronous copy of `src` to the start of the buffer.
    pub fn copy_from_host(&self, src: &[u8]) -> Result<(), CudaError> {
        if src.len() > self.len {
            return Err(CudaError::InvalidInput(format!(
                "copy of {} bytes into a device buffer of {}",
                src.len(),
                self.len
            )));
        }
        let _g = self.ctx.push()?;
        // SAFETY: destination range checked; source is a live slice.
        check(
            unsafe { sys::cuMemcpyHtoD_v2(self.ptr, src.as_ptr().cast(), src.len()) },
            "cuMemcpyHtoD",
        )
    }

    /// Synchronous copy of the start of the buffer into `dst`.
    pub fn copy_to_host(&self, dst: &mut [u8]) -> Result<(), CudaError> {
        copy_device_to_host(&self.ctx, self.ptr, self.len, dst)
    }

    /// Queues on `stream` the copy of `len` bytes at `src` (device memory when `device`,
    /// else host memory) to the start of the buffer; does not wait.
    ///
    /// # Safety
    /// `src` must be `len` readable bytes (of this buffer's context when `device`) that
    /// stay unchanged until `stream` has run the copy.
    pub unsafe fn copy_on(
        &self,
        src: u64,
        len: usize,
        device: bool,
        stream: &Stream,
    ) -> Result<(), CudaError> {
        if len > self.len {
            return Err(CudaError::InvalidInput(format!(
                "copy of {len} bytes into a device buffer of {}",
                self.len
            )));
        }
        if len == 0 {
            return Ok(());
        }
        let _g = self.ctx.push()?;
        // SAFETY: destination range checked, source by the caller; valid stream.
        unsafe {
            if device {
                check(
                    sys::cuMemcpyDtoDAsync_v2(self.ptr, src, len, stream.raw()),
                    "cuMemcpyDtoDAsync",
                )
            } else {
                check(
                    sys::cuMemcpyHtoDAsync_v2(
                        self.ptr,
                        src as usize as *const std::ffi::c_void,
                        len,
                        stream.raw(),
                    ),
                    "cuMemcpyHtoDAsync",
                )
            }
        }
    }

    /// Copies `len` bytes from device address `src` to the start of the buffer and sets
    /// the rest of it to zero, on `stream`; returns once done.
    ///
    /// # Safety
    /// `src` must be `len` readable bytes of device memory of this buffer's context, not
    /// written by pending work on other streams.
    pub unsafe fn fill_from_device(&self, src: u64, len: usize, stream: &Stream) -> Result<(), CudaError> {
        // SAFETY: forwarded contract; the length is checked by the callee.
        unsafe { self.copy_on(src, len, true, stream) }?;
        if len < self.len {
            let _g = self.ctx.push()?;
            // SAFETY: the range lies in the buffer (len <= self.len checked above); valid stream.
            check(
                unsafe { sys::cuMemsetD8Async(self.ptr + len as u64, 0, self.len - len, stream.raw()) },
                "cuMemsetD8Async",
            )?;
        }
        stream.synchronize()
    }
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        if let Ok(_g) = self.ctx.push() {
            // SAFETY: allocated by cuMemAlloc in this context, freed once.
            unsafe { sys::cuMemFree_v2(self.ptr) };
        }
    }
}

/// Synchronous copy of `dst.len()` bytes from device address `src` (of a region of
/// `src_len` bytes) to the host.
pub fn copy_device_to_host(
    ctx: &DeviceContext,
    src: u64,
    src_len: usize,
    dst: &mut [u8],
) -> Result<(), CudaError> {
    if dst.len() > src_len {
        return Err(CudaError::InvalidInput(format!(
            "copy of {} bytes out of a device region of {src_len}",
            dst.len()
        )));
    }
    let _g = ctx.push()?;
    // SAFETY: the caller vouches for the device region; dst is a live slice.
    check(
        unsafe { sys::cuMemcpyDtoH_v2(dst.as_mut_ptr().cast(), src, dst.len()) },
        "cuMemcpyDtoH",
    )
}

/// Synchronous copy of `src` to device address `dst` (of a region of `dst_len` bytes).
pub fn copy_host_to_device(
    ctx: &DeviceContext,
    src: &[u8],
    dst: u64,
    dst_len: usize,
) -> Result<(), CudaError> {
    if src.len() > dst_len {
        return Err(CudaError::InvalidInput(format!(
            "copy of {} bytes into a device region of {dst_len}",
            src.len()
        )));
    }
    let _g = ctx.push()?;
    // SAFETY: the caller vouches for the device region; src is a live slice.
    check(
        unsafe { sys::cuMemcpyHtoD_v2(dst, src.as_ptr().cast(), src.len()) },
        "cuMemcpyHtoD",
    )
}

/// Page-locked host memory (`cuMemHostAlloc`), freed on drop. cudarc's `PinnedHostSlice`
/// needs a cudarc context (see the module docs).
pub(crate) struct PinnedBuffer {
    ptr: *mut c_void,
    len: usize,
    ctx: DeviceContext,
}

// SAFETY: plain memory owned by this value.
unsafe impl Send for PinnedBuffer {}
// SAFETY: shared access is read-only through &self.
unsafe impl Sync for PinnedBuffer {}

impl PinnedBuffer {
    pub(crate) fn new(ctx: &DeviceContext, len: usize) -> Result<Self, CudaError> {
        let _g = ctx.push()?;
        let mut ptr: *mut c_void = std::ptr::null_mut();
        // SAFETY: out-pointer to a local; context current.
        check(
            unsafe { sys::cuMemHostAlloc(&mut ptr, len.max(1), sys::CU_MEMHOSTALLOC_PORTABLE) },
            "cuMemHostAlloc",
        )?;
        Ok(Self {
            ptr,
            len,
            ctx: ctx.clone(),
        })
    }

    pub(crate) fn as_ptr(&self) -> *const c_void {
        self.ptr
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: `len` bytes allocated above, exclusively borrowed.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.cast(), self.len) }
    }
}

impl Drop for PinnedBuffer {
    fn drop(&mut self) {
        if let Ok(_g) = self.ctx.push() {
            // SAFETY: allocated by cuMemHostAlloc, freed once.
            unsafe { sys::cuMemFreeHost(self.ptr) };
        }
    }
}
