//! The inference context: model config, backend and parser for one trtinfer element,
//! independent of GStreamer so it can be tested and benchmarked alone.

use crate::backend::{self, BackendKind, BackendOptions, InferenceBackend, InputRef};
use crate::batch::{Batch, BatchOutputs, MaskTensor};
use crate::config::{ModelConfig, ModelFile};
use crate::parsers::{self, ParseParams, ParseScratch, ParserKind};
use crate::results::{DenseMap, Detection};
use crate::tensor::{PooledBytes, Tensor};
use gst::glib;

pub use super::objects::{CropStage, ObjectFilter};
use crate::video::FrameReader;
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
    /// ONNX Runtime: fix the batch dimension at the largest batch when the model loads.
    pub fixed_batch: bool,
    /// GPU backends: capture inference into CUDA graphs and replay them.
    pub cuda_graph: bool,
    /// Parser dense with device outputs: also copy the maps to the host.
    pub download_dense: bool,
    pub engine_cache_dir: Option<PathBuf>,
    pub threads: usize,
    /// What the model runs on: whole frames (default) or crops of detected objects.
    pub operate_on: OperateOn,
    /// Object mode: which detections get a crop.
    pub objects: ObjectFilter,
    /// Property values that could not be parsed: (property, sentence); reported at start.
    pub invalid: Vec<(&'static str, String)>,
    /// Call order of prompt-segmentation configs (ignored by single models).
    pub route: super::promptseg::Route,
    /// Prompt-segmentation decoder output sets alive at once (1 or 2); `None` = 2.
    pub decoder_buffers: Option<usize>,
    /// Inference sessions working on alternate batches (0 and 1: one, run in the
    /// streaming thread).
    pub sessions: usize,
    /// ONNX Runtime CUDA provider options.
    pub cuda_provider: backend::CudaProviderOptions,
    /// Native TensorRT: output buffer sets held downstream at most (0: the backend's 8).
    pub output_pool_size: usize,
    /// Longest wait for an output buffer set, ms (0: the backend's 1000).
    pub pool_timeout_ms: u32,
    /// The element, named by the backend's log lines.
    pub log_target: backend::LogTarget,
}

/// What a trtinfer element feeds its model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, glib::Enum)]
#[enum_type(name = "GstTrtOperateOn")]
pub enum OperateOn {
    /// The batch tensor trtpreprocess made for this model (default).
    #[default]
    #[enum_value(
        name = "The tensor trtpreprocess prepared for this model-name",
        nick = "frames"
    )]
    Frames,
    /// Crops of detections already in the batch (secondary inference).
    #[enum_value(
        name = "Crops of the detections already in the batch, taken from the original frames",
        nick = "objects"
    )]
    Objects,
}

impl OperateOn {
    /// Parses `frames` or `objects`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "frames" | "frame" => Some(Self::Frames),
            "objects" | "object" => Some(Self::Objects),
            _ => None,
        }
    }
    /// Name used by the property.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Frames => "frames",
            Self::Objects => "objects",
        }
    }
}

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
    batches: u64,
    scratch: ParseScratch,
    reuse: Reuse,
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    device_id: i32,
    /// GPU decoding of device outputs (created at the first batch that needs it).
    #[cfg(feature = "cuda")]
    gpu: Option<crate::ops::yolo::cuda::YoloDecoder>,
    /// GPU summaries of dense outputs left on the device (created at the first such batch).
    #[cfg(feature = "cuda")]
    dense_gpu: Option<crate::ops::dense::cuda::DenseSummarizer>,
    download_dense: bool,
    candidates: Vec<crate::ops::yolo::YoloCandidate>,
    /// Host copies of the rows of a chunk when a batch is larger than `max-batch`.
    chunk_pool: crate::tensor::HostTensorPool,
    /// Bytes of inference results copied device → host since start.
    pub d2h_bytes: u64,
    /// Object mode (`operate-on=objects`).
    crops: Option<CropStage>,
}

/// Whether outputs stay on the device: GPU backends whose parser decodes on the GPU
/// (YOLO) or keeps its output there (dense).
fn device_outputs(kind: BackendKind, parser: ParserKind) -> bool {
    cfg!(feature = "cuda")
        && matches!(
            kind,
            BackendKind::OnnxRuntimeCuda | BackendKind::OnnxRuntimeTensorRt | BackendKind::TensorRt
        )
        && matches!(parser, ParserKind::Yolo | ParserKind::YoloSeg | ParserKind::Dense)
}

/// Why device outputs cannot be read by a build without the `cuda` feature.
#[cfg(not(feature = "cuda"))]
const NO_CUDA: &str =
    "the outputs are in GPU memory but this build has no CUDA support (cargo feature 'cuda')";

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
            pool_timeout: (s.pool_timeout_ms > 0)
                .then(|| std::time::Duration::from_millis(s.pool_timeout_ms.into())),
            log_target: s.log_target.clone(),
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
            batches: 0,
            scratch: ParseScratch::default(),
            reuse: Reuse::default(),
            device_id: s.device_id,
            #[cfg(feature = "cuda")]
            gpu: None,
            #[cfg(feature = "cuda")]
            dense_gpu: None,
            download_dense: s.download_dense,
            candidates: Vec::new(),
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
        batch.models.push(self.model.clone());
        Ok(())
    }

    /// Object mode: crops of the selected detections, inferred in chunks of `max-batch`.
    fn infer_objects(&mut self, batch: &mut Batch) -> Result<(), InferError> {
        let Some(mut stage) = self.crops.take() else {
            return Ok(());
        };
        let res = self.run_crops(&mut stage, batch);
        self.crops = Some(stage);
        res
    }

    fn run_crops(&mut self, stage: &mut CropStage, batch: &mut Batch) -> Result<(), InferError> {
        if let Some(wanted) = &stage.filter.model {
            if !batch.models.iter().any(|m| **m == **wanted) {
                return Err(InferError::NoPrimary {
                    wanted: wanted.clone(),
                    model: self.model.to_string(),
                    ran: if batch.models.is_empty() {
                        "none".into()
                    } else {
                        batch.models.iter().map(|m| &**m).collect::<Vec<_>>().join(", ")
                    },
                });
            }
        }
        let n = stage.select(
            &self.model,
            batch.slots.iter().map(|s| s.results.detections.as_slice()),
        );
        if n == 0 {
            return Ok(());
        }
        stage.place(|o| {
            let slot = &batch.slots[o.slot];
            (
                slot.results.detections[o.detection].bbox,
                (slot.info.width(), slot.info.height()),
            )
        });
        #[cfg(feature = "cuda")]
        if self.backend.name() != BackendKind::OnnxRuntimeCpu.name() {
            let mut maps = Vec::new();
            if let Some(frames) = stage.gpu.frames(&stage.objects, &batch.slots, &mut maps) {
                match self.crops_on_gpu(stage, &frames) {
                    Ok(results) => {
                        drop(maps);
                        Self::attach_secondary(stage, batch, results);
                        return Ok(());
                    }
                    // The CUDA preprocessing failed (logged by the element on the next
                    // batch through `gpu_disabled`): CPU crops from now on.
                    Err(InferError::Config(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        // Map the frames that have crops (CUDA frames are read through their system-memory
        // mapping).
        let mut mapped: Vec<Option<gst_video::VideoFrameRef<&gst::BufferRef>>> =
            batch.slots.iter().map(|_| None).collect();
        for o in &stage.objects {
            if mapped[o.slot].is_some() {
                continue;
            }
            let slot = &batch.slots[o.slot];
            let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(slot.buffer.as_ref(), &slot.info)
                .map_err(|e| InferError::Frame {
                    frame: slot.frame_number,
                    pad: slot.pad_index(),
                    reason: e.to_string(),
                })?;
            mapped[o.slot] = Some(frame);
        }
        let mut readers = Vec::with_capacity(mapped.len());
        for (i, f) in mapped.iter().enumerate() {
            readers.push(match f {
                None => None,
                Some(f) => Some(FrameReader::new(f).map_err(|e| InferError::Frame {
                    frame: batch.slots[i].frame_number,
                    pad: batch.slots[i].pad_index(),
                    reason: e.to_string(),
                })?),
            });
        }
        let mut results = Vec::with_capacity(n);
        for range in chunks(n, self.config.max_batch) {
            let Some(tensor) = stage.fill(&self.input_name, &readers, range.clone()) else {
                continue;
            };
            results.extend(self.infer_crops(&tensor, &stage.transforms[range])?);
        }
        drop(readers);
        drop(mapped);
        Self::attach_secondary(stage, batch, results);
        Ok(())
    }

    /// Infers one chunk of crops and parses its outputs.
    fn infer_crops(
        &mut self,
        tensor: &Tensor,
        transforms: &[crate::geometry::LetterboxTransform],
    ) -> Result<Vec<crate::results::ObjectResult>, InferError> {
        let outputs = self.backend.infer(&[InputRef {
            name: &self.input_name,
            tensor,
        }])?;
        parsers::landmarks::parse_landmarks(&self.params, &outputs, transforms).map_err(|e| {
            InferError::Parse {
                model: self.model.to_string(),
                parser: self.parser.name(),
                reason: e.to_string(),
            }
        })
    }

    /// GPU crops: one kernel launch and one inference per chunk. A failure of the CUDA
    /// preprocessing is `InferError::Config` (the caller falls back to the CPU).
    #[cfg(feature = "cuda")]
    fn crops_on_gpu(
        &mut self,
        stage: &mut CropStage,
        frames: &[crate::cuda::CudaFrame],
    ) -> Result<Vec<crate::results::ObjectResult>, InferError> {
        let n = frames.len();
        let chunk = self.config.max_batch.max(1);
        let mut results = Vec::with_capacity(n);
        for range in chunks(n, chunk) {
            let tensor = stage
                .gpu
                .run(
                    &stage.pre,
                    chunk,
                    &self.input_name,
                    &frames[range.clone()],
                    &stage.transforms[range.clone()],
                )
                .map_err(InferError::Config)?;
            results.extend(self.infer_crops(&tensor, &stage.transforms[range])?);
        }
        Ok(results)
    }

    fn attach_secondary(stage: &CropStage, batch: &mut Batch, results: Vec<crate::results::ObjectResult>) {
        for (o, r) in stage.objects.iter().zip(results) {
            if let Some(d) = batch.slots[o.slot].results.detections.get_mut(o.detection) {
                d.secondary.push(r);
            }
        }
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
            return Err(InferError::NoInput(self.model.to_string()));
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
        // crops do.
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
        let rows = slots.len();
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
        let on_device = outputs.iter().any(|t| t.host_bytes().is_none());
        let dense = if self.parser != ParserKind::Dense {
            Vec::new()
        } else if on_device {
            self.dense_on_device(&outputs, &transforms).map_err(&parse_err)?
        } else {
            parsers::dense::parse_dense(&self.model, &self.params.tensor_names, &outputs, &transforms)
                .map_err(|e| parse_err(e.to_string()))?
        };
        let mut device_masks = None;
        let detections = if matches!(self.parser, ParserKind::Raw | ParserKind::Dense) {
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

        let masks = if on_device {
            device_masks
        } else {
            self.mask_tensor(&outputs)
        };
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
            let ctx = self.device_context("GPU decoding")?;
            self.gpu = Some(crate::ops::yolo::cuda::YoloDecoder::new(&ctx).map_err(|e| e.to_string())?);
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
        let dets = crate::ops::yolo::finish_candidates(
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

    /// The GPU's primary context of this element's device.
    #[cfg(feature = "cuda")]
    fn device_context(&self, what: &str) -> Result<crate::cuda::DeviceContext, String> {
        crate::cuda::DeviceContext::primary(self.device_id.max(0))
            .map_err(|e| format!("{what} needs a CUDA context: {e}"))
    }

    /// A dense output left on the device: each frame's map points at its row there, the
    /// summaries come from one GPU reduction (32 bytes per frame to the host), and with
    /// `download-dense` the values are copied to the host too.
    #[cfg(feature = "cuda")]
    fn dense_on_device(
        &mut self,
        outputs: &[Tensor],
        transforms: &[crate::geometry::LetterboxTransform],
    ) -> Result<Vec<DenseMap>, String> {
        use crate::ops::dense::cuda::{device_row, DenseSummarizer};
        let (t, layout) = parsers::dense::dense_output(&self.params.tensor_names, outputs, transforms.len())
            .map_err(|e| e.to_string())?;
        let mut maps = Vec::with_capacity(transforms.len());
        for (row, tr) in transforms.iter().enumerate() {
            let mut map = DenseMap::host(self.model.clone(), t.clone(), row, layout, *tr);
            map.device = Some(device_row(t, row).map_err(|e| e.to_string())?);
            maps.push(map);
        }
        if self.dense_gpu.is_none() {
            let ctx = self.device_context("the GPU summary of dense maps")?;
            self.dense_gpu = Some(DenseSummarizer::new(&ctx).map_err(|e| e.to_string())?);
        }
        let gpu = self.dense_gpu.as_mut().expect("created above");
        let (host, copied) = gpu
            .run(t, layout, &mut maps, self.download_dense)
            .map_err(|e| e.to_string())?;
        self.d2h_bytes += copied as u64;
        gst::trace!(
            CAT,
            "{} dense maps summarised on the GPU, {copied} bytes to the host",
            maps.len()
        );
        if let Some(host) = host {
            for m in &mut maps {
                m.tensor = host.clone();
            }
        }
        Ok(maps)
    }

    #[cfg(not(feature = "cuda"))]
    fn dense_on_device(
        &mut self,
        _outputs: &[Tensor],
        _transforms: &[crate::geometry::LetterboxTransform],
    ) -> Result<Vec<DenseMap>, String> {
        let _ = self.download_dense;
        Err(NO_CUDA.into())
    }

    #[cfg(not(feature = "cuda"))]
    fn decode_on_device(
        &mut self,
        outputs: &[Tensor],
        _transforms: &[crate::geometry::LetterboxTransform],
    ) -> Result<(Vec<Vec<Detection>>, Option<MaskTensor>), String> {
        let _ = (&self.candidates, outputs);
        Err(NO_CUDA.into())
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
