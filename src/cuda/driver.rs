//! Small RAII layer over the CUDA driver API (`cudarc::driver::sys`, loaded at run time).
//!
//! Everything here works in an explicit [`DeviceContext`]: a CUcontext that is either the
//! device's primary context (retained here) or the one inside a GStreamer
//! [`CudaContext`](super::CudaContext). Every object keeps its context alive and makes it
//! current (push/pop) around each driver call, so they can be used and dropped from any
//! thread.
//!
//! Call [`super::probe`] (or [`super::cuda_available`]) before anything else here: cudarc's
//! dynamic loader panics when libcuda is absent, and the probe is the one place that checks.
//!
//! Why not cudarc's safe types (`CudaContext`, `CudaStream`, `CudaEvent`, `CudaModule`,
//! `CudaSlice`): they all hang off an `Arc<cudarc::driver::CudaContext>`, which can only
//! retain a device's primary context, while the elements must work in the CUcontext of the
//! pipeline's `GstCudaContext` (possibly not a primary one). Each type below says what else
//! it needs.

use std::ffi::{c_void, CStr};
use std::marker::PhantomData;
use std::sync::Arc;

use cudarc::driver::sys::{self, CUresult};

use super::{CudaContext, CudaError};

/// Turns a driver result into `Err(CudaError::Driver)` naming the call.
pub(crate) fn check(result: CUresult, call: &'static str) -> Result<(), CudaError> {
    if result == CUresult::CUDA_SUCCESS {
        Ok(())
    } else {
        Err(CudaError::Driver {
            call,
            code: result as i32,
            message: error_text(result),
        })
    }
}

/// `NAME: description` of a driver error code.
pub(crate) fn error_text(result: CUresult) -> String {
    let mut name: *const std::ffi::c_char = std::ptr::null();
    let mut text: *const std::ffi::c_char = std::ptr::null();
    // SAFETY: out-pointers to locals; the driver returns static strings.
    unsafe {
        sys::cuGetErrorName(result, &mut name);
        sys::cuGetErrorString(result, &mut text);
    }
    let s = |p: *const std::ffi::c_char| {
        if p.is_null() {
            String::new()
        } else {
            // SAFETY: non-null static NUL-terminated string from the driver.
            unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
        }
    };
    match (s(name), s(text)) {
        (n, t) if n.is_empty() && t.is_empty() => format!("CUDA error {}", result as i32),
        (n, t) if t.is_empty() => n,
        (n, t) => format!("{n}: {t}"),
    }
}

enum Owner {
    /// The device's primary context, retained by us and released on drop.
    Primary,
    /// The CUcontext inside a GstCudaContext (kept alive by this reference).
    Gst(#[allow(dead_code)] CudaContext),
}

struct CtxInner {
    raw: sys::CUcontext,
    device: sys::CUdevice,
    ordinal: i32,
    owner: Owner,
}

// SAFETY: CUDA contexts are usable from any thread (push/pop around each use); the
// GstCudaContext is a thread-safe GObject.
unsafe impl Send for CtxInner {}
// SAFETY: as above; the struct is immutable after construction.
unsafe impl Sync for CtxInner {}

impl Drop for CtxInner {
    fn drop(&mut self) {
        if let Owner::Primary = self.owner {
            // SAFETY: balanced with the cuDevicePrimaryCtxRetain in `DeviceContext::primary`.
            unsafe { sys::cuDevicePrimaryCtxRelease_v2(self.device) };
        }
    }
}

/// A CUDA context the CUDA path works in (cheap to clone, reference counted). Not
/// `cudarc::driver::CudaContext`: that one cannot wrap a GStreamer-owned CUcontext.
#[derive(Clone)]
pub struct DeviceContext {
    inner: Arc<CtxInner>,
}

impl std::fmt::Debug for DeviceContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceContext")
            .field("raw", &self.inner.raw)
            .field("device", &self.inner.ordinal)
            .field("primary", &matches!(self.inner.owner, Owner::Primary))
            .finish()
    }
}

/// Environment variable choosing how host threads wait for the GPU in the primary context
/// (the one ONNX Runtime and TensorRT use, and the pipeline's when a trtvision element
/// creates it): `spin`, `yield` or `blocking` (CUDA's scheduling flags: a waiting thread
/// spins, yields its core, or sleeps until the GPU signals), `auto`: CUDA's choice. Applied
/// when the plugin first takes the device's primary context. Unset: [`DEFAULT_SYNC`].
pub const SYNC_ENV: &str = "GST_TRTVISION_CUDA_SYNC";

/// The scheduling when [`SYNC_ENV`] is unset: `blocking`, set only while the primary context
/// is not active yet (an application that activated it first keeps its own choice). On the
/// H100, 8 cameras unpaced with CUDA graphs: 1.1-1.3 instead of 2.2-2.6 CPU cores and 3-7 %
/// fewer frames per second than CUDA's choice (spinning there); PCIe bytes per frame within
/// their run-to-run scatter.
pub const DEFAULT_SYNC: &str = "blocking";

/// CUDA's `CU_CTX_SCHED_*` flag for a [`SYNC_ENV`] value.
pub fn sync_flags(value: &str) -> Result<u32, CudaError> {
    Ok(match value.trim().to_ascii_lowercase().as_str() {
        "" | "auto" => sys::CUctx_flags::CU_CTX_SCHED_AUTO as u32,
        "spin" => sys::CUctx_flags::CU_CTX_SCHED_SPIN as u32,
        "yield" => sys::CUctx_flags::CU_CTX_SCHED_YIELD as u32,
        "blocking" => sys::CUctx_flags::CU_CTX_SCHED_BLOCKING_SYNC as u32,
        other => {
            return Err(CudaError::InvalidInput(format!(
                "{SYNC_ENV}={other} is not one of auto, spin, yield, blocking"
            )))
        }
    })
}

impl DeviceContext {
    /// The primary context of device `ordinal` (the one the CUDA runtime, TensorRT and
    /// ONNX Runtime use), retained until the last clone is dropped. The first call for a
    /// device sets its scheduling flags from [`SYNC_ENV`] when that is set.
    pub fn primary(ordinal: i32) -> Result<Self, CudaError> {
        super::probe()?;
        let mut device: sys::CUdevice = 0;
        // SAFETY: out-pointer to a local; cuInit was done by the probe.
        check(unsafe { sys::cuDeviceGet(&mut device, ordinal) }, "cuDeviceGet")?;
        {
            static APPLIED: std::sync::Mutex<Vec<sys::CUdevice>> = std::sync::Mutex::new(Vec::new());
            let mut applied = APPLIED.lock().unwrap_or_else(|p| p.into_inner());
            if !applied.contains(&device) {
                match std::env::var_os(SYNC_ENV) {
                    Some(value) => {
                        let flags = sync_flags(&value.to_string_lossy())?;
                        // SAFETY: valid device; only the scheduling flags are set.
                        check(
                            unsafe { sys::cuDevicePrimaryCtxSetFlags_v2(device, flags) },
                            "cuDevicePrimaryCtxSetFlags",
                        )?;
                    }
                    None => {
                        let (mut flags, mut active) = (0u32, 0i32);
                        // SAFETY: out-pointers to locals, valid device.
                        let state =
                            unsafe { sys::cuDevicePrimaryCtxGetState(device, &mut flags, &mut active) };
                        if state == sys::CUresult::CUDA_SUCCESS && active == 0 {
                            // A preference, not a requirement: a refusal leaves CUDA's choice.
                            // SAFETY: as above.
                            let _ = unsafe {
                                sys::cuDevicePrimaryCtxSetFlags_v2(device, sync_flags(DEFAULT_SYNC)?)
                            };
                        }
                    }
                }
                applied.push(device);
            }
        }
        let mut raw: sys::CUcontext = std::ptr::null_mut();
        // SAFETY: out-pointer to a local; released in CtxInner::drop.
        check(
            unsafe { sys::cuDevicePrimaryCtxRetain(&mut raw, device) },
            "cuDevicePrimaryCtxRetain",
        )?;
        Ok(Self {
            inner: Arc::new(CtxInner {
                raw,
                device,
                ordinal,
                owner: Owner::Primary,
            }),
        })
    }

    /// The CUcontext of a GStreamer CUDA context (kept alive by the returned value).
    pub fn from_gst(ctx: &CudaContext) -> Result<Self, CudaError> {
        super::probe()?;
        let raw = ctx.handle();
        if raw.is_null() {
            return Err(CudaError::Unavailable(
                "the GStreamer CUDA context has no CUcontext handle".into(),
            ));
        }
        let ordinal = ctx.device_id() as i32;
        let mut device: sys::CUdevice = 0;
        // SAFETY: out-pointer to a local.
        check(unsafe { sys::cuDeviceGet(&mut device, ordinal) }, "cuDeviceGet")?;
        Ok(Self {
            inner: Arc::new(CtxInner {
                raw,
                device,
                ordinal,
                owner: Owner::Gst(ctx.clone()),
            }),
        })
    }

    /// The raw CUcontext.
    pub fn raw(&self) -> sys::CUcontext {
        self.inner.raw
    }

    /// Device ordinal.
    pub fn ordinal(&self) -> i32 {
        self.inner.ordinal
    }

    /// The CUdevice handle.
    pub fn device(&self) -> sys::CUdevice {
        self.inner.device
    }

    /// Whether this is the device's primary context (the one TensorRT and ONNX Runtime
    /// use: only then can they read device tensors made in it without a copy).
    pub fn is_primary(&self) -> bool {
        match self.inner.owner {
            Owner::Primary => true,
            Owner::Gst(_) => {
                let (mut flags, mut active) = (0u32, 0i32);
                // SAFETY: out-pointers to locals. An inactive primary context cannot be
                // ours (and retaining it would create it).
                let r =
                    unsafe { sys::cuDevicePrimaryCtxGetState(self.inner.device, &mut flags, &mut active) };
                if r != CUresult::CUDA_SUCCESS || active == 0 {
                    return false;
                }
                let mut prim: sys::CUcontext = std::ptr::null_mut();
                // SAFETY: out-pointer to a local; balanced release below.
                let ok = unsafe { sys::cuDevicePrimaryCtxRetain(&mut prim, self.inner.device) }
                    == CUresult::CUDA_SUCCESS;
                if ok {
                    // SAFETY: balances the retain above.
                    unsafe { sys::cuDevicePrimaryCtxRelease_v2(self.inner.device) };
                }
                ok && prim == self.inner.raw
            }
        }
    }

    /// Makes the context current on this thread until the guard is dropped.
    pub fn push(&self) -> Result<ContextGuard<'_>, CudaError> {
        // SAFETY: the context is alive as long as `self`.
        check(
            unsafe { sys::cuCtxPushCurrent_v2(self.inner.raw) },
            "cuCtxPushCurrent",
        )?;
        Ok(ContextGuard {
            _ctx: PhantomData,
            _not_send: PhantomData,
        })
    }

    /// A device attribute.
    pub fn attribute(&self, attr: sys::CUdevice_attribute) -> Result<i32, CudaError> {
        let mut v = 0;
        // SAFETY: out-pointer to a local; valid device handle.
        check(
            unsafe { sys::cuDeviceGetAttribute(&mut v, attr, self.inner.device) },
            "cuDeviceGetAttribute",
        )?;
        Ok(v)
    }

    /// Compute capability `(major, minor)`.
    pub fn compute_capability(&self) -> Result<(i32, i32), CudaError> {
        Ok((
            self.attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?,
            self.attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?,
        ))
    }

    /// Waits for all work of the context.
    pub fn synchronize(&self) -> Result<(), CudaError> {
        let _g = self.push()?;
        // SAFETY: context current.
        check(unsafe { sys::cuCtxSynchronize() }, "cuCtxSynchronize")
    }
}

/// Keeps a context current on this thread; pops it when dropped (not `Send`).
#[must_use = "the context is popped when the guard is dropped"]
pub struct ContextGuard<'a> {
    _ctx: PhantomData<&'a DeviceContext>,
    _not_send: PhantomData<*const ()>,
}

impl Drop for ContextGuard<'_> {
    fn drop(&mut self) {
        let mut popped: sys::CUcontext = std::ptr::null_mut();
        // SAFETY: balances the push that made this guard.
        unsafe { sys::cuCtxPopCurrent_v2(&mut popped) };
    }
}

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

/// A non-blocking CUDA stream, destroyed on drop. Not `CudaStream`: it needs a cudarc
/// context, and backends are handed the raw CUstream.
pub struct Stream {
    raw: sys::CUstream,
    ctx: DeviceContext,
}

// SAFETY: CUDA streams may be used from any thread.
unsafe impl Send for Stream {}
// SAFETY: as above.
unsafe impl Sync for Stream {}

impl Stream {
    /// A new stream that does not synchronise with the legacy default stream.
    pub fn new(ctx: &DeviceContext) -> Result<Self, CudaError> {
        let _g = ctx.push()?;
        let mut raw: sys::CUstream = std::ptr::null_mut();
        // SAFETY: out-pointer to a local; context current.
        check(
            unsafe { sys::cuStreamCreate(&mut raw, sys::CUstream_flags::CU_STREAM_NON_BLOCKING as u32) },
            "cuStreamCreate",
        )?;
        Ok(Self {
            raw,
            ctx: ctx.clone(),
        })
    }

    /// The raw CUstream.
    pub fn raw(&self) -> sys::CUstream {
        self.raw
    }

    /// Ends a graph capture left open on the stream and drops what it captured; returns
    /// whether one was open.
    pub fn end_capture(&self) -> bool {
        let Ok(_g) = self.ctx.push() else {
            return false;
        };
        let mut status = sys::CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_NONE;
        // SAFETY: valid stream, out-pointer to a local.
        if unsafe { sys::cuStreamIsCapturing(self.raw, &mut status) } != sys::CUresult::CUDA_SUCCESS
            || status == sys::CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_NONE
        {
            return false;
        }
        let mut graph: sys::CUgraph = std::ptr::null_mut();
        // SAFETY: ends the stream's capture (an invalidated one returns an error and no
        // graph); a graph returned is ours to destroy.
        unsafe {
            sys::cuStreamEndCapture(self.raw, &mut graph);
            if !graph.is_null() {
                sys::cuGraphDestroy(graph);
            }
        }
        true
    }

    /// Waits until all work queued on the stream is done.
    pub fn synchronize(&self) -> Result<(), CudaError> {
        let _g = self.ctx.push()?;
        // SAFETY: valid stream.
        check(
            unsafe { sys::cuStreamSynchronize(self.raw) },
            "cuStreamSynchronize",
        )
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if let Ok(_g) = self.ctx.push() {
            // SAFETY: created above, destroyed once (pending work still completes).
            unsafe { sys::cuStreamDestroy_v2(self.raw) };
        }
    }
}

/// A CUDA event, destroyed on drop. Not `CudaEvent`: it is recorded on and waited on by
/// streams of other libraries (raw CUstreams), which cudarc's event does not take.
pub struct Event {
    raw: sys::CUevent,
    ctx: DeviceContext,
}

// SAFETY: CUDA events may be used from any thread.
unsafe impl Send for Event {}
// SAFETY: as above.
unsafe impl Sync for Event {}

impl Event {
    /// A new event; `timing` enables [`Event::elapsed_ms`] (slightly costlier to record).
    pub fn new(ctx: &DeviceContext, timing: bool) -> Result<Self, CudaError> {
        let flags = if timing {
            sys::CUevent_flags::CU_EVENT_DEFAULT as u32
        } else {
            sys::CUevent_flags::CU_EVENT_DISABLE_TIMING as u32
        };
        let _g = ctx.push()?;
        let mut raw: sys::CUevent = std::ptr::null_mut();
        // SAFETY: out-pointer to a local; context current.
        check(unsafe { sys::cuEventCreate(&mut raw, flags) }, "cuEventCreate")?;
        Ok(Self {
            raw,
            ctx: ctx.clone(),
        })
    }

    /// The raw CUevent.
    pub fn raw(&self) -> sys::CUevent {
        self.raw
    }

    /// Records the event on `stream`.
    ///
    /// # Safety
    /// `stream` must be a live CUstream of this event's context (or null: the legacy
    /// default stream).
    pub unsafe fn record(&self, stream: sys::CUstream) -> Result<(), CudaError> {
        let _g = self.ctx.push()?;
        // SAFETY: valid event; the caller vouches for the stream.
        check(unsafe { sys::cuEventRecord(self.raw, stream) }, "cuEventRecord")
    }

    /// Blocks until the work captured by the last record is done.
    pub fn synchronize(&self) -> Result<(), CudaError> {
        let _g = self.ctx.push()?;
        // SAFETY: valid event.
        check(unsafe { sys::cuEventSynchronize(self.raw) }, "cuEventSynchronize")
    }

    /// Whether the work captured by the last record is done (never blocks).
    pub fn is_complete(&self) -> Result<bool, CudaError> {
        let _g = self.ctx.push()?;
        // SAFETY: valid event.
        match unsafe { sys::cuEventQuery(self.raw) } {
            CUresult::CUDA_SUCCESS => Ok(true),
            CUresult::CUDA_ERROR_NOT_READY => Ok(false),
            e => check(e, "cuEventQuery").map(|_| false),
        }
    }

    /// Milliseconds between `start` and `self` (both recorded and complete, timing on).
    pub fn elapsed_ms(&self, start: &Event) -> Result<f32, CudaError> {
        let _g = self.ctx.push()?;
        let mut ms = 0f32;
        // SAFETY: valid events; out-pointer to a local.
        check(
            unsafe { sys::cuEventElapsedTime_v2(&mut ms, start.raw, self.raw) },
            "cuEventElapsedTime",
        )?;
        Ok(ms)
    }

    /// Makes `stream` wait (on the GPU) for the work captured by the last record.
    ///
    /// # Safety
    /// `stream` must be a live CUstream (of any context of the process).
    pub unsafe fn wait_on(&self, stream: sys::CUstream) -> Result<(), CudaError> {
        let _g = self.ctx.push()?;
        // SAFETY: valid event; the caller vouches for the stream.
        check(
            unsafe { sys::cuStreamWaitEvent(stream, self.raw, 0) },
            "cuStreamWaitEvent",
        )
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        if let Ok(_g) = self.ctx.push() {
            // SAFETY: created above, destroyed once.
            unsafe { sys::cuEventDestroy_v2(self.raw) };
        }
    }
}

/// A loaded module with one kernel function. Not `CudaModule`/`CudaFunction`: they need a
/// cudarc context (see the module docs).
pub(crate) struct Kernel {
    module: sys::CUmodule,
    function: sys::CUfunction,
    ctx: DeviceContext,
}

// SAFETY: modules and functions may be used from any thread of the process.
unsafe impl Send for Kernel {}
// SAFETY: as above.
unsafe impl Sync for Kernel {}

impl Kernel {
    /// Loads a NUL-terminated PTX (or cubin) image and looks up `name`.
    pub(crate) fn load(ctx: &DeviceContext, image: &[u8], name: &CStr) -> Result<Self, CudaError> {
        if image.last() != Some(&0) {
            return Err(CudaError::InvalidInput(
                "module image is not NUL-terminated".into(),
            ));
        }
        let _g = ctx.push()?;
        let mut module: sys::CUmodule = std::ptr::null_mut();
        // SAFETY: NUL-terminated image; out-pointer to a local; context current.
        check(
            unsafe { sys::cuModuleLoadData(&mut module, image.as_ptr().cast()) },
            "cuModuleLoadData (JIT of the NVRTC PTX; CUDA_ERROR_UNSUPPORTED_PTX_VERSION means the \
             driver is older than NVRTC)",
        )?;
        let mut function: sys::CUfunction = std::ptr::null_mut();
        // SAFETY: valid module; NUL-terminated name.
        let r = unsafe { sys::cuModuleGetFunction(&mut function, module, name.as_ptr()) };
        if let Err(e) = check(r, "cuModuleGetFunction") {
            // SAFETY: loaded above, unloaded once.
            unsafe { sys::cuModuleUnload(module) };
            return Err(e);
        }
        Ok(Self {
            module,
            function,
            ctx: ctx.clone(),
        })
    }
}

impl Kernel {
    /// Queues the kernel on `stream` (the caller has made its context current).
    ///
    /// # Safety
    /// `args` must point to values matching the kernel's parameters in number, order and
    /// layout; every device address they hold must be valid for what the kernel does
    /// with it over `grid`; `stream` must be a live stream of this context.
    pub(crate) unsafe fn launch(
        &self,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        stream: sys::CUstream,
        args: &mut [*mut c_void],
    ) -> Result<(), CudaError> {
        // SAFETY: forwarded contract, no dynamic shared memory.
        unsafe { self.launch_shared(grid, block, 0, stream, args) }
    }

    /// [`Kernel::launch`] with `shared` bytes of dynamic shared memory per block (at most
    /// 48 KiB minus the kernel's static shared memory).
    ///
    /// # Safety
    /// As [`Kernel::launch`].
    pub(crate) unsafe fn launch_shared(
        &self,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        shared: u32,
        stream: sys::CUstream,
        args: &mut [*mut c_void],
    ) -> Result<(), CudaError> {
        // SAFETY: forwarded contract; no extra options.
        check(
            unsafe {
                sys::cuLaunchKernel(
                    self.function,
                    grid.0,
                    grid.1,
                    grid.2,
                    block.0,
                    block.1,
                    block.2,
                    shared,
                    stream,
                    args.as_mut_ptr(),
                    std::ptr::null_mut(),
                )
            },
            "cuLaunchKernel",
        )
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        if let Ok(_g) = self.ctx.push() {
            // SAFETY: loaded above, unloaded once.
            unsafe { sys::cuModuleUnload(self.module) };
        }
    }
}

/// Ordinal of the device that holds device address `ptr`.
pub fn device_of_pointer(ptr: u64) -> Result<i32, CudaError> {
    super::probe()?;
    let mut ordinal: i32 = -1;
    // SAFETY: out-pointer to a local i32, the attribute's documented type.
    check(
        unsafe {
            sys::cuPointerGetAttribute(
                (&mut ordinal as *mut i32).cast(),
                sys::CUpointer_attribute::CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL,
                ptr,
            )
        },
        "cuPointerGetAttribute",
    )?;
    Ok(ordinal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_flags_parse() {
        assert_eq!(sync_flags("auto").unwrap(), 0);
        assert_eq!(sync_flags("").unwrap(), 0);
        assert_eq!(sync_flags("spin").unwrap(), 1);
        assert_eq!(sync_flags(" Yield").unwrap(), 2);
        assert_eq!(sync_flags("blocking").unwrap(), 4);
        assert_eq!(sync_flags(DEFAULT_SYNC).unwrap(), 4, "the default is blocking");
        let e = sync_flags("sleepy").unwrap_err().to_string();
        assert!(e.contains("GST_TRTVISION_CUDA_SYNC=sleepy"), "{e}");
    }
}
