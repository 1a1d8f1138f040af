//! A model configuration: the model file, its input and its output parser, validated.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::backend::BackendKind;
use crate::parsers::{ParseParams, ParserKind, TensorNames};
use crate::tensor::DType;

use super::raw::{float_in, int_in, non_empty, read_text, resolve, triple, RawConfig, RawInput};
use super::{
    enum_nicks, load_labels, ColorOrder, ConfigError, InputDType, PreprocessConfig, ResizeMode,
    MAX_BATCH_LIMIT, MAX_DETECTIONS_LIMIT, MAX_INPUT_SIZE,
};

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
