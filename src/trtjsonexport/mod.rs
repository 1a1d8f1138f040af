//! `trtjsonexport`: writes one JSON line per frame with its detections.

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    /// In-place batch element exporting per-frame results as JSON lines.
    pub struct TrtJsonExport(ObjectSubclass<imp::TrtJsonExport>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "trtjsonexport",
        gst::Rank::NONE,
        TrtJsonExport::static_type(),
    )
}
