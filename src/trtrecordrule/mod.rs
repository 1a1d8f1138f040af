//! `trtrecordrule`: asks a camera (`trtcamsrc`) for an event recording when a detection
//! satisfies a rule ([`crate::recording::rule`]): class, minimum confidence, optional zone,
//! cooldown per camera. It sits on the batch after trtinfer (and trttracker, trtanalytics)
//! and passes batches through unchanged.

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    /// In-place batch element triggering event recordings of the cameras upstream.
    pub struct TrtRecordRule(ObjectSubclass<imp::TrtRecordRule>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "trtrecordrule",
        gst::Rank::NONE,
        TrtRecordRule::static_type(),
    )
}
