//! [`CudaOverlay`]: draws a batch's overlay command list ([`crate::overlay`]) in place on
//! device frames, with one kernel launch.
//!
//! At construction it compiles `kernels/overlay.cu` with NVRTC (once per process and
//! architecture), loads it, creates its own non-blocking stream and event, uploads the
//! glyph atlas of the bitmap font once, and allocates a staging area (pinned host memory
//! and device memory of the same size, 1 MiB, grown only when a batch needs more). Per
//! batch it writes the per-frame table, the commands and the host masks' bits into the
//! pinned staging area, queues one host-to-device copy and one launch on its stream, and
//! records its event; device masks are read where they are, after the stream waits on
//! their producers' events. Nothing is allocated per batch once the staging area is
//! large enough.

use std::ffi::{c_void, CStr};

use cudarc::driver::sys;

use super::driver::{check, DeviceBuffer, DeviceContext, Event, Kernel, PinnedBuffer, Stream};
use super::frame::{CudaFrame, FrameLayout};
use super::nvrtc::{compile, nvrtc_arch, require_nvrtc};
use super::CudaError;
use crate::overlay::{DrawCommand, OverlayCommands};

/// CUDA C source of the kernel.
pub const KERNEL_SOURCE: &str = include_str!("../../kernels/overlay.cu");
const KERNEL_NAME: &CStr = c"trtv_overlay";
const KERNEL_FILE: &str = "overlay.cu";
/// Pixels per tile side (a block of 16x16 threads, each owning a 2x2 pixel block).
const TILE: u32 = 32;
const BLOCK: u32 = TILE / 2;
/// Initial size of the staging area.
const INITIAL_STAGING: usize = 1 << 20;
/// Alignment of the sections of the staging area.
const SECTION_ALIGN: usize = 256;
/// Largest batch (the grid's z dimension).
pub const MAX_FRAMES: usize = 65535;

const LAYOUT_PACKED: i32 = 0;
const LAYOUT_NV12: i32 = 1;
const LAYOUT_I420: i32 = 2;

/// Per-frame table entry; layout shared with `FrameTarget` in overlay.cu.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct FrameTarget {
    plane: [u64; 3],
    stride: [i32; 3],
    layout: i32,
    bpp: i32,
    off_r: i32,
    off_g: i32,
    off_b: i32,
    width: i32,
    height: i32,
    first: i32,
    count: i32,
    bounds: [i32; 4],
}

const _: () = assert!(std::mem::size_of::<FrameTarget>() == 88);

impl FrameTarget {
    fn new(f: &CudaFrame, first: u32, count: u32, bounds: [i32; 4]) -> Self {
        let (layout, bpp, r, g, b) = match f.layout {
            FrameLayout::Packed { bpp, r, g, b } => (LAYOUT_PACKED, bpp, r, g, b),
            FrameLayout::Nv12 => (LAYOUT_NV12, 1, 0, 0, 0),
            FrameLayout::I420 => (LAYOUT_I420, 1, 0, 0, 0),
        };
        Self {
            plane: f.planes,
            // Checked ≤ i32::MAX by CudaFrame::from_raw.
            stride: f.strides.map(|s| s as i32),
            layout,
            bpp: bpp as i32,
            off_r: r as i32,
            off_g: g as i32,
            off_b: b as i32,
            width: f.width as i32,
            height: f.height as i32,
            first: first as i32,
            count: count as i32,
            bounds,
        }
    }
}

/// Plain `#[repr(C)]` records without padding, copied byte for byte to the device.
///
/// # Safety
/// Implementors have no padding bytes and no pointers to host memory.
unsafe trait Record: Copy {}
// SAFETY: 88 bytes of integers, no padding (asserted above).
unsafe impl Record for FrameTarget {}
// SAFETY: 56 bytes of integers, no padding (asserted in crate::overlay).
unsafe impl Record for DrawCommand {}
// SAFETY: bytes.
unsafe impl Record for u8 {}

/// Copies `items` into `dst` at byte `offset` (the caller sized `dst`).
fn put<T: Record>(dst: &mut [u8], offset: usize, items: &[T]) {
    let len = std::mem::size_of_val(items);
    // SAFETY: Record types are padding-free plain data, so their bytes are initialised.
    let src = unsafe { std::slice::from_raw_parts(items.as_ptr().cast::<u8>(), len) };
    dst[offset..offset + len].copy_from_slice(src);
}

/// Byte offsets of the sections of one batch in the staging area, and its total size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sections {
    commands: usize,
    masks: usize,
    total: usize,
}

impl Sections {
    fn new(frames: usize, commands: usize, mask_bytes: usize) -> Self {
        let commands_at = (frames * std::mem::size_of::<FrameTarget>()).next_multiple_of(SECTION_ALIGN);
        let masks_at =
            (commands_at + commands * std::mem::size_of::<DrawCommand>()).next_multiple_of(SECTION_ALIGN);
        Self {
            commands: commands_at,
            masks: masks_at,
            total: masks_at + mask_bytes,
        }
    }
}

/// Pinned host memory and device memory of one size.
struct Staging {
    host: PinnedBuffer,
    device: DeviceBuffer,
    len: usize,
}

impl Staging {
    fn new(ctx: &DeviceContext, len: usize) -> Result<Self, CudaError> {
        Ok(Self {
            host: PinnedBuffer::new(ctx, len)?,
            device: DeviceBuffer::new(ctx, len)?,
            len,
        })
    }
}

/// Batched GPU overlay drawing (see the module docs).
pub struct CudaOverlay {
    // Field order is drop order: the stream is synchronised in Drop, then the module is
    // unloaded, then the memory is freed.
    stream: Stream,
    kernel: Kernel,
    done: Event,
    staging: Staging,
    atlas: DeviceBuffer,
    ctx: DeviceContext,
    arch: String,
}

impl std::fmt::Debug for CudaOverlay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaOverlay")
            .field("ctx", &self.ctx)
            .field("arch", &self.arch)
            .field("staging", &self.staging.len)
            .finish()
    }
}

impl CudaOverlay {
    /// Compiles and loads the kernel in `ctx`, creates the stream and event, uploads the
    /// glyph atlas and allocates the staging area.
    pub fn new(ctx: &DeviceContext) -> Result<Self, CudaError> {
        super::probe()?;
        require_nvrtc()?;
        super::guard("creating the CUDA overlay", || Self::build(ctx))
    }

    /// [`CudaOverlay::new`] in the CUcontext of a GStreamer CUDA context (the element's,
    /// from [`super::ensure_element_context`]).
    pub fn for_gst(ctx: &super::CudaContext) -> Result<Self, CudaError> {
        Self::new(&ctx.device_context()?)
    }

    fn build(ctx: &DeviceContext) -> Result<Self, CudaError> {
        let arch = nvrtc_arch(ctx.compute_capability()?)?;
        let ptx = compile(KERNEL_SOURCE, KERNEL_FILE, &arch)?;
        let kernel = Kernel::load(ctx, &ptx, KERNEL_NAME)?;
        let glyphs: Vec<u8> = crate::font::atlas().iter().flatten().copied().collect();
        let atlas = DeviceBuffer::new(ctx, glyphs.len())?;
        atlas.copy_from_host(&glyphs)?;
        let mut this = Self {
            stream: Stream::new(ctx)?,
            kernel,
            done: Event::new(ctx, false)?,
            staging: Staging::new(ctx, INITIAL_STAGING)?,
            atlas,
            ctx: ctx.clone(),
            arch,
        };
        // Resolve every driver entry point of the hot path now (cudarc loads symbols
        // lazily and panics on a missing one): one launch over a frame without commands.
        put(this.staging.host.as_mut_slice(), 0, &[FrameTarget::default()]);
        this.enqueue(&[], Sections::new(1, 0, 0), (1, 1, 1))?;
        this.wait()?;
        Ok(this)
    }

    /// NVRTC target the kernel was compiled for, e.g. `compute_90`.
    pub fn arch(&self) -> &str {
        &self.arch
    }

    /// The context everything runs in.
    pub fn context(&self) -> &DeviceContext {
        &self.ctx
    }

    /// The stream the kernel runs on (non-blocking, owned by the overlay).
    pub fn stream(&self) -> sys::CUstream {
        self.stream.raw()
    }

    /// The event recorded after the last launch (for consumers that order their own
    /// streams after the drawing: `cuStreamWaitEvent(stream, event, 0)`).
    pub fn event(&self) -> sys::CUevent {
        self.done.raw()
    }

    /// Bytes of the staging area (grows to the largest batch seen).
    pub fn staging_size(&self) -> usize {
        self.staging.len
    }

    /// Blocks until the last launch has drawn everything.
    pub fn wait(&self) -> Result<(), CudaError> {
        self.done.synchronize()
    }

    /// Draws `list` on `frames` (frame `i` gets `list.frames[i]`): one copy and one
    /// launch on [`CudaOverlay::stream`], then the event; returns without waiting. False
    /// when there was nothing to draw (nothing queued).
    ///
    /// The frames must stay mapped for writing until [`CudaOverlay::wait`] returns (or
    /// the event completes); device masks of the list must be valid until then too.
    pub fn draw(&mut self, frames: &[CudaFrame], list: &OverlayCommands) -> Result<bool, CudaError> {
        let n = frames.len();
        if n != list.frames.len() || n > MAX_FRAMES {
            return Err(CudaError::InvalidInput(format!(
                "{n} frames for a command list of {} frames (at most {MAX_FRAMES})",
                list.frames.len()
            )));
        }
        if list.commands.is_empty() {
            return Ok(false);
        }
        for (i, (f, fc)) in frames.iter().zip(&list.frames).enumerate() {
            let end = fc.first as usize + fc.count as usize;
            let in_frame = fc.count == 0
                || (fc.bounds[2] as i64 <= 2 * f.width.div_ceil(2) as i64
                    && fc.bounds[3] as i64 <= 2 * f.height.div_ceil(2) as i64);
            if end > list.commands.len() || !in_frame {
                return Err(CudaError::InvalidInput(format!(
                    "the commands of frame {i} do not fit its {}x{} pixels or the list",
                    f.width, f.height
                )));
            }
        }
        let sections = Sections::new(n, list.commands.len(), list.mask_bytes.len());
        // The pinned staging area may still be read by the previous copy.
        self.wait()?;
        if sections.total > self.staging.len {
            let len = sections.total.next_power_of_two().max(INITIAL_STAGING);
            self.staging = Staging::new(&self.ctx, len)?;
        }
        let host = self.staging.host.as_mut_slice();
        for (i, (f, fc)) in frames.iter().zip(&list.frames).enumerate() {
            let target = FrameTarget::new(f, fc.first, fc.count, fc.bounds);
            put(host, i * std::mem::size_of::<FrameTarget>(), &[target]);
        }
        put(host, sections.commands, &list.commands);
        put(host, sections.masks, &list.mask_bytes);
        let (mut tiles_x, mut tiles_y) = (1, 1);
        for f in frames {
            tiles_x = tiles_x.max((2 * f.width.div_ceil(2)).div_ceil(TILE));
            tiles_y = tiles_y.max((2 * f.height.div_ceil(2)).div_ceil(TILE));
        }
        super::guard("drawing the overlay", || {
            self.enqueue(&list.device_events, sections, (tiles_x, tiles_y, n as u32))
        })?;
        Ok(true)
    }

    /// Queues the waits on `events`, the copy of the first `sections.total` staging bytes,
    /// the kernel over `grid` and the event.
    fn enqueue(&self, events: &[u64], sections: Sections, grid: (u32, u32, u32)) -> Result<(), CudaError> {
        let stream = self.stream.raw();
        let _g = self.ctx.push()?;
        for &e in events {
            // SAFETY: the producer of each device mask keeps its event alive with the
            // mask (DeviceMask::keepalive); our stream is live.
            check(
                unsafe { sys::cuStreamWaitEvent(stream, e as sys::CUevent, 0) },
                "cuStreamWaitEvent",
            )?;
        }
        // SAFETY: both ranges lie in the staging buffers (total ≤ len); the pinned source
        // is not rewritten before the event recorded below has completed.
        check(
            unsafe {
                sys::cuMemcpyHtoDAsync_v2(
                    self.staging.device.ptr(),
                    self.staging.host.as_ptr(),
                    sections.total,
                    stream,
                )
            },
            "cuMemcpyHtoDAsync",
        )?;
        let base = self.staging.device.ptr();
        let mut frames_ptr: u64 = base;
        let mut commands_ptr: u64 = base + sections.commands as u64;
        let mut atlas_ptr: u64 = self.atlas.ptr();
        let mut masks_ptr: u64 = base + sections.masks as u64;
        let mut args: [*mut c_void; 4] = [
            (&mut frames_ptr as *mut u64).cast(),
            (&mut commands_ptr as *mut u64).cast(),
            (&mut atlas_ptr as *mut u64).cast(),
            (&mut masks_ptr as *mut u64).cast(),
        ];
        // SAFETY: the argument list matches the kernel's signature (four device
        // pointers); the frame table holds grid.2 entries whose commands lie in the
        // command section; the frames' planes are valid and mapped per `draw`'s contract.
        unsafe { self.kernel.launch(grid, (BLOCK, BLOCK, 1), stream, &mut args) }?;
        // SAFETY: the overlay's own live stream, same context as the event.
        unsafe { self.done.record(stream) }
    }
}

impl Drop for CudaOverlay {
    fn drop(&mut self) {
        // Work in flight must end before the module is unloaded and the memory freed.
        let _ = self.stream.synchronize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_aligned_and_sized() {
        let s = Sections::new(3, 10, 7);
        assert_eq!(s.commands, 512); // 264 bytes of frames, rounded up
        assert_eq!(s.masks, 1280); // + 560 bytes of commands, rounded up
        assert_eq!(s.total, s.masks + 7);
        assert_eq!(Sections::new(1, 0, 0).total, 256);
    }

    #[test]
    fn frame_targets_follow_the_frames() {
        // SAFETY: never read.
        let f = unsafe { CudaFrame::from_raw(gst_video::VideoFormat::Bgrx, 641, 479, &[0x10000], &[2816]) }
            .unwrap();
        let t = FrameTarget::new(&f, 5, 9, [1, 2, 3, 4]);
        assert_eq!(
            (t.layout, t.bpp, t.off_r, t.off_g, t.off_b),
            (LAYOUT_PACKED, 4, 2, 1, 0)
        );
        assert_eq!(
            (t.width, t.height, t.first, t.count, t.stride[0]),
            (641, 479, 5, 9, 2816)
        );
        // SAFETY: never read.
        let f = unsafe {
            CudaFrame::from_raw(
                gst_video::VideoFormat::Nv12,
                64,
                48,
                &[0x1000, 0x9000],
                &[256, 256],
            )
        }
        .unwrap();
        let t = FrameTarget::new(&f, 0, 1, [0; 4]);
        assert_eq!((t.layout, t.plane[1], t.stride[1]), (LAYOUT_NV12, 0x9000, 256));
        let mut bytes = vec![0u8; 88];
        put(&mut bytes, 0, &[t]);
        assert_eq!(&bytes[24..28], &256i32.to_ne_bytes());
        assert_eq!(&bytes[36..40], &LAYOUT_NV12.to_ne_bytes());
    }

    #[test]
    fn kernel_source_matches_the_layouts() {
        for needle in [
            "#define CMD_RECT 0",
            "#define CMD_GLYPH 1",
            "#define CMD_MASK_HOST 2",
            "#define CMD_MASK_DEVICE 3",
            "#define LAYOUT_NV12 1",
            "#define LAYOUT_I420 2",
            "#define TILE 32",
            "unsigned long long mask;",
            "int bounds[4];",
            "trtv_overlay",
        ] {
            assert!(KERNEL_SOURCE.contains(needle), "{needle}");
        }
        use crate::overlay::{CMD_GLYPH, CMD_MASK_DEVICE, CMD_MASK_HOST, CMD_RECT};
        assert_eq!(
            (CMD_RECT, CMD_GLYPH, CMD_MASK_HOST, CMD_MASK_DEVICE),
            (0, 1, 2, 3)
        );
        assert_eq!(TILE, 32);
        assert_eq!(KERNEL_NAME.to_str().ok(), Some("trtv_overlay"));
    }

    #[test]
    fn handles_are_thread_safe() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<CudaOverlay>();
    }
}
