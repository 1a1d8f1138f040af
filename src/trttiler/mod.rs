//! `trttiler`: composes the frames of a batch into one mosaic video frame.

use gst::glib;
use gst::prelude::*;

mod imp;
pub mod mosaic;

glib::wrapper! {
    /// Batch to mosaic converter.
    pub struct TrtTiler(ObjectSubclass<imp::TrtTiler>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(Some(plugin), "trttiler", gst::Rank::NONE, TrtTiler::static_type())
}
