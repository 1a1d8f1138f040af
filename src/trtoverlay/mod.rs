//! `trtoverlay`: draws boxes, labels and masks in place on the frames of a batch.

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    /// In-place batch element drawing the results onto the frames.
    pub struct TrtOverlay(ObjectSubclass<imp::TrtOverlay>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "trtoverlay",
        gst::Rank::NONE,
        TrtOverlay::static_type(),
    )
}
