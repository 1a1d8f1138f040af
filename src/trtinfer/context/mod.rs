//! The inference context: model config, backend and parser for one trtinfer element,
//! independent of GStreamer so it can be tested and benchmarked alone.

use crate::backend::{self, BackendKind, BackendOptions, InferenceBackend, InputRef};
use crate::batch::{Batch, BatchOutputs, MaskTensor};
use crate::config::{ModelConfig, ModelFile};
use crate::parsers::{self, ParseParams, ParserKind};
use crate::results::{DenseMap, Detection};
use crate::tensor::{PooledBytes, Tensor};
use gst::glib;

pub use super::objects::{CropStage, ObjectFilter};
use crate::video::FrameReader;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};

mod crops;
mod settings;

pub use settings::{InferSettings, OperateOn};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "trtinfer",
        gst::DebugColorFlags::empty(),
        Some("trtvision inference"),
    )
});

/// Results of the last inferred batch, per source, reused while `interval` skips batches.
#[derive(Default)]
struct Reuse {
    detections: HashMap<u32, Vec<Detection>>,
    /// Dense maps of the last inference, per source.
    dense: HashMap<u32, DenseMap>,
    /// Mask tensors of the last inference (one per chunk of `max-batch` rows) and the
    /// source of each of their rows.
    masks: Vec<(MaskTensor, Vec<u32>, Vec<crate::geometry::LetterboxTransform>)>,
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
    keep_input: bool,
    batches: u64,
    reuse: Reuse,
    /// Turns the backend's outputs into results, on the GPU where they stayed there.
    decoder: crate::ops::decode::OutputDecoder,
    /// Host copies of the rows of a chunk when a batch is larger than `max-batch`.
    chunk_pool: crate::tensor::HostTensorPool,
    /// Bytes of inference results copied device → host since start.
    pub d2h_bytes: u64,
    /// Object mode (`operate-on=objects`).
    crops: Option<CropStage>,
}

/// Whether outputs stay on the device: GPU backends whose parser decodes there
/// ([`crate::ops::decode::decodes_on_device`]).
fn device_outputs(kind: BackendKind, parser: ParserKind) -> bool {
    matches!(
        kind,
        BackendKind::OnnxRuntimeCuda | BackendKind::OnnxRuntimeTensorRt | BackendKind::TensorRt
    ) && crate::ops::decode::decodes_on_device(parser)
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
    #[error("the input tensor of model '{0}' went back to trtpreprocess's pool when an earlier trtinfer of the same model ran: set keep-input=true on that element to run the model twice on one input")]
    InputReleased(String),
    #[error("operate-on-model '{wanted}' has not run on this batch before model '{model}' (models that ran: {ran}): put the trtinfer element with model-name={wanted} upstream, or fix operate-on-model")]
    NoPrimary {
        wanted: String,
        model: String,
        ran: String,
    },
    #[error("could not read frame {frame} of source {pad} for the object crops: {reason}")]
    Frame { frame: u64, pad: u32, reason: String },
}

impl InferContext {
    /// Loads the model config, opens the backend and checks that model, config and parser
    /// agree.
    pub fn open(s: &InferSettings) -> Result<Self, InferError> {
        if let Some((_, why)) = s.invalid.first() {
            return Err(InferError::Config(why.clone()));
        }
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
                "no output parser for {}: set the 'parser' property ({}) or use a model config TOML",
                path.display(),
                parsers::PARSER_NAMES
            ))
        })?;
        let on_objects = s.operate_on == OperateOn::Objects;
        if on_objects != (parser == ParserKind::Landmarks) {
            return Err(InferError::Config(if on_objects {
                format!(
                    "operate-on=objects runs a secondary model on object crops; its outputs need the landmarks parser, not '{}'",
                    parser.name()
                )
            } else {
                "the landmarks parser reads the outputs of a model run on object crops: set operate-on=objects (and operate-on-model to the detector's model-name)".to_string()
            }));
        }
        if on_objects && s.interval > 0 {
            return Err(InferError::Config(
                "interval is not supported with operate-on=objects: objects change from batch to batch"
                    .into(),
            ));
        }
        if on_objects && s.objects.model.as_deref() == Some(config.name.as_str()) {
            return Err(InferError::Config(format!(
                "operate-on-model names this element's own model '{}': name the model whose detections are cropped",
                config.name
            )));
        }
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
            outputs_on_device: device_outputs(kind, parser),
            exact_arena: false,
            fixed_batch: s.fixed_batch,
            cuda_graph: s.cuda_graph,
            cuda_provider: s.cuda_provider,
            output_pool_size: s.output_pool_size,
            pool_timeout: s.pool_timeout,
            log_target: s.log_target.clone(),
            pools: s.pools.clone(),
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
        let crops = on_objects.then(|| CropStage::new(s.objects.clone(), config.preprocess));
        Ok(Self {
            crops,
            model: params.model.clone(),
            parser,
            params,
            backend,
            input_name,
            interval: s.interval,
            keep_input: s.keep_input,
            batches: 0,
            reuse: Reuse::default(),
            decoder: crate::ops::decode::OutputDecoder::new(parser, s.device_id, s.download_dense),
            chunk_pool: Default::default(),
            d2h_bytes: 0,
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
        if self.crops.is_some() {
            self.infer_objects(batch)?;
        } else if run {
            self.infer(batch)?;
        } else {
            self.attach_reused(batch);
        }
        if !self.keep_input {
            batch.release_input(&self.model);
        }
        batch.models.push(self.model.clone());
        Ok(())
    }

    /// The CUDA context object crops on CUDA frames run in (the element's); `enabled` =
    /// false keeps crops on the CPU.
    #[cfg(feature = "cuda")]
    pub fn set_cuda_context(&mut self, ctx: Option<crate::cuda::CudaContext>, enabled: bool) {
        if let Some(stage) = self.crops.as_mut() {
            stage.gpu.ctx = ctx;
            stage.gpu.disabled = !enabled;
        }
    }

    /// What the backend could not do as asked and worked around (see
    /// [`InferenceBackend::take_warning`]), once.
    pub fn take_backend_warning(&mut self) -> Option<String> {
        self.backend.take_warning()
    }

    /// Why object crops gave up the GPU, once, after a CUDA failure (the element logs it).
    #[cfg(feature = "cuda")]
    pub fn take_gpu_crops_failure(&mut self) -> Option<String> {
        self.crops.as_mut().and_then(|s| s.gpu.failure.take())
    }

    fn infer(&mut self, batch: &mut Batch) -> Result<(), InferError> {
        let Some(input) = batch.input_for(&self.model) else {
            return Err(if batch.models.contains(&self.model) {
                InferError::InputReleased(self.model.to_string())
            } else {
                InferError::NoInput(self.model.to_string())
            });
        };
        let rows = input.tensor.shape.first().copied().unwrap_or(0);
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
        let (tensor, slots, transforms) = (
            input.tensor.clone(),
            input.slots.clone(),
            input.transforms.clone(),
        );
        if slots.len() != rows || transforms.len() != rows {
            return Err(InferError::Config(format!(
                "the input tensor of model '{}' has {rows} rows for {} slots and {} transforms",
                self.model,
                slots.len(),
                transforms.len()
            )));
        }
        self.reuse.detections.clear();
        self.reuse.dense.clear();
        self.reuse.masks.clear();
        // Batches larger than max-batch run in chunks of at most max-batch rows, as object
        // crops do; the output pools hold a whole batch's chunks.
        self.backend
            .hold_chunks(rows.div_ceil(self.config.max_batch.max(1)));
        for range in chunks(rows, self.config.max_batch) {
            let part = if range.len() == rows {
                tensor.clone()
            } else {
                tensor.rows(range.clone(), &self.chunk_pool).ok_or_else(|| {
                    InferError::Config(format!(
                        "rows {range:?} of the input tensor of model '{}' are out of its shape {:?}",
                        self.model, tensor.shape
                    ))
                })?
            };
            gst::trace!(
                CAT,
                "batch {}: rows {range:?} of {rows} into {}",
                batch.batch_number,
                self.backend.name()
            );
            self.infer_rows(
                batch,
                &part,
                slots[range.clone()].to_vec(),
                transforms[range].to_vec(),
            )?;
        }
        Ok(())
    }

    /// Infers one chunk of the batch tensor (row `i` belongs to slot `slots[i]`) and attaches
    /// its results.
    fn infer_rows(
        &mut self,
        batch: &mut Batch,
        tensor: &Tensor,
        slots: Vec<usize>,
        transforms: Vec<crate::geometry::LetterboxTransform>,
    ) -> Result<(), InferError> {
        let outputs = self.backend.infer(&[InputRef {
            name: &self.input_name,
            tensor,
        }])?;
        gst::trace!(CAT, "batch {}: inference done", batch.batch_number);
        let (model, parser) = (self.model.clone(), self.parser);
        let parse_err = move |reason: String| InferError::Parse {
            model: model.to_string(),
            parser: parser.name(),
            reason,
        };
        let crate::ops::decode::Decoded {
            detections,
            dense,
            masks,
            d2h_bytes,
        } = self
            .decoder
            .decode(&self.params, &outputs, &transforms)
            .map_err(parse_err)?;
        self.d2h_bytes += d2h_bytes;
        gst::trace!(
            CAT,
            "batch {}: outputs decoded, {d2h_bytes} bytes to the host",
            batch.batch_number
        );

        for (row, dets) in detections.into_iter().enumerate() {
            let Some(&slot_idx) = slots.get(row) else { continue };
            let slot = &mut batch.slots[slot_idx];
            if let Some(map) = dense.get(row) {
                if self.interval > 0 {
                    self.reuse.dense.insert(slot.pad_index(), map.clone());
                }
                slot.results.dense.push(map.clone());
            }
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

        if let Some(masks) = masks {
            if self.interval > 0 {
                let pads = slots.iter().map(|&i| batch.slots[i].pad_index()).collect();
                self.reuse.masks.push((masks.clone(), pads, transforms.clone()));
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

    fn attach_reused(&self, batch: &mut Batch) {
        for slot in batch.slots.iter_mut() {
            if let Some(d) = self.reuse.detections.get(&slot.pad_index()) {
                slot.results.detections.extend(d.iter().cloned());
            }
            if let Some(map) = self.reuse.dense.get(&slot.pad_index()) {
                slot.results.dense.push(map.clone());
            }
        }
        for (masks, pads, transforms) in &self.reuse.masks {
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

/// Consecutive row ranges covering `0..rows`, each of at most `max` rows (at least one).
fn chunks(rows: usize, max: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let max = max.max(1);
    (0..rows)
        .step_by(max)
        .map(move |start| start..(start + max).min(rows))
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

#[cfg(test)]
mod chunk_tests {
    use super::chunks;

    #[test]
    fn chunks_cover_the_rows_in_max_sized_ranges() {
        assert_eq!(chunks(24, 16).collect::<Vec<_>>(), vec![0..16, 16..24]);
        assert_eq!(chunks(16, 16).collect::<Vec<_>>(), vec![0..16]);
        assert_eq!(chunks(3, 1).collect::<Vec<_>>(), vec![0..1, 1..2, 2..3]);
        assert_eq!(chunks(2, 0).collect::<Vec<_>>(), vec![0..1, 1..2], "max 0 is 1");
        assert_eq!(chunks(0, 4).count(), 0);
    }
}
