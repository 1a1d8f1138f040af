//! `trtinfer`: one inference call per batch through a backend, outputs parsed into
//! per-frame detections.

use gst::glib;
use gst::prelude::*;

mod context;
mod imp;
pub mod inflight;
mod objects;
pub mod promptseg;

pub use context::{InferContext, InferSettings, OperateOn};
pub use objects::{CropStage, ObjectFilter, ObjectRef};

glib::wrapper! {
    /// In-place batch element running a model on the batch tensor.
    pub struct TrtInfer(ObjectSubclass<imp::TrtInfer>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(Some(plugin), "trtinfer", gst::Rank::NONE, TrtInfer::static_type())
}
