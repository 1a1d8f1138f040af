//! `trtdemux`: splits batches back into one stream per source, with results as
//! standard `GstVideoRegionOfInterestMeta`.

use gst::glib;
use gst::prelude::*;

mod imp;
pub mod roi;

glib::wrapper! {
    /// Batch demuxer with one `src_%u` sometimes-pad per source.
    pub struct TrtDemux(ObjectSubclass<imp::TrtDemux>) @extends gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(Some(plugin), "trtdemux", gst::Rank::NONE, TrtDemux::static_type())
}
