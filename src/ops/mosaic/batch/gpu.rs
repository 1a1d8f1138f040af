//! The CUDA path of [`BatchMosaic`] (cargo feature `cuda`): the [`CudaTiler`] created on
//! first use, output frames mapped as GstCudaMemory, the composition of a batch on the GPU
//! (into a CUDA output frame, or downloaded once into a system-memory one) and the CPU
//! mosaic written into a CUDA frame.
//!
//! [`CudaTiler`]: crate::ops::mosaic::cuda::CudaTiler

use std::fmt::Write;

use super::*;
use crate::cuda::{CudaContext, CudaFrame, CudaFrameMap};
use crate::ops::mosaic::cuda::CudaTiler;

#[derive(Default)]
pub(super) struct CudaState {
    /// Created on the first batch that needs it.
    tiler: Option<CudaTiler>,
    /// Why the CUDA tiler could not start (then the CPU composes until the next start).
    failed: Option<String>,
    maps: Vec<CudaFrameMap>,
    frames: Vec<Option<CudaFrame>>,
    /// Why the CPU mosaic could not be written on the GPU (debug log only).
    write_why: String,
}

/// Why GstCudaMemory mapped in `map` cannot be used by the element: its context against
/// the element's `ctx` (handles and devices), for the `cpu-reason` property and the log.
fn foreign_context(ctx: &CudaContext, map: &CudaFrameMap) -> String {
    let theirs = map.context().map_or("none".to_string(), |c| {
        format!("CUcontext {:?} of device {}", c.handle(), c.device_id())
    });
    format!(
        "GstCudaMemory of another CUDA context, not peer-accessible ({theirs}; the element's: CUcontext {:?} of device {})",
        ctx.handle(),
        ctx.device_id()
    )
}

/// The tiler, created on first use; `None` (CPU path) when it cannot start (`failed` then
/// says why).
fn tiler<'a>(
    obj: &gst::Object,
    tiler: &'a mut Option<CudaTiler>,
    failed: &mut Option<String>,
    ctx: &CudaContext,
) -> Option<&'a mut CudaTiler> {
    if failed.is_some() {
        return None;
    }
    if tiler.is_none() {
        match ctx.device_context().and_then(|d| CudaTiler::new(&d)) {
            Ok(t) => {
                gst::info!(*CAT, obj = obj, "CUDA tiler on {}", t.arch());
                *tiler = Some(t);
            }
            Err(e) => {
                gst::warning!(
                    *CAT,
                    obj = obj,
                    "CUDA tiler unavailable, CPU path from now on: {e}"
                );
                *failed = Some(format!("the CUDA tiler could not start: {e}"));
            }
        }
    }
    tiler.as_mut()
}

/// Maps the output buffer for writing on the device when it is GstCudaMemory of a context
/// `ctx` can use; otherwise `why` says why not.
fn map_output(
    obj: &gst::Object,
    outbuf: &mut gst::BufferRef,
    out_info: &gst_video::VideoInfo,
    ctx: &CudaContext,
    why: &mut String,
) -> Option<CudaFrameMap> {
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
    gst::debug!(*CAT, obj = obj, "{why}: CPU path");
    None
}

impl BatchMosaic {
    /// Composes the whole output frame on the GPU from the kept frames of every tile (a
    /// system-memory output frame gets the mosaic with one download). False (nothing
    /// written, `self.why` says why) when a frame or the output cannot be used on the
    /// device.
    pub(super) fn compose_cuda(
        &mut self,
        obj: &gst::Object,
        cuda_ctx: &crate::gpu_element::ElementCudaContext,
        outbuf: &mut gst::BufferRef,
        out_info: &gst_video::VideoInfo,
        grid: &Grid,
    ) -> Result<bool, MosaicError> {
        self.why.clear();
        let Some(ctx) = cuda_ctx.get() else {
            self.why
                .push_str("the element has no CUDA context (none was found or could be created)");
            return Ok(false);
        };
        let cs = &mut self.cuda;
        cs.frames.clear();
        cs.maps.clear();
        for (tile, kept) in self.last.iter().enumerate() {
            let Some((buffer, info)) = kept else {
                cs.frames.push(None);
                continue;
            };
            match crate::cuda::map_cuda_frame(buffer.as_ref(), info) {
                Ok(m) if m.is_accessible_from(&ctx) => {
                    cs.frames.push(Some(m.frame()));
                    cs.maps.push(m);
                }
                other => {
                    let _ = match other {
                        Ok(m) => write!(
                            self.why,
                            "the {:?} frame of tile {tile} is {}",
                            info.format(),
                            foreign_context(&ctx, &m)
                        ),
                        Err(e) => write!(
                            self.why,
                            "the {:?} {}x{} frame of tile {tile} cannot be read on the GPU: {e}",
                            info.format(),
                            info.width(),
                            info.height()
                        ),
                    };
                    gst::debug!(*CAT, obj = obj, "{}: composed on the CPU", self.why);
                    cs.frames.clear();
                    cs.maps.clear();
                    return Ok(false);
                }
            }
        }
        let Some(tiler) = tiler(obj, &mut cs.tiler, &mut cs.failed, &ctx) else {
            self.why
                .push_str(cs.failed.as_deref().unwrap_or("the CUDA tiler is unavailable"));
            cs.frames.clear();
            cs.maps.clear();
            return Ok(false);
        };
        let (rows, columns) = (grid.rows, grid.columns);
        let result = if self.out_cuda {
            map_output(obj, outbuf, out_info, &ctx, &mut self.why).map(|out| {
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
                        crate::video::color::YuvCoefficients::for_info(out_info),
                        &mut [p0, p1, p2],
                        &strides,
                    ))
                }
                Err(_) => {
                    self.why
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
                    return Err(MosaicError::Gpu(format!("{e}: {fatal}")));
                }
                // Nothing was queued, or the launch itself failed: the CPU composes.
                gst::warning!(*CAT, obj = obj, "{e}: composed on the CPU");
                let _ = write!(self.why, "composing on the GPU failed: {e}");
                Ok(false)
            }
        }
    }

    /// Writes the CPU mosaic into a CUDA output frame with one copy and one launch. False
    /// when that is not possible (the caller then writes through a system-memory map).
    pub(super) fn write_mosaic_cuda(
        &mut self,
        obj: &gst::Object,
        cuda_ctx: &crate::gpu_element::ElementCudaContext,
        outbuf: &mut gst::BufferRef,
        out_info: &gst_video::VideoInfo,
        len: usize,
    ) -> Result<bool, MosaicError> {
        let Some(ctx) = cuda_ctx.get() else {
            return Ok(false);
        };
        let cs = &mut self.cuda;
        if cs.failed.is_some() {
            return Ok(false);
        }
        let Some(out) = map_output(obj, outbuf, out_info, &ctx, &mut cs.write_why) else {
            return Ok(false);
        };
        let Some(tiler) = tiler(obj, &mut cs.tiler, &mut cs.failed, &ctx) else {
            return Ok(false);
        };
        if let Err(e) = tiler.write_rgba(&self.mosaic[..len], &out.frame()) {
            gst::warning!(
                *CAT,
                obj = obj,
                "{e}: mosaic uploaded through a system-memory map"
            );
            let _ = tiler.wait();
            return Ok(false);
        }
        tiler.wait().map_err(|e| MosaicError::GpuWrite(e.to_string()))?;
        Ok(true)
    }
}
