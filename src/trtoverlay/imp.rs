//! Drawing happens on the slot's own frame buffer: trtmux holds it by reference, so the
//! buffer is writable without a copy unless something upstream (a tee) still shares it,
//! in which case `make_mut` copies it as GStreamer's rules require.
//!
//! The drawing itself is [`BatchOverlay`] (CPU or CUDA path per frame, chosen inside the
//! operation); the element holds it between start and stop, passes it the batch, its
//! settings and its CUDA context, and turns its errors into error messages.

use crate::gpu_element::CudaContextElement;
use crate::ops::overlay::batch::{parse_range, BatchOverlay, ExtraStyle, OverlayError, CAT};
use crate::ops::overlay::OverlayStyle;
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};

#[derive(Debug, Clone)]
struct Settings {
    style: OverlayStyle,
    extra: ExtraStyle,
    /// Draw on the GPU when the frames are CUDA memory.
    use_gpu: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            style: OverlayStyle::default(),
            extra: ExtraStyle::default(),
            use_gpu: true,
        }
    }
}

#[derive(Default)]
pub struct TrtOverlay {
    settings: Mutex<Settings>,
    /// The drawing operation, between start and stop.
    state: Mutex<Option<BatchOverlay>>,
    /// Frames drawn on the GPU since start.
    gpu_frames: AtomicU64,
    /// CUDA context shared with the pipeline through `gst.cuda.context`.
    cuda_ctx: crate::gpu_element::ElementCudaContext,
}

impl TrtOverlay {
    /// Posts the error message of `e` and returns the flow result it stands for.
    fn post_error(&self, e: OverlayError) -> gst::FlowError {
        match e {
            OverlayError::Map => {
                gst::element_imp_error!(self, gst::StreamError::Failed, ("{}", e));
                gst::FlowError::Error
            }
            OverlayError::Format(_) => {
                gst::element_imp_error!(self, gst::StreamError::Format, ("{}", e));
                gst::FlowError::NotNegotiated
            }
            #[cfg(feature = "cuda")]
            OverlayError::GpuWait(ref cause) | OverlayError::GpuDraw(ref cause) => {
                gst::element_imp_error!(self, gst::ResourceError::Failed, ("{}", e), ["{}", cause]);
                gst::FlowError::Error
            }
        }
    }
}

#[glib::object_subclass]
impl ObjectSubclass for TrtOverlay {
    const NAME: &'static str = "GstTrtOverlay";
    type Type = super::TrtOverlay;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for TrtOverlay {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let d = OverlayStyle::default();
            let e = ExtraStyle::default();
            let mut props = vec![
                glib::ParamSpecUInt::builder("line-width")
                    .nick("Line width")
                    .blurb("Width of box outlines in pixels (0 = no outline)")
                    .maximum(64)
                    .default_value(d.line_width)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecFloat::builder("mask-alpha")
                    .nick("Mask opacity")
                    .blurb("Opacity of the per-class mask colour blended over the object (0 = invisible, 1 = opaque)")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(d.mask_alpha)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("draw-boxes")
                    .nick("Draw boxes")
                    .blurb("Draw the outline of each detection's box")
                    .default_value(d.draw_boxes)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("draw-labels")
                    .nick("Draw labels")
                    .blurb("Draw label, confidence and object id above each box (built-in bitmap font)")
                    .default_value(d.draw_labels)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("draw-masks")
                    .nick("Draw masks")
                    .blurb("Blend each detection's mask in its class colour")
                    .default_value(d.draw_masks)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("text-scale")
                    .nick("Text scale")
                    .blurb("Integer scale of the 5x7 label font")
                    .minimum(1)
                    .maximum(8)
                    .default_value(d.text_scale)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("dense-colormap", e.dense_colormap)
                    .nick("Dense colour map")
                    .blurb("Colour map for dense model outputs (parser dense, e.g. depth): none (not drawn), turbo, jet or gray; drawn under boxes and masks, mapped back through the letterbox onto the frame")
                    .mutable_playing()
                    .build(),
                glib::ParamSpecFloat::builder("dense-alpha")
                    .nick("Dense map opacity")
                    .blurb("Opacity of the dense colour map (0 = invisible, 1 = opaque)")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(e.dense_alpha)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("dense-model")
                    .nick("Dense model")
                    .blurb("model-name of the dense output that is drawn (empty = the first dense output of each frame)")
                    .default_value(Some(""))
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("dense-range")
                    .nick("Dense value range")
                    .blurb("Values mapped onto the colour map: 'lo,hi' (e.g. '0,10'), or auto = each frame's own minimum and maximum")
                    .default_value(Some("auto"))
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("draw-keypoints")
                    .nick("Draw keypoints")
                    .blurb("Draw the keypoints secondary models (operate-on=objects) attached to objects")
                    .default_value(d.draw_keypoints)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("draw-analytics")
                    .nick("Draw analytics")
                    .blurb("Draw trtanalytics' zones (red at or above their occupancy threshold) with their counts, \
                            and its directed lines with an arrow towards the forward side and their crossing totals")
                    .default_value(true)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("keypoint-radius")
                    .nick("Keypoint radius")
                    .blurb("Half-size in pixels of the square drawn at each keypoint")
                    .maximum(64)
                    .default_value(d.keypoint_radius)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt64::builder("gpu-frames")
                    .nick("Frames drawn on the GPU")
                    .blurb("Frames drawn on the GPU since start (the others, e.g. in system memory, were drawn on the CPU)")
                    .read_only()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("device", crate::transform::Device::Auto)
                    .nick("Device")
                    .blurb("Where frames are drawn: auto (on the GPU, one kernel launch per batch, for frames in CUDA memory when the plugin was built with CUDA; else on the CPU) or cpu (always on the CPU); both give the same pixels")
                    .mutable_ready()
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
        let mut settings = self.settings.lock().unwrap();
        let Settings {
            style: s, extra: x, ..
        } = &mut *settings;
        match pspec.name() {
            "line-width" => s.line_width = value.get().expect("type checked upstream"),
            "mask-alpha" => s.mask_alpha = value.get().expect("type checked upstream"),
            "draw-boxes" => s.draw_boxes = value.get().expect("type checked upstream"),
            "draw-labels" => s.draw_labels = value.get().expect("type checked upstream"),
            "draw-masks" => s.draw_masks = value.get().expect("type checked upstream"),
            "text-scale" => s.text_scale = value.get().expect("type checked upstream"),
            "dense-colormap" => x.dense_colormap = value.get().expect("type checked upstream"),
            "dense-alpha" => x.dense_alpha = value.get().expect("type checked upstream"),
            "dense-model" => {
                x.dense_model = std::sync::Arc::from(
                    value
                        .get::<Option<String>>()
                        .ok()
                        .flatten()
                        .unwrap_or_default()
                        .as_str(),
                )
            }
            "dense-range" => {
                let t = value.get::<Option<String>>().ok().flatten().unwrap_or_default();
                match parse_range(&t) {
                    Ok(r) => x.dense_range = r,
                    Err(e) => gst::warning!(CAT, imp = self, "ignoring dense-range: {e}"),
                }
            }
            "draw-keypoints" => s.draw_keypoints = value.get().expect("type checked upstream"),
            "draw-analytics" => x.draw_analytics = value.get().expect("type checked upstream"),
            "keypoint-radius" => s.keypoint_radius = value.get().expect("type checked upstream"),
            "device" => {
                settings.use_gpu = value
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
        let settings = self.settings.lock().unwrap();
        let (s, x) = (&settings.style, &settings.extra);
        match pspec.name() {
            "line-width" => s.line_width.to_value(),
            "mask-alpha" => s.mask_alpha.to_value(),
            "draw-boxes" => s.draw_boxes.to_value(),
            "draw-labels" => s.draw_labels.to_value(),
            "draw-masks" => s.draw_masks.to_value(),
            "text-scale" => s.text_scale.to_value(),
            "dense-colormap" => x.dense_colormap.to_value(),
            "dense-alpha" => x.dense_alpha.to_value(),
            "dense-model" => x.dense_model.to_value(),
            "dense-range" => match x.dense_range {
                Some((lo, hi)) => format!("{lo},{hi}"),
                None => "auto".to_string(),
            }
            .to_value(),
            "draw-keypoints" => s.draw_keypoints.to_value(),
            "draw-analytics" => x.draw_analytics.to_value(),
            "keypoint-radius" => s.keypoint_radius.to_value(),
            "device" => crate::transform::Device::from_gpu(settings.use_gpu).to_value(),
            "gpu-frames" => self.gpu_frames.load(Ordering::Relaxed).to_value(),
            _ => unreachable!("unknown property {}", pspec.name()),
        }
    }
}

impl GstObjectImpl for TrtOverlay {}

impl ElementImpl for TrtOverlay {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "TrtVision overlay",
                "Filter/Effect/Video",
                "Draws detection boxes, labels, alpha-blended masks, keypoints and dense colour maps in place on the frames of a batch",
                "gst-trtvision developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static T: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(crate::transform::batch_pad_templates);
        T.as_ref()
    }

    fn set_context(&self, context: &gst::Context) {
        self.cuda_set_context(context)
    }

    fn change_state(&self, t: gst::StateChange) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        self.cuda_change_state(t)
    }
}

impl CudaContextElement for TrtOverlay {
    fn cuda_context(&self) -> &crate::gpu_element::ElementCudaContext {
        &self.cuda_ctx
    }

    fn debug_category(&self) -> gst::DebugCategory {
        *CAT
    }
}

impl BaseTransformImpl for TrtOverlay {
    const MODE: gst_base::subclass::BaseTransformMode = gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let use_gpu = self.settings.lock().unwrap().use_gpu;
        *self.state.lock().unwrap() = Some(BatchOverlay::new(use_gpu));
        self.gpu_frames.store(0, Ordering::Relaxed);
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

    fn transform_ip(&self, buf: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        let (style, extra) = {
            let s = self.settings.lock().unwrap();
            (s.style, s.extra.clone())
        };
        let mut meta = crate::transform::batch_meta(self.obj().upcast_ref(), buf)?;
        let mut guard = self.state.lock().unwrap();
        let op = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        let drawn = op
            .draw(
                self.obj().upcast_ref(),
                &self.cuda_ctx,
                meta.batch_mut(),
                &style,
                &extra,
            )
            .map_err(|e| self.post_error(e))?;
        self.gpu_frames.fetch_add(drawn, Ordering::Relaxed);
        gst::trace!(CAT, imp = self, "drew batch");
        Ok(gst::FlowSuccess::Ok)
    }
}
