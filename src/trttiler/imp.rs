//! Source `i` (trtmux sink pad number) always lands in tile `i % (rows * columns)`, in
//! row-major order, scaled to fit its tile with its aspect ratio kept (black bars); tiles
//! without a source and the pixels right of and below the grid are black. A source with no
//! frame in a batch keeps showing its last frame. When the grid changes (another batch
//! size), the mosaic starts again from black.
//!
//! The composition itself is [`BatchMosaic`] (CPU or CUDA path per batch, chosen inside
//! the operation); the element holds its settings, negotiates caps and memory, and keeps
//! the counters.
//!
//! CUDA output (cargo feature `cuda`, `device=auto`): the output caps offer
//! `video/x-raw(memory:CUDAMemory)` and system memory, in the order of the input batch's
//! memory (CUDA batches: CUDA first), and CUDA memory only where a GPU is usable. Output
//! frames in CUDA memory come from a GstCudaBufferPool of the element's CUDA context
//! (`gst.cuda.context`, shared with the pipeline).
//!
//! `device=cpu` launches no kernel at all: CUDA frames are read through GstCudaMemory's
//! system-memory map (GStreamer downloads them) and a CUDA output frame is written through
//! it (GStreamer uploads it). `device` is read for every batch, so it may change while
//! playing. Why a mosaic was composed on the CPU is logged (info level, when it changes)
//! and readable in the `cpu-reason` property.
//!
//! [`BatchMosaic`]: crate::ops::mosaic::batch::BatchMosaic

use crate::batch::{self, BatchMeta};
use crate::gpu_element::CudaContextElement;
use crate::ops::mosaic::batch::{BatchMosaic, Composed, MosaicError, CAT};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};

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

#[derive(Default)]
pub struct TrtTiler {
    settings: Mutex<Settings>,
    /// The mosaic operation for the negotiated output (set in `set_caps`).
    state: Mutex<Option<BatchMosaic>>,
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
}

#[cfg(feature = "cuda")]
mod cuda;

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
            let mut props = vec![
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
            ];
            props.extend(crate::gpu_element::gpu_properties());
            props
        });
        PROPS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        if self.gpu_set_property(pspec.name(), value) {
            return;
        }
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
        if let Some(v) = self.gpu_property(pspec.name()) {
            return v;
        }
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
        *self.state.lock().unwrap() = None;
        self.gpu_frames.store(0, Ordering::Relaxed);
        *self.cpu_reason.lock().unwrap() = None;
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *self.state.lock().unwrap() = None;
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
        gst::debug!(CAT, imp = self, "input {incaps}, output {outcaps}");
        *self.state.lock().unwrap() = Some(BatchMosaic::new(
            info,
            is_cuda_caps(incaps),
            is_cuda_caps(outcaps),
        ));
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
        let mosaic = guard.as_mut().ok_or(gst::FlowError::NotNegotiated)?;
        let Some(meta) = inbuf.meta::<BatchMeta>() else {
            gst::element_imp_error!(
                self,
                gst::StreamError::Format,
                ("trttiler received a buffer without batch metadata; it must come after trtmux")
            );
            return Err(gst::FlowError::Error);
        };
        let batch = meta.batch();
        let composed = mosaic.compose(
            self.obj().upcast_ref(),
            &self.cuda_ctx,
            batch,
            (s.rows, s.columns),
            s.use_gpu,
            outbuf,
        );
        match composed {
            Ok(Composed::Gpu) => {
                self.composed_on_gpu();
                self.gpu_frames
                    .fetch_add(batch.slots.len() as u64, Ordering::Relaxed);
            }
            Ok(Composed::Cpu(why)) => self.composed_on_cpu(why),
            Err(e) => {
                match &e {
                    MosaicError::Map => gst::element_imp_error!(self, gst::StreamError::Failed, ("{}", e)),
                    MosaicError::Write(_) => {
                        gst::element_imp_error!(self, gst::StreamError::Format, ("{}", e))
                    }
                    MosaicError::Gpu(detail) | MosaicError::GpuWrite(detail) => {
                        gst::element_imp_error!(self, gst::ResourceError::Failed, ("{}", e), ["{}", detail])
                    }
                }
                return Err(gst::FlowError::Error);
            }
        }
        outbuf.set_pts(inbuf.pts());
        outbuf.set_duration(batch.slots.iter().find_map(|s| s.duration));
        Ok(gst::FlowSuccess::Ok)
    }
}
