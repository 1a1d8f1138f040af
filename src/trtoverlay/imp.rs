//! Drawing happens on the slot's own frame buffer: trtmux holds it by reference, so the
//! buffer is writable without a copy unless something upstream (a tee) still shares it,
//! in which case `make_mut` copies it as GStreamer's rules require.

use crate::batch::FrameSlot;
use crate::draw::colormap::Colormap;
use crate::draw::{class_color, Canvas};
use crate::results::{Detection, FrameResults};
use crate::video::Paint;
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use std::fmt::Write;
use std::sync::{LazyLock, Mutex};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "trtoverlay",
        gst::DebugColorFlags::empty(),
        Some("trtvision overlay"),
    )
});

/// What is drawn, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct OverlayStyle {
    pub line_width: u32,
    pub mask_alpha: f32,
    pub draw_boxes: bool,
    pub draw_labels: bool,
    pub draw_masks: bool,
    pub text_scale: u32,
    /// Colour map of dense outputs (none = not drawn).
    pub dense_colormap: Colormap,
    /// Opacity of the dense colour map.
    pub dense_alpha: f32,
    /// Model whose dense map is drawn (empty = the first one of the frame).
    pub dense_model: String,
    /// Value range mapped onto the colour map; `None` = each map's own min and max.
    pub dense_range: Option<(f32, f32)>,
    /// Draw the keypoints of secondary models.
    pub draw_keypoints: bool,
    /// Half-size of a keypoint marker in pixels.
    pub keypoint_radius: u32,
}

impl Default for OverlayStyle {
    fn default() -> Self {
        Self {
            line_width: 2,
            mask_alpha: 0.4,
            draw_boxes: true,
            draw_labels: true,
            draw_masks: true,
            text_scale: 2,
            dense_colormap: Colormap::None,
            dense_alpha: 0.5,
            dense_model: String::new(),
            dense_range: None,
            draw_keypoints: true,
            keypoint_radius: 2,
        }
    }
}

/// Reusable drawing state: the colour map's 256 paints and scratch.
#[derive(Debug, Default)]
pub struct OverlayScratch {
    pub label: String,
    lut: Vec<Paint>,
    lut_of: Option<Colormap>,
    cols: Vec<u32>,
}

/// Draws everything attached to one frame: the dense map first (under the rest), then the
/// detections and their keypoints (CPU implementation).
pub fn draw_results(
    canvas: &mut Canvas,
    results: &FrameResults,
    style: &OverlayStyle,
    scratch: &mut OverlayScratch,
) {
    if style.dense_colormap != Colormap::None {
        if let Some(map) = results.dense_for(&style.dense_model) {
            if scratch.lut_of != Some(style.dense_colormap) {
                scratch.lut = style.dense_colormap.lut();
                scratch.lut_of = Some(style.dense_colormap);
            }
            if let Some(range) = style
                .dense_range
                .or_else(|| map.stats().map(|(lo, _, hi)| (lo, hi)))
            {
                canvas.dense(map, &scratch.lut, range, style.dense_alpha, &mut scratch.cols);
            }
        }
    }
    draw_frame(canvas, &results.detections, style, &mut scratch.label);
    if style.draw_keypoints {
        for d in &results.detections {
            for r in &d.secondary {
                for (k, p) in r.keypoints.iter().enumerate() {
                    canvas.point(p.x, p.y, style.keypoint_radius, class_color(k as u32 + 5));
                }
            }
        }
    }
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

/// Draws the detections of one frame onto it (CPU implementation).
pub fn draw_frame(canvas: &mut Canvas, detections: &[Detection], style: &OverlayStyle, label: &mut String) {
    if style.draw_masks {
        for d in detections {
            if let Some(m) = &d.mask {
                canvas.mask(m, class_color(d.class_id), style.mask_alpha);
            }
        }
    }
    for d in detections {
        let color = class_color(d.class_id);
        if style.draw_boxes {
            canvas.rect_outline(&d.bbox, color, style.line_width);
        }
        if style.draw_labels {
            label.clear();
            let _ = write!(label, "{} {:.0}%", d.label, d.confidence * 100.0);
            if d.object_id >= 0 {
                let _ = write!(label, " #{}", d.object_id);
            }
            for a in d.secondary.iter().filter_map(|r| r.attribute.as_ref()) {
                let _ = write!(label, " {}", a.label);
            }
            let h = (crate::font::GLYPH_H * style.text_scale) as f32;
            let y = if d.bbox.y0 >= h { d.bbox.y0 - h } else { d.bbox.y0 };
            canvas.text(
                d.bbox.x0 as i32,
                y as i32,
                label,
                [255, 255, 255],
                style.text_scale,
                Some(color),
            );
        }
    }
}

#[derive(Default)]
pub struct TrtOverlay {
    style: Mutex<OverlayStyle>,
    scratch: Mutex<OverlayScratch>,
}

impl TrtOverlay {
    fn draw_slot(
        &self,
        slot: &mut FrameSlot,
        style: &OverlayStyle,
        scratch: &mut OverlayScratch,
    ) -> Result<(), gst::FlowError> {
        let dense = style.dense_colormap != Colormap::None && !slot.results.dense.is_empty();
        if slot.results.detections.is_empty() && !dense {
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
        draw_results(&mut canvas, &slot.results, style, scratch);
        Ok(())
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
                glib::ParamSpecString::builder("dense-colormap")
                    .nick("Dense colour map")
                    .blurb("Colour map for dense model outputs (parser dense, e.g. depth): none (not drawn), turbo, jet or gray; drawn under boxes and masks, mapped back through the letterbox onto the frame")
                    .default_value(Some(d.dense_colormap.name()))
                    .mutable_playing()
                    .build(),
                glib::ParamSpecFloat::builder("dense-alpha")
                    .nick("Dense map opacity")
                    .blurb("Opacity of the dense colour map (0 = invisible, 1 = opaque)")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(d.dense_alpha)
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
                glib::ParamSpecUInt::builder("keypoint-radius")
                    .nick("Keypoint radius")
                    .blurb("Half-size in pixels of the square drawn at each keypoint")
                    .maximum(64)
                    .default_value(d.keypoint_radius)
                    .mutable_playing()
                    .build(),
            ]
        });
        PROPS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.style.lock().unwrap();
        match pspec.name() {
            "line-width" => s.line_width = value.get().expect("type checked upstream"),
            "mask-alpha" => s.mask_alpha = value.get().expect("type checked upstream"),
            "draw-boxes" => s.draw_boxes = value.get().expect("type checked upstream"),
            "draw-labels" => s.draw_labels = value.get().expect("type checked upstream"),
            "draw-masks" => s.draw_masks = value.get().expect("type checked upstream"),
            "text-scale" => s.text_scale = value.get().expect("type checked upstream"),
            "dense-colormap" => {
                let t = value.get::<Option<String>>().ok().flatten().unwrap_or_default();
                match Colormap::parse(&t) {
                    Some(c) => s.dense_colormap = c,
                    None => gst::warning!(
                        CAT,
                        imp = self,
                        "unknown dense-colormap '{t}' (none, turbo, jet, gray): kept {}",
                        s.dense_colormap.name()
                    ),
                }
            }
            "dense-alpha" => s.dense_alpha = value.get().expect("type checked upstream"),
            "dense-model" => s.dense_model = value.get::<Option<String>>().ok().flatten().unwrap_or_default(),
            "dense-range" => {
                let t = value.get::<Option<String>>().ok().flatten().unwrap_or_default();
                match parse_range(&t) {
                    Ok(r) => s.dense_range = r,
                    Err(e) => gst::warning!(CAT, imp = self, "ignoring dense-range: {e}"),
                }
            }
            "draw-keypoints" => s.draw_keypoints = value.get().expect("type checked upstream"),
            "keypoint-radius" => s.keypoint_radius = value.get().expect("type checked upstream"),
            _ => unreachable!("unknown property {}", pspec.name()),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.style.lock().unwrap();
        match pspec.name() {
            "line-width" => s.line_width.to_value(),
            "mask-alpha" => s.mask_alpha.to_value(),
            "draw-boxes" => s.draw_boxes.to_value(),
            "draw-labels" => s.draw_labels.to_value(),
            "draw-masks" => s.draw_masks.to_value(),
            "text-scale" => s.text_scale.to_value(),
            "dense-colormap" => s.dense_colormap.name().to_value(),
            "dense-alpha" => s.dense_alpha.to_value(),
            "dense-model" => s.dense_model.to_value(),
            "dense-range" => match s.dense_range {
                Some((lo, hi)) => format!("{lo},{hi}"),
                None => "auto".to_string(),
            }
            .to_value(),
            "draw-keypoints" => s.draw_keypoints.to_value(),
            "keypoint-radius" => s.keypoint_radius.to_value(),
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
}

impl BaseTransformImpl for TrtOverlay {
    const MODE: gst_base::subclass::BaseTransformMode = gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn transform_ip(&self, buf: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        let style = self.style.lock().unwrap().clone();
        let mut scratch = self.scratch.lock().unwrap();
        let mut meta = crate::transform::batch_meta(self.obj().upcast_ref(), buf)?;
        for slot in meta.batch_mut().slots.iter_mut() {
            self.draw_slot(slot, &style, &mut scratch)?;
        }
        gst::trace!(CAT, imp = self, "drew batch");
        Ok(gst::FlowSuccess::Ok)
    }
}
