//! Element glue of trtinfer: properties, start/stop of the inference context, errors.

use super::context::{InferContext, InferSettings, OperateOn};
use super::inflight::{BatchFailure, FlightError, FlightWake, Inferred, Sessions};
use super::promptseg::{PromptSegContext, Route};
use crate::backend::BackendChoice;
use crate::gpu_element::CudaContextElement;
use crate::parsers::ParserChoice;
use crate::tensor::pool::PoolSet;
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "trtinfer",
        gst::DebugColorFlags::empty(),
        Some("trtvision inference"),
    )
});

/// What `start` loaded: one model, or an encoder/decoder pair with class prompts.
enum Loaded {
    Model(Box<InferContext>),
    PromptSeg(Box<PromptSegContext>),
    /// `sessions` > 1: contexts of one model on alternate batches.
    Sessions(Box<Sessions>),
}

impl Loaded {
    fn backend_name(&self) -> &'static str {
        match self {
            Loaded::Model(c) => c.backend_name(),
            Loaded::PromptSeg(p) => p.engine.backend_name(),
            Loaded::Sessions(s) => s.with_first(|c| c.backend_name()).unwrap_or("none"),
        }
    }

    fn d2h_bytes(&self) -> u64 {
        match self {
            Loaded::PromptSeg(p) => p.engine.totals().d2h_bytes,
            Loaded::Model(c) => c.d2h_bytes,
            Loaded::Sessions(s) => s.d2h_bytes(),
        }
    }
}

/// Statistics readable at any time, also while a batch is inferred (the context lock is
/// held for the whole inference; these are not behind it).
#[derive(Default)]
struct Stats {
    /// Bytes of results copied from the GPU to the host since start.
    d2h_bytes: AtomicU64,
    /// Backend running the model, set once started.
    backend_in_use: Mutex<Option<&'static str>>,
    /// Batches inferred since start.
    batches: AtomicU64,
    /// Time spent inferring them (in the sessions' threads with `sessions` > 1), ns.
    infer_ns: AtomicU64,
    /// Time the streaming thread waited for a session's result (all sessions busy, or
    /// draining before an event), ns.
    wait_ns: AtomicU64,
}

impl Stats {
    fn reset(&self) {
        for a in [&self.d2h_bytes, &self.batches, &self.infer_ns, &self.wait_ns] {
            a.store(0, Ordering::Relaxed);
        }
    }

    fn inferred(&self, ns: u64) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.infer_ns.fetch_add(ns, Ordering::Relaxed);
    }

    fn waited(&self, since: std::time::Instant) {
        self.wait_ns
            .fetch_add(since.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }

    fn structure(&self) -> gst::Structure {
        let (n, infer, wait) = (
            self.batches.load(Ordering::Relaxed),
            self.infer_ns.load(Ordering::Relaxed),
            self.wait_ns.load(Ordering::Relaxed),
        );
        gst::Structure::builder("trtinfer-stats")
            .field("batches", n)
            .field("infer-ns", infer)
            .field("wait-ns", wait)
            .field("mean-infer-ns", infer.checked_div(n).unwrap_or(0))
            .field("mean-wait-ns", wait.checked_div(n).unwrap_or(0))
            .build()
    }
}

#[derive(Default)]
pub struct TrtInfer {
    settings: Mutex<InferSettings>,
    /// Held for the whole inference of a batch: never taken by property getters, and no
    /// message is posted while it is held.
    context: Mutex<Option<Loaded>>,
    stats: Stats,
    /// CUDA context shared with the pipeline (object crops of CUDA frames run on the GPU).
    cuda_ctx: crate::gpu_element::ElementCudaContext,
    /// The backends' bounded output pools: flushes and stops wake a batch waiting for
    /// output tensors without taking the context lock (the waiting batch holds it).
    pools: Arc<PoolSet>,
    /// The same for the streaming thread waiting for a session's result (`sessions` > 1).
    flight_wake: Arc<FlightWake>,
}

#[glib::object_subclass]
impl ObjectSubclass for TrtInfer {
    const NAME: &'static str = "GstTrtInfer";
    type Type = super::TrtInfer;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for TrtInfer {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let mut props = vec![
                glib::ParamSpecString::builder("model")
                    .nick("Model")
                    .blurb("Model config TOML (engines/README.md), ONNX file, or TensorRT engine file")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("model-name")
                    .nick("Model name")
                    .blurb("Name used to find the input tensor (trtpreprocess model-name) and to tag results; default: the config's name or the file stem")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("labels")
                    .nick("Labels file")
                    .blurb("Text file with one class label per line; default: the config's labels")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("parser", ParserChoice::Config)
                    .nick("Output parser")
                    .blurb("How outputs are decoded; config (default) = the model config's parser")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("backend", BackendChoice::Config)
                    .nick("Backend")
                    .blurb("Inference backend; config (default) = the model config's backend, else onnxruntime-cpu")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecFloat::builder("conf-threshold")
                    .nick("Confidence threshold")
                    .blurb("Detections below this confidence are dropped (-1 = the config's value, default 0.25)")
                    .minimum(-1.0)
                    .maximum(1.0)
                    .default_value(-1.0)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecFloat::builder("nms-iou")
                    .nick("NMS IoU")
                    .blurb("Class-aware non-maximum suppression IoU threshold (-1 = the config's value, default 0.45)")
                    .minimum(-1.0)
                    .maximum(1.0)
                    .default_value(-1.0)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("max-batch")
                    .nick("Maximum batch")
                    .blurb("Largest batch the model is run with; larger batches run in chunks of at most this many frames (0 = the config's max-batch, default 16)")
                    .maximum(1024)
                    .default_value(0)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("interval")
                    .nick("Interval")
                    .blurb("Batches skipped between two inferences; skipped batches reuse the last results of each source (0 = infer every batch)")
                    .maximum(1000)
                    .default_value(0)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("keep-input")
                    .nick("Keep input")
                    .blurb("Leave the batch's input tensor for a later trtinfer of the same model (the same model on two backends); by default it goes back to trtpreprocess's pool as soon as this element ran, so batches queued downstream hold no tensor")
                    .default_value(false)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("fp16")
                    .nick("FP16")
                    .blurb("Run in half precision where the backend builds its own engine (TensorRT, ONNX Runtime TensorRT provider)")
                    .default_value(false)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("fixed-batch")
                    .nick("Fixed batch")
                    .blurb("ONNX Runtime: fix the model's batch dimension at the largest batch when it loads, so that its shape computations become constants (fewer kernels and no small host copies per batch); smaller batches are padded, the padding rows are computed and dropped. Needs a model whose batch dimension has a name")
                    .default_value(false)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("cuda-graph")
                    .nick("CUDA graphs")
                    .blurb("GPU backends: capture inference into CUDA graphs and replay them, one launch per batch instead of one per layer. ONNX Runtime CUDA provider: implies fixed-batch (set max-batch to trtmux's batch-size); the graphs are captured when the model loads, before data flows (CUDA forbids other threads some calls while a graph is captured), one per output buffer set (4), and each batch's input tensor is copied into the graphs' input buffer on the GPU. TensorRT: one graph per buffer set and shapes. If graphs cannot be captured or replayed the element warns and runs without")
                    .default_value(false)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("download-dense")
                    .nick("Download dense maps")
                    .blurb("Parser dense on a GPU backend: also copy the maps to host memory, for consumers that read the values (trtdemux tensor meta, appsink); when off (default) they stay in GPU memory, trtoverlay draws them there and their summary (min, mean, max, in trtjsonexport) is computed on the GPU, so only a few bytes per frame cross to the host. CPU backends always produce host maps")
                    .default_value(false)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("engine-cache-dir")
                    .nick("Engine cache directory")
                    .blurb("Directory where TensorRT engines built from ONNX are cached and reused")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("threads")
                    .nick("CPU threads")
                    .blurb("Threads of the CPU backend (0 = backend default)")
                    .maximum(256)
                    .default_value(0)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("operate-on", OperateOn::Frames)
                    .nick("Operate on")
                    .blurb("What the model runs on: frames (the tensor trtpreprocess prepared for this model-name) or objects (crops of detections already in the batch, taken from the original frames, resized and normalised per the model config's [input]; needs parser landmarks)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("operate-on-model")
                    .nick("Operate on model")
                    .blurb("Object mode: model-name of the trtinfer element whose detections are cropped; it must run upstream on the same batches (empty = detections of every other model)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("operate-on-classes")
                    .nick("Operate on classes")
                    .blurb("Object mode: comma-separated class ids of the detections that are cropped (empty = all classes)")
                    .default_value(Some(""))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("min-object-size")
                    .nick("Minimum object size")
                    .blurb("Object mode: detections whose box is narrower or lower than this many frame pixels are skipped (0 = no limit)")
                    .maximum(65535)
                    .default_value(0)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("max-objects-per-batch")
                    .nick("Maximum objects per batch")
                    .blurb("Object mode: at most this many crops per batch, the most confident detections first (0 = all); crops are inferred in chunks of max-batch")
                    .maximum(1_000_000)
                    .default_value(0)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("route", Route::C)
                    .nick("Prompt-segmentation route")
                    .blurb("Call order of prompt-segmentation configs: c = encoder once per batch, then the decoder once per class with all frames (fastest); b = encoder once, decoder per frame with all classes; a = per frame, encoder then decoder with all classes; seed = route c with every decoder output copied to the host (benchmark baseline). Results are identical on the CPU; on a GPU each route's batch sizes pick their own kernels, so scores and mask pixels may differ in the last bits")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("decoder-buffers")
                    .nick("Decoder output buffers")
                    .blurb("Prompt-segmentation configs: decoder output sets alive at once. 2 = the selection of one decoder call overlaps the next call (faster, one more output set in memory: batch x queries x mask size); 1 = each selection finishes before the next call")
                    .minimum(1)
                    .maximum(2)
                    .default_value(2)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("sessions")
                    .nick("Inference sessions")
                    .blurb("Model instances (backend sessions) working on alternate batches, each with its own CUDA stream, output buffers and CUDA graphs: batch k+1 is submitted before the results of batch k are back, batches leave in order with up to this many in flight. On a GPU this keeps it busy between the small kernels of one session. Whole-frame models only (not operate-on=objects, prompt-segmentation configs or interval > 0). 1 = inference in the streaming thread")
                    .minimum(1)
                    .maximum(16)
                    .default_value(1)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("output-pool-size")
                    .nick("Output pool size")
                    .blurb("Output tensors (in batches) held downstream at most, per model output and per session: ONNX Runtime's and TensorRT's host output tensors (masks and prototypes that travel with the batch), TensorRT's output buffer sets with outputs on the GPU. When all are held, the next batch waits for one to come back (back-pressure, up to pool-timeout) instead of allocating more; a flush or stop ends the wait")
                    .minimum(1)
                    .maximum(64)
                    .default_value(8)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("pool-timeout")
                    .nick("Pool timeout")
                    .blurb("Milliseconds (counted while PLAYING) a batch waits for output tensors held downstream (see output-pool-size) before the element posts an error")
                    .minimum(1)
                    .maximum(3_600_000)
                    .default_value(crate::backend::DEFAULT_POOL_TIMEOUT.as_millis() as u32)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("prefer-nhwc")
                    .nick("Prefer NHWC")
                    .blurb("ONNX Runtime CUDA provider: run convolutions in NHWC layout (prefer_nhwc), faster on tensor cores above all for FP16 models. Ignored by other backends")
                    .default_value(false)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("cudnn-conv-algo-search", crate::backend::ConvAlgoChoice::OnnxRuntime)
                    .nick("cuDNN convolution algorithm search")
                    .blurb("ONNX Runtime CUDA provider (cudnn_conv_algo_search): exhaustive (benchmark every algorithm once per shape), heuristic or default; onnxruntime = ONNX Runtime's default (exhaustive). Ignored by other backends")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("cudnn-conv-use-max-workspace", crate::backend::ProviderSwitch::Default)
                    .nick("cuDNN maximum workspace")
                    .blurb("ONNX Runtime CUDA provider (cudnn_conv_use_max_workspace): true lets cuDNN take the workspace its fastest algorithm wants, false limits it; default = ONNX Runtime's default (true). Ignored by other backends")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("use-tf32", crate::backend::ProviderSwitch::Default)
                    .nick("TF32")
                    .blurb("ONNX Runtime CUDA provider (use_tf32): true allows TF32 tensor-core math in FP32 models, false forces full FP32; default = ONNX Runtime's default (true). Ignored by other backends")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("d2h-bytes")
                    .nick("Device-to-host bytes")
                    .blurb("Bytes of inference results copied from the GPU to the host since start, on GPU backends whose outputs stay on the device: YOLO candidates, dense summaries (and maps with download-dense); prompt-segmentation configs: decoder outputs (or, with host outputs, those to be copied): boxes, scores and the masks of kept queries")
                    .read_only()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb("Batches inferred since start (batches), the time spent inferring them (infer-ns, mean-infer-ns: per batch, in the session threads when sessions > 1, so sessions overlap), the time the streaming thread waited for results (wait-ns, mean-wait-ns: all sessions busy or batches drained before an event; near zero when the element is not the slowest stage), and the output pools (output-pool-peak: most output tensors of one pool held at once, never more than output-pool-size; output-pool-waits: batches that waited for one to come back)")
                    .read_only()
                    .build(),
                glib::ParamSpecString::builder("backend-in-use")
                    .nick("Backend in use")
                    .blurb("Backend actually running the model (set once started)")
                    .read_only()
                    .build(),
            ];
            props.extend(crate::gpu_element::gpu_properties());
            props
        });
        PROPS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        if self.gpu_set_property(pspec.name(), value) {
            return;
        }
        let mut s = self.settings.lock().unwrap();
        let text = || {
            value
                .get::<Option<String>>()
                .ok()
                .flatten()
                .filter(|t| !t.is_empty())
        };
        let positive = |v: f32| (v >= 0.0).then_some(v);
        match pspec.name() {
            "model" => s.model = text().map(PathBuf::from),
            "model-name" => s.model_name = text(),
            "labels" => s.labels = text().map(PathBuf::from),
            "parser" => s.parser = value.get::<ParserChoice>().expect("type checked upstream").kind(),
            "backend" => {
                s.backend = value
                    .get::<BackendChoice>()
                    .expect("type checked upstream")
                    .kind()
            }
            "conf-threshold" => s.conf_threshold = positive(value.get().expect("type checked upstream")),
            "nms-iou" => s.nms_iou = positive(value.get().expect("type checked upstream")),
            "max-batch" => {
                let v: u32 = value.get().expect("type checked upstream");
                s.max_batch = (v > 0).then_some(v as usize);
            }
            "interval" => s.interval = value.get().expect("type checked upstream"),
            "keep-input" => s.keep_input = value.get().expect("type checked upstream"),
            "fp16" => s.fp16 = value.get().expect("type checked upstream"),
            "fixed-batch" => s.fixed_batch = value.get().expect("type checked upstream"),
            "cuda-graph" => s.cuda_graph = value.get().expect("type checked upstream"),
            "download-dense" => s.download_dense = value.get().expect("type checked upstream"),
            "engine-cache-dir" => s.engine_cache_dir = text().map(PathBuf::from),
            "threads" => s.threads = value.get::<u32>().expect("type checked upstream") as usize,
            "operate-on" => s.operate_on = value.get().expect("type checked upstream"),
            "operate-on-model" => s.objects.model = text(),
            "operate-on-classes" => {
                let t = text().unwrap_or_default();
                s.invalid.retain(|(k, _)| *k != "operate-on-classes");
                match crate::trtpreprocess::parse_sources(&t) {
                    Some(v) => s.objects.classes = v,
                    None => s.invalid.push((
                        "operate-on-classes",
                        format!("operate-on-classes must be comma-separated class ids, got '{t}'"),
                    )),
                }
            }
            "min-object-size" => s.objects.min_size = value.get().expect("type checked upstream"),
            "max-objects-per-batch" => {
                s.objects.max_objects = value.get::<u32>().expect("type checked upstream") as usize
            }
            "route" => s.route = value.get().expect("type checked upstream"),
            "decoder-buffers" => {
                s.decoder_buffers = Some(value.get::<u32>().expect("type checked upstream") as usize)
            }
            "sessions" => s.sessions = value.get::<u32>().expect("type checked upstream") as usize,
            "output-pool-size" => {
                s.output_pool_size = value.get::<u32>().expect("type checked upstream") as usize
            }
            "pool-timeout" => s.pool_timeout_ms = value.get().expect("type checked upstream"),
            "prefer-nhwc" => s.cuda_provider.prefer_nhwc = value.get().expect("type checked upstream"),
            "cudnn-conv-algo-search" => {
                let v: crate::backend::ConvAlgoChoice = value.get().expect("type checked upstream");
                s.cuda_provider.conv_algo_search = v.get();
            }
            "cudnn-conv-use-max-workspace" => {
                let v: crate::backend::ProviderSwitch = value.get().expect("type checked upstream");
                s.cuda_provider.conv_max_workspace = v.get();
            }
            "use-tf32" => {
                let v: crate::backend::ProviderSwitch = value.get().expect("type checked upstream");
                s.cuda_provider.tf32 = v.get();
            }
            _ => unreachable!("unknown property {}", pspec.name()),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        if let Some(v) = self.gpu_property(pspec.name()) {
            return v;
        }
        let s = self.settings.lock().unwrap();
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        match pspec.name() {
            "model" => path(&s.model).to_value(),
            "model-name" => s.model_name.to_value(),
            "labels" => path(&s.labels).to_value(),
            "parser" => ParserChoice::from_kind(s.parser).to_value(),
            "backend" => BackendChoice::from_kind(s.backend).to_value(),
            "conf-threshold" => s.conf_threshold.unwrap_or(-1.0).to_value(),
            "nms-iou" => s.nms_iou.unwrap_or(-1.0).to_value(),
            "max-batch" => (s.max_batch.unwrap_or(0) as u32).to_value(),
            "interval" => s.interval.to_value(),
            "keep-input" => s.keep_input.to_value(),
            "fp16" => s.fp16.to_value(),
            "fixed-batch" => s.fixed_batch.to_value(),
            "cuda-graph" => s.cuda_graph.to_value(),
            "download-dense" => s.download_dense.to_value(),
            "engine-cache-dir" => path(&s.engine_cache_dir).to_value(),
            "threads" => (s.threads as u32).to_value(),
            "operate-on" => s.operate_on.to_value(),
            "operate-on-model" => s.objects.model.to_value(),
            "operate-on-classes" => s
                .objects
                .classes
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(",")
                .to_value(),
            "min-object-size" => s.objects.min_size.to_value(),
            "max-objects-per-batch" => (s.objects.max_objects as u32).to_value(),
            "route" => s.route.to_value(),
            "decoder-buffers" => (s.decoder_buffers.unwrap_or(2) as u32).to_value(),
            "sessions" => (s.sessions.max(1) as u32).to_value(),
            "output-pool-size" => (if s.output_pool_size == 0 {
                8
            } else {
                s.output_pool_size as u32
            })
            .to_value(),
            "pool-timeout" => (if s.pool_timeout_ms == 0 {
                crate::backend::DEFAULT_POOL_TIMEOUT.as_millis() as u32
            } else {
                s.pool_timeout_ms
            })
            .to_value(),
            "prefer-nhwc" => s.cuda_provider.prefer_nhwc.to_value(),
            "cudnn-conv-algo-search" => {
                crate::backend::ConvAlgoChoice::of(s.cuda_provider.conv_algo_search).to_value()
            }
            "cudnn-conv-use-max-workspace" => {
                crate::backend::ProviderSwitch::of(s.cuda_provider.conv_max_workspace).to_value()
            }
            "use-tf32" => crate::backend::ProviderSwitch::of(s.cuda_provider.tf32).to_value(),
            "d2h-bytes" => self.stats.d2h_bytes.load(Ordering::Relaxed).to_value(),
            "stats" => {
                let mut st = self.stats.structure();
                let pools = self.pools.stats();
                st.set("output-pool-peak", pools.peak as u32);
                st.set("output-pool-waits", pools.waits);
                st.to_value()
            }
            "backend-in-use" => self.stats.backend_in_use.lock().unwrap().to_value(),
            _ => unreachable!("unknown property {}", pspec.name()),
        }
    }
}

impl GstObjectImpl for TrtInfer {}

impl ElementImpl for TrtInfer {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "TrtVision inference",
                "Filter/Analyzer/Video",
                "Runs a model once per batch (ONNX Runtime or TensorRT) on the frames or on crops of detected objects, and attaches per-frame, per-object or dense results",
                "gst-trtvision developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static T: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(crate::transform::batch_pad_templates);
        T.as_ref()
    }

    fn set_context(&self, context: &gst::Context) {
        self.cuda_set_context(context)
    }

    fn change_state(&self, t: gst::StateChange) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        match t {
            // A batch waiting for output tensors or a session must not block the stop.
            gst::StateChange::PausedToReady => self.set_flushing(true),
            gst::StateChange::ReadyToPaused => {
                self.set_flushing(false);
                self.pools.set_timing(false);
            }
            // Waits count towards pool-timeout only while PLAYING (a paused sink holds
            // buffers on purpose).
            gst::StateChange::PausedToPlaying => self.pools.set_timing(true),
            gst::StateChange::PlayingToPaused => self.pools.set_timing(false),
            _ => {}
        }
        self.cuda_change_state(t)
    }
}

impl CudaContextElement for TrtInfer {
    fn cuda_context(&self) -> &crate::gpu_element::ElementCudaContext {
        &self.cuda_ctx
    }

    fn debug_category(&self) -> gst::DebugCategory {
        *CAT
    }

    /// Only object crops run on the GPU: frame-mode inference needs no context.
    fn wants_cuda(&self) -> bool {
        self.settings.lock().unwrap().operate_on == OperateOn::Objects
    }

    fn cpu_fallback_note(&self) -> &'static str {
        "object crops on the CPU only"
    }
}

impl TrtInfer {
    /// Flushing on or off for every wait of the element (pools and sessions).
    fn set_flushing(&self, on: bool) {
        self.pools.set_flushing(on);
        self.flight_wake.set_flushing(on);
    }

    /// A batch without results: an element error, or quietly dropped when a flush or stop
    /// cut its wait short.
    fn failed(&self, failure: BatchFailure) -> gst::FlowError {
        match failure {
            BatchFailure::Flushing => {
                gst::debug!(CAT, imp = self, "batch dropped: flushing");
                gst::FlowError::Flushing
            }
            BatchFailure::Failed(e) => {
                gst::element_imp_error!(self, gst::StreamError::Failed, ("Inference failed: {}", e));
                gst::FlowError::Error
            }
        }
    }

    /// Opens `settings.sessions` contexts of the model and starts their threads.
    fn open_sessions(&self, settings: &InferSettings) -> Result<Loaded, String> {
        let n = settings.sessions;
        Sessions::check(settings, n)?;
        let mut contexts = Vec::with_capacity(n);
        for _ in 0..n {
            let ctx = InferContext::open(settings).map_err(|e| e.to_string())?;
            #[cfg(feature = "cuda")]
            let ctx = {
                let mut ctx = ctx;
                ctx.set_cuda_context(self.cuda_ctx.get(), true);
                ctx
            };
            contexts.push(ctx);
        }
        gst::info!(
            CAT,
            imp = self,
            "model '{}' ({}) on {}, parser {:?}, {n} sessions on alternate batches",
            contexts[0].model,
            contexts[0].config.model_path().display(),
            contexts[0].backend_name(),
            contexts[0].parser
        );
        let sessions = Sessions::start(contexts, self.flight_wake.clone())
            .map_err(|e| format!("cannot start the inference session threads: {e}"))?;
        Ok(Loaded::Sessions(Box::new(sessions)))
    }

    /// A batch back from a session: its warning posted, its error an element error.
    fn finish(&self, done: Inferred) -> Result<gst::Buffer, gst::FlowError> {
        self.stats.d2h_bytes.fetch_add(done.d2h_bytes, Ordering::Relaxed);
        self.stats.inferred(done.run_ns);
        if let Some(why) = done.warning {
            gst::element_imp_warning!(self, gst::LibraryError::Settings, ("{}", why));
        }
        done.result.map(|()| done.buffer).map_err(|f| self.failed(f))
    }

    fn lost(&self, e: FlightError) -> gst::FlowError {
        self.failed(match e {
            FlightError::Flushing => BatchFailure::Flushing,
            lost => BatchFailure::Failed(lost.to_string()),
        })
    }

    /// Pushes every batch still in flight downstream, oldest first (EOS, serialized events
    /// and drain queries must not overtake them); `push` false drops them (after a flush:
    /// collected even while the waits are still cut short).
    fn drain_sessions(&self, push: bool) -> Result<(), gst::FlowError> {
        loop {
            let next = {
                let mut guard = self.context.lock().unwrap();
                let Some(Loaded::Sessions(s)) = guard.as_mut() else {
                    return Ok(());
                };
                match s.ready.take() {
                    Some(r) => Some(r),
                    None => {
                        let since = std::time::Instant::now();
                        let r = if push {
                            s.flight().wait_oldest()
                        } else {
                            s.flight().collect_oldest()
                        }
                        .map_err(|e| self.lost(e))?;
                        self.stats.waited(since);
                        r
                    }
                }
            };
            let Some(done) = next else { return Ok(()) };
            if push {
                let buf = self.finish(done)?;
                gst_base::prelude::BaseTransformExtManual::src_pad(&*self.obj()).push(buf)?;
            }
        }
    }
}

impl BaseTransformImpl for TrtInfer {
    const MODE: gst_base::subclass::BaseTransformMode = gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let mut settings = self.settings.lock().unwrap().clone();
        settings.log_target = crate::backend::LogTarget::new(&*self.obj());
        settings.pools = self.pools.clone();
        // device-id, else the device of the pipeline's CUDA context, else device 0.
        settings.device_id = self.cuda_ctx.device().map_or(0, |d| d as i32);
        let load_err = |e: &dyn std::fmt::Display| {
            gst::error_msg!(
                gst::LibraryError::Init,
                ("Could not load the model: {}", e),
                ["settings: {:?}", settings]
            )
        };
        let promptseg = settings
            .model
            .as_deref()
            .is_some_and(crate::config::promptseg::is_promptseg_file);
        if promptseg && settings.sessions > 1 {
            return Err(load_err(&format!(
                "sessions={} applies to single models, not prompt-segmentation configs; set sessions=1",
                settings.sessions
            )));
        }
        let loaded = if promptseg {
            if settings.parser.is_some() || settings.labels.is_some() || settings.nms_iou.is_some() {
                gst::warning!(
                    CAT,
                    imp = self,
                    "parser, labels and nms-iou do not apply to prompt-segmentation configs (classes come from [[classes]])"
                );
            }
            let p = PromptSegContext::open(&settings).map_err(|e| load_err(&e))?;
            gst::info!(
                CAT,
                imp = self,
                "prompt segmentation '{}': {} classes, route {}, {} decoder output buffer(s), on {}",
                p.engine.model,
                p.engine.config.classes.len(),
                p.route.name(),
                p.engine.decoder_buffers(),
                p.engine.backend_name()
            );
            Loaded::PromptSeg(Box::new(p))
        } else if settings.sessions > 1 {
            self.open_sessions(&settings).map_err(|e| load_err(&e))?
        } else {
            let ctx = InferContext::open(&settings).map_err(|e| load_err(&e))?;
            gst::info!(
                CAT,
                imp = self,
                "model '{}' ({}) on {}, parser {:?}",
                ctx.model,
                ctx.config.model_path().display(),
                ctx.backend_name(),
                ctx.parser
            );
            #[cfg(feature = "cuda")]
            let ctx = {
                let mut ctx = ctx;
                ctx.set_cuda_context(self.cuda_ctx.get(), true);
                ctx
            };
            Loaded::Model(Box::new(ctx))
        };
        self.stats.reset();
        *self.stats.backend_in_use.lock().unwrap() = Some(loaded.backend_name());
        *self.context.lock().unwrap() = Some(loaded);
        Ok(())
    }

    fn submit_input_buffer(
        &self,
        is_discont: bool,
        inbuf: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let mut guard = self.context.lock().unwrap();
        let Some(Loaded::Sessions(s)) = guard.as_mut() else {
            drop(guard);
            return self.parent_submit_input_buffer(is_discont, inbuf);
        };
        // All sessions busy: the oldest result is waited for here and output next.
        let since = std::time::Instant::now();
        if let Some(done) = s.flight().submit(inbuf).map_err(|e| self.lost(e))? {
            s.ready = Some(done);
        }
        self.stats.waited(since);
        Ok(gst::FlowSuccess::Ok)
    }

    fn generate_output(
        &self,
    ) -> Result<gst_base::subclass::base_transform::GenerateOutputSuccess, gst::FlowError> {
        use gst_base::subclass::base_transform::GenerateOutputSuccess;
        let mut guard = self.context.lock().unwrap();
        let Some(Loaded::Sessions(s)) = guard.as_mut() else {
            drop(guard);
            return self.parent_generate_output();
        };
        let done = match s.ready.take() {
            Some(d) => Some(d),
            None => s.flight().try_oldest().map_err(|e| self.lost(e))?,
        };
        drop(guard);
        match done {
            Some(d) => self.finish(d).map(GenerateOutputSuccess::Buffer),
            None => Ok(GenerateOutputSuccess::NoOutput),
        }
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        // FLUSH_START comes from another thread while the streaming thread may wait for
        // output tensors or a session with the context lock held: wake it, lock nothing.
        if event.type_() == gst::EventType::FlushStart {
            self.set_flushing(true);
            return self.parent_sink_event(event);
        }
        let sessions = event.is_serialized()
            && matches!(self.context.lock().unwrap().as_ref(), Some(Loaded::Sessions(_)));
        let flush_stop = event.type_() == gst::EventType::FlushStop;
        if flush_stop {
            // What the flush left in flight is dropped before the waits work again.
            self.flight_wake.set_flushing(false);
        }
        if sessions {
            if let Err(e) = self.drain_sessions(!flush_stop) {
                gst::debug!(
                    CAT,
                    imp = self,
                    "batches in flight not pushed before {:?}: {e:?}",
                    event.type_()
                );
            }
        }
        if flush_stop {
            self.pools.set_flushing(false);
        }
        self.parent_sink_event(event)
    }

    fn query(&self, direction: gst::PadDirection, query: &mut gst::QueryRef) -> bool {
        if direction == gst::PadDirection::Sink && query.type_() == gst::QueryType::Drain {
            if let Err(e) = self.drain_sessions(true) {
                gst::debug!(
                    CAT,
                    imp = self,
                    "batches in flight not pushed before the drain query: {e:?}"
                );
            }
        }
        if self.cuda_query(query) {
            return true;
        }
        BaseTransformImplExt::parent_query(self, direction, query)
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *self.context.lock().unwrap() = None;
        *self.stats.backend_in_use.lock().unwrap() = None;
        Ok(())
    }

    fn transform_ip(&self, buf: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        let mut meta = crate::transform::batch_meta(self.obj().upcast_ref(), buf)?;
        // Messages are collected under the context lock and posted once it is dropped: a
        // sync bus handler may read this element's properties.
        let mut warning = None;
        let mut guard = self.context.lock().unwrap();
        let loaded = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        let result = match loaded {
            Loaded::Model(ctx) => {
                let since = std::time::Instant::now();
                let r = ctx.process(meta.batch_mut()).map_err(BatchFailure::from);
                self.stats.inferred(since.elapsed().as_nanos() as u64);
                warning = ctx.take_backend_warning();
                #[cfg(feature = "cuda")]
                if let Some(why) = ctx.take_gpu_crops_failure() {
                    gst::warning!(CAT, imp = self, "{why}: object crops on the CPU from now on");
                }
                r
            }
            Loaded::Sessions(_) => Err(BatchFailure::Failed(
                "batches of several sessions take the submit/generate path, not transform_ip".into(),
            )),
            Loaded::PromptSeg(p) => {
                let r = p.process(meta.batch_mut()).map_err(|e| {
                    if e.is_flushing() {
                        BatchFailure::Flushing
                    } else {
                        BatchFailure::Failed(e.to_string())
                    }
                });
                let st = p.engine.last_round();
                gst::debug!(
                    CAT,
                    imp = self,
                    "batch {}: route {}, {} encoder / {} decoder calls, {} detections, d2h {} bytes, prompts uploaded {} bytes",
                    meta.batch().batch_number,
                    p.route.name(),
                    st.encoder_calls,
                    st.decoder_calls,
                    st.detections,
                    st.d2h_bytes,
                    st.h2d_prompt_bytes
                );
                r
            }
        };
        self.stats.d2h_bytes.store(loaded.d2h_bytes(), Ordering::Relaxed);
        drop(guard);
        if let Some(why) = warning {
            gst::element_imp_warning!(self, gst::LibraryError::Settings, ("{}", why));
        }
        result.map_err(|f| self.failed(f))?;
        Ok(gst::FlowSuccess::Ok)
    }
}
