//! `trtmux`: batches frames of N sources into one batch buffer, by reference.

use gst::glib;
use gst::prelude::*;

mod imp;

/// What a batch carries besides its frames (property `batch-meta`, GStreamer >= 1.28
/// builds).
#[cfg(feature = "v1_28")]
#[derive(Debug, Eq, PartialEq, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstTrtMuxBatchMeta")]
pub enum TrtMuxBatchMeta {
    #[default]
    #[enum_value(
        name = "The trtvision batch meta, caps application/x-trtvision-batch",
        nick = "trtvision"
    )]
    Trtvision = 0,
    #[enum_value(
        name = "Also a GstAnalyticsBatchMeta, caps multistream/x-analytics-batch (for analyticssplitter and other consumers of upstream's analytics batches)",
        nick = "analytics"
    )]
    Analytics = 1,
    #[enum_value(
        name = "Also a GstAnalyticsBatchMeta, caps application/x-trtvision-batch (for trtdemux; elements in between read the results as GstAnalytics on the batch)",
        nick = "both"
    )]
    Both = 2,
}

glib::wrapper! {
    /// Aggregator that collects at most one frame per source into a batch.
    pub struct TrtMux(ObjectSubclass<imp::TrtMux>) @extends gst_base::Aggregator, gst::Element, gst::Object, @implements gst::ChildProxy;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    #[cfg(feature = "v1_28")]
    TrtMuxBatchMeta::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(Some(plugin), "trtmux", gst::Rank::NONE, TrtMux::static_type())
}
