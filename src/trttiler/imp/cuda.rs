//! CUDA memory output of `trttiler` (cargo feature `cuda`): the GstCudaBufferPool of the
//! element's context offered in the allocation query.

use super::*;

impl TrtTiler {
    /// An active GstCudaBufferPool of the element's context for `caps`, in `query`.
    pub(super) fn decide_cuda_allocation(
        &self,
        query: &mut gst::query::Allocation,
        caps: &gst::Caps,
    ) -> Result<(), gst::LoggableError> {
        let info = gst_video::VideoInfo::from_caps(caps)
            .map_err(|_| gst::loggable_error!(CAT, "invalid output caps {caps}"))?;
        let ctx = self.cuda_ctx.get().ok_or_else(|| {
            gst::loggable_error!(
                CAT,
                "CUDA memory output needs a CUDA context, and none could be found or created"
            )
        })?;
        let pool = ctx.buffer_pool().map_err(|e| gst::loggable_error!(CAT, "{e}"))?;
        let proposed = query.allocation_pools().next();
        let (min, max) = proposed.as_ref().map_or((0, 0), |&(_, _, min, max)| (min, max));
        let size = u32::try_from(info.size())
            .map_err(|_| gst::loggable_error!(CAT, "frame too large: {} bytes", info.size()))?;
        let mut config = pool.config();
        config.set_params(Some(caps), size, min, max);
        config.add_option(gst_video::BUFFER_POOL_OPTION_VIDEO_META);
        pool.set_config(config)
            .map_err(|_| gst::loggable_error!(CAT, "the CUDA buffer pool rejected {caps}"))?;
        // The pool pitches its frames: its own size wins.
        let size = pool.config().params().map_or(size, |(_, size, _, _)| size);
        if proposed.is_some() {
            query.set_nth_allocation_pool(0, Some(&pool), size, min, max);
        } else {
            query.add_allocation_pool(Some(&pool), size, min, max);
        }
        gst::debug!(CAT, imp = self, "CUDA buffer pool for {caps}");
        Ok(())
    }
}
