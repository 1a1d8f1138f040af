//! Element glue of trtinfer: start/stop of the inference context, batches in and out,
//! events, errors. The property table is in `imp/properties.rs`.

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

mod properties;

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
