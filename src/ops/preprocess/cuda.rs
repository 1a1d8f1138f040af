//! [`CudaPreprocessor`]: a whole batch of device frames into one NCHW tensor in device
//! memory, with one kernel launch.
//!
//! At construction its [`KernelRunner`] compiles `kernels/preprocess.cu` with NVRTC for
//! the device's compute capability (once per process and architecture), loads it into the
//! context and creates its own non-blocking stream; the preprocessor loads the entry points
//! of the configured variant from it and allocates a small pool of output tensors of
//! the largest batch plus pinned host memory for per-frame parameters. Per batch it
//! writes the parameters (plane addresses, strides, format, size, placement: ~100 bytes a
//! frame) to pinned memory, copies them to the device, launches the kernel and records an
//! event; nothing is allocated and nothing waits on the host.
//!
//! The result is a [`Tensor`] with [`TensorStorage::Device`] whose `keepalive` is a
//! [`DeviceTensorLease`]: it returns the buffer to the pool when the tensor's last clone is
//! dropped, keeps the source frames' GstBuffers alive until then, and carries the event
//! recorded after the kernel. **Consumers must order their reads after that event**:
//! [`DeviceTensorLease::wait_on_stream`] (GPU-side, preferred) or
//! [`DeviceTensorLease::wait`] (host-side), found with [`device_lease`]. They must also
//! finish reading before dropping the tensor (e.g. synchronise their stream first), since
//! the buffer is then reused for a later batch.

use std::ffi::c_void;
use std::sync::Arc;

use cudarc::driver::sys;

use crate::config::{ColorOrder, PreprocessConfig};
use crate::cuda::driver::{DeviceContext, Kernel};
use crate::cuda::frame::{CudaFrame, KIND_I420, KIND_NV12};
use crate::cuda::pool::{PoolSlot, Slot, TensorPool};
use crate::cuda::runner::arg;
use crate::cuda::CudaError;
use crate::cuda::{DeviceTensorLease, KernelRunner, KernelSource};
use crate::geometry::LetterboxTransform;
use crate::ops::preprocess::content_span;
use crate::tensor::{DType, Tensor, TensorStorage};
use entry::{kernel_names, EntryPoints};
#[cfg(test)]
use entry::{nv12_kernel_name, KERNEL_NAME, KERNEL_NAMES};

mod entry;

/// CUDA C source of the kernel.
pub const KERNEL_SOURCE: &str = include_str!("../../../kernels/preprocess.cu");
/// Batches of up to this many frames pass their parameters inside the kernel launch (no
/// copy before the kernel); `INLINE_FRAMES` in preprocess.cu.
pub const INLINE_FRAMES: usize = 32;
/// Output pixels per thread when the input width allows it (a multiple of it); other
/// widths take the one-pixel kernel.
pub const DEFAULT_PIXELS_PER_THREAD: u32 = 4;
const KERNEL_FILE: &str = "preprocess.cu";

/// The kernel file, for the loader and the NVRTC compile test.
pub const KERNEL: KernelSource = KernelSource {
    file: KERNEL_FILE,
    source: KERNEL_SOURCE,
};
/// Default thread block: 32 x 4 threads (on the H100 23.4-23.9 us per batch of 8 x 1080p NV12
/// into 640x640 f16 against 24.1-24.5 us with 32 x 8; the kernel is built for at most 256).
const BLOCK_X: u32 = 32;
const BLOCK_Y: u32 = 4;
const MAX_BLOCK_THREADS: u32 = 256;
/// Output columns of one block at most (threads in x times pixels per thread): the column
/// taps of a block live in shared memory (`MAX_BLOCK_COLUMNS` in preprocess.cu).
const MAX_BLOCK_COLUMNS: u32 = 1024;
// Every pixels-per-thread variant fits the default block.
const _: () = assert!(BLOCK_X * 8 <= MAX_BLOCK_COLUMNS);
/// Output buffers allocated up front.
pub const INITIAL_POOL: usize = 3;
/// Output buffers at most by default (more only while downstream holds many tensors at
/// once); [`CudaPreprocessor::configure_pool`] changes it.
pub const MAX_POOL: usize = 8;
/// How long [`CudaPreprocessor::run`] waits by default for a tensor to come back when all
/// are held downstream.
pub const DEFAULT_POOL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);
/// Largest batch (the grid's z dimension).
pub const MAX_BATCH: usize = 65535;

/// Per-frame kernel parameters: a source frame and where it lands in a `out_w x out_h`
/// output; layout shared with `FrameParams` in preprocess.cu and `TileSource` in tiler.cu.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct FrameParams {
    pub(crate) plane: [u64; 3],
    pub(crate) stride: [i32; 3],
    pub(crate) kind: i32,
    pub(crate) bpp: i32,
    pub(crate) off_r: i32,
    pub(crate) off_g: i32,
    pub(crate) off_b: i32,
    pub(crate) width: i32,
    pub(crate) height: i32,
    pub(crate) scale_x: f32,
    pub(crate) scale_y: f32,
    pub(crate) pad_x: f32,
    pub(crate) pad_y: f32,
    pub(crate) x0: i32,
    pub(crate) x1: i32,
    pub(crate) y0: i32,
    pub(crate) y1: i32,
    /// YUV → RGB of the frame: luma offset, fy, frv, fgu, fgv, fbu ([`CudaFrame::kernel_colors`]).
    pub(crate) yuv: [f32; 6],
}

/// Per-batch kernel parameters (passed by value); layout shared with `NormParams`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct NormParams {
    a: [f32; 3],
    b: [f32; 3],
    pad: [f32; 3],
    order: [i32; 3],
    out_w: i32,
    out_h: i32,
    f16: i32,
    frames: i32,
    /// 4:2:0 row staging: bytes per staged source row in shared memory (a multiple of
    /// 32), 0 = direct loads; set per batch by [`stage_bytes`].
    stage: i32,
    /// 0x4B00_0000 (2^23 as f32 bits): `byte_f` in preprocess.cu takes it from the launch.
    float_bits: u32,
}

/// The parameters of a batch of up to [`INLINE_FRAMES`] frames, passed by value;
/// `InlineFrames` in preprocess.cu.
#[repr(C)]
#[derive(Clone, Copy)]
struct InlineFrames([FrameParams; INLINE_FRAMES]);

const _: () = assert!(std::mem::size_of::<FrameParams>() == 120);
// With the other arguments (8 + 72 bytes) within the 4 KiB of kernel parameters.
const _: () = assert!(std::mem::size_of::<InlineFrames>() == 3840);
const _: () = assert!(std::mem::size_of::<NormParams>() == 72);

/// Dynamic shared memory of one block for 4:2:0 row staging at most (the column taps take
/// 12 KiB of static shared memory; together within the 48 KiB every device gives).
const MAX_STAGE_SHARED: u32 = 32 * 1024;

/// Bytes per staged source row for a batch (`stage` in preprocess.cu): each warp stages
/// the source spans of its `32 * px` output columns (two luma rows, two chroma rows), so a
/// row slot holds the longest span any 4:2:0 frame of the batch needs, rounded to 32
/// bytes; 0 (direct loads) without 4:2:0 frames or when the slots of a block would exceed
/// [`MAX_STAGE_SHARED`] (strong downscaling). The kernel re-checks every span and loads
/// directly where one does not fit, so this only decides the speed.
fn stage_bytes(frames: &[FrameParams], px: u32, block: (u32, u32)) -> u32 {
    let columns = 32.0 * px as f64;
    let need = frames
        .iter()
        .filter(|f| f.kind == KIND_NV12 || f.kind == KIND_I420)
        .map(|f| (columns / f.scale_x as f64).ceil() + 40.0)
        .fold(0.0f64, f64::max);
    if need <= 0.0 || !need.is_finite() {
        return 0;
    }
    let stage = (need as u32).div_ceil(32) * 32;
    let warps = (block.0 * block.1).div_ceil(32);
    if warps * 4 * stage > MAX_STAGE_SHARED {
        0
    } else {
        stage
    }
}

/// Whether frame `p` can take the `_nv12` entry points (`sample_nv12` in preprocess.cu):
/// NV12 of at least 2x2 pixels (every tap pair is then (i, i + 1)) whose chroma plane
/// starts at an even address with an even stride (16-bit UV loads).
fn nv12_fast(p: &FrameParams) -> bool {
    p.kind == KIND_NV12
        && p.width >= 2
        && p.height >= 2
        && p.stride[1] > 0
        && p.stride[1] % 2 == 0
        && p.plane[1].is_multiple_of(2)
}

/// Batches of up to this many NV12 frames pass only the first `INLINE_FRAMES_SMALL`
/// parameters of [`InlineFrames`] with the launch (`_inline8` entry points, 960 bytes instead
/// of 3840); `INLINE_FRAMES_SMALL` in preprocess.cu.
pub const INLINE_FRAMES_SMALL: usize = 8;

impl NormParams {
    fn new(cfg: &PreprocessConfig) -> Self {
        let affine = cfg.affine();
        Self {
            a: std::array::from_fn(|c| affine[c].0),
            b: std::array::from_fn(|c| affine[c].1),
            // Same expression as preprocess::fill_row.
            pad: std::array::from_fn(|c| cfg.pad_value as f32 * affine[c].0 + affine[c].1),
            order: match cfg.color {
                ColorOrder::Rgb => [0, 1, 2],
                ColorOrder::Bgr => [2, 1, 0],
            },
            out_w: cfg.width as i32,
            out_h: cfg.height as i32,
            f16: i32::from(cfg.dtype == DType::F16),
            frames: 0,
            stage: 0,
            float_bits: 0x4B00_0000,
        }
    }
}

impl FrameParams {
    fn new(f: &CudaFrame, t: &LetterboxTransform, cfg: &PreprocessConfig) -> Self {
        Self::placed(f, t, cfg.width, cfg.height)
    }

    /// Frame `f` placed by `t` into an `out_w x out_h` output.
    pub(crate) fn placed(f: &CudaFrame, t: &LetterboxTransform, out_w: u32, out_h: u32) -> Self {
        let (x0, x1) = content_span(t.pad_x, t.scale_x, f.width, out_w);
        let (y0, y1) = content_span(t.pad_y, t.scale_y, f.height, out_h);
        let l = f.kernel_layout();
        Self {
            plane: f.planes,
            stride: f.kernel_strides(),
            kind: l.kind,
            bpp: l.bpp,
            off_r: l.r,
            off_g: l.g,
            off_b: l.b,
            width: f.width as i32,
            height: f.height as i32,
            scale_x: t.scale_x,
            scale_y: t.scale_y,
            pad_x: t.pad_x,
            pad_y: t.pad_y,
            x0: x0 as i32,
            x1: x1 as i32,
            y0: y0 as i32,
            y1: y1 as i32,
            yuv: f.kernel_colors(),
        }
    }
}

/// The frame parameters in `slot`'s pinned buffer.
fn frame_params(slot: &mut Slot) -> &mut [FrameParams] {
    let bytes = slot.params_host.as_mut_slice();
    // SAFETY: FrameParams is plain old data (any bit pattern is valid); align_to_mut
    // only yields the aligned middle (cuMemHostAlloc returns page-aligned memory).
    let (_, params, _) = unsafe { bytes.align_to_mut::<FrameParams>() };
    params
}

/// Batched GPU preprocessing: device frames → NCHW f32/f16 tensor in device memory, with
/// exactly the math of [`crate::ops::preprocess::fill_row`] (see the module docs).
pub struct CudaPreprocessor {
    // Field order is drop order: the runner waits for its stream, then the entry points
    // are unloaded, then the pool (freed once the last lease is gone).
    runner: KernelRunner,
    /// The entry points of the current pixels per thread.
    entries: EntryPoints,
    /// Whether NV12 batches of up to [`INLINE_FRAMES_SMALL`] take `entries.nv12_small`.
    small_params: bool,
    /// Whether NV12 batches ([`nv12_fast`]) take `entries.nv12` (default) or the generic one.
    nv12_path: bool,
    /// Whether the last batch ran an NV12 entry point.
    last_nv12: bool,
    pixels_per_thread: u32,
    block: (u32, u32),
    /// 4:2:0 source rows staged in shared memory (see [`stage_bytes`]).
    staging: bool,
    /// `__launch_bounds__` variant of the inline kernel (0 = default).
    min_blocks: u32,
    pool: Arc<TensorPool>,
    cfg: PreprocessConfig,
    max_batch: usize,
    out_row_bytes: usize,
    norm: NormParams,
    tensor_name: String,
    slots: usize,
}

impl std::fmt::Debug for CudaPreprocessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaPreprocessor")
            .field("runner", &self.runner)
            .field("cfg", &self.cfg)
            .field("max_batch", &self.max_batch)
            .field("slots", &self.slots)
            .finish()
    }
}

impl CudaPreprocessor {
    /// Compiles and loads the kernel in `ctx`, creates the stream and allocates
    /// [`INITIAL_POOL`] output tensors of `max_batch` rows (use the real batch size, not
    /// the config's upper bound: each buffer holds `max_batch * 3 * H * W` elements).
    pub fn new(ctx: &DeviceContext, cfg: &PreprocessConfig, max_batch: usize) -> Result<Self, CudaError> {
        cfg.validate().map_err(CudaError::InvalidInput)?;
        if max_batch == 0 || max_batch > MAX_BATCH {
            return Err(CudaError::InvalidInput(format!(
                "max batch must be between 1 and {MAX_BATCH}, got {max_batch}"
            )));
        }
        const WHAT: &str = "creating the CUDA preprocessor";
        // The entry points depend on the configuration: loaded by `build`.
        let runner = KernelRunner::new(WHAT, ctx, &KERNEL, &[])?;
        crate::cuda::guard(WHAT, || Self::build(runner, cfg, max_batch))
    }

    /// [`CudaPreprocessor::new`] in the CUcontext of a GStreamer CUDA context (the
    /// element's, from [`super::ensure_element_context`]).
    pub fn for_gst(
        ctx: &crate::cuda::CudaContext,
        cfg: &PreprocessConfig,
        max_batch: usize,
    ) -> Result<Self, CudaError> {
        Self::new(&ctx.device_context()?, cfg, max_batch)
    }

    fn build(runner: KernelRunner, cfg: &PreprocessConfig, max_batch: usize) -> Result<Self, CudaError> {
        let ctx = runner.context().clone();
        let pixels_per_thread = if cfg.width.is_multiple_of(DEFAULT_PIXELS_PER_THREAD) {
            DEFAULT_PIXELS_PER_THREAD
        } else {
            1
        };
        let entries = EntryPoints::load(runner.module(), pixels_per_thread, cfg.color)?;
        let out_row_bytes = 3 * cfg.width as usize * cfg.height as usize * cfg.dtype.size();
        let out_len = out_row_bytes.checked_mul(max_batch).ok_or_else(|| {
            CudaError::InvalidInput(format!(
                "a batch of {max_batch} tensors of {out_row_bytes} bytes is too large"
            ))
        })?;
        let mut free = Vec::with_capacity(MAX_POOL);
        for _ in 0..INITIAL_POOL {
            free.push(Slot::new(
                &ctx,
                out_len,
                max_batch * std::mem::size_of::<FrameParams>(),
            )?);
        }
        let mut this = Self {
            runner,
            entries,
            small_params: true,
            nv12_path: true,
            last_nv12: false,
            pixels_per_thread,
            block: (BLOCK_X, BLOCK_Y),
            staging: false,
            min_blocks: 0,
            pool: Arc::new(TensorPool::new(free, MAX_POOL, Some(DEFAULT_POOL_TIMEOUT))),
            cfg: *cfg,
            max_batch,
            out_row_bytes,
            norm: NormParams::new(cfg),
            tensor_name: "images".into(),
            slots: INITIAL_POOL,
        };
        // Resolve every driver entry point of the hot path now (cudarc loads symbols
        // lazily and panics on a missing one): an empty launch of each kind, then wait.
        for inline in [None, Some(&InlineFrames([FrameParams::default(); INLINE_FRAMES]))] {
            let slot = this.acquire()?;
            let lease = this.launch(slot, 0, Vec::new(), inline, 0, false)?;
            lease.wait()?;
            drop(lease);
        }
        this.runner.synchronize()?;
        Ok(this)
    }

    /// Sets the name of the tensors made by [`CudaPreprocessor::run`] (default `images`).
    pub fn set_tensor_name(&mut self, name: impl Into<String>) {
        self.tensor_name = name.into();
    }

    /// Output pixels each thread of the kernel writes (1, 2, 4 or 8).
    pub fn pixels_per_thread(&self) -> u32 {
        self.pixels_per_thread
    }

    /// Switches the kernel to `px` output pixels per thread (1, 2, 4 or 8; the input
    /// width must be a multiple of it). The result is the same; the speed differs (the
    /// benchmarks compare them). Waits for the work in flight first.
    pub fn set_pixels_per_thread(&mut self, px: u32) -> Result<(), CudaError> {
        kernel_names(px)?;
        if !self.cfg.width.is_multiple_of(px) {
            return Err(CudaError::InvalidInput(format!(
                "{px} pixels per thread need an input width that is a multiple of {px}, not {}",
                self.cfg.width
            )));
        }
        if self.block.0 * px > MAX_BLOCK_COLUMNS {
            return Err(CudaError::InvalidInput(format!(
                "{px} pixels per thread with {} threads in x exceed {MAX_BLOCK_COLUMNS} columns per block",
                self.block.0
            )));
        }
        if px == self.pixels_per_thread {
            return Ok(());
        }
        self.runner.synchronize()?;
        self.entries = EntryPoints::load(self.runner.module(), px, self.cfg.color)?;
        self.pixels_per_thread = px;
        self.min_blocks = 0;
        Ok(())
    }

    /// Whether the source rows of NV12/I420 frames are staged in shared memory (off by
    /// default: slower than direct loads on the H100, 33.4 vs 27.7 µs for 8 x 1080p NV12
    /// into 640x640 f16; see [`stage_bytes`]).
    pub fn staging(&self) -> bool {
        self.staging
    }

    /// Stages NV12/I420 source rows in shared memory (true) or loads every tap from global
    /// memory (false). The result is the same; the speed differs (the benchmarks compare
    /// them).
    pub fn set_staging(&mut self, on: bool) {
        self.staging = on;
    }

    /// Whether batches of NV12 frames take the NV12 entry point (default; see
    /// [`CudaPreprocessor::set_nv12_path`]).
    pub fn nv12_path(&self) -> bool {
        self.nv12_path
    }

    /// Lets batches whose frames are all NV12 (at least 2x2 pixels, even chroma plane
    /// address and stride) of at most [`INLINE_FRAMES`] frames take the kernel entry point
    /// specialised for them (true, the default: two thirds of the generic kernel's
    /// instructions per pixel on the H100) or always the generic one (false). The result
    /// is the same; the speed differs. Not used with row staging or an occupancy variant.
    pub fn set_nv12_path(&mut self, on: bool) {
        self.nv12_path = on;
    }

    /// Whether NV12 batches of up to [`INLINE_FRAMES_SMALL`] frames pass only that many
    /// frame parameters with the launch (default) instead of [`INLINE_FRAMES`].
    pub fn small_params(&self) -> bool {
        self.small_params
    }

    /// Switches the parameter size of small NV12 batches (see
    /// [`CudaPreprocessor::small_params`]). The result is the same; the speed differs.
    pub fn set_small_params(&mut self, on: bool) {
        self.small_params = on;
    }

    /// Whether the last [`CudaPreprocessor::run`] took the NV12 entry point.
    pub fn last_run_nv12(&self) -> bool {
        self.last_nv12
    }

    /// Resident blocks per SM the inline kernel is compiled for (`__launch_bounds__`): 0 =
    /// the compiler's choice (default), 6 or 8 = fewer registers per thread for more warps.
    pub fn min_blocks_per_sm(&self) -> u32 {
        self.min_blocks
    }

    /// Switches the inline kernel (batches of up to [`INLINE_FRAMES`]) to the entry point
    /// compiled for `n` resident blocks of 256 threads per SM (0, 6 or 8). The result is
    /// the same; the speed differs (the benchmarks compare them). Waits for the work in
    /// flight first.
    pub fn set_min_blocks_per_sm(&mut self, n: u32) -> Result<(), CudaError> {
        let (_, inline, _) = kernel_names(self.pixels_per_thread)?;
        let name = match n {
            0 => inline.to_owned(),
            6 | 8 => std::ffi::CString::new(format!("{}_occ{n}", inline.to_string_lossy()))
                .map_err(|_| CudaError::InvalidInput("kernel name".into()))?,
            _ => {
                return Err(CudaError::InvalidInput(format!(
                    "{n} resident blocks per SM (supported: 0 = default, 6, 8)"
                )))
            }
        };
        self.runner.synchronize()?;
        self.entries.inline = self.runner.module().kernel(&name)?;
        self.min_blocks = n;
        Ok(())
    }

    /// Threads per block of the launches, `(x, y)`.
    pub fn block(&self) -> (u32, u32) {
        self.block
    }

    /// Sets the thread block of the launches (`x * y` at most 256, `x` a multiple of 32, the
    /// warp size). The result is the same; the speed differs (the benchmarks compare them).
    pub fn set_block(&mut self, x: u32, y: u32) -> Result<(), CudaError> {
        if x == 0
            || y == 0
            || !x.is_multiple_of(32)
            || x * y > MAX_BLOCK_THREADS
            || x * self.pixels_per_thread > MAX_BLOCK_COLUMNS
        {
            return Err(CudaError::InvalidInput(format!(
                "a {x}x{y} thread block: x must be a multiple of 32, x * y at most {MAX_BLOCK_THREADS} and \
                 x * {} pixels per thread at most {MAX_BLOCK_COLUMNS}",
                self.pixels_per_thread
            )));
        }
        self.block = (x, y);
        Ok(())
    }

    /// The preprocessing settings.
    pub fn config(&self) -> &PreprocessConfig {
        &self.cfg
    }

    /// Largest batch `run` accepts.
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// The context everything runs in.
    pub fn context(&self) -> &DeviceContext {
        self.runner.context()
    }

    /// The stream the kernel runs on (non-blocking, owned by the preprocessor).
    pub fn stream(&self) -> sys::CUstream {
        self.runner.stream()
    }

    /// NVRTC target the kernel was compiled for, e.g. `compute_90`.
    pub fn arch(&self) -> &str {
        self.runner.arch()
    }

    /// Output buffers allocated so far (grows from [`INITIAL_POOL`] to at most the pool's
    /// bound, [`MAX_POOL`] by default, while downstream keeps many tensors alive).
    pub fn pool_size(&self) -> usize {
        self.slots
    }

    /// At most `limit` output tensors out at once; [`CudaPreprocessor::run`] waits up to
    /// `timeout` (`None`: until one comes back or the pool flushes) when all are held.
    pub fn configure_pool(&self, limit: usize, timeout: Option<std::time::Duration>) {
        self.pool.configure(limit, timeout);
    }

    /// Flushing and timing of the output pool's wait (for the element's flushes and
    /// state changes).
    pub fn pool_control(&self) -> Arc<dyn crate::tensor::pool::PoolControl> {
        self.pool.clone()
    }

    /// Counters of the output pool (tensors out, most at once, waits).
    pub fn pool_stats(&self) -> crate::tensor::pool::PoolStats {
        self.pool.wait().stats()
    }

    /// Waits until all queued work of the preprocessor is done.
    pub fn synchronize(&self) -> Result<(), CudaError> {
        self.runner.synchronize()
    }

    /// A free output buffer; when all are held downstream, waits (bounded) for one to
    /// come back (never allocates past the pool's bound).
    fn acquire(&mut self) -> Result<Slot, CudaError> {
        match self.pool.take()? {
            PoolSlot::Idle(slot) => Ok(slot),
            PoolSlot::New => {
                let slot = Slot::new(
                    self.runner.context(),
                    self.out_row_bytes * self.max_batch,
                    self.max_batch * std::mem::size_of::<FrameParams>(),
                )
                .inspect_err(|_| self.pool.forget())?;
                self.slots += 1;
                Ok(slot)
            }
        }
    }

    /// Preprocesses one batch: frame `i` with placement `transforms[i]` (normally
    /// `cfg.transform(frame.width(), frame.height())`) becomes row `i` of a
    /// `[frames.len(), 3, height, width]` device tensor. One kernel launch on
    /// [`CudaPreprocessor::stream`]; returns without waiting for it.
    pub fn run(
        &mut self,
        frames: &[CudaFrame],
        transforms: &[LetterboxTransform],
    ) -> Result<Tensor, CudaError> {
        let n = frames.len();
        if n == 0 || n > self.max_batch {
            return Err(CudaError::InvalidInput(format!(
                "a batch must hold 1 to {} frames, got {n}",
                self.max_batch
            )));
        }
        if transforms.len() != n {
            return Err(CudaError::InvalidInput(format!(
                "{n} frames but {} transforms",
                transforms.len()
            )));
        }
        for (i, (f, t)) in frames.iter().zip(transforms).enumerate() {
            let ok_scale = |s: f32| s.is_finite() && s > 0.0;
            if (t.frame_w, t.frame_h) != (f.width, f.height)
                || (t.model_w, t.model_h) != (self.cfg.width, self.cfg.height)
                || !ok_scale(t.scale_x)
                || !ok_scale(t.scale_y)
                || !t.pad_x.is_finite()
                || !t.pad_y.is_finite()
            {
                return Err(CudaError::InvalidInput(format!(
                    "transform {i} ({}x{} into {}x{}, scale {}x{}) does not fit frame {}x{} and input {}x{}",
                    t.frame_w,
                    t.frame_h,
                    t.model_w,
                    t.model_h,
                    t.scale_x,
                    t.scale_y,
                    f.width,
                    f.height,
                    self.cfg.width,
                    self.cfg.height
                )));
            }
        }
        let mut slot = self.acquire()?;
        let cfg = self.cfg;
        let mut inline = None;
        if n <= INLINE_FRAMES {
            let mut params = InlineFrames([FrameParams::default(); INLINE_FRAMES]);
            for ((p, f), t) in params.0.iter_mut().zip(frames).zip(transforms) {
                *p = FrameParams::new(f, t, &cfg);
            }
            inline = Some(params);
        } else {
            // The pinned parameters of this slot may still be read by its previous copy.
            if let Err(e) = slot.event.synchronize() {
                self.release(slot);
                return Err(e);
            }
            if frame_params(&mut slot).len() < n {
                self.release(slot);
                return Err(CudaError::InvalidInput(
                    "pinned parameter buffer is misaligned".into(),
                ));
            }
            for ((p, f), t) in frame_params(&mut slot).iter_mut().zip(frames).zip(transforms) {
                *p = FrameParams::new(f, t, &cfg);
            }
        }
        let keep = frames.iter().filter_map(|f| f.keepalive.clone()).collect();
        let stage = if !self.staging {
            0
        } else {
            match &inline {
                Some(p) => stage_bytes(&p.0[..n], self.pixels_per_thread, self.block),
                None => stage_bytes(&frame_params(&mut slot)[..n], self.pixels_per_thread, self.block),
            }
        };
        let nv12 = self.nv12_path
            && stage == 0
            && self.min_blocks == 0
            && inline.as_ref().is_some_and(|p| p.0[..n].iter().all(nv12_fast));
        let lease = self.launch(slot, n, keep, inline.as_ref(), stage, nv12)?;
        self.last_nv12 = nv12;
        let len = n * self.out_row_bytes;
        let ptr = lease.ptr();
        Ok(Tensor {
            name: self.tensor_name.clone(),
            dtype: self.cfg.dtype,
            shape: vec![n, 3, self.cfg.height as usize, self.cfg.width as usize],
            storage: TensorStorage::Device {
                ptr,
                len,
                keepalive: Arc::new(lease),
            },
        })
    }

    fn release(&self, slot: Slot) {
        self.pool.put(slot);
    }

    /// Queues the kernel and the event for `n` frames whose parameters are `inline`
    /// (passed inside the launch), else the first `n` parameters of `slot` (copied to the
    /// device first). On error the slot goes back to the pool (through the lease).
    fn launch(
        &self,
        slot: Slot,
        n: usize,
        frames: Vec<gst::Buffer>,
        inline: Option<&InlineFrames>,
        stage: u32,
        nv12: bool,
    ) -> Result<DeviceTensorLease, CudaError> {
        let lease = DeviceTensorLease::new(slot, self.pool.clone(), n * self.out_row_bytes, frames);
        let slot = lease.slot()?;
        let q = self.runner.queue()?;
        if inline.is_none() {
            // At least one entry, so that the warm-up launch (n = 0) resolves this entry point.
            let bytes = n.max(1) * std::mem::size_of::<FrameParams>();
            // SAFETY: both ranges lie in buffers of max_batch ≥ 1 parameters (n ≤ max_batch);
            // the pinned source is not rewritten before this slot's event has completed.
            unsafe { q.copy_to_device(slot.params_dev.ptr(), slot.params_host.as_ptr(), bytes) }?;
        }
        let mut frames_ptr: u64 = slot.params_dev.ptr();
        let mut out_ptr: u64 = slot.out.ptr();
        let mut norm = NormParams {
            frames: n as i32,
            stage: stage as i32,
            ..self.norm
        };
        let shared = (self.block.0 * self.block.1).div_ceil(32) * 4 * stage;
        // cuLaunchKernel copies the argument values at the call: the inline parameters
        // need not outlive it.
        let (kernel, frames_arg): (&Kernel, *mut c_void) = match inline {
            Some(p) if stage > 0 => (&self.entries.staged, (p as *const InlineFrames).cast_mut().cast()),
            // The small entry point reads the first INLINE_FRAMES_SMALL parameters of the same
            // buffer (cuLaunchKernel copies the kernel's parameter size from the pointer).
            Some(p) if nv12 && self.small_params && n <= INLINE_FRAMES_SMALL => (
                &self.entries.nv12_small,
                (p as *const InlineFrames).cast_mut().cast(),
            ),
            Some(p) if nv12 => (&self.entries.nv12, (p as *const InlineFrames).cast_mut().cast()),
            Some(p) => (&self.entries.inline, (p as *const InlineFrames).cast_mut().cast()),
            None => (&self.entries.device, arg(&mut frames_ptr)),
        };
        let mut args: [*mut c_void; 3] = [frames_arg, arg(&mut out_ptr), arg(&mut norm)];
        let grid = (
            self.cfg.width.div_ceil(self.block.0 * self.pixels_per_thread),
            self.cfg.height.div_ceil(self.block.1),
            n.max(1) as u32,
        );
        // SAFETY: the argument list matches the kernel's signature (the frame parameters
        // by device pointer or by value, the output pointer, NormParams by value, same
        // #[repr(C)] layouts); the output holds n rows; the frames' planes are valid per
        // CudaFrame's contract. The kernel only reads the inline parameters; the entry
        // points were loaded from the runner's module.
        unsafe { q.launch_kernel(kernel, grid, (self.block.0, self.block.1, 1), shared, &mut args) }?;
        // SAFETY: the slot's event was created in the runner's context (Slot::new).
        unsafe { q.record_event(&slot.event) }?;
        Ok(lease)
    }
}

#[cfg(test)]
mod tests;
