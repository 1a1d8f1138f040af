//! Plumbing shared by the in-place batch elements (trtpreprocess, trtinfer,
//! trtmaskselect, trtoverlay, trtjsonexport): pad templates and access to the batch.

use crate::batch::{self, BatchMeta};
use gst::prelude::*;

/// Sink and src templates of an element that takes batches and passes them on.
pub fn batch_pad_templates() -> Vec<gst::PadTemplate> {
    let caps = batch::batch_caps_any_memory();
    vec![
        gst::PadTemplate::new("sink", gst::PadDirection::Sink, gst::PadPresence::Always, &caps)
            .expect("valid sink template"),
        gst::PadTemplate::new("src", gst::PadDirection::Src, gst::PadPresence::Always, &caps)
            .expect("valid src template"),
    ]
}

/// The batch meta of `buffer`; posts an error on `element` naming it when absent.
pub fn batch_meta<'a>(
    element: &gst::Element,
    buffer: &'a mut gst::BufferRef,
) -> Result<gst::MetaRefMut<'a, BatchMeta, gst::meta::Standalone>, gst::FlowError> {
    match buffer.meta_mut::<BatchMeta>() {
        Some(m) => Ok(m),
        None => {
            gst::element_error!(
                element,
                gst::StreamError::Format,
                (
                    "{} received a buffer without batch metadata; it must come after trtmux",
                    element.name()
                ),
                ["buffer has no TrtVisionBatchMeta"]
            );
            Err(gst::FlowError::Error)
        }
    }
}
