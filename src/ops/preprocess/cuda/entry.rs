//! The kernel's entry points: their names by output pixels per thread, parameter passing
//! and colour order (`extern "C"` functions of preprocess.cu), and the loaded set of one
//! variant.

use std::ffi::CStr;

use crate::config::ColorOrder;
use crate::cuda::driver::Kernel;
use crate::cuda::module::KernelModule;
use crate::cuda::CudaError;

pub(super) const KERNEL_NAME: &CStr = c"trtv_preprocess_nchw";
/// Entry points by output pixels per thread (`PX` in preprocess.cu): parameters in device
/// memory, inside the launch (`_inline`, batches of up to [`INLINE_FRAMES`](super::INLINE_FRAMES)), and inside
/// the launch with 4:2:0 row staging (`_staged_inline`).
pub(super) type KernelNames = (&'static CStr, &'static CStr, &'static CStr);
pub(super) const KERNEL_NAMES: [(u32, KernelNames); 4] = [
    (
        1,
        (
            KERNEL_NAME,
            c"trtv_preprocess_nchw_inline",
            c"trtv_preprocess_nchw_staged_inline",
        ),
    ),
    (
        2,
        (
            c"trtv_preprocess_nchw_x2",
            c"trtv_preprocess_nchw_x2_inline",
            c"trtv_preprocess_nchw_x2_staged_inline",
        ),
    ),
    (
        4,
        (
            c"trtv_preprocess_nchw_x4",
            c"trtv_preprocess_nchw_x4_inline",
            c"trtv_preprocess_nchw_x4_staged_inline",
        ),
    ),
    (
        8,
        (
            c"trtv_preprocess_nchw_x8",
            c"trtv_preprocess_nchw_x8_inline",
            c"trtv_preprocess_nchw_x8_staged_inline",
        ),
    ),
];

/// The `_nv12` entry point of the `px` kernels for output order `color` (`small`: the one
/// taking [`INLINE_FRAMES_SMALL`](super::INLINE_FRAMES_SMALL) parameters).
pub(super) fn nv12_kernel_name(
    px: u32,
    color: ColorOrder,
    small: bool,
) -> Result<std::ffi::CString, CudaError> {
    let (base, _, _) = kernel_names(px)?;
    let order = match color {
        ColorOrder::Rgb => "rgb",
        ColorOrder::Bgr => "bgr",
    };
    let suffix = if small { "8" } else { "" };
    std::ffi::CString::new(format!("{}_nv12{order}_inline{suffix}", base.to_string_lossy()))
        .map_err(|_| CudaError::InvalidInput("kernel name".into()))
}

/// The kernel entry points of one pixels-per-thread variant (preprocess.cu).
pub(super) struct EntryPoints {
    /// Frame parameters in device memory (batches above [`INLINE_FRAMES`](super::INLINE_FRAMES)).
    pub(super) device: Kernel,
    /// Parameters inside the launch (`_inline`, or its `_occ6`/`_occ8` variant).
    pub(super) inline: Kernel,
    /// Inside the launch, 4:2:0 rows staged in shared memory.
    pub(super) staged: Kernel,
    /// Batches of NV12 frames only ([`nv12_fast`](super::nv12_fast)), the configured output order.
    pub(super) nv12: Kernel,
    /// The same for batches of up to [`INLINE_FRAMES_SMALL`](super::INLINE_FRAMES_SMALL) frames (fewer parameter bytes).
    pub(super) nv12_small: Kernel,
}

impl EntryPoints {
    pub(super) fn load(module: &KernelModule, px: u32, color: ColorOrder) -> Result<Self, CudaError> {
        let (name, name_inline, name_staged) = kernel_names(px)?;
        Ok(Self {
            device: module.kernel(name)?,
            inline: module.kernel(name_inline)?,
            staged: module.kernel(name_staged)?,
            nv12: module.kernel(&nv12_kernel_name(px, color, false)?)?,
            nv12_small: module.kernel(&nv12_kernel_name(px, color, true)?)?,
        })
    }
}

/// The kernel entry points writing `px` output pixels per thread (parameters in device
/// memory, parameters inline).
pub(super) fn kernel_names(px: u32) -> Result<KernelNames, CudaError> {
    KERNEL_NAMES
        .iter()
        .find(|(n, _)| *n == px)
        .map(|(_, names)| *names)
        .ok_or_else(|| CudaError::InvalidInput(format!("{px} pixels per thread (supported: 1, 2, 4, 8)")))
}
