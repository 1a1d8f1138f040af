//! What a trtinfer element's properties say: the settings an [`InferContext`] is opened
//! with.

use super::*;

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
    /// Leave the batch's input tensor for a later trtinfer of the same model (by default it
    /// goes back to trtpreprocess's pool once this element ran).
    pub keep_input: bool,
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
    pub route: crate::trtinfer::promptseg::Route,
    /// Prompt-segmentation decoder output sets alive at once (1 or 2); `None` = 2.
    pub decoder_buffers: Option<usize>,
    /// Inference sessions working on alternate batches (0 and 1: one, run in the
    /// streaming thread).
    pub sessions: usize,
    /// ONNX Runtime CUDA provider options.
    pub cuda_provider: backend::CudaProviderOptions,
    /// Native TensorRT: output buffer sets held downstream at most (0: the backend's 8).
    pub output_pool_size: usize,
    /// How long a batch waits for output tensors held downstream (`pool-timeout`).
    pub pool_timeout: backend::PoolTimeout,
    /// The element, named by the backend's log lines.
    pub log_target: backend::LogTarget,
    /// The element's pools: the backend's bounded output pools join it (flush/stop wake).
    pub pools: std::sync::Arc<crate::tensor::pool::PoolSet>,
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
