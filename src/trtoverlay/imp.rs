//! Drawing happens on the slot's own frame buffer: trtmux holds it by reference, so the
//! buffer is writable without a copy unless something upstream (a tee) still shares it,
//! in which case `make_mut` copies it as GStreamer's rules require.
//!
//! CUDA path (cargo feature `cuda`, `device=auto`): the frames of a batch that are
//! GstCudaMemory of a context the element can use are drawn by [`CudaOverlay`] with one
//! kernel launch for the whole batch, from the same command list the CPU executor
//! follows ([`crate::ops::overlay`]), byte-identical to the CPU drawing. Other frames (system
//! memory, another GPU's context) are drawn on the CPU. Dense colour maps are drawn
//! in the same launch, under the boxes: maps in GPU memory (trtinfer on a GPU backend) are
//! read where they are, host maps travel with the batch's command list (one copy per
//! batch). A map only in GPU memory drawn on a system-memory frame is copied to the host
//! for that frame. The element waits for the
//! kernel before pushing the batch: GstCudaMemory of GStreamer 1.22 carries no stream
//! or event, so downstream elements (encoders, `cudadownload`) read it right away on
//! their own streams.
//!
//! [`CudaOverlay`]: crate::ops::overlay::cuda::CudaOverlay

use crate::analytics::FrameAnalytics;
use crate::batch::{Batch, FrameSlot};
use crate::gpu_element::CudaContextElement;
use crate::ops::overlay::draw::colormap::Colormap;
use crate::ops::overlay::draw::Canvas;
use crate::ops::overlay::{draw_analytics, draw_frame, OverlayStyle};
use crate::results::{DenseMap, FrameResults};
use crate::video::Paint;
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "trtoverlay",
        gst::DebugColorFlags::empty(),
        Some("trtvision overlay"),
    )
});

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

/// Dense maps as a colour map.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtraStyle {
    /// Colour map of dense outputs (none = not drawn).
    pub dense_colormap: Colormap,
    /// Opacity of the dense colour map.
    pub dense_alpha: f32,
    /// Model whose dense map is drawn (empty = the first one of the frame).
    pub dense_model: std::sync::Arc<str>,
    /// Value range mapped onto the colour map; `None` = each map's own min and max.
    pub dense_range: Option<(f32, f32)>,
    /// Draw trtanalytics' zones, lines and counts where a frame carries them.
    pub draw_analytics: bool,
}

impl Default for ExtraStyle {
    fn default() -> Self {
        Self {
            dense_colormap: Colormap::None,
            dense_alpha: 0.5,
            dense_model: std::sync::Arc::from(""),
            dense_range: None,
            draw_analytics: true,
        }
    }
}

impl ExtraStyle {
    /// The dense map of `results` that is drawn and the value range mapped onto the colour
    /// map (`dense-range`, or the map's own minimum and maximum), or `None` when no map is
    /// drawn (colour map none, no map of `dense-model`, no finite value).
    pub fn dense_to_draw<'a>(&self, results: &'a FrameResults) -> Option<(&'a DenseMap, (f32, f32))> {
        if self.dense_colormap == Colormap::None {
            return None;
        }
        let map = results.dense_for(&self.dense_model)?;
        let range = self
            .dense_range
            .or_else(|| map.stats().map(|(lo, _, hi)| (lo, hi)))?;
        Some((map, range))
    }

    /// trtanalytics' results of `results` to draw (`draw-analytics`, a configured camera).
    pub fn analytics_to_draw<'a>(&self, results: &'a FrameResults) -> Option<&'a FrameAnalytics> {
        let a = results.analytics.as_deref()?;
        (self.draw_analytics && a.rules.is_some()).then_some(a)
    }
}

/// Reusable drawing state: the colour map's 256 paints and scratch.
#[derive(Debug, Default)]
pub struct OverlayScratch {
    pub label: String,
    lut: Vec<Paint>,
    lut_of: Option<Colormap>,
    cols: Vec<u32>,
    /// Channel 0 of a map only in GPU memory, copied for CPU drawing.
    values: Vec<f32>,
}

impl OverlayScratch {
    /// The 256 paints of `colormap` (computed when it changes).
    pub fn lut(&mut self, colormap: Colormap) -> &[Paint] {
        if self.lut_of != Some(colormap) {
            self.lut = colormap.lut();
            self.lut_of = Some(colormap);
        }
        &self.lut
    }
}

/// Draws everything attached to one frame: the dense map first (under the rest), then the
/// detections and their keypoints (CPU implementation). A map only in GPU memory is copied
/// to the host first (plugin built with CUDA; else it is not drawn).
pub fn draw_results(
    canvas: &mut Canvas,
    results: &FrameResults,
    style: &OverlayStyle,
    extra: &ExtraStyle,
    scratch: &mut OverlayScratch,
) {
    if let Some((map, range)) = extra.dense_to_draw(results) {
        scratch.lut(extra.dense_colormap);
        let OverlayScratch {
            lut, cols, values, ..
        } = scratch;
        if let Some(v) = map.channel(0).or_else(|| host_copy(map, values)) {
            canvas.dense_values(map, v, lut, range, extra.dense_alpha, cols);
        }
    }
    if let Some(a) = extra.analytics_to_draw(results) {
        draw_analytics(canvas, a, style, &mut scratch.label);
    }
    draw_frame(canvas, &results.detections, style, &mut scratch.label);
}

/// Channel 0 of a map only in GPU memory, copied into `values`; `None` (logged) when the
/// copy fails or the plugin was built without CUDA.
fn host_copy<'a>(map: &DenseMap, values: &'a mut Vec<f32>) -> Option<&'a [f32]> {
    #[cfg(feature = "cuda")]
    if map.device.is_some() {
        match crate::ops::dense::cuda::download_channel0(map, values) {
            Ok(()) => return Some(values.as_slice()),
            Err(e) => gst::warning!(CAT, "the dense map of '{}' is not drawn: {e}", map.model),
        }
    }
    let _ = (map, values);
    None
}

/// Parses a dense value range `lo,hi` (`auto` or empty = `None`).
pub fn parse_range(s: &str) -> Result<Option<(f32, f32)>, String> {
    let t = s.trim();
    if t.is_empty() || t.eq_ignore_ascii_case("auto") {
        return Ok(None);
    }
    let v: Vec<f32> = t
        .split(',')
        .map(|p| p.trim().parse::<f32>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("'{s}' is not 'auto' or two numbers 'lo,hi'"))?;
    match v.as_slice() {
        [lo, hi] if lo.is_finite() && hi.is_finite() && lo < hi => Ok(Some((*lo, *hi))),
        _ => Err(format!(
            "'{s}' is not 'auto' or two finite numbers 'lo,hi' with lo < hi"
        )),
    }
}

/// What exists between start and stop; every buffer is reused from batch to batch.
#[derive(Default)]
struct State {
    scratch: OverlayScratch,
    /// Slots already drawn on the GPU in the current batch.
    on_gpu: Vec<bool>,
    #[cfg(feature = "cuda")]
    cuda: CudaState,
}

#[cfg(feature = "cuda")]
#[derive(Default)]
struct CudaState {
    /// Created on the first batch with CUDA frames to draw on.
    overlay: Option<crate::ops::overlay::cuda::CudaOverlay>,
    /// Set when the CUDA path is off (`device=cpu`) or failed once.
    disabled: bool,
    list: crate::ops::overlay::OverlayCommands,
    maps: Vec<crate::cuda::CudaFrameMap>,
    frames: Vec<crate::cuda::CudaFrame>,
}

#[derive(Default)]
pub struct TrtOverlay {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    /// Frames drawn on the GPU since start.
    gpu_frames: AtomicU64,
    /// CUDA context shared with the pipeline through `gst.cuda.context`.
    cuda_ctx: crate::gpu_element::ElementCudaContext,
}

impl TrtOverlay {
    fn draw_slot(
        &self,
        slot: &mut FrameSlot,
        style: &OverlayStyle,
        extra: &ExtraStyle,
        scratch: &mut OverlayScratch,
    ) -> Result<(), gst::FlowError> {
        if slot.results.detections.is_empty()
            && extra.dense_to_draw(&slot.results).is_none()
            && extra.analytics_to_draw(&slot.results).is_none()
        {
            return Ok(());
        }
        let info = slot.info.clone();
        let buffer = slot.buffer.make_mut();
        let mut frame = gst_video::VideoFrameRef::from_buffer_ref_writable(buffer, &info).map_err(|_| {
            gst::element_imp_error!(
                self,
                gst::StreamError::Failed,
                ("Could not map a frame for drawing")
            );
            gst::FlowError::Error
        })?;
        let mut canvas = Canvas::new(&mut frame).map_err(|e| {
            gst::element_imp_error!(
                self,
                gst::StreamError::Format,
                ("Cannot draw on this frame: {}", e)
            );
            gst::FlowError::NotNegotiated
        })?;
        draw_results(&mut canvas, &slot.results, style, extra, scratch);
        Ok(())
    }

    fn draw_batch(
        &self,
        state: &mut State,
        batch: &mut Batch,
        style: &OverlayStyle,
        extra: &ExtraStyle,
    ) -> Result<(), gst::FlowError> {
        state.on_gpu.clear();
        state.on_gpu.resize(batch.slots.len(), false);
        #[cfg(feature = "cuda")]
        self.draw_cuda(state, batch, style, extra)?;
        for (slot, on_gpu) in batch.slots.iter_mut().zip(&state.on_gpu) {
            if !on_gpu {
                self.draw_slot(slot, style, extra, &mut state.scratch)?;
            }
        }
        Ok(())
    }
}

#[cfg(feature = "cuda")]
impl TrtOverlay {
    /// Draws the slots in CUDA memory of the element's context with one launch and marks
    /// them in `state.on_gpu`; the others are left to the CPU.
    fn draw_cuda(
        &self,
        state: &mut State,
        batch: &mut Batch,
        style: &OverlayStyle,
        extra: &ExtraStyle,
    ) -> Result<(), gst::FlowError> {
        use crate::cuda;
        use crate::ops::overlay::DenseDraw;
        let cs = &mut state.cuda;
        if cs.disabled {
            return Ok(());
        }
        let Some(ctx) = self.cuda_ctx.get() else {
            return Ok(());
        };
        cs.list.clear();
        if extra.dense_colormap != Colormap::None {
            cs.list.set_dense_lut(state.scratch.lut(extra.dense_colormap));
        }
        // Frames read by trtpreprocess's kernel are also held by its tensor until the batch
        // input is released (trtdemux): twice referenced, `make_mut` would copy each frame
        // (an allocation and a synchronous copy per frame). Before the first frame is mapped
        // for drawing, the overlay's stream waits for that kernel instead and the tensor lets
        // go of the frames; the slots hold them until the overlay's own work is done (it
        // waits before pushing the batch, and synchronises its stream on every other way out).
        let mut released = None;
        for (i, slot) in batch.slots.iter_mut().enumerate() {
            let dense = extra.dense_to_draw(&slot.results);
            let analytics = extra.analytics_to_draw(&slot.results);
            if slot.results.detections.is_empty() && dense.is_none() && analytics.is_none() {
                continue;
            }
            if !cuda::is_cuda_buffer(slot.buffer.as_ref()) {
                gst::trace!(CAT, imp = self, "frame {i} is in system memory: drawn on the CPU");
                continue;
            }
            if released.is_none() {
                if let Err(e) = self.ensure_overlay(cs, &ctx) {
                    return self.finish_cuda(cs, &mut state.on_gpu, Err(e), 0);
                }
                let stream = cs.overlay.as_ref().map(|o| o.stream());
                // SAFETY: the overlay's live stream; the slots keep the frames (see above).
                let (n, res) = match stream {
                    Some(s) => unsafe { crate::batch::release_frames_after(&batch.inputs, s) },
                    None => (0, Ok(())),
                };
                if let Err(e) = res {
                    gst::debug!(CAT, imp = self, "frames stay with the batch input: {e}");
                }
                released = Some(n);
            }
            let info = slot.info.clone();
            match cuda::map_cuda_frame_mut(slot.buffer.make_mut(), &info) {
                Ok(m) if m.is_accessible_from(&ctx) => {
                    let dense = dense.map(|(map, range)| DenseDraw {
                        map,
                        range,
                        alpha: extra.dense_alpha,
                    });
                    cs.list.add_frame_with_analytics(
                        info.width(),
                        info.height(),
                        &crate::video::color::YuvCoefficients::for_info(&info),
                        dense,
                        analytics,
                        &slot.results.detections,
                        style,
                    );
                    cs.frames.push(m.frame());
                    cs.maps.push(m);
                    state.on_gpu[i] = true;
                }
                Ok(_) => gst::debug!(CAT, imp = self, "frame of another CUDA context: drawn on the CPU"),
                Err(e) => gst::warning!(CAT, imp = self, "{e}: drawn on the CPU"),
            }
        }
        let result = self.launch(cs, &ctx);
        self.finish_cuda(cs, &mut state.on_gpu, result, released.unwrap_or(0))
    }

    /// Ends [`TrtOverlay::draw_cuda`]: unmaps the frames and turns `result` into the flow
    /// result. When the batch input let go of `released` frames and no completed launch was
    /// waited for, the overlay's stream is synchronised first (its waits on trtpreprocess's
    /// kernels must be over before the frames go downstream).
    fn finish_cuda(
        &self,
        cs: &mut CudaState,
        on_gpu: &mut [bool],
        result: Result<bool, Launch>,
        released: usize,
    ) -> Result<(), gst::FlowError> {
        let drawn = cs.frames.len() as u64;
        cs.frames.clear();
        cs.maps.clear();
        if released > 0 && !matches!(result, Ok(true)) {
            if let Some(Err(e)) = cs.overlay.as_ref().map(|o| o.synchronize()) {
                gst::element_imp_error!(
                    self,
                    gst::ResourceError::Failed,
                    ("Waiting for the GPU failed"),
                    ["{}", e]
                );
                return Err(gst::FlowError::Error);
            }
        }
        let result = result.map(|_| ());
        match result {
            Ok(()) => {
                self.gpu_frames.fetch_add(drawn, Ordering::Relaxed);
                Ok(())
            }
            Err(Launch::Fallback) => {
                on_gpu.iter_mut().for_each(|g| *g = false);
                Ok(())
            }
            Err(Launch::Failed(e)) => {
                gst::element_imp_error!(
                    self,
                    gst::ResourceError::Failed,
                    ("Drawing the overlay on the GPU failed"),
                    ["{}", e]
                );
                Err(gst::FlowError::Error)
            }
        }
    }

    /// Creates the CUDA overlay on first use; on failure the element stays on the CPU.
    fn ensure_overlay(&self, cs: &mut CudaState, ctx: &crate::cuda::CudaContext) -> Result<(), Launch> {
        if cs.overlay.is_none() {
            match crate::ops::overlay::cuda::CudaOverlay::for_gst(ctx) {
                Ok(o) => {
                    gst::info!(CAT, imp = self, "CUDA overlay on {}", o.arch());
                    cs.overlay = Some(o);
                }
                Err(e) => {
                    gst::warning!(
                        CAT,
                        imp = self,
                        "CUDA overlay unavailable, CPU path from now on: {e}"
                    );
                    cs.disabled = true;
                    return Err(Launch::Fallback);
                }
            }
        }
        Ok(())
    }

    /// Draws the mapped frames with one launch and waits for it: true when a launch was
    /// waited for, false when there was nothing to draw.
    fn launch(&self, cs: &mut CudaState, ctx: &crate::cuda::CudaContext) -> Result<bool, Launch> {
        if cs.frames.is_empty() {
            return Ok(false);
        }
        self.ensure_overlay(cs, ctx)?;
        let Some(overlay) = cs.overlay.as_mut() else {
            return Err(Launch::Fallback);
        };
        match overlay.draw(&cs.frames, &cs.list) {
            Ok(false) => Ok(false),
            Ok(true) => overlay.wait().map(|()| true).map_err(Launch::Failed),
            Err(e) => {
                // Nothing was queued, or the launch itself failed: the CPU draws.
                gst::warning!(CAT, imp = self, "{e}: drawn on the CPU");
                overlay.wait().map_err(Launch::Failed)?;
                Err(Launch::Fallback)
            }
        }
    }
}

#[cfg(feature = "cuda")]
enum Launch {
    /// Draw these frames on the CPU.
    Fallback,
    /// The kernel ran and failed: the frames may be half drawn.
    Failed(crate::cuda::CudaError),
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
            vec![
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
            ]
        });
        PROPS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
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
        #[allow(unused_variables)]
        let use_gpu = self.settings.lock().unwrap().use_gpu;
        *self.state.lock().unwrap() = Some(State {
            #[cfg(feature = "cuda")]
            cuda: CudaState {
                disabled: !use_gpu,
                ..Default::default()
            },
            ..Default::default()
        });
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
        let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        self.draw_batch(state, meta.batch_mut(), &style, &extra)?;
        gst::trace!(CAT, imp = self, "drew batch");
        Ok(gst::FlowSuccess::Ok)
    }
}
