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

/// The batch of a buffer, for the duration of one element's work on it. Derefs to the
/// batch meta.
///
/// GStreamer >= 1.28 builds: a buffer made by upstream's `analyticscombiner` (no batch
/// meta, a `GstAnalyticsBatchMeta`) gets our batch view of it first, frames by reference
/// ([`crate::batch::upstream`]). While the element works, the slot frames of a batch that
/// carries a `GstAnalyticsBatchMeta` are only referenced by the slots (drawing into them
/// copies nothing); when the access ends, the frames go back into the meta with their
/// results as `GstAnalyticsRelationMeta`, for the elements further down.
pub struct BatchAccess<'a> {
    meta: Option<gst::MetaRefMut<'a, BatchMeta, gst::meta::Standalone>>,
    #[cfg(feature = "v1_28")]
    lent: Option<(
        crate::batch::upstream::Lent,
        *mut gst::ffi::GstBuffer,
        gst::Element,
    )>,
}

impl<'a> std::ops::Deref for BatchAccess<'a> {
    type Target = gst::MetaRefMut<'a, BatchMeta, gst::meta::Standalone>;
    fn deref(&self) -> &Self::Target {
        self.meta.as_ref().expect("present until dropped")
    }
}

impl std::ops::DerefMut for BatchAccess<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.meta.as_mut().expect("present until dropped")
    }
}

impl Drop for BatchAccess<'_> {
    fn drop(&mut self) {
        self.meta = None;
        #[cfg(feature = "v1_28")]
        if let Some((lent, ptr, element)) = self.lent.take() {
            // SAFETY: the buffer outlives 'a and was exclusively borrowed by this access;
            // the meta borrow ended above.
            let buffer = unsafe { gst::BufferRef::from_mut_ptr(ptr) };
            let res = match buffer.meta_mut::<gst_analytics::AnalyticsBatchMeta>() {
                Some(mut am) => lent.give_back(&mut am, buffer_batch_mut(ptr)),
                None => Ok(()),
            };
            if let Err(e) = res {
                gst::warning!(
                    gst::CAT_RUST,
                    obj = element,
                    "cannot write the GstAnalytics results of a batch: {e}"
                );
            }
        }
    }
}

#[cfg(feature = "v1_28")]
fn buffer_batch_mut<'b>(ptr: *mut gst::ffi::GstBuffer) -> &'b mut crate::batch::Batch {
    // SAFETY: called while the buffer is exclusively borrowed; the batch meta is a distinct
    // allocation from the analytics batch meta the caller holds.
    unsafe {
        let buffer = gst::BufferRef::from_mut_ptr(ptr);
        let mut meta = buffer
            .meta_mut::<BatchMeta>()
            .expect("checked when the access began");
        &mut *(meta.batch_mut() as *mut crate::batch::Batch)
    }
}

/// The batch meta of `buffer` (see [`BatchAccess`]); posts an error on `element` naming it
/// when absent.
pub fn batch_meta<'a>(
    element: &gst::Element,
    buffer: &'a mut gst::BufferRef,
) -> Result<BatchAccess<'a>, gst::FlowError> {
    #[cfg(feature = "v1_28")]
    let lent = upstream_batch(element, buffer)?.map(|lent| (lent, buffer.as_mut_ptr(), element.clone()));
    match buffer.meta_mut::<BatchMeta>() {
        Some(m) => Ok(BatchAccess {
            meta: Some(m),
            #[cfg(feature = "v1_28")]
            lent,
        }),
        None => {
            gst::element_error!(
                element,
                gst::StreamError::Format,
                (
                    "{} received a buffer without batch metadata; it must come after trtmux (or analyticscombiner)",
                    element.name()
                ),
                ["buffer has no TrtVisionBatchMeta nor GstAnalyticsBatchMeta"]
            );
            Err(gst::FlowError::Error)
        }
    }
}

/// Batches carrying a `GstAnalyticsBatchMeta`: adds our view of a combiner batch when the
/// buffer has none yet, and lends the meta's frame references to the slots.
#[cfg(feature = "v1_28")]
fn upstream_batch(
    element: &gst::Element,
    buffer: &mut gst::BufferRef,
) -> Result<Option<crate::batch::upstream::Lent>, gst::FlowError> {
    use crate::batch::upstream;
    if buffer.meta::<gst_analytics::AnalyticsBatchMeta>().is_none() {
        return Ok(None);
    }
    if buffer.meta::<BatchMeta>().is_none() {
        match upstream::from_analytics_batch(buffer) {
            Some(Ok(batch)) => {
                BatchMeta::add(buffer, batch);
            }
            Some(Err(why)) => {
                gst::element_error!(
                    element,
                    gst::StreamError::Format,
                    ("{} cannot read the analytics batch: {}", element.name(), why)
                );
                return Err(gst::FlowError::Error);
            }
            None => return Ok(None),
        }
    }
    let ptr = buffer.as_mut_ptr();
    let batch = buffer_batch_mut(ptr);
    let Some(mut am) = buffer.meta_mut::<gst_analytics::AnalyticsBatchMeta>() else {
        return Ok(None);
    };
    Ok(Some(upstream::Lent::take(&mut am, batch)))
}
