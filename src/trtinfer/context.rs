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
use std::sync::{Arc, LazyLock};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "trtinfer",
        gst::DebugColorFlags::empty(),
        Some("trtvision inference"),
    )
});

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
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    device_id: i32,
    /// GPU decoding of device outputs (created at the first batch that needs it).
    #[cfg(feature = "cuda")]
    gpu: Option<crate::cuda::postprocess::YoloDecoder>,
    candidates: Vec<crate::parsers::yolo::YoloCandidate>,
    /// Bytes of inference results copied device → host since start.
    pub d2h_bytes: u64,
}

/// Whether outputs stay on the device: GPU backends whose parser decodes on the GPU.
fn device_outputs(kind: BackendKind, parser: ParserKind) -> bool {
    cfg!(feature = "cuda")
        && matches!(
            kind,
            BackendKind::OnnxRuntimeCuda | BackendKind::OnnxRuntimeTensorRt
        )
        && matches!(parser, ParserKind::Yolo | ParserKind::YoloSeg)
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
            outputs_on_device: device_outputs(kind, parser),
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
        let pre = &config.preprocess;
        let want = [1usize, 3, pre.height as usize, pre.width as usize];
        if !input.accepts(&want) || input.dtype != pre.dtype {
            return Err(InferError::Config(format!(
                "model input {} does not match the preprocessing ({} [batch, 3, {}, {}]); fix [input] in the model config",
                input.describe(),
                pre.dtype.name(),
                pre.height,
                pre.width
            )));
        }
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
            device_id: s.device_id,
            #[cfg(feature = "cuda")]
            gpu: None,
            candidates: Vec::new(),
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
        gst::trace!(
            CAT,
            "batch {}: {} rows into {}",
            batch.batch_number,
            rows,
            self.backend.name()
        );
        let outputs = self.backend.infer(&[InputRef {
            name: &self.input_name,
            tensor: &input.tensor,
        }])?;
        gst::trace!(CAT, "batch {}: inference done", batch.batch_number);
        let slots = input.slots.clone();
        let transforms = input.transforms.clone();
        let (model, parser) = (self.model.clone(), self.parser);
        let parse_err = move |reason: String| InferError::Parse {
            model: model.to_string(),
            parser: parser_name(parser),
            reason,
        };
        let on_device = outputs.iter().any(|t| t.host_bytes().is_none());
        let mut device_masks = None;
        let detections = if self.parser == ParserKind::Raw {
            vec![Vec::new(); rows]
        } else if on_device {
            let (dets, masks) = self.decode_on_device(&outputs, &transforms).map_err(parse_err)?;
            device_masks = masks;
            dets
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

        let masks = if on_device {
            device_masks
        } else {
            self.mask_tensor(&outputs)
        };
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

    /// YOLO outputs left on the device: candidates compacted by a kernel, only they cross
    /// to the host, then the CPU parser's NMS; YOLO-seg masks stay on the device.
    #[cfg(feature = "cuda")]
    fn decode_on_device(
        &mut self,
        outputs: &[Tensor],
        transforms: &[crate::geometry::LetterboxTransform],
    ) -> Result<(Vec<Vec<Detection>>, Option<MaskTensor>), String> {
        let names = &self.params.tensor_names;
        let seg = self.parser == ParserKind::YoloSeg;
        let pick = |name: &str, pos: usize| outputs.iter().find(|t| t.name == name).or(outputs.get(pos));
        let out0 = pick(names.boxes_for(self.parser), 0).ok_or("the model returned no outputs")?;
        let protos = if seg {
            let p = pick(names.protos_name(), 1)
                .filter(|p| !std::ptr::eq(*p, out0))
                .ok_or_else(|| format!("no prototype output '{}'", names.protos_name()))?;
            match p.shape.as_slice() {
                &[b, n, _, _] if b == transforms.len() && n > 0 => Some((p, n)),
                s => {
                    return Err(format!(
                        "prototypes '{}' are {s:?}, expected [{}, prototypes, h, w]",
                        p.name,
                        transforms.len()
                    ))
                }
            }
        } else {
            None
        };
        let &[b, channels, _] = out0.shape.as_slice() else {
            return Err(format!(
                "output '{}' is {:?}, expected [batch, channels, anchors]",
                out0.name, out0.shape
            ));
        };
        let p = protos.map_or(0, |(_, n)| n);
        if b != transforms.len() || channels < 5 + p {
            return Err(format!(
                "output '{}' is {:?}, expected [{}, 4 + classes{}, anchors]",
                out0.name,
                out0.shape,
                transforms.len(),
                if seg { " + prototypes" } else { "" }
            ));
        }
        let classes = channels - 4 - p;
        if self.gpu.is_none() {
            let ctx = crate::cuda::DeviceContext::primary(self.device_id.max(0))
                .map_err(|e| format!("GPU decoding needs a CUDA context: {e}"))?;
            self.gpu = Some(crate::cuda::postprocess::YoloDecoder::new(&ctx).map_err(|e| e.to_string())?);
        }
        let dec = self.gpu.as_mut().expect("created above");
        let copied = dec
            .decode(out0, classes, self.params.conf_threshold, &mut self.candidates)
            .map_err(|e| e.to_string())?;
        gst::trace!(
            CAT,
            "{} candidates decoded on the GPU, {copied} bytes to the host",
            self.candidates.len()
        );
        self.d2h_bytes += copied as u64;
        let dets = crate::parsers::yolo::finish_candidates(
            &mut self.scratch,
            &self.params,
            &self.candidates,
            transforms,
            seg,
        );
        let masks = protos.map(|(p, _)| MaskTensor::DevicePrototypes {
            protos: p.clone(),
            coefficients: out0.clone(),
            first: 4 + classes,
        });
        Ok((dets, masks))
    }

    #[cfg(not(feature = "cuda"))]
    fn decode_on_device(
        &mut self,
        outputs: &[Tensor],
        _transforms: &[crate::geometry::LetterboxTransform],
    ) -> Result<(Vec<Vec<Detection>>, Option<MaskTensor>), String> {
        let _ = (&self.candidates, outputs);
        Err("the outputs are in GPU memory but this build has no CUDA support (cargo feature 'cuda')".into())
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
