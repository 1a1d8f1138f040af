//! The CUDA path of `trttiler` (cargo feature `cuda`): the element's [`CudaTiler`] created
//! on first use, output frames mapped as GstCudaMemory, the composition of a batch on the
//! GPU (into a CUDA output frame, or downloaded once into a system-memory one), the CPU
//! mosaic written into a CUDA frame, and the CUDA buffer pool of the allocation query.
//!
//! [`CudaTiler`]: crate::ops::mosaic::cuda::CudaTiler

use super::*;

#[derive(Default)]
pub(super) struct CudaState {
    /// Created on the first batch that needs it.
    pub(super) tiler: Option<crate::ops::mosaic::cuda::CudaTiler>,
    /// Why the CUDA tiler could not start (then the CPU composes until the next start).
    pub(super) failed: Option<String>,
    pub(super) maps: Vec<crate::cuda::CudaFrameMap>,
    pub(super) frames: Vec<Option<crate::cuda::CudaFrame>>,
}

/// Why GstCudaMemory mapped in `map` cannot be used by the element: its context against
/// the element's `ctx` (handles and devices), for the `cpu-reason` property and the log.
fn foreign_context(ctx: &crate::cuda::CudaContext, map: &crate::cuda::CudaFrameMap) -> String {
    let theirs = map.context().map_or("none".to_string(), |c| {
        format!("CUcontext {:?} of device {}", c.handle(), c.device_id())
    });
    format!(
        "GstCudaMemory of another CUDA context, not peer-accessible ({theirs}; the element's: CUcontext {:?} of device {})",
        ctx.handle(),
        ctx.device_id()
    )
}

impl TrtTiler {
    /// The tiler, created on first use; `None` (CPU path) when it cannot start (`failed`
    /// then says why).
    pub(super) fn tiler<'a>(
        &self,
        tiler: &'a mut Option<crate::ops::mosaic::cuda::CudaTiler>,
        failed: &mut Option<String>,
        ctx: &crate::cuda::CudaContext,
    ) -> Option<&'a mut crate::ops::mosaic::cuda::CudaTiler> {
        if failed.is_some() {
            return None;
        }
        if tiler.is_none() {
            match ctx
                .device_context()
                .and_then(|d| crate::ops::mosaic::cuda::CudaTiler::new(&d))
            {
                Ok(t) => {
                    gst::info!(CAT, imp = self, "CUDA tiler on {}", t.arch());
                    *tiler = Some(t);
                }
                Err(e) => {
                    gst::warning!(
                        CAT,
                        imp = self,
                        "CUDA tiler unavailable, CPU path from now on: {e}"
                    );
                    *failed = Some(format!("the CUDA tiler could not start: {e}"));
                }
            }
        }
        tiler.as_mut()
    }

    /// Maps the output buffer for writing on the device when it is GstCudaMemory of a
    /// context `ctx` can use; otherwise `why` says why not.
    pub(super) fn map_output(
        &self,
        outbuf: &mut gst::BufferRef,
        out_info: &gst_video::VideoInfo,
        ctx: &crate::cuda::CudaContext,
        why: &mut String,
    ) -> Option<crate::cuda::CudaFrameMap> {
        use std::fmt::Write;
        why.clear();
        match crate::cuda::map_cuda_frame_mut(outbuf, out_info) {
            Ok(m) if m.is_accessible_from(ctx) => return Some(m),
            Ok(m) => {
                let _ = write!(why, "the output frame is {}", foreign_context(ctx, &m));
            }
            Err(e) => {
                let _ = write!(why, "the output frame cannot be written on the GPU: {e}");
            }
        }
        gst::debug!(CAT, imp = self, "{why}: CPU path");
        None
    }

    /// Composes the whole output frame on the GPU from the kept frames of every tile (a
    /// system-memory output frame gets the mosaic with one download). False (nothing
    /// written, `st.why` says why) when a frame or the output cannot be used on the device.
    pub(super) fn compose_cuda(
        &self,
        st: &mut State,
        outbuf: &mut gst::BufferRef,
        out_info: &gst_video::VideoInfo,
        grid: &Grid,
    ) -> Result<bool, gst::FlowError> {
        use crate::cuda;
        use std::fmt::Write;
        st.why.clear();
        let Some(ctx) = self.cuda_ctx.get() else {
            st.why
                .push_str("the element has no CUDA context (none was found or could be created)");
            return Ok(false);
        };
        let cs = &mut st.cuda;
        cs.frames.clear();
        cs.maps.clear();
        for (tile, kept) in st.last.iter().enumerate() {
            let Some((buffer, info)) = kept else {
                cs.frames.push(None);
                continue;
            };
            match cuda::map_cuda_frame(buffer.as_ref(), info) {
                Ok(m) if m.is_accessible_from(&ctx) => {
                    cs.frames.push(Some(m.frame()));
                    cs.maps.push(m);
                }
                other => {
                    let _ = match other {
                        Ok(m) => write!(
                            st.why,
                            "the {:?} frame of tile {tile} is {}",
                            info.format(),
                            foreign_context(&ctx, &m)
                        ),
                        Err(e) => write!(
                            st.why,
                            "the {:?} {}x{} frame of tile {tile} cannot be read on the GPU: {e}",
                            info.format(),
                            info.width(),
                            info.height()
                        ),
                    };
                    gst::debug!(CAT, imp = self, "{}: composed on the CPU", st.why);
                    cs.frames.clear();
                    cs.maps.clear();
                    return Ok(false);
                }
            }
        }
        let Some(tiler) = self.tiler(&mut cs.tiler, &mut cs.failed, &ctx) else {
            st.why
                .push_str(cs.failed.as_deref().unwrap_or("the CUDA tiler is unavailable"));
            cs.frames.clear();
            cs.maps.clear();
            return Ok(false);
        };
        let (rows, columns) = (grid.rows, grid.columns);
        let result = if st.out_cuda {
            self.map_output(outbuf, out_info, &ctx, &mut st.why).map(|out| {
                tiler
                    .compose(&cs.frames, rows, columns, &out.frame())
                    .and_then(|()| tiler.wait())
            })
        } else {
            // System-memory output: composed on the device, then one download.
            use gst_video::prelude::*;
            match gst_video::VideoFrameRef::from_buffer_ref_writable(outbuf, out_info) {
                Ok(mut frame) => {
                    let mut strides = [0usize; 4];
                    for (s, &v) in strides.iter_mut().zip(frame.plane_stride()) {
                        *s = v.max(0) as usize;
                    }
                    let (format, size) = (frame.format(), (frame.width(), frame.height()));
                    let [p0, p1, p2, _] = frame.planes_data_mut();
                    Some(tiler.compose_to_host(
                        &cs.frames,
                        rows,
                        columns,
                        format,
                        size,
                        &mut [p0, p1, p2],
                        &strides,
                    ))
                }
                Err(_) => {
                    st.why
                        .push_str("the system-memory output frame could not be mapped");
                    None
                }
            }
        };
        cs.frames.clear();
        cs.maps.clear();
        match result {
            None => Ok(false),
            Some(Ok(())) => Ok(true),
            Some(Err(e)) => {
                if let Err(fatal) = tiler.wait() {
                    gst::element_imp_error!(
                        self,
                        gst::ResourceError::Failed,
                        ("Composing the mosaic on the GPU failed"),
                        ["{}: {}", e, fatal]
                    );
                    return Err(gst::FlowError::Error);
                }
                // Nothing was queued, or the launch itself failed: the CPU composes.
                gst::warning!(CAT, imp = self, "{e}: composed on the CPU");
                let _ = write!(st.why, "composing on the GPU failed: {e}");
                Ok(false)
            }
        }
    }

    /// Writes the CPU mosaic into a CUDA output frame with one copy and one launch. False
    /// when that is not possible (the caller then writes through a system-memory map).
    pub(super) fn write_mosaic_cuda(
        &self,
        st: &mut State,
        outbuf: &mut gst::BufferRef,
        out_info: &gst_video::VideoInfo,
        len: usize,
    ) -> Result<bool, gst::FlowError> {
        let Some(ctx) = self.cuda_ctx.get() else {
            return Ok(false);
        };
        if st.cuda.failed.is_some() {
            return Ok(false);
        }
        let Some(out) = self.map_output(outbuf, out_info, &ctx, &mut st.why) else {
            return Ok(false);
        };
        let Some(tiler) = self.tiler(&mut st.cuda.tiler, &mut st.cuda.failed, &ctx) else {
            return Ok(false);
        };
        if let Err(e) = tiler.write_rgba(&st.mosaic[..len], &out.frame()) {
            gst::warning!(
                CAT,
                imp = self,
                "{e}: mosaic uploaded through a system-memory map"
            );
            let _ = tiler.wait();
            return Ok(false);
        }
        tiler.wait().map_err(|e| {
            gst::element_imp_error!(
                self,
                gst::ResourceError::Failed,
                ("Writing the mosaic on the GPU failed"),
                ["{}", e]
            );
            gst::FlowError::Error
        })?;
        Ok(true)
    }

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
