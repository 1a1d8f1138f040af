//! `trtmaskselect`: keeps only the masks of active detections, cropped to their boxes.

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    /// In-place batch element computing compact per-detection masks.
    pub struct TrtMaskSelect(ObjectSubclass<imp::TrtMaskSelect>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "trtmaskselect",
        gst::Rank::NONE,
        TrtMaskSelect::static_type(),
    )
}
