//! `trttiler`: composes the frames of a batch into one mosaic video frame, on the CPU or,
//! with frames in CUDA memory, on the GPU with one kernel launch per batch (feature
//! `cuda`). The composition is [`crate::ops::mosaic::batch::BatchMosaic`], which picks the
//! path per batch; [`crate::ops::mosaic`] holds the CPU mosaic both follow. Properties: `rows`, `columns` (0 = from the batch size), `width`, `height`,
//! `device` (`auto` or `cpu`) and the read-only `gpu-frames` counter. Caps and memory
//! rules: see the element's implementation docs.

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    /// Batch to mosaic converter.
    pub struct TrtTiler(ObjectSubclass<imp::TrtTiler>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(Some(plugin), "trttiler", gst::Rank::NONE, TrtTiler::static_type())
}
