//! Source `i` (trtmux sink pad number) always lands in tile `i % (rows * columns)`, in
//! row-major order, scaled to fit its tile with its aspect ratio kept (black bars); tiles
//! without a source and the pixels right of and below the grid are black. A source with no
//! frame in a batch keeps showing its last frame. When the grid changes (another batch
//! size), the mosaic starts again from black.
//!
//! CPU path: the mosaic is composed in RGBA (only the tiles of the batch's frames are
//! redrawn) and converted once into the negotiated output format.
//!
//! CUDA path (cargo feature `cuda`, `device=auto`): the output caps offer
//! `video/x-raw(memory:CUDAMemory)` and system memory, in the order of the input batch's
//! memory (CUDA batches: CUDA first), and CUDA memory only where a GPU is usable. When the
//! batches are CUDA memory and every tile's frame is GstCudaMemory of a context the
//! element can use, [`CudaTiler`] writes the whole output frame with one kernel launch,
//! from the last frame of every tile (the element keeps a reference to it, no copy),
//! byte-identical to the CPU mosaic: into the CUDA output frame, or for a system-memory
//! output into a device frame then downloaded once (one frame crosses PCIe instead of
//! every source frame). Otherwise the CPU composes (system-memory batches, `device=cpu`,
//! frames of another context); its RGBA mosaic then reaches a CUDA output frame through
//! one copy and the same kernel (or, with `device=cpu` or when the kernel is unavailable,
//! through GStreamer's own upload of a system-memory map). Output frames in CUDA memory
//! come from a GstCudaBufferPool of the element's CUDA context (`gst.cuda.context`,
//! shared with the pipeline). The element waits for the kernel before pushing:
//! GstCudaMemory of GStreamer 1.22 carries no stream or event.
//!
//! `device=cpu` launches no kernel at all: CUDA frames are read through GstCudaMemory's
//! system-memory map (GStreamer downloads them) and a CUDA output frame is written through
//! it (GStreamer uploads it). `device` is read for every batch, so it may change while
//! playing; with CUDA batches the last frame of every tile is kept on either path, so the
//! GPU can take over at any batch. Why a mosaic was composed on the CPU is logged (info
//! level, when it changes) and readable in the `cpu-reason` property.
//!
//! [`CudaTiler`]: crate::ops::mosaic::cuda::CudaTiler

use crate::batch::{self, Batch, BatchMeta};
use crate::gpu_element::CudaContextElement;
use crate::ops::mosaic::{self, grid_for, Grid};
use crate::video::FrameReader;
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "trttiler",
        gst::DebugColorFlags::empty(),
        Some("trtvision mosaic"),
    )
});

#[derive(Debug, Clone, Copy)]
struct Settings {
    rows: u32,
    columns: u32,
    width: u32,
    height: u32,
    /// Compose on the GPU when the batches are CUDA memory (`device=auto`).
    use_gpu: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            rows: 0,
            columns: 0,
            width: 1280,
            height: 720,
            use_gpu: true,
        }
    }
}

/// A frame kept for its tile: the buffer (by reference) and its layout.
type KeptFrame = (gst::Buffer, gst_video::VideoInfo);

/// What exists between start and stop; every buffer is reused from batch to batch.
#[derive(Default)]
struct State {
    out_info: Option<gst_video::VideoInfo>,
    /// The batches' frames are GstCudaMemory (batch caps with `memory:CUDAMemory`).
    in_cuda: bool,
    /// The output frames are GstCudaMemory.
    out_cuda: bool,
    /// The RGBA mosaic composed on the CPU; it holds each tile's last frame.
    mosaic: Vec<u8>,
    scratch: mosaic::Scratch,
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
    cuda: CudaState,
}

impl State {
    /// Whether the last frame of every tile is kept: with CUDA batches, which the GPU may
    /// compose.
    fn keeps_frames(&self) -> bool {
        cfg!(feature = "cuda") && self.in_cuda
    }

    fn clear_mosaic(&mut self) {
        mosaic::clear(&mut self.mosaic);
    }
}

#[derive(Default)]
pub struct TrtTiler {
    settings: Mutex<Settings>,
    state: Mutex<State>,
    /// Frames of batches composed on the GPU since start.
    gpu_frames: AtomicU64,
    /// Why the last mosaic was composed on the CPU (`None`: on the GPU, or none yet); kept
    /// after stop for the `cpu-reason` property.
    cpu_reason: Mutex<Option<String>>,
    /// CUDA context shared with the pipeline through `gst.cuda.context`.
    cuda_ctx: crate::gpu_element::ElementCudaContext,
}

/// Whether `caps` (first structure) are in CUDA memory.
fn is_cuda_caps(caps: &gst::CapsRef) -> bool {
    caps.features(0)
        .is_some_and(|f| f.contains(batch::CUDA_MEMORY_FEATURE))
}

/// `caps` in CUDA memory.
fn with_cuda_memory(mut caps: gst::Caps) -> gst::Caps {
    caps.make_mut()
        .set_features_simple(Some(gst::CapsFeatures::new([batch::CUDA_MEMORY_FEATURE])));
    caps
}

/// `first` then `second`.
fn merged(mut first: gst::Caps, second: gst::Caps) -> gst::Caps {
    first.merge(second);
    first
}

/// Why system-memory batches are composed on the CPU.
const SYSTEM_BATCHES: &str =
    "the batches are in system memory (the GPU path needs every trtmux source to deliver \
     video/x-raw(memory:CUDAMemory))";

impl TrtTiler {
    /// Records that the current mosaic is composed on the CPU, and why (logged when the
    /// reason changes).
    fn composed_on_cpu(&self, why: &str) {
        let mut reason = self.cpu_reason.lock().unwrap();
        if reason.as_deref() != Some(why) {
            gst::info!(CAT, imp = self, "composing on the CPU: {why}");
            *reason = Some(why.to_owned());
        }
    }

    /// Records that the current mosaic is composed on the GPU.
    fn composed_on_gpu(&self) {
        let mut reason = self.cpu_reason.lock().unwrap();
        if reason.take().is_some() {
            gst::info!(CAT, imp = self, "composing on the GPU");
        }
    }

    /// Composes the batch into the RGBA mosaic on the CPU: the batch's frames, or every
    /// kept frame when the GPU composed the previous batches.
    fn compose_cpu(&self, st: &mut State, batch: &Batch, grid: &Grid) {
        if std::mem::take(&mut st.mosaic_stale) {
            st.clear_mosaic();
            let State {
                mosaic,
                scratch,
                last,
                ..
            } = st;
            for (tile, kept) in last.iter().enumerate() {
                if let Some((buffer, info)) = kept {
                    self.draw(mosaic, scratch, grid, tile as u32, buffer, info, tile as u32);
                }
            }
        } else {
            for slot in &batch.slots {
                let tile = grid.tile_of(slot.pad_index());
                let (mosaic, scratch) = (&mut st.mosaic, &mut st.scratch);
                self.draw(
                    mosaic,
                    scratch,
                    grid,
                    tile,
                    &slot.buffer,
                    &slot.info,
                    slot.pad_index(),
                );
            }
        }
    }

    /// Draws one frame of source `source` into `tile` of the RGBA mosaic; a frame that
    /// cannot be read leaves the tile as it was (with a warning).
    #[allow(clippy::too_many_arguments)]
    fn draw(
        &self,
        mosaic: &mut [u8],
        scratch: &mut mosaic::Scratch,
        grid: &Grid,
        tile: u32,
        buffer: &gst::BufferRef,
        info: &gst_video::VideoInfo,
        source: u32,
    ) {
        let Ok(frame) = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, info) else {
            gst::warning!(CAT, imp = self, "cannot map frame of source {source}");
            return;
        };
        match FrameReader::new(&frame) {
            Ok(reader) => mosaic::draw_tile(mosaic, grid, tile, &reader, scratch),
            Err(e) => gst::warning!(CAT, imp = self, "cannot read frame of source {source}: {e}"),
        }
    }

    /// Writes the RGBA mosaic into the output frame, in its format and memory (with
    /// `use_gpu`, a CUDA output frame through one copy and one kernel launch).
    fn write_mosaic(
        &self,
        st: &mut State,
        outbuf: &mut gst::BufferRef,
        out_info: &gst_video::VideoInfo,
        #[allow(unused_variables)] use_gpu: bool,
    ) -> Result<(), gst::FlowError> {
        let len = (out_info.width() * out_info.height() * 4) as usize;
        #[cfg(feature = "cuda")]
        if use_gpu && st.out_cuda && self.write_mosaic_cuda(st, outbuf, out_info, len)? {
            return Ok(());
        }
        let mut out = gst_video::VideoFrameRef::from_buffer_ref_writable(outbuf, out_info).map_err(|_| {
            gst::element_imp_error!(self, gst::StreamError::Failed, ("Could not map the output frame"));
            gst::FlowError::Error
        })?;
        crate::video::write_rgba(&mut out, &st.mosaic[..len]).map_err(|e| {
            gst::element_imp_error!(
                self,
                gst::StreamError::Format,
                ("Could not write the mosaic: {}", e)
            );
            gst::FlowError::Error
        })
    }
}

#[cfg(feature = "cuda")]
mod cuda;
#[cfg(feature = "cuda")]
use cuda::CudaState;

#[glib::object_subclass]
impl ObjectSubclass for TrtTiler {
    const NAME: &'static str = "GstTrtTiler";
    type Type = super::TrtTiler;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for TrtTiler {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let d = Settings::default();
            vec![
                glib::ParamSpecUInt::builder("rows")
                    .nick("Rows")
                    .blurb("Tile rows of the mosaic (0 = chosen from the batch size)")
                    .maximum(64)
                    .default_value(d.rows)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("columns")
                    .nick("Columns")
                    .blurb("Tile columns of the mosaic (0 = chosen from the batch size)")
                    .maximum(64)
                    .default_value(d.columns)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("width")
                    .nick("Width")
                    .blurb("Width of the mosaic in pixels")
                    .minimum(16)
                    .maximum(16384)
                    .default_value(d.width)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("height")
                    .nick("Height")
                    .blurb("Height of the mosaic in pixels")
                    .minimum(16)
                    .maximum(16384)
                    .default_value(d.height)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("device", crate::transform::Device::Auto)
                    .nick("Device")
                    .blurb("Where the mosaic is composed: auto (on the GPU, one kernel launch per batch, when the batches are CUDA memory and the plugin was built with CUDA; else on the CPU) or cpu (always on the CPU, no kernel launched: CUDA frames are downloaded and a CUDA output frame is uploaded by GStreamer); both give the same pixels; takes effect at the next batch")
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt64::builder("gpu-frames")
                    .nick("Frames composed on the GPU")
                    .blurb("Frames of the batches composed on the GPU since start (the others were composed on the CPU)")
                    .read_only()
                    .build(),
                glib::ParamSpecString::builder("cpu-reason")
                    .nick("Why the CPU composed")
                    .blurb("Why the last mosaic was composed on the CPU (e.g. system-memory batches, device=cpu, frames of another CUDA context); NULL when it was composed on the GPU or before the first batch")
                    .read_only()
                    .build(),
            ]
        });
        PROPS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap();
        match pspec.name() {
            "rows" => s.rows = value.get().expect("type checked upstream"),
            "columns" => s.columns = value.get().expect("type checked upstream"),
            "width" => s.width = value.get().expect("type checked upstream"),
            "height" => s.height = value.get().expect("type checked upstream"),
            "device" => {
                s.use_gpu = value
                    .get::<crate::transform::Device>()
                    .expect("type checked upstream")
                    .allows_gpu()
            }
            _ => unreachable!("unknown property {}", pspec.name()),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap();
        match pspec.name() {
            "rows" => s.rows.to_value(),
            "columns" => s.columns.to_value(),
            "width" => s.width.to_value(),
            "height" => s.height.to_value(),
            "device" => crate::transform::Device::from_gpu(s.use_gpu).to_value(),
            "gpu-frames" => self.gpu_frames.load(Ordering::Relaxed).to_value(),
            "cpu-reason" => self.cpu_reason.lock().unwrap().to_value(),
            _ => unreachable!("unknown property {}", pspec.name()),
        }
    }
}

impl GstObjectImpl for TrtTiler {}

impl ElementImpl for TrtTiler {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "TrtVision tiler",
                "Filter/Converter/Video",
                "Composes the frames of an analytics batch into one mosaic video frame",
                "gst-trtvision developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static T: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            #[cfg(feature = "cuda")]
            let src = crate::caps::frame_caps_any_memory();
            #[cfg(not(feature = "cuda"))]
            let src = crate::caps::frame_caps();
            vec![
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &batch::batch_caps_any_memory(),
                )
                .expect("valid sink template"),
                gst::PadTemplate::new("src", gst::PadDirection::Src, gst::PadPresence::Always, &src)
                    .expect("valid src template"),
            ]
        });
        T.as_ref()
    }

    fn set_context(&self, context: &gst::Context) {
        self.cuda_set_context(context)
    }

    fn change_state(&self, t: gst::StateChange) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        self.cuda_change_state(t)
    }
}

impl CudaContextElement for TrtTiler {
    fn cuda_context(&self) -> &crate::gpu_element::ElementCudaContext {
        &self.cuda_ctx
    }

    fn debug_category(&self) -> gst::DebugCategory {
        *CAT
    }
}

impl BaseTransformImpl for TrtTiler {
    const MODE: gst_base::subclass::BaseTransformMode = gst_base::subclass::BaseTransformMode::NeverInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        *self.state.lock().unwrap() = State::default();
        self.gpu_frames.store(0, Ordering::Relaxed);
        *self.cpu_reason.lock().unwrap() = None;
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *self.state.lock().unwrap() = State::default();
        Ok(())
    }

    fn query(&self, direction: gst::PadDirection, query: &mut gst::QueryRef) -> bool {
        if self.cuda_query(query) {
            return true;
        }
        BaseTransformImplExt::parent_query(self, direction, query)
    }

    fn transform_caps(
        &self,
        direction: gst::PadDirection,
        caps: &gst::Caps,
        filter: Option<&gst::Caps>,
    ) -> Option<gst::Caps> {
        // Either memory on the other side, the memory of this side first.
        let cuda_first = caps.is_empty() || is_cuda_caps(caps);
        let out = if direction == gst::PadDirection::Sink {
            let s = *self.settings.lock().unwrap();
            let framerate = caps
                .structure(0)
                .and_then(|st| st.get::<gst::Fraction>("framerate").ok())
                .unwrap_or(gst::Fraction::new(0, 1));
            let system = gst_video::VideoCapsBuilder::new()
                .format_list(crate::caps::FRAME_FORMATS)
                .width(s.width as i32)
                .height(s.height as i32)
                .framerate(framerate)
                .pixel_aspect_ratio(gst::Fraction::new(1, 1))
                .build();
            // CUDA memory output only where a GPU can hold it.
            #[cfg(feature = "cuda")]
            let out = if crate::cuda::cuda_available() {
                let cuda = with_cuda_memory(system.clone());
                if cuda_first {
                    merged(cuda, system)
                } else {
                    merged(system, cuda)
                }
            } else {
                system
            };
            #[cfg(not(feature = "cuda"))]
            let out = system;
            out
        } else {
            let system = batch::batch_caps();
            let cuda = with_cuda_memory(system.clone());
            if cuda_first {
                merged(cuda, system)
            } else {
                merged(system, cuda)
            }
        };
        Some(match filter {
            Some(f) => f.intersect_with_mode(&out, gst::CapsIntersectMode::First),
            None => out,
        })
    }

    fn set_caps(&self, incaps: &gst::Caps, outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let info = gst_video::VideoInfo::from_caps(outcaps)
            .map_err(|_| gst::loggable_error!(CAT, "invalid output caps {}", outcaps))?;
        let mut st = self.state.lock().unwrap();
        st.mosaic = vec![0; (info.width() * info.height() * 4) as usize];
        st.clear_mosaic();
        st.grid = None;
        st.last.clear();
        st.mosaic_stale = false;
        st.in_cuda = is_cuda_caps(incaps);
        st.out_cuda = is_cuda_caps(outcaps);
        gst::debug!(CAT, imp = self, "input {incaps}, output {outcaps}");
        st.out_info = Some(info);
        Ok(())
    }

    fn decide_allocation(&self, query: &mut gst::query::Allocation) -> Result<(), gst::LoggableError> {
        #[cfg(feature = "cuda")]
        if let (Some(caps), _) = query.get_owned() {
            if is_cuda_caps(&caps) {
                return self.decide_cuda_allocation(query, &caps);
            }
        }
        self.parent_decide_allocation(query)
    }

    fn transform_size(
        &self,
        _direction: gst::PadDirection,
        _caps: &gst::Caps,
        _size: usize,
        othercaps: &gst::Caps,
    ) -> Option<usize> {
        gst_video::VideoInfo::from_caps(othercaps).ok().map(|i| i.size())
    }

    fn transform(
        &self,
        inbuf: &gst::Buffer,
        outbuf: &mut gst::BufferRef,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let s = *self.settings.lock().unwrap();
        let mut guard = self.state.lock().unwrap();
        let st = &mut *guard;
        let out_info = st.out_info.clone().ok_or(gst::FlowError::NotNegotiated)?;
        let Some(meta) = inbuf.meta::<BatchMeta>() else {
            gst::element_imp_error!(
                self,
                gst::StreamError::Format,
                ("trttiler received a buffer without batch metadata; it must come after trtmux")
            );
            return Err(gst::FlowError::Error);
        };
        let batch = meta.batch();
        let (rows, columns) = grid_for(batch.batch_size as u32, s.rows, s.columns);
        let grid = Grid {
            width: out_info.width(),
            height: out_info.height(),
            rows,
            columns,
        };
        let tiles = grid.tiles();
        if st.grid != Some(grid) {
            st.grid = Some(grid);
            st.clear_mosaic();
            st.last.clear();
            st.last.resize(tiles as usize, None);
            st.mosaic_stale = false;
        }
        let keep = st.keeps_frames();
        if keep {
            for slot in &batch.slots {
                st.last[grid.tile_of(slot.pad_index()) as usize] =
                    Some((slot.buffer.clone(), slot.info.clone()));
            }
        }
        let composed = if !s.use_gpu {
            self.composed_on_cpu("device=cpu");
            false
        } else if !keep {
            self.composed_on_cpu(if cfg!(feature = "cuda") {
                SYSTEM_BATCHES
            } else {
                "the plugin was built without CUDA support"
            });
            false
        } else {
            #[cfg(feature = "cuda")]
            let composed = self.compose_cuda(st, outbuf, &out_info, &grid)?;
            #[cfg(not(feature = "cuda"))]
            let composed = false;
            if !composed {
                self.composed_on_cpu(&st.why);
            }
            composed
        };
        if composed {
            self.composed_on_gpu();
            self.gpu_frames
                .fetch_add(batch.slots.len() as u64, Ordering::Relaxed);
            st.mosaic_stale = true;
        } else {
            self.compose_cpu(st, batch, &grid);
            if !keep {
                st.last.iter_mut().for_each(|k| *k = None);
            }
            self.write_mosaic(st, outbuf, &out_info, s.use_gpu)?;
        }
        outbuf.set_pts(inbuf.pts());
        outbuf.set_duration(batch.slots.iter().find_map(|s| s.duration));
        Ok(gst::FlowSuccess::Ok)
    }
}
