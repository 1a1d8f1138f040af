//! Element glue of the preprocessing: settings from properties or a model config, frame
//! mapping, the tensor pool, and the batch tensor with per-row transforms.

use crate::batch::{Batch, BatchTensor};
use crate::config::{ColorOrder, InputDType, ModelConfig, PreprocessConfig, ResizeMode};
use crate::gpu_element::CudaContextElement;
use crate::ops::preprocess::{self, Scratch};
use crate::tensor::pool::{PoolSet, PoolWaitError};
use crate::tensor::{HostTensorPool, Tensor};
use crate::transform::Device;
use crate::video::FrameReader;
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "trtpreprocess",
        gst::DebugColorFlags::empty(),
        Some("trtvision preprocessing"),
    )
});

const DEFAULT_MODEL_NAME: &str = "model";
/// Tensors out at once by default (`pool-size`).
pub const DEFAULT_POOL_SIZE: u32 = 8;
/// Most tensors out at once that `pool-size` accepts.
pub const MAX_POOL_SIZE: u32 = 64;
/// How long a batch waits by default for a tensor to come back (`pool-timeout`, ms).
pub const DEFAULT_POOL_TIMEOUT_MS: u32 = 10_000;

#[derive(Debug, Clone)]
struct Settings {
    config_file: Option<String>,
    model_name: String,
    input_name: String,
    pre: PreprocessConfig,
    sources: Vec<u32>,
    /// Prepare the tensor on the GPU when the frames are CUDA memory.
    use_gpu: bool,
    /// Tensors out at once at most.
    pool_size: u32,
    /// Longest wait for a tensor to come back, ms (0: no limit).
    pool_timeout_ms: u32,
}

impl Settings {
    fn pool_timeout(&self) -> Option<Duration> {
        (self.pool_timeout_ms > 0).then(|| Duration::from_millis(self.pool_timeout_ms.into()))
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            config_file: None,
            model_name: DEFAULT_MODEL_NAME.into(),
            input_name: "images".into(),
            pre: PreprocessConfig::default(),
            sources: Vec::new(),
            use_gpu: true,
            pool_size: DEFAULT_POOL_SIZE,
            pool_timeout_ms: DEFAULT_POOL_TIMEOUT_MS,
        }
    }
}

/// What exists between start and stop.
struct State {
    model: Arc<str>,
    input_name: String,
    pre: PreprocessConfig,
    sources: Vec<u32>,
    /// The CUDA pool's bound and timeout (the host pool has its own copy).
    #[cfg(feature = "cuda")]
    pool_size: usize,
    #[cfg(feature = "cuda")]
    pool_timeout: Option<Duration>,
    pool: HostTensorPool,
    scratch: Vec<Scratch>,
    /// The CUDA preprocessor, created on the first batch of CUDA frames.
    #[cfg(feature = "cuda")]
    gpu: Option<crate::ops::preprocess::cuda::CudaPreprocessor>,
    /// Set when the CUDA path is off (`device=cpu`) or failed once: the CPU path is used.
    #[cfg(feature = "cuda")]
    gpu_disabled: bool,
}

#[derive(Default)]
pub struct TrtPreprocess {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    /// CUDA context shared with the pipeline through `gst.cuda.context`.
    cuda_ctx: crate::gpu_element::ElementCudaContext,
    /// The tensor pools (host and device): flushes and state changes wake their waiters.
    pools: PoolSet,
    /// Batches prepared on the GPU / on the CPU.
    gpu_batches: AtomicU64,
    cpu_batches: AtomicU64,
}

fn parse_floats(s: &str) -> Option<[f32; 3]> {
    let v: Vec<f32> = s
        .split([',', ' '])
        .filter(|t| !t.is_empty())
        .map(|t| t.parse().ok())
        .collect::<Option<_>>()?;
    match v.as_slice() {
        [a] => Some([*a; 3]),
        [a, b, c] => Some([*a, *b, *c]),
        _ => None,
    }
}

fn format_floats(v: &[f32; 3]) -> String {
    format!("{},{},{}", v[0], v[1], v[2])
}

/// Parses a list of source indices such as `0,2,5` (empty = all sources).
pub fn parse_sources(s: &str) -> Option<Vec<u32>> {
    s.split([',', ' '])
        .filter(|t| !t.is_empty())
        .map(|t| t.trim().parse().ok())
        .collect()
}

impl TrtPreprocess {
    /// A pool wait that ended without a tensor: flushing ends the batch quietly, a
    /// timeout is an element error naming the pool's size and who holds the tensors.
    fn pool_failed(&self, e: PoolWaitError) -> gst::FlowError {
        match e {
            PoolWaitError::Flushing => gst::FlowError::Flushing,
            PoolWaitError::Timeout { limit, waited } => {
                gst::element_imp_error!(
                    self,
                    gst::ResourceError::Busy,
                    (
                        "All {} tensors of the pool (pool-size={}) were still held downstream after {} ms (pool-timeout): a tensor comes back when the trtinfer of its model has run (or, without one, when downstream drops the batch): a queue between trtpreprocess and trtinfer longer than pool-size, an inference slower than pool-timeout, or a stalled sink keeps them. Raise pool-size, shorten the queue, or raise pool-timeout (0 waits without a limit).",
                        limit,
                        limit,
                        waited.as_millis()
                    )
                );
                gst::FlowError::Error
            }
        }
    }

    fn run(&self, state: &mut State, batch: &mut Batch) -> Result<(), gst::FlowError> {
        let rows: Vec<usize> = batch
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| state.sources.is_empty() || state.sources.contains(&s.pad_index()))
            .map(|(i, _)| i)
            .collect();
        batch.inputs.retain(|t| t.model != state.model);
        if rows.is_empty() {
            return Ok(());
        }
        let pre = state.pre;
        #[cfg(feature = "cuda")]
        if let Some((tensor, transforms)) = self.run_cuda(state, batch, &rows)? {
            batch.inputs.push(BatchTensor {
                model: state.model.clone(),
                tensor,
                slots: rows,
                transforms,
            });
            self.gpu_batches.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let shape = vec![rows.len(), 3, pre.height as usize, pre.width as usize];
        let len = shape.iter().product::<usize>() * pre.dtype.size();
        // Waits (bounded) while downstream holds pool-size tensors.
        let mut bytes = state.pool.try_acquire(len).map_err(|e| self.pool_failed(e))?;
        let mut frames = Vec::with_capacity(rows.len());
        for &i in &rows {
            let slot = &batch.slots[i];
            let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(slot.buffer.as_ref(), &slot.info)
                .map_err(|_| {
                    gst::element_imp_error!(
                        self,
                        gst::StreamError::Failed,
                        (
                            "Could not map frame {} of source {} for reading",
                            slot.frame_number,
                            slot.pad_index()
                        )
                    );
                    gst::FlowError::Error
                })?;
            frames.push(frame);
        }
        let mut readers = Vec::with_capacity(frames.len());
        for f in &frames {
            readers.push(FrameReader::new(f).map_err(|e| {
                gst::element_imp_error!(self, gst::StreamError::Format, ("Unsupported frame: {}", e));
                gst::FlowError::NotNegotiated
            })?);
        }
        let transforms: Vec<_> = readers
            .iter()
            .map(|r| pre.transform(r.width(), r.height()))
            .collect();
        preprocess::fill_batch(
            &pre,
            &readers,
            &transforms,
            bytes.as_mut_slice(),
            &mut state.scratch,
        );
        drop(readers);
        drop(frames);
        batch.inputs.push(BatchTensor {
            model: state.model.clone(),
            tensor: Tensor::host(state.input_name.clone(), pre.dtype, shape, bytes),
            slots: rows,
            transforms,
        });
        self.cpu_batches.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(feature = "cuda")]
impl TrtPreprocess {
    /// One kernel launch for the whole batch when every frame is CUDA memory of the shared
    /// context; `None` sends the batch to the CPU path (frames in system memory or of
    /// another context, CUDA unavailable). When downstream holds every device tensor it
    /// waits for one (bounded), never taking the CPU path for that.
    #[allow(clippy::type_complexity)]
    fn run_cuda(
        &self,
        state: &mut State,
        batch: &Batch,
        rows: &[usize],
    ) -> Result<Option<(Tensor, Vec<crate::geometry::LetterboxTransform>)>, gst::FlowError> {
        use crate::cuda::{self, CudaError};
        if state.gpu_disabled {
            return Ok(None);
        }
        let Some(ctx) = self.cuda_ctx.get() else {
            return Ok(None);
        };
        let mut maps = Vec::with_capacity(rows.len());
        for &i in rows {
            let s = &batch.slots[i];
            match cuda::map_cuda_frame(s.buffer.as_ref(), &s.info) {
                Ok(m) => match cuda::placement::place_frame(&ctx, &m, self.cuda_ctx.allow_peer_copy()) {
                    Ok(cuda::placement::FramePlacement::Direct) => maps.push(m),
                    Ok(cuda::placement::FramePlacement::Download) => {
                        gst::debug!(CAT, imp = self, "frame of another CUDA context: CPU path");
                        return Ok(None);
                    }
                    Err(e) => {
                        gst::element_imp_error!(
                            self,
                            gst::StreamError::Failed,
                            (
                                "Cannot preprocess the frame of source {}: {}",
                                s.source.pad_index,
                                e
                            )
                        );
                        return Err(gst::FlowError::Error);
                    }
                },
                Err(CudaError::NotCudaMemory) => return Ok(None),
                Err(e) => {
                    gst::warning!(CAT, imp = self, "{e}: CPU path");
                    return Ok(None);
                }
            }
        }
        if state.gpu.as_ref().is_none_or(|g| g.max_batch() < rows.len()) {
            match crate::ops::preprocess::cuda::CudaPreprocessor::for_gst(
                &ctx,
                &state.pre,
                batch.batch_size.max(rows.len()),
            ) {
                Ok(mut g) => {
                    g.set_tensor_name(state.input_name.clone());
                    g.configure_pool(state.pool_size, state.pool_timeout);
                    self.pools.add(g.pool_control());
                    gst::info!(CAT, imp = self, "CUDA preprocessing on {}", g.arch());
                    state.gpu = Some(g);
                }
                Err(e) => {
                    gst::warning!(
                        CAT,
                        imp = self,
                        "CUDA preprocessing unavailable, CPU path from now on: {e}"
                    );
                    state.gpu_disabled = true;
                    return Ok(None);
                }
            }
        }
        let frames: Vec<_> = maps.iter().map(|m| m.frame()).collect();
        let transforms: Vec<_> = frames
            .iter()
            .map(|f| state.pre.transform(f.width(), f.height()))
            .collect();
        let Some(gpu) = state.gpu.as_mut() else {
            return Ok(None);
        };
        match gpu.run(&frames, &transforms) {
            Ok(t) => Ok(Some((t, transforms))),
            Err(CudaError::PoolWait(e)) => Err(self.pool_failed(e)),
            Err(e) => {
                gst::warning!(CAT, imp = self, "{e}: CPU path");
                Ok(None)
            }
        }
    }
}

#[glib::object_subclass]
impl ObjectSubclass for TrtPreprocess {
    const NAME: &'static str = "GstTrtPreprocess";
    type Type = super::TrtPreprocess;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for TrtPreprocess {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let d = PreprocessConfig::default();
            let mut props = vec![
                glib::ParamSpecString::builder("config-file")
                    .nick("Model config file")
                    .blurb("Model config TOML (engines/README.md); when set, its [model] name and [input] section replace the properties below")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("model-name")
                    .nick("Model name")
                    .blurb("Name of the model the tensor is prepared for; trtinfer elements pick their input by this name")
                    .default_value(Some(DEFAULT_MODEL_NAME))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("input-name")
                    .nick("Input tensor name")
                    .blurb("Name of the model input the tensor feeds")
                    .default_value(Some("images"))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("width")
                    .nick("Width")
                    .blurb("Model input width in pixels")
                    .minimum(1)
                    .maximum(16384)
                    .default_value(d.width)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("height")
                    .nick("Height")
                    .blurb("Model input height in pixels")
                    .minimum(1)
                    .maximum(16384)
                    .default_value(d.height)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("dtype", InputDType::F32)
                    .nick("Tensor type")
                    .blurb("Element type of the tensor")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("resize", ResizeMode::Letterbox)
                    .nick("Resize mode")
                    .blurb("How a frame is fitted into the model input")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("pad-value")
                    .nick("Padding value")
                    .blurb("Pixel value (0-255, before normalisation) of the letterbox padding")
                    .maximum(255)
                    .default_value(d.pad_value as u32)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("color-order", ColorOrder::Rgb)
                    .nick("Colour order")
                    .blurb("Plane order of the tensor")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecFloat::builder("scale")
                    .nick("Scale")
                    .blurb("Factor applied to 0-255 pixels before mean and std: value = (pixel * scale - mean) / std")
                    .minimum(f32::MIN)
                    .maximum(f32::MAX)
                    .default_value(d.scale)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("mean")
                    .nick("Mean")
                    .blurb("Per-plane mean subtracted after scaling, as 'a,b,c' (or one value for all)")
                    .default_value(Some("0,0,0"))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("std")
                    .nick("Standard deviation")
                    .blurb("Per-plane divisor applied after the mean, as 'a,b,c' (or one value for all); never 0")
                    .default_value(Some("1,1,1"))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("device", Device::Auto)
                    .nick("Device")
                    .blurb("Where the tensor is prepared: auto (on the GPU, in device memory, when the frames are CUDA memory and the plugin was built with CUDA; else on the CPU) or cpu (always a host tensor, e.g. for a CPU inference backend)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("sources")
                    .nick("Sources")
                    .blurb("Comma-separated source indices (trtmux sink pad numbers) to prepare; empty = all sources")
                    .default_value(Some(""))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("pool-size")
                    .nick("Pool size")
                    .blurb("Tensors (batches) held downstream at most, host or device: when all are held, the next batch waits for one to come back (back-pressure) instead of allocating more")
                    .minimum(1)
                    .maximum(MAX_POOL_SIZE)
                    .default_value(DEFAULT_POOL_SIZE)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("pool-timeout")
                    .nick("Pool timeout")
                    .blurb("Milliseconds a batch waits for a tensor to come back while the pipeline is PLAYING before the element posts an error; 0 = wait without a limit (a flush or stop still ends the wait)")
                    .maximum(3_600_000)
                    .default_value(DEFAULT_POOL_TIMEOUT_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("gpu-batches")
                    .nick("GPU batches")
                    .blurb("Batches prepared on the GPU (CUDA path) since start")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("cpu-batches")
                    .nick("CPU batches")
                    .blurb("Batches prepared on the CPU since start (frames in system memory, device=cpu, or the CUDA path unavailable)")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt::builder("pool-peak")
                    .nick("Pool peak")
                    .blurb("Most tensors of one pool held downstream at once since start (never more than pool-size)")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("pool-waits")
                    .nick("Pool waits")
                    .blurb("Batches that waited for a tensor to come back since start")
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
        let text = || value.get::<Option<String>>().ok().flatten().unwrap_or_default();
        let invalid = |what: &str, v: String| {
            gst::warning!(CAT, imp = self, "ignoring invalid {what} '{v}'");
        };
        match pspec.name() {
            "config-file" => s.config_file = value.get().expect("type checked upstream"),
            "model-name" => s.model_name = text(),
            "input-name" => s.input_name = text(),
            "width" => s.pre.width = value.get().expect("type checked upstream"),
            "height" => s.pre.height = value.get().expect("type checked upstream"),
            "dtype" => s.pre.dtype = value.get::<InputDType>().expect("type checked upstream").dtype(),
            "resize" => s.pre.resize = value.get().expect("type checked upstream"),
            "pad-value" => s.pre.pad_value = value.get::<u32>().expect("type checked upstream") as u8,
            "color-order" => s.pre.color = value.get().expect("type checked upstream"),
            "scale" => s.pre.scale = value.get().expect("type checked upstream"),
            "mean" => match parse_floats(&text()) {
                Some(v) => s.pre.mean = v,
                None => invalid("mean", text()),
            },
            "std" => match parse_floats(&text()) {
                Some(v) => s.pre.std = v,
                None => invalid("std", text()),
            },
            "device" => s.use_gpu = value.get::<Device>().expect("type checked upstream").allows_gpu(),
            "sources" => match parse_sources(&text()) {
                Some(v) => s.sources = v,
                None => invalid("source list", text()),
            },
            "pool-size" => s.pool_size = value.get().expect("type checked upstream"),
            "pool-timeout" => s.pool_timeout_ms = value.get().expect("type checked upstream"),
            _ => unreachable!("unknown property {}", pspec.name()),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        if let Some(v) = self.gpu_property(pspec.name()) {
            return v;
        }
        // Statistics: never behind the state lock (a batch may be waiting for a tensor).
        match pspec.name() {
            "gpu-batches" => return self.gpu_batches.load(Ordering::Relaxed).to_value(),
            "cpu-batches" => return self.cpu_batches.load(Ordering::Relaxed).to_value(),
            "pool-peak" => return (self.pools.stats().peak as u32).to_value(),
            "pool-waits" => return self.pools.stats().waits.to_value(),
            _ => {}
        }
        let s = self.settings.lock().unwrap();
        match pspec.name() {
            "config-file" => s.config_file.to_value(),
            "model-name" => s.model_name.to_value(),
            "input-name" => s.input_name.to_value(),
            "width" => s.pre.width.to_value(),
            "height" => s.pre.height.to_value(),
            "dtype" => InputDType::from_dtype(s.pre.dtype).unwrap_or_default().to_value(),
            "resize" => s.pre.resize.to_value(),
            "pad-value" => (s.pre.pad_value as u32).to_value(),
            "color-order" => s.pre.color.to_value(),
            "scale" => s.pre.scale.to_value(),
            "mean" => format_floats(&s.pre.mean).to_value(),
            "std" => format_floats(&s.pre.std).to_value(),
            "device" => Device::from_gpu(s.use_gpu).to_value(),
            "sources" => s
                .sources
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(",")
                .to_value(),
            "pool-size" => s.pool_size.to_value(),
            "pool-timeout" => s.pool_timeout_ms.to_value(),
            _ => unreachable!("unknown property {}", pspec.name()),
        }
    }
}

impl GstObjectImpl for TrtPreprocess {}

impl ElementImpl for TrtPreprocess {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "TrtVision preprocessing",
                "Filter/Converter/Video",
                "Converts the frames of a batch into one normalised NCHW model input tensor (letterbox or stretch)",
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
            // A batch waiting for a tensor must not block the stop.
            gst::StateChange::PausedToReady => self.pools.set_flushing(true),
            gst::StateChange::ReadyToPaused => {
                self.pools.set_flushing(false);
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

impl CudaContextElement for TrtPreprocess {
    fn cuda_context(&self) -> &crate::gpu_element::ElementCudaContext {
        &self.cuda_ctx
    }

    fn debug_category(&self) -> gst::DebugCategory {
        *CAT
    }
}

impl BaseTransformImpl for TrtPreprocess {
    const MODE: gst_base::subclass::BaseTransformMode = gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let mut s = self.settings.lock().unwrap().clone();
        if let Some(path) = s.config_file.clone() {
            let invalid = |e: crate::config::ConfigError| {
                gst::error_msg!(
                    gst::ResourceError::Settings,
                    ("Invalid model config {}: {}", path, e)
                )
            };
            let (name, input_name, pre) = if crate::config::promptseg::is_promptseg_file(path.as_ref()) {
                let cfg = crate::config::promptseg::PromptSegConfig::from_file(&path).map_err(invalid)?;
                (cfg.name, cfg.input_name, cfg.preprocess)
            } else {
                let cfg = ModelConfig::from_file(&path).map_err(invalid)?;
                (cfg.name, cfg.input_name, cfg.preprocess)
            };
            s.model_name = name;
            if let Some(n) = input_name {
                s.input_name = n;
            }
            s.pre = pre;
        }
        s.pre.validate().map_err(|e| {
            gst::error_msg!(
                gst::ResourceError::Settings,
                ("Invalid preprocessing settings: {}", e)
            )
        })?;
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(8);
        gst::info!(
            CAT,
            imp = self,
            "model '{}' input {}x{} {}",
            s.model_name,
            s.pre.width,
            s.pre.height,
            s.pre.dtype.name()
        );
        let pool_size = s.pool_size as usize;
        let pool_timeout = s.pool_timeout();
        let pool = HostTensorPool::bounded(pool_size, pool_timeout);
        self.pools.add(pool.control());
        self.gpu_batches.store(0, Ordering::Relaxed);
        self.cpu_batches.store(0, Ordering::Relaxed);
        *self.state.lock().unwrap() = Some(State {
            model: Arc::from(s.model_name.as_str()),
            input_name: s.input_name,
            pre: s.pre,
            sources: s.sources,
            #[cfg(feature = "cuda")]
            pool_size,
            #[cfg(feature = "cuda")]
            pool_timeout,
            pool,
            scratch: (0..threads).map(|_| Scratch::default()).collect(),
            #[cfg(feature = "cuda")]
            gpu: None,
            #[cfg(feature = "cuda")]
            gpu_disabled: !s.use_gpu,
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *self.state.lock().unwrap() = None;
        Ok(())
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        // Flushes reach a batch waiting for a tensor (it holds the stream lock).
        match event.view() {
            gst::EventView::FlushStart(_) => self.pools.set_flushing(true),
            gst::EventView::FlushStop(_) => self.pools.set_flushing(false),
            _ => {}
        }
        self.parent_sink_event(event)
    }

    fn query(&self, direction: gst::PadDirection, query: &mut gst::QueryRef) -> bool {
        if self.cuda_query(query) {
            return true;
        }
        BaseTransformImplExt::parent_query(self, direction, query)
    }

    fn transform_ip(&self, buf: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        let mut meta = crate::transform::batch_meta(self.obj().upcast_ref(), buf)?;
        let mut guard = self.state.lock().unwrap();
        let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        self.run(state, meta.batch_mut())?;
        Ok(gst::FlowSuccess::Ok)
    }
}
