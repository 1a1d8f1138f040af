//! `trttracker`: multi-object tracking per source on batches, after `trtinfer`.
//!
//! SORT-style constant-velocity Kalman filter with ByteTrack's two-stage association
//! ([`crate::tracking`]); writes stable per-source ids to each detection's `object_id`,
//! which `trtoverlay` draws (`label 93% #4`), `trtjsonexport` writes (`object_id`) and
//! `trtdemux` exports (ROI meta `detection` field `object-id`).

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    /// In-place batch element assigning tracker ids to detections.
    pub struct TrtTracker(ObjectSubclass<imp::TrtTracker>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "trttracker",
        gst::Rank::NONE,
        TrtTracker::static_type(),
    )
}
