//! `trtmux`: batches frames of N sources into one batch buffer, by reference.

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    /// Aggregator that collects at most one frame per source into a batch.
    pub struct TrtMux(ObjectSubclass<imp::TrtMux>) @extends gst_base::Aggregator, gst::Element, gst::Object, @implements gst::ChildProxy;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(Some(plugin), "trtmux", gst::Rank::NONE, TrtMux::static_type())
}
