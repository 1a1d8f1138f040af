//! CUDA itself (cargo feature `cuda`): driver, contexts, streams and events, GStreamer
//! CUDA memory interop, NVRTC and the kernel-module loader, device output pools.
//!
//! - [`probe`] / [`cuda_available`]: is there a usable NVIDIA driver and GPU? Never
//!   panics; call it before anything else here (cudarc loads libcuda lazily and panics
//!   when it is missing, so nothing touches the driver before the probe said yes).
//! - [`CudaContext`] and [`ensure_element_context`], [`handle_set_context`],
//!   [`handle_context_query`]: the pipeline-wide `GstCudaContext` (libgstcuda-1.0).
//! - [`map_cuda_frame`]: device address and stride of each plane of a GstCudaMemory
//!   frame, as a [`CudaFrame`].
//! - [`DeviceTensorLease`]: a device tensor of a bounded output pool with the event of
//!   the work that wrote it ([`device_lease`] finds it in a [`crate::tensor::Tensor`]).
//! - [`KernelSource`] and the kernel-module loader (probe, NVRTC compile for the device's
//!   architecture, load), and [`KernelRunner`] (loaded entry points, stream, completion
//!   event, queued copies and launches) that every kernel runner under [`crate::ops`] uses.
//!
//! The operations themselves (preprocessing, overlay, mosaic, YOLO decoding, mask
//! selection, dense summary) live in [`crate::ops`], each with its CUDA runner; nothing
//! here depends on them.
//!
//! Nothing here is linked against CUDA: libcuda and libnvrtc are loaded at run time by
//! cudarc; only libgstcuda-1.0 (part of gst-plugins-bad) is linked.

mod context;
pub(crate) mod driver;
pub mod ffi;
pub(crate) mod frame;
mod memory;
mod memsync;
pub(crate) mod module;
pub(crate) mod nvrtc;
pub mod placement;
pub(crate) mod pool;
pub(crate) mod runner;
mod stream;

use std::sync::OnceLock;

pub use context::{
    ensure_element_context, handle_context_query, handle_set_context, is_cuda_buffer, map_cuda_frame,
    map_cuda_frame_mut, CudaContext, CudaFrameMap, ElementCudaContext,
};
pub use driver::{
    copy_device_to_host, copy_host_to_device, device_of_pointer, sync_flags, ContextGuard, DeviceBuffer,
    DeviceContext, Event, Stream, DEFAULT_SYNC, SYNC_ENV,
};
pub use frame::{CudaFrame, CUDA_FORMATS};
pub use module::KernelSource;
pub use pool::{device_lease, DeviceTensorLease};
pub use runner::KernelRunner;

/// Errors of the CUDA path; every message is a sentence.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CudaError {
    /// No usable driver, GPU or library.
    #[error("CUDA is not available: {0}")]
    Unavailable(String),
    /// A driver call failed.
    #[error("{call} failed: {message} (CUresult {code})")]
    Driver {
        /// The driver function.
        call: &'static str,
        /// The CUresult value.
        code: i32,
        /// Error name and description from the driver.
        message: String,
    },
    /// NVRTC could not compile the kernel (with its log).
    #[error("{0}")]
    Nvrtc(String),
    /// The kernel cannot read this format.
    #[error(
        "the CUDA path does not read {0:?} frames (supported: NV12, I420, RGB, BGR, RGBA, BGRA, RGBx, BGRx)"
    )]
    UnsupportedFormat(gst_video::VideoFormat),
    /// The buffer is not (entirely) GstCudaMemory: use the CPU path.
    #[error("the frame is not in CUDA memory (GstCudaMemory)")]
    NotCudaMemory,
    /// A frame in the memory of another GPU than the element's.
    #[error("{}", placement::foreign_device(*frame, *element, *peer))]
    ForeignDevice {
        /// The device of the frame's memory.
        frame: u32,
        /// The element's device.
        element: u32,
        /// Whether `allow-peer-copy` was set (then peer access is what is missing).
        peer: bool,
    },
    /// Mapping a CUDA frame failed.
    #[error("{0}")]
    Map(String),
    /// Arguments that cannot work (sizes, counts).
    #[error("invalid input to the CUDA preprocessor: {0}")]
    InvalidInput(String),
    /// Every output buffer stayed held downstream for the pool's timeout, or the pool is
    /// flushing.
    #[error("{0}")]
    PoolWait(crate::tensor::pool::PoolWaitError),
}

/// What [`probe`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// `cuDriverGetVersion`, e.g. 13000 for CUDA 13.0.
    pub driver_version: i32,
    /// Number of CUDA devices.
    pub device_count: i32,
    /// Name of device 0.
    pub name: String,
    /// Compute capability of device 0.
    pub compute_capability: (i32, i32),
    /// Whether NVRTC (needed by every kernel runner) can be loaded.
    pub nvrtc: bool,
}

/// Runs `f`, turning a panic inside cudarc (a missing library or symbol) into an error.
pub(crate) fn guard<T>(what: &str, f: impl FnOnce() -> Result<T, CudaError>) -> Result<T, CudaError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| p.downcast_ref::<&str>().copied())
            .unwrap_or("unknown panic");
        Err(CudaError::Unavailable(format!(
            "{what} panicked in the CUDA loader: {msg}"
        )))
    })
}

fn probe_uncached() -> Result<DeviceInfo, CudaError> {
    use cudarc::driver::sys;
    // SAFETY: only tries to open the library file.
    if !unsafe { sys::is_culib_present() } {
        return Err(CudaError::Unavailable(
            "the NVIDIA driver's libcuda.so was not found (no NVIDIA driver on this machine)".into(),
        ));
    }
    // SAFETY: plain driver calls with out-pointers to locals.
    unsafe {
        driver::check(sys::cuInit(0), "cuInit")?;
        let mut driver_version = 0;
        driver::check(sys::cuDriverGetVersion(&mut driver_version), "cuDriverGetVersion")?;
        let mut device_count = 0;
        driver::check(sys::cuDeviceGetCount(&mut device_count), "cuDeviceGetCount")?;
        if device_count < 1 {
            return Err(CudaError::Unavailable("the driver reports no CUDA device".into()));
        }
        let mut dev = 0;
        driver::check(sys::cuDeviceGet(&mut dev, 0), "cuDeviceGet")?;
        let mut name = [0 as std::ffi::c_char; 256];
        driver::check(
            sys::cuDeviceGetName(name.as_mut_ptr(), name.len() as i32, dev),
            "cuDeviceGetName",
        )?;
        let name = std::ffi::CStr::from_ptr(name.as_ptr())
            .to_string_lossy()
            .into_owned();
        let (mut major, mut minor) = (0, 0);
        driver::check(
            sys::cuDeviceGetAttribute(
                &mut major,
                sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
                dev,
            ),
            "cuDeviceGetAttribute",
        )?;
        driver::check(
            sys::cuDeviceGetAttribute(
                &mut minor,
                sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
                dev,
            ),
            "cuDeviceGetAttribute",
        )?;
        Ok(DeviceInfo {
            driver_version,
            device_count,
            name,
            compute_capability: (major, minor),
            nvrtc: cudarc::nvrtc::sys::is_culib_present(),
        })
    }
}

/// Checks once per process for a usable NVIDIA driver and GPU (and NVRTC). Never
/// panics: a missing library, driver or device is an `Err` with a sentence.
pub fn probe() -> Result<DeviceInfo, CudaError> {
    static PROBE: OnceLock<Result<DeviceInfo, CudaError>> = OnceLock::new();
    PROBE
        .get_or_init(|| guard("probing CUDA", probe_uncached))
        .clone()
}

/// Whether the CUDA path can run here ([`probe`] succeeded).
pub fn cuda_available() -> bool {
    probe().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On machines without a GPU (CI, developers) the probe answers with a sentence.
    #[test]
    fn probe_never_panics() {
        match probe() {
            Ok(info) => assert!(info.device_count > 0),
            Err(e) => assert!(
                e.to_string().starts_with("CUDA is not available") || e.to_string().contains("failed")
            ),
        }
        assert_eq!(cuda_available(), probe().is_ok());
    }

    #[test]
    fn map_flag_value() {
        // GST_MAP_FLAG_LAST is 1 << 16.
        assert_eq!(ffi::GST_MAP_CUDA, 1 << 17);
    }
}
