//! Inference backends behind one trait: ONNX Runtime (CPU, CUDA and TensorRT execution
//! providers) and native TensorRT.
//!
//! A backend is created once per element start from a [`BackendOptions`], runs one call per
//! batch, and reports its tensor layout so the element can check it against the model
//! config before the first frame.

use crate::tensor::{DType, Tensor};
use gst::glib;

#[cfg(feature = "onnxruntime")]
pub mod onnxruntime;
pub mod output_sets;
#[cfg(feature = "tensorrt")]
pub mod tensorrt;

/// Declared layout of one model input or output. `None` marks a dynamic dimension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<Option<usize>>,
}

impl TensorSpec {
    /// Whether a concrete shape fits this spec (same rank, fixed dimensions equal).
    pub fn accepts(&self, shape: &[usize]) -> bool {
        self.shape.len() == shape.len()
            && self
                .shape
                .iter()
                .zip(shape)
                .all(|(want, got)| want.is_none_or(|w| w == *got))
    }

    /// Human form such as `images f32 [batch, 3, 640, 640]`.
    pub fn describe(&self) -> String {
        let dims: Vec<String> = self
            .shape
            .iter()
            .map(|d| d.map_or("dyn".to_string(), |v| v.to_string()))
            .collect();
        format!("{} {} [{}]", self.name, self.dtype.name(), dims.join(", "))
    }
}

/// Which execution provider / engine runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendKind {
    /// ONNX Runtime, CPU execution provider.
    #[default]
    OnnxRuntimeCpu,
    /// ONNX Runtime, CUDA execution provider.
    OnnxRuntimeCuda,
    /// ONNX Runtime, TensorRT execution provider.
    OnnxRuntimeTensorRt,
    /// Native TensorRT engine.
    TensorRt,
}

impl BackendKind {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "onnxruntime" | "onnxruntime-cpu" | "cpu" => Self::OnnxRuntimeCpu,
            "onnxruntime-cuda" | "cuda" => Self::OnnxRuntimeCuda,
            "onnxruntime-tensorrt" => Self::OnnxRuntimeTensorRt,
            "tensorrt" => Self::TensorRt,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::OnnxRuntimeCpu => "onnxruntime-cpu",
            Self::OnnxRuntimeCuda => "onnxruntime-cuda",
            Self::OnnxRuntimeTensorRt => "onnxruntime-tensorrt",
            Self::TensorRt => "tensorrt",
        }
    }
}

/// The `backend` property of trtinfer: a backend, or the model config's choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, glib::Enum)]
#[enum_type(name = "GstTrtBackend")]
pub enum BackendChoice {
    /// The model config's backend, else ONNX Runtime on the CPU (default).
    #[default]
    #[enum_value(
        name = "The backend named by the model config, else ONNX Runtime on the CPU",
        nick = "config"
    )]
    Config,
    #[enum_value(
        name = "ONNX Runtime with its CPU execution provider",
        nick = "onnxruntime-cpu"
    )]
    OnnxRuntimeCpu,
    #[enum_value(
        name = "ONNX Runtime with its CUDA execution provider",
        nick = "onnxruntime-cuda"
    )]
    OnnxRuntimeCuda,
    #[enum_value(
        name = "ONNX Runtime with its TensorRT execution provider",
        nick = "onnxruntime-tensorrt"
    )]
    OnnxRuntimeTensorRt,
    #[enum_value(name = "TensorRT running a serialized engine", nick = "tensorrt")]
    TensorRt,
}

impl BackendChoice {
    /// The chosen backend; `None` = the model config's.
    pub const fn kind(self) -> Option<BackendKind> {
        match self {
            Self::Config => None,
            Self::OnnxRuntimeCpu => Some(BackendKind::OnnxRuntimeCpu),
            Self::OnnxRuntimeCuda => Some(BackendKind::OnnxRuntimeCuda),
            Self::OnnxRuntimeTensorRt => Some(BackendKind::OnnxRuntimeTensorRt),
            Self::TensorRt => Some(BackendKind::TensorRt),
        }
    }

    /// The property value of a chosen backend (`None` = the model config's).
    pub const fn from_kind(kind: Option<BackendKind>) -> Self {
        match kind {
            None => Self::Config,
            Some(BackendKind::OnnxRuntimeCpu) => Self::OnnxRuntimeCpu,
            Some(BackendKind::OnnxRuntimeCuda) => Self::OnnxRuntimeCuda,
            Some(BackendKind::OnnxRuntimeTensorRt) => Self::OnnxRuntimeTensorRt,
            Some(BackendKind::TensorRt) => Self::TensorRt,
        }
    }
}

/// Everything needed to open a model.
#[derive(Debug, Clone, Default)]
pub struct BackendOptions {
    pub kind: BackendKind,
    /// ONNX file or serialized TensorRT engine.
    pub model_path: std::path::PathBuf,
    /// Largest batch the element will submit.
    pub max_batch: usize,
    /// CUDA device ordinal for GPU backends.
    pub device_id: i32,
    /// Half precision where the backend supports choosing it.
    pub fp16: bool,
    /// Directory for engine caches (TensorRT, ORT TensorRT provider).
    pub engine_cache_dir: Option<std::path::PathBuf>,
    /// Intra-op threads for CPU backends (0 = backend default).
    pub threads: usize,
    /// Leave the outputs in device memory (GPU backends): `infer` then returns
    /// [`TensorStorage::Device`](crate::tensor::TensorStorage) tensors from the backend's
    /// own pooled allocator instead of copying them to the host.
    pub outputs_on_device: bool,
    /// GPU backends of ONNX Runtime: grow the device memory arena by exactly the size
    /// requested instead of in doubling steps (ONNX Runtime's default), so that the VRAM
    /// used shows what the tensors cost. Ignored elsewhere.
    pub exact_arena: bool,
    /// ONNX Runtime: fix the model's batch dimension at `max_batch` when the model is
    /// loaded, so that shape computations become constants; smaller batches are padded to
    /// `max_batch` rows (computed, then dropped from the outputs).
    pub fixed_batch: bool,
    /// GPU backends: capture inference into CUDA graphs and replay them, one launch per
    /// batch instead of one per layer. ONNX Runtime (CUDA provider): implies `fixed_batch`;
    /// graphs captured when the model loads, one per output buffer set, reading input
    /// buffers of their own that each run fills with a device-to-device copy. TensorRT:
    /// one graph per (buffer set, input shapes).
    pub cuda_graph: bool,
    /// ONNX Runtime CUDA provider tuning (ignored by other backends).
    pub cuda_provider: CudaProviderOptions,
    /// Output tensors held downstream at most, in batches (0 = [`DEFAULT_OUTPUT_POOL_SIZE`]):
    /// native TensorRT's output buffer sets, ONNX Runtime's host output tensors (per
    /// output). When downstream holds every one, [`InferenceBackend::infer`] waits up to
    /// `pool_timeout` for one to come back, then fails.
    pub output_pool_size: usize,
    /// How long a call waits for pooled output tensors held downstream.
    pub pool_timeout: PoolTimeout,
    /// The element's pools: every bounded pool the backend waits on joins this set, so
    /// that a flush or a stop of the element wakes a call waiting for output tensors
    /// (it then fails with [`BackendError::Flushing`]) without taking any lock the call
    /// holds.
    pub pools: std::sync::Arc<crate::tensor::pool::PoolSet>,
    /// The element the backend works for: its log lines name it (`obj =`), so that with
    /// several models in one pipeline `GST_DEBUG` tells which one logged.
    pub log_target: LogTarget,
}

/// Output tensors (batches) held downstream at most when `output_pool_size` is 0.
pub const DEFAULT_OUTPUT_POOL_SIZE: usize = 8;

/// Longest wait for pooled output tensors when `pool_timeout` is [`PoolTimeout::Default`].
pub const DEFAULT_POOL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a call waits for pooled output tensors held downstream (counted while the
/// pipeline plays; a flush or stop of the element ends every wait).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PoolTimeout {
    /// [`DEFAULT_POOL_TIMEOUT`].
    #[default]
    Default,
    /// At most this long, then the call fails.
    After(std::time::Duration),
    /// Until a tensor comes back, however long that takes.
    Unlimited,
}

impl PoolTimeout {
    /// The value of a `pool-timeout` property in milliseconds: 0 = wait without a limit.
    pub fn from_millis(ms: u32) -> Self {
        match ms {
            0 => Self::Unlimited,
            ms => Self::After(std::time::Duration::from_millis(ms.into())),
        }
    }

    /// The `pool-timeout` property's value in milliseconds (0 = without a limit).
    pub fn millis(self) -> u32 {
        match self.limit() {
            None => 0,
            Some(d) => u32::try_from(d.as_millis()).unwrap_or(u32::MAX).max(1),
        }
    }

    /// The longest wait (`None`: no limit).
    pub fn limit(self) -> Option<std::time::Duration> {
        match self {
            Self::Default => Some(DEFAULT_POOL_TIMEOUT),
            Self::After(d) => Some(d),
            Self::Unlimited => None,
        }
    }
}

impl BackendOptions {
    /// The bound on output tensors held downstream (`output_pool_size`, else the default).
    pub fn output_limit(&self) -> usize {
        if self.output_pool_size == 0 {
            DEFAULT_OUTPUT_POOL_SIZE
        } else {
            self.output_pool_size
        }
    }

    /// The longest wait for pooled output tensors (`None`: no limit).
    pub fn output_timeout(&self) -> Option<std::time::Duration> {
        self.pool_timeout.limit()
    }
}

/// A wait for pooled output tensors that ended without one: the element is flushing, or
/// downstream kept every one for the whole timeout (`what` names the pool).
pub fn pool_wait_error(e: crate::tensor::pool::PoolWaitError, what: &str) -> BackendError {
    match e {
        crate::tensor::pool::PoolWaitError::Flushing => BackendError::Flushing,
        timeout => BackendError::OutputsHeld(format!(
            "{timeout} ({what}; raise output-pool-size or keep fewer batches in queues)"
        )),
    }
}

/// Host buffers for a backend's output tensors: one bounded pool per model output (at
/// most [`BackendOptions::output_limit`] tensors of each held downstream), each in the
/// element's [`PoolSet`](crate::tensor::pool::PoolSet).
#[derive(Debug)]
pub struct HostOutputs {
    pools: Vec<crate::tensor::HostTensorPool>,
    /// `output-pool-size`: batches of outputs held downstream at most.
    limit: usize,
}

impl HostOutputs {
    /// Pools for `outputs` model outputs under the bound and timeout of `opts`.
    pub fn new(outputs: usize, opts: &BackendOptions) -> Self {
        let pools = (0..outputs)
            .map(|_| {
                let pool = crate::tensor::HostTensorPool::bounded(opts.output_limit(), opts.output_timeout());
                opts.pools.add(pool.control());
                pool
            })
            .collect();
        Self {
            pools,
            limit: opts.output_limit(),
        }
    }

    /// A batch that runs in `chunks` chunks keeps one tensor per output and chunk: each
    /// pool holds `chunks` times the batches of `output-pool-size`, so that one batch never
    /// waits for tensors that only it holds. Only grows.
    pub fn hold_chunks(&self, chunks: usize) {
        for pool in &self.pools {
            output_sets::hold_chunks(&pool.control(), self.limit, chunks);
        }
    }

    /// A buffer of `len` bytes for output `index` (`name`): waits while downstream holds
    /// every one; fails when the element flushes or the wait times out.
    pub fn acquire(
        &self,
        index: usize,
        len: usize,
        name: &str,
    ) -> Result<crate::tensor::PooledBytes, BackendError> {
        let pool = self.pools.get(index).ok_or_else(|| {
            BackendError::Runtime(format!("no output buffer pool for output {index} ('{name}')"))
        })?;
        pool.try_acquire(len)
            .map_err(|e| pool_wait_error(e, &format!("host tensors of output '{name}'")))
    }

    /// The pool of output `index` (tests, statistics).
    pub fn pool(&self, index: usize) -> Option<&crate::tensor::HostTensorPool> {
        self.pools.get(index)
    }
}

/// A weak reference to the element a backend logs for (none: the lines name no object).
#[derive(Clone, Default)]
pub struct LogTarget(Option<glib::WeakRef<gst::Element>>);

impl std::fmt::Debug for LogTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.get() {
            Some(e) => write!(f, "LogTarget({})", gst::prelude::GstObjectExt::name(&e)),
            None => f.write_str("LogTarget(none)"),
        }
    }
}

impl LogTarget {
    /// Log lines for `element` (held weakly: a backend never keeps its element alive).
    pub fn new(element: &impl glib::prelude::IsA<gst::Element>) -> Self {
        use glib::prelude::*;
        Self(Some(element.upcast_ref::<gst::Element>().downgrade()))
    }

    /// The element, while it exists.
    pub fn get(&self) -> Option<gst::Element> {
        self.0.as_ref().and_then(|w| w.upgrade())
    }
}

/// `gst::<level>!(cat, obj = element, ...)` for the element of a [`LogTarget`], or without an
/// object when it has none.
#[macro_export]
#[doc(hidden)]
macro_rules! backend_log {
    ($level:ident, $cat:expr, $target:expr, $($args:tt)*) => {
        match $target.get() {
            Some(element) => gst::$level!($cat, obj = &element, $($args)*),
            None => gst::$level!($cat, $($args)*),
        }
    };
}

/// cuDNN convolution algorithm search of the ONNX Runtime CUDA provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConvAlgoSearch {
    /// Benchmark every algorithm once per shape (ONNX Runtime's default; slowest start).
    #[default]
    Exhaustive,
    /// cuDNN's heuristics, no benchmarking.
    Heuristic,
    /// The default algorithm, no search.
    Default,
}

impl ConvAlgoSearch {
    /// Parses `exhaustive`, `heuristic` or `default`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "exhaustive" => Some(Self::Exhaustive),
            "heuristic" => Some(Self::Heuristic),
            "default" => Some(Self::Default),
            _ => None,
        }
    }
    pub const fn name(self) -> &'static str {
        match self {
            Self::Exhaustive => "exhaustive",
            Self::Heuristic => "heuristic",
            Self::Default => "default",
        }
    }
}

/// A CUDA provider setting left to ONNX Runtime or forced either way (trtinfer properties).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, glib::Enum)]
#[enum_type(name = "GstTrtProviderSwitch")]
pub enum ProviderSwitch {
    /// ONNX Runtime's own default.
    #[default]
    #[enum_value(name = "ONNX Runtime's default", nick = "default")]
    Default,
    /// Forced on.
    #[enum_value(name = "On", nick = "true")]
    On,
    /// Forced off.
    #[enum_value(name = "Off", nick = "false")]
    Off,
}

impl ProviderSwitch {
    /// The setting to pass, `None` for ONNX Runtime's default.
    pub const fn get(self) -> Option<bool> {
        match self {
            Self::Default => None,
            Self::On => Some(true),
            Self::Off => Some(false),
        }
    }

    /// The switch of a setting.
    pub const fn of(v: Option<bool>) -> Self {
        match v {
            None => Self::Default,
            Some(true) => Self::On,
            Some(false) => Self::Off,
        }
    }
}

/// trtinfer's `cudnn-conv-algo-search`: ONNX Runtime's default or one [`ConvAlgoSearch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, glib::Enum)]
#[enum_type(name = "GstTrtConvAlgoSearch")]
pub enum ConvAlgoChoice {
    /// ONNX Runtime's own default (exhaustive).
    #[default]
    #[enum_value(name = "ONNX Runtime's default (exhaustive)", nick = "onnxruntime")]
    OnnxRuntime,
    /// Benchmark every algorithm once per shape.
    #[enum_value(
        name = "Benchmark every algorithm once per shape (slowest start)",
        nick = "exhaustive"
    )]
    Exhaustive,
    /// cuDNN's heuristics.
    #[enum_value(name = "cuDNN's heuristics, no benchmarking", nick = "heuristic")]
    Heuristic,
    /// The default algorithm.
    #[enum_value(name = "cuDNN's default algorithm, no search", nick = "default")]
    Default,
}

impl ConvAlgoChoice {
    /// The search to ask for, `None` for ONNX Runtime's default.
    pub const fn get(self) -> Option<ConvAlgoSearch> {
        match self {
            Self::OnnxRuntime => None,
            Self::Exhaustive => Some(ConvAlgoSearch::Exhaustive),
            Self::Heuristic => Some(ConvAlgoSearch::Heuristic),
            Self::Default => Some(ConvAlgoSearch::Default),
        }
    }

    /// The choice of a setting.
    pub const fn of(v: Option<ConvAlgoSearch>) -> Self {
        match v {
            None => Self::OnnxRuntime,
            Some(ConvAlgoSearch::Exhaustive) => Self::Exhaustive,
            Some(ConvAlgoSearch::Heuristic) => Self::Heuristic,
            Some(ConvAlgoSearch::Default) => Self::Default,
        }
    }
}

/// Options of ONNX Runtime's CUDA execution provider; `None` leaves ONNX Runtime's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CudaProviderOptions {
    /// Run convolutions in NHWC layout (tensor-core friendly, above all in FP16).
    pub prefer_nhwc: bool,
    /// How cuDNN picks convolution algorithms.
    pub conv_algo_search: Option<ConvAlgoSearch>,
    /// Let cuDNN use as much workspace as the fastest algorithm wants.
    pub conv_max_workspace: Option<bool>,
    /// TF32 tensor-core math for FP32 models.
    pub tf32: Option<bool>,
}

/// Failure of a backend, always with a sentence a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("model file {path} cannot be read: {reason}")]
    ModelUnreadable { path: String, reason: String },
    #[error("model {path} is not a valid model: {reason}")]
    ModelInvalid { path: String, reason: String },
    #[error("backend '{backend}' is not available: {reason}")]
    Unavailable { backend: String, reason: String },
    #[error("input does not match the model: {0}")]
    ShapeMismatch(String),
    #[error("batch of {got} exceeds the largest batch the model accepts ({max})")]
    BatchTooLarge { got: usize, max: usize },
    #[error("inference failed: {0}")]
    Runtime(String),
    /// Downstream kept every pooled output tensor for the whole pool timeout.
    #[error("{0}")]
    OutputsHeld(String),
    /// A wait for output tensors was cut short by a flush, seek or stop of the element:
    /// not a failure, the batch is dropped.
    #[error("the element is flushing (a flush, seek or stop is under way)")]
    Flushing,
}

/// An input handed to a backend for one call.
#[derive(Debug, Clone, Copy)]
pub struct InputRef<'a> {
    pub name: &'a str,
    pub tensor: &'a Tensor,
}

/// One loaded model ready to run batches.
pub trait InferenceBackend: Send {
    /// Backend name as reported in properties, logs and benchmark files.
    fn name(&self) -> &'static str;
    /// Model inputs, in the order the model declares them.
    fn inputs(&self) -> &[TensorSpec];
    /// Model outputs, in the order the model declares them.
    fn outputs(&self) -> &[TensorSpec];
    /// Largest batch the loaded model accepts, when it has a limit.
    fn max_batch(&self) -> Option<usize> {
        None
    }
    /// Runs one batch: one call for all frames. Outputs are returned in the order of
    /// [`Self::outputs`], with their leading dimension equal to the batch size.
    fn infer(&mut self, inputs: &[InputRef<'_>]) -> Result<Vec<Tensor>, BackendError>;
    /// Whether [`Self::infer`] returns its outputs in device memory.
    fn outputs_on_device(&self) -> bool {
        false
    }
    /// A copy of `t` where this backend reads inputs fastest, made once (e.g. constant
    /// inputs such as prompts): device memory for GPU backends, the tensor itself otherwise.
    fn upload(&mut self, t: &Tensor) -> Result<Tensor, BackendError> {
        Ok(t.clone())
    }
    /// Something the user asked for that the backend could not do and worked around (e.g.
    /// a CUDA graph that could not be captured), once; the element posts it as a warning.
    fn take_warning(&mut self) -> Option<String> {
        None
    }
    /// The next batches run in `chunks` chunks of at most max-batch rows: bounded output
    /// pools make room for a whole batch's chunks ([`HostOutputs::hold_chunks`]).
    fn hold_chunks(&mut self, _chunks: usize) {}
}

/// Opens the backend named in `opts`.
pub fn open(opts: &BackendOptions) -> Result<Box<dyn InferenceBackend>, BackendError> {
    match opts.kind {
        #[cfg(feature = "onnxruntime")]
        BackendKind::OnnxRuntimeCpu | BackendKind::OnnxRuntimeCuda | BackendKind::OnnxRuntimeTensorRt => {
            Ok(Box::new(onnxruntime::OrtBackend::open(opts)?))
        }
        #[cfg(feature = "tensorrt")]
        BackendKind::TensorRt => Ok(Box::new(tensorrt::TrtBackend::open(opts)?)),
        #[allow(unreachable_patterns)]
        other => Err(BackendError::Unavailable {
            backend: other.name().to_string(),
            reason: "this build of the plugin was compiled without it (cargo feature off)".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_accepts_dynamic_batch() {
        let s = TensorSpec {
            name: "images".into(),
            dtype: DType::F32,
            shape: vec![None, Some(3), Some(640), Some(640)],
        };
        assert!(s.accepts(&[8, 3, 640, 640]));
        assert!(!s.accepts(&[8, 3, 320, 320]));
        assert!(!s.accepts(&[3, 640, 640]));
        assert_eq!(s.describe(), "images f32 [dyn, 3, 640, 640]");
    }

    /// Host output buffers: at most output-pool-size out per output, a timeout names the
    /// output and the property, and the element's flush ends a wait as `Flushing`.
    #[test]
    fn host_outputs_are_bounded_and_woken_by_the_element() {
        let opts = BackendOptions {
            output_pool_size: 2,
            pool_timeout: PoolTimeout::After(std::time::Duration::from_millis(100)),
            ..Default::default()
        };
        let outs = HostOutputs::new(2, &opts);
        let held: Vec<_> = (0..2)
            .map(|_| outs.acquire(0, 16, "protos").expect("in bound"))
            .collect();
        // The other output has its own bound.
        let other = outs.acquire(1, 16, "output0").expect("own pool");
        let e = outs
            .acquire(0, 16, "protos")
            .expect_err("a third is refused")
            .to_string();
        assert!(
            e.contains("all 2 pooled tensors") && e.contains("'protos'") && e.contains("output-pool-size"),
            "{e}"
        );
        drop(other);
        let again = outs.acquire(0, 16, "protos");
        assert!(again.is_err(), "output 1 coming back frees nothing of output 0");
        // A flush of the element (its pool set) ends a wait at once.
        let outs = std::sync::Arc::new(HostOutputs::new(
            1,
            &BackendOptions {
                output_pool_size: 1,
                pool_timeout: PoolTimeout::After(std::time::Duration::from_secs(60)),
                pools: opts.pools.clone(),
                ..Default::default()
            },
        ));
        let first = outs.acquire(0, 8, "y").expect("first");
        let o = outs.clone();
        let waiter = std::thread::spawn(move || o.acquire(0, 8, "y").map(drop));
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(!waiter.is_finished(), "waits for the buffer held downstream");
        let began = std::time::Instant::now();
        opts.pools.set_flushing(true);
        let got = waiter.join().expect("no panic");
        assert!(matches!(got, Err(BackendError::Flushing)), "{got:?}");
        assert!(began.elapsed() < std::time::Duration::from_secs(5));
        opts.pools.set_flushing(false);
        drop(first);
        assert!(outs.acquire(0, 8, "y").is_ok());
        drop(held);
    }

    /// `pool-timeout`: 0 waits without a limit (until a tensor comes back), other values are
    /// milliseconds, and the default reads back as 10000.
    #[test]
    fn pool_timeout_zero_waits_without_a_limit() {
        assert_eq!(PoolTimeout::from_millis(0), PoolTimeout::Unlimited);
        assert_eq!(PoolTimeout::Unlimited.limit(), None);
        assert_eq!(PoolTimeout::Unlimited.millis(), 0);
        assert_eq!(PoolTimeout::Default.millis(), 10_000);
        assert_eq!(PoolTimeout::default().limit(), Some(DEFAULT_POOL_TIMEOUT));
        assert_eq!(PoolTimeout::from_millis(250).millis(), 250);
        assert_eq!(
            PoolTimeout::from_millis(250).limit(),
            Some(std::time::Duration::from_millis(250))
        );

        let outs = std::sync::Arc::new(HostOutputs::new(
            1,
            &BackendOptions {
                output_pool_size: 1,
                pool_timeout: PoolTimeout::Unlimited,
                ..Default::default()
            },
        ));
        let held = outs.acquire(0, 8, "y").expect("first");
        let o = outs.clone();
        let waiter = std::thread::spawn(move || o.acquire(0, 8, "y").map(drop));
        // Longer than any timeout would be in a test: the wait goes on.
        std::thread::sleep(std::time::Duration::from_millis(1500));
        assert!(
            !waiter.is_finished(),
            "still waiting for the tensor held downstream"
        );
        drop(held);
        let got = waiter.join().expect("no panic");
        assert!(got.is_ok(), "the tensor that came back ends the wait: {got:?}");
    }
}
