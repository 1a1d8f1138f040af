//! Output buffers of the CUDA path's producers, in device memory, with the event recorded
//! after the work that wrote them: a bounded pool of [`Slot`]s and the
//! [`DeviceTensorLease`] that keeps one alive inside a [`Tensor`] and returns it to its
//! pool when dropped.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cudarc::driver::sys;

use super::driver::{DeviceBuffer, DeviceContext, Event, PinnedBuffer};
use super::CudaError;
use crate::tensor::pool::{BoundedPool, PoolControl, Taken};
use crate::tensor::{Tensor, TensorStorage};

/// One output buffer with everything a batch in flight needs.
pub(crate) struct Slot {
    pub(crate) out: DeviceBuffer,
    /// Recorded after the kernel that wrote `out`.
    pub(crate) event: Event,
    /// Launch parameters staged on the host (pinned) ...
    pub(crate) params_host: PinnedBuffer,
    /// ... and their device copy.
    pub(crate) params_dev: DeviceBuffer,
}

impl Slot {
    /// An output buffer of `out_len` bytes with `params_len` bytes of launch parameters.
    pub(crate) fn new(ctx: &DeviceContext, out_len: usize, plen: usize) -> Result<Self, CudaError> {
        Ok(Self {
            out: DeviceBuffer::new(ctx, out_len)?,
            event: Event::new(ctx, false)?,
            params_host: PinnedBuffer::new(ctx, plen)?,
            params_dev: DeviceBuffer::new(ctx, plen)?,
        })
    }
}

/// The output buffers of one producer, at most `limit` out at once: [`TensorPool::take`]
/// waits (bounded) for a lease to come back when all are out; leases put theirs back when
/// dropped. The wait is [`BoundedPool`]'s (tested without a GPU).
pub(crate) struct TensorPool {
    slots: BoundedPool<Slot>,
    timeout: Mutex<Option<Duration>>,
}

/// What [`TensorPool::take`] hands out.
pub(crate) enum PoolSlot {
    /// A buffer made before.
    Idle(Slot),
    /// None idle, room for one more: the caller makes it ([`TensorPool::forget`] if that fails).
    New,
}

impl TensorPool {
    /// A pool holding `free`, handing out at most `limit` buffers, waiting up to `timeout`
    /// (`None`: until one comes back or the pool flushes) when all are out.
    pub(crate) fn new(free: Vec<Slot>, limit: usize, timeout: Option<Duration>) -> Self {
        let limit = limit.max(1);
        Self {
            slots: BoundedPool::with_idle(free, Some(limit), limit),
            timeout: Mutex::new(timeout),
        }
    }

    /// A free buffer, or room for a new one, waiting while all are out.
    pub(crate) fn take(&self) -> Result<PoolSlot, CudaError> {
        let timeout = self.timeout.lock().map_or(None, |t| *t);
        match self.slots.take(timeout, Vec::pop) {
            Ok(Taken::Idle(s)) => Ok(PoolSlot::Idle(s)),
            Ok(Taken::New) => Ok(PoolSlot::New),
            Err(e) => Err(CudaError::PoolWait(e)),
        }
    }

    /// A new buffer could not be made after [`PoolSlot::New`].
    pub(crate) fn forget(&self) {
        self.slots.forget(false);
    }

    /// Returns `slot` to the pool (wakes one waiter).
    pub(crate) fn put(&self, slot: Slot) {
        self.slots.put(slot);
    }

    /// Changes the bound and the timeout (buffers already made stay).
    pub(crate) fn configure(&self, limit: usize, timeout: Option<Duration>) {
        self.slots.set_limit(Some(limit.max(1)));
        if let Ok(mut t) = self.timeout.lock() {
            *t = timeout;
        }
    }

    /// The wait's controls and counters.
    pub(crate) fn wait(&self) -> &BoundedPool<Slot> {
        &self.slots
    }
}

impl PoolControl for TensorPool {
    fn set_flushing(&self, on: bool) {
        self.slots.set_flushing(on)
    }
    fn set_timing(&self, on: bool) {
        self.slots.set_timing(on)
    }
    fn stats(&self) -> crate::tensor::pool::PoolStats {
        self.slots.stats()
    }
}

/// Keepalive of a device tensor made by a producer of the CUDA path (the preprocessor): owns the output
/// buffer until dropped (then it goes back to the pool), keeps the source frames alive,
/// and exposes the event recorded after the kernel.
pub struct DeviceTensorLease {
    slot: Option<Slot>,
    pool: Arc<TensorPool>,
    ptr: u64,
    len: usize,
    /// The source frames, until the kernel has read them (see
    /// [`DeviceTensorLease::release_frames_after`]).
    frames: Mutex<Vec<gst::Buffer>>,
}

impl std::fmt::Debug for DeviceTensorLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceTensorLease")
            .field("ptr", &format_args!("{:#x}", self.ptr))
            .field("len", &self.len)
            .field("frames", &self.frames.lock().map_or(0, |f| f.len()))
            .finish()
    }
}

impl DeviceTensorLease {
    /// The lease of the first `len` bytes of `slot`'s output, holding `frames` until the
    /// work that reads them is done; the slot goes back to `pool` when the lease is dropped.
    pub(crate) fn new(slot: Slot, pool: Arc<TensorPool>, len: usize, frames: Vec<gst::Buffer>) -> Self {
        Self {
            ptr: slot.out.ptr(),
            len,
            slot: Some(slot),
            pool,
            frames: Mutex::new(frames),
        }
    }

    pub(crate) fn slot(&self) -> Result<&Slot, CudaError> {
        self.slot
            .as_ref()
            .ok_or_else(|| CudaError::InvalidInput("device tensor lease already released".into()))
    }

    /// Device address of the tensor (256-byte aligned).
    pub fn ptr(&self) -> u64 {
        self.ptr
    }

    /// Tensor size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the tensor is empty (never, for tensors of `run`).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of the buffer behind the tensor: room for the preprocessor's largest batch.
    /// A consumer that runs a fixed batch reads the rows past [`Self::len`] as padding
    /// (they hold earlier batches' rows or uninitialised values).
    pub fn capacity(&self) -> usize {
        self.slot.as_ref().map_or(self.len, |s| s.out.len())
    }

    /// The CUevent recorded after the kernel that wrote the tensor (for consumers that
    /// manage streams themselves: `cuStreamWaitEvent(their_stream, event, 0)`).
    pub fn event(&self) -> sys::CUevent {
        self.slot.as_ref().map_or(std::ptr::null_mut(), |s| s.event.raw())
    }

    /// Blocks the calling thread until the tensor is written.
    pub fn wait(&self) -> Result<(), CudaError> {
        self.slot()?.event.synchronize()
    }

    /// Whether the tensor is written (never blocks).
    pub fn is_ready(&self) -> Result<bool, CudaError> {
        self.slot()?.event.is_complete()
    }

    /// Makes `stream` wait on the GPU until the tensor is written; the host does not
    /// block. The stream's work may then read the tensor if its context can access the
    /// preprocessor's (the same context, normally the device's primary context).
    ///
    /// # Safety
    /// `stream` must be a live CUstream.
    pub unsafe fn wait_on_stream(&self, stream: sys::CUstream) -> Result<(), CudaError> {
        // SAFETY: forwarded contract.
        unsafe { self.slot()?.event.wait_on(stream) }
    }

    /// Hands the source frames back before the tensor is released: `stream` waits on the
    /// GPU until the kernel has read them, then the lease drops its references, so that an
    /// element holding the same frames can write into them without a copy (a buffer
    /// referenced twice is not writable: `make_mut` would copy every frame). The host does
    /// not block. Returns how many frame references were dropped.
    ///
    /// # Safety
    /// `stream` must be a live CUstream of a context that can use the lease's event, and
    /// the caller must hold the frames (their buffers) until its own work on `stream` is
    /// complete: a decoder may recycle a frame's memory once its last reference is gone.
    pub unsafe fn release_frames_after(&self, stream: sys::CUstream) -> Result<usize, CudaError> {
        let mut frames = self
            .frames
            .lock()
            .map_err(|_| CudaError::InvalidInput("device tensor lease poisoned".into()))?;
        if frames.is_empty() {
            return Ok(0);
        }
        // SAFETY: forwarded contract.
        unsafe { self.slot()?.event.wait_on(stream) }?;
        let n = frames.len();
        frames.clear();
        Ok(n)
    }

    /// Source frames the lease still holds.
    pub fn held_frames(&self) -> usize {
        self.frames.lock().map_or(0, |f| f.len())
    }
}

impl Drop for DeviceTensorLease {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            // The source frames may be recycled once released: never before the kernel
            // has read them (normally long done; only a dropped, never-awaited batch waits).
            if !matches!(slot.event.is_complete(), Ok(true)) {
                let _ = slot.event.synchronize();
            }
            if let Ok(mut frames) = self.frames.lock() {
                frames.clear();
            }
            self.pool.put(slot);
        }
    }
}

/// The lease of a device tensor of the CUDA path, if `tensor` is one.
pub fn device_lease(tensor: &Tensor) -> Option<&DeviceTensorLease> {
    match &tensor.storage {
        TensorStorage::Device { keepalive, .. } => (**keepalive).downcast_ref::<DeviceTensorLease>(),
        TensorStorage::Host(_) => None,
    }
}
