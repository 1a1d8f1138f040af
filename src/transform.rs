//! Plumbing shared by the in-place batch elements (trtpreprocess, trtinfer,
//! trtmaskselect, trtoverlay, trtjsonexport): pad templates and access to the batch.

use crate::batch::{self, BatchMeta};
use gst::glib;
use gst::prelude::*;

/// Where an element computes (its `device` property).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, glib::Enum)]
#[enum_type(name = "GstTrtDevice")]
pub enum Device {
    /// On the GPU when the frames are CUDA memory and the plugin was built with CUDA,
    /// else on the CPU (default).
    #[default]
    #[enum_value(
        name = "On the GPU when the frames are CUDA memory and the plugin was built with CUDA, else on the CPU",
        nick = "auto"
    )]
    Auto,
    /// Always on the CPU.
    #[enum_value(name = "Always on the CPU", nick = "cpu")]
    Cpu,
}

impl Device {
    /// Whether the GPU path may be taken.
    pub const fn allows_gpu(self) -> bool {
        matches!(self, Self::Auto)
    }

    /// The setting that allows the GPU path or not.
    pub const fn from_gpu(use_gpu: bool) -> Self {
        if use_gpu {
            Self::Auto
        } else {
            Self::Cpu
        }
    }
}

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
