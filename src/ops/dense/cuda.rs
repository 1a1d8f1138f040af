//! Dense outputs (parser `dense`) left in device memory: [`DenseSummarizer`] computes the
//! per-frame summary of channel 0 on the GPU (`kernels/dense.cu`, the rules of
//! [`DenseMap::stats`]) so that only 32 bytes per frame cross to the host, and copies the
//! values to the host only when asked (`download-dense`).
//!
//! One launch, at most two copies to the host and one event wait per batch; the job table,
//! the records and the download area are pinned buffers grown when a batch needs more,
//! never allocated per batch once warm.

use std::ffi::{c_void, CStr};

use cudarc::driver::sys;

use crate::cuda::driver::{check, DeviceBuffer, DeviceContext, PinnedBuffer};
use crate::cuda::runner::arg;
use crate::cuda::CudaError;
use crate::cuda::{KernelRunner, KernelSource};
use crate::ops::device_tensor::{device_ptr, f16_flag};
use crate::results::{DenseMap, DeviceDense};
use crate::tensor::{DType, HostTensorPool, Tensor, TensorStorage};

/// CUDA C source of the summary kernel.
pub const DENSE_SOURCE: &str = include_str!("../../../kernels/dense.cu");
/// The kernel file, for the loader and the NVRTC compile test.
pub const KERNEL: KernelSource = KernelSource {
    file: "dense.cu",
    source: DENSE_SOURCE,
};
const STATS_KERNEL: &CStr = c"trtv_dense_stats";
/// Threads of a block (one block per frame).
const THREADS: u32 = 256;

/// One frame's region, laid out as the kernel's `StatsJob`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct StatsJob {
    x0: f32,
    y0: f32,
    x1: f32,
    y1: f32,
    sx: f32,
    sy: f32,
    _pad: [i32; 2],
}

/// One frame's summary, laid out as the kernel's `StatsRecord`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct StatsRecord {
    min: f32,
    max: f32,
    count: u32,
    _pad0: u32,
    sum: f64,
    _pad1: f64,
}

const JOB: usize = std::mem::size_of::<StatsJob>();
const RECORD: usize = std::mem::size_of::<StatsRecord>();
const _: () = assert!(JOB == 32 && RECORD == 32);

impl StatsRecord {
    fn from_bytes(b: &[u8]) -> Self {
        let f = |i: usize| f32::from_ne_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        Self {
            min: f(0),
            max: f(4),
            count: u32::from_ne_bytes(b[8..12].try_into().expect("4 bytes")),
            _pad0: 0,
            sum: f64::from_ne_bytes(b[16..24].try_into().expect("8 bytes")),
            _pad1: 0.0,
        }
    }

    /// `(min, mean, max)` as [`DenseMap::stats`] computes it; `None` without values.
    fn summary(&self) -> Option<(f32, f32, f32)> {
        (self.count > 0).then(|| (self.min, (self.sum / self.count as f64) as f32, self.max))
    }
}

/// The device row of `t` (`[B, ...]` in device memory) for frame `row`, as a
/// [`DeviceDense`] sharing the tensor's keepalive; the values are complete (`ready_event`
/// 0): the producer synchronised its stream before handing the tensor over.
pub fn device_row(t: &Tensor, row: usize) -> Result<DeviceDense, CudaError> {
    let base = device_ptr(t)?;
    f16_flag(t)?;
    let rows = t.shape.first().copied().unwrap_or(0);
    let TensorStorage::Device { keepalive, .. } = &t.storage else {
        return Err(CudaError::InvalidInput(format!(
            "tensor '{}' is in host memory",
            t.name
        )));
    };
    if row >= rows {
        return Err(CudaError::InvalidInput(format!(
            "row {row} of tensor '{}' with {rows} rows",
            t.name
        )));
    }
    Ok(DeviceDense {
        ptr: base + (row * (t.len_bytes() / rows)) as u64,
        dtype: t.dtype,
        ready_event: 0,
        keepalive: keepalive.clone(),
    })
}

/// Channel 0 of a map whose values are only in device memory, copied into `out` as f32
/// (after its ready event): for CPU consumers that need the values of one frame.
pub fn download_channel0(map: &DenseMap, out: &mut Vec<f32>) -> Result<(), CudaError> {
    let d = map.device.as_ref().ok_or_else(|| {
        CudaError::InvalidInput(format!("the dense map of '{}' is not on the GPU", map.model))
    })?;
    if !matches!(d.dtype, DType::F32 | DType::F16) {
        return Err(CudaError::InvalidInput(format!(
            "the dense map of '{}' is {}, not f32 or f16",
            map.model,
            d.dtype.name()
        )));
    }
    let cells = map.height * map.width;
    let bytes = cells * d.dtype.size();
    let ctx = DeviceContext::primary(crate::cuda::device_of_pointer(d.ptr)?)?;
    if d.ready_event != 0 {
        let _g = ctx.push()?;
        // SAFETY: the producer keeps the event alive with the map (`keepalive`).
        check(
            unsafe { sys::cuEventSynchronize(d.ready_event as sys::CUevent) },
            "cuEventSynchronize",
        )?;
    }
    out.clear();
    out.resize(cells, 0.0);
    // SAFETY: the f32 buffer viewed as its `4 * cells` bytes (any bit pattern is an f32).
    let raw = unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr().cast::<u8>(), cells * 4) };
    crate::cuda::copy_device_to_host(&ctx, d.ptr, bytes, &mut raw[..bytes])?;
    if d.dtype == DType::F16 {
        // Widen in place from the end: value i (bytes 2i..2i+2) becomes bytes 4i..4i+4,
        // which only overwrites values already widened.
        for i in (0..cells).rev() {
            let h = half::f16::from_ne_bytes([raw[2 * i], raw[2 * i + 1]]);
            raw[4 * i..4 * i + 4].copy_from_slice(&h.to_f32().to_ne_bytes());
        }
    }
    Ok(())
}

/// GPU summaries (and optional download) of dense outputs in device memory.
pub struct DenseSummarizer {
    // Drop order: the runner waits for its stream before the buffers go.
    runner: KernelRunner,
    /// Jobs then records, on the host and on the device, for `rows` frames.
    host: Option<PinnedBuffer>,
    dev: Option<DeviceBuffer>,
    rows: usize,
    /// Landing area of downloads.
    values: Option<PinnedBuffer>,
    values_len: usize,
    pool: HostTensorPool,
}

impl std::fmt::Debug for DenseSummarizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DenseSummarizer")
            .field("rows", &self.rows)
            .field("values_len", &self.values_len)
            .finish_non_exhaustive()
    }
}

impl DenseSummarizer {
    /// Compiles and loads the kernel in `ctx` (the context the outputs live in).
    pub fn new(ctx: &DeviceContext) -> Result<Self, CudaError> {
        Ok(Self {
            runner: KernelRunner::new("creating the dense summarizer", ctx, &KERNEL, &[STATS_KERNEL])?,
            host: None,
            dev: None,
            rows: 0,
            values: None,
            values_len: 0,
            pool: HostTensorPool::new(),
        })
    }

    /// Sets [`DenseMap::summary`] of every map of `maps` (rows of `t`, a `[B, C, h, w]`
    /// f32/f16 tensor in device memory, `(channels, height, width)` = `layout`) from one
    /// launch, and with `download` returns `t` copied to a host f32 tensor (f16 converted).
    /// Returns the download and the bytes copied to the host.
    pub fn run(
        &mut self,
        t: &Tensor,
        layout: (usize, usize, usize),
        maps: &mut [DenseMap],
        download: bool,
    ) -> Result<(Option<Tensor>, usize), CudaError> {
        let src = device_ptr(t)?;
        let f16 = f16_flag(t)?;
        let (c, h, w) = layout;
        let batch = t.shape.first().copied().unwrap_or(0);
        let row_elems = c.checked_mul(h).and_then(|v| v.checked_mul(w)).filter(|&v| {
            v.checked_mul(batch)
                .is_some_and(|n| n * t.dtype.size() == t.len_bytes())
        });
        let plane = h.checked_mul(w).and_then(|p| i32::try_from(p).ok());
        let (Some(row_elems), Some(_), Ok(hi), Ok(wi)) =
            (row_elems, plane, i32::try_from(h), i32::try_from(w))
        else {
            return Err(CudaError::InvalidInput(format!(
                "dense output '{}' {:?} is not {batch} rows of {c}x{h}x{w}",
                t.name, t.shape
            )));
        };
        // The kernel summarises row `blockIdx.x`: map `i` must be row `i`.
        if maps.len() > batch || maps.iter().enumerate().any(|(i, m)| m.row != i) {
            return Err(CudaError::InvalidInput(format!(
                "{} maps are not rows 0, 1, ... of the {batch} rows of '{}'",
                maps.len(),
                t.name
            )));
        }
        let n = maps.len();
        let ctx = self.runner.context();
        if n > self.rows || self.host.is_none() {
            let rows = n.next_power_of_two().max(16);
            self.host = Some(PinnedBuffer::new(ctx, rows * (JOB + RECORD))?);
            self.dev = Some(DeviceBuffer::new(ctx, rows * (JOB + RECORD))?);
            self.rows = rows;
        }
        let values_bytes = t.len_bytes();
        if download && values_bytes > self.values_len {
            self.values = Some(PinnedBuffer::new(ctx, values_bytes)?);
            self.values_len = values_bytes;
        }
        let records_at = self.rows * JOB;
        let host = self.host.as_mut().expect("allocated above");
        let jobs = host.as_mut_slice();
        for (i, m) in maps.iter().enumerate() {
            let (sx, sy, r) = m.content_region();
            let job = [r.x0, r.y0, r.x1, r.y1, sx, sy, 0.0, 0.0];
            for (k, v) in job.iter().enumerate() {
                jobs[i * JOB + 4 * k..][..4].copy_from_slice(&v.to_ne_bytes());
            }
        }
        let dev = self.dev.as_ref().expect("allocated above").ptr();
        let mut copied = n * RECORD;
        {
            let q = self.runner.queue()?;
            // SAFETY: `n` jobs lie in both buffers; the pinned source is not rewritten
            // before the event below completed (waited on in this call).
            unsafe { q.copy_to_device(dev, host.as_ptr(), n * JOB) }?;
            let mut values_arg = src;
            let mut f16_arg = f16;
            let mut row_arg = row_elems as u64;
            let (mut h_arg, mut w_arg) = (hi, wi);
            let mut jobs_arg = dev;
            let mut out_arg = dev + records_at as u64;
            let mut args: [*mut c_void; 7] = [
                arg(&mut values_arg),
                arg(&mut f16_arg),
                arg(&mut row_arg),
                arg(&mut h_arg),
                arg(&mut w_arg),
                arg(&mut jobs_arg),
                arg(&mut out_arg),
            ];
            if n > 0 {
                // SAFETY: arguments match the kernel's signature (u64, i32, u64, i32, i32,
                // u64, u64); the tensor holds `batch` rows of `row_elems` values (checked
                // above) and every launched row is below `batch`; jobs and records of `n`
                // rows lie in the device buffer.
                unsafe { q.launch(0, (n as u32, 1, 1), (THREADS, 1, 1), &mut args) }?;
                // SAFETY: `n` records lie in both buffers.
                unsafe {
                    q.copy_to_host(
                        host.as_mut_slice()[records_at..].as_mut_ptr().cast(),
                        dev + records_at as u64,
                        n * RECORD,
                    )
                }?;
            }
            if download && values_bytes > 0 {
                let values = self.values.as_mut().expect("allocated above");
                // SAFETY: the tensor and the pinned buffer hold `values_bytes` bytes.
                unsafe { q.copy_to_host(values.as_mut_slice().as_mut_ptr().cast(), src, values_bytes) }?;
                copied += values_bytes;
            }
            q.record()?;
        }
        self.runner.wait()?;
        let records = &host.as_mut_slice()[records_at..records_at + n * RECORD];
        for (m, r) in maps.iter_mut().zip(records.chunks_exact(RECORD)) {
            m.summary = StatsRecord::from_bytes(r).summary();
        }
        let downloaded = if download {
            let bytes = &self.values.as_mut().expect("allocated above").as_mut_slice()[..values_bytes];
            let count = values_bytes / t.dtype.size();
            let mut out = self.pool.acquire(count * 4);
            match t.dtype {
                DType::F16 => {
                    for (d, s) in out.as_mut_slice().chunks_exact_mut(4).zip(bytes.chunks_exact(2)) {
                        d.copy_from_slice(&half::f16::from_ne_bytes([s[0], s[1]]).to_f32().to_ne_bytes());
                    }
                }
                _ => out.as_mut_slice().copy_from_slice(bytes),
            }
            Some(Tensor::host(t.name.clone(), DType::F32, t.shape.clone(), out))
        } else {
            None
        };
        Ok((downloaded, copied))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_kernel() {
        for field in [
            "float x0, y0, x1, y1;",
            "float sx, sy;",
            "int _pad0, _pad1;",
            "float min, max;",
            "unsigned int count, _pad0;",
            "double sum;",
            "#define THREADS 256",
            "trtv_dense_stats",
        ] {
            assert!(DENSE_SOURCE.contains(field), "{field}");
        }
        assert_eq!(THREADS, 256);
        let mut bytes = [0u8; RECORD];
        bytes[0..4].copy_from_slice(&1.5f32.to_ne_bytes());
        bytes[4..8].copy_from_slice(&9.0f32.to_ne_bytes());
        bytes[8..12].copy_from_slice(&4u32.to_ne_bytes());
        bytes[16..24].copy_from_slice(&20.0f64.to_ne_bytes());
        let r = StatsRecord::from_bytes(&bytes);
        assert_eq!(r.summary(), Some((1.5, 5.0, 9.0)));
        assert_eq!(StatsRecord::default().summary(), None);
    }
}
