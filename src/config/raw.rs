//! The TOML file as written (serde structs, unknown keys rejected) and the checked readers
//! of its values: every problem a [`ConfigError`] naming the file and the key.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{ConfigError, MAX_FILE_BYTES};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawConfig {
    pub(crate) model: RawModel,
    pub(crate) input: RawInput,
    pub(crate) output: RawOutput,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawModel {
    pub(crate) name: Option<String>,
    pub(crate) onnx: Option<String>,
    pub(crate) engine: Option<String>,
    pub(crate) labels: Option<String>,
    pub(crate) max_batch: Option<i64>,
    pub(crate) backend: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawInput {
    pub(crate) name: Option<String>,
    pub(crate) width: i64,
    pub(crate) height: i64,
    pub(crate) dtype: Option<String>,
    pub(crate) resize: Option<String>,
    pub(crate) pad_value: Option<i64>,
    pub(crate) color: Option<String>,
    pub(crate) scale: Option<f64>,
    pub(crate) mean: Option<Vec<f64>>,
    pub(crate) std: Option<Vec<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawOutput {
    pub(crate) parser: String,
    pub(crate) conf_threshold: Option<f64>,
    pub(crate) nms_iou: Option<f64>,
    pub(crate) max_detections: Option<i64>,
    pub(crate) boxes: Option<String>,
    pub(crate) protos: Option<String>,
    pub(crate) logits: Option<String>,
    pub(crate) masks: Option<String>,
    pub(crate) detr_sigmoid: Option<bool>,
    pub(crate) dense: Option<String>,
    pub(crate) keypoints: Option<String>,
    pub(crate) attributes: Option<String>,
    pub(crate) keypoint_names: Option<Vec<String>>,
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

pub(crate) fn triple(
    origin: &str,
    key: &str,
    v: Option<Vec<f64>>,
    default: f32,
) -> Result<[f32; 3], ConfigError> {
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
