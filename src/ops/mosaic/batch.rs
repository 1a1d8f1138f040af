//! [`BatchMosaic`]: the mosaic operation on a batch, the one thing trttiler calls.
//!
//! Source `i` (trtmux sink pad number) always lands in tile `i % (rows * columns)`, in
//! row-major order, scaled to fit its tile with its aspect ratio kept (black bars); tiles
//! without a source and the pixels right of and below the grid are black. A source with no
//! frame in a batch keeps showing its last frame. When the grid changes (another batch
//! size), the mosaic starts again from black.
//!
//! CPU path ([`super::draw_tile`]): the mosaic is composed in RGBA (only the tiles of the
//! batch's frames are redrawn) and converted once into the output frame's format.
//!
//! CUDA path (feature `cuda`): when the batches are CUDA memory and every tile's frame is
//! GstCudaMemory of a context the element can use, [`CudaTiler`] writes the whole output
//! frame with one kernel launch, from the last frame of every tile (a reference to its
//! buffer is kept, no copy), byte-identical to the CPU mosaic: into a CUDA output frame,
//! or for a system-memory output into a device frame then downloaded once. Otherwise the
//! CPU composes; its RGBA mosaic then reaches a CUDA output frame through one copy and the
//! same kernel (or, when the kernel is not allowed or unavailable, through GStreamer's own
//! upload of a system-memory map). The operation waits for the kernel before it returns:
//! GstCudaMemory of GStreamer 1.22 carries no stream or event.
//!
//! With CUDA batches the last frame of every tile is kept on either path, so the GPU can
//! take over at any batch (`use_gpu` is read per batch). Log lines go to the `trttiler`
//! debug category, on the element passed to [`BatchMosaic::compose`].
//!
//! [`CudaTiler`]: super::cuda::CudaTiler

use std::sync::LazyLock;

use crate::batch::Batch;
use crate::video::FrameReader;

use super::{grid_for, Grid, Scratch};

#[cfg(feature = "cuda")]
mod gpu;

/// The element's debug category (`trttiler`), registered once.
pub static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "trttiler",
        gst::DebugColorFlags::empty(),
        Some("trtvision mosaic"),
    )
});

/// Why system-memory batches are composed on the CPU.
pub const SYSTEM_BATCHES: &str =
    "the batches are in system memory (the GPU path needs every trtmux source to deliver \
     video/x-raw(memory:CUDAMemory))";

/// A frame kept for its tile: the buffer (by reference) and its layout.
type KeptFrame = (gst::Buffer, gst_video::VideoInfo);

/// Where a batch's mosaic was composed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Composed<'a> {
    /// On the GPU, with one kernel launch.
    Gpu,
    /// On the CPU, for this reason (a sentence for the log and `cpu-reason`).
    Cpu(&'a str),
}

/// Why a batch's mosaic could not be written (the element turns it into its error).
#[derive(Debug, thiserror::Error)]
pub enum MosaicError {
    /// The output frame could not be mapped writable.
    #[error("Could not map the output frame")]
    Map,
    /// The RGBA mosaic could not be converted into the output frame.
    #[error("Could not write the mosaic: {0}")]
    Write(String),
    /// The kernel ran and failed: the output frame may be half written.
    #[error("Composing the mosaic on the GPU failed")]
    Gpu(String),
    /// Waiting for the upload of the CPU mosaic failed.
    #[error("Writing the mosaic on the GPU failed")]
    GpuWrite(String),
}

/// The mosaic operation (see the module docs) for one output layout; every buffer is
/// reused from batch to batch.
pub struct BatchMosaic {
    out_info: gst_video::VideoInfo,
    /// The batches' frames are GstCudaMemory (batch caps with `memory:CUDAMemory`).
    in_cuda: bool,
    /// The output frames are GstCudaMemory.
    out_cuda: bool,
    /// The RGBA mosaic composed on the CPU; it holds each tile's last frame.
    mosaic: Vec<u8>,
    scratch: Scratch,
    /// Grid of the last batch.
    grid: Option<Grid>,
    /// Per tile, the last frame shown in it, kept with CUDA batches (the GPU redraws the
    /// whole frame every batch, and may take over at any batch).
    last: Vec<Option<KeptFrame>>,
    /// `mosaic` misses what the GPU composed since the CPU last drew it.
    mosaic_stale: bool,
    /// Why the current batch is composed on the CPU (reused text, no allocation per batch).
    why: String,
    #[cfg(feature = "cuda")]
    cuda: gpu::CudaState,
}

impl BatchMosaic {
    /// A black mosaic for output frames of `out_info`; `in_cuda` / `out_cuda`: the batches'
    /// frames / the output frames are GstCudaMemory.
    pub fn new(out_info: gst_video::VideoInfo, in_cuda: bool, out_cuda: bool) -> Self {
        let mut this = Self {
            mosaic: vec![0; (out_info.width() * out_info.height() * 4) as usize],
            out_info,
            in_cuda,
            out_cuda,
            scratch: Scratch::default(),
            grid: None,
            last: Vec::new(),
            mosaic_stale: false,
            why: String::new(),
            #[cfg(feature = "cuda")]
            cuda: gpu::CudaState::default(),
        };
        super::clear(&mut this.mosaic);
        this
    }

    /// The output frames' layout.
    pub fn out_info(&self) -> &gst_video::VideoInfo {
        &self.out_info
    }

    /// Whether the last frame of every tile is kept: with CUDA batches, which the GPU may
    /// compose.
    fn keeps_frames(&self) -> bool {
        cfg!(feature = "cuda") && self.in_cuda
    }

    /// Composes `batch` into `outbuf` (a frame of the output layout) as a `rows x columns`
    /// grid (0 = chosen from the batch size): on the GPU when `use_gpu` and the frames
    /// allow it (`cuda` is the element's context), else on the CPU. `obj` is the element
    /// (for its log lines).
    #[allow(clippy::too_many_arguments)]
    pub fn compose(
        &mut self,
        obj: &gst::Object,
        cuda: &crate::gpu_element::ElementCudaContext,
        batch: &Batch,
        (rows, columns): (u32, u32),
        use_gpu: bool,
        outbuf: &mut gst::BufferRef,
    ) -> Result<Composed<'_>, MosaicError> {
        let out_info = self.out_info.clone();
        let (rows, columns) = grid_for(batch.batch_size as u32, rows, columns);
        let grid = Grid {
            width: out_info.width(),
            height: out_info.height(),
            rows,
            columns,
        };
        if self.grid != Some(grid) {
            self.grid = Some(grid);
            super::clear(&mut self.mosaic);
            self.last.clear();
            self.last.resize(grid.tiles() as usize, None);
            self.mosaic_stale = false;
        }
        let keep = self.keeps_frames();
        if keep {
            for slot in &batch.slots {
                self.last[grid.tile_of(slot.pad_index()) as usize] =
                    Some((slot.buffer.clone(), slot.info.clone()));
            }
        }
        self.why.clear();
        let on_gpu = if !use_gpu {
            self.why.push_str("device=cpu");
            false
        } else if !keep {
            self.why.push_str(if cfg!(feature = "cuda") {
                SYSTEM_BATCHES
            } else {
                "the plugin was built without CUDA support"
            });
            false
        } else {
            #[cfg(feature = "cuda")]
            let composed = self.compose_cuda(obj, cuda, outbuf, &out_info, &grid)?;
            #[cfg(not(feature = "cuda"))]
            let composed = {
                let _ = cuda;
                false
            };
            composed
        };
        if on_gpu {
            self.mosaic_stale = true;
            return Ok(Composed::Gpu);
        }
        self.compose_cpu(obj, batch, &grid);
        if !keep {
            self.last.iter_mut().for_each(|k| *k = None);
        }
        self.write_mosaic(obj, cuda, outbuf, &out_info, use_gpu)?;
        Ok(Composed::Cpu(&self.why))
    }

    /// Composes the batch into the RGBA mosaic on the CPU: the batch's frames, or every
    /// kept frame when the GPU composed the previous batches.
    fn compose_cpu(&mut self, obj: &gst::Object, batch: &Batch, grid: &Grid) {
        if std::mem::take(&mut self.mosaic_stale) {
            super::clear(&mut self.mosaic);
            let Self {
                mosaic,
                scratch,
                last,
                ..
            } = self;
            for (tile, kept) in last.iter().enumerate() {
                if let Some((buffer, info)) = kept {
                    draw(obj, mosaic, scratch, grid, tile as u32, buffer, info, tile as u32);
                }
            }
        } else {
            for slot in &batch.slots {
                let tile = grid.tile_of(slot.pad_index());
                draw(
                    obj,
                    &mut self.mosaic,
                    &mut self.scratch,
                    grid,
                    tile,
                    &slot.buffer,
                    &slot.info,
                    slot.pad_index(),
                );
            }
        }
    }

    /// Writes the RGBA mosaic into the output frame, in its format and memory (with
    /// `use_gpu`, a CUDA output frame through one copy and one kernel launch).
    fn write_mosaic(
        &mut self,
        obj: &gst::Object,
        cuda: &crate::gpu_element::ElementCudaContext,
        outbuf: &mut gst::BufferRef,
        out_info: &gst_video::VideoInfo,
        use_gpu: bool,
    ) -> Result<(), MosaicError> {
        let len = (out_info.width() * out_info.height() * 4) as usize;
        #[cfg(feature = "cuda")]
        if use_gpu && self.out_cuda && self.write_mosaic_cuda(obj, cuda, outbuf, out_info, len)? {
            return Ok(());
        }
        #[cfg(not(feature = "cuda"))]
        let _ = (obj, cuda, use_gpu, self.out_cuda);
        let mut out = gst_video::VideoFrameRef::from_buffer_ref_writable(outbuf, out_info)
            .map_err(|_| MosaicError::Map)?;
        crate::video::write_rgba(&mut out, &self.mosaic[..len]).map_err(|e| MosaicError::Write(e.to_string()))
    }
}

/// Draws one frame of source `source` into `tile` of the RGBA mosaic; a frame that cannot
/// be read leaves the tile as it was (with a warning).
#[allow(clippy::too_many_arguments)]
fn draw(
    obj: &gst::Object,
    mosaic: &mut [u8],
    scratch: &mut Scratch,
    grid: &Grid,
    tile: u32,
    buffer: &gst::BufferRef,
    info: &gst_video::VideoInfo,
    source: u32,
) {
    let Ok(frame) = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, info) else {
        gst::warning!(*CAT, obj = obj, "cannot map frame of source {source}");
        return;
    };
    match FrameReader::new(&frame) {
        Ok(reader) => super::draw_tile(mosaic, grid, tile, &reader, scratch),
        Err(e) => gst::warning!(*CAT, obj = obj, "cannot read frame of source {source}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{FrameSlot, SourceStream};
    use gst::prelude::*;
    use gst_video::VideoFormat;

    /// A solid RGBA `w x h` frame of source `pad`, in system memory.
    fn slot(pad: u32, w: u32, h: u32, rgb: [u8; 3]) -> FrameSlot {
        let info = gst_video::VideoInfo::builder(VideoFormat::Rgba, w, h)
            .build()
            .unwrap();
        let px: Vec<u8> = (0..w * h).flat_map(|_| [rgb[0], rgb[1], rgb[2], 255]).collect();
        FrameSlot {
            source: std::sync::Arc::new(SourceStream {
                pad_index: pad,
                stream_id: None,
                caps: gst::Caps::new_empty_simple("video/x-raw"),
                segment: gst::FormattedSegment::new(),
            }),
            frame_number: 0,
            pts: None,
            dts: None,
            duration: None,
            info,
            buffer: gst::Buffer::from_mut_slice(px),
            results: Default::default(),
        }
    }

    fn batch(batch_size: usize, slots: Vec<FrameSlot>) -> Batch {
        Batch {
            slots,
            batch_size,
            ..Default::default()
        }
    }

    /// Composes `b` into a new 64x32 RGBA frame; returns the reason and the pixels.
    fn compose(m: &mut BatchMosaic, b: &Batch, use_gpu: bool) -> (String, Vec<u8>) {
        let obj = gst::Bin::new().upcast::<gst::Object>();
        let cuda: crate::gpu_element::ElementCudaContext = Default::default();
        let mut out = gst::Buffer::with_size(m.out_info().size()).unwrap();
        let why = match m
            .compose(&obj, &cuda, b, (0, 0), use_gpu, out.get_mut().unwrap())
            .unwrap()
        {
            Composed::Cpu(why) => why.to_string(),
            Composed::Gpu => panic!("system-memory batches are composed on the CPU"),
        };
        let px = out.map_readable().unwrap().to_vec();
        (why, px)
    }

    fn at(px: &[u8], x: usize, y: usize) -> [u8; 4] {
        px[(y * 64 + x) * 4..][..4].try_into().unwrap()
    }

    #[test]
    fn tiles_keep_their_last_frame_until_the_grid_changes() {
        gst::init().unwrap();
        let info = gst_video::VideoInfo::builder(VideoFormat::Rgba, 64, 32)
            .build()
            .unwrap();
        let mut m = BatchMosaic::new(info, false, false);
        let (red, green, blue) = ([200, 0, 0], [0, 200, 0], [0, 0, 200]);
        // Two sources, 1x2 grid of 32x32 tiles; 32x32 frames fill their tiles.
        let (why, px) = compose(
            &mut m,
            &batch(2, vec![slot(0, 32, 32, red), slot(1, 32, 32, green)]),
            true,
        );
        assert!(
            why.starts_with("the batches are in system memory") || why.contains("without CUDA"),
            "{why}"
        );
        assert_eq!(
            (at(&px, 10, 10), at(&px, 50, 10)),
            ([200, 0, 0, 255], [0, 200, 0, 255])
        );
        // Only source 0 in the next batch: source 1 keeps its last frame.
        let (_, px) = compose(&mut m, &batch(2, vec![slot(0, 32, 32, blue)]), true);
        assert_eq!(
            (at(&px, 10, 10), at(&px, 50, 10)),
            ([0, 0, 200, 255], [0, 200, 0, 255])
        );
        // device=cpu says so.
        let (why, _) = compose(&mut m, &batch(2, vec![slot(1, 32, 32, red)]), false);
        assert_eq!(why, "device=cpu");
        // Another batch size is another grid (2x2 of 32x16): the mosaic starts from black;
        // a 32x32 frame is letterboxed into its 32x16 tile (16x16, centred).
        let (_, px) = compose(&mut m, &batch(4, vec![slot(3, 32, 32, red)]), true);
        assert_eq!(at(&px, 10, 5), [0, 0, 0, 255], "tile 0 is black again");
        assert_eq!(at(&px, 48, 24), [200, 0, 0, 255], "tile 3 shows source 3");
        assert_eq!(at(&px, 34, 24), [0, 0, 0, 255], "letterbox bar");
    }
}
