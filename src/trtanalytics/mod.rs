//! `trtanalytics`: zones, directed lines, dwell time and occupancy per camera
//! ([`crate::analytics`]), on batches after trtinfer/trtmaskselect/trttracker. Results go
//! into each frame's results (`analytics`), which trtmsgbroker sends as events,
//! trtjsonexport writes and trtoverlay draws.

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    /// In-place batch element computing zone counts and zone/line events.
    pub struct TrtAnalytics(ObjectSubclass<imp::TrtAnalytics>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "trtanalytics",
        gst::Rank::NONE,
        TrtAnalytics::static_type(),
    )
}
