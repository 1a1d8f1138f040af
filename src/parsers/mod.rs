//! Output parsers: turn a batch of model output tensors into per-frame detections.
//!
//! Every parser decodes boxes in model-input pixels, filters by confidence, applies
//! class-aware NMS in model pixels, and maps the kept boxes back to frame pixels with each
//! frame's [`LetterboxTransform`]. Outputs carry the whole batch: dimension 0 of every
//! output equals the number of transforms (frames), and row `i` uses `transforms[i]`.
//!
//! The parsers accept arbitrary tensors without panicking: ranks, sizes, dtypes and byte
//! lengths are validated ([`ParseError`] names the tensor and the expected and actual
//! shapes); non-finite scores or boxes and boxes of non-positive size are skipped.

pub mod dense;
pub mod detr;
pub mod landmarks;
pub mod nms;

use gst::glib;
use std::borrow::Cow;
use std::sync::Arc;

use crate::geometry::{BoxF, LetterboxTransform};
use crate::ops::yolo;
use crate::results::{Detection, MaskSource};
use crate::tensor::{DType, Tensor};

pub use nms::{nms, nms_indices, Candidate};

/// Which decoder runs on the model outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParserKind {
    /// YOLOv8 / YOLO11 detection: `output0 [B, 4 + C, N]`.
    Yolo,
    /// YOLOv8 / YOLO11 segmentation: `output0 [B, 4 + C + P, N]` and prototypes
    /// `output1 [B, P, h, w]`.
    YoloSeg,
    /// DETR style: `boxes [B, Q, 4]` (normalised cx, cy, w, h), `logits [B, Q, C + 1]`
    /// (softmax, last column = no object) or `[B, Q, C]` (sigmoid), optional
    /// `masks [B, Q, h, w]`.
    Detr,
    /// No decoding: the element attaches the raw tensors itself.
    Raw,
    /// Dense per-pixel output (depth, heat map, class scores): `[B, C, h, w]` or
    /// `[B, h, w]` covering the model input; attached to each frame as a [`DenseMap`].
    Dense,
    /// Secondary model on object crops: keypoints `[n, K, 2]` (or `[n, K, 3]` with a score),
    /// `x, y` normalised to the crop, and/or attribute scores `[n, C]`; attached to the
    /// object each crop was taken from.
    Landmarks,
}

impl ParserKind {
    /// Every kind, in documentation order.
    pub const ALL: [ParserKind; 6] = [
        ParserKind::Yolo,
        ParserKind::YoloSeg,
        ParserKind::Detr,
        ParserKind::Raw,
        ParserKind::Dense,
        ParserKind::Landmarks,
    ];

    /// Parses `yolo`, `yolo-seg`, `detr`, `raw`, `dense` (alias `depth`) or `landmarks`
    /// (ASCII case-insensitive; `_` accepted for `-`).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "yolo" => Self::Yolo,
            "yolo-seg" => Self::YoloSeg,
            "detr" => Self::Detr,
            "raw" => Self::Raw,
            "dense" | "depth" => Self::Dense,
            "landmarks" | "keypoints" => Self::Landmarks,
            _ => return None,
        })
    }

    /// Name used in configs and properties.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Yolo => "yolo",
            Self::YoloSeg => "yolo-seg",
            Self::Detr => "detr",
            Self::Raw => "raw",
            Self::Dense => "dense",
            Self::Landmarks => "landmarks",
        }
    }
}

/// The `parser` property of trtinfer: a parser, or the model config's choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, glib::Enum)]
#[enum_type(name = "GstTrtParser")]
pub enum ParserChoice {
    /// The model config's parser (default).
    #[default]
    #[enum_value(name = "The parser named by the model config", nick = "config")]
    Config,
    #[enum_value(name = "YOLOv8/YOLO11 detection", nick = "yolo")]
    Yolo,
    #[enum_value(
        name = "YOLOv8/YOLO11 segmentation (boxes and mask prototypes)",
        nick = "yolo-seg"
    )]
    YoloSeg,
    #[enum_value(name = "DETR-style boxes and logits, optional masks", nick = "detr")]
    Detr,
    #[enum_value(name = "No decoding: the raw output tensors are attached", nick = "raw")]
    Raw,
    #[enum_value(
        name = "Dense per-pixel maps (depth, heat maps, class scores)",
        nick = "dense"
    )]
    Dense,
    #[enum_value(name = "Keypoints and attributes of object crops", nick = "landmarks")]
    Landmarks,
}

impl ParserChoice {
    /// The chosen parser; `None` = the model config's.
    pub const fn kind(self) -> Option<ParserKind> {
        match self {
            Self::Config => None,
            Self::Yolo => Some(ParserKind::Yolo),
            Self::YoloSeg => Some(ParserKind::YoloSeg),
            Self::Detr => Some(ParserKind::Detr),
            Self::Raw => Some(ParserKind::Raw),
            Self::Dense => Some(ParserKind::Dense),
            Self::Landmarks => Some(ParserKind::Landmarks),
        }
    }

    /// The property value of a chosen parser (`None` = the model config's).
    pub const fn from_kind(kind: Option<ParserKind>) -> Self {
        match kind {
            None => Self::Config,
            Some(ParserKind::Yolo) => Self::Yolo,
            Some(ParserKind::YoloSeg) => Self::YoloSeg,
            Some(ParserKind::Detr) => Self::Detr,
            Some(ParserKind::Raw) => Self::Raw,
            Some(ParserKind::Dense) => Self::Dense,
            Some(ParserKind::Landmarks) => Self::Landmarks,
        }
    }
}

impl std::fmt::Display for ParserKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ParserKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s).ok_or_else(|| format!("unknown parser '{s}': expected one of {PARSER_NAMES}"))
    }
}

/// Names of the parsers, for messages.
pub const PARSER_NAMES: &str = "yolo, yolo-seg, detr, raw, dense, landmarks";

/// Output tensor names. `None` uses the parser's default:
/// yolo: `boxes = output0`; yolo-seg: `boxes = output0`, `protos = output1`;
/// detr: `boxes = boxes`, `logits = logits`, `masks = masks`; dense: `dense` = the first
/// output; landmarks: `keypoints = keypoints`, `attributes = attributes` (each optional, at
/// least one present).
///
/// When a *default* name is not among the outputs, the parser falls back to the output's
/// position (yolo: boxes 0, protos 1; detr: boxes 0, logits 1, masks 2). An explicitly set
/// name must exist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TensorNames {
    /// Box / prediction tensor (yolo `output0`, detr `boxes`).
    pub boxes: Option<String>,
    /// YOLO-seg prototype masks (`output1`).
    pub protos: Option<String>,
    /// DETR class logits (`logits`).
    pub logits: Option<String>,
    /// DETR per-query mask logits (`masks`, optional output).
    pub masks: Option<String>,
    /// Dense map of the `dense` parser (default: the first output).
    pub dense: Option<String>,
    /// Keypoints of the `landmarks` parser (`keypoints`).
    pub keypoints: Option<String>,
    /// Attribute scores of the `landmarks` parser (`attributes`).
    pub attributes: Option<String>,
}

impl TensorNames {
    /// Name of the box tensor for `kind`.
    pub fn boxes_for(&self, kind: ParserKind) -> &str {
        self.boxes.as_deref().unwrap_or(match kind {
            ParserKind::Detr => "boxes",
            _ => "output0",
        })
    }
    /// Name of the prototype tensor (yolo-seg).
    pub fn protos_name(&self) -> &str {
        self.protos.as_deref().unwrap_or("output1")
    }
    /// Name of the logits tensor (detr).
    pub fn logits_name(&self) -> &str {
        self.logits.as_deref().unwrap_or("logits")
    }
    /// Name of the mask tensor (detr).
    pub fn masks_name(&self) -> &str {
        self.masks.as_deref().unwrap_or("masks")
    }
    /// Name of the keypoint tensor (landmarks).
    pub fn keypoints_name(&self) -> &str {
        self.keypoints.as_deref().unwrap_or("keypoints")
    }
    /// Name of the attribute tensor (landmarks).
    pub fn attributes_name(&self) -> &str {
        self.attributes.as_deref().unwrap_or("attributes")
    }
}

/// Parameters shared by all parsers.
#[derive(Debug, Clone)]
pub struct ParseParams {
    /// Model name copied into every [`Detection::model`].
    pub model: Arc<str>,
    /// Class labels by class index; classes without a label are named by their number.
    pub labels: Arc<[Arc<str>]>,
    /// Minimum confidence (0..1) to keep a detection. Default 0.25.
    pub conf_threshold: f32,
    /// NMS IoU threshold: a box overlapping a better box of the same class with IoU
    /// greater than this is dropped. Default 0.45; `>= 1` disables NMS.
    pub nms_iou: f32,
    /// Most detections kept per frame (best first); 0 = no limit. Default 100.
    pub max_detections: usize,
    /// Output tensor names (defaults per parser).
    pub tensor_names: TensorNames,
    /// DETR only: logits are independent per class (sigmoid, RT-DETR style,
    /// `[B, Q, C]`) instead of softmax with a trailing no-object column. Default false.
    pub detr_sigmoid: bool,
    /// Landmarks only: names of the keypoints, by index (unnamed ones are numbered).
    pub keypoint_names: Arc<[Arc<str>]>,
}

impl Default for ParseParams {
    fn default() -> Self {
        Self {
            model: Arc::from("model"),
            labels: Arc::from(Vec::<Arc<str>>::new()),
            conf_threshold: 0.25,
            nms_iou: 0.45,
            max_detections: 100,
            tensor_names: TensorNames::default(),
            detr_sigmoid: false,
            keypoint_names: Arc::from(Vec::<Arc<str>>::new()),
        }
    }
}

impl ParseParams {
    /// Label of class `class_id`: `labels[class_id]`, or the number as text.
    pub fn label(&self, class_id: u32) -> Arc<str> {
        match self.labels.get(class_id as usize) {
            Some(l) => l.clone(),
            None => Arc::from(class_id.to_string()),
        }
    }
}

/// Why outputs could not be parsed. Every variant names the tensor involved.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    /// A required output is missing.
    #[error(
        "the {parser} parser needs an output tensor named '{name}', but the model outputs are [{available}]"
    )]
    MissingTensor {
        /// Parser name (`yolo`, `yolo-seg`, `detr`).
        parser: &'static str,
        /// The tensor name looked for.
        name: String,
        /// Names and shapes of the outputs that were given.
        available: String,
    },
    /// An output has the wrong rank or dimensions.
    #[error("output tensor '{tensor}' has shape {actual}, expected {expected}")]
    Shape {
        /// Tensor name.
        tensor: String,
        /// Expected layout, e.g. `[2, 4 + classes, anchors]`.
        expected: String,
        /// Actual shape, e.g. `[2, 84]`.
        actual: String,
    },
    /// An output has an element type the parser cannot read.
    #[error("output tensor '{tensor}' has element type {dtype}; the parsers read f32 or f16")]
    DType {
        /// Tensor name.
        tensor: String,
        /// Its element type.
        dtype: &'static str,
    },
    /// An output is in device memory.
    #[error("output tensor '{tensor}' is in device memory; the parsers read host tensors")]
    NotOnHost {
        /// Tensor name.
        tensor: String,
    },
    /// The byte length does not match shape and element type.
    #[error("output tensor '{tensor}' holds {got} bytes, but shape {shape} of {dtype} needs {expected}")]
    ByteLength {
        /// Tensor name.
        tensor: String,
        /// Its declared shape.
        shape: String,
        /// Its element type.
        dtype: &'static str,
        /// Bytes actually held.
        got: usize,
        /// Bytes the shape needs (or "more than addressable").
        expected: String,
    },
}

/// Scratch buffers reused across batches (one per parsing thread).
#[derive(Debug, Default)]
pub struct ParseScratch {
    pub(crate) best_score: Vec<f32>,
    pub(crate) best_class: Vec<u32>,
    cands: Vec<Candidate>,
    frame_boxes: Vec<BoxF>,
    anchors: Vec<u32>,
    keep: Vec<usize>,
}

/// Parses one batch. Returns one `Vec<Detection>` per frame (`transforms.len()` rows).
pub fn parse(
    kind: ParserKind,
    params: &ParseParams,
    outputs: &[Tensor],
    transforms: &[LetterboxTransform],
) -> Result<Vec<Vec<Detection>>, ParseError> {
    parse_with(&mut ParseScratch::default(), kind, params, outputs, transforms)
}

/// [`parse`] reusing `scratch` buffers between calls.
pub fn parse_with(
    scratch: &mut ParseScratch,
    kind: ParserKind,
    params: &ParseParams,
    outputs: &[Tensor],
    transforms: &[LetterboxTransform],
) -> Result<Vec<Vec<Detection>>, ParseError> {
    match kind {
        ParserKind::Yolo => yolo::parse_yolo(scratch, params, outputs, transforms, false),
        ParserKind::YoloSeg => yolo::parse_yolo(scratch, params, outputs, transforms, true),
        ParserKind::Detr => detr::parse_detr(scratch, params, outputs, transforms),
        // These attach other kinds of results (see `dense` and `landmarks`).
        ParserKind::Raw | ParserKind::Dense | ParserKind::Landmarks => Ok(vec![Vec::new(); transforms.len()]),
    }
}

// ---------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------

/// Checked product of dimensions.
pub(crate) fn checked_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// `[a, b, c]` form of a shape.
pub(crate) fn fmt_shape(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("[{}]", dims.join(", "))
}

/// Finds an output by name; when `name` is a default (not user-set) and missing, falls
/// back to the output at `position`.
pub(crate) fn find_output<'a>(
    outputs: &'a [Tensor],
    name: &str,
    explicit: bool,
    position: Option<usize>,
    parser: &'static str,
) -> Result<&'a Tensor, ParseError> {
    if let Some(t) = outputs.iter().find(|t| t.name == name) {
        return Ok(t);
    }
    if !explicit {
        if let Some(t) = position.and_then(|p| outputs.get(p)) {
            return Ok(t);
        }
    }
    Err(missing(outputs, name, parser))
}

pub(crate) fn missing(outputs: &[Tensor], name: &str, parser: &'static str) -> ParseError {
    let available: Vec<String> = outputs
        .iter()
        .map(|t| format!("{} {}", t.name, fmt_shape(&t.shape)))
        .collect();
    ParseError::MissingTensor {
        parser,
        name: name.to_string(),
        available: available.join(", "),
    }
}

/// The values of an f32 or f16 host tensor as f32: borrowed without copying for aligned
/// f32 data. Validates that the byte length matches the shape.
pub(crate) fn f32_values(t: &Tensor) -> Result<Cow<'_, [f32]>, ParseError> {
    if !matches!(t.dtype, DType::F32 | DType::F16) {
        return Err(ParseError::DType {
            tensor: t.name.clone(),
            dtype: t.dtype.name(),
        });
    }
    let bytes = t.host_bytes().ok_or_else(|| ParseError::NotOnHost {
        tensor: t.name.clone(),
    })?;
    let expected = checked_count(&t.shape).and_then(|c| c.checked_mul(t.dtype.size()));
    if expected != Some(bytes.len()) {
        return Err(ParseError::ByteLength {
            tensor: t.name.clone(),
            shape: fmt_shape(&t.shape),
            dtype: t.dtype.name(),
            got: bytes.len(),
            expected: expected.map_or_else(|| "more than addressable".to_string(), |e| e.to_string()),
        });
    }
    t.f32_values().ok_or_else(|| ParseError::DType {
        tensor: t.name.clone(),
        dtype: t.dtype.name(),
    })
}

/// A shape error for `t`.
pub(crate) fn shape_err(t: &Tensor, expected: impl Into<String>) -> ParseError {
    ParseError::Shape {
        tensor: t.name.clone(),
        expected: expected.into(),
        actual: fmt_shape(&t.shape),
    }
}

/// Maps a model-pixel box to the frame; `None` when not finite or empty after clamping.
pub(crate) fn to_frame_box(tr: &LetterboxTransform, b: &BoxF) -> Option<BoxF> {
    let f = tr.box_to_frame(b);
    let finite = f.x0.is_finite() && f.y0.is_finite() && f.x1.is_finite() && f.y1.is_finite();
    (finite && f.x1 > f.x0 && f.y1 > f.y0).then_some(f)
}

/// A model-pixel box from centre and size; `None` unless finite with positive size.
pub(crate) fn model_box(cx: f32, cy: f32, w: f32, h: f32) -> Option<BoxF> {
    if !(cx.is_finite() && cy.is_finite() && w.is_finite() && h.is_finite()) || w <= 0.0 || h <= 0.0 {
        return None;
    }
    let b = BoxF::from_cxcywh(cx, cy, w, h);
    (b.x0.is_finite()
        && b.y0.is_finite()
        && b.x1.is_finite()
        && b.y1.is_finite()
        && b.x1 > b.x0
        && b.y1 > b.y0)
        .then_some(b)
}

/// Runs NMS on the frame's candidates and builds the detections. `mask` builds the mask
/// source of a kept candidate from its anchor/query index.
pub(crate) fn finish_frame(
    scratch: &mut ParseScratch,
    params: &ParseParams,
    mut mask: impl FnMut(u32) -> Option<MaskSource>,
) -> Vec<Detection> {
    let ParseScratch {
        cands,
        frame_boxes,
        anchors,
        keep,
        ..
    } = scratch;
    nms(cands, params.nms_iou, true, params.max_detections, keep);
    let mut out = Vec::with_capacity(keep.len());
    for &k in keep.iter() {
        // `Candidate::index` is the push slot; boxes and anchors are stored by slot.
        let Some(c) = cands.get(k) else { continue };
        let slot = c.index as usize;
        let (Some(fb), Some(&anchor)) = (frame_boxes.get(slot), anchors.get(slot)) else {
            continue;
        };
        out.push(Detection {
            model: params.model.clone(),
            class_id: c.class_id,
            label: params.label(c.class_id),
            confidence: c.score,
            bbox: *fb,
            object_id: -1,
            query: anchor,
            mask_source: mask(anchor),
            mask: None,
            secondary: Vec::new(),
        });
    }
    out
}

impl ParseScratch {
    /// Empties the per-frame candidate lists.
    pub(crate) fn clear_frame(&mut self) {
        self.cands.clear();
        self.frame_boxes.clear();
        self.anchors.clear();
    }

    /// Adds a candidate: `model_box` (model pixels) for NMS, `frame_box` for the result,
    /// `anchor` = anchor/query index in the output.
    pub(crate) fn push(&mut self, model_box: BoxF, frame_box: BoxF, score: f32, class_id: u32, anchor: u32) {
        let Ok(slot) = u32::try_from(self.cands.len()) else {
            return;
        };
        self.cands.push(Candidate {
            bbox: model_box,
            score,
            class_id,
            index: slot,
        });
        self.frame_boxes.push(frame_box);
        self.anchors.push(anchor);
    }
}

#[cfg(test)]
mod tests;
