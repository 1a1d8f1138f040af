//! `trtmsgbroker`: sends per-frame results and analytics events to a message broker (MQTT,
//! Redis Streams, NATS JetStream) through [`crate::broker`], never blocking the pipeline on
//! the network (bounded queue, on-disk spool, replay).

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    /// Sink sending the results of batches (or of frames with ROI metadata) to a broker.
    pub struct TrtMsgBroker(ObjectSubclass<imp::TrtMsgBroker>) @extends gst_base::BaseSink, gst::Element, gst::Object;
}

/// Which messages trtmsgbroker sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstTrtMessageKind")]
pub enum MessageKind {
    #[enum_value(name = "Per-frame messages with detections", nick = "frame")]
    Frame,
    #[enum_value(name = "Analytics and pipeline events", nick = "event")]
    Event,
    #[default]
    #[enum_value(name = "Frame and event messages", nick = "both")]
    Both,
}

impl From<MessageKind> for crate::messages::MessageKind {
    fn from(k: MessageKind) -> Self {
        match k {
            MessageKind::Frame => crate::messages::MessageKind::Frame,
            MessageKind::Event => crate::messages::MessageKind::Event,
            MessageKind::Both => crate::messages::MessageKind::Both,
        }
    }
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "trtmsgbroker",
        gst::Rank::NONE,
        TrtMsgBroker::static_type(),
    )
}
