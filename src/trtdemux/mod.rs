//! `trtdemux`: splits batches back into one stream per source, with results as
//! standard `GstVideoRegionOfInterestMeta`.

use gst::glib;
use gst::prelude::*;

#[cfg(feature = "v1_28")]
pub mod analytics;
mod imp;
pub mod roi;

glib::wrapper! {
    /// Batch demuxer with one `src_%u` sometimes-pad per source.
    pub struct TrtDemux(ObjectSubclass<imp::TrtDemux>) @extends gst::Element, gst::Object;
}

/// Which result metadata trtdemux attaches to each frame (property `meta`, GStreamer >= 1.28
/// builds).
#[cfg(feature = "v1_28")]
#[derive(Debug, Eq, PartialEq, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstTrtDemuxMeta")]
pub enum TrtDemuxMeta {
    #[enum_value(
        name = "GstVideoRegionOfInterestMeta per detection (and TrtVisionTensorMeta)",
        nick = "roi"
    )]
    Roi = 0,
    #[enum_value(name = "One GstAnalyticsRelationMeta per frame", nick = "analytics")]
    Analytics = 1,
    #[enum_value(name = "Both the ROI metas and the GstAnalyticsRelationMeta", nick = "both")]
    Both = 2,
}

#[cfg(feature = "v1_28")]
impl TrtDemuxMeta {
    pub fn roi(self) -> bool {
        matches!(self, TrtDemuxMeta::Roi | TrtDemuxMeta::Both)
    }

    pub fn analytics(self) -> bool {
        matches!(self, TrtDemuxMeta::Analytics | TrtDemuxMeta::Both)
    }
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    #[cfg(feature = "v1_28")]
    TrtDemuxMeta::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(Some(plugin), "trtdemux", gst::Rank::NONE, TrtDemux::static_type())
}
