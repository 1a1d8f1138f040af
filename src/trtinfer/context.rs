//! The inference context: model config, backend and parser for one trtinfer element,
//! independent of GStreamer so it can be tested and benchmarked alone.

use crate::backend::{self, BackendKind, BackendOptions, InferenceBackend, InputRef};
use crate::batch::{Batch, BatchOutputs, MaskTensor};
use crate::config::{ModelConfig, ModelFile};
use crate::parsers::{self, ParseParams, ParseScratch, ParserKind};
use crate::results::Detection;
use crate::tensor::{PooledBytes, Tensor};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// What the element's properties say; `None` = take it from the model config.
#[derive(Debug, Clone, Default)]
pub struct InferSettings {
    /// ONNX file, engine file or model config TOML.
    pub model: Option<PathBuf>,
    pub model_name: Option<String>,
    pub labels: Option<PathBuf>,
    pub parser: Option<ParserKind>,
    pub backend: Option<BackendKind>,
    pub conf_threshold: Option<f32>,
    pub nms_iou: Option<f32>,
    pub max_batch: Option<usize>,
    pub interval: u32,
    pub device_id: i32,
    pub fp16: bool,
    pub engine_cache_dir: Option<PathBuf>,
    pub threads: usize,
    /// Call order of prompt-segmentation configs (ignored by single models).
    pub route: super::promptseg::Route,
}

/// Results of the last inferred batch, per source, reused while `interval` skips batches.
#[derive(Default)]
struct Reuse {
    detections: HashMap<u32, Vec<Detection>>,
    /// Mask tensors of the last inference and the source of each of their rows.
    masks: Option<(MaskTensor, Vec<u32>, Vec<crate::geometry::LetterboxTransform>)>,
}

/// A loaded model ready to run batches.
pub struct InferContext {
    pub config: ModelConfig,
    pub model: Arc<str>,
    pub parser: ParserKind,
    params: ParseParams,
    backend: Box<dyn InferenceBackend>,
    input_name: String,
    interval: u32,
    batches: u64,
    scratch: ParseScratch,
    reuse: Reuse,
}

/// A failure with a sentence for the user.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Backend(#[from] backend::BackendError),
    #[error("the outputs of model '{model}' do not match the '{parser}' parser: {reason}")]
    Parse {
        model: String,
        parser: &'static str,
        reason: String,
    },
    #[error("no input tensor was prepared for model '{0}': put trtpreprocess (config-file or model-name={0}) before trtinfer")]
    NoInput(String),
}

fn parser_name(p: ParserKind) -> &'static str {
    match p {
        ParserKind::Yolo => "yolo",
        ParserKind::YoloSeg => "yolo-seg",
        ParserKind::Detr => "detr",
        ParserKind::Raw => "raw",
    }
}

impl InferContext {
    /// Loads the model config, opens the backend and checks that model, config and parser
    /// agree.
    pub fn open(s: &InferSettings) -> Result<Self, InferError> {
        let path = s
            .model
            .clone()
            .ok_or_else(|| InferError::Config("the 'model' property is not set".into()))?;
        let is_toml = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("toml"));
        let mut config = if is_toml {
            ModelConfig::from_file(&path)
        } else {
            ModelConfig::for_onnx(&path)
        }
        .map_err(|e| InferError::Config(e.to_string()))?;
        if let Some(n) = &s.model_name {
            config.name = n.clone();
        }
        if let Some(l) = &s.labels {
            config.labels = crate::config::load_labels(l).map_err(|e| InferError::Config(e.to_string()))?;
        }
        if let Some(v) = s.conf_threshold {
            config.conf_threshold = v;
        }
        if let Some(v) = s.nms_iou {
            config.nms_iou = v;
        }
        if let Some(v) = s.max_batch {
            config.max_batch = v;
        }
        let parser = s.parser.or(config.parser).ok_or_else(|| {
            InferError::Config(format!(
                "no output parser for {}: set the 'parser' property (yolo, yolo-seg, detr, raw) or use a model config TOML",
                path.display()
            ))
        })?;
        let kind = s.backend.or(config.backend).unwrap_or_default();
        if matches!(config.model, ModelFile::Engine(_)) && kind != BackendKind::TensorRt {
            return Err(InferError::Config(format!(
                "{} is a TensorRT engine: use backend=tensorrt",
                config.model_path().display()
            )));
        }
        let backend = backend::open(&BackendOptions {
            kind,
            model_path: config.model_path().to_path_buf(),
            max_batch: config.max_batch,
            device_id: s.device_id,
            fp16: s.fp16,
            engine_cache_dir: s.engine_cache_dir.clone(),
            threads: s.threads,
            outputs_on_device: false,
        })?;

        // The model must take the tensor trtpreprocess makes: [B, 3, H, W] of its dtype.
        let inputs = backend.inputs();
        let input = match &config.input_name {
            Some(n) => inputs.iter().find(|i| &i.name == n).ok_or_else(|| {
                InferError::Config(format!(
                    "model {} has no input named '{n}' (it has: {})",
                    config.model_path().display(),
                    inputs.iter().map(|i| i.describe()).collect::<Vec<_>>().join(", ")
                ))
            })?,
            None => inputs
                .first()
                .ok_or_else(|| InferError::Config("the model has no inputs".into()))?,
        };
        config
            .preprocess
            .check_model_input(input)
            .map_err(|e| InferError::Config(format!("model {e}; fix [input] in the model config")))?;
        let input_name = input.name.clone();
        let mut params = config.parse_params();
        params.model = Arc::from(config.name.as_str());
        Ok(Self {
            model: params.model.clone(),
            parser,
            params,
            backend,
            input_name,
            interval: s.interval,
            batches: 0,
            scratch: ParseScratch::default(),
            reuse: Reuse::default(),
            config,
        })
    }

    /// Name of the backend in use.
    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    /// Runs (or, between `interval` batches, reuses) inference for one batch and attaches
    /// the results to its slots.
    pub fn process(&mut self, batch: &mut Batch) -> Result<(), InferError> {
        let run = self.interval == 0 || self.batches.is_multiple_of(self.interval as u64 + 1);
        self.batches += 1;
        if run {
            self.infer(batch)
        } else {
            self.attach_reused(batch);
            Ok(())
        }
    }

    fn infer(&mut self, batch: &mut Batch) -> Result<(), InferError> {
        let Some(input) = batch.input_for(&self.model) else {
            return Err(InferError::NoInput(self.model.to_string()));
        };
        let rows = input.tensor.shape.first().copied().unwrap_or(0);
        if rows > self.config.max_batch {
            return Err(backend::BackendError::BatchTooLarge {
                got: rows,
                max: self.config.max_batch,
            }
            .into());
        }
        // A tensor written by the CUDA preprocessing is ready once its event fired: the one
        // host wait per batch.
        #[cfg(feature = "cuda")]
        if let Some(lease) = crate::cuda::device_lease(&input.tensor) {
            lease
                .wait()
                .map_err(|e| backend::BackendError::Runtime(format!("waiting for the input tensor: {e}")))?;
        }
        if input.tensor.host_bytes().is_none() && self.backend.name() == BackendKind::OnnxRuntimeCpu.name() {
            return Err(InferError::Config(format!(
                "the input tensor of model '{}' is in GPU memory but the backend is onnxruntime-cpu: use a GPU backend (backend=onnxruntime-cuda or tensorrt) or set device=cpu on trtpreprocess",
                self.model
            )));
        }
        let outputs = self.backend.infer(&[InputRef {
            name: &self.input_name,
            tensor: &input.tensor,
        }])?;
        let slots = input.slots.clone();
        let transforms = input.transforms.clone();
        let parse_err = |reason: String| InferError::Parse {
            model: self.model.to_string(),
            parser: parser_name(self.parser),
            reason,
        };
        let detections = if self.parser == ParserKind::Raw {
            vec![Vec::new(); rows]
        } else {
            parsers::parse_with(
                &mut self.scratch,
                self.parser,
                &self.params,
                &outputs,
                &transforms,
            )
            .map_err(|e| parse_err(e.to_string()))?
        };

        self.reuse.detections.clear();
        for (row, dets) in detections.into_iter().enumerate() {
            let Some(&slot_idx) = slots.get(row) else { continue };
            let slot = &mut batch.slots[slot_idx];
            if self.interval > 0 {
                self.reuse.detections.insert(slot.pad_index(), dets.clone());
            }
            slot.results.detections.extend(dets);
            if self.parser == ParserKind::Raw {
                for t in &outputs {
                    if let Some(r) = tensor_row(t, row) {
                        slot.results.tensors.push((self.model.clone(), r));
                    }
                }
            }
        }

        let masks = self.mask_tensor(&outputs);
        self.reuse.masks = None;
        if let Some(masks) = masks {
            if self.interval > 0 {
                let pads = slots.iter().map(|&i| batch.slots[i].pad_index()).collect();
                self.reuse.masks = Some((masks.clone(), pads, transforms.clone()));
            }
            batch.outputs.push(BatchOutputs {
                model: self.model.clone(),
                masks,
                slots: slots.into_iter().map(Some).collect(),
                transforms,
            });
        }
        Ok(())
    }

    fn mask_tensor(&self, outputs: &[Tensor]) -> Option<MaskTensor> {
        let names = &self.params.tensor_names;
        match self.parser {
            ParserKind::YoloSeg => outputs
                .iter()
                .find(|t| t.name == names.protos_name())
                .map(|t| MaskTensor::Prototypes(t.clone())),
            ParserKind::Detr => outputs
                .iter()
                .find(|t| t.name == names.masks_name())
                .map(|t| MaskTensor::Dense(t.clone())),
            _ => None,
        }
    }

    fn attach_reused(&self, batch: &mut Batch) {
        for slot in batch.slots.iter_mut() {
            if let Some(d) = self.reuse.detections.get(&slot.pad_index()) {
                slot.results.detections.extend(d.iter().cloned());
            }
        }
        if let Some((masks, pads, transforms)) = &self.reuse.masks {
            let slots = pads
                .iter()
                .map(|p| batch.slots.iter().position(|s| s.pad_index() == *p))
                .collect();
            batch.outputs.push(BatchOutputs {
                model: self.model.clone(),
                masks: masks.clone(),
                slots,
                transforms: transforms.clone(),
            });
        }
    }
}

/// Row `row` of a host tensor (dimension 0), copied.
fn tensor_row(t: &Tensor, row: usize) -> Option<Tensor> {
    let bytes = t.host_bytes()?;
    let rows = *t.shape.first()?;
    if row >= rows || rows == 0 {
        return None;
    }
    let len = bytes.len() / rows;
    let mut shape = t.shape.clone();
    shape[0] = 1;
    Some(Tensor::host(
        t.name.clone(),
        t.dtype,
        shape,
        PooledBytes::detached(bytes[row * len..(row + 1) * len].to_vec()),
    ))
}
