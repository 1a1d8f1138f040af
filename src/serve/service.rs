//! The service's pipeline and the cameras added to and removed from it while it plays.
//!
//! ```text
//! camera-<id> ─┐
//! camera-<id> ─┼─ trtmux ─ (trtpreprocess ─ trtinfer)… ─ [trttracker] ─ trtmaskselect
//!          …  ─┘   ─ [trtoverlay] ─ [trtjsonexport] ─ tee ─ queue ─ trtdemux ─ branch-<n>…
//!                                                         └ queue ─ trttiler ─ encoder ─ mp4
//! ```
//!
//! Adding a camera requests trtmux pad `sink_<n>`, adds the source and brings it to the
//! pipeline's state; the first frame of source `n` out of trtdemux creates `src_<n>`, which
//! gets a branch (`queue ! fakesink`, or `queue ! encoder ! mp4mux ! filesink` when the
//! camera is recorded). Removing one stops its source (nothing more enters trtmux),
//! releases the trtmux pad (trtmux batches what was queued and then ends the source, so
//! trtdemux sends EOS on `src_<n>`), and once the EOS has gone through the branch
//! (recording finalised) removes the branch. The other cameras are never paused.
//!
//! Here: the pipeline's construction, the service's state and its HTTP control; adding and
//! removing cameras and their branches is in `service/cameras.rs`.

use super::camera::{redact_credentials, CameraUri};
use super::config::{chain_for, validate_camera_id, EncoderChoice, ServeConfig};
use super::gpu::GpuMemory;
use super::http::{AddCamera, ApiError, CameraControl, CameraInfo, RecordRequest};
use super::metrics::{CameraSeries, Metrics};
use super::stats::CameraStats;
use crate::batch::BatchMeta;
use gst::prelude::*;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a removal waits for the camera's branch to finish (recording finalised).
const BRANCH_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A camera of the running pipeline.
pub struct Camera {
    pub id: String,
    /// URI without credentials.
    pub uri: String,
    pub kind: CameraUri,
    pub pad_index: u32,
    pub record: bool,
    source: gst::Element,
    mux_pad: gst::Pad,
    /// The trtmux of the camera's chain.
    mux: gst::Element,
    stats: Mutex<CameraStats>,
    series: CameraSeries,
    /// File of the running event recording and the number of finished ones.
    recording: Mutex<(Option<String>, u64)>,
}

impl Camera {
    fn info(&self) -> CameraInfo {
        let (recording, recordings) = self.recording.lock().unwrap().clone();
        let mut s = self.stats.lock().unwrap();
        let fps = s.fps(Instant::now());
        self.series.fps.set(fps);
        let ms = |q| s.latency_quantile(q).map(|v| (v * 1e6).round() / 1e3);
        CameraInfo {
            id: self.id.clone(),
            uri: self.uri.clone(),
            state: s.state.clone(),
            fps: (fps * 100.0).round() / 100.0,
            latency_p50_ms: ms(0.5),
            latency_p99_ms: ms(0.99),
            frames: s.frames,
            gaps: s.gaps,
            reconnects: s.reconnects,
            source: self.pad_index,
            record: self.record,
            recording,
            recordings,
        }
    }
}

/// Per-camera output after trtdemux.
struct Branch {
    bin: gst::Bin,
    demux_pad: gst::Pad,
}

#[derive(Default)]
struct Branches {
    by_index: HashMap<u32, Branch>,
}

/// The pipeline and its cameras.
pub struct Service {
    pipeline: gst::Pipeline,
    /// One trtmux per chain: per GPU of `[service] gpus`, else one.
    muxes: Vec<gst::Element>,
    /// The GPU of each chain (empty: one chain on the pipeline's context).
    chain_gpus: Vec<u32>,
    demux: gst::Element,
    config: ServeConfig,
    metrics: Arc<Metrics>,
    /// NVML, when there is a driver to read GPU memory from.
    gpu: Option<GpuMemory>,
    cameras: Mutex<BTreeMap<String, Arc<Camera>>>,
    /// Cameras by trtmux pad, including removed ones whose last frames are still on the way.
    by_index: Mutex<HashMap<u32, Arc<Camera>>>,
    branches: Mutex<Branches>,
    branch_gone: Condvar,
    /// Serialises additions and removals.
    changes: Mutex<()>,
    next_index: AtomicU32,
    stopping: AtomicBool,
    /// Warnings already printed (bounded).
    reported: Mutex<std::collections::HashSet<String>>,
    started: Instant,
    /// Where the recording events go.
    events: super::events::EventOutputs,
}

fn make(factory: &str) -> Result<gst::Element, String> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| format!("the GStreamer element {factory} is not installed"))
}

/// Encoder, parser and MP4 muxer; `fragment_ms` as [`crate::recording::mp4_muxer`].
fn encoder_chain(choice: EncoderChoice, bitrate: u32, fragment_ms: u32) -> Result<Vec<gst::Element>, String> {
    let nv = gst::ElementFactory::find("nvh264enc").is_some();
    let use_nv = match choice {
        EncoderChoice::Auto => nv,
        EncoderChoice::Nvh264 => true,
        EncoderChoice::X264 => false,
    };
    let mut chain = Vec::new();
    if use_nv {
        let enc = make("nvh264enc")?;
        enc.set_property("bitrate", bitrate);
        chain.push(enc);
    } else {
        // CUDA frames (NVDEC cameras) reach the CPU encoder through one download.
        if gst::ElementFactory::find("cudadownload").is_some() {
            chain.push(make("cudadownload")?);
        }
        chain.push(make("videoconvert")?);
        let enc = make("x264enc")?;
        enc.set_property("bitrate", bitrate);
        enc.set_property_from_str("speed-preset", "ultrafast");
        enc.set_property_from_str("tune", "zerolatency");
        chain.push(enc);
    }
    chain.push(make("h264parse")?);
    chain.push(crate::recording::mp4_muxer(fragment_ms)?);
    Ok(chain)
}

/// A file sink; `fragmented`: each MP4 fragment reaches the file when the muxer writes it.
fn file_sink(location: &std::path::Path, fragmented: bool) -> Result<gst::Element, String> {
    let sink = make("filesink")?;
    sink.set_property("location", location.display().to_string());
    sink.set_property("sync", false);
    sink.set_property("async", false);
    if fragmented {
        sink.set_property_from_str("buffer-mode", "unbuffered");
    }
    Ok(sink)
}

/// GPUs NVML sees (0 without a driver), for `[service] gpus = "all"`.
fn gpu_count(nvml: Option<&GpuMemory>) -> u32 {
    nvml.map_or(0, GpuMemory::device_count)
}

/// Whether the elements can run on a GPU here (the cargo feature `cuda` and a driver).
fn cuda_present() -> bool {
    #[cfg(feature = "cuda")]
    return crate::cuda::cuda_available();
    #[cfg(not(feature = "cuda"))]
    false
}

fn link_chain(bin: &gst::Bin, chain: &[gst::Element]) -> Result<(), String> {
    bin.add_many(chain).map_err(|e| e.to_string())?;
    gst::Element::link_many(chain).map_err(|e| format!("cannot link the output chain: {e}"))
}

mod cameras;

impl Service {
    /// Builds the pipeline with the config's cameras (not started).
    pub fn new(config: ServeConfig) -> Result<Arc<Self>, String> {
        let pipeline = gst::Pipeline::with_name("trtvision-serve");
        let mut metrics = Metrics::new();
        let gpu = match GpuMemory::open() {
            Ok(g) => {
                metrics.enable_gpu();
                Some(g)
            }
            Err(why) => {
                eprintln!("trtvision-serve: no GPU memory in /metrics: {why}");
                None
            }
        };
        let metrics = Arc::new(metrics);
        let chain_gpus = config.service.chain_gpus(gpu_count(gpu.as_ref()));
        if chain_gpus.len() > 1 && !cuda_present() {
            // The GPU numbers are then only the names of the chains.
            eprintln!(
                "trtvision-serve: no CUDA GPU here: the {} chains of [service] gpus {chain_gpus:?} all run on the CPU",
                chain_gpus.len()
            );
        }

        // Pad numbers of the configured cameras, for the models' `sources` (trtmux pad
        // numbers are unique across the chains).
        let indices: HashMap<&str, u32> = config
            .cameras
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id.as_str(), i as u32))
            .collect();
        // One trtmux -> (trtpreprocess -> trtinfer) per model chain per GPU.
        let mut muxes = Vec::new();
        let mut heads = Vec::new();
        for chain_gpu in chain_gpus
            .iter()
            .map(|&g| Some(g))
            .chain(chain_gpus.is_empty().then_some(None))
        {
            let mux = make("trtmux")?;
            mux.set_property("batch-size", config.batch.batch_size);
            mux.set_property("batched-push-timeout", config.batch.batched_push_timeout);
            let mut chain = vec![mux.clone()];
            for m in &config.models {
                let pre = make("trtpreprocess")?;
                let path = m.config.display().to_string();
                pre.set_property("config-file", &path);
                if let Some(cams) = &m.cameras {
                    let list: Vec<String> = cams
                        .iter()
                        .filter_map(|c| indices.get(c.as_str()))
                        .map(u32::to_string)
                        .collect();
                    pre.set_property("sources", list.join(","));
                }
                let infer = make("trtinfer")?;
                infer.set_property("model", &path);
                if let Some(g) = chain_gpu {
                    for e in [&pre, &infer] {
                        e.set_property(crate::gpu_element::DEVICE_ID, g as i32);
                    }
                }
                let name = crate::config::ModelConfig::from_file(&m.config)
                    .map_err(|e| format!("model {path}: {e}"))?
                    .name
                    .clone();
                Self::time_inference(&infer, metrics.model(&name));
                chain.extend([pre, infer]);
            }
            Self::measure_batches(&mux, &metrics);
            link_chain(pipeline.upcast_ref(), &chain)?;
            heads.push(chain.last().expect("chain has trtmux").clone());
            muxes.push(mux);
        }
        // The chains' batches merge into one analytics and output chain (source ids stay
        // unique: they are the trtmux pad numbers).
        let mut chain = Vec::new();
        if heads.len() > 1 {
            let funnel = make("funnel")?;
            pipeline.add(&funnel).map_err(|e| e.to_string())?;
            for h in &heads {
                h.link(&funnel)
                    .map_err(|e| format!("cannot merge the GPU chains: {e}"))?;
            }
            chain.push(funnel);
        } else {
            chain.push(heads[0].clone());
        }
        if config.tracker.enabled {
            chain.push(make("trttracker")?);
        }
        for rule in &config.recording.rules {
            chain.push(super::events::rule_element(rule)?);
        }
        chain.push(make("trtmaskselect")?);
        let out = &config.output;
        if out.mosaic.is_some() || out.recordings.is_some() {
            chain.push(make("trtoverlay")?);
        }
        if let Some(json) = &out.json {
            let export = make("trtjsonexport")?;
            export.set_property("location", json.display().to_string());
            chain.push(export);
        }
        let demux = make("trtdemux")?;
        let demux_queue = make("queue")?;
        pipeline.add_many(&chain[1..]).map_err(|e| e.to_string())?;
        gst::Element::link_many(&chain).map_err(|e| format!("cannot link the output chain: {e}"))?;
        pipeline
            .add_many([&demux_queue, &demux])
            .map_err(|e| e.to_string())?;
        demux_queue.link(&demux).map_err(|e| e.to_string())?;
        let last = chain.last().expect("chain has a head").clone();
        // Outputs of the whole batch besides trtdemux: the mosaic and the broker.
        let mut outputs: Vec<Vec<gst::Element>> = Vec::new();
        if let Some(mosaic) = &out.mosaic {
            if let Some(dir) = mosaic.parent() {
                std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
            let queue = make("queue")?;
            let tiler = make("trttiler")?;
            tiler.set_property("width", out.mosaic_width.unwrap_or(1280));
            tiler.set_property("height", out.mosaic_height.unwrap_or(720));
            tiler.set_property("columns", out.mosaic_columns.unwrap_or(0));
            tiler.set_property("rows", out.mosaic_rows.unwrap_or(0));
            let mut mchain = vec![queue, tiler];
            // Fragmented like the recordings. The batches this queue holds while the encoder
            // catches up carry no input tensor (trtinfer returned it to the pool).
            mchain.extend(encoder_chain(
                out.encoder,
                out.bitrate.unwrap_or(4000),
                crate::recording::DEFAULT_FRAGMENT_MS,
            )?);
            mchain.push(file_sink(mosaic, true)?);
            outputs.push(mchain);
        }
        if let Some(uri) = &out.broker {
            outputs.push(vec![make("queue")?, super::events::broker_element(uri)?]);
        }
        if outputs.is_empty() {
            last.link(&demux_queue).map_err(|e| e.to_string())?;
        } else {
            let tee = make("tee")?;
            pipeline.add(&tee).map_err(|e| e.to_string())?;
            last.link(&tee).map_err(|e| e.to_string())?;
            tee.link(&demux_queue).map_err(|e| e.to_string())?;
            for branch in &outputs {
                link_chain(pipeline.upcast_ref(), branch)?;
                tee.link(&branch[0]).map_err(|e| e.to_string())?;
            }
        }
        if let Some(dir) = &out.recordings {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let events = super::events::EventOutputs::open(&config.output)?;

        let service = Arc::new(Self {
            pipeline,
            muxes,
            chain_gpus,
            demux: demux.clone(),
            config,
            metrics,
            gpu,
            cameras: Mutex::new(BTreeMap::new()),
            by_index: Mutex::new(HashMap::new()),
            branches: Mutex::new(Branches::default()),
            branch_gone: Condvar::new(),
            changes: Mutex::new(()),
            next_index: AtomicU32::new(0),
            stopping: AtomicBool::new(false),
            reported: Mutex::new(Default::default()),
            started: Instant::now(),
            events,
        });
        let weak = Arc::downgrade(&service);
        demux.connect_pad_added(move |_, pad| {
            if let Some(s) = weak.upgrade() {
                if let Err(e) = s.attach_branch(pad) {
                    gst::element_error!(
                        s.pipeline,
                        gst::CoreError::Pad,
                        ("Cannot attach the output of {}: {e}", pad.name())
                    );
                }
            }
        });
        for c in service.config.cameras.clone() {
            service.add_camera(c).map_err(|e| e.message)?;
        }
        Ok(service)
    }

    /// The pipeline (for its bus and state).
    pub fn pipeline(&self) -> &gst::Pipeline {
        &self.pipeline
    }

    /// Whether the service is shutting down (branches then stay until the pipeline stops).
    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Whether `text` is reported for the first time (at most 256 distinct texts are kept).
    pub fn first_report(&self, text: &str) -> bool {
        let mut seen = self.reported.lock().unwrap();
        if seen.contains(text) {
            return false;
        }
        if seen.len() < 256 {
            seen.insert(text.to_owned());
        }
        true
    }

    /// Whether a shutdown began.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    fn time_inference(infer: &gst::Element, histogram: prometheus_client::metrics::histogram::Histogram) {
        let entered = Arc::new(Mutex::new(VecDeque::<Instant>::new()));
        let (sink, src) = (infer.static_pad("sink"), infer.static_pad("src"));
        let (Some(sink), Some(src)) = (sink, src) else {
            return;
        };
        let e = entered.clone();
        sink.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            let mut q = e.lock().unwrap();
            if q.len() >= 64 {
                q.pop_front();
            }
            q.push_back(Instant::now());
            gst::PadProbeReturn::Ok
        });
        src.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            if let Some(t) = entered.lock().unwrap().pop_front() {
                histogram.observe(t.elapsed().as_secs_f64());
            }
            gst::PadProbeReturn::Ok
        });
    }

    fn measure_batches(mux: &gst::Element, metrics: &Metrics) {
        let Some(src) = mux.static_pad("src") else { return };
        let fill = metrics.batch_fill.clone();
        src.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(meta) = info.buffer().and_then(|b| b.meta::<BatchMeta>()) {
                let b = meta.batch();
                if b.batch_size > 0 {
                    fill.observe(b.slots.len() as f64 / b.batch_size as f64);
                }
            }
            gst::PadProbeReturn::Ok
        });
    }

    fn running_time(&self) -> Option<gst::ClockTime> {
        let clock = self.pipeline.clock()?;
        clock.time().checked_sub(self.pipeline.base_time()?)
    }

    /// The camera whose source posted `msg`, if any.
    pub fn camera_of_message(&self, msg: &gst::Message) -> Option<Arc<Camera>> {
        let mut obj = msg.src()?.clone();
        loop {
            let parent = obj.parent()?;
            if parent == *self.pipeline.upcast_ref::<gst::Object>() {
                break;
            }
            obj = parent;
        }
        self.by_index
            .lock()
            .unwrap()
            .values()
            .find(|c| c.source.upcast_ref::<gst::Object>() == &obj)
            .cloned()
    }

    /// Takes a `trtcamsrc-status` message into the camera's state and reconnect count.
    pub fn camera_status(&self, s: &gst::StructureRef) {
        let Ok(id) = s.get::<String>("camera-id") else {
            return;
        };
        let Some(camera) = self.cameras.lock().unwrap().get(&id).cloned() else {
            return;
        };
        let mut stats = camera.stats.lock().unwrap();
        if let Ok(state) = s.get::<String>("state") {
            if !state.starts_with("recording") {
                stats.state = state;
            }
        }
        stats.reason = s.get::<String>("reason").ok();
        let reconnects = s
            .get::<u32>("reconnects")
            .map(u64::from)
            .or_else(|_| s.get::<u64>("reconnects"))
            .or_else(|_| s.get::<i32>("reconnects").map(|v| v.max(0) as u64))
            .ok();
        if let Some(r) = reconnects.filter(|r| *r > stats.reconnects) {
            camera.series.reconnects.inc_by(r - stats.reconnects);
            stats.reconnects = r;
        }
    }

    /// Takes a `trtcamsrc-recording` message: the camera's recording state, and the event
    /// to the configured outputs.
    pub fn recording_event(&self, s: &gst::StructureRef) {
        let Some(event) = crate::recording::RecordingEvent::from_structure(s) else {
            return;
        };
        // A camera being removed ends its recording after leaving the list of cameras.
        let camera = self
            .by_index
            .lock()
            .unwrap()
            .values()
            .find(|c| c.id == event.camera_id)
            .cloned();
        let (index, frames) = match &camera {
            Some(c) => {
                let mut r = c.recording.lock().unwrap();
                match event.state {
                    crate::recording::RecordingState::Started => r.0 = Some(event.location.clone()),
                    _ => {
                        if r.0.as_deref() == Some(event.location.as_str()) {
                            r.0 = None;
                        }
                        if event.state == crate::recording::RecordingState::Finished {
                            r.1 += 1;
                        }
                    }
                }
                (c.pad_index, c.stats.lock().unwrap().frames)
            }
            None => {
                gst::warning!(
                    gst::CAT_DEFAULT,
                    "recording event of unknown camera {}",
                    event.camera_id
                );
                return;
            }
        };
        self.events.publish(index, frames, &event);
    }

    /// Waits until the event messages reached the broker, at most `timeout`; whether they did.
    pub fn flush_events(&self, timeout: Duration) -> bool {
        self.events.flush(timeout)
    }

    /// A camera's source failed on its own: it leaves the pipeline, the others go on.
    pub fn camera_failed(self: &Arc<Self>, camera: &Arc<Camera>, error: &str) {
        eprintln!("camera {} failed and is removed: {error}", camera.id);
        {
            let mut s = camera.stats.lock().unwrap();
            s.state = "failed".into();
            s.reason = Some(error.to_owned());
        }
        let (weak, id) = (Arc::downgrade(self), camera.id.clone());
        let _ = std::thread::Builder::new()
            .name("remove-camera".into())
            .spawn(move || {
                if let Some(s) = weak.upgrade() {
                    let _guard = s.changes.lock().unwrap();
                    let _ = s.remove_locked(&id);
                }
            });
    }

    /// Paths created by the service's outputs, for the startup message.
    pub fn outputs(&self) -> Vec<PathBuf> {
        let o = &self.config.output;
        [&o.json, &o.mosaic, &o.recordings]
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }
}

impl CameraControl for Arc<Service> {
    fn health(&self) -> Result<serde_json::Value, ApiError> {
        let (_, state, _) = self.pipeline.state(gst::ClockTime::ZERO);
        let body = serde_json::json!({
            "status": if state == gst::State::Playing { "ok" } else { "starting" },
            "pipeline": format!("{state:?}").to_lowercase(),
            "cameras": self.cameras.lock().unwrap().len(),
            "uptime_s": self.started.elapsed().as_secs(),
            // Per-camera pads: one trtmux sink pad per camera, one trtdemux src pad per
            // camera that delivered a frame; removed cameras leave none behind.
            "pads": {
                "trtmux_sink": self.muxes.iter().map(|m| u32::from(m.num_sink_pads())).sum::<u32>(),
                "trtdemux_src": self.demux.num_src_pads(),
            },
        });
        if state == gst::State::Playing {
            Ok(body)
        } else {
            Err(ApiError::new(
                503,
                format!("the pipeline is {state:?}, not playing"),
            ))
        }
    }

    fn cameras(&self) -> Vec<CameraInfo> {
        let list: Vec<_> = self.cameras.lock().unwrap().values().cloned().collect();
        list.iter().map(|c| c.info()).collect()
    }

    fn add_camera(&self, req: AddCamera) -> Result<CameraInfo, ApiError> {
        if self.stopping.load(Ordering::SeqCst) {
            return Err(ApiError::new(503, "the service is shutting down"));
        }
        let _guard = self.changes.lock().unwrap();
        self.add_locked(req).map(|c| c.info())
    }

    fn remove_camera(&self, id: &str) -> Result<(), ApiError> {
        if self.stopping.load(Ordering::SeqCst) {
            return Err(ApiError::new(503, "the service is shutting down"));
        }
        let _guard = self.changes.lock().unwrap();
        self.remove_locked(id)
    }

    fn record(&self, id: &str, req: RecordRequest) -> Result<String, ApiError> {
        let camera = self
            .cameras
            .lock()
            .unwrap()
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::new(404, format!("there is no camera \"{id}\"")))?;
        if camera.source.factory().is_none_or(|f| f.name() != "trtcamsrc") {
            return Err(ApiError::new(
                409,
                format!("camera \"{id}\" is a synthetic scene:// camera: event recording needs a trtcamsrc camera (rtsp, http or file)"),
            ));
        }
        let out = &self.config.output;
        if out.events.is_none() && out.recordings.is_none() {
            return Err(ApiError::new(
                409,
                "event recording is off: set events (or recordings) in the [output] section",
            ));
        }
        let file = camera
            .source
            .emit_by_name::<String>("record-by", &[&"api", &req.before, &req.after]);
        if file.is_empty() {
            return Err(ApiError::new(
                503,
                format!("camera \"{id}\" could not start a recording (no keyframe received yet; GET /cameras or the recording events say why)"),
            ));
        }
        camera.recording.lock().unwrap().0 = Some(file.clone());
        Ok(file)
    }

    fn metrics(&self) -> String {
        let cams: Vec<_> = self.cameras.lock().unwrap().values().cloned().collect();
        for c in cams {
            // fps is a gauge over a window: bring it up to date for the scrape.
            let _ = c.info();
        }
        if let Some(g) = &self.gpu {
            self.metrics.set_gpus(&g.sample());
        }
        self.metrics.encode()
    }
}
