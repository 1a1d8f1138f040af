//! Per-frame inference results carried in the batch meta and exported after trtdemux.

use crate::geometry::{BoxF, LetterboxTransform};
use crate::tensor::Tensor;
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
    /// Intersection over union of the set pixels of two masks, in frame pixels; 1 when
    /// both are empty.
    pub fn iou(&self, other: &FrameMask) -> f64 {
        let (x0, y0) = (self.x.min(other.x), self.y.min(other.y));
        let x1 = (self.x + self.width).max(other.x + other.width);
        let y1 = (self.y + self.height).max(other.y + other.height);
        let (mut inter, mut union) = (0u64, 0u64);
        for y in y0..y1 {
            for x in x0..x1 {
                let (a, b) = (self.contains(x, y), other.contains(x, y));
                inter += (a && b) as u64;
                union += (a || b) as u64;
            }
        }
        if union == 0 {
            1.0
        } else {
            inter as f64 / union as f64
        }
    }
    /// Same rectangle and same bits (the host copy; a device copy holds the same bits by
    /// construction, its address is not compared).
    pub fn same_bits(&self, other: &FrameMask) -> bool {
        (self.x, self.y, self.width, self.height) == (other.x, other.y, other.width, other.height)
            && self.data == other.data
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
    /// Results of secondary models run on this object's crop (`trtinfer
    /// operate-on=objects`), one entry per model.
    pub secondary: Vec<ObjectResult>,
}

impl Detection {
    /// An untracked detection without mask or secondary results.
    pub fn new(model: Arc<str>, class_id: u32, label: Arc<str>, confidence: f32, bbox: BoxF) -> Self {
        Detection {
            model,
            class_id,
            label,
            confidence,
            bbox,
            object_id: -1,
            query: 0,
            mask_source: None,
            mask: None,
            secondary: Vec::new(),
        }
    }
}

/// A named point in frame pixels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Keypoint {
    /// Keypoint name from the model config (`keypoint-names`), or its index.
    pub name: Arc<str>,
    pub x: f32,
    pub y: f32,
    /// Score of the point (1 when the model gives none).
    pub score: f32,
}

/// The best class of an attribute vector (e.g. colour, type).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attribute {
    pub class_id: u32,
    pub label: Arc<str>,
    pub score: f32,
}

/// What one secondary model says about one object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObjectResult {
    /// Model name (trtinfer `model-name`).
    pub model: Arc<str>,
    /// Keypoints in frame pixels (empty when the model outputs none).
    pub keypoints: Vec<Keypoint>,
    /// Best attribute class, when the model outputs attribute scores and the best score
    /// reaches the model's `conf-threshold`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attribute: Option<Attribute>,
}

/// One frame's row of a dense model output (parser `dense`), shared with the other frames
/// of the batch without copying.
///
/// On the CPU path the values are in host memory (`tensor`). On the GPU path (a GPU
/// backend, plugin built with CUDA) they stay where the model wrote them ([`DenseMap::device`])
/// and `tensor` is the device tensor itself, unless trtinfer's `download-dense` copied
/// them to the host as well; the summary ([`DenseMap::stats`]) is then computed on the GPU
/// by the producer ([`DenseMap::summary`]), so JSON export and colour-map ranges work
/// without the values crossing to the host.
#[derive(Debug, Clone)]
pub struct DenseMap {
    /// Model name (trtinfer `model-name`).
    pub model: Arc<str>,
    /// The whole batch output `[B, C, h, w]`: host f32 values, or the device tensor when the
    /// values only live in GPU memory ([`DenseMap::values`] is then `None`). This frame is
    /// row `row`.
    pub tensor: Tensor,
    pub row: usize,
    /// Channels, height and width of one row.
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// How the frame was placed into the model input; the map covers the whole input, so
    /// map pixel `(u, v)` is model pixel `(u * model_w / width, v * model_h / height)`.
    pub transform: LetterboxTransform,
    /// The same row in GPU memory, when the producer left it there.
    pub device: Option<DeviceDense>,
    /// Minimum, mean and maximum of channel 0 over the map pixels covering the frame,
    /// computed by the producer (on the GPU for device maps); `None` = not computed, or no
    /// finite value.
    pub summary: Option<(f32, f32, f32)>,
}

/// One frame's dense values in GPU memory: `channels x height x width` elements,
/// row-major, starting at `ptr`.
#[derive(Clone)]
pub struct DeviceDense {
    /// Device address of this frame's first value (in the CUDA context of the pipeline).
    pub ptr: u64,
    /// Element type: [`DType::F32`](crate::tensor::DType) or `F16`.
    pub dtype: crate::tensor::DType,
    /// CUevent (its address) recorded after the work that wrote the values, or 0 when they
    /// are already complete. Consumers make their stream wait on it before reading.
    pub ready_event: u64,
    /// Keeps the device memory (and the event) alive while the map is referenced.
    pub keepalive: Arc<dyn std::any::Any + Send + Sync>,
}

impl std::fmt::Debug for DeviceDense {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceDense")
            .field("ptr", &format_args!("{:#x}", self.ptr))
            .field("dtype", &self.dtype)
            .field("ready_event", &format_args!("{:#x}", self.ready_event))
            .finish()
    }
}

impl DenseMap {
    /// Values of this frame, `channels x height x width`, row-major.
    pub fn values(&self) -> Option<&[f32]> {
        let len = self.channels.checked_mul(self.height)?.checked_mul(self.width)?;
        let start = self.row.checked_mul(len)?;
        self.tensor.as_f32()?.get(start..start.checked_add(len)?)
    }

    /// Values of channel `c` of this frame, row-major `height x width`.
    pub fn channel(&self, c: usize) -> Option<&[f32]> {
        let plane = self.height * self.width;
        (c < self.channels)
            .then(|| self.values())??
            .get(c * plane..(c + 1) * plane)
    }

    /// Map column holding frame x coordinate `fx` (continuous; pixel `i` spans `[i, i+1)`).
    pub fn map_column(&self, fx: f32) -> Option<usize> {
        let t = &self.transform;
        map_coordinate(fx, t.scale_x, t.pad_x, self.width, t.model_w as f32)
    }

    /// Map row holding frame y coordinate `fy` (continuous).
    pub fn map_row(&self, fy: f32) -> Option<usize> {
        let t = &self.transform;
        map_coordinate(fy, t.scale_y, t.pad_y, self.height, t.model_h as f32)
    }

    /// Map pixel (column, row) holding frame point `(fx, fy)`, or `None` where it falls
    /// outside the map.
    pub fn map_pixel(&self, fx: f32, fy: f32) -> Option<(usize, usize)> {
        Some((self.map_column(fx)?, self.map_row(fy)?))
    }

    /// A host map of row `row` of `tensor` (`[B, C, h, w]` f32), without device copy or
    /// precomputed summary.
    pub fn host(
        model: Arc<str>,
        tensor: Tensor,
        row: usize,
        (channels, height, width): (usize, usize, usize),
        transform: LetterboxTransform,
    ) -> Self {
        DenseMap {
            model,
            tensor,
            row,
            channels,
            height,
            width,
            transform,
            device: None,
            summary: None,
        }
    }

    /// Minimum, mean and maximum of the finite values of channel 0 over the map pixels whose
    /// centre lies on the frame (not on the letterbox padding); `None` when there are none.
    /// The producer's [`DenseMap::summary`] when it computed one, else computed from the
    /// host values (`None` when they are only in GPU memory; the CPU summary and the
    /// content region it covers are in [`crate::ops::dense`], next to the GPU one).
    pub fn stats(&self) -> Option<(f32, f32, f32)> {
        self.summary.or_else(|| self.host_stats())
    }

    /// Value of channel 0 at frame pixel `(fx, fy)` (nearest map pixel).
    pub fn value_at(&self, fx: f32, fy: f32) -> Option<f32> {
        let (u, v) = self.map_pixel(fx, fy)?;
        self.channel(0)?.get(v * self.width + u).copied()
    }
}

/// Map cell (column or row, of `size`) holding frame coordinate `f` placed into a model
/// input of `model` pixels by `scale` and `pad`: `(f * scale + pad) * size / model`,
/// rounded down, in this order of f32 operations (the GPU overlay evaluates the same
/// expression with the same rounding); `None` outside the map.
#[inline]
pub fn map_coordinate(f: f32, scale: f32, pad: f32, size: usize, model: f32) -> Option<usize> {
    let u = (f * scale + pad) * size as f32 / model;
    (u >= 0.0 && u < size as f32).then_some(u as usize)
}

/// Results of one frame.
#[derive(Debug, Clone, Default)]
pub struct FrameResults {
    pub detections: Vec<Detection>,
    /// Raw output tensors of models whose parser is `raw`, one row of the batch each,
    /// tagged with the model name.
    pub tensors: Vec<(Arc<str>, crate::tensor::Tensor)>,
    /// Dense maps of models whose parser is `dense`, one per model.
    pub dense: Vec<DenseMap>,
    /// Zone counts and events of trtanalytics, when it ran on the frame.
    pub analytics: Option<Arc<crate::analytics::FrameAnalytics>>,
    /// The source's tracks after this frame (trttracker): every confirmed track, matched
    /// on this frame or coasting, and the tracks that ended on it (`lost`). Empty without
    /// a tracker.
    pub tracks: Vec<TrackInfo>,
}

/// One confirmed track of a source as the tracker left it after a frame. A detection
/// belongs to the track whose `id` equals its `object_id`; a track no detection of the
/// frame carries is coasting on its prediction (or `lost`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackInfo {
    /// The track id (`Detection::object_id`), unique within the source.
    pub id: i64,
    /// PTS of the first frame the track's object was detected on (the track's birth,
    /// which with `min-hits` > 1 precedes the first frame whose detection carries the id);
    /// `None` while no frame of the track had a PTS.
    pub first_seen: Option<gst::ClockTime>,
    /// PTS of the last frame a detection matched the track (this frame's when matched).
    pub last_seen: Option<gst::ClockTime>,
    /// The track ended on this frame (unmatched for more than `max-age` frames): the last
    /// entry with this id; a later object gets a new id.
    pub lost: bool,
}

impl FrameResults {
    /// The dense map of `model`, or the first one when `model` is empty.
    pub fn dense_for(&self, model: &str) -> Option<&DenseMap> {
        self.dense.iter().find(|d| model.is_empty() || &*d.model == model)
    }

    /// Whether nothing was attached.
    pub fn is_empty(&self) -> bool {
        self.detections.is_empty() && self.tensors.is_empty() && self.dense.is_empty()
    }
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
    /// Secondary results (keypoints in frame pixels, attribute), omitted when none.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub secondary: &'a [ObjectResult],
}

/// Summary of a dense map in the JSON export (the values stay in the meta).
#[derive(Debug, Serialize)]
pub struct DenseSummaryJson<'a> {
    pub model: &'a str,
    /// `[channels, height, width]` of the map.
    pub shape: [usize; 3],
    /// Minimum, mean and maximum of channel 0 over the map pixels that cover the frame.
    pub min: f32,
    pub mean: f32,
    pub max: f32,
}

impl<'a> DenseSummaryJson<'a> {
    /// Summary of `d`; `None` when its values are not readable.
    pub fn of(d: &'a DenseMap) -> Option<Self> {
        let (min, mean, max) = d.stats()?;
        Some(DenseSummaryJson {
            model: &d.model,
            shape: [d.channels, d.height, d.width],
            min,
            mean,
            max,
        })
    }
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
            secondary: &d.secondary,
        }
    }
}
