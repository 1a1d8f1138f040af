//! [`CudaTiler`]: a batch of device frames composed into one mosaic frame in device memory,
//! with one kernel launch.
//!
//! At construction it compiles `kernels/tiler.cu` with NVRTC for the device's compute
//! capability (once per process and architecture), loads it into the context and creates
//! its own non-blocking stream and event. Per batch it fills one `TileSource` per tile
//! (plane addresses, strides, format, size and the letterbox placement of the tile's
//! frame: 120 bytes) and launches the kernel, which writes every pixel of the output frame
//! (NV12, I420, RGBA, BGRA, RGBx, BGRx, RGB or BGR) in one pass. Grids of up to
//! [`INLINE_TILES`] tiles pass the tile table inside the launch; larger ones copy it from
//! pinned memory first (allocated on the first such grid and reused). Nothing waits on the
//! host: [`KernelRunner::wait`] does, when the caller needs the frame.
//!
//! The output is byte-identical to the CPU tiler's (`trttiler`: letterboxed bilinear
//! sampling of [`crate::video::FrameReader`], rounded to 8 bits, converted with
//! [`crate::video::write_rgba`]), see the kernel's header.

use std::ffi::{c_void, CStr};

use crate::cuda::driver::{DeviceBuffer, DeviceContext, PinnedBuffer};
use crate::cuda::frame::{CudaFrame, FrameLayout};
use crate::cuda::runner::arg;
use crate::cuda::CudaError;
use crate::cuda::{KernelRunner, KernelSource};
use crate::geometry::LetterboxTransform;
use crate::video::color::YuvCoefficients;

/// CUDA C source of the kernel.
pub const KERNEL_SOURCE: &str = include_str!("../../../kernels/tiler.cu");
const KERNEL_FILE: &str = "tiler.cu";

/// The kernel file, for the loader and the NVRTC compile test.
pub const KERNEL: KernelSource = KernelSource {
    file: KERNEL_FILE,
    source: KERNEL_SOURCE,
};
const KERNEL_NAME: &CStr = c"trtv_tile";
const KERNEL_NAME_INLINE: &CStr = c"trtv_tile_inline";
/// Indices of the two entry points in the runner.
const TABLE: usize = 0;
const INLINE: usize = 1;
/// Grids of up to this many tiles pass their tile table inside the kernel launch;
/// `INLINE_TILES` in tiler.cu.
pub const INLINE_TILES: usize = 32;
/// Largest grid (trttiler's `rows` and `columns` go up to 64).
pub const MAX_TILES: usize = 64 * 64;
/// Thread block: 32 x 8 threads, each writing a 2x2 pixel block.
const BLOCK_X: u32 = 32;
const BLOCK_Y: u32 = 8;

/// `KIND_NONE` in tiler.cu: a tile without a frame. The other `KIND_*` (sources) and
/// `OUT_*` (output) values are those of `CudaFrame::kernel_layout`.
const KIND_NONE: i32 = -1;

/// One tile's source frame and its placement (`TileSource` in tiler.cu, the layout of the
/// preprocessing kernel's frame parameters).
type TileSource = crate::ops::preprocess::cuda::FrameParams;

/// The output frame and the grid; layout shared with `MosaicTarget` in tiler.cu.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct MosaicTarget {
    plane: [u64; 3],
    stride: [i32; 3],
    kind: i32,
    bpp: i32,
    off_r: i32,
    off_g: i32,
    off_b: i32,
    off_a: i32,
    width: i32,
    height: i32,
    tile_w: i32,
    tile_h: i32,
    rows: i32,
    cols: i32,
    /// RGB → YUV of the output (4:2:0): luma offset, then the integer Y, U and V
    /// coefficients ([`crate::video::color::YuvCoefficients`]).
    y_offset: i32,
    int_yuv: [i32; 9],
    reserved: i32,
}

/// The tile table of a grid of up to [`INLINE_TILES`] tiles, passed by value;
/// `InlineTiles` in tiler.cu.
#[repr(C)]
#[derive(Clone, Copy)]
struct InlineTiles([TileSource; INLINE_TILES]);

const _: () = assert!(std::mem::size_of::<TileSource>() == 120);
const _: () = assert!(std::mem::size_of::<MosaicTarget>() == 128);
// With the MosaicTarget within the 4 KiB of kernel parameters.
const _: () = assert!(std::mem::size_of::<InlineTiles>() == 3840);

impl TileSource {
    /// No frame in this tile (black).
    fn empty() -> Self {
        Self {
            kind: KIND_NONE,
            scale_x: 1.0,
            scale_y: 1.0,
            ..Self::default()
        }
    }

    /// Frame `f` letterboxed into a `tw x th` tile, as the CPU tiler places it.
    fn tile(f: &CudaFrame, tw: u32, th: u32) -> Self {
        Self::placed(
            f,
            &LetterboxTransform::letterbox(f.width, f.height, tw, th),
            tw,
            th,
        )
    }
}

impl MosaicTarget {
    /// `out` split into `rows x cols` tiles of `out.width / cols x out.height / rows`.
    fn new(out: &CudaFrame, rows: u32, cols: u32) -> Self {
        let l = out.kernel_layout();
        Self {
            plane: out.planes,
            stride: out.kernel_strides(),
            kind: l.kind,
            bpp: l.bpp,
            off_r: l.r,
            off_g: l.g,
            off_b: l.b,
            // The 4-byte formats keep their alpha or padding byte in the remaining offset.
            off_a: if l.bpp == 4 { 6 - l.r - l.g - l.b } else { 0 },
            width: out.width as i32,
            height: out.height as i32,
            tile_w: (out.width / cols.max(1)) as i32,
            tile_h: (out.height / rows.max(1)) as i32,
            rows: rows as i32,
            cols: cols as i32,
            y_offset: out.colors.y_offset,
            int_yuv: {
                let c = &out.colors;
                [
                    c.int_y[0], c.int_y[1], c.int_y[2], c.int_u[0], c.int_u[1], c.int_u[2], c.int_v[0],
                    c.int_v[1], c.int_v[2],
                ]
            },
            reserved: 0,
        }
    }
}

/// Pinned host memory and device memory for the tile table of large grids.
struct Table {
    host: PinnedBuffer,
    device: DeviceBuffer,
    tiles: usize,
}

impl Table {
    fn new(ctx: &DeviceContext, tiles: usize) -> Result<Self, CudaError> {
        let len = tiles * std::mem::size_of::<TileSource>();
        Ok(Self {
            host: PinnedBuffer::new(ctx, len)?,
            device: DeviceBuffer::new(ctx, len)?,
            tiles,
        })
    }

    fn entries(&mut self) -> &mut [TileSource] {
        let bytes = self.host.as_mut_slice();
        // SAFETY: TileSource is plain old data (any bit pattern is valid); align_to_mut
        // only yields the aligned middle (cuMemHostAlloc returns page-aligned memory).
        let (_, entries, _) = unsafe { bytes.align_to_mut::<TileSource>() };
        entries
    }
}

/// Batched GPU mosaic composition (see the module docs). Its [`KernelRunner`] (stream,
/// event, `wait`, `arch`) is reached through `Deref`.
pub struct CudaTiler {
    // Field order is drop order: the runner waits for its stream and unloads the module,
    // then the memory is freed.
    runner: KernelRunner,
    table: Option<Table>,
    /// An RGBA image composed on the CPU, on its way into an output frame.
    rgba: Option<DeviceBuffer>,
    /// The output frame of [`CudaTiler::compose_to_host`], on its way to the host.
    staging: Option<DeviceBuffer>,
}

impl std::fmt::Debug for CudaTiler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaTiler")
            .field("runner", &self.runner)
            .field("table", &self.table.as_ref().map(|t| t.tiles))
            .finish()
    }
}

impl std::ops::Deref for CudaTiler {
    type Target = KernelRunner;

    fn deref(&self) -> &KernelRunner {
        &self.runner
    }
}

impl CudaTiler {
    /// Compiles and loads the kernel in `ctx`, creates the stream and the event.
    pub fn new(ctx: &DeviceContext) -> Result<Self, CudaError> {
        const WHAT: &str = "creating the CUDA tiler";
        let runner = KernelRunner::new(WHAT, ctx, &KERNEL, &[KERNEL_NAME, KERNEL_NAME_INLINE])?;
        crate::cuda::guard(WHAT, || Self::warm_up(runner))
    }

    fn warm_up(runner: KernelRunner) -> Result<Self, CudaError> {
        let mut this = Self {
            table: Some(Table::new(runner.context(), 1)?),
            runner,
            rgba: None,
            staging: None,
        };
        // Resolve every driver entry point of the hot path now (cudarc loads symbols
        // lazily and panics on a missing one): an empty launch of each entry point and
        // the table copy, then wait.
        let empty = MosaicTarget::default();
        this.enqueue(&empty, (1, 1), None, 1)?;
        this.enqueue(
            &empty,
            (1, 1),
            Some(&InlineTiles([TileSource::empty(); INLINE_TILES])),
            0,
        )?;
        this.wait()?;
        this.table = None;
        Ok(this)
    }

    /// Composes `out` as a grid of `rows x columns` tiles of `out.width() / columns x
    /// out.height() / rows` pixels: tile `i` (row-major) shows `tiles[i]` letterboxed
    /// (black bars), `None` a black tile; pixels right of and below the grid are black.
    /// One launch on [`KernelRunner::stream`] (plus one copy of the tile table for grids of
    /// more than [`INLINE_TILES`] tiles), then the event; returns without waiting.
    ///
    /// The frames and `out` must stay mapped (and `out` writable) until
    /// [`KernelRunner::wait`] returns or the event completes.
    pub fn compose(
        &mut self,
        tiles: &[Option<CudaFrame>],
        rows: u32,
        columns: u32,
        out: &CudaFrame,
    ) -> Result<(), CudaError> {
        let n = (rows as usize) * (columns as usize);
        if rows == 0 || columns == 0 || n > MAX_TILES || tiles.len() != n {
            return Err(CudaError::InvalidInput(format!(
                "a {rows}x{columns} grid (at most {MAX_TILES} tiles) needs one entry per tile, got {}",
                tiles.len()
            )));
        }
        let target = MosaicTarget::new(out, rows, columns);
        let (tw, th) = (target.tile_w as u32, target.tile_h as u32);
        let source = |t: &Option<CudaFrame>| match t {
            Some(f) if tw > 0 && th > 0 => TileSource::tile(f, tw, th),
            _ => TileSource::empty(),
        };
        let grid = launch_grid(out);
        if n <= INLINE_TILES {
            let mut inline = InlineTiles([TileSource::empty(); INLINE_TILES]);
            for (p, t) in inline.0.iter_mut().zip(tiles) {
                *p = source(t);
            }
            return crate::cuda::guard("composing the mosaic", || {
                self.enqueue(&target, grid, Some(&inline), 0)
            });
        }
        // The pinned table may still be read by the previous copy.
        self.wait()?;
        if self.table.as_ref().is_none_or(|t| t.tiles < n) {
            self.table = Some(Table::new(self.runner.context(), n)?);
        }
        let Some(table) = self.table.as_mut() else {
            return Err(CudaError::InvalidInput("no tile table".into()));
        };
        let entries = table.entries();
        if entries.len() < n {
            return Err(CudaError::InvalidInput("pinned tile table is misaligned".into()));
        }
        for (p, t) in entries.iter_mut().zip(tiles) {
            *p = source(t);
        }
        crate::cuda::guard("composing the mosaic", || self.enqueue(&target, grid, None, n))
    }

    /// Composes like [`CudaTiler::compose`] a `format` frame of `width x height` into
    /// host memory: `planes` (GStreamer plane order) with `strides`, YUV written with
    /// `colors` (the output's colorimetry). The mosaic is composed
    /// in a device frame of the same strides (allocated on first use, grown when needed)
    /// and copied down plane by plane: one frame crosses PCIe instead of every source
    /// frame. Returns once `planes` hold the mosaic.
    #[allow(clippy::too_many_arguments)]
    pub fn compose_to_host(
        &mut self,
        tiles: &[Option<CudaFrame>],
        rows: u32,
        columns: u32,
        format: gst_video::VideoFormat,
        (width, height): (u32, u32),
        colors: YuvCoefficients,
        planes: &mut [&mut [u8]],
        strides: &[usize],
    ) -> Result<(), CudaError> {
        let layout = FrameLayout::of(format).ok_or(CudaError::UnsupportedFormat(format))?;
        let n = layout.n_planes();
        if planes.len() < n || strides.len() < n || width == 0 || height == 0 {
            return Err(CudaError::InvalidInput(format!(
                "a {format:?} {width}x{height} frame needs {n} planes and strides"
            )));
        }
        // Each device plane at a 256-byte aligned offset, `stride * rows` bytes.
        let (mut offsets, mut extents, mut total) = ([0usize; 3], [0usize; 3], 0usize);
        for p in 0..n {
            let (row, rows) = layout.plane_geometry(p, width as usize, height as usize);
            extents[p] = (rows - 1) * strides[p] + row;
            if strides[p] < row || planes[p].len() < extents[p] {
                return Err(CudaError::InvalidInput(format!(
                    "plane {p} of a {format:?} {width}x{height} frame: {} bytes with stride {}",
                    planes[p].len(),
                    strides[p]
                )));
            }
            offsets[p] = total;
            total = (total + strides[p] * rows).next_multiple_of(256);
        }
        // The staging frame may still be written by the previous launch.
        self.wait()?;
        if self.staging.as_ref().is_none_or(|b| b.len() < total) {
            self.staging = Some(DeviceBuffer::new(self.runner.context(), total)?);
        }
        let Some(base) = self.staging.as_ref().map(DeviceBuffer::ptr) else {
            return Err(CudaError::InvalidInput("no staging frame".into()));
        };
        let ptrs = offsets.map(|o| base + o as u64);
        // SAFETY: each plane lies inside the staging buffer (offsets and sizes above),
        // which lives as long as `self`; launches are awaited before it is replaced.
        let out = unsafe { CudaFrame::from_raw(format, width, height, &ptrs[..n], &strides[..n]) }?
            .with_colors(colors);
        self.compose(tiles, rows, columns, &out)?;
        self.wait()?;
        for p in 0..n {
            crate::cuda::copy_device_to_host(
                self.runner.context(),
                ptrs[p],
                extents[p],
                &mut planes[p][..extents[p]],
            )?;
        }
        Ok(())
    }

    /// Writes a tightly packed `out.width() x out.height()` RGBA image (alpha ignored)
    /// into `out`, converted exactly as [`crate::video::write_rgba`] does: a mosaic
    /// composed on the CPU on its way into a CUDA output frame. One copy and one launch on
    /// [`KernelRunner::stream`]; `rgba` may be reused as soon as this returns.
    pub fn write_rgba(&mut self, rgba: &[u8], out: &CudaFrame) -> Result<(), CudaError> {
        let (w, h) = (out.width, out.height);
        let len = w as usize * h as usize * 4;
        if rgba.len() < len {
            return Err(CudaError::InvalidInput(format!(
                "an RGBA image of {} bytes for a {w}x{h} frame",
                rgba.len()
            )));
        }
        // The device image may still be read by the previous launch.
        self.wait()?;
        if self.rgba.as_ref().is_none_or(|b| b.len() < len) {
            self.rgba = Some(DeviceBuffer::new(self.runner.context(), len)?);
        }
        let Some(image) = self.rgba.as_ref() else {
            return Err(CudaError::InvalidInput("no RGBA staging buffer".into()));
        };
        // SAFETY: the buffer holds `h` rows of `w * 4` bytes and lives as long as `self`,
        // whose launches are awaited before it is replaced or freed.
        let src = unsafe {
            CudaFrame::from_raw(
                gst_video::VideoFormat::Rgba,
                w,
                h,
                &[image.ptr()],
                &[w as usize * 4],
            )
        }?;
        let dst = image.ptr();
        {
            let q = self.runner.queue()?;
            // SAFETY: `len` bytes fit the device buffer; the source is a live slice of at
            // least `len` bytes. A copy from pageable memory returns once the source has
            // been staged, so the slice may be reused afterwards.
            unsafe { q.copy_to_device(dst, rgba.as_ptr().cast(), len) }?;
        }
        self.compose(&[Some(src)], 1, 1, out)
    }

    /// Queues the copy of the first `copy` entries of the tile table (when `inline` is
    /// `None`), the kernel over `grid` and the event.
    fn enqueue(
        &self,
        target: &MosaicTarget,
        grid: (u32, u32),
        inline: Option<&InlineTiles>,
        copy: usize,
    ) -> Result<(), CudaError> {
        let q = self.runner.queue()?;
        let mut table_ptr: u64 = 0;
        if inline.is_none() {
            let Some(table) = self.table.as_ref() else {
                return Err(CudaError::InvalidInput("no tile table".into()));
            };
            // SAFETY: `copy` ≤ table.tiles entries lie in both buffers; the pinned source
            // is not rewritten before the event recorded below has completed.
            unsafe {
                q.copy_to_device(
                    table.device.ptr(),
                    table.host.as_ptr(),
                    copy.min(table.tiles) * std::mem::size_of::<TileSource>(),
                )
            }?;
            table_ptr = table.device.ptr();
        }
        let mut target = *target;
        // cuLaunchKernel copies the argument values at the call: the inline table need
        // not outlive it.
        let (kernel, tiles_arg): (usize, *mut c_void) = match inline {
            Some(t) => (INLINE, (t as *const InlineTiles).cast_mut().cast()),
            None => (TABLE, arg(&mut table_ptr)),
        };
        let mut args: [*mut c_void; 2] = [tiles_arg, arg(&mut target)];
        // SAFETY: the argument list matches the kernel's signature (the tile table by
        // device pointer or by value, MosaicTarget by value, same #[repr(C)] layouts); the
        // table holds rows * cols entries whose planes are valid per CudaFrame's contract,
        // as are the output planes. The kernel only reads the inline table.
        unsafe { q.launch(kernel, (grid.0, grid.1, 1), (BLOCK_X, BLOCK_Y, 1), &mut args) }?;
        q.record()
    }
}

/// Blocks of the launch over `out`: each thread writes a 2x2 pixel block.
fn launch_grid(out: &CudaFrame) -> (u32, u32) {
    (
        out.width.div_ceil(2).div_ceil(BLOCK_X).max(1),
        out.height.div_ceil(2).div_ceil(BLOCK_Y).max(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use gst_video::VideoFormat;

    use crate::cuda::frame::{KIND_I420, KIND_PACKED, KIND_PACKED4};
    const OUT_PACKED: i32 = 0;
    const OUT_PACKED4: i32 = 1;
    const OUT_NV12: i32 = 2;

    fn frame(format: VideoFormat, w: u32, h: u32, planes: &[u64], strides: &[usize]) -> CudaFrame {
        // SAFETY: never read.
        unsafe { CudaFrame::from_raw(format, w, h, planes, strides) }.unwrap()
    }

    #[test]
    fn tiles_follow_the_cpu_geometry() {
        // A 1920x1080 frame into a 640x360 tile fills it; into 640x640 it is letterboxed.
        let f = frame(VideoFormat::Bgrx, 1920, 1080, &[0x10000], &[7680]);
        let t = TileSource::tile(&f, 640, 360);
        assert_eq!((t.kind, t.off_r, t.off_b, t.bpp), (KIND_PACKED4, 2, 0, 4));
        assert_eq!((t.x0, t.x1, t.y0, t.y1), (0, 640, 0, 360));
        let t = TileSource::tile(&f, 640, 640);
        assert_eq!((t.x0, t.x1, t.y0, t.y1), (0, 640, 140, 500));
        assert_eq!((t.pad_x, t.pad_y), (0.0, 140.0));
        let f = frame(VideoFormat::Rgb, 641, 479, &[0x10001], &[1923]);
        let t = TileSource::tile(&f, 320, 240);
        assert_eq!((t.kind, t.bpp), (KIND_PACKED, 3));
        let l = LetterboxTransform::letterbox(641, 479, 320, 240);
        assert_eq!((t.scale_x, t.pad_x, t.pad_y), (l.scale_x, l.pad_x, l.pad_y));
        let f = frame(
            VideoFormat::I420,
            64,
            48,
            &[0x1000, 0x2000, 0x3000],
            &[64, 32, 32],
        );
        assert_eq!(TileSource::tile(&f, 32, 24).kind, KIND_I420);
        assert_eq!(TileSource::empty().kind, KIND_NONE);
    }

    #[test]
    fn targets_follow_the_output() {
        let out = frame(VideoFormat::Bgrx, 1280, 720, &[0x10000], &[5120]);
        let m = MosaicTarget::new(&out, 3, 3);
        assert_eq!(
            (m.kind, m.off_r, m.off_g, m.off_b, m.off_a),
            (OUT_PACKED4, 2, 1, 0, 3)
        );
        assert_eq!((m.tile_w, m.tile_h, m.rows, m.cols), (426, 240, 3, 3));
        let out = frame(VideoFormat::Rgba, 1280, 720, &[0x10001], &[5121]);
        assert_eq!(MosaicTarget::new(&out, 1, 1).kind, OUT_PACKED);
        let out = frame(VideoFormat::Bgr, 16, 16, &[0x10000], &[48]);
        let m = MosaicTarget::new(&out, 1, 1);
        assert_eq!((m.kind, m.bpp, m.off_r, m.off_a), (OUT_PACKED, 3, 2, 0));
        let out = frame(VideoFormat::Nv12, 641, 479, &[0x1000, 0x9000], &[768, 768]);
        let m = MosaicTarget::new(&out, 2, 4);
        assert_eq!(
            (m.kind, m.tile_w, m.tile_h, m.stride[1]),
            (OUT_NV12, 160, 239, 768)
        );
        assert_eq!(launch_grid(&out), (11, 30));
    }

    /// Compiles the kernel where NVRTC is installed (no GPU needed); skipped elsewhere.
    #[test]
    fn nvrtc_compiles_the_kernel() {
        let Some(text) = crate::ops::kernels::sm90_ptx_for_test(KERNEL_SOURCE, KERNEL_FILE) else {
            return;
        };
        for name in [KERNEL_NAME, KERNEL_NAME_INLINE] {
            let entry = format!(".entry {}(", name.to_str().unwrap());
            assert!(text.contains(&entry), "{entry} missing");
        }
        assert!(
            text.contains(".param .align 8 .b8 trtv_tile_inline_param_0[3840]"),
            "the inline tile table is one 3840-byte argument"
        );
        assert!(!text.contains("fma.rn.f32"), "contraction must be off");
        assert!(
            text.contains("div.rn.f32") && !text.contains("div.approx"),
            "IEEE division expected"
        );
        assert!(!text.contains(".local"), "no local memory expected");
    }

    #[test]
    fn kernel_source_matches_the_layouts() {
        for needle in [
            "#define KIND_NONE -1",
            "#define KIND_PACKED4 1",
            "#define KIND_NV12 2",
            "#define KIND_I420 3",
            "#define OUT_PACKED4 1",
            "#define OUT_NV12 2",
            "#define OUT_I420 3",
            "unsigned long long plane[3];",
            "int stride[3];",
            "int off_a;",
            "int tile_w, tile_h;",
        ] {
            assert!(KERNEL_SOURCE.contains(needle), "{needle}");
        }
        assert!(KERNEL_SOURCE.contains(&format!("#define INLINE_TILES {INLINE_TILES}\n")));
        // YUV converts with each frame's and the output's coefficients (no constants).
        let compiled = crate::cuda::nvrtc::expand_includes(KERNEL_SOURCE);
        assert!(compiled.contains("yuv_to_rgb(yy, uu, vv, p.yuv, rgb);"));
        assert!(KERNEL_SOURCE.contains("m.yuv[0] * r + m.yuv[1] * g + m.yuv[2] * b + 128"));
        assert!(!compiled.contains("1.164383f") && !KERNEL_SOURCE.contains("66 * r"));
    }

    #[test]
    fn handles_are_thread_safe() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<CudaTiler>();
    }
}
