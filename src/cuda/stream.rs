//! Non-blocking streams and events in an explicit [`DeviceContext`] (see
//! [`super::driver`]).

use cudarc::driver::sys::{self, CUresult};

use super::driver::{check, DeviceContext};
use super::CudaError;

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
