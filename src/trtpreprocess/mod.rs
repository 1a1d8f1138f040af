//! `trtpreprocess`: turns the frames of a batch into one NCHW model input tensor.

use gst::glib;
use gst::prelude::*;

mod imp;

pub use imp::parse_sources;

glib::wrapper! {
    /// In-place batch element producing the model input tensor.
    pub struct TrtPreprocess(ObjectSubclass<imp::TrtPreprocess>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "trtpreprocess",
        gst::Rank::NONE,
        TrtPreprocess::static_type(),
    )
}
