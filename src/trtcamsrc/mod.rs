//! `trtcamsrc`: one camera (RTSP, HTTP or file URI) decoded to NV12, reconnecting after
//! errors, end of stream of a live source or stalls, without ever failing the pipeline.

use gst::glib;
use gst::prelude::*;

mod imp;
mod record;

/// RTSP lower transport.
#[derive(Debug, Default, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstTrtCamSrcProtocols")]
pub enum Protocols {
    #[default]
    #[enum_value(name = "Auto: UDP first, then TCP (rtspsrc's choice)", nick = "auto")]
    Auto = 0,
    #[enum_value(name = "TCP: RTP interleaved in the RTSP connection", nick = "tcp")]
    Tcp = 1,
    #[enum_value(name = "UDP: RTP over UDP unicast", nick = "udp")]
    Udp = 2,
}

/// Which decoder turns the compressed stream into frames.
#[derive(Debug, Default, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstTrtCamSrcDecoder")]
pub enum Decoder {
    #[default]
    #[enum_value(
        name = "Auto: NVDEC into CUDA memory when available, else software",
        nick = "auto"
    )]
    Auto = 0,
    #[enum_value(name = "NVDEC (nvh264dec/nvh265dec) into CUDA memory", nick = "nvdec")]
    Nvdec = 1,
    #[enum_value(name = "Software decoder into system memory", nick = "software")]
    Software = 2,
}

glib::wrapper! {
    /// Source bin for one camera with one always `src` pad.
    pub struct TrtCamSrc(ObjectSubclass<imp::TrtCamSrc>) @extends gst::Bin, gst::Element, gst::Object, @implements gst::ChildProxy;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "trtcamsrc",
        gst::Rank::NONE,
        TrtCamSrc::static_type(),
    )
}
