//! TensorRT's handles as Rust values: the libraries and their logger (messages name the
//! element of the call on the thread), the runtime with its CUDA context, the engine with
//! its execution context, and device buffers that may outlive the backend.

use super::*;

thread_local! {
    /// The element whose backend call runs on this thread: TensorRT's logger is global,
    /// its messages during a call name the element of that call.
    static LOG_FOR: std::cell::RefCell<crate::backend::LogTarget> = Default::default();
}

/// While alive, TensorRT's messages on this thread name `target`'s element.
pub(super) struct LogScope(crate::backend::LogTarget);

impl LogScope {
    pub(super) fn enter(target: &crate::backend::LogTarget) -> Self {
        let previous = LOG_FOR.with(|t| t.replace(target.clone()));
        LogScope(previous)
    }
}

impl Drop for LogScope {
    fn drop(&mut self) {
        let previous = std::mem::take(&mut self.0);
        LOG_FOR.with(|t| t.replace(previous));
    }
}

/// Receives TensorRT's log messages (called from TensorRT threads too).
pub(super) extern "C" fn log_from_tensorrt(severity: i32, msg: *const c_char) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        if msg.is_null() {
            return;
        }
        // SAFETY: TensorRT passes a NUL-terminated message valid for this call.
        let text = unsafe { CStr::from_ptr(msg) }.to_string_lossy();
        let target = LOG_FOR.with(|t| t.borrow().clone());
        match severity {
            0 | 1 => crate::backend_log!(error, CAT, target, "TensorRT: {}", text),
            2 => crate::backend_log!(warning, CAT, target, "TensorRT: {}", text),
            3 => crate::backend_log!(debug, CAT, target, "TensorRT: {}", text),
            _ => crate::backend_log!(trace, CAT, target, "TensorRT: {}", text),
        }
    }));
}

/// Loads libnvinfer and libcuda; returns the TensorRT library version integer.
pub(super) fn load_libraries() -> Result<i32, BackendError> {
    let mut version = 0;
    // SAFETY: out-pointer to a local; the callback is a plain extern "C" fn.
    check(unsafe { ffi::trts_load(Some(log_from_tensorrt), &mut version) })
        .map_err(|e| unavailable(e.message))?;
    Ok(version)
}

/// GPU identity for the engine cache key.
pub(super) struct GpuInfo {
    pub(super) name: String,
    pub(super) cc: (i32, i32),
}

pub(super) fn device_info(device: i32) -> Result<GpuInfo, ShimError> {
    let mut name = [0 as c_char; 256];
    let (mut major, mut minor) = (0, 0);
    // SAFETY: buffer and out-pointers are locals of the given sizes.
    check(unsafe { ffi::trts_device_info(device, name.as_mut_ptr(), name.len(), &mut major, &mut minor) })?;
    // SAFETY: the shim NUL-terminates the name within the buffer.
    let name = unsafe { CStr::from_ptr(name.as_ptr()) }
        .to_string_lossy()
        .trim()
        .to_string();
    Ok(GpuInfo {
        name,
        cc: (major, minor),
    })
}

/// `trts_runtime`: IRuntime plus the retained primary CUDA context.
pub(super) struct Runtime(pub(super) *mut ffi::RawRuntime);

impl Runtime {
    pub(super) fn create(device: i32) -> Result<Runtime, ShimError> {
        let mut raw = std::ptr::null_mut();
        // SAFETY: out-pointer to a local.
        check(unsafe { ffi::trts_runtime_create(device, &mut raw) })?;
        Ok(Runtime(raw))
    }
    pub(super) fn make_current(&self) -> Result<(), ShimError> {
        // SAFETY: valid runtime.
        check(unsafe { ffi::trts_runtime_make_current(self.0) })
    }
    pub(super) fn deserialize(&self, plan: &[u8]) -> Result<Engine, ShimError> {
        let mut raw = std::ptr::null_mut();
        // SAFETY: plan is a live slice; out-pointer to a local.
        check(unsafe { ffi::trts_engine_load(self.0, plan.as_ptr().cast(), plan.len(), &mut raw) })?;
        Ok(Engine(raw))
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // SAFETY: created by trts_runtime_create; every engine is dropped before (the
        // backend drops its engine first; device buffers handed out hold only the runtime).
        unsafe { ffi::trts_runtime_destroy(self.0) }
    }
}

// SAFETY: the runtime is shared (Arc) between the backend and the device buffers it hands
// out, which only call `make_current` (cuCtxSetCurrent of the retained primary context on
// the calling thread: thread-safe) and, with the last reference, destroy it. Deserializing
// happens only while the backend opens, before anything is shared.
unsafe impl Send for Runtime {}
// SAFETY: as above.
unsafe impl Sync for Runtime {}

/// Device buffers that may outlive the backend (device output tensors, uploaded constant
/// inputs): freed with the backend's CUDA context current.
pub(super) struct DeviceHold {
    pub(super) buffers: Vec<DeviceBuffer>,
    runtime: Arc<Runtime>,
}

impl DeviceHold {
    pub(super) fn new(bytes: &[usize], runtime: &Arc<Runtime>) -> Result<Self, ShimError> {
        Ok(DeviceHold {
            buffers: bytes
                .iter()
                .map(|&n| DeviceBuffer::new(n))
                .collect::<Result<_, _>>()?,
            runtime: runtime.clone(),
        })
    }
}

impl Drop for DeviceHold {
    fn drop(&mut self) {
        // cuMemFree needs a current context; the last holder may be any thread.
        let _ = self.runtime.make_current();
        self.buffers.clear();
    }
}

/// `trts_engine`: ICudaEngine plus its execution context.
pub(super) struct Engine(pub(super) *mut ffi::RawEngine);

impl Engine {
    pub(super) fn set_input_shape(&mut self, t: &IoTensor, shape: &[i64]) -> Result<(), BackendError> {
        // SAFETY: valid engine, NUL-terminated name, dims slice of the given length.
        check(unsafe {
            ffi::trts_context_set_input_shape(self.0, t.cname.as_ptr(), shape.as_ptr(), shape.len() as i32)
        })
        .map_err(|e| BackendError::ShapeMismatch(e.message))
    }
    pub(super) fn shape(&self, t: &IoTensor) -> Result<Vec<i64>, ShimError> {
        let mut dims = [0i64; ffi::MAX_DIMS];
        let mut nb = 0;
        // SAFETY: valid engine and name; out buffers have MAX_DIMS entries.
        check(unsafe { ffi::trts_context_shape(self.0, t.cname.as_ptr(), dims.as_mut_ptr(), &mut nb) })?;
        Ok(dims[..nb.clamp(0, ffi::MAX_DIMS as i32) as usize].to_vec())
    }
    pub(super) fn set_address(&mut self, t: &IoTensor, ptr: u64) -> Result<(), BackendError> {
        // SAFETY: valid engine and name; TensorRT only stores the address.
        check(unsafe { ffi::trts_context_set_address(self.0, t.cname.as_ptr(), ptr) }).map_err(runtime_error)
    }
    pub(super) fn enqueue(&mut self, stream: &Stream) -> Result<(), ShimError> {
        // SAFETY: valid engine and stream; every I/O address was bound before.
        check(unsafe { ffi::trts_context_enqueue(self.0, stream.raw()) })
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // SAFETY: created by trts_engine_load, destroyed once.
        unsafe { ffi::trts_engine_destroy(self.0) }
    }
}
