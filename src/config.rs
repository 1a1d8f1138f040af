//! Model configuration files (TOML).
//!
//! ```toml
//! [model]
//! name = "shapes-yolo"                # optional: default = model file stem
//! onnx = "models/shapes-yolo.onnx"    # relative to this file; or engine = "x.engine"
//! labels = "shapes.txt"               # optional, one label per line
//! max-batch = 16                      # optional, default 16
//! backend = "onnxruntime-cpu"         # optional default backend
//! [input]
//! name = "images"                     # optional: default = the model's first input
//! width = 640
//! height = 640
//! dtype = "f32"                       # f32 | f16, default f32
//! resize = "letterbox"                # letterbox | stretch, default letterbox
//! pad-value = 114                     # 0..255, default 114
//! color = "rgb"                       # rgb | bgr, default rgb
//! scale = 0.00392156862745098         # default 1/255
//! mean = [0.0, 0.0, 0.0]              # default 0
//! std = [1.0, 1.0, 1.0]               # default 1
//! [output]
//! parser = "yolo"                     # yolo | yolo-seg | detr | raw | dense | landmarks
//! conf-threshold = 0.25
//! nms-iou = 0.45
//! max-detections = 100
//! boxes = "output0"                   # optional tensor names (defaults per parser)
//! protos = "output1"
//! logits = "logits"
//! masks = "masks"
//! detr-sigmoid = false                # optional: DETR logits are sigmoid (RT-DETR)
//! dense = "depth"                     # dense: the map (default: the first output)
//! keypoints = "keypoints"             # landmarks: [n, K, 2|3] keypoints
//! attributes = "colors"               # landmarks: [n, C] attribute scores
//! keypoint-names = ["nose", "tail"]   # landmarks: names of the K keypoints
//! ```
//!
//! Every problem is reported as a [`ConfigError`] with a sentence naming the file and the
//! key; parsing never panics, whatever the input.

pub mod npy;
pub mod promptseg;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use gst::glib;
use serde::Deserialize;

use crate::backend::BackendKind;
use crate::geometry::LetterboxTransform;
use crate::parsers::{ParseParams, ParserKind, TensorNames};
use crate::tensor::DType;

/// Largest accepted model input width or height, in pixels.
pub const MAX_INPUT_SIZE: u32 = 16384;
/// Largest accepted `max-batch`.
pub const MAX_BATCH_LIMIT: usize = 4096;
/// Largest accepted `max-detections`.
pub const MAX_DETECTIONS_LIMIT: usize = 1_000_000;
/// Config and label files larger than this are rejected (bytes).
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Failure to load a model configuration, always with an actionable sentence.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// The config (or labels) file cannot be read.
    #[error("cannot read {what} {path}: {reason}")]
    Read {
        /// Which file: "model config" or "labels file".
        what: &'static str,
        /// The file path.
        path: String,
        /// Why (OS error, not UTF-8, too large).
        reason: String,
    },
    /// A file named by the config does not exist.
    #[error("{origin}: the {what} file {path} does not exist")]
    MissingFile {
        /// The config file path (or "model config" for in-memory text).
        origin: String,
        /// Which file: "ONNX model", "TensorRT engine" or "labels".
        what: &'static str,
        /// The absolute path that was looked for.
        path: String,
    },
    /// The TOML is malformed, has unknown keys or lacks required ones.
    #[error("{origin} is not a valid model config: {message}")]
    Syntax {
        /// The config file path (or "model config" for in-memory text).
        origin: String,
        /// The TOML parser's message, with line and column.
        message: String,
    },
    /// A value is out of range or not one of the accepted names.
    #[error("{origin}: {message}")]
    Invalid {
        /// The config file path (or "model config" for in-memory text).
        origin: String,
        /// Sentence naming the key, the accepted values and the value found.
        message: String,
    },
}

/// How a frame is fitted into the model input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, glib::Enum)]
#[enum_type(name = "GstTrtResize")]
pub enum ResizeMode {
    /// Keep the aspect ratio, centre, pad the rest with `pad_value` (default).
    #[default]
    #[enum_value(
        name = "Keep the aspect ratio, centre the frame and pad the rest with pad-value",
        nick = "letterbox"
    )]
    Letterbox,
    /// Scale each axis independently to fill the input.
    #[enum_value(
        name = "Scale each axis on its own so that the frame fills the input",
        nick = "stretch"
    )]
    Stretch,
}

impl ResizeMode {
    /// Parses `letterbox` or `stretch`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "letterbox" => Some(Self::Letterbox),
            "stretch" => Some(Self::Stretch),
            _ => None,
        }
    }
    /// Name used in configs and properties.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Letterbox => "letterbox",
            Self::Stretch => "stretch",
        }
    }
}

/// Channel order of the model input planes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, glib::Enum)]
#[enum_type(name = "GstTrtColorOrder")]
pub enum ColorOrder {
    /// Plane 0 = red (default).
    #[default]
    #[enum_value(name = "Planes in red, green, blue order", nick = "rgb")]
    Rgb,
    /// Plane 0 = blue.
    #[enum_value(name = "Planes in blue, green, red order", nick = "bgr")]
    Bgr,
}

/// Element type of a prepared model input tensor (the floating-point subset of
/// [`DType`] that preprocessing writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, glib::Enum)]
#[enum_type(name = "GstTrtInputDType")]
pub enum InputDType {
    /// 32-bit floats (default).
    #[default]
    #[enum_value(name = "32-bit floating point", nick = "f32")]
    F32,
    /// 16-bit floats.
    #[enum_value(name = "16-bit floating point (half precision)", nick = "f16")]
    F16,
}

impl InputDType {
    /// The tensor element type.
    pub const fn dtype(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::F16 => DType::F16,
        }
    }

    /// The input type of a tensor element type, if preprocessing can write it.
    pub const fn from_dtype(d: DType) -> Option<Self> {
        match d {
            DType::F32 => Some(Self::F32),
            DType::F16 => Some(Self::F16),
            _ => None,
        }
    }
}

/// The nicks of a GEnum type, as "a, b or c", for messages listing accepted values.
pub fn enum_nicks<E: glib::prelude::StaticType>() -> String {
    let Some(class) = glib::EnumClass::with_type(E::static_type()) else {
        return String::new();
    };
    let nicks: Vec<&str> = class.values().iter().map(|v| v.nick()).collect();
    match nicks.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

impl ColorOrder {
    /// Parses `rgb` or `bgr`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "rgb" => Some(Self::Rgb),
            "bgr" => Some(Self::Bgr),
            _ => None,
        }
    }
    /// Name used in configs and properties.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Rgb => "rgb",
            Self::Bgr => "bgr",
        }
    }
}

/// How frames become the model input tensor `[B, 3, height, width]` (planar).
///
/// Each value is `(pixel * scale - mean[c]) / std[c]` with `pixel` in 0..=255 and `c` the
/// plane index in model order (after `color`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PreprocessConfig {
    /// Model input width in pixels (1..=16384). Default 640.
    pub width: u32,
    /// Model input height in pixels (1..=16384). Default 640.
    pub height: u32,
    /// Element type of the input tensor: f32 (default) or f16.
    pub dtype: DType,
    /// Letterbox (default) or stretch.
    pub resize: ResizeMode,
    /// Value (0..=255, before normalisation) of the letterbox padding. Default 114.
    pub pad_value: u8,
    /// Plane order: rgb (default) or bgr.
    pub color: ColorOrder,
    /// Multiplier applied to 0..=255 pixels. Default 1/255.
    pub scale: f32,
    /// Per-plane mean subtracted after scaling (model plane order). Default 0.
    pub mean: [f32; 3],
    /// Per-plane divisor after the mean (model plane order, never 0). Default 1.
    pub std: [f32; 3],
}

impl Default for PreprocessConfig {
    fn default() -> Self {
        Self {
            width: 640,
            height: 640,
            dtype: DType::F32,
            resize: ResizeMode::Letterbox,
            pad_value: 114,
            color: ColorOrder::Rgb,
            scale: 1.0 / 255.0,
            mean: [0.0; 3],
            std: [1.0; 3],
        }
    }
}

impl PreprocessConfig {
    /// Placement of a `frame_w x frame_h` frame in the model input.
    pub fn transform(&self, frame_w: u32, frame_h: u32) -> LetterboxTransform {
        match self.resize {
            ResizeMode::Letterbox => LetterboxTransform::letterbox(frame_w, frame_h, self.width, self.height),
            ResizeMode::Stretch => LetterboxTransform::stretch(frame_w, frame_h, self.width, self.height),
        }
    }

    /// Whether a model input takes what this preprocessing makes (`[batch, 3, height,
    /// width]` of `dtype`); the error is a sentence naming both.
    pub fn check_model_input(&self, input: &crate::backend::TensorSpec) -> Result<(), String> {
        let want = [1usize, 3, self.height as usize, self.width as usize];
        if input.accepts(&want) && input.dtype == self.dtype {
            return Ok(());
        }
        Err(format!(
            "input {} does not match the preprocessing ({} [batch, 3, {}, {}])",
            input.describe(),
            self.dtype.name(),
            self.height,
            self.width
        ))
    }

    /// Per-plane affine form `(a, b)` of the normalisation: `value = pixel * a + b`.
    pub fn affine(&self) -> [(f32, f32); 3] {
        std::array::from_fn(|c| (self.scale / self.std[c], -self.mean[c] / self.std[c]))
    }

    /// Checks the ranges documented on the fields; the error is a sentence.
    pub fn validate(&self) -> Result<(), String> {
        for (key, v) in [("width", self.width), ("height", self.height)] {
            if v == 0 || v > MAX_INPUT_SIZE {
                return Err(format!(
                    "{key} must be between 1 and {MAX_INPUT_SIZE} pixels, got {v}"
                ));
            }
        }
        if !matches!(self.dtype, DType::F32 | DType::F16) {
            return Err(format!("dtype must be f32 or f16, got {}", self.dtype.name()));
        }
        if !self.scale.is_finite() || self.scale == 0.0 {
            return Err(format!(
                "scale must be a finite, non-zero number, got {}",
                self.scale
            ));
        }
        if self.mean.iter().any(|v| !v.is_finite()) {
            return Err(format!("mean must hold finite numbers, got {:?}", self.mean));
        }
        if self.std.iter().any(|v| !v.is_finite() || *v == 0.0) {
            return Err(format!(
                "std must hold finite, non-zero numbers, got {:?}",
                self.std
            ));
        }
        Ok(())
    }
}

/// The model file a config points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelFile {
    /// ONNX model (absolute path).
    Onnx(PathBuf),
    /// Serialized TensorRT engine (absolute path).
    Engine(PathBuf),
}

impl ModelFile {
    /// The absolute path.
    pub fn path(&self) -> &Path {
        match self {
            Self::Onnx(p) | Self::Engine(p) => p,
        }
    }
}

/// A loaded and validated model configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Model name used in metadata (`[model] name`, default: the model file stem).
    pub name: String,
    /// Model file, resolved to an absolute path (relative paths are relative to the TOML).
    pub model: ModelFile,
    /// Labels file, absolute, when configured.
    pub labels_path: Option<PathBuf>,
    /// Class labels loaded from `labels_path` (empty without one).
    pub labels: Vec<String>,
    /// Largest batch the element submits (1..=4096). Default 16.
    pub max_batch: usize,
    /// Default backend (`[model] backend`); `None` leaves the choice to the element.
    pub backend: Option<BackendKind>,
    /// Model input tensor name; `None` = the model's first input.
    pub input_name: Option<String>,
    /// Preprocessing of frames into the input tensor.
    pub preprocess: PreprocessConfig,
    /// Output parser; always set from a TOML file, `None` from [`ModelConfig::for_onnx`]
    /// (the element's property must then supply it).
    pub parser: Option<ParserKind>,
    /// Minimum confidence (0..=1). Default 0.25.
    pub conf_threshold: f32,
    /// NMS IoU threshold (0..=1). Default 0.45.
    pub nms_iou: f32,
    /// Most detections per frame; 0 = no limit. Default 100.
    pub max_detections: usize,
    /// Output tensor names (unset = parser defaults).
    pub tensor_names: TensorNames,
    /// DETR logits are per-class sigmoid (RT-DETR) instead of softmax. Default false.
    pub detr_sigmoid: bool,
    /// Names of the keypoints of a `landmarks` model, by index (may be empty).
    pub keypoint_names: Vec<String>,
    /// The TOML file this came from, when any.
    pub source: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawConfig {
    model: RawModel,
    input: RawInput,
    output: RawOutput,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawModel {
    name: Option<String>,
    onnx: Option<String>,
    engine: Option<String>,
    labels: Option<String>,
    max_batch: Option<i64>,
    backend: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawInput {
    name: Option<String>,
    width: i64,
    height: i64,
    dtype: Option<String>,
    resize: Option<String>,
    pad_value: Option<i64>,
    color: Option<String>,
    scale: Option<f64>,
    mean: Option<Vec<f64>>,
    std: Option<Vec<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawOutput {
    parser: String,
    conf_threshold: Option<f64>,
    nms_iou: Option<f64>,
    max_detections: Option<i64>,
    boxes: Option<String>,
    protos: Option<String>,
    logits: Option<String>,
    masks: Option<String>,
    detr_sigmoid: Option<bool>,
    dense: Option<String>,
    keypoints: Option<String>,
    attributes: Option<String>,
    keypoint_names: Option<Vec<String>>,
}

/// Absolute form of `p` (relative to `base`), without resolving symlinks.
pub(crate) fn resolve(base: &Path, p: &str) -> PathBuf {
    let joined = base.join(p);
    std::path::absolute(&joined).unwrap_or(joined)
}

/// Reads a small text file, refusing files over [`MAX_FILE_BYTES`].
pub(crate) fn read_text(path: &Path, what: &'static str) -> Result<String, ConfigError> {
    let err = |reason: String| ConfigError::Read {
        what,
        path: path.display().to_string(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if !meta.is_file() {
        return Err(err("it is not a regular file".into()));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(err(format!("it is larger than {MAX_FILE_BYTES} bytes")));
    }
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| {
        err(format!(
            "it is not UTF-8 text (byte {})",
            e.utf8_error().valid_up_to()
        ))
    })
}

/// Reads a labels file: one label per line, surrounding whitespace trimmed, blank lines
/// and lines starting with `#` ignored.
pub fn load_labels(path: &Path) -> Result<Vec<String>, ConfigError> {
    let text = read_text(path, "labels file")?;
    Ok(parse_labels(&text))
}

/// The labels of a labels file's text (see [`load_labels`]).
pub fn parse_labels(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

pub(crate) fn float_in(
    origin: &str,
    key: &str,
    v: Option<f64>,
    default: f32,
    lo: f32,
    hi: f32,
) -> Result<f32, ConfigError> {
    let Some(v) = v else { return Ok(default) };
    let f = v as f32;
    if !f.is_finite() || f < lo || f > hi {
        return Err(ConfigError::Invalid {
            origin: origin.to_string(),
            message: format!("{key} must be a number between {lo} and {hi}, got {v}"),
        });
    }
    Ok(f)
}

pub(crate) fn int_in(
    origin: &str,
    key: &str,
    v: Option<i64>,
    default: usize,
    lo: usize,
    hi: usize,
) -> Result<usize, ConfigError> {
    let Some(v) = v else { return Ok(default) };
    match usize::try_from(v) {
        Ok(u) if (lo..=hi).contains(&u) => Ok(u),
        _ => Err(ConfigError::Invalid {
            origin: origin.to_string(),
            message: format!("{key} must be an integer between {lo} and {hi}, got {v}"),
        }),
    }
}

fn triple(origin: &str, key: &str, v: Option<Vec<f64>>, default: f32) -> Result<[f32; 3], ConfigError> {
    match v.as_deref() {
        None => Ok([default; 3]),
        Some([a]) => Ok([*a as f32; 3]),
        Some([a, b, c]) => Ok([*a as f32, *b as f32, *c as f32]),
        Some(other) => Err(ConfigError::Invalid {
            origin: origin.to_string(),
            message: format!(
                "{key} must hold 3 numbers (one per plane) or 1, got {}",
                other.len()
            ),
        }),
    }
}

pub(crate) fn non_empty(origin: &str, key: &str, v: Option<String>) -> Result<Option<String>, ConfigError> {
    match v {
        Some(s) if s.trim().is_empty() || s.contains('\0') => Err(ConfigError::Invalid {
            origin: origin.to_string(),
            message: format!("{key} must not be empty"),
        }),
        other => Ok(other),
    }
}

/// The model file of a `[model]`-like section (`onnx = ...` or `engine = ...`), resolved
/// against `base`; it must exist.
pub(crate) fn model_file(
    origin: &str,
    base: &Path,
    section: &str,
    onnx: Option<String>,
    engine: Option<String>,
) -> Result<ModelFile, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        origin: origin.to_string(),
        message,
    };
    let model = match (
        non_empty(origin, &format!("{section} onnx"), onnx)?,
        non_empty(origin, &format!("{section} engine"), engine)?,
    ) {
        (Some(o), None) => ModelFile::Onnx(resolve(base, &o)),
        (None, Some(e)) => ModelFile::Engine(resolve(base, &e)),
        (Some(_), Some(_)) => {
            return Err(invalid(format!(
                "{section} must name either onnx or engine, not both"
            )));
        }
        (None, None) => {
            return Err(invalid(format!(
                "{section} must name the model file: onnx = \"model.onnx\" or engine = \"model.engine\""
            )));
        }
    };
    let what = match model {
        ModelFile::Onnx(_) => "ONNX model",
        ModelFile::Engine(_) => "TensorRT engine",
    };
    if !model.path().is_file() {
        return Err(ConfigError::MissingFile {
            origin: origin.to_string(),
            what,
            path: model.path().display().to_string(),
        });
    }
    Ok(model)
}

/// The `backend = ...` of a section, checked against the kind of model file.
pub(crate) fn backend_for(
    origin: &str,
    section: &str,
    model: &ModelFile,
    backend: Option<String>,
) -> Result<Option<BackendKind>, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        origin: origin.to_string(),
        message,
    };
    let backend = match backend {
        None => None,
        Some(b) => Some(BackendKind::parse(&b).ok_or_else(|| {
            invalid(format!(
                "unknown backend '{b}' in {section}: expected onnxruntime-cpu, onnxruntime-cuda, onnxruntime-tensorrt or tensorrt"
            ))
        })?),
    };
    match (model, backend) {
        (ModelFile::Engine(_), Some(k)) if k != BackendKind::TensorRt => Err(invalid(format!(
            "a TensorRT engine file needs backend = \"tensorrt\", not \"{}\"",
            k.name()
        ))),
        (ModelFile::Onnx(_), Some(BackendKind::TensorRt)) => Err(invalid(
            "backend \"tensorrt\" runs serialized engines: use engine = \"...\" or an onnxruntime backend"
                .into(),
        )),
        _ => Ok(backend),
    }
}

/// The `[input]` section: preprocessing and the optional input tensor name.
pub(crate) fn parse_input(
    origin: &str,
    i: RawInput,
) -> Result<(PreprocessConfig, Option<String>), ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        origin: origin.to_string(),
        message,
    };
    let size = |key: &str, v: i64| -> Result<u32, ConfigError> {
        match u32::try_from(v) {
            Ok(u) if (1..=MAX_INPUT_SIZE).contains(&u) => Ok(u),
            _ => Err(invalid(format!(
                "[input] {key} must be between 1 and {MAX_INPUT_SIZE} pixels, got {v}"
            ))),
        }
    };
    let width = size("width", i.width)?;
    let height = size("height", i.height)?;
    let dtype = match i.dtype {
        None => DType::F32,
        Some(d) => DType::parse(&d)
            .and_then(InputDType::from_dtype)
            .map(InputDType::dtype)
            .ok_or_else(|| {
                invalid(format!(
                    "unknown [input] dtype '{d}': expected {}",
                    enum_nicks::<InputDType>()
                ))
            })?,
    };
    let resize = match i.resize {
        None => ResizeMode::Letterbox,
        Some(r) => ResizeMode::parse(&r).ok_or_else(|| {
            invalid(format!(
                "unknown [input] resize '{r}': expected {}",
                enum_nicks::<ResizeMode>()
            ))
        })?,
    };
    let color = match i.color {
        None => ColorOrder::Rgb,
        Some(c) => ColorOrder::parse(&c).ok_or_else(|| {
            invalid(format!(
                "unknown [input] color '{c}': expected {}",
                enum_nicks::<ColorOrder>()
            ))
        })?,
    };
    let pad_value = int_in(origin, "[input] pad-value", i.pad_value, 114, 0, 255)?;
    let scale = match i.scale {
        None => 1.0 / 255.0,
        Some(v) => v as f32,
    };
    let preprocess = PreprocessConfig {
        width,
        height,
        dtype,
        resize,
        pad_value: u8::try_from(pad_value).unwrap_or(114),
        color,
        scale,
        mean: triple(origin, "[input] mean", i.mean, 0.0)?,
        std: triple(origin, "[input] std", i.std, 1.0)?,
    };
    preprocess
        .validate()
        .map_err(|m| invalid(format!("[input] {m}")))?;
    let input_name = non_empty(origin, "[input] name", i.name)?;
    Ok((preprocess, input_name))
}

impl ModelConfig {
    /// Loads and validates a TOML config file; relative paths inside are resolved against
    /// the file's directory, and the model and labels files must exist.
    pub fn from_file(path: impl AsRef<Path>) -> Result<ModelConfig, ConfigError> {
        let path = path.as_ref();
        let text = read_text(path, "model config")?;
        let base = path.parent().unwrap_or(Path::new("."));
        let base = if base.as_os_str().is_empty() {
            Path::new(".")
        } else {
            base
        };
        let mut cfg = Self::parse_str(&text, base, &path.display().to_string())?;
        cfg.source = Some(std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()));
        Ok(cfg)
    }

    /// Parses and validates a TOML config held in memory; relative paths are resolved
    /// against `base_dir`.
    pub fn from_toml_str(s: &str, base_dir: impl AsRef<Path>) -> Result<ModelConfig, ConfigError> {
        Self::parse_str(s, base_dir.as_ref(), "model config")
    }

    /// A default configuration for a bare `.onnx` file: name = file stem, default
    /// preprocessing (640x640 letterbox f32 RGB /255 — the element should take width and
    /// height from the model's input), no labels, no parser (`parser` is `None`).
    pub fn for_onnx(path: impl AsRef<Path>) -> Result<ModelConfig, ConfigError> {
        let path = path.as_ref();
        let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        if !abs.is_file() {
            return Err(ConfigError::MissingFile {
                origin: "model".into(),
                what: "ONNX model",
                path: abs.display().to_string(),
            });
        }
        Ok(ModelConfig {
            name: file_stem(&abs),
            model: ModelFile::Onnx(abs),
            labels_path: None,
            labels: Vec::new(),
            max_batch: 16,
            backend: None,
            input_name: None,
            preprocess: PreprocessConfig::default(),
            parser: None,
            conf_threshold: 0.25,
            nms_iou: 0.45,
            max_detections: 100,
            tensor_names: TensorNames::default(),
            detr_sigmoid: false,
            keypoint_names: Vec::new(),
            source: None,
        })
    }

    /// Absolute path of the model file.
    pub fn model_path(&self) -> &Path {
        self.model.path()
    }

    /// Parser parameters for this model; `parser` is the configured one unless overridden
    /// by the caller.
    pub fn parse_params(&self) -> ParseParams {
        ParseParams {
            model: Arc::from(self.name.as_str()),
            labels: self
                .labels
                .iter()
                .map(|l| Arc::from(l.as_str()))
                .collect::<Vec<Arc<str>>>()
                .into(),
            conf_threshold: self.conf_threshold,
            nms_iou: self.nms_iou,
            max_detections: self.max_detections,
            tensor_names: self.tensor_names.clone(),
            detr_sigmoid: self.detr_sigmoid,
            keypoint_names: self
                .keypoint_names
                .iter()
                .map(|l| Arc::from(l.as_str()))
                .collect::<Vec<Arc<str>>>()
                .into(),
        }
    }

    fn parse_str(s: &str, base: &Path, origin: &str) -> Result<ModelConfig, ConfigError> {
        let raw: RawConfig = toml::from_str(s).map_err(|e| ConfigError::Syntax {
            origin: origin.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            origin: origin.to_string(),
            message,
        };
        let m = raw.model;
        let model = model_file(origin, base, "[model]", m.onnx, m.engine)?;
        let backend = backend_for(origin, "[model]", &model, m.backend)?;
        let labels_path = non_empty(origin, "[model] labels", m.labels)?.map(|l| resolve(base, &l));
        let labels = match &labels_path {
            None => Vec::new(),
            Some(p) if !p.is_file() => {
                return Err(ConfigError::MissingFile {
                    origin: origin.to_string(),
                    what: "labels",
                    path: p.display().to_string(),
                });
            }
            Some(p) => load_labels(p)?,
        };
        let name = match non_empty(origin, "[model] name", m.name)? {
            Some(n) => n,
            None => file_stem(model.path()),
        };
        let max_batch = int_in(origin, "[model] max-batch", m.max_batch, 16, 1, MAX_BATCH_LIMIT)?;

        let (preprocess, input_name) = parse_input(origin, raw.input)?;

        let o = raw.output;
        let parser = ParserKind::parse(&o.parser).ok_or_else(|| {
            invalid(format!(
                "unknown [output] parser '{}': expected one of {}",
                o.parser,
                crate::parsers::PARSER_NAMES
            ))
        })?;
        let conf_threshold = float_in(
            origin,
            "[output] conf-threshold",
            o.conf_threshold,
            0.25,
            0.0,
            1.0,
        )?;
        let nms_iou = float_in(origin, "[output] nms-iou", o.nms_iou, 0.45, 0.0, 1.0)?;
        let max_detections = int_in(
            origin,
            "[output] max-detections",
            o.max_detections,
            100,
            0,
            MAX_DETECTIONS_LIMIT,
        )?;
        let tensor_names = TensorNames {
            boxes: non_empty(origin, "[output] boxes", o.boxes)?,
            protos: non_empty(origin, "[output] protos", o.protos)?,
            logits: non_empty(origin, "[output] logits", o.logits)?,
            masks: non_empty(origin, "[output] masks", o.masks)?,
            dense: non_empty(origin, "[output] dense", o.dense)?,
            keypoints: non_empty(origin, "[output] keypoints", o.keypoints)?,
            attributes: non_empty(origin, "[output] attributes", o.attributes)?,
        };
        let keypoint_names = o.keypoint_names.unwrap_or_default();
        Ok(ModelConfig {
            name,
            model,
            labels_path,
            labels,
            max_batch,
            backend,
            input_name,
            preprocess,
            parser: Some(parser),
            conf_threshold,
            nms_iou,
            max_detections,
            tensor_names,
            detr_sigmoid: o.detr_sigmoid.unwrap_or(false),
            keypoint_names,
            source: None,
        })
    }
}

pub(crate) fn file_stem(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "model".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory with `models/m.onnx`, `labels.txt` and `e.engine`.
    fn fixture(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("trtvision-config-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("models")).unwrap();
        std::fs::write(dir.join("models/m.onnx"), b"onnx").unwrap();
        std::fs::write(dir.join("e.engine"), b"engine").unwrap();
        std::fs::write(
            dir.join("labels.txt"),
            "# classes\nred\n\n  green  \n#blue\nyellow\n",
        )
        .unwrap();
        dir
    }

    const FULL: &str = r#"
[model]
name = "shapes-yolo"
onnx = "models/m.onnx"
labels = "labels.txt"
max-batch = 8
backend = "onnxruntime-cpu"
[input]
name = "images"
width = 640
height = 480
dtype = "f16"
resize = "stretch"
pad-value = 0
color = "bgr"
scale = 1
mean = [0.485, 0.456, 0.406]
std = [0.229, 0.224, 0.225]
[output]
parser = "yolo-seg"
conf-threshold = 0.5
nms-iou = 0.6
max-detections = 50
boxes = "out0"
protos = "out1"
logits = "lg"
masks = "mk"
detr-sigmoid = true
"#;

    const MINIMAL: &str = r#"
[model]
onnx = "models/m.onnx"
[input]
width = 320
height = 320
[output]
parser = "detr"
"#;

    #[test]
    fn full_config_from_file() {
        let dir = fixture("full");
        let path = dir.join("cfg.toml");
        std::fs::write(&path, FULL).unwrap();
        let c = ModelConfig::from_file(&path).unwrap();
        assert_eq!(c.name, "shapes-yolo");
        assert_eq!(c.model, ModelFile::Onnx(dir.join("models/m.onnx")));
        assert!(c.model_path().is_absolute());
        assert_eq!(c.labels_path, Some(dir.join("labels.txt")));
        assert_eq!(c.labels, vec!["red", "green", "yellow"]);
        assert_eq!(c.max_batch, 8);
        assert_eq!(c.backend, Some(BackendKind::OnnxRuntimeCpu));
        assert_eq!(c.input_name.as_deref(), Some("images"));
        let p = c.preprocess;
        assert_eq!((p.width, p.height, p.dtype), (640, 480, DType::F16));
        assert_eq!(
            (p.resize, p.pad_value, p.color, p.scale),
            (ResizeMode::Stretch, 0, ColorOrder::Bgr, 1.0)
        );
        assert_eq!(p.mean, [0.485, 0.456, 0.406]);
        assert_eq!(p.std, [0.229, 0.224, 0.225]);
        assert_eq!(c.parser, Some(ParserKind::YoloSeg));
        assert_eq!((c.conf_threshold, c.nms_iou, c.max_detections), (0.5, 0.6, 50));
        assert_eq!(c.tensor_names.boxes.as_deref(), Some("out0"));
        assert_eq!(c.tensor_names.protos.as_deref(), Some("out1"));
        assert_eq!(c.tensor_names.logits.as_deref(), Some("lg"));
        assert_eq!(c.tensor_names.masks.as_deref(), Some("mk"));
        assert!(c.detr_sigmoid);
        assert_eq!(c.source, Some(path));
        let pp = c.parse_params();
        assert_eq!(&*pp.model, "shapes-yolo");
        assert_eq!(pp.labels.len(), 3);
        assert_eq!(&*pp.label(1), "green");
    }

    #[test]
    fn defaults() {
        let dir = fixture("min");
        let c = ModelConfig::from_toml_str(MINIMAL, &dir).unwrap();
        assert_eq!(c.name, "m");
        assert_eq!(c.max_batch, 16);
        assert_eq!(c.backend, None);
        assert_eq!(c.input_name, None);
        assert!(c.labels.is_empty() && c.labels_path.is_none());
        let d = PreprocessConfig::default();
        assert_eq!(
            c.preprocess,
            PreprocessConfig {
                width: 320,
                height: 320,
                ..d
            }
        );
        assert_eq!(
            (d.dtype, d.resize, d.pad_value, d.color),
            (DType::F32, ResizeMode::Letterbox, 114, ColorOrder::Rgb)
        );
        assert_eq!((d.scale, d.mean, d.std), (1.0 / 255.0, [0.0; 3], [1.0; 3]));
        assert_eq!(c.parser, Some(ParserKind::Detr));
        assert_eq!((c.conf_threshold, c.nms_iou, c.max_detections), (0.25, 0.45, 100));
        assert_eq!(c.tensor_names, TensorNames::default());
        assert!(!c.detr_sigmoid);
        // Engine instead of ONNX.
        let e = MINIMAL.replace(
            "onnx = \"models/m.onnx\"",
            "engine = \"e.engine\"\nbackend = \"tensorrt\"",
        );
        let c = ModelConfig::from_toml_str(&e, &dir).unwrap();
        assert_eq!(c.model, ModelFile::Engine(dir.join("e.engine")));
    }

    fn err_of(toml: &str, dir: &Path) -> String {
        let e = ModelConfig::from_toml_str(toml, dir).unwrap_err();
        e.to_string()
    }

    #[test]
    fn validation_messages() {
        let dir = fixture("bad");
        let cases: Vec<(String, &str)> = vec![
            (
                MINIMAL.replace("[output]\nparser = \"detr\"\n", ""),
                "missing field `output`",
            ),
            (MINIMAL.replace("width = 320\n", ""), "missing field `width`"),
            (
                MINIMAL.replace("parser = \"detr\"", "parser = \"ssd\""),
                "unknown [output] parser 'ssd'",
            ),
            (
                MINIMAL.replace("parser = \"detr\"", "parser = \"yolo\"\ncolour = \"rgb\""),
                "unknown field `colour`",
            ),
            (
                MINIMAL.replace("width = 320", "width = 0"),
                "[input] width must be between 1 and 16384",
            ),
            (
                MINIMAL.replace("height = 320", "height = 16385"),
                "[input] height must be between 1 and 16384",
            ),
            (
                MINIMAL.replace("width = 320", "width = -5"),
                "width must be between",
            ),
            (
                MINIMAL.replace("height = 320", "height = 320\nstd = [1.0, 0.0, 1.0]"),
                "[input] std must hold finite, non-zero",
            ),
            (
                MINIMAL.replace("height = 320", "height = 320\nstd = [1.0, 1.0]"),
                "std must hold 3 numbers",
            ),
            (
                MINIMAL.replace("height = 320", "height = 320\ndtype = \"f64\""),
                "unknown [input] dtype 'f64'",
            ),
            (
                MINIMAL.replace("height = 320", "height = 320\ndtype = \"u8\""),
                "expected f32 or f16",
            ),
            (
                MINIMAL.replace("height = 320", "height = 320\nresize = \"crop\""),
                "unknown [input] resize 'crop'",
            ),
            (
                MINIMAL.replace("height = 320", "height = 320\ncolor = \"yuv\""),
                "unknown [input] color 'yuv'",
            ),
            (
                MINIMAL.replace("height = 320", "height = 320\npad-value = 256"),
                "pad-value must be an integer between 0 and 255",
            ),
            (
                MINIMAL.replace("height = 320", "height = 320\nscale = 0"),
                "scale must be a finite, non-zero",
            ),
            (
                MINIMAL.replace("height = 320", "height = 320\nscale = nan"),
                "scale must be a finite",
            ),
            (
                MINIMAL.replace("parser = \"detr\"", "parser = \"detr\"\nconf-threshold = 1.5"),
                "conf-threshold must be a number between 0 and 1",
            ),
            (
                MINIMAL.replace("parser = \"detr\"", "parser = \"detr\"\nnms-iou = -0.1"),
                "nms-iou must be",
            ),
            (
                MINIMAL.replace("parser = \"detr\"", "parser = \"detr\"\nmax-detections = -1"),
                "max-detections must be an integer",
            ),
            (
                MINIMAL.replace("parser = \"detr\"", "parser = \"detr\"\nboxes = \"\""),
                "[output] boxes must not be empty",
            ),
            (
                MINIMAL.replace("[model]", "[model]\nmax-batch = 0"),
                "max-batch must be an integer between 1 and 4096",
            ),
            (
                MINIMAL.replace("[model]", "[model]\nbackend = \"gpu\""),
                "unknown backend 'gpu'",
            ),
            (
                MINIMAL.replace("[model]", "[model]\nbackend = \"tensorrt\""),
                "backend \"tensorrt\" runs serialized engines",
            ),
            (
                MINIMAL.replace("onnx = \"models/m.onnx\"", "engine = \"e.engine\""),
                "",
            ),
            (
                MINIMAL.replace(
                    "onnx = \"models/m.onnx\"",
                    "engine = \"e.engine\"\nbackend = \"onnxruntime-cuda\"",
                ),
                "needs backend = \"tensorrt\"",
            ),
            (
                MINIMAL.replace(
                    "onnx = \"models/m.onnx\"",
                    "onnx = \"models/m.onnx\"\nengine = \"e.engine\"",
                ),
                "either onnx or engine, not both",
            ),
            (
                MINIMAL.replace("onnx = \"models/m.onnx\"", "name = \"x\""),
                "must name the model file",
            ),
            (
                MINIMAL.replace("models/m.onnx", "models/missing.onnx"),
                "the ONNX model file",
            ),
            (
                MINIMAL.replace("[model]", "[model]\nlabels = \"nope.txt\""),
                "the labels file",
            ),
            (MINIMAL.replace("[input]", "[inputs]"), "inputs"),
            ("".to_string(), "missing field `model`"),
            ("[model\nonnx=".to_string(), "not a valid model config"),
            (MINIMAL.replace("width = 320", "width = \"320\""), "invalid type"),
        ];
        for (toml, want) in cases {
            if want.is_empty() {
                assert!(ModelConfig::from_toml_str(&toml, &dir).is_ok(), "{toml}");
                continue;
            }
            let msg = err_of(&toml, &dir);
            assert!(
                msg.contains(want),
                "expected '{want}' in: {msg}\n--- for:\n{toml}"
            );
        }
        // Missing files are named by absolute path.
        let msg = err_of(&MINIMAL.replace("models/m.onnx", "models/missing.onnx"), &dir);
        assert!(
            msg.contains(&dir.join("models/missing.onnx").display().to_string()),
            "{msg}"
        );
    }

    #[test]
    fn file_errors() {
        let e = ModelConfig::from_file("/nonexistent/cfg.toml").unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }));
        assert!(e.to_string().contains("/nonexistent/cfg.toml"), "{e}");
        let dir = fixture("files");
        let e = ModelConfig::from_file(&dir).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        let bin = dir.join("bin.toml");
        std::fs::write(&bin, [0xffu8, 0xfe, 0x00]).unwrap();
        assert!(ModelConfig::from_file(&bin)
            .unwrap_err()
            .to_string()
            .contains("UTF-8"));
        // Errors from a file name the file.
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, MINIMAL.replace("width = 320", "width = 0")).unwrap();
        assert!(ModelConfig::from_file(&bad)
            .unwrap_err()
            .to_string()
            .starts_with(&bad.display().to_string()));
    }

    #[test]
    fn labels_file() {
        let dir = fixture("labels");
        assert_eq!(
            load_labels(&dir.join("labels.txt")).unwrap(),
            vec!["red", "green", "yellow"]
        );
        assert!(matches!(
            load_labels(&dir.join("none.txt")),
            Err(ConfigError::Read { .. })
        ));
        assert_eq!(parse_labels("a\r\nb c\r\n\r\n"), vec!["a", "b c"]);
    }

    #[test]
    fn for_onnx_defaults() {
        let dir = fixture("bare");
        let c = ModelConfig::for_onnx(dir.join("models/m.onnx")).unwrap();
        assert_eq!(c.name, "m");
        assert_eq!(c.parser, None);
        assert_eq!(c.preprocess, PreprocessConfig::default());
        assert_eq!(c.max_batch, 16);
        let e = ModelConfig::for_onnx(dir.join("models/x.onnx")).unwrap_err();
        assert!(
            e.to_string().contains("x.onnx") && e.to_string().contains("does not exist"),
            "{e}"
        );
    }

    #[test]
    fn preprocess_helpers() {
        let p = PreprocessConfig {
            mean: [0.5, 0.0, 0.0],
            std: [0.5, 1.0, 2.0],
            ..Default::default()
        };
        let a = p.affine();
        let px = 255.0f32;
        for (c, (mul, add)) in a.iter().enumerate() {
            let want = (px * p.scale - p.mean[c]) / p.std[c];
            assert!((px * mul + add - want).abs() < 1e-6);
        }
        let t = p.transform(1280, 720);
        assert_eq!((t.scale_x, t.pad_y), (0.5, 140.0));
        let s = PreprocessConfig {
            resize: ResizeMode::Stretch,
            ..p
        }
        .transform(1280, 720);
        assert_eq!((s.scale_x, s.pad_y), (0.5, 0.0));
        assert!(PreprocessConfig { width: 0, ..p }.validate().is_err());
        assert!(p.validate().is_ok());
        assert_eq!(ResizeMode::parse("STRETCH"), Some(ResizeMode::Stretch));
        assert_eq!(ColorOrder::parse("bgr").map(ColorOrder::name), Some("bgr"));
    }

    /// Arbitrary text and mutated configs never panic.
    #[test]
    fn fuzz_like_never_panics() {
        let dir = fixture("fuzz");
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let pieces = [
            "[model]",
            "[input]",
            "[output]",
            "onnx = \"models/m.onnx\"",
            "width = 1e400",
            "width = 9223372036854775807",
            "height = -9223372036854775808",
            "scale = inf",
            "mean = [nan]",
            "std = []",
            "parser = \"yolo\"",
            "labels = \"labels.txt\"",
            "labels = \"/\"",
            "engine = \"\\u0000\"",
            "pad-value = 1e3",
            "=",
            "[[model]]",
            "max-batch = 99999999999",
            "name = \"\"",
            "\u{feff}",
            "dtype = 3",
            "conf-threshold = nan",
        ];
        for _ in 0..2000 {
            let mut s = String::new();
            for _ in 0..(next() % 12) {
                s.push_str(pieces[(next() % pieces.len() as u64) as usize]);
                s.push('\n');
            }
            let _ = ModelConfig::from_toml_str(&s, &dir);
            let mut b: Vec<u8> = FULL.as_bytes().to_vec();
            for _ in 0..(next() % 4) {
                let i = (next() as usize) % b.len();
                b[i] = next() as u8;
            }
            let _ = ModelConfig::from_toml_str(&String::from_utf8_lossy(&b), &dir);
        }
    }

    /// The configs shipped in `engines/` load (skipped when the models are not generated).
    #[test]
    fn engines_configs_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("engines");
        for (file, parser) in [
            ("shapes-yolo.toml", ParserKind::Yolo),
            ("shapes-yolo-seg.toml", ParserKind::YoloSeg),
            ("shapes-detr.toml", ParserKind::Detr),
        ] {
            let path = dir.join(file);
            if !crate::skip::have_model(&path) {
                continue;
            }
            match ModelConfig::from_file(&path) {
                Ok(c) => {
                    assert_eq!(c.parser, Some(parser));
                    assert_eq!(c.labels, vec!["red", "green", "blue", "yellow"]);
                    assert_eq!(c.input_name.as_deref(), Some("images"));
                    assert_eq!((c.preprocess.width, c.preprocess.height), (640, 640));
                }
                Err(ConfigError::MissingFile { path, .. }) => crate::skip::skip(
                    crate::skip::REQUIRE_ORT,
                    &format!("{file}: {path} is missing (run engines/generate_models.py)"),
                ),
                Err(e) => panic!("{e}"),
            }
        }
    }
}
