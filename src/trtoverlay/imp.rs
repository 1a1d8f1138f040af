//! Drawing happens on the slot's own frame buffer: trtmux holds it by reference, so the
//! buffer is writable without a copy unless something upstream (a tee) still shares it,
//! in which case `make_mut` copies it as GStreamer's rules require.

use crate::batch::FrameSlot;
use crate::draw::Canvas;
use crate::overlay::{draw_frame, OverlayStyle};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use std::sync::{LazyLock, Mutex};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "trtoverlay",
        gst::DebugColorFlags::empty(),
        Some("trtvision overlay"),
    )
});

#[derive(Default)]
pub struct TrtOverlay {
    style: Mutex<OverlayStyle>,
    label: Mutex<String>,
}

impl TrtOverlay {
    fn draw_slot(
        &self,
        slot: &mut FrameSlot,
        style: &OverlayStyle,
        label: &mut String,
    ) -> Result<(), gst::FlowError> {
        if slot.results.detections.is_empty() {
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
        draw_frame(&mut canvas, &slot.results.detections, style, label);
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
                "Draws detection boxes, labels and alpha-blended masks in place on the frames of a batch",
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
        let style = *self.style.lock().unwrap();
        let mut label = self.label.lock().unwrap();
        let mut meta = crate::transform::batch_meta(self.obj().upcast_ref(), buf)?;
        for slot in meta.batch_mut().slots.iter_mut() {
            self.draw_slot(slot, &style, &mut label)?;
        }
        gst::trace!(CAT, imp = self, "drew batch");
        Ok(gst::FlowSuccess::Ok)
    }
}
