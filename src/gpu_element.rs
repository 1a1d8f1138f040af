//! The CUDA context glue of the elements that run on the GPU when frames are in CUDA
//! memory (trtpreprocess, trtinfer, trtoverlay, trttiler), in one place.
//!
//! An element holds an [`ElementCudaContext`] and implements [`CudaContextElement`]; its
//! `set_context`, `change_state` and `query` each call the trait's method of the same
//! purpose, which takes offered `gst.cuda.context`s, finds or creates one on NULL→READY
//! (a query to the neighbours, `need-context`, else a new context announced with
//! `have-context`), drops it on READY→NULL and answers context queries. Without the cargo
//! feature `cuda` the same calls compile to the parent's behaviour alone.

#[cfg(feature = "cuda")]
use gst::prelude::*;
use gst::subclass::prelude::*;

#[cfg(feature = "cuda")]
pub use crate::cuda::ElementCudaContext;

/// Without the `cuda` feature there is no context to keep: the element works on the CPU.
#[cfg(not(feature = "cuda"))]
#[derive(Debug, Default)]
pub struct ElementCudaContext;

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
