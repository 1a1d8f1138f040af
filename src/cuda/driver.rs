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

use std::ffi::CStr;
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
// Memory, streams, events and loaded modules live in their own files; the names stay
// reachable here, where the runners import them from.
pub(crate) use super::memory::PinnedBuffer;
pub use super::memory::{copy_device_to_host, copy_host_to_device, DeviceBuffer};
pub(crate) use super::module::Kernel;
pub use super::stream::{Event, Stream};

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
