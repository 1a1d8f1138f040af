//! [`KernelRunner`]: what every kernel runner under [`crate::ops`] is built on — the kernel
//! file compiled and loaded in one context ([`super::module`]), its named entry points, a
//! non-blocking stream of its own and a completion event recorded after each batch's work.
//!
//! Work is queued through a [`Queue`] ([`KernelRunner::queue`]), which keeps the runner's
//! context current while it lives: asynchronous copies, memsets, waits on other streams'
//! events, launches and the completion record, all on the runner's stream. Nothing here
//! allocates or waits per call; [`KernelRunner::wait`] (the event) and
//! [`KernelRunner::synchronize`] (the stream) are the only host waits, and the runner's
//! owner decides when to call them. Dropping the runner waits for its stream first, so the
//! memory its owner frees afterwards is no longer in use by queued work.

use std::ffi::{c_void, CStr};

use cudarc::driver::sys;

use super::driver::{check, ContextGuard, DeviceContext};
use super::module::{Kernel, KernelModule, KernelSource};
use super::stream::{Event, Stream};
use super::CudaError;

/// A kernel argument: the address of a value whose type and layout match the parameter
/// (`cuLaunchKernel` copies the value at the call).
pub(crate) fn arg<T>(value: &mut T) -> *mut c_void {
    (value as *mut T).cast()
}

/// A kernel file's entry points loaded in one context, with the stream they run on and the
/// event recorded after each batch (see the module docs).
pub struct KernelRunner {
    // Field order is drop order: Drop waits for the stream, then the stream is destroyed,
    // the modules unloaded and the event destroyed.
    stream: Stream,
    kernels: Vec<Kernel>,
    done: Event,
    module: KernelModule,
    ctx: DeviceContext,
}

impl std::fmt::Debug for KernelRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelRunner")
            .field("ctx", &self.ctx)
            .field("arch", &self.module.arch())
            .field("kernels", &self.kernels.len())
            .finish()
    }
}

impl KernelRunner {
    /// Compiles `source` for `ctx`'s device (driver and NVRTC checked first), loads the
    /// entry points `names` (launched by their index in `names`) and creates the stream
    /// and the event. `what` names the runner in the error of a panic inside the CUDA
    /// loader ("creating the CUDA tiler").
    pub(crate) fn new(
        what: &str,
        ctx: &DeviceContext,
        source: &KernelSource,
        names: &[&CStr],
    ) -> Result<Self, CudaError> {
        super::guard(what, || {
            let module = KernelModule::compile(ctx, source)?;
            let kernels = names
                .iter()
                .map(|name| module.kernel(name))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Self {
                stream: Stream::new(ctx)?,
                kernels,
                done: Event::new(ctx, false)?,
                module,
                ctx: ctx.clone(),
            })
        })
    }

    /// The compiled kernel file, for runners that load further entry points themselves
    /// (variants chosen at run time) and launch them with [`Queue::launch_kernel`].
    pub(crate) fn module(&self) -> &KernelModule {
        &self.module
    }

    /// NVRTC target the kernels were compiled for, e.g. `compute_90`.
    pub fn arch(&self) -> &str {
        self.module.arch()
    }

    /// The context everything runs in.
    pub fn context(&self) -> &DeviceContext {
        &self.ctx
    }

    /// The stream the kernels run on (non-blocking, owned by the runner).
    pub fn stream(&self) -> sys::CUstream {
        self.stream.raw()
    }

    /// The event recorded after the last batch (for consumers that order their own
    /// streams after it: `cuStreamWaitEvent(stream, event, 0)`).
    pub fn event(&self) -> sys::CUevent {
        self.done.raw()
    }

    /// Blocks until the work before the last [`Queue::record`] is done.
    pub fn wait(&self) -> Result<(), CudaError> {
        self.done.synchronize()
    }

    /// Blocks until everything queued on [`KernelRunner::stream`] is done (also work
    /// queued there by others).
    pub fn synchronize(&self) -> Result<(), CudaError> {
        self.stream.synchronize()
    }

    /// Makes the runner's context current to queue work on its stream.
    pub(crate) fn queue(&self) -> Result<Queue<'_>, CudaError> {
        Ok(Queue {
            runner: self,
            _current: self.ctx.push()?,
        })
    }
}

impl Drop for KernelRunner {
    fn drop(&mut self) {
        // Work in flight must end before the modules are unloaded and the owner's memory
        // is freed.
        let _ = self.stream.synchronize();
    }
}

/// The runner's context made current, to queue work on its stream (popped on drop).
pub(crate) struct Queue<'a> {
    runner: &'a KernelRunner,
    _current: ContextGuard<'a>,
}

impl Queue<'_> {
    /// Queues entry point `kernel` (its index in the names given to
    /// [`KernelRunner::new`]) over `grid` blocks of `block` threads.
    ///
    /// # Safety
    /// `args` must point to values matching the kernel's parameters in number, order and
    /// layout; every device address they hold must be valid for what the kernel does with
    /// it over `grid` until the work completes.
    pub(crate) unsafe fn launch(
        &self,
        kernel: usize,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        args: &mut [*mut c_void],
    ) -> Result<(), CudaError> {
        let Some(k) = self.runner.kernels.get(kernel) else {
            return Err(CudaError::InvalidInput(format!(
                "kernel {kernel} of a runner with {} entry points",
                self.runner.kernels.len()
            )));
        };
        // SAFETY: forwarded contract; loaded from the runner's module.
        unsafe { self.launch_kernel(k, grid, block, 0, args) }
    }

    /// Queues `kernel`, an entry point loaded from [`KernelRunner::module`], over `grid`
    /// blocks of `block` threads with `shared` bytes of dynamic shared memory per block.
    ///
    /// # Safety
    /// As [`Queue::launch`]; `kernel` must be loaded in the runner's context and `shared`
    /// within what the device gives a block besides the kernel's static shared memory.
    pub(crate) unsafe fn launch_kernel(
        &self,
        kernel: &Kernel,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        shared: u32,
        args: &mut [*mut c_void],
    ) -> Result<(), CudaError> {
        // SAFETY: forwarded contract; the runner's own live stream, context current.
        unsafe { kernel.launch_shared(grid, block, shared, self.runner.stream.raw(), args) }
    }

    /// Queues a copy of `len` bytes from host memory `src` to device address `dst`.
    ///
    /// # Safety
    /// Both ranges must be valid; a pinned `src` must not be rewritten before the copy has
    /// run (a pageable one may be reused once this returns).
    pub(crate) unsafe fn copy_to_device(
        &self,
        dst: u64,
        src: *const c_void,
        len: usize,
    ) -> Result<(), CudaError> {
        // SAFETY: forwarded contract; the runner's own live stream, context current.
        check(
            unsafe { sys::cuMemcpyHtoDAsync_v2(dst, src, len, self.runner.stream.raw()) },
            "cuMemcpyHtoDAsync",
        )
    }

    /// Queues a copy of `len` bytes from device address `src` to host memory `dst`.
    ///
    /// # Safety
    /// Both ranges must be valid until the copy has run (`dst` pinned for an asynchronous
    /// copy).
    pub(crate) unsafe fn copy_to_host(
        &self,
        dst: *mut c_void,
        src: u64,
        len: usize,
    ) -> Result<(), CudaError> {
        // SAFETY: forwarded contract; the runner's own live stream, context current.
        check(
            unsafe { sys::cuMemcpyDtoHAsync_v2(dst, src, len, self.runner.stream.raw()) },
            "cuMemcpyDtoHAsync",
        )
    }

    /// Queues setting `count` 32-bit words at device address `dst` to `value`.
    ///
    /// # Safety
    /// The range must be valid device memory of the runner's context.
    pub(crate) unsafe fn memset_d32(&self, dst: u64, value: u32, count: usize) -> Result<(), CudaError> {
        // SAFETY: forwarded contract; the runner's own live stream, context current.
        check(
            unsafe { sys::cuMemsetD32Async(dst, value, count, self.runner.stream.raw()) },
            "cuMemsetD32Async",
        )
    }

    /// Makes the stream wait (on the GPU) for `event`, recorded by another producer.
    ///
    /// # Safety
    /// `event` must be a live CUevent (its producer keeps it alive).
    pub(crate) unsafe fn wait_for(&self, event: sys::CUevent) -> Result<(), CudaError> {
        // SAFETY: forwarded contract; the runner's own live stream.
        check(
            unsafe { sys::cuStreamWaitEvent(self.runner.stream.raw(), event, 0) },
            "cuStreamWaitEvent",
        )
    }

    /// Records the runner's event after everything queued so far.
    pub(crate) fn record(&self) -> Result<(), CudaError> {
        // SAFETY: the runner's own live stream, same context as the event.
        unsafe { self.runner.done.record(self.runner.stream.raw()) }
    }

    /// Records `event` (one of the owner's, e.g. per output buffer) after everything
    /// queued so far.
    ///
    /// # Safety
    /// `event` must have been created in the runner's context.
    pub(crate) unsafe fn record_event(&self, event: &Event) -> Result<(), CudaError> {
        // SAFETY: forwarded contract; the runner's own live stream.
        unsafe { event.record(self.runner.stream.raw()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_thread_safe() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<KernelRunner>();
    }

    #[test]
    fn arg_is_the_value_address() {
        let mut v = 7u64;
        let p = arg(&mut v);
        assert_eq!(p, (&mut v as *mut u64).cast::<c_void>());
    }
}
