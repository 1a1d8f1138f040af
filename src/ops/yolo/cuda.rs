//! YOLO candidate compaction on device outputs: only the candidates above the confidence
//! threshold cross to the host, not the whole output tensor.
//!
//! It follows the CPU decoder exactly ([`super`]); the host side runs the rest of the CPU
//! logic (NMS) on what the kernel returns. One launch and one event wait per batch; every
//! buffer is allocated at start or grown when a batch needs more, never per frame.

use std::ffi::{c_void, CStr};

use crate::cuda::driver::{DeviceBuffer, DeviceContext, PinnedBuffer};
use crate::cuda::runner::arg;
use crate::cuda::CudaError;
use crate::cuda::{KernelRunner, KernelSource};
use crate::ops::device_tensor::{device_ptr, f16_flag};
use crate::tensor::Tensor;

pub const YOLO_SOURCE: &str = include_str!("../../../kernels/yolo.cu");
/// The kernel file, for the loader and the NVRTC compile test.
pub const KERNEL: KernelSource = KernelSource {
    file: "yolo.cu",
    source: YOLO_SOURCE,
};
const YOLO_KERNEL: &CStr = c"trtv_yolo_candidates";
/// Bytes of one candidate record and of the header before the records.
const RECORD: usize = 32;

pub use crate::ops::yolo::YoloCandidate as Candidate;

/// YOLO candidate compaction on device outputs.
pub struct YoloDecoder {
    // Drop order: the runner waits for its stream before the buffers go.
    runner: KernelRunner,
    dev: Option<DeviceBuffer>,
    host: Option<PinnedBuffer>,
    capacity: usize,
    /// Records brought back with the header on the last batch (the next guess).
    last: usize,
}

impl std::fmt::Debug for YoloDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("YoloDecoder")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl YoloDecoder {
    /// Compiles and loads the kernel in `ctx` (the context the outputs live in).
    pub fn new(ctx: &DeviceContext) -> Result<Self, CudaError> {
        Ok(Self {
            runner: KernelRunner::new("creating the YOLO decoder", ctx, &KERNEL, &[YOLO_KERNEL])?,
            dev: None,
            host: None,
            capacity: 0,
            last: 256,
        })
    }

    fn ensure(&mut self, capacity: usize) -> Result<(), CudaError> {
        if capacity > self.capacity || self.dev.is_none() {
            let bytes = RECORD + capacity * RECORD;
            self.dev = Some(DeviceBuffer::new(self.runner.context(), bytes)?);
            self.host = Some(PinnedBuffer::new(self.runner.context(), bytes)?);
            self.capacity = capacity;
        }
        Ok(())
    }

    /// Candidates of every frame of `out0` (`[B, channels, anchors]` on the device) whose
    /// best score among the first `classes` class rows is ≥ `conf`, sorted by (frame,
    /// anchor) into `out`. Returns the bytes copied to the host.
    pub fn decode(
        &mut self,
        out0: &Tensor,
        classes: usize,
        conf: f32,
        out: &mut Vec<Candidate>,
    ) -> Result<usize, CudaError> {
        out.clear();
        let &[batch, channels, anchors] = out0.shape.as_slice() else {
            return Err(CudaError::InvalidInput(format!(
                "YOLO output '{}' must be [batch, channels, anchors], it is {:?}",
                out0.name, out0.shape
            )));
        };
        if classes == 0 || 4 + classes > channels {
            return Err(CudaError::InvalidInput(format!(
                "YOLO output '{}' has {channels} channels, too few for {classes} classes",
                out0.name
            )));
        }
        let (Ok(b), Ok(ch), Ok(n), Ok(c)) = (
            i32::try_from(batch),
            i32::try_from(channels),
            i32::try_from(anchors),
            i32::try_from(classes),
        ) else {
            return Err(CudaError::InvalidInput(format!(
                "YOLO output '{}' is too large",
                out0.name
            )));
        };
        if batch == 0 || anchors == 0 {
            return Ok(0);
        }
        let src = device_ptr(out0)?;
        let f16 = f16_flag(out0)?;
        let capacity = batch
            .checked_mul(anchors)
            .filter(|&c| c <= u32::MAX as usize)
            .ok_or_else(|| {
                CudaError::InvalidInput(format!("YOLO output '{}' has too many anchors", out0.name))
            })?;
        self.ensure(capacity)?;
        let dev = self.dev.as_ref().expect("ensured").ptr();
        let guess = self.last.clamp(64, self.capacity);
        let first_copy = RECORD + guess * RECORD;
        {
            let q = self.runner.queue()?;
            // SAFETY: the header lies in the device buffer.
            unsafe { q.memset_d32(dev, 0, 1) }?;
            let mut src_ptr = src;
            let mut f16_arg = f16;
            let (mut ch_arg, mut n_arg, mut c_arg) = (ch, n, c);
            let mut conf_arg = conf;
            let mut header = dev;
            let mut cap = self.capacity as u32;
            let mut args: [*mut c_void; 8] = [
                arg(&mut src_ptr),
                arg(&mut f16_arg),
                arg(&mut ch_arg),
                arg(&mut n_arg),
                arg(&mut c_arg),
                arg(&mut conf_arg),
                arg(&mut header),
                arg(&mut cap),
            ];
            // SAFETY: arguments match the kernel signature (u64, i32, i32, i32, i32, f32,
            // u64, u32); the output holds `capacity` records after the header; the source
            // tensor was checked to hold B*C*N values.
            unsafe {
                q.launch(
                    0,
                    ((anchors as u32).div_ceil(256), b as u32, 1),
                    (256, 1, 1),
                    &mut args,
                )
            }?;
            let host = self.host.as_mut().expect("ensured");
            // SAFETY: both buffers hold at least `first_copy` bytes.
            unsafe { q.copy_to_host(host.as_mut_slice().as_mut_ptr().cast(), dev, first_copy) }?;
            q.record()?;
        }
        self.runner.wait()?;
        let host = self.host.as_mut().expect("ensured");
        gst::trace!(gst::CAT_DEFAULT, "YOLO candidates: kernel and copy done");
        let count = u32::from_ne_bytes(host.as_mut_slice()[0..4].try_into().expect("4 bytes")) as usize;
        let count = count.min(self.capacity);
        let mut copied = first_copy;
        if count > guess {
            let rest = (count - guess) * RECORD;
            let off = first_copy;
            let q = self.runner.queue()?;
            // SAFETY: the range lies inside both buffers (count ≤ capacity).
            unsafe {
                q.copy_to_host(
                    host.as_mut_slice()[off..].as_mut_ptr().cast(),
                    dev + off as u64,
                    rest,
                )
            }?;
            self.runner.synchronize()?;
            copied += rest;
        }
        let bytes = &host.as_mut_slice()[RECORD..RECORD + count * RECORD];
        out.extend(bytes.chunks_exact(RECORD).map(|r| {
            let f = |i: usize| f32::from_ne_bytes(r[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
            let u = |i: usize| u32::from_ne_bytes(r[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
            Candidate {
                cx: f(0),
                cy: f(1),
                w: f(2),
                h: f(3),
                score: f(4),
                class_id: u(5),
                anchor: u(6),
                frame: u(7),
            }
        }));
        out.sort_unstable_by_key(|c| (c.frame, c.anchor));
        // Next guess: a little above this batch's count, so one copy usually suffices.
        self.last = count + count / 4 + 16;
        Ok(copied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_kernel() {
        assert_eq!(std::mem::size_of::<Candidate>(), RECORD);
        assert!(YOLO_SOURCE.contains("#define REC_WORDS 8"));
    }
}
