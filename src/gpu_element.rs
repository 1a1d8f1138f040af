//! The CUDA context glue of the elements that run on the GPU when frames are in CUDA
//! memory (trtpreprocess, trtinfer, trtoverlay, trttiler), in one place.
//!
//! An element holds an [`ElementCudaContext`] and implements [`CudaContextElement`]; its
//! `set_context`, `change_state` and `query` each call the trait's method of the same
//! purpose, which takes offered `gst.cuda.context`s, finds or creates one on NULL→READY
//! (a query to the neighbours, `need-context`, else a new context announced with
//! `have-context`), drops it on READY→NULL and answers context queries. Without the cargo
//! feature `cuda` the same calls compile to the parent's behaviour alone.

use gst::glib;
#[cfg(feature = "cuda")]
use gst::prelude::*;
use gst::subclass::prelude::*;

#[cfg(feature = "cuda")]
pub use crate::cuda::ElementCudaContext;

/// Without the `cuda` feature there is no context to keep: the element works on the CPU
/// and only remembers its GPU properties.
#[cfg(not(feature = "cuda"))]
#[derive(Debug)]
pub struct ElementCudaContext {
    device_id: std::sync::atomic::AtomicI32,
    allow_peer_copy: std::sync::atomic::AtomicBool,
}

#[cfg(not(feature = "cuda"))]
impl Default for ElementCudaContext {
    fn default() -> Self {
        Self {
            device_id: std::sync::atomic::AtomicI32::new(-1),
            allow_peer_copy: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

#[cfg(not(feature = "cuda"))]
impl ElementCudaContext {
    /// The `device-id` property (-1 = any device).
    pub fn device_id(&self) -> i32 {
        self.device_id.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sets the `device-id` property.
    pub fn set_device_id(&self, id: i32) {
        self.device_id.store(id, std::sync::atomic::Ordering::Relaxed);
    }

    /// The `allow-peer-copy` property.
    pub fn allow_peer_copy(&self) -> bool {
        self.allow_peer_copy.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sets the `allow-peer-copy` property.
    pub fn set_allow_peer_copy(&self, allow: bool) {
        self.allow_peer_copy
            .store(allow, std::sync::atomic::Ordering::Relaxed);
    }

    /// The device the element runs on: `device-id` when set (there is no context here).
    pub fn device(&self) -> Option<u32> {
        u32::try_from(self.device_id()).ok()
    }
}

/// Name of the property that pins an element to a GPU.
pub const DEVICE_ID: &str = "device-id";
/// Name of the property that lets an element read frames of another GPU.
pub const ALLOW_PEER_COPY: &str = "allow-peer-copy";

/// The GPU properties every GPU element has, with the same name, range and blurb:
/// `device-id` and `allow-peer-copy`.
pub fn gpu_properties() -> [glib::ParamSpec; 2] {
    use gst::prelude::{GstParamSpecBuilderExt, ParamSpecBuilderExt};
    [
        glib::ParamSpecInt::builder(DEVICE_ID)
            .nick("GPU")
            .blurb("CUDA device the element runs on: it only takes a gst.cuda.context of that device and creates one when none is offered; -1 = the device of the pipeline's CUDA context (device 0 when it creates one)")
            .minimum(-1)
            .maximum(64)
            .default_value(-1)
            .mutable_ready()
            .build(),
        glib::ParamSpecBoolean::builder(ALLOW_PEER_COPY)
            .nick("Allow peer copy")
            .blurb("Read frames in the memory of another GPU through CUDA peer access; by default such a frame is an error naming both devices")
            .default_value(false)
            .mutable_ready()
            .build(),
    ]
}

/// The CUDA context handling of a GPU-capable element (see the module docs).
pub trait CudaContextElement: ElementImpl {
    /// The element's context slot.
    fn cuda_context(&self) -> &ElementCudaContext;

    /// The element's debug category (for the warning when it stays on the CPU).
    fn debug_category(&self) -> gst::DebugCategory;

    /// Whether the element looks for a context on NULL→READY (default: always).
    fn wants_cuda(&self) -> bool {
        true
    }

    /// What the warning says when no context could be had (default `CPU path only`).
    fn cpu_fallback_note(&self) -> &'static str {
        "CPU path only"
    }

    /// From the element's `set_property`: sets one of [`gpu_properties`]; false for other
    /// properties.
    fn gpu_set_property(&self, name: &str, value: &glib::Value) -> bool {
        match name {
            DEVICE_ID => self
                .cuda_context()
                .set_device_id(value.get().expect("type checked upstream")),
            ALLOW_PEER_COPY => self
                .cuda_context()
                .set_allow_peer_copy(value.get().expect("type checked upstream")),
            _ => return false,
        }
        true
    }

    /// From the element's `property`: the value of one of [`gpu_properties`].
    fn gpu_property(&self, name: &str) -> Option<glib::Value> {
        use glib::prelude::ToValue;
        match name {
            DEVICE_ID => Some(self.cuda_context().device_id().to_value()),
            ALLOW_PEER_COPY => Some(self.cuda_context().allow_peer_copy().to_value()),
            _ => None,
        }
    }

    /// The element's `set_context`: keeps an offered CUDA context, then chains up.
    fn cuda_set_context(&self, context: &gst::Context) {
        #[cfg(feature = "cuda")]
        self.cuda_context().set_context(self.obj().upcast_ref(), context);
        self.parent_set_context(context)
    }

    /// The element's `change_state`: finds or creates the context on NULL→READY when a
    /// GPU is there and [`Self::wants_cuda`] (a failure is a warning, the element then
    /// works on the CPU), chains up, and drops the context on READY→NULL.
    fn cuda_change_state(
        &self,
        t: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        #[cfg(feature = "cuda")]
        if self.wants_cuda() {
            if let Err(e) = self
                .cuda_context()
                .before_change_state(self.obj().upcast_ref(), t)
            {
                gst::warning!(
                    self.debug_category(),
                    imp = self,
                    "{}: {e}",
                    self.cpu_fallback_note()
                );
            }
        }
        let result = self.parent_change_state(t);
        #[cfg(feature = "cuda")]
        self.cuda_context().after_change_state(t);
        result
    }

    /// From the element's query handler: answers `gst.cuda.context` queries (true when
    /// answered; the element passes other queries on).
    fn cuda_query(&self, query: &mut gst::QueryRef) -> bool {
        #[cfg(feature = "cuda")]
        return self.cuda_context().query(self.obj().upcast_ref(), query);
        #[cfg(not(feature = "cuda"))]
        {
            let _ = query;
            false
        }
    }
}
