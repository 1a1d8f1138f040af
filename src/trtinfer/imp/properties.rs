//! trtinfer's property table: declarations (`gst-inspect-1.0 trtinfer` reads them), and the
//! setters and getters over the element's settings and statistics.

use super::*;

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
                    .blurb("Output tensors (in batches) held downstream at most, per model output and per session: ONNX Runtime's and TensorRT's host output tensors (masks and prototypes that travel with the batch), TensorRT's output buffer sets with outputs on the GPU, ONNX Runtime's output sets with cuda-graph=true. A batch in chunks (larger than max-batch) may hold this many per chunk. When all are held, the next batch waits for one to come back (back-pressure, up to pool-timeout) instead of allocating more; a flush or stop ends the wait")
                    .minimum(1)
                    .maximum(64)
                    .default_value(8)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("pool-timeout")
                    .nick("Pool timeout")
                    .blurb("Milliseconds a batch waits for output tensors held downstream (see output-pool-size) while the pipeline is PLAYING before the element posts an error; 0 = wait without a limit (a flush or stop still ends the wait)")
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
            "pool-timeout" => {
                s.pool_timeout =
                    crate::backend::PoolTimeout::from_millis(value.get().expect("type checked upstream"))
            }
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
            "pool-timeout" => s.pool_timeout.millis().to_value(),
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
