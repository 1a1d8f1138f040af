//! Prompt-conditioned segmentation configs: an image encoder and a prompt decoder
//! (SAM3-style), run once per class prompt. The format is documented in engines/README.md:
//!
//! ```toml
//! [model]
//! name = "shapes-promptseg"           # optional: default = the config file stem
//! max-batch = 8                       # frames per batch, default 16
//! backend = "onnxruntime-cpu"         # optional default backend of both models
//! [input]                             # as in every model config (trtpreprocess reads it)
//! name = "image"
//! width = 512
//! height = 512
//! [encoder]
//! onnx = "models/promptseg-tiny-encoder.onnx"      # or engine = "..."
//! [decoder]
//! onnx = "models/promptseg-tiny-decoder.onnx"
//! prompt-features = "prompt_features"              # decoder input [B, P, D]
//! prompt-mask = "prompt_mask"                      # optional decoder input [B, P]
//! [decoder.features]                  # decoder input = encoder output (default: same names)
//! fpn_0 = "fpn_0"
//! [output]
//! boxes = "pred_boxes"                # [B, Q, 4], normalised to the input size
//! box-format = "cxcywh"               # cxcywh | xyxy
//! logits = "pred_logits"              # [B, Q]
//! presence = "presence_logits"        # optional [B, 1]
//! masks = "pred_masks"                # [B, Q, h, w] logits covering the input
//! score-threshold = 0.5               # sigmoid(presence) * sigmoid(logit)
//! mask-threshold = 0.5
//! top-k = 10                          # most kept queries per frame and class (0 = all)
//! [[classes]]
//! id = 0
//! name = "red"
//! features = "models/red.features.npy"   # float32 [1, P, D] (or [P, D])
//! mask = "models/red.mask.npy"           # optional [1, P] (or [P]); 1 = token, 0 = padding
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{
    backend_for, file_stem, float_in, int_in, model_file, non_empty, parse_input, read_text, resolve,
    ConfigError, ModelFile, PreprocessConfig, RawInput, MAX_BATCH_LIMIT,
};
use crate::backend::BackendKind;

/// Largest accepted number of classes in one config.
pub const MAX_CLASSES: usize = 1024;

/// How `boxes` encodes a box (all values are fractions of the model input size).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BoxFormat {
    /// Centre x, centre y, width, height (default).
    #[default]
    CxCyWh,
    /// Left, top, right, bottom.
    XyXy,
}

/// The prompt of one class: what a text (or exemplar) encoder produced offline.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    /// Tokens `P`.
    pub tokens: usize,
    /// Features per token `D`.
    pub dim: usize,
    /// `P * D` values, token-major.
    pub features: Vec<f32>,
    /// `P` values: 1 = valid token, 0 = padding.
    pub mask: Vec<f32>,
}

/// One class segmented by the decoder.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptClass {
    /// Class id reported in the results.
    pub id: u32,
    /// Label reported in the results.
    pub label: String,
    pub prompt: Prompt,
    /// The prompt files, for messages.
    pub features_path: PathBuf,
}

/// Names of the decoder outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct DecoderOutputs {
    pub boxes: String,
    pub logits: String,
    pub presence: Option<String>,
    pub masks: String,
}

/// A loaded and validated prompt-segmentation config.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptSegConfig {
    /// Model name used in metadata and to find trtpreprocess's tensor.
    pub name: String,
    /// Largest batch of frames (1..=4096). Default 16.
    pub max_batch: usize,
    /// Default backend of both models.
    pub backend: Option<BackendKind>,
    /// Encoder input tensor name; `None` = the encoder's first input.
    pub input_name: Option<String>,
    pub preprocess: PreprocessConfig,
    pub encoder: ModelFile,
    pub decoder: ModelFile,
    /// Decoder input fed by encoder output, `(decoder input, encoder output)`; empty =
    /// every decoder input that has the name of an encoder output.
    pub features: Vec<(String, String)>,
    /// Decoder input taking the prompt features `[B, P, D]`.
    pub prompt_features: String,
    /// Decoder input taking the prompt mask `[B, P]`, when the decoder has one.
    pub prompt_mask: Option<String>,
    pub outputs: DecoderOutputs,
    pub box_format: BoxFormat,
    /// Minimum `sigmoid(presence) * sigmoid(logit)` of a kept query (0..=1). Default 0.5.
    pub score_threshold: f32,
    /// Mask probability above which a pixel is part of the object. Default 0.5.
    pub mask_threshold: f32,
    /// Most queries kept per frame and class, best first (0 = no limit). Default 100.
    pub top_k: usize,
    pub classes: Vec<PromptClass>,
    /// The TOML file this came from.
    pub source: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawPromptSeg {
    model: Option<RawModel>,
    input: RawInput,
    encoder: RawStage,
    decoder: RawDecoder,
    output: Option<RawOutput>,
    classes: Option<Vec<RawClass>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawModel {
    name: Option<String>,
    max_batch: Option<i64>,
    backend: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawStage {
    onnx: Option<String>,
    engine: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawDecoder {
    onnx: Option<String>,
    engine: Option<String>,
    prompt_features: Option<String>,
    prompt_mask: Option<String>,
    features: Option<toml::Table>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawOutput {
    boxes: Option<String>,
    box_format: Option<String>,
    logits: Option<String>,
    presence: Option<String>,
    masks: Option<String>,
    score_threshold: Option<f64>,
    mask_threshold: Option<f64>,
    top_k: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawClass {
    id: Option<i64>,
    name: String,
    features: String,
    mask: Option<String>,
}

/// Whether the TOML file at `path` is a prompt-segmentation config (it has an `[encoder]`
/// table). Unreadable or malformed files say no: the model-config loader reports them.
pub fn is_promptseg_file(path: &Path) -> bool {
    read_text(path, "model config")
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .is_some_and(|t| t.contains_key("encoder"))
}

impl PromptSegConfig {
    /// Loads and validates a config file; paths inside are relative to its directory, and
    /// every model and prompt file must exist and be well formed.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = read_text(path, "model config")?;
        let base = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let origin = path.display().to_string();
        let mut cfg = Self::parse_str(&text, base, &origin, &file_stem(path))?;
        cfg.source = Some(std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()));
        Ok(cfg)
    }

    /// Parses a config held in memory; relative paths are resolved against `base_dir`.
    pub fn from_toml_str(s: &str, base_dir: impl AsRef<Path>) -> Result<Self, ConfigError> {
        Self::parse_str(s, base_dir.as_ref(), "model config", "promptseg")
    }

    /// Label of each class id (ids without a class are empty).
    pub fn labels(&self) -> Vec<String> {
        let n = self.classes.iter().map(|c| c.id as usize + 1).max().unwrap_or(0);
        let mut labels = vec![String::new(); n];
        for c in &self.classes {
            labels[c.id as usize] = c.label.clone();
        }
        labels
    }

    fn parse_str(s: &str, base: &Path, origin: &str, stem: &str) -> Result<Self, ConfigError> {
        let raw: RawPromptSeg = toml::from_str(s).map_err(|e| ConfigError::Syntax {
            origin: origin.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            origin: origin.to_string(),
            message,
        };
        let m = raw.model.unwrap_or_default();
        let name = non_empty(origin, "[model] name", m.name)?.unwrap_or_else(|| stem.to_string());
        let max_batch = int_in(origin, "[model] max-batch", m.max_batch, 16, 1, MAX_BATCH_LIMIT)?;
        let (preprocess, input_name) = parse_input(origin, raw.input)?;
        let encoder = model_file(origin, base, "[encoder]", raw.encoder.onnx, raw.encoder.engine)?;
        let d = raw.decoder;
        let decoder = model_file(origin, base, "[decoder]", d.onnx, d.engine)?;
        let backend = backend_for(origin, "[model]", &encoder, m.backend.clone())?;
        backend_for(origin, "[model]", &decoder, m.backend)?;
        if std::mem::discriminant(&encoder) != std::mem::discriminant(&decoder) {
            return Err(invalid(
                "[encoder] and [decoder] must both be ONNX models or both TensorRT engines".into(),
            ));
        }
        let mut features = Vec::new();
        for (input, output) in d.features.unwrap_or_default() {
            let Some(output) = output.as_str().filter(|o| !o.trim().is_empty()) else {
                return Err(invalid(format!(
                    "[decoder.features] {input} must name an encoder output (a string), got {output}"
                )));
            };
            features.push((input, output.to_string()));
        }
        let prompt_features = non_empty(origin, "[decoder] prompt-features", d.prompt_features)?
            .unwrap_or_else(|| "prompt_features".into());
        let prompt_mask = non_empty(origin, "[decoder] prompt-mask", d.prompt_mask)?;

        let o = raw.output.unwrap_or_default();
        let name_or = |key: &str, v: Option<String>, default: &str| -> Result<String, ConfigError> {
            Ok(non_empty(origin, &format!("[output] {key}"), v)?.unwrap_or_else(|| default.to_string()))
        };
        let outputs = DecoderOutputs {
            boxes: name_or("boxes", o.boxes, "pred_boxes")?,
            logits: name_or("logits", o.logits, "pred_logits")?,
            presence: non_empty(origin, "[output] presence", o.presence)?,
            masks: name_or("masks", o.masks, "pred_masks")?,
        };
        let box_format = match o.box_format.as_deref() {
            None | Some("cxcywh") => BoxFormat::CxCyWh,
            Some("xyxy") => BoxFormat::XyXy,
            Some(other) => {
                return Err(invalid(format!(
                    "unknown [output] box-format '{other}': expected cxcywh or xyxy"
                )))
            }
        };
        let score_threshold = float_in(
            origin,
            "[output] score-threshold",
            o.score_threshold,
            0.5,
            0.0,
            1.0,
        )?;
        let mask_threshold = float_in(origin, "[output] mask-threshold", o.mask_threshold, 0.5, 0.0, 1.0)?;
        let top_k = int_in(origin, "[output] top-k", o.top_k, 100, 0, 100_000)?;

        let raw_classes = raw.classes.unwrap_or_default();
        if raw_classes.is_empty() {
            return Err(invalid(
                "a prompt-segmentation config needs at least one [[classes]] entry (name, features)".into(),
            ));
        }
        if raw_classes.len() > MAX_CLASSES {
            return Err(invalid(format!("at most {MAX_CLASSES} [[classes]] are accepted")));
        }
        let mut classes: Vec<PromptClass> = Vec::with_capacity(raw_classes.len());
        for (i, c) in raw_classes.into_iter().enumerate() {
            let what = format!("[[classes]] #{} ('{}')", i + 1, c.name);
            let label = non_empty(origin, &format!("{what} name"), Some(c.name.clone()))?.unwrap_or_default();
            let id = int_in(origin, &format!("{what} id"), c.id, i, 0, u32::MAX as usize)? as u32;
            if let Some(prev) = classes.iter().find(|p| p.id == id) {
                return Err(invalid(format!(
                    "{what}: class id {id} is already used by '{}'",
                    prev.label
                )));
            }
            let features_path = resolve(base, &c.features);
            let mask_path = c.mask.as_deref().map(|m| resolve(base, m));
            let prompt = load_prompt(origin, &what, &features_path, mask_path.as_deref())?;
            if let Some(first) = classes.first() {
                if first.prompt.dim != prompt.dim {
                    return Err(invalid(format!(
                        "{what}: prompt {} has {} features per token, '{}' has {}: every class must come from the same text encoder",
                        features_path.display(),
                        prompt.dim,
                        first.label,
                        first.prompt.dim
                    )));
                }
            }
            classes.push(PromptClass {
                id,
                label,
                prompt,
                features_path,
            });
        }
        Ok(PromptSegConfig {
            name,
            max_batch,
            backend,
            input_name,
            preprocess,
            encoder,
            decoder,
            features,
            prompt_features,
            prompt_mask,
            outputs,
            box_format,
            score_threshold,
            mask_threshold,
            top_k,
            classes,
            source: None,
        })
    }
}

/// Reads a class prompt: features `[1, P, D]` or `[P, D]`, mask `[1, P]` or `[P]`.
fn load_prompt(
    origin: &str,
    what: &str,
    features: &Path,
    mask: Option<&Path>,
) -> Result<Prompt, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        origin: origin.to_string(),
        message,
    };
    let read = |p: &Path, kind: &'static str| {
        if !p.is_file() {
            return Err(ConfigError::MissingFile {
                origin: origin.to_string(),
                what: kind,
                path: p.display().to_string(),
            });
        }
        super::npy::read(p).map_err(|e| invalid(format!("{what}: {kind} file {}: {e}", p.display())))
    };
    let f = read(features, "prompt features")?;
    let (tokens, dim) = match f.shape.as_slice() {
        [1, p, d] | [p, d] if *p > 0 && *d > 0 => (*p, *d),
        other => {
            return Err(invalid(format!(
                "{what}: prompt features {} have shape {other:?}, expected [1, P, D] (tokens x features)",
                features.display()
            )))
        }
    };
    let mask = match mask {
        None => vec![1.0; tokens],
        Some(mp) => {
            let m = read(mp, "prompt mask")?;
            match m.shape.as_slice() {
                [1, p] | [p] if *p == tokens => {}
                other => {
                    return Err(invalid(format!(
                        "{what}: prompt mask {} has shape {other:?}, expected [1, {tokens}] to match the {tokens} tokens of {}",
                        mp.display(),
                        features.display()
                    )))
                }
            }
            m.values
                .iter()
                .map(|&v| if v != 0.0 { 1.0 } else { 0.0 })
                .collect()
        }
    };
    if !mask.contains(&1.0) {
        return Err(invalid(format!(
            "{what}: the prompt mask marks no token as valid"
        )));
    }
    Ok(Prompt {
        tokens,
        dim,
        features: f.values,
        mask,
    })
}
