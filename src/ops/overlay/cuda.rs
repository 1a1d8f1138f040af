//! [`CudaOverlay`]: draws a batch's overlay command list ([`crate::ops::overlay`]) in place on
//! device frames, with one kernel launch.
//!
//! At construction it compiles `kernels/overlay.cu` with NVRTC (once per process and
//! architecture), loads it, creates its own non-blocking stream and event, uploads the
//! glyph atlas of the bitmap font once, and allocates a staging area (pinned host memory
//! and device memory of the same size, 1 MiB, grown only when a batch needs more). Per
//! batch it writes the per-frame table, the commands and the host masks' bits into the
//! pinned staging area, queues one host-to-device copy and one launch on its stream, and
//! records its event; device masks and dense maps are read where they are, after the
//! stream waits on their producers' events (host dense maps travel in the staging area).
//! The 256-entry colour map of dense layers is uploaded when it changes, not per batch.
//! Nothing is allocated per batch once the staging area is large enough.

use std::ffi::{c_void, CStr};

use cudarc::driver::sys;

use crate::cuda::driver::{DeviceBuffer, DeviceContext, PinnedBuffer};
use crate::cuda::frame::{CudaFrame, FrameLayout};
use crate::cuda::runner::arg;
use crate::cuda::CudaError;
use crate::cuda::{KernelRunner, KernelSource};
use crate::ops::overlay::{DenseLayer, DrawCommand, FrameCommands, OverlayCommands};

/// CUDA C source of the kernel.
pub const KERNEL_SOURCE: &str = include_str!("../../../kernels/overlay.cu");
const KERNEL_NAME: &CStr = c"trtv_overlay";
const KERNEL_FILE: &str = "overlay.cu";

/// The kernel file, for the loader and the NVRTC compile test.
pub const KERNEL: KernelSource = KernelSource {
    file: KERNEL_FILE,
    source: KERNEL_SOURCE,
};
/// Pixels per tile side (a block of 16x16 threads, each owning a 2x2 pixel block).
const TILE: u32 = 32;
const BLOCK: u32 = TILE / 2;
/// Initial size of the staging area.
const INITIAL_STAGING: usize = 1 << 20;
/// Alignment of the sections of the staging area.
const SECTION_ALIGN: usize = 256;
/// Bytes of the dense colour map: 256 entries of RGB and YUV for each of the six colour
/// spaces a batch's frames can have (BT.601, BT.709, BT.2020 in limited and full range;
/// see `DenseLayer` in overlay.cu).
const LUT_BYTES: usize = 6 * 256 * 8;
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
    dense: i32,
    _pad: i32,
}

const _: () = assert!(std::mem::size_of::<FrameTarget>() == 96);

impl FrameTarget {
    fn new(f: &CudaFrame, fc: &FrameCommands) -> Self {
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
            first: fc.first as i32,
            count: fc.count as i32,
            bounds: fc.bounds,
            dense: fc.dense,
            _pad: 0,
        }
    }
}

/// Plain `#[repr(C)]` records without padding, copied byte for byte to the device.
///
/// # Safety
/// Implementors have no padding bytes and no pointers to host memory.
unsafe trait Record: Copy {}
// SAFETY: 96 bytes of integers, no padding (asserted above).
unsafe impl Record for FrameTarget {}
// SAFETY: 56 bytes of integers, no padding (asserted in crate::ops::overlay).
unsafe impl Record for DrawCommand {}
// SAFETY: 64 bytes of integers and floats, no padding (asserted in crate::ops::overlay).
unsafe impl Record for DenseLayer {}
// SAFETY: bytes.
unsafe impl Record for u8 {}
// SAFETY: plain floats.
unsafe impl Record for f32 {}
// SAFETY: plain bytes.
unsafe impl Record for [u8; 8] {}

/// Copies `items` into `dst` at byte `offset` (the caller sized `dst`).
fn put<T: Record>(dst: &mut [u8], offset: usize, items: &[T]) {
    let len = std::mem::size_of_val(items);
    // SAFETY: Record types are padding-free plain data, so their bytes are initialised.
    let src = unsafe { std::slice::from_raw_parts(items.as_ptr().cast::<u8>(), len) };
    dst[offset..offset + len].copy_from_slice(src);
}

/// Byte offsets of the sections of one batch in the staging area (frame table first), and
/// its total size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sections {
    commands: usize,
    masks: usize,
    dense: usize,
    dense_values: usize,
    total: usize,
}

impl Sections {
    fn new(frames: usize, list: &OverlayCommands) -> Self {
        let after = |at: usize, bytes: usize| (at + bytes).next_multiple_of(SECTION_ALIGN);
        let commands = after(0, frames * std::mem::size_of::<FrameTarget>());
        let masks = after(commands, std::mem::size_of_val(list.commands.as_slice()));
        let dense = after(masks, list.mask_bytes.len());
        let dense_values = after(dense, std::mem::size_of_val(list.dense.as_slice()));
        Self {
            commands,
            masks,
            dense,
            dense_values,
            total: dense_values + std::mem::size_of_val(list.dense_values.as_slice()),
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

/// Batched GPU overlay drawing (see the module docs). Its [`KernelRunner`] (stream,
/// event, `wait`, `synchronize`, `arch`) is reached through `Deref`.
pub struct CudaOverlay {
    // Field order is drop order: the runner waits for its stream and unloads the module,
    // then the memory is freed.
    runner: KernelRunner,
    staging: Staging,
    atlas: DeviceBuffer,
    /// The dense colour map on the device, and the host copy it was uploaded from.
    lut: DeviceBuffer,
    lut_uploaded: Vec<[u8; 8]>,
}

impl std::fmt::Debug for CudaOverlay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaOverlay")
            .field("runner", &self.runner)
            .field("staging", &self.staging.len)
            .finish()
    }
}

impl std::ops::Deref for CudaOverlay {
    type Target = KernelRunner;

    fn deref(&self) -> &KernelRunner {
        &self.runner
    }
}

impl CudaOverlay {
    /// Compiles and loads the kernel in `ctx`, creates the stream and event, uploads the
    /// glyph atlas and allocates the staging area.
    pub fn new(ctx: &DeviceContext) -> Result<Self, CudaError> {
        const WHAT: &str = "creating the CUDA overlay";
        let runner = KernelRunner::new(WHAT, ctx, &KERNEL, &[KERNEL_NAME])?;
        crate::cuda::guard(WHAT, || Self::warm_up(runner))
    }

    fn warm_up(runner: KernelRunner) -> Result<Self, CudaError> {
        let ctx = runner.context();
        let glyphs: Vec<u8> = crate::ops::overlay::font::atlas()
            .iter()
            .flatten()
            .copied()
            .collect();
        let atlas = DeviceBuffer::new(ctx, glyphs.len())?;
        atlas.copy_from_host(&glyphs)?;
        let mut this = Self {
            staging: Staging::new(ctx, INITIAL_STAGING)?,
            atlas,
            lut: DeviceBuffer::new(ctx, LUT_BYTES)?,
            lut_uploaded: Vec::new(),
            runner,
        };
        // Resolve every driver entry point of the hot path now (cudarc loads symbols
        // lazily and panics on a missing one): one launch over a frame without commands.
        let idle = FrameTarget {
            dense: -1,
            ..Default::default()
        };
        put(this.staging.host.as_mut_slice(), 0, &[idle]);
        this.enqueue(&[], Sections::new(1, &OverlayCommands::default()), (1, 1, 1))?;
        this.wait()?;
        Ok(this)
    }

    /// Bytes of the staging area (grows to the largest batch seen).
    pub fn staging_size(&self) -> usize {
        self.staging.len
    }

    /// Draws `list` on `frames` (frame `i` gets `list.frames[i]`): one copy and one
    /// launch on [`KernelRunner::stream`], then the event; returns without waiting. False
    /// when there was nothing to draw (nothing queued).
    ///
    /// The frames must stay mapped for writing until [`KernelRunner::wait`] returns (or
    /// the event completes); device masks and device dense maps of the list must be valid
    /// until then too.
    pub fn draw(&mut self, frames: &[CudaFrame], list: &OverlayCommands) -> Result<bool, CudaError> {
        let n = frames.len();
        if n != list.frames.len() || n > MAX_FRAMES {
            return Err(CudaError::InvalidInput(format!(
                "{n} frames for a command list of {} frames (at most {MAX_FRAMES})",
                list.frames.len()
            )));
        }
        if list.is_empty() {
            return Ok(false);
        }
        for (i, (f, fc)) in frames.iter().zip(&list.frames).enumerate() {
            let end = fc.first as usize + fc.count as usize;
            let in_frame = fc.count == 0
                || (fc.bounds[2] as i64 <= 2 * f.width.div_ceil(2) as i64
                    && fc.bounds[3] as i64 <= 2 * f.height.div_ceil(2) as i64);
            if end > list.commands.len() || !in_frame || !dense_fits(list, fc) {
                return Err(CudaError::InvalidInput(format!(
                    "the commands of frame {i} do not fit its {}x{} pixels or the list",
                    f.width, f.height
                )));
            }
        }
        let sections = Sections::new(n, list);
        // The pinned staging area and the colour map may still be read by the previous
        // launch.
        self.wait()?;
        if !list.dense.is_empty() && list.dense_lut != self.lut_uploaded {
            let bytes: Vec<u8> = list.dense_lut.iter().flatten().copied().collect();
            self.lut.copy_from_host(&bytes)?;
            self.lut_uploaded.clone_from(&list.dense_lut);
        }
        if sections.total > self.staging.len {
            let len = sections.total.next_power_of_two().max(INITIAL_STAGING);
            self.staging = Staging::new(self.runner.context(), len)?;
        }
        let host = self.staging.host.as_mut_slice();
        for (i, (f, fc)) in frames.iter().zip(&list.frames).enumerate() {
            let target = FrameTarget::new(f, fc);
            put(host, i * std::mem::size_of::<FrameTarget>(), &[target]);
        }
        put(host, sections.commands, &list.commands);
        put(host, sections.masks, &list.mask_bytes);
        put(host, sections.dense, &list.dense);
        put(host, sections.dense_values, &list.dense_values);
        let (mut tiles_x, mut tiles_y) = (1, 1);
        for f in frames {
            tiles_x = tiles_x.max((2 * f.width.div_ceil(2)).div_ceil(TILE));
            tiles_y = tiles_y.max((2 * f.height.div_ceil(2)).div_ceil(TILE));
        }
        crate::cuda::guard("drawing the overlay", || {
            self.enqueue(&list.device_events, sections, (tiles_x, tiles_y, n as u32))
        })?;
        Ok(true)
    }

    /// Queues the waits on `events`, the copy of the first `sections.total` staging bytes,
    /// the kernel over `grid` and the event.
    fn enqueue(&self, events: &[u64], sections: Sections, grid: (u32, u32, u32)) -> Result<(), CudaError> {
        let q = self.runner.queue()?;
        for &e in events {
            // SAFETY: the producer of each device mask keeps its event alive with the
            // mask (DeviceMask::keepalive).
            unsafe { q.wait_for(e as sys::CUevent) }?;
        }
        // SAFETY: both ranges lie in the staging buffers (total ≤ len); the pinned source
        // is not rewritten before the event recorded below has completed.
        unsafe {
            q.copy_to_device(
                self.staging.device.ptr(),
                self.staging.host.as_ptr(),
                sections.total,
            )
        }?;
        let base = self.staging.device.ptr();
        let mut frames_ptr: u64 = base;
        let mut commands_ptr: u64 = base + sections.commands as u64;
        let mut atlas_ptr: u64 = self.atlas.ptr();
        let mut masks_ptr: u64 = base + sections.masks as u64;
        let mut dense_ptr: u64 = base + sections.dense as u64;
        let mut values_ptr: u64 = base + sections.dense_values as u64;
        let mut lut_ptr: u64 = self.lut.ptr();
        let mut args: [*mut c_void; 7] = [
            arg(&mut frames_ptr),
            arg(&mut commands_ptr),
            arg(&mut atlas_ptr),
            arg(&mut masks_ptr),
            arg(&mut dense_ptr),
            arg(&mut values_ptr),
            arg(&mut lut_ptr),
        ];
        // SAFETY: the argument list matches the kernel's signature (seven device
        // pointers); the frame table holds grid.2 entries whose commands and dense layers
        // lie in their sections (checked by `draw`), host dense values in theirs; the
        // frames' planes, device masks and device dense maps are valid per `draw`'s
        // contract.
        unsafe { q.launch(0, grid, (BLOCK, BLOCK, 1), &mut args) }?;
        q.record()
    }
}

/// Whether the dense layer of `fc` (if any) and its host values lie in `list`.
fn dense_fits(list: &OverlayCommands, fc: &FrameCommands) -> bool {
    if fc.dense < 0 {
        return true;
    }
    let Some(d) = list.dense.get(fc.dense as usize) else {
        return false;
    };
    let cells = d.width.max(0) as u64 * d.height.max(0) as u64;
    list.dense_lut.len() >= 256 * (d.lut as usize + 1)
        && list.dense_lut.len() * 8 <= LUT_BYTES
        && (d.source != crate::ops::overlay::DENSE_HOST
            || d.values
                .checked_add(cells)
                .is_some_and(|end| end <= list.dense_values.len() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_aligned_and_sized() {
        let mut list = OverlayCommands {
            commands: vec![DrawCommand::default(); 10],
            mask_bytes: vec![0; 7],
            ..Default::default()
        };
        let s = Sections::new(3, &list);
        assert_eq!(s.commands, 512); // 288 bytes of frames, rounded up
        assert_eq!(s.masks, 1280); // + 560 bytes of commands, rounded up
        assert_eq!((s.dense, s.dense_values, s.total), (1536, 1536, 1536));
        list.dense = vec![DenseLayer::default(); 2];
        list.dense_values = vec![0.0; 5];
        let s = Sections::new(3, &list);
        assert_eq!((s.dense, s.dense_values, s.total), (1536, 1792, 1792 + 20));
        assert_eq!(Sections::new(1, &OverlayCommands::default()).total, 256);
    }

    #[test]
    fn frame_targets_follow_the_frames() {
        // SAFETY: never read.
        let f = unsafe { CudaFrame::from_raw(gst_video::VideoFormat::Bgrx, 641, 479, &[0x10000], &[2816]) }
            .unwrap();
        let fc = FrameCommands {
            first: 5,
            count: 9,
            bounds: [1, 2, 3, 4],
            dense: 2,
        };
        let t = FrameTarget::new(&f, &fc);
        assert_eq!(t.dense, 2);
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
        let t = FrameTarget::new(&f, &FrameCommands::default());
        assert_eq!((t.layout, t.plane[1], t.stride[1]), (LAYOUT_NV12, 0x9000, 256));
        let mut bytes = vec![0u8; 96];
        put(&mut bytes, 0, &[t]);
        assert_eq!(&bytes[24..28], &256i32.to_ne_bytes());
        assert_eq!(&bytes[36..40], &LAYOUT_NV12.to_ne_bytes());
        assert_eq!(&bytes[88..92], &(-1i32).to_ne_bytes());
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
            "int dense, _pad;",
            "#define DENSE_HOST 0",
            "#define DENSE_DEVICE 1",
            "unsigned int alpha, _pad;",
            "trtv_overlay",
        ] {
            assert!(KERNEL_SOURCE.contains(needle), "{needle}");
        }
        use crate::ops::overlay::{CMD_GLYPH, CMD_MASK_DEVICE, CMD_MASK_HOST, CMD_RECT};
        assert_eq!(
            (CMD_RECT, CMD_GLYPH, CMD_MASK_HOST, CMD_MASK_DEVICE),
            (0, 1, 2, 3)
        );
        assert_eq!(TILE, 32);
        use crate::ops::overlay::{DENSE_DEVICE, DENSE_HOST};
        assert_eq!((DENSE_HOST, DENSE_DEVICE), (0, 1));
        assert_eq!(KERNEL_NAME.to_str().ok(), Some("trtv_overlay"));
    }

    #[test]
    fn handles_are_thread_safe() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<CudaOverlay>();
    }
}
