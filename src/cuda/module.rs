//! The one way a kernel runner gets its kernels: probe the driver, check NVRTC, compile the
//! kernel file for the device's architecture (cached per process, [`super::nvrtc`]) and
//! load entry points from the PTX in the runner's context.

use std::ffi::CStr;
use std::sync::Arc;

use super::driver::{DeviceContext, Kernel};
use super::nvrtc::{compile, nvrtc_arch, require_nvrtc};
use super::CudaError;

/// A kernel file of the crate: its name under `kernels/` and its text (`include_str!`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelSource {
    /// File name under `kernels/` (also NVRTC's name for it in error logs).
    pub file: &'static str,
    /// The CUDA C++ source.
    pub source: &'static str,
}

/// A kernel file compiled for one context's device; loads its entry points.
#[derive(Clone)]
pub(crate) struct KernelModule {
    ctx: DeviceContext,
    ptx: Arc<Vec<u8>>,
    arch: String,
}

impl std::fmt::Debug for KernelModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelModule")
            .field("arch", &self.arch)
            .field("ptx_bytes", &self.ptx.len())
            .finish()
    }
}

impl KernelModule {
    /// Compiles `kernel` for the architecture of `ctx`'s device (a usable driver and
    /// NVRTC are checked first, each failure a sentence).
    pub(crate) fn compile(ctx: &DeviceContext, kernel: &KernelSource) -> Result<Self, CudaError> {
        super::probe()?;
        require_nvrtc()?;
        let arch = nvrtc_arch(ctx.compute_capability()?)?;
        let ptx = compile(kernel.source, kernel.file, &arch)?;
        Ok(Self {
            ctx: ctx.clone(),
            ptx,
            arch,
        })
    }

    /// Loads entry point `name` in the module's context.
    pub(crate) fn kernel(&self, name: &CStr) -> Result<Kernel, CudaError> {
        Kernel::load(&self.ctx, &self.ptx, name)
    }

    /// The NVRTC target, e.g. `compute_90`.
    pub(crate) fn arch(&self) -> &str {
        &self.arch
    }
}

/// Compiles `kernel` for `ctx` and loads its entry point `name`: the whole chain for
/// runners with one kernel.
pub(crate) fn load_kernel(
    ctx: &DeviceContext,
    kernel: &KernelSource,
    name: &CStr,
) -> Result<Kernel, CudaError> {
    KernelModule::compile(ctx, kernel)?.kernel(name)
}
