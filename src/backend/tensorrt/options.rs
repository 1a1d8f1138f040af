//! TensorRT-specific options.
//!
//! [`BackendOptions`] carries what every backend shares (model, max batch, device, fp16,
//! engine cache directory). The rest comes from a `key=value` list, separated by `,` or `;`,
//! read from the environment variable [`OPTIONS_ENV`] by [`super::TrtBackend::open`] (or
//! given directly to [`super::TrtBackend::open_with`]):
//!
//! | key                       | values                          | default                 |
//! |---------------------------|---------------------------------|-------------------------|
//! | `precision`               | `fp32`, `fp16`, `int8`          | `fp16` if `fp16` is set, else `fp32` |
//! | `workspace-mb`            | MiB for `kWORKSPACE`, 0 = TensorRT default | 0            |
//! | `int8-calibration-cache`  | path of a calibration cache (TensorRT 10) | none          |
//! | `cuda-graph`              | `true`/`false`                  | trtinfer's `cuda-graph` |
//! | `warmup`                  | warm-up runs at open            | 1                       |
//! | `rebuild`                 | `true`: ignore a cached engine  | `false`                 |
//!
//! Example: `GST_TRTVISION_TENSORRT="precision=int8,int8-calibration-cache=/models/yolo.calib,workspace-mb=2048"`.

use std::path::PathBuf;

use crate::backend::{BackendError, BackendOptions};

/// Environment variable holding extra TensorRT options (see the module documentation).
pub const OPTIONS_ENV: &str = "GST_TRTVISION_TENSORRT";

/// Precision of an engine built from ONNX.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// FP32 (TF32 where TensorRT chooses it).
    #[default]
    Fp32,
    /// FP16. TensorRT 10: builder flag; TensorRT 11: needs an FP16 ONNX
    /// (`engines/convert_fp16.py`).
    Fp16,
    /// INT8. TensorRT 10: calibration cache or Q/DQ model; TensorRT 11: Q/DQ model only.
    Int8,
}

impl Precision {
    /// Parses `fp32`/`f32`/`float32`, `fp16`/`f16`/`half`, `int8`/`i8`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "fp32" | "f32" | "float32" | "float" => Precision::Fp32,
            "fp16" | "f16" | "float16" | "half" => Precision::Fp16,
            "int8" | "i8" => Precision::Int8,
            _ => return None,
        })
    }

    /// Name used in cache keys and messages.
    pub const fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Fp16 => "fp16",
            Precision::Int8 => "int8",
        }
    }

    /// Value of `enum trts_precision` in the shim.
    pub(crate) const fn to_ffi(self) -> i32 {
        match self {
            Precision::Fp32 => 0,
            Precision::Fp16 => 1,
            Precision::Int8 => 2,
        }
    }
}

/// Options of the native TensorRT backend beyond [`BackendOptions`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrtOptions {
    /// Precision of engines built from ONNX (ignored for prebuilt engines).
    pub precision: Precision,
    /// Builder workspace limit in bytes (`MemoryPoolType::kWORKSPACE`); 0 = TensorRT default.
    pub workspace_bytes: u64,
    /// INT8 calibration cache replayed during the build (TensorRT 10 only).
    pub int8_calibration_cache: Option<PathBuf>,
    /// Capture the inference of each (batch, buffer set) into a CUDA graph and replay it.
    pub cuda_graph: bool,
    /// Inference runs at full batch during open, so the first real batch is not slow.
    pub warmup_runs: u32,
    /// Build a new engine even when the cache holds one with the same key.
    pub rebuild: bool,
}

impl Default for TrtOptions {
    fn default() -> Self {
        TrtOptions {
            precision: Precision::Fp32,
            workspace_bytes: 0,
            int8_calibration_cache: None,
            cuda_graph: false,
            warmup_runs: 1,
            rebuild: false,
        }
    }
}

impl TrtOptions {
    /// Defaults derived from the shared options (`fp16` selects [`Precision::Fp16`],
    /// `cuda_graph` turns graphs on).
    pub fn from_backend_options(opts: &BackendOptions) -> Self {
        TrtOptions {
            precision: if opts.fp16 {
                Precision::Fp16
            } else {
                Precision::Fp32
            },
            cuda_graph: opts.cuda_graph,
            ..TrtOptions::default()
        }
    }

    /// Applies a `key=value[,key=value...]` list (`;` also separates). Unknown keys and bad
    /// values are errors, so that a typo does not silently build the wrong engine.
    pub fn apply(&mut self, list: &str) -> Result<(), String> {
        for item in list.split([',', ';']).map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) = item
                .split_once('=')
                .map(|(k, v)| (k.trim(), v.trim()))
                .ok_or_else(|| format!("'{item}' is not key=value"))?;
            let key_norm = key.to_ascii_lowercase().replace('_', "-");
            match key_norm.as_str() {
                "precision" => {
                    self.precision = Precision::parse(value)
                        .ok_or_else(|| format!("precision '{value}' is not one of fp32, fp16, int8"))?;
                }
                "workspace-mb" | "workspace" => {
                    let mb: u64 = value
                        .parse()
                        .map_err(|_| format!("workspace-mb '{value}' is not a whole number of MiB"))?;
                    self.workspace_bytes = mb
                        .checked_mul(1 << 20)
                        .ok_or_else(|| format!("workspace-mb '{value}' is too large"))?;
                }
                "int8-calibration-cache" | "calibration-cache" | "calib" => {
                    self.int8_calibration_cache = (!value.is_empty()).then(|| PathBuf::from(value));
                }
                "cuda-graph" | "cuda-graphs" => self.cuda_graph = parse_bool(key, value)?,
                "rebuild" => self.rebuild = parse_bool(key, value)?,
                "warmup" | "warmup-runs" => {
                    self.warmup_runs = value
                        .parse()
                        .map_err(|_| format!("warmup '{value}' is not a whole number"))?;
                }
                _ => {
                    return Err(format!(
                        "unknown option '{key}' (known: precision, workspace-mb, int8-calibration-cache, \
                         cuda-graph, warmup, rebuild)"
                    ))
                }
            }
        }
        Ok(())
    }

    /// Options for `opts` with the list from [`OPTIONS_ENV`] (`env`) applied on top.
    pub fn resolve(opts: &BackendOptions, env: Option<&str>) -> Result<Self, BackendError> {
        let mut o = Self::from_backend_options(opts);
        if let Some(list) = env {
            o.apply(list).map_err(|e| BackendError::Unavailable {
                backend: "tensorrt".into(),
                reason: format!("invalid {OPTIONS_ENV}=\"{list}\": {e}"),
            })?;
        }
        Ok(o)
    }
}

fn parse_bool(key: &str, value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("{key} '{value}' is not true/false")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_backend_options() {
        let mut b = BackendOptions::default();
        assert_eq!(TrtOptions::from_backend_options(&b).precision, Precision::Fp32);
        b.fp16 = true;
        let o = TrtOptions::from_backend_options(&b);
        assert_eq!(o.precision, Precision::Fp16);
        assert_eq!(o.warmup_runs, 1);
        assert!(!o.cuda_graph);
        assert_eq!(TrtOptions::resolve(&b, None).unwrap(), o);
        b.cuda_graph = true;
        assert!(TrtOptions::from_backend_options(&b).cuda_graph);
        assert!(
            !TrtOptions::resolve(&b, Some("cuda-graph=false"))
                .unwrap()
                .cuda_graph
        );
    }

    #[test]
    fn parses_list() {
        let mut o = TrtOptions::default();
        o.apply(" precision=INT8 ; workspace_mb=2048, int8-calibration-cache=/m/y.calib,cuda-graph=on,warmup=3,rebuild=1,")
            .unwrap();
        assert_eq!(o.precision, Precision::Int8);
        assert_eq!(o.workspace_bytes, 2048 << 20);
        assert_eq!(o.int8_calibration_cache, Some(PathBuf::from("/m/y.calib")));
        assert!(o.cuda_graph && o.rebuild);
        assert_eq!(o.warmup_runs, 3);
        o.apply("").unwrap();
        assert_eq!(o.precision, Precision::Int8);
    }

    #[test]
    fn rejects_bad_input() {
        let mut o = TrtOptions::default();
        assert!(o.apply("precision=fp8").unwrap_err().contains("fp32, fp16, int8"));
        assert!(o.apply("workspace-mb=lots").is_err());
        assert!(o.apply("cuda-graph=maybe").is_err());
        assert!(o.apply("fast").unwrap_err().contains("key=value"));
        assert!(o.apply("turbo=1").unwrap_err().contains("unknown option 'turbo'"));
        let err = TrtOptions::resolve(&BackendOptions::default(), Some("turbo=1")).unwrap_err();
        assert!(matches!(err, BackendError::Unavailable { .. }));
        assert!(err.to_string().contains(OPTIONS_ENV));
    }

    #[test]
    fn precision_names_roundtrip() {
        for p in [Precision::Fp32, Precision::Fp16, Precision::Int8] {
            assert_eq!(Precision::parse(p.name()), Some(p));
        }
        assert_eq!(Precision::parse("half"), Some(Precision::Fp16));
    }
}
