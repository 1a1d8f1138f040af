//! Per-frame inference results carried in the batch meta and exported after trtdemux.

use crate::geometry::BoxF;
use serde::Serialize;
use std::sync::Arc;

/// A mask cropped to its detection box, in frame pixels: `width x height` bytes,
/// row-major, 0 = background, 255 = object. `x`, `y` place its top-left corner in the frame.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameMask {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
    /// The same bits in GPU memory, when the producer made them there (the CUDA overlay
    /// then reads them without a copy). `data` may be empty in that case, and CPU
    /// consumers skip the mask.
    pub device: Option<DeviceMask>,
}

/// Mask bits in GPU memory: `width * height` bytes, row-major, same layout as
/// [`FrameMask::data`].
#[derive(Clone)]
pub struct DeviceMask {
    /// Device address of the first byte (in the CUDA context of the pipeline).
    pub ptr: u64,
    /// CUevent (its address) recorded after the work that wrote the bits, or 0 when they
    /// are already complete. Consumers make their stream wait on it before reading.
    pub ready_event: u64,
    /// Keeps the device memory (and the event) alive while the mask is referenced.
    pub keepalive: Arc<dyn std::any::Any + Send + Sync>,
}

impl std::fmt::Debug for DeviceMask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceMask")
            .field("ptr", &format_args!("{:#x}", self.ptr))
            .field("ready_event", &format_args!("{:#x}", self.ready_event))
            .finish()
    }
}

impl PartialEq for DeviceMask {
    fn eq(&self, other: &Self) -> bool {
        self.ptr == other.ptr && self.ready_event == other.ready_event
    }
}

impl FrameMask {
    /// Pixels set in the mask.
    pub fn area(&self) -> usize {
        self.data.iter().filter(|&&v| v >= 128).count()
    }
    /// Whether frame pixel `(fx, fy)` is inside the mask.
    pub fn contains(&self, fx: u32, fy: u32) -> bool {
        if fx < self.x || fy < self.y || fx >= self.x + self.width || fy >= self.y + self.height {
            return false;
        }
        let i = (fy - self.y) as usize * self.width as usize + (fx - self.x) as usize;
        self.data.get(i).is_some_and(|&v| v >= 128)
    }
}

/// Where a detection's mask still has to be computed from (set by the parser, consumed
/// by trtmaskselect).
#[derive(Debug, Clone, PartialEq)]
pub enum MaskSource {
    /// Row `query` of a dense `[B, Q, h, w]` mask-logit tensor.
    Dense { query: u32 },
    /// Prototype masks `[B, P, h, w]` combined with these coefficients (YOLO-seg).
    Prototype { coefficients: Vec<f32> },
    /// Prototype masks whose coefficients stay in the model output on the GPU, at column
    /// `query` of the detection (YOLO-seg decoded on the GPU; see
    /// [`crate::batch::MaskTensor::DevicePrototypes`]).
    OutputColumn,
}

/// One detected object in frame coordinates.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// Model that produced it (the `model-name` of the trtinfer element).
    pub model: Arc<str>,
    pub class_id: u32,
    pub label: Arc<str>,
    pub confidence: f32,
    /// Box in frame pixels.
    pub bbox: BoxF,
    /// Tracker id, or -1 when untracked.
    pub object_id: i64,
    /// Index of the query / anchor in the model output.
    pub query: u32,
    /// Pending mask source (before trtmaskselect).
    pub mask_source: Option<MaskSource>,
    /// Final mask in frame pixels (after trtmaskselect).
    pub mask: Option<FrameMask>,
}

/// Results of one frame.
#[derive(Debug, Clone, Default)]
pub struct FrameResults {
    pub detections: Vec<Detection>,
    /// Raw output tensors of models whose parser is `raw`, one row of the batch each,
    /// tagged with the model name.
    pub tensors: Vec<(Arc<str>, crate::tensor::Tensor)>,
}

/// JSON form of a detection (one line per frame in the export).
#[derive(Debug, Serialize)]
pub struct DetectionJson<'a> {
    pub model: &'a str,
    pub class_id: u32,
    pub label: &'a str,
    pub confidence: f32,
    pub bbox: [f32; 4],
    pub object_id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mask: Option<MaskSummaryJson>,
}

/// Summary of a mask in the JSON export (pixels, not the bitmap).
#[derive(Debug, Serialize)]
pub struct MaskSummaryJson {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
    pub area: usize,
}

impl<'a> From<&'a Detection> for DetectionJson<'a> {
    fn from(d: &'a Detection) -> Self {
        DetectionJson {
            model: &d.model,
            class_id: d.class_id,
            label: &d.label,
            confidence: d.confidence,
            bbox: [d.bbox.x0, d.bbox.y0, d.bbox.width(), d.bbox.height()],
            object_id: d.object_id,
            mask: d.mask.as_ref().map(|m| MaskSummaryJson {
                x: m.x,
                y: m.y,
                width: m.width,
                height: m.height,
                area: m.area(),
            }),
        }
    }
}
