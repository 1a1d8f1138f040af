//! [`BatchOverlay`]: the overlay operation on a batch, the one thing trtoverlay calls.
//!
//! The frames of a batch that are GstCudaMemory of a context the element can use are drawn
//! by [`CudaOverlay`] with one kernel launch for the whole batch, from the same command
//! list the CPU executor follows ([`super`]), byte-identical to the CPU drawing. Other
//! frames (system memory, another GPU's context) are drawn on the CPU. Dense colour maps
//! are drawn in the same launch, under the boxes: maps in GPU memory (trtinfer on a GPU
//! backend) are read where they are, host maps travel with the batch's command list (one
//! copy per batch). A map only in GPU memory drawn on a system-memory frame is copied to
//! the host for that frame. The operation waits for the kernel before it returns:
//! GstCudaMemory of GStreamer 1.22 carries no stream or event, so downstream elements
//! (encoders, `cudadownload`) read it right away on their own streams.
//!
//! Log lines go to the `trtoverlay` debug category, on the element passed to
//! [`BatchOverlay::draw`].
//!
//! [`CudaOverlay`]: crate::ops::overlay::cuda::CudaOverlay

use std::sync::LazyLock;

use crate::analytics::FrameAnalytics;
use crate::batch::{Batch, FrameSlot};
use crate::ops::overlay::draw::colormap::Colormap;
use crate::ops::overlay::draw::Canvas;
use crate::ops::overlay::{draw_analytics, draw_frame, OverlayStyle};
use crate::results::{DenseMap, FrameResults};
use crate::video::Paint;

/// The element's debug category (`trtoverlay`), registered once.
pub static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "trtoverlay",
        gst::DebugColorFlags::empty(),
        Some("trtvision overlay"),
    )
});

/// Dense maps as a colour map.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtraStyle {
    /// Colour map of dense outputs (none = not drawn).
    pub dense_colormap: Colormap,
    /// Opacity of the dense colour map.
    pub dense_alpha: f32,
    /// Model whose dense map is drawn (empty = the first one of the frame).
    pub dense_model: std::sync::Arc<str>,
    /// Value range mapped onto the colour map; `None` = each map's own min and max.
    pub dense_range: Option<(f32, f32)>,
    /// Draw trtanalytics' zones, lines and counts where a frame carries them.
    pub draw_analytics: bool,
}

impl Default for ExtraStyle {
    fn default() -> Self {
        Self {
            dense_colormap: Colormap::None,
            dense_alpha: 0.5,
            dense_model: std::sync::Arc::from(""),
            dense_range: None,
            draw_analytics: true,
        }
    }
}

impl ExtraStyle {
    /// The dense map of `results` that is drawn and the value range mapped onto the colour
    /// map (`dense-range`, or the map's own minimum and maximum), or `None` when no map is
    /// drawn (colour map none, no map of `dense-model`, no finite value).
    pub fn dense_to_draw<'a>(&self, results: &'a FrameResults) -> Option<(&'a DenseMap, (f32, f32))> {
        if self.dense_colormap == Colormap::None {
            return None;
        }
        let map = results.dense_for(&self.dense_model)?;
        let range = self
            .dense_range
            .or_else(|| map.stats().map(|(lo, _, hi)| (lo, hi)))?;
        Some((map, range))
    }

    /// trtanalytics' results of `results` to draw (`draw-analytics`, a configured camera).
    pub fn analytics_to_draw<'a>(&self, results: &'a FrameResults) -> Option<&'a FrameAnalytics> {
        let a = results.analytics.as_deref()?;
        (self.draw_analytics && a.rules.is_some()).then_some(a)
    }
}

/// Reusable drawing state: the colour map's 256 paints and scratch.
#[derive(Debug, Default)]
pub struct OverlayScratch {
    pub label: String,
    lut: Vec<Paint>,
    lut_of: Option<Colormap>,
    cols: Vec<u32>,
    /// Channel 0 of a map only in GPU memory, copied for CPU drawing.
    values: Vec<f32>,
}

impl OverlayScratch {
    /// The 256 paints of `colormap` (computed when it changes).
    pub fn lut(&mut self, colormap: Colormap) -> &[Paint] {
        if self.lut_of != Some(colormap) {
            self.lut = colormap.lut();
            self.lut_of = Some(colormap);
        }
        &self.lut
    }
}

/// Draws everything attached to one frame: the dense map first (under the rest), then the
/// detections and their keypoints (CPU implementation). A map only in GPU memory is copied
/// to the host first (plugin built with CUDA; else it is not drawn).
pub fn draw_results(
    canvas: &mut Canvas,
    results: &FrameResults,
    style: &OverlayStyle,
    extra: &ExtraStyle,
    scratch: &mut OverlayScratch,
) {
    if let Some((map, range)) = extra.dense_to_draw(results) {
        scratch.lut(extra.dense_colormap);
        let OverlayScratch {
            lut, cols, values, ..
        } = scratch;
        if let Some(v) = map.channel(0).or_else(|| host_copy(map, values)) {
            canvas.dense_values(map, v, lut, range, extra.dense_alpha, cols);
        }
    }
    if let Some(a) = extra.analytics_to_draw(results) {
        draw_analytics(canvas, a, style, &mut scratch.label);
    }
    draw_frame(canvas, &results.detections, style, &mut scratch.label);
}

/// Channel 0 of a map only in GPU memory, copied into `values`; `None` (logged) when the
/// copy fails or the plugin was built without CUDA.
fn host_copy<'a>(map: &DenseMap, values: &'a mut Vec<f32>) -> Option<&'a [f32]> {
    #[cfg(feature = "cuda")]
    if map.device.is_some() {
        match crate::ops::dense::cuda::download_channel0(map, values) {
            Ok(()) => return Some(values.as_slice()),
            Err(e) => gst::warning!(*CAT, "the dense map of '{}' is not drawn: {e}", map.model),
        }
    }
    let _ = (map, values);
    None
}

/// Parses a dense value range `lo,hi` (`auto` or empty = `None`).
pub fn parse_range(s: &str) -> Result<Option<(f32, f32)>, String> {
    let t = s.trim();
    if t.is_empty() || t.eq_ignore_ascii_case("auto") {
        return Ok(None);
    }
    let v: Vec<f32> = t
        .split(',')
        .map(|p| p.trim().parse::<f32>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("'{s}' is not 'auto' or two numbers 'lo,hi'"))?;
    match v.as_slice() {
        [lo, hi] if lo.is_finite() && hi.is_finite() && lo < hi => Ok(Some((*lo, *hi))),
        _ => Err(format!(
            "'{s}' is not 'auto' or two finite numbers 'lo,hi' with lo < hi"
        )),
    }
}

/// The overlay operation on batches (see the module docs); every buffer is reused from
/// batch to batch.
#[derive(Default)]
pub struct BatchOverlay {
    scratch: OverlayScratch,
    /// Slots already drawn on the GPU in the current batch.
    on_gpu: Vec<bool>,
    #[cfg(feature = "cuda")]
    cuda: CudaState,
}

impl BatchOverlay {
    /// A new operation; `use_gpu` false keeps it on the CPU (`device=cpu`).
    pub fn new(use_gpu: bool) -> Self {
        #[cfg(not(feature = "cuda"))]
        let _ = use_gpu;
        Self {
            #[cfg(feature = "cuda")]
            cuda: CudaState {
                disabled: !use_gpu,
                ..Default::default()
            },
            ..Default::default()
        }
    }
}

/// Why a batch could not be drawn (the element turns it into its error message).
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    /// A frame could not be mapped writable.
    #[error("Could not map a frame for drawing")]
    Map,
    /// The frame's format cannot be drawn on.
    #[error("Cannot draw on this frame: {0}")]
    Format(String),
    /// Waiting for the overlay's stream failed.
    #[cfg(feature = "cuda")]
    #[error("Waiting for the GPU failed")]
    GpuWait(crate::cuda::CudaError),
    /// The kernel ran and failed: the frames may be half drawn.
    #[cfg(feature = "cuda")]
    #[error("Drawing the overlay on the GPU failed")]
    GpuDraw(crate::cuda::CudaError),
}

#[cfg(feature = "cuda")]
#[derive(Default)]
struct CudaState {
    /// Created on the first batch with CUDA frames to draw on.
    overlay: Option<crate::ops::overlay::cuda::CudaOverlay>,
    /// Set when the CUDA path is off (`device=cpu`) or failed once.
    disabled: bool,
    list: crate::ops::overlay::OverlayCommands,
    maps: Vec<crate::cuda::CudaFrameMap>,
    frames: Vec<crate::cuda::CudaFrame>,
}

impl BatchOverlay {
    fn draw_slot(
        slot: &mut FrameSlot,
        style: &OverlayStyle,
        extra: &ExtraStyle,
        scratch: &mut OverlayScratch,
    ) -> Result<(), OverlayError> {
        if slot.results.detections.is_empty()
            && extra.dense_to_draw(&slot.results).is_none()
            && extra.analytics_to_draw(&slot.results).is_none()
        {
            return Ok(());
        }
        let info = slot.info.clone();
        let buffer = slot.buffer.make_mut();
        let mut frame = gst_video::VideoFrameRef::from_buffer_ref_writable(buffer, &info)
            .map_err(|_| OverlayError::Map)?;
        let mut canvas = Canvas::new(&mut frame).map_err(|e| OverlayError::Format(e.to_string()))?;
        draw_results(&mut canvas, &slot.results, style, extra, scratch);
        Ok(())
    }

    /// Draws the results of every frame of `batch` on it: the frames in CUDA memory of
    /// the element's context (`cuda`) with one kernel launch, the others on the CPU.
    /// `obj` is the element (for its log lines). Returns the frames drawn on the GPU.
    pub fn draw(
        &mut self,
        obj: &gst::Object,
        cuda: &crate::gpu_element::ElementCudaContext,
        batch: &mut Batch,
        style: &OverlayStyle,
        extra: &ExtraStyle,
    ) -> Result<u64, OverlayError> {
        self.on_gpu.clear();
        self.on_gpu.resize(batch.slots.len(), false);
        #[cfg(feature = "cuda")]
        let drawn = self.draw_cuda(obj, cuda, batch, style, extra)?;
        #[cfg(not(feature = "cuda"))]
        let drawn = {
            let _ = (obj, cuda);
            0
        };
        for (slot, on_gpu) in batch.slots.iter_mut().zip(&self.on_gpu) {
            if !on_gpu {
                Self::draw_slot(slot, style, extra, &mut self.scratch)?;
            }
        }
        Ok(drawn)
    }
}

#[cfg(feature = "cuda")]
impl BatchOverlay {
    /// Draws the slots in CUDA memory of the element's context with one launch and marks
    /// them in `self.on_gpu`; the others are left to the CPU. Returns the frames drawn.
    fn draw_cuda(
        &mut self,
        obj: &gst::Object,
        cuda_ctx: &crate::gpu_element::ElementCudaContext,
        batch: &mut Batch,
        style: &OverlayStyle,
        extra: &ExtraStyle,
    ) -> Result<u64, OverlayError> {
        use crate::cuda;
        use crate::ops::overlay::DenseDraw;
        let cs = &mut self.cuda;
        if cs.disabled {
            return Ok(0);
        }
        let Some(ctx) = cuda_ctx.get() else {
            return Ok(0);
        };
        cs.list.clear();
        if extra.dense_colormap != Colormap::None {
            cs.list.set_dense_lut(self.scratch.lut(extra.dense_colormap));
        }
        // Frames read by trtpreprocess's kernel are also held by its tensor until the batch
        // input is released (trtdemux): twice referenced, `make_mut` would copy each frame
        // (an allocation and a synchronous copy per frame). Before the first frame is mapped
        // for drawing, the overlay's stream waits for that kernel instead and the tensor lets
        // go of the frames; the slots hold them until the overlay's own work is done (it
        // waits before pushing the batch, and synchronises its stream on every other way out).
        let mut released = None;
        for (i, slot) in batch.slots.iter_mut().enumerate() {
            let dense = extra.dense_to_draw(&slot.results);
            let analytics = extra.analytics_to_draw(&slot.results);
            if slot.results.detections.is_empty() && dense.is_none() && analytics.is_none() {
                continue;
            }
            if !cuda::is_cuda_buffer(slot.buffer.as_ref()) {
                gst::trace!(*CAT, obj = obj, "frame {i} is in system memory: drawn on the CPU");
                continue;
            }
            if released.is_none() {
                if let Err(e) = Self::ensure_overlay(obj, cs, &ctx) {
                    return Self::finish_cuda(cs, &mut self.on_gpu, Err(e), 0);
                }
                let stream = cs.overlay.as_ref().map(|o| o.stream());
                // SAFETY: the overlay's live stream; the slots keep the frames (see above).
                let (n, res) = match stream {
                    Some(s) => unsafe { crate::batch::release_frames_after(&batch.inputs, s) },
                    None => (0, Ok(())),
                };
                if let Err(e) = res {
                    gst::debug!(*CAT, obj = obj, "frames stay with the batch input: {e}");
                }
                released = Some(n);
            }
            let info = slot.info.clone();
            match cuda::map_cuda_frame_mut(slot.buffer.make_mut(), &info) {
                Ok(m) if m.is_accessible_from(&ctx) => {
                    let dense = dense.map(|(map, range)| DenseDraw {
                        map,
                        range,
                        alpha: extra.dense_alpha,
                    });
                    cs.list.add_frame_with_analytics(
                        info.width(),
                        info.height(),
                        &crate::video::color::YuvCoefficients::for_info(&info),
                        dense,
                        analytics,
                        &slot.results.detections,
                        style,
                    );
                    cs.frames.push(m.frame());
                    cs.maps.push(m);
                    self.on_gpu[i] = true;
                }
                Ok(_) => gst::debug!(*CAT, obj = obj, "frame of another CUDA context: drawn on the CPU"),
                Err(e) => gst::warning!(*CAT, obj = obj, "{e}: drawn on the CPU"),
            }
        }
        let result = Self::launch(obj, cs, &ctx);
        Self::finish_cuda(cs, &mut self.on_gpu, result, released.unwrap_or(0))
    }

    /// Ends [`BatchOverlay::draw_cuda`]: unmaps the frames and turns `result` into the flow
    /// result. When the batch input let go of `released` frames and no completed launch was
    /// waited for, the overlay's stream is synchronised first (its waits on trtpreprocess's
    /// kernels must be over before the frames go downstream).
    fn finish_cuda(
        cs: &mut CudaState,
        on_gpu: &mut [bool],
        result: Result<bool, Launch>,
        released: usize,
    ) -> Result<u64, OverlayError> {
        let drawn = cs.frames.len() as u64;
        cs.frames.clear();
        cs.maps.clear();
        if released > 0 && !matches!(result, Ok(true)) {
            if let Some(Err(e)) = cs.overlay.as_ref().map(|o| o.synchronize()) {
                return Err(OverlayError::GpuWait(e));
            }
        }
        let result = result.map(|_| ());
        match result {
            Ok(()) => Ok(drawn),
            Err(Launch::Fallback) => {
                on_gpu.iter_mut().for_each(|g| *g = false);
                Ok(0)
            }
            Err(Launch::Failed(e)) => Err(OverlayError::GpuDraw(e)),
        }
    }

    /// Creates the CUDA overlay on first use; on failure the element stays on the CPU.
    fn ensure_overlay(
        obj: &gst::Object,
        cs: &mut CudaState,
        ctx: &crate::cuda::CudaContext,
    ) -> Result<(), Launch> {
        if cs.overlay.is_none() {
            match ctx
                .device_context()
                .and_then(|d| crate::ops::overlay::cuda::CudaOverlay::new(&d))
            {
                Ok(o) => {
                    gst::info!(*CAT, obj = obj, "CUDA overlay on {}", o.arch());
                    cs.overlay = Some(o);
                }
                Err(e) => {
                    gst::warning!(
                        *CAT,
                        obj = obj,
                        "CUDA overlay unavailable, CPU path from now on: {e}"
                    );
                    cs.disabled = true;
                    return Err(Launch::Fallback);
                }
            }
        }
        Ok(())
    }

    /// Draws the mapped frames with one launch and waits for it: true when a launch was
    /// waited for, false when there was nothing to draw.
    fn launch(obj: &gst::Object, cs: &mut CudaState, ctx: &crate::cuda::CudaContext) -> Result<bool, Launch> {
        if cs.frames.is_empty() {
            return Ok(false);
        }
        Self::ensure_overlay(obj, cs, ctx)?;
        let Some(overlay) = cs.overlay.as_mut() else {
            return Err(Launch::Fallback);
        };
        match overlay.draw(&cs.frames, &cs.list) {
            Ok(false) => Ok(false),
            Ok(true) => overlay.wait().map(|()| true).map_err(Launch::Failed),
            Err(e) => {
                // Nothing was queued, or the launch itself failed: the CPU draws.
                gst::warning!(*CAT, obj = obj, "{e}: drawn on the CPU");
                overlay.wait().map_err(Launch::Failed)?;
                Err(Launch::Fallback)
            }
        }
    }
}

#[cfg(feature = "cuda")]
enum Launch {
    /// Draw these frames on the CPU.
    Fallback,
    /// The kernel ran and failed: the frames may be half drawn.
    Failed(crate::cuda::CudaError),
}
