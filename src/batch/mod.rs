//! The batch model shared by every element between trtmux and trtdemux.
//!
//! A batch is a GstBuffer without payload that carries one [`BatchMeta`]. The meta holds,
//! per slot, a *reference* to the original frame buffer of one source (no pixel copy:
//! system or CUDA memory alike) with the timing and video info needed to restore it, plus
//! everything the analytics elements add on the way: input tensors (with the transform
//! that maps model coordinates back to each frame) and per-frame results.
//!
//! Batches travel with caps `application/x-trtvision-batch` (with the caps feature
//! `memory:CUDAMemory` when the frames are GstCudaMemory), so a batch can never be linked
//! into a plain video element by mistake.

mod meta;
#[cfg(feature = "v1_28")]
pub mod upstream;

pub use meta::BatchMeta;

use crate::geometry::LetterboxTransform;
use crate::results::FrameResults;
use crate::tensor::Tensor;
use gst::glib;
use std::sync::Arc;

/// Media type of batch caps.
pub const BATCH_MEDIA_TYPE: &str = "application/x-trtvision-batch";
/// Caps feature of batches whose frames live in GstCudaMemory.
pub const CUDA_MEMORY_FEATURE: &str = "memory:CUDAMemory";
/// Name of the custom downstream event trtmux sends after the last batch of a source that
/// reached EOS or whose pad was released: fields `source` (u32) and `removed` (bool, true
/// for a released pad). trtdemux ends that source's pad on it, and removes the pad when the
/// source was removed.
pub const SOURCE_EOS_EVENT: &str = "trtvision/source-eos";
/// Name of the custom downstream event trtmux sends in place of a frame that a source did
/// not deliver (a GAP event or an empty GAP buffer upstream): fields `source` (u32),
/// `timestamp` and `duration` (u64 nanoseconds in the source's own segment, absent when
/// unknown). trtdemux turns it into a GAP event on that source's pad.
pub const SOURCE_GAP_EVENT: &str = "trtvision/source-gap";

/// Whether `buffer` stands for a lost frame instead of carrying one: GStreamer's gap
/// buffers (GstAggregator queues a GAP event as an empty buffer flagged GAP) and empty
/// buffers, which cannot be mapped as a frame.
pub fn is_gap_buffer(buffer: &gst::BufferRef) -> bool {
    buffer.flags().contains(gst::BufferFlags::GAP) || buffer.size() == 0
}

/// The custom downstream event announcing a lost frame of source `source`.
pub fn source_gap_event(
    source: u32,
    timestamp: Option<gst::ClockTime>,
    duration: Option<gst::ClockTime>,
) -> gst::Event {
    let mut s = gst::Structure::builder(SOURCE_GAP_EVENT).field("source", source);
    if let Some(t) = timestamp {
        s = s.field("timestamp", t.nseconds());
    }
    if let Some(d) = duration {
        s = s.field("duration", d.nseconds());
    }
    gst::event::CustomDownstream::new(s.build())
}

/// Source, timestamp and duration of a [`SOURCE_GAP_EVENT`] structure.
pub fn parse_source_gap(
    s: &gst::StructureRef,
) -> Option<(u32, Option<gst::ClockTime>, Option<gst::ClockTime>)> {
    if s.name() != SOURCE_GAP_EVENT {
        return None;
    }
    let source = s.get::<u32>("source").ok()?;
    let t = s.get::<u64>("timestamp").ok().map(gst::ClockTime::from_nseconds);
    let d = s.get::<u64>("duration").ok().map(gst::ClockTime::from_nseconds);
    Some((source, t, d))
}

/// Caps of batches on system memory.
pub fn batch_caps() -> gst::Caps {
    gst::Caps::builder(BATCH_MEDIA_TYPE).build()
}

/// Caps of batches on system memory and CUDA memory (CUDA first); GStreamer >= 1.28
/// builds also take upstream's analytics batches (`multistream/x-analytics-batch`, see
/// [`upstream`]).
pub fn batch_caps_any_memory() -> gst::Caps {
    let mut caps = gst::Caps::builder(BATCH_MEDIA_TYPE)
        .features([CUDA_MEMORY_FEATURE])
        .build();
    caps.merge(batch_caps());
    #[cfg(feature = "v1_28")]
    caps.merge(upstream::upstream_batch_caps());
    caps
}

/// The source stream of one trtmux sink pad: what trtdemux needs to recreate the stream.
/// Shared by all slots of that source until caps or segment change.
#[derive(Debug)]
pub struct SourceStream {
    /// Index of the trtmux sink pad (`sink_%u`), which is also the trtdemux `src_%u` index.
    pub pad_index: u32,
    pub stream_id: Option<glib::GString>,
    pub caps: gst::Caps,
    pub segment: gst::FormattedSegment<gst::ClockTime>,
}

/// One frame of a batch.
#[derive(Debug, Clone)]
pub struct FrameSlot {
    /// Source stream (pad index, caps, segment).
    pub source: Arc<SourceStream>,
    /// Frame number within its source, counted from 0 by trtmux.
    pub frame_number: u64,
    pub pts: Option<gst::ClockTime>,
    pub dts: Option<gst::ClockTime>,
    pub duration: Option<gst::ClockTime>,
    pub info: gst_video::VideoInfo,
    /// The original frame buffer, by reference.
    pub buffer: gst::Buffer,
    /// Results attached by the inference elements.
    pub results: FrameResults,
}

impl FrameSlot {
    pub fn pad_index(&self) -> u32 {
        self.source.pad_index
    }
}

/// A model input produced by trtpreprocess for one batch.
#[derive(Debug, Clone)]
pub struct BatchTensor {
    /// Model the tensor is prepared for (trtpreprocess `model-name`).
    pub model: Arc<str>,
    /// The NCHW tensor; row `i` belongs to slot `slots[i]`.
    pub tensor: Tensor,
    /// Slot index of each tensor row (all slots unless a source filter is set).
    pub slots: Vec<usize>,
    /// Per row, how the frame was placed into the model input.
    pub transforms: Vec<LetterboxTransform>,
}

/// Mask tensors a model produced for a batch, kept for trtmaskselect.
#[derive(Debug, Clone)]
pub enum MaskTensor {
    /// Per-query mask logits `[B, Q, h, w]` covering the model input.
    Dense(Tensor),
    /// Prototype masks `[B, P, h, w]` covering the model input (YOLO-seg).
    Prototypes(Tensor),
    /// Prototypes `[B, P, h, w]` in device memory with the YOLO output `[B, 4 + C + P, N]`
    /// that holds each detection's coefficients (channels `first..first + P`, column
    /// `query`), also in device memory: nothing of either is copied to the host.
    DevicePrototypes {
        protos: Tensor,
        coefficients: Tensor,
        first: usize,
    },
}

impl MaskTensor {
    pub fn tensor(&self) -> &Tensor {
        match self {
            MaskTensor::Dense(t) | MaskTensor::Prototypes(t) => t,
            MaskTensor::DevicePrototypes { protos, .. } => protos,
        }
    }
}

/// Model outputs kept on a batch for elements further down (mask tensors for
/// trtmaskselect).
#[derive(Debug, Clone)]
pub struct BatchOutputs {
    pub model: Arc<str>,
    pub masks: MaskTensor,
    /// Slot index of each tensor row; `None` for rows of sources not in this batch
    /// (results reused from an earlier batch with `interval`).
    pub slots: Vec<Option<usize>>,
    pub transforms: Vec<LetterboxTransform>,
}

impl BatchOutputs {
    /// Tensor row holding slot `slot`'s masks.
    pub fn row_of(&self, slot: usize) -> Option<usize> {
        self.slots.iter().position(|s| *s == Some(slot))
    }
}

/// Everything one batch carries.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub slots: Vec<FrameSlot>,
    /// Sequence number of the batch, counted from 0 by trtmux.
    pub batch_number: u64,
    /// Configured batch size at the time the batch was made (slots may be fewer).
    pub batch_size: usize,
    pub inputs: Vec<BatchTensor>,
    pub outputs: Vec<BatchOutputs>,
    /// Models whose trtinfer element has processed this batch, in pipeline order (a
    /// secondary model checks that the model whose detections it uses ran before it).
    pub models: Vec<Arc<str>>,
    /// trttracker processed this batch: detections without a track id are tracks not
    /// confirmed yet, not a missing tracker.
    pub tracked: bool,
    /// Batches that also carry a `GstAnalyticsBatchMeta` (GStreamer >= 1.28: made by
    /// upstream's `analyticscombiner`, or by trtmux with `batch-meta=analytics|both`): per
    /// slot, where its frame sits in that meta (stream, object); empty otherwise.
    pub upstream_objects: Vec<Option<(usize, usize)>>,
}

/// Lets the batch inputs made by trtpreprocess on the GPU drop their references to the
/// slots' frames once `stream` has waited (on the GPU) for the kernels that read them: an
/// element that draws into the frames then finds them writable instead of copying each one
/// ([`crate::cuda::DeviceTensorLease::release_frames_after`]). Returns how many references
/// were dropped, and the first error (those inputs keep their frames).
///
/// # Safety
/// `stream` must be a live CUstream, and the caller must keep the slots' frames until its
/// own work on `stream` is complete.
#[cfg(feature = "cuda")]
pub unsafe fn release_frames_after(
    inputs: &[BatchTensor],
    stream: cudarc::driver::sys::CUstream,
) -> (usize, Result<(), crate::cuda::CudaError>) {
    let mut released = 0;
    let mut result = Ok(());
    for lease in inputs.iter().filter_map(|t| crate::cuda::device_lease(&t.tensor)) {
        // SAFETY: forwarded contract.
        match unsafe { lease.release_frames_after(stream) } {
            Ok(n) => released += n,
            Err(e) => {
                if result.is_ok() {
                    result = Err(e);
                }
            }
        }
    }
    (released, result)
}

impl Batch {
    /// The input tensor prepared for `model`, if any.
    pub fn input_for(&self, model: &str) -> Option<&BatchTensor> {
        self.inputs.iter().find(|t| &*t.model == model)
    }

    /// Drops the input tensor prepared for `model` once its trtinfer ran: the tensor goes
    /// back to trtpreprocess's pool then, not when the last element downstream (a recording
    /// branch's queue, an encoder) lets go of the batch. Inference has finished with it when
    /// this is called (the backends wait for their outputs).
    pub fn release_input(&mut self, model: &str) {
        self.inputs.retain(|t| &*t.model != model);
    }
}
