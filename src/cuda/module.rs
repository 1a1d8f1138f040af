//! The one way a kernel runner gets its kernels: probe the driver, check NVRTC, compile the
//! kernel file for the device's architecture (cached per process, [`super::nvrtc`]) and
//! load entry points from the PTX in the runner's context ([`Kernel`]: a loaded module and
//! its function, unloaded on drop).

use std::ffi::{c_void, CStr};
use std::sync::Arc;

use cudarc::driver::sys;

use super::driver::{check, DeviceContext};
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
    /// Queues the kernel on `stream` (the caller has made its context current) with
    /// `shared` bytes of dynamic shared memory per block (at most 48 KiB minus the kernel's
    /// static shared memory).
    ///
    /// # Safety
    /// `args` must point to values matching the kernel's parameters in number, order and
    /// layout; every device address they hold must be valid for what the kernel does
    /// with it over `grid`; `stream` must be a live stream of this context.
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
