//! Batched mask selection on the GPU: only the masks of kept detections are computed, in
//! frame pixels inside their boxes.
//!
//! It follows the CPU code exactly ([`super`]); the host side runs the rest of the CPU
//! logic (selection) on what the kernel returns. One launch and one event wait per batch;
//! every buffer is allocated at start or grown when a batch needs more, never per frame.

use std::ffi::{c_void, CStr};
use std::sync::Arc;

use crate::cuda::driver::{DeviceBuffer, DeviceContext, PinnedBuffer};
use crate::cuda::runner::arg;
use crate::cuda::CudaError;
use crate::cuda::{KernelRunner, KernelSource};
use crate::geometry::LetterboxTransform;
use crate::ops::device_tensor::{device_ptr, f16_flag};
use crate::tensor::Tensor;

pub const MASK_SOURCE: &str = include_str!("../../../kernels/maskselect.cu");
/// The kernel file, for the loader and the NVRTC compile test.
pub const KERNEL: KernelSource = KernelSource {
    file: "maskselect.cu",
    source: MASK_SOURCE,
};
const MASK_KERNEL: &CStr = c"trtv_mask_select";
/// Most prototypes the mask kernel combines (its shared-memory table).
pub const MAX_PROTOS: usize = 256;

/// One mask to compute, laid out as the kernel's `MaskJob`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MaskJob {
    planes: u64,
    coeffs: u64,
    out: u64,
    mode: i32,
    planes_f16: i32,
    coeffs_f16: i32,
    count: i32,
    h: i32,
    w: i32,
    anchors: i32,
    first: i32,
    anchor: i32,
    x: i32,
    y: i32,
    mw: i32,
    mh: i32,
    _pad0: i32,
    scale_x: f32,
    scale_y: f32,
    pad_x: f32,
    pad_y: f32,
    sx: f32,
    sy: f32,
    logit_thr: f32,
    _pad1: f32,
}

/// Where the mask of one detection comes from, on the device.
#[derive(Debug, Clone, Copy)]
pub enum MaskPlanes<'a> {
    /// Prototypes `[B, P, h, w]` and the YOLO output `[B, 4 + C + P, N]` whose channels
    /// `first..first + P` hold the coefficients at column `anchor`.
    Prototypes {
        protos: &'a Tensor,
        coefficients: &'a Tensor,
        first: usize,
        anchor: usize,
    },
    /// Dense mask logits `[B, Q, h, w]`, plane `query`.
    Dense { masks: &'a Tensor, query: usize },
}

/// A mask request: source, batch row, box in frame pixels, transform, threshold.
#[derive(Debug, Clone, Copy)]
pub struct MaskRequest<'a> {
    pub planes: MaskPlanes<'a>,
    pub row: usize,
    /// `(x, y, width, height)` in frame pixels (from `BoxF::to_pixel_rect`).
    pub rect: (u32, u32, u32, u32),
    pub transform: LetterboxTransform,
    pub mask_threshold: f32,
}

fn row_ptr(t: &Tensor, row: usize) -> Result<(u64, usize), CudaError> {
    let base = device_ptr(t)?;
    let rows = *t.shape.first().unwrap_or(&0);
    if row >= rows {
        return Err(CudaError::InvalidInput(format!(
            "row {row} of tensor '{}' with {rows} rows",
            t.name
        )));
    }
    let row_bytes = t.len_bytes() / rows;
    Ok((base + (row * row_bytes) as u64, row_bytes))
}

impl MaskJob {
    fn new(req: &MaskRequest<'_>, out: u64) -> Result<Self, CudaError> {
        let i = |v: usize, what: &str| {
            i32::try_from(v).map_err(|_| CudaError::InvalidInput(format!("{what} {v} is too large")))
        };
        let tr = &req.transform;
        let t = req.mask_threshold.clamp(1e-6, 1.0 - 1e-6);
        let (x, y, mw, mh) = req.rect;
        let mut job = MaskJob {
            out,
            x: i(x as usize, "mask x")?,
            y: i(y as usize, "mask y")?,
            mw: i(mw as usize, "mask width")?,
            mh: i(mh as usize, "mask height")?,
            scale_x: tr.scale_x,
            scale_y: tr.scale_y,
            pad_x: tr.pad_x,
            pad_y: tr.pad_y,
            logit_thr: (t / (1.0 - t)).ln(),
            ..Default::default()
        };
        let planes = match req.planes {
            MaskPlanes::Prototypes {
                protos,
                coefficients,
                first,
                anchor,
            } => {
                let &[_, p, _, _] = protos.shape.as_slice() else {
                    return Err(CudaError::InvalidInput(format!(
                        "prototypes '{}' are not 4-D",
                        protos.name
                    )));
                };
                let &[_, channels, anchors] = coefficients.shape.as_slice() else {
                    return Err(CudaError::InvalidInput(format!(
                        "coefficients '{}' are not 3-D",
                        coefficients.name
                    )));
                };
                if p > MAX_PROTOS || first + p > channels || anchor >= anchors {
                    return Err(CudaError::InvalidInput(format!(
                        "{p} prototypes from channel {first} at anchor {anchor} do not fit '{}' {:?}",
                        coefficients.name, coefficients.shape
                    )));
                }
                job.mode = 0;
                job.count = i(p, "prototypes")?;
                job.coeffs = row_ptr(coefficients, req.row)?.0;
                job.coeffs_f16 = f16_flag(coefficients)?;
                job.anchors = i(anchors, "anchors")?;
                job.first = i(first, "channel")?;
                job.anchor = i(anchor, "anchor")?;
                protos
            }
            MaskPlanes::Dense { masks, query } => {
                let &[_, q, _, _] = masks.shape.as_slice() else {
                    return Err(CudaError::InvalidInput(format!(
                        "masks '{}' are not 4-D",
                        masks.name
                    )));
                };
                if query >= q {
                    return Err(CudaError::InvalidInput(format!("query {query} of {q}")));
                }
                job.mode = 1;
                job.count = i(q, "queries")?;
                job.anchor = i(query, "query")?;
                masks
            }
        };
        let &[_, _, h, w] = planes.shape.as_slice() else {
            unreachable!("checked 4-D above")
        };
        if h == 0 || w == 0 || tr.model_w == 0 || tr.model_h == 0 {
            return Err(CudaError::InvalidInput(format!(
                "empty mask planes '{}'",
                planes.name
            )));
        }
        job.planes = row_ptr(planes, req.row)?.0;
        job.planes_f16 = f16_flag(planes)?;
        job.h = i(h, "mask height")?;
        job.w = i(w, "mask width")?;
        job.sx = w as f32 / tr.model_w as f32;
        job.sy = h as f32 / tr.model_h as f32;
        Ok(job)
    }
}

/// Device buffers of computed masks, shared by the masks handed out; reused once every
/// holder is gone.
pub type MaskArena = Arc<DeviceBuffer>;

/// Batched mask computation on the GPU.
pub struct MaskSelector {
    // Drop order: the runner waits for its stream before the buffers go.
    runner: KernelRunner,
    jobs_host: Option<PinnedBuffer>,
    jobs_dev: Option<DeviceBuffer>,
    job_capacity: usize,
    arenas: Vec<MaskArena>,
    out_host: Option<PinnedBuffer>,
    out_capacity: usize,
    jobs: Vec<MaskJob>,
}

impl std::fmt::Debug for MaskSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaskSelector")
            .field("job_capacity", &self.job_capacity)
            .field("arenas", &self.arenas.len())
            .finish_non_exhaustive()
    }
}

/// The masks of one batch: bytes on the host (in request order, `offsets[i]..offsets[i+1]`)
/// and the device arena that holds the same bytes.
#[derive(Debug)]
pub struct MaskBatch<'a> {
    pub host: &'a [u8],
    pub offsets: &'a [usize],
    pub arena: MaskArena,
}

impl MaskSelector {
    pub fn new(ctx: &DeviceContext) -> Result<Self, CudaError> {
        Ok(Self {
            runner: KernelRunner::new("creating the mask selector", ctx, &KERNEL, &[MASK_KERNEL])?,
            jobs_host: None,
            jobs_dev: None,
            job_capacity: 0,
            arenas: Vec::new(),
            out_host: None,
            out_capacity: 0,
            jobs: Vec::new(),
        })
    }

    /// A free arena of at least `len` bytes (allocated only while warming up or growing).
    fn arena(&mut self, len: usize) -> Result<MaskArena, CudaError> {
        if let Some(a) = self
            .arenas
            .iter()
            .find(|a| Arc::strong_count(a) == 1 && a.len() >= len)
        {
            return Ok(a.clone());
        }
        // Drop idle arenas that are too small, then add one with headroom.
        self.arenas.retain(|a| Arc::strong_count(a) > 1);
        let a = Arc::new(DeviceBuffer::new(self.runner.context(), len + len / 2 + 4096)?);
        self.arenas.push(a.clone());
        Ok(a)
    }

    /// Computes the masks of `requests` in one launch and copies them to the host
    /// (`download`) — one event wait. `offsets` receives `requests.len() + 1` offsets.
    pub fn run<'s>(
        &'s mut self,
        requests: &[MaskRequest<'_>],
        download: bool,
        offsets: &'s mut Vec<usize>,
    ) -> Result<MaskBatch<'s>, CudaError> {
        offsets.clear();
        offsets.push(0);
        let mut total = 0usize;
        for r in requests {
            total = total
                .checked_add(r.rect.2 as usize * r.rect.3 as usize)
                .ok_or_else(|| CudaError::InvalidInput("mask sizes overflow".into()))?;
            offsets.push(total);
        }
        let arena = self.arena(total.max(1))?;
        self.jobs.clear();
        for (r, off) in requests.iter().zip(offsets.iter()) {
            self.jobs.push(MaskJob::new(r, arena.ptr() + *off as u64)?);
        }
        let n = self.jobs.len();
        if n == 0 {
            return Ok(MaskBatch {
                host: &[],
                offsets,
                arena,
            });
        }
        let job_bytes = n * std::mem::size_of::<MaskJob>();
        if n > self.job_capacity {
            let cap = n.next_power_of_two().max(64);
            let bytes = cap * std::mem::size_of::<MaskJob>();
            self.jobs_host = Some(PinnedBuffer::new(self.runner.context(), bytes)?);
            self.jobs_dev = Some(DeviceBuffer::new(self.runner.context(), bytes)?);
            self.job_capacity = cap;
        }
        if download && total > self.out_capacity {
            let cap = total + total / 2 + 4096;
            self.out_host = Some(PinnedBuffer::new(self.runner.context(), cap)?);
            self.out_capacity = cap;
        }
        let jobs_host = self.jobs_host.as_mut().expect("allocated above");
        // SAFETY: MaskJob is plain #[repr(C)] data; the pinned buffer holds job_capacity jobs.
        let src = unsafe { std::slice::from_raw_parts(self.jobs.as_ptr().cast::<u8>(), job_bytes) };
        jobs_host.as_mut_slice()[..job_bytes].copy_from_slice(src);
        let jobs_dev = self.jobs_dev.as_ref().expect("allocated above").ptr();
        {
            let q = self.runner.queue()?;
            // SAFETY: both buffers hold at least job_bytes; the pinned source is not
            // rewritten before the event below completed (waited on in this call).
            unsafe { q.copy_to_device(jobs_dev, jobs_host.as_ptr(), job_bytes) }?;
            let mut jobs_arg = jobs_dev;
            let mut args: [*mut c_void; 1] = [arg(&mut jobs_arg)];
            let widest = self
                .jobs
                .iter()
                .map(|j| (j.mw as u32) * (j.mh as u32))
                .max()
                .unwrap_or(1);
            let blocks_x = widest.div_ceil(256).clamp(1, 64);
            // SAFETY: one pointer argument to `n` jobs whose device pointers were checked
            // against their tensors; outputs lie in the arena at disjoint offsets.
            unsafe { q.launch(0, (blocks_x, n as u32, 1), (256, 1, 1), &mut args) }?;
            if download && total > 0 {
                let out_host = self.out_host.as_mut().expect("allocated above");
                // SAFETY: `total` bytes fit both the arena and the pinned buffer.
                unsafe { q.copy_to_host(out_host.as_mut_slice().as_mut_ptr().cast(), arena.ptr(), total) }?;
            }
            q.record()?;
        }
        self.runner.wait()?;
        let host: &[u8] = if download && total > 0 {
            &self.out_host.as_mut().expect("allocated above").as_mut_slice()[..total]
        } else {
            &[]
        };
        Ok(MaskBatch { host, offsets, arena })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_kernel() {
        assert_eq!(std::mem::size_of::<MaskJob>(), 24 + 14 * 4 + 8 * 4);
        assert!(MASK_SOURCE.contains(&format!("#define MAX_PROTOS {MAX_PROTOS}")));
        for field in [
            "int mode, planes_f16, coeffs_f16, count;",
            "int mh, _pad0;",
            "float sx, sy, logit_thr, _pad1;",
        ] {
            assert!(MASK_SOURCE.contains(field), "{field}");
        }
    }
}
