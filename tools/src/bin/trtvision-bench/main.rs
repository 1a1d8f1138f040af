//! trtvision-bench: runs an N-camera trtvision pipeline for a fixed number of frames per
//! camera and writes one JSON record in the format of `bench/results/` (see
//! benches/README.md and the bench schema).
//!
//! Everything reported is measured in this process:
//! - throughput: frames reaching the sinks / (last frame at a sink − first measured frame
//!   leaving a source), monotonic clock;
//! - latency: per frame, source src-pad probe → end probe (trtdemux output fakesinks, or the
//!   batch-level sink pad where every slot of the batch is one frame), keyed by
//!   (camera, buffer offset);
//! - CPU: getrusage(RUSAGE_SELF) user+system time over the same window / wall time;
//! - RSS: /proc/self/status VmRSS sampled every 100 ms;
//! - per-stage time per batch: src-pad probes on trtmux and every analytics element, which
//!   run in one streaming thread (no queues), so consecutive probe times bracket each
//!   element's work on a batch;
//! - trtmux overhead: CPU-time and wall-time difference between N `source ! queue ! trtmux
//!   ! fakesink` and N `source ! queue ! fakesink`, alternated over several repetitions.

#[path = "common/cli.rs"]
mod cli;
#[path = "common/gpumon.rs"]
mod gpumon;
#[path = "common/procstats.rs"]
mod procstats;

use procstats::{cpu_model_and_cores, cpu_time_s};
#[path = "common/soak.rs"]
mod soak;

use gst::prelude::*;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use json::Value;

const USAGE: &str = "\
usage: trtvision-bench [options]
  --cameras N              number of cameras (default 8)
  --frames F               frames per camera (default 120)
  --warmup W               first W frames of every camera are run but not measured (default 5)
  --width W --height H     frame size (default 640x480)
  --fps N                  framerate of the synthetic scene (default 30)
  --format NV12|I420|RGBA  source format (default NV12)
  --batch-size B           trtmux batch-size (default N)
  --push-timeout US        trtmux batched-push-timeout in µs (default: element default)
  --model PATH.toml|none   model config (default none)
  --backend NAME           onnxruntime-cpu | onnxruntime-cuda | ... (default onnxruntime-cpu)
  --stages LIST            comma list of preprocess,infer,depth-preprocess,depth-infer,landmarks,
                           maskselect,overlay,jsonexport
                           (default preprocess,infer,maskselect,overlay with a model, none without)
  --depth-model PATH.toml  dense model of the depth-* stages (default engines/shapes-depth.toml)
  --depth-sources LIST     cameras the depth model runs on (trtpreprocess sources, default 0)
  --landmarks-model PATH.toml
                           secondary model of the landmarks stage, run on the crops of the
                           detections of --model (default engines/shapes-landmarks.toml)
  --scenario multimodel|cascade
                           multimodel: 3 cameras, detector (--model, default
                           engines/shapes-yolo.toml) on all + depth on camera 0, overlay with the
                           colour map, what multimodel-3cam; cascade: 8 cameras, detector then
                           landmark model on every detected object, what cascade-8cam
                           (explicit options override these defaults)
  --sink demux|tiler|fakesink  end of the pipeline (default demux)
  --live                   sources is-live=true, sinks sync=true
  --source scene|files DIR scene: trtscenesrc; files: DIR/cam<i>.mp4 (filesrc ! qtdemux !
                           h264parse ! avdec_h264, or nvh264dec with --nvdec)
  --nvdec                  use nvh264dec for --source files
  --decoder NAME           software decoder for --source files without --nvdec (default avdec_h264)
  --nvdec-memory cuda|auto caps after nvh264dec: cuda = force video/x-raw(memory:CUDAMemory) (default),
                           auto = let negotiation decide
  --infer-props STR        extra properties of the main trtinfer, separated by spaces or commas,
                           e.g. cuda-graph=true,max-batch=8
  --pace realtime|none|Nx  files: 'realtime' paces each decoded stream to its timestamps, 'Nx'
                           (e.g. 4x, 0.5x) at N times that rate (timestamps divided by N)
                           (identity sync=true after the decoder, like a live camera; sinks stay sync=false)
  --encode x264|none       after trtdemux, per camera: queue ! [cudadownload !] videoconvert !
                           x264enc speed-preset=ultrafast ! fakesink (sink=demux only)
  --pcie                   integrate GPU PCIe RX (host->device) / TX (device->host) over the measured
                           window (NVML, else nvidia-smi dmon): h2d/d2h_bytes_per_frame (null without)
  --device-masks           trtmaskselect download-masks=false: masks computed on the GPU stay there (drawn
                           by trtoverlay on the GPU, not in the metadata)
  --gpu-sample / --no-gpu-sample
                           sample device-wide VRAM during the main run (default: on for GPU runs)
  --reference decode-only|sources-only|none
                           also run the same sources straight into fakesinks (default none)
  --trtmux-overhead        also measure trtmux overhead (extra keys)
  --overhead-frames F      frames per camera for the overhead runs (default max(frames, 600))
  --overhead-reps R        repetitions of each overhead pipeline (default 5)
  --what NAME              scenario name; 'trtmux-overhead' runs only the overhead measurement
  --device-name STR        default: 'cpu: <model name> x<cores>'
  --out FILE               write the JSON here (default stdout)
  --timeout S              per-pipeline timeout in seconds (default 600; at least duration + 120 with --duration)
  --duration S             soak: run for S seconds instead of --frames. Scene sources (need --live) make
                           S x fps frames; file cameras loop (seek back to the start) until S seconds have
                           passed, then finish the current pass. RSS (and VRAM on GPU runs) sampled every
                           second; drift = least-squares slope after --drift-warmup
  --drift-warmup S         soak: seconds at the start left out of the drift fits (default duration / 5)
";

#[derive(Clone, Copy, Debug, PartialEq)]
enum SinkKind {
    Demux,
    Tiler,
    Fakesink,
}

#[derive(Clone, Debug)]
enum SourceKind {
    Scene,
    Files(PathBuf),
}

#[derive(Clone, Debug)]
struct Opts {
    cameras: u32,
    frames: u64,
    warmup: u64,
    width: u32,
    height: u32,
    format: String,
    batch_size: Option<u32>,
    push_timeout: Option<u64>,
    model: Option<PathBuf>,
    backend: String,
    stages: Option<Vec<String>>,
    sink: SinkKind,
    live: bool,
    source: SourceKind,
    nvdec: bool,
    reference: Option<String>,
    trtmux_overhead: bool,
    overhead_frames: Option<u64>,
    overhead_reps: u32,
    what: Option<String>,
    device_name: Option<String>,
    out: Option<PathBuf>,
    timeout_s: u64,
    nvdec_cuda_caps: bool,
    pace: bool,
    /// Rate of `--pace` relative to the files' timestamps (1 = real time).
    pace_rate: f64,
    /// Extra properties of the main trtinfer (`--infer-props`).
    infer_props: String,
    encode: Option<String>,
    pcie: bool,
    /// trtmaskselect download-masks=false: masks stay on the GPU (drawn there).
    device_masks: bool,
    gpu_sample: Option<bool>,
    decoder: String,
    depth_model: PathBuf,
    depth_sources: String,
    landmarks_model: PathBuf,
    fps: u32,
    duration_s: Option<u64>,
    drift_warmup_s: Option<u64>,
}

/// Stages `--stages` accepts.
const STAGES: [&str; 8] = [
    "preprocess",
    "infer",
    "depth-preprocess",
    "depth-infer",
    "landmarks",
    "maskselect",
    "overlay",
    "jsonexport",
];

/// The engines/ folder with the default models of the scenarios: `./engines` when run from
/// a checkout's root, else the one of the checkout the binary was built in.
fn engines_dir() -> PathBuf {
    let here = PathBuf::from("engines");
    if here.join("shapes-yolo.toml").is_file() {
        return std::path::absolute(&here).unwrap_or(here);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("engines")
}

fn die(msg: &str) -> ! {
    eprintln!("trtvision-bench: {msg}\n{USAGE}");
    std::process::exit(2);
}

fn parse_args() -> Opts {
    let mut o = Opts {
        cameras: 8,
        frames: 120,
        warmup: 5,
        width: 640,
        height: 480,
        format: "NV12".into(),
        batch_size: None,
        push_timeout: None,
        model: None,
        backend: "onnxruntime-cpu".into(),
        stages: None,
        sink: SinkKind::Demux,
        live: false,
        source: SourceKind::Scene,
        nvdec: false,
        reference: None,
        trtmux_overhead: false,
        overhead_frames: None,
        overhead_reps: 5,
        what: None,
        device_name: None,
        out: None,
        timeout_s: 600,
        nvdec_cuda_caps: true,
        pace: false,
        pace_rate: 1.0,
        infer_props: String::new(),
        encode: None,
        pcie: false,
        device_masks: false,
        gpu_sample: None,
        decoder: "avdec_h264".into(),
        depth_model: engines_dir().join("shapes-depth.toml"),
        depth_sources: "0".into(),
        landmarks_model: engines_dir().join("shapes-landmarks.toml"),
        fps: 30,
        duration_s: None,
        drift_warmup_s: None,
    };
    let mut scenario: Option<String> = None;
    let mut cameras_set = false;
    let mut cli = cli::Cli::from_env(die);
    while let Some(a) = cli.next_opt() {
        match a.as_str() {
            "--cameras" => {
                o.cameras = cli.num(&a);
                cameras_set = true;
            }
            "--depth-model" => o.depth_model = PathBuf::from(cli.value(&a)),
            "--depth-sources" => o.depth_sources = cli.value(&a),
            "--landmarks-model" => o.landmarks_model = PathBuf::from(cli.value(&a)),
            "--scenario" => scenario = Some(cli.value(&a)),
            "--frames" => o.frames = cli.num(&a),
            "--warmup" => o.warmup = cli.num(&a),
            "--width" => o.width = cli.num(&a),
            "--height" => o.height = cli.num(&a),
            "--fps" => o.fps = cli.num(&a),
            "--duration" => o.duration_s = Some(cli.num(&a)),
            "--drift-warmup" => o.drift_warmup_s = Some(cli.num(&a)),
            "--format" => o.format = cli.value(&a).to_uppercase(),
            "--batch-size" => o.batch_size = Some(cli.num(&a)),
            "--push-timeout" => o.push_timeout = Some(cli.num(&a)),
            "--model" => {
                let m = cli.value(&a);
                o.model = if m == "none" { None } else { Some(PathBuf::from(m)) };
            }
            "--backend" => o.backend = cli.value(&a),
            "--stages" => {
                let s = cli.value(&a);
                o.stages = Some(
                    s.split(',')
                        .map(|x| x.trim().to_string())
                        .filter(|x| !x.is_empty() && x != "none")
                        .collect(),
                );
            }
            "--sink" => {
                o.sink = match cli.value(&a).as_str() {
                    "demux" => SinkKind::Demux,
                    "tiler" => SinkKind::Tiler,
                    "fakesink" => SinkKind::Fakesink,
                    s => die(&format!("--sink: unknown '{s}'")),
                }
            }
            "--live" => o.live = true,
            "--source" => {
                o.source = match cli.value(&a).as_str() {
                    "scene" => SourceKind::Scene,
                    "files" => SourceKind::Files(PathBuf::from(cli.value("--source files"))),
                    s => die(&format!("--source: unknown '{s}'")),
                }
            }
            "--nvdec" => o.nvdec = true,
            "--nvdec-memory" => {
                o.nvdec_cuda_caps = match cli.value(&a).as_str() {
                    "cuda" => true,
                    "auto" => false,
                    s => die(&format!("--nvdec-memory: unknown '{s}'")),
                }
            }
            // Commas separate properties too (the value then needs no quoting in scripts).
            "--infer-props" => o.infer_props = cli.value(&a).replace(',', " "),
            "--pace" => {
                let v = cli.value(&a);
                (o.pace, o.pace_rate) = match v.as_str() {
                    "realtime" => (true, 1.0),
                    "none" => (false, 1.0),
                    s => match s.strip_suffix('x').and_then(|n| n.parse::<f64>().ok()) {
                        Some(r) if r.is_finite() && r > 0.0 => (true, r),
                        _ => die(&format!(
                            "--pace: '{s}' is not realtime, none or a positive rate such as 4x"
                        )),
                    },
                }
            }
            "--encode" => {
                o.encode = match cli.value(&a).as_str() {
                    "x264" => Some("x264".into()),
                    "none" => None,
                    s => die(&format!("--encode: unknown '{s}' (x264 or none)")),
                }
            }
            "--pcie" => o.pcie = true,
            "--device-masks" => o.device_masks = true,
            "--decoder" => o.decoder = cli.value(&a),
            "--gpu-sample" => o.gpu_sample = Some(true),
            "--no-gpu-sample" => o.gpu_sample = Some(false),
            "--reference" => {
                let r = cli.value(&a);
                o.reference = if r == "none" { None } else { Some(r) };
            }
            "--trtmux-overhead" => o.trtmux_overhead = true,
            "--overhead-frames" => o.overhead_frames = Some(cli.num(&a)),
            "--overhead-reps" => o.overhead_reps = cli.num(&a),
            "--what" => o.what = Some(cli.value(&a)),
            "--device-name" => o.device_name = Some(cli.value(&a)),
            "--out" => o.out = Some(PathBuf::from(cli.value(&a))),
            "--timeout" => o.timeout_s = cli.num(&a),
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            _ => die(&format!("unknown option '{a}'")),
        }
    }
    if let Some(sc) = scenario {
        let (cameras, stages, what) = match sc.as_str() {
            "multimodel" => (
                3,
                "preprocess,infer,depth-preprocess,depth-infer,overlay",
                "multimodel-3cam",
            ),
            "cascade" => (8, "preprocess,infer,landmarks,overlay", "cascade-8cam"),
            s => die(&format!("--scenario: unknown '{s}' (multimodel or cascade)")),
        };
        if !cameras_set {
            o.cameras = cameras;
        }
        if o.stages.is_none() {
            o.stages = Some(stages.split(',').map(String::from).collect());
        }
        if o.model.is_none() {
            o.model = Some(engines_dir().join("shapes-yolo.toml"));
        }
        if o.what.is_none() {
            o.what = Some(what.into());
        }
    }
    if o.fps == 0 {
        die("--fps must be > 0");
    }
    if let Some(d) = o.duration_s {
        if d == 0 {
            die("--duration must be > 0");
        }
        if o.is_scene() {
            if !o.live {
                die("--duration with --source scene needs --live (real-time sources)");
            }
            // Frames the sources would make in that time (they run until sent EOS).
            o.frames = d * o.fps as u64 + o.warmup;
        }
        o.timeout_s = o.timeout_s.max(d + 120);
        if o.drift_warmup_s.is_some_and(|w| w >= d) {
            die("--drift-warmup must be shorter than --duration");
        }
    }
    if o.cameras == 0 || o.frames == 0 {
        die("--cameras and --frames must be > 0");
    }
    if o.warmup >= o.frames {
        die("--warmup must be smaller than --frames");
    }
    if o.encode.is_some() && o.sink != SinkKind::Demux {
        die("--encode needs --sink demux");
    }
    if o.pace && o.is_scene() {
        die("--pace realtime is for --source files (use --live for the synthetic scene)");
    }
    if let Some(s) = &o.stages {
        for st in s {
            if !STAGES.contains(&st.as_str()) {
                die(&format!("--stages: unknown stage '{st}'"));
            }
            if (st == "preprocess" || st == "infer" || st == "landmarks") && o.model.is_none() {
                die(&format!("--stages {st} needs --model"));
            }
        }
    }
    o
}

impl Opts {
    fn batch_size(&self) -> u32 {
        self.batch_size.unwrap_or(self.cameras)
    }
    fn stages(&self) -> Vec<String> {
        match (&self.stages, &self.model) {
            (Some(s), _) => s.clone(),
            (None, Some(_)) => ["preprocess", "infer", "maskselect", "overlay"]
                .map(String::from)
                .to_vec(),
            (None, None) => vec![],
        }
    }
    fn is_scene(&self) -> bool {
        matches!(self.source, SourceKind::Scene)
    }
    fn on_gpu(&self) -> bool {
        self.backend.contains("cuda") || self.backend.contains("tensorrt") || self.nvdec
    }
    /// Whether the main run samples the GPU (VRAM, and PCIe with --pcie).
    fn gpu_sampling(&self) -> bool {
        self.pcie || self.gpu_sample.unwrap_or_else(|| self.on_gpu())
    }
    /// Frames after the decoder are GstCudaMemory (forced by caps).
    fn frames_cuda(&self) -> bool {
        matches!(self.source, SourceKind::Files(_)) && self.nvdec && self.nvdec_cuda_caps
    }
}

/// NVML for GPU 0, opened once (None without a driver).
fn nvml() -> Option<Arc<gpumon::Nvml>> {
    static NVML: std::sync::OnceLock<Option<Arc<gpumon::Nvml>>> = std::sync::OnceLock::new();
    NVML.get_or_init(|| match gpumon::Nvml::open(0) {
        Ok(n) => Some(n),
        Err(e) => {
            eprintln!("trtvision-bench: NVML: {e}; falling back to nvidia-smi where present");
            None
        }
    })
    .clone()
}

// ---------------------------------------------------------------------------------------
// Process measurements

fn proc_status_kib(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Per thread of this process: (tid, name, on-CPU ns) from /proc/self/task/*/schedstat.
/// GStreamer names its streaming threads `<element>:<pad>`.
fn thread_cpu_ns() -> Vec<(u64, String, u64)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for e in dir.flatten() {
        let p = e.path();
        let Some(tid) = p
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse().ok())
        else {
            continue;
        };
        let name = std::fs::read_to_string(p.join("comm"))
            .unwrap_or_default()
            .trim()
            .to_string();
        let ns = std::fs::read_to_string(p.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()))
            .unwrap_or(0);
        out.push((tid, name, ns));
    }
    out
}

/// On-CPU ns between `before` and `after` of the threads whose name (at `after`) matches.
fn thread_cpu_delta(
    before: &[(u64, String, u64)],
    after: &[(u64, String, u64)],
    pred: &dyn Fn(&str) -> bool,
) -> u64 {
    after
        .iter()
        .filter(|t| pred(&t.1))
        .map(|t| {
            let b = before.iter().find(|x| x.0 == t.0).map(|x| x.2).unwrap_or(0);
            t.2.saturating_sub(b)
        })
        .sum()
}

fn loadavg() -> Vec<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .filter_map(|v| v.parse().ok())
        .collect()
}

/// VmRSS sampler: one sample every `interval` until stopped.
struct RssSampler {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<Vec<(u64, u64)>>>,
}

impl RssSampler {
    fn start(t0: Instant, interval: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut v = Vec::new();
            while !s.load(Ordering::Relaxed) {
                if let Some(kib) = proc_status_kib("VmRSS:") {
                    v.push((t0.elapsed().as_nanos() as u64, kib));
                }
                std::thread::sleep(interval);
            }
            v
        });
        Self {
            stop,
            handle: Some(handle),
        }
    }
    /// (ns since t0, KiB) samples.
    fn finish(mut self) -> Vec<(u64, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().unwrap().join().unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------
// Frame recorder

/// Per-frame start/end times and the measured window.
struct Recorder {
    t0: Instant,
    warmup: u64,
    /// Measured frames expected at the sinks (0: unknown, e.g. files).
    expected: u64,
    /// (camera, key) → (ns since t0 the frame left its source, measured).
    starts: Mutex<HashMap<(u32, u64), (u64, bool)>>,
    /// Per-camera count of buffers seen at the source (frame index for files).
    counts: Mutex<Vec<u64>>,
    latencies_ns: Mutex<soak::Latencies>,
    first_start: AtomicU64,
    last_end: AtomicU64,
    measured_end: AtomicU64,
    all_end: AtomicU64,
    unmatched: AtomicU64,
    cpu_start: Mutex<Option<f64>>,
    cpu_end: Mutex<Option<f64>>,
    use_offset: bool,
    /// Match frames by per-camera arrival order instead (encoders rewrite offset and PTS:
    /// x264enc adds its min-pts of 1000 h); frames are never dropped or reordered.
    by_sequence: bool,
    end_counts: Mutex<Vec<u64>>,
}

impl Recorder {
    /// `soak`: keep latencies in a fixed-size histogram ([`soak::Latencies`]).
    fn new(cameras: u32, warmup: u64, expected: u64, use_offset: bool, soak: bool) -> Arc<Self> {
        Arc::new(Self {
            t0: Instant::now(),
            warmup,
            expected,
            starts: Mutex::new(HashMap::with_capacity(4096)),
            counts: Mutex::new(vec![0; cameras as usize]),
            latencies_ns: Mutex::new(if soak {
                soak::Latencies::histogram()
            } else {
                soak::Latencies::exact(expected as usize)
            }),
            first_start: AtomicU64::new(u64::MAX),
            last_end: AtomicU64::new(0),
            measured_end: AtomicU64::new(0),
            all_end: AtomicU64::new(0),
            unmatched: AtomicU64::new(0),
            cpu_start: Mutex::new(None),
            cpu_end: Mutex::new(None),
            use_offset,
            by_sequence: false,
            end_counts: Mutex::new(vec![0; cameras as usize]),
        })
    }

    fn now(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64
    }

    fn key(&self, buf: &gst::BufferRef) -> u64 {
        if self.use_offset && buf.offset() != u64::MAX {
            buf.offset()
        } else {
            buf.pts().map(|p| p.nseconds()).unwrap_or(u64::MAX)
        }
    }

    fn on_source(&self, camera: u32, buf: &gst::BufferRef) {
        let now = self.now();
        let (seq, index) = {
            let mut c = self.counts.lock().unwrap();
            let n = c[camera as usize];
            c[camera as usize] += 1;
            if self.use_offset && buf.offset() != u64::MAX {
                (n, buf.offset())
            } else {
                (n, n)
            }
        };
        let measured = index >= self.warmup;
        if measured {
            let mut cs = self.cpu_start.lock().unwrap();
            if cs.is_none() {
                *cs = Some(cpu_time_s());
            }
            drop(cs);
            self.first_start.fetch_min(now, Ordering::Relaxed);
        }
        let key = if self.by_sequence { seq } else { self.key(buf) };
        self.starts.lock().unwrap().insert((camera, key), (now, measured));
    }

    fn on_end(&self, camera: u32, buf: &gst::BufferRef) {
        let now = self.now();
        let key = if self.by_sequence {
            let mut c = self.end_counts.lock().unwrap();
            let n = c[camera as usize];
            c[camera as usize] += 1;
            n
        } else {
            self.key(buf)
        };
        let start = self.starts.lock().unwrap().remove(&(camera, key));
        self.all_end.fetch_add(1, Ordering::Relaxed);
        match start {
            Some((t, true)) => {
                self.latencies_ns.lock().unwrap().push(now.saturating_sub(t));
                self.last_end.fetch_max(now, Ordering::Relaxed);
                let n = self.measured_end.fetch_add(1, Ordering::Relaxed) + 1;
                if n == self.expected {
                    *self.cpu_end.lock().unwrap() = Some(cpu_time_s());
                }
            }
            Some((_, false)) => {}
            None => {
                self.unmatched.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Probe: every buffer on `pad` is a frame that left camera `camera`.
fn probe_source(pad: &gst::Pad, camera: u32, rec: &Arc<Recorder>) {
    let rec = rec.clone();
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(buf) = info.buffer() {
            rec.on_source(camera, buf);
        }
        gst::PadProbeReturn::Ok
    });
}

/// Probe: every buffer on `pad` is a frame of camera `camera` reaching the end.
fn probe_end_frame(pad: &gst::Pad, camera: u32, rec: &Arc<Recorder>) {
    let rec = rec.clone();
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(buf) = info.buffer() {
            rec.on_end(camera, buf);
        }
        gst::PadProbeReturn::Ok
    });
}

/// Probe: every buffer on `pad` is a batch; each slot is a frame reaching the end.
fn probe_end_batch(pad: &gst::Pad, rec: &Arc<Recorder>) {
    let rec = rec.clone();
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(buf) = info.buffer() {
            if let Some(meta) = buf.meta::<gsttrtvision::batch::BatchMeta>() {
                for slot in &meta.batch().slots {
                    rec.on_end(slot.pad_index(), &slot.buffer);
                }
            }
        }
        gst::PadProbeReturn::Ok
    });
}

/// Per-batch times at the src pads of trtmux and the analytics elements.
struct StageTimes {
    names: Vec<String>,
    /// per probe point: (batch number, ns since t0, slots)
    points: Vec<Mutex<Vec<(u64, u64, usize)>>>,
}

fn probe_stages(pipeline: &gst::Pipeline, names: &[String], t0: Instant) -> Arc<StageTimes> {
    let st = Arc::new(StageTimes {
        names: names.to_vec(),
        points: names
            .iter()
            .map(|_| Mutex::new(Vec::with_capacity(1024)))
            .collect(),
    });
    for (k, name) in names.iter().enumerate() {
        let el = pipeline.by_name(name).expect("stage element exists");
        let pad = el.static_pad("src").expect("stage has a src pad");
        let st = st.clone();
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let now = t0.elapsed().as_nanos() as u64;
            if let Some(buf) = info.buffer() {
                if let Some(meta) = buf.meta::<gsttrtvision::batch::BatchMeta>() {
                    let b = meta.batch();
                    st.points[k]
                        .lock()
                        .unwrap()
                        .push((b.batch_number, now, b.slots.len()));
                }
            }
            gst::PadProbeReturn::Ok
        });
    }
    st
}

// ---------------------------------------------------------------------------------------
// Pipelines

fn source_desc(o: &Opts, i: u32, frames: u64) -> String {
    match &o.source {
        SourceKind::Scene => format!(
            "trtscenesrc name=src{i} camera={i} num-buffers={frames} is-live={live} \
             ! video/x-raw,format={fmt},width={w},height={h},framerate={fps}/1",
            live = o.live,
            fps = o.fps,
            fmt = o.format,
            w = o.width,
            h = o.height
        ),
        SourceKind::Files(dir) => {
            let dec = if o.nvdec { "nvh264dec" } else { o.decoder.as_str() };
            // The source's output (probed as the frame leaving the camera): the decoder, or
            // its CUDA caps filter, or the real-time pacing identity.
            let caps = if o.frames_cuda() {
                " ! capsfilter caps=\"video/x-raw(memory:CUDAMemory)\""
            } else {
                ""
            };
            let file = dir.join(format!("cam{i}.mp4"));
            // parsebin rather than `qtdemux ! h264parse`: under parse::launch a bare demuxer
            // can start pushing before the parser after it has started (it sorts as a sink
            // when its pads do not exist yet), and its task then stops on FLUSHING.
            let head = format!("filesrc location=\"{}\" ! parsebin ! {dec}", file.display());
            // The decoder is `dec{i}` unless it is the probed `src{i}` itself (soak loops
            // the file at the decoder's src pad).
            let head_named = format!("{head} name=dec{i}");
            let head = if o.pace || o.frames_cuda() {
                &head_named
            } else {
                &head
            };
            if o.pace {
                format!("{head}{caps} ! identity name=src{i} sync=true")
            } else if o.frames_cuda() {
                format!("{head}{caps} name=src{i}")
            } else {
                format!("{head} name=src{i}")
            }
        }
    }
}

/// `--pace Nx`: divides the timestamps of the buffers entering the pacing `identity` (pad
/// `sink`) and of their segment by `rate`, so that it releases them at `rate` times the
/// files' frame rate (running times stay consistent with the segment).
fn pace_at_rate(sink: &gst::Pad, rate: f64) {
    let scale = move |t: gst::ClockTime| gst::ClockTime::from_nseconds((t.nseconds() as f64 / rate) as u64);
    sink.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
        move |_, info| {
            match &mut info.data {
                Some(gst::PadProbeData::Buffer(buf)) => {
                    let b = buf.make_mut();
                    b.set_pts(b.pts().map(scale));
                    b.set_dts(b.dts().map(scale));
                    b.set_duration(b.duration().map(scale));
                }
                Some(gst::PadProbeData::Event(ev)) => {
                    if let gst::EventView::Segment(e) = ev.view() {
                        if let Ok(seg) = e.segment().clone().downcast::<gst::ClockTime>() {
                            let mut s = seg.clone();
                            s.set_start(seg.start().map(scale));
                            s.set_stop(seg.stop().map(scale));
                            s.set_time(seg.time().map(scale));
                            s.set_position(seg.position().map(scale));
                            s.set_base(seg.base().map(scale));
                            s.set_duration(seg.duration().map(scale));
                            let mut new = gst::event::Segment::builder(&s).seqnum(ev.seqnum()).build();
                            std::mem::swap(ev, &mut new);
                        }
                    }
                }
                _ => {}
            }
            gst::PadProbeReturn::Ok
        },
    );
}

fn stage_desc(o: &Opts, stage: &str) -> String {
    let cfg = o
        .model
        .as_ref()
        .map(|m| m.display().to_string())
        .unwrap_or_default();
    match stage {
        "preprocess" => format!("trtpreprocess name=st_preprocess config-file=\"{cfg}\""),
        "infer" => format!(
            "trtinfer name=st_infer model=\"{cfg}\" backend={} {}",
            o.backend, o.infer_props
        ),
        "depth-preprocess" => format!(
            "trtpreprocess name=st_depth-preprocess config-file=\"{}\" sources={}",
            o.depth_model.display(),
            o.depth_sources
        ),
        "depth-infer" => format!(
            "trtinfer name=st_depth-infer model=\"{}\" backend={}",
            o.depth_model.display(),
            o.backend
        ),
        "landmarks" => format!(
            "trtinfer name=st_landmarks model=\"{}\" backend={} operate-on=objects operate-on-model=\"{}\"",
            o.landmarks_model.display(),
            o.backend,
            model_name_of(&cfg)
        ),
        "maskselect" if o.device_masks => "trtmaskselect name=st_maskselect download-masks=false".into(),
        "maskselect" => "trtmaskselect name=st_maskselect".into(),
        "overlay" if o.stages().iter().any(|s| s == "depth-infer") => {
            "trtoverlay name=st_overlay dense-colormap=turbo".into()
        }
        "overlay" => "trtoverlay name=st_overlay".into(),
        "jsonexport" => "trtjsonexport name=st_jsonexport location=/dev/null".into(),
        _ => unreachable!(),
    }
}

/// The `[model] name` of a model config (what its trtinfer tags detections with).
fn model_name_of(cfg: &str) -> String {
    match gsttrtvision::config::ModelConfig::from_file(cfg) {
        Ok(c) => c.name,
        Err(e) => die(&format!("--model: {e}")),
    }
}

fn main_desc(o: &Opts) -> String {
    let mut d = format!("trtmux name=m batch-size={}", o.batch_size());
    if let Some(t) = o.push_timeout {
        d += &format!(" batched-push-timeout={t}");
    }
    for s in o.stages() {
        d += " ! ";
        d += &stage_desc(o, &s);
    }
    let sync = o.live;
    match o.sink {
        SinkKind::Demux => {
            d += " ! trtdemux name=d";
            for i in 0..o.cameras {
                match o.encode.as_deref() {
                    Some("x264") => {
                        let down = if o.frames_cuda() { "cudadownload ! " } else { "" };
                        d += &format!(
                            " d.src_{i} ! queue ! {down}videoconvert ! x264enc speed-preset=ultrafast \
                             ! fakesink name=out{i} sync={sync} async=false"
                        );
                    }
                    _ => d += &format!(" d.src_{i} ! fakesink name=out{i} sync={sync} async=false"),
                }
            }
        }
        SinkKind::Tiler => {
            d += &format!(" ! trttiler name=t ! fakesink name=out0 sync={sync} async=false");
        }
        SinkKind::Fakesink => {
            d += &format!(" ! fakesink name=out0 sync={sync} async=false");
        }
    }
    for i in 0..o.cameras {
        d += &format!(" {} ! m.sink_{i}", source_desc(o, i, o.frames));
    }
    d
}

fn reference_desc(o: &Opts) -> String {
    (0..o.cameras)
        .map(|i| {
            format!(
                "{} ! fakesink name=out{i} sync={} async=false",
                source_desc(o, i, o.frames),
                o.live
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn parse(desc: &str) -> gst::Pipeline {
    gst::parse::launch(desc)
        .unwrap_or_else(|e| die(&format!("pipeline does not parse: {e}\n{desc}")))
        .downcast::<gst::Pipeline>()
        .expect("is a pipeline")
}

/// Runs to EOS; returns an error message on error or timeout.
/// Warnings elements posted during runs, taken into the next record written.
static ELEMENT_WARNINGS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn run_to_eos(p: &gst::Pipeline, timeout_s: u64) -> Result<(), String> {
    run_to_eos_then(p, timeout_s, None, || ())
}

/// Like [`run_to_eos`]; `at_eos` runs after EOS, before the pipeline stops (its streaming
/// threads still exist then). With `stop_after`, the sources are sent EOS once that long has
/// passed since PLAYING (what `gst-launch-1.0 -e` does on Ctrl-C), and the pipeline drains.
fn run_to_eos_then(
    p: &gst::Pipeline,
    timeout_s: u64,
    stop_after: Option<Duration>,
    at_eos: impl FnOnce(),
) -> Result<(), String> {
    let bus = p.bus().unwrap();
    let started = gsttrtvision::launch::play_sources_last(p).is_ok();
    if !started {
        let msg = bus.timed_pop_filtered(gst::ClockTime::from_seconds(5), &[gst::MessageType::Error]);
        let _ = p.set_state(gst::State::Null);
        return Err(match msg.as_ref().map(|m| m.view()) {
            Some(gst::MessageView::Error(e)) => format!("{} ({:?})", e.error(), e.debug()),
            _ => "state change failed".into(),
        });
    }
    let types = [
        gst::MessageType::Eos,
        gst::MessageType::Error,
        gst::MessageType::Warning,
    ];
    // The next EOS or error before `deadline`; warnings on the way are kept for the record.
    let next = |deadline: Instant| loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = bus.timed_pop_filtered(gst::ClockTime::from_nseconds(left.as_nanos() as u64), &types)?;
        if let gst::MessageView::Warning(w) = m.view() {
            let text = format!(
                "{}: {}",
                w.src().map(|s| s.path_string().to_string()).unwrap_or_default(),
                w.error()
            );
            eprintln!("warning: {text}");
            if let Ok(mut all) = ELEMENT_WARNINGS.lock() {
                all.push(text);
            }
            continue;
        }
        return Some(m);
    };
    let mut msg = None;
    if let Some(d) = stop_after {
        msg = next(Instant::now() + d);
        if msg.is_none() {
            p.send_event(gst::event::Eos::new());
        }
    }
    let msg = msg.or_else(|| next(Instant::now() + Duration::from_secs(timeout_s)));
    let res = match msg {
        None => Err(format!("timed out after {timeout_s} s")),
        Some(m) => match m.view() {
            gst::MessageView::Eos(_) => {
                at_eos();
                Ok(())
            }
            gst::MessageView::Error(e) => Err(format!(
                "{}: {} ({:?})",
                e.src().map(|s| s.path_string().to_string()).unwrap_or_default(),
                e.error(),
                e.debug()
            )),
            _ => unreachable!(),
        },
    };
    let _ = p.set_state(gst::State::Null);
    res
}

/// What one measured run produced.
struct RunResult {
    frames: u64,
    frames_all: u64,
    /// Frames that left the sources (warm-up included).
    frames_sourced: u64,
    unmatched: u64,
    wall_s: f64,
    fps_total: f64,
    lat_ms: Option<(f64, f64, f64)>,
    lat_mean_ms: Option<f64>,
    /// How the latency percentiles were computed ([`soak::Latencies::method`]).
    lat_method: &'static str,
    cpu_cores: Option<f64>,
    cpu_window: &'static str,
    rss: Option<RssStats>,
    run_wall_s: f64,
    gpu: Option<GpuRun>,
    soak: Option<SoakRun>,
    /// Counters of the trtvision elements read at EOS (warm-up included).
    counters: Vec<(String, Value)>,
}

/// What the elements counted since start, read at EOS: frames trtoverlay drew on the GPU
/// and bytes of inference results each trtinfer copied from the GPU (e.g. dense summaries
/// instead of maps), by element name.
fn element_counters(p: &gst::Pipeline) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for e in p.iterate_recurse().into_iter().flatten() {
        let factory = e.factory().map(|f| f.name().to_string()).unwrap_or_default();
        let (key, property) = match factory.as_str() {
            "trtoverlay" => ("gpu_frames", "gpu-frames"),
            "trtinfer" => ("d2h_bytes", "d2h-bytes"),
            _ => continue,
        };
        let name = e.name().trim_start_matches("st_").to_string();
        out.push((format!("{name}.{key}"), Value::from(e.property::<u64>(property))));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// What a `--duration` run adds: the raw 1 s samples and how often each file looped.
struct SoakRun {
    /// End of the last measured frame: drift fits stop there.
    end_ns: u64,
    rss_mib: Vec<(u64, f64)>,
    vram_mib: Vec<(u64, f64)>,
    file_passes: Vec<u64>,
}

/// What the GPU sampler saw during the main run.
struct GpuRun {
    method: &'static str,
    vram: Option<gpumon::VramStats>,
    vram_samples: usize,
    /// Bytes per measured frame over the measured window (with --pcie).
    h2d_per_frame: Option<f64>,
    d2h_per_frame: Option<f64>,
    h2d_total_mib: Option<f64>,
    d2h_total_mib: Option<f64>,
    pcie_samples_in_window: usize,
    /// "counters" or "throughput" (gpumon::PcieBytes::source).
    pcie_source: &'static str,
    /// Integrated throughput per frame over the same window (cross-check of the counters).
    sampled_per_frame: Option<(f64, f64)>,
}

struct RssStats {
    steady: f64,
    peak: f64,
    drift_mib_per_min: f64,
    samples_second_half: usize,
    vmhwm: Option<f64>,
}

fn rss_stats(samples: &[(u64, u64)], window: (u64, u64)) -> Option<RssStats> {
    let peak = samples.iter().map(|s| s.1).max()? as f64 / 1024.0;
    let inwin: Vec<(u64, u64)> = samples
        .iter()
        .copied()
        .filter(|s| s.0 >= window.0 && s.0 <= window.1)
        .collect();
    let use_: &[(u64, u64)] = if inwin.len() >= 4 { &inwin } else { samples };
    let half = &use_[use_.len() / 2..];
    let mut mib: Vec<f64> = half.iter().map(|s| s.1 as f64 / 1024.0).collect();
    let steady = stats::median(&mut mib);
    let xs: Vec<f64> = half.iter().map(|s| s.0 as f64 / 60e9).collect();
    let ys: Vec<f64> = half.iter().map(|s| s.1 as f64 / 1024.0).collect();
    let drift = stats::slope(&xs, &ys);
    Some(RssStats {
        steady,
        peak,
        drift_mib_per_min: drift,
        samples_second_half: half.len(),
        vmhwm: proc_status_kib("VmHWM:").map(|k| k as f64 / 1024.0),
    })
}

/// Builds, probes and runs one pipeline; `end` says where frames end.
fn measured_run(
    o: &Opts,
    desc: &str,
    end: SinkKind,
    stage_names: &[String],
    sample_rss: bool,
) -> (RunResult, Option<Arc<StageTimes>>) {
    let p = parse(desc);
    // Soak (before the source probes, which must see the shifted timestamps): one RSS/VRAM sample per second; file cameras loop until the deadline.
    let soak = sample_rss && o.duration_s.is_some();
    let interval_ms = if soak { 1000 } else { 100 };
    let passes: Vec<Arc<AtomicU64>> = (0..o.cameras).map(|_| Arc::new(AtomicU64::new(0))).collect();
    if let (true, Some(d), SourceKind::Files(_)) = (soak, o.duration_s, &o.source) {
        let deadline = Instant::now() + Duration::from_secs(d);
        for (i, n) in passes.iter().enumerate() {
            let dec = p
                .by_name(&format!("dec{i}"))
                .or_else(|| p.by_name(&format!("src{i}")))
                .expect("decoder exists");
            if let Err(e) = soak::loop_until(&dec, deadline, n.clone()) {
                die(&e);
            }
        }
    }
    let measured_per_cam = o.frames - o.warmup;
    let expected = if o.is_scene() {
        measured_per_cam * o.cameras as u64
    } else {
        0
    };
    let mut rec = Recorder::new(o.cameras, o.warmup, expected, o.is_scene(), soak);
    if o.encode.is_some() && desc.contains("x264enc") {
        Arc::get_mut(&mut rec).expect("not shared yet").by_sequence = true;
    }
    for i in 0..o.cameras {
        let src = p.by_name(&format!("src{i}")).expect("source exists");
        if o.pace && o.pace_rate != 1.0 {
            pace_at_rate(&src.static_pad("sink").unwrap(), o.pace_rate);
        }
        probe_source(&src.static_pad("src").unwrap(), i, &rec);
    }
    match end {
        SinkKind::Demux => {
            for i in 0..o.cameras {
                let s = p.by_name(&format!("out{i}")).unwrap();
                probe_end_frame(&s.static_pad("sink").unwrap(), i, &rec);
            }
        }
        SinkKind::Tiler => {
            let t = p.by_name("t").unwrap();
            probe_end_batch(&t.static_pad("sink").unwrap(), &rec);
        }
        SinkKind::Fakesink => {
            let s = p.by_name("out0").unwrap();
            probe_end_batch(&s.static_pad("sink").unwrap(), &rec);
        }
    }
    let stages = if stage_names.is_empty() {
        None
    } else {
        Some(probe_stages(&p, stage_names, rec.t0))
    };
    let sampler = sample_rss.then(|| RssSampler::start(rec.t0, Duration::from_millis(interval_ms)));
    let gpu_sampler = if o.gpu_sampling() && (sample_rss || o.pcie) {
        let every = if o.pcie { 0 } else { interval_ms };
        let s = gpumon::GpuSampler::start(nvml(), rec.t0, o.pcie, every);
        if s.is_none() {
            eprintln!("trtvision-bench: no NVML and no nvidia-smi: vram_mib / h2d / d2h stay null");
        }
        s
    } else {
        None
    };
    let t_run = Instant::now();
    // A soak of live synthetic cameras ends when its time is up (if the pipeline cannot keep
    // up, the frames made by then drain); file cameras end after their last pass.
    let stop_after = o
        .duration_s
        .filter(|_| soak && o.is_scene())
        .map(Duration::from_secs);
    let mut counters = Vec::new();
    if let Err(e) = run_to_eos_then(&p, o.timeout_s, stop_after, || counters = element_counters(&p)) {
        eprintln!("trtvision-bench: pipeline failed: {e}\n{desc}");
        std::process::exit(1);
    }
    let run_wall_s = t_run.elapsed().as_secs_f64();
    let cpu_eos = cpu_time_s();
    let eos_ns = rec.now();
    let samples = sampler.map(|s| s.finish()).unwrap_or_default();
    let gpu_method = gpu_sampler.as_ref().map(|s| s.method);
    let gpu_samples = gpu_sampler.map(|s| s.finish());
    drop(p);

    let frames = rec.measured_end.load(Ordering::Relaxed);
    let first = rec.first_start.load(Ordering::Relaxed);
    let last = rec.last_end.load(Ordering::Relaxed);
    let wall_s = if frames > 0 && last > first {
        (last - first) as f64 / 1e9
    } else {
        0.0
    };
    let (lat_summary, lat_method) = {
        let l = rec.latencies_ns.lock().unwrap();
        (l.summary_ms(), l.method())
    };
    let lat_ms = lat_summary.map(|(p50, p95, p99, _)| (p50, p95, p99));
    let lat_mean_ms = lat_summary.map(|(.., mean)| mean);
    let cpu_start = *rec.cpu_start.lock().unwrap();
    let cpu_end = *rec.cpu_end.lock().unwrap();
    let (cpu_cores, cpu_window) = match (cpu_start, cpu_end) {
        (Some(a), Some(b)) if wall_s > 0.0 => (Some((b - a) / wall_s), "first-measured-frame-to-last-frame"),
        (Some(a), None) if eos_ns > first => (
            Some((cpu_eos - a) / ((eos_ns - first) as f64 / 1e9)),
            "first-measured-frame-to-eos",
        ),
        _ => (None, "none"),
    };
    let rss = if sample_rss {
        rss_stats(&samples, (first, last))
    } else {
        None
    };
    let soak = soak.then(|| SoakRun {
        end_ns: last,
        rss_mib: samples.iter().map(|s| (s.0, s.1 as f64 / 1024.0)).collect(),
        vram_mib: gpu_samples
            .iter()
            .flatten()
            .filter_map(|s| s.used_mib.map(|m| (s.t_ns, m)))
            .collect(),
        file_passes: passes.iter().map(|n| n.load(Ordering::Relaxed)).collect(),
    });
    let gpu = gpu_samples.map(|gs| {
        let (a, b) = (first, last);
        let per_frame = |v: Option<f64>| v.filter(|_| frames > 0).map(|x| x / frames as f64);
        let pcie = if o.pcie {
            gpumon::pcie_bytes(&gs, a, b)
        } else {
            None
        };
        let (h2d, d2h) = (pcie.map(|p| p.h2d), pcie.map(|p| p.d2h));
        GpuRun {
            method: match pcie {
                Some(p) if p.source == "counters" => gpumon::METHOD_NVML_COUNTERS,
                _ => gpu_method.unwrap_or(""),
            },
            vram: gpumon::vram_stats(&gs, a, b),
            vram_samples: gs.iter().filter(|s| s.used_mib.is_some()).count(),
            h2d_per_frame: per_frame(h2d),
            d2h_per_frame: per_frame(d2h),
            h2d_total_mib: h2d.map(|v| v / 1048576.0),
            d2h_total_mib: d2h.map(|v| v / 1048576.0),
            pcie_samples_in_window: pcie.map(|p| p.readings).unwrap_or(0),
            pcie_source: pcie.map(|p| p.source).unwrap_or("none"),
            sampled_per_frame: pcie
                .and_then(|p| p.sampled)
                .filter(|_| frames > 0)
                .map(|(h, d)| (h / frames as f64, d / frames as f64)),
        }
    });
    let res = RunResult {
        frames,
        frames_all: rec.all_end.load(Ordering::Relaxed),
        frames_sourced: rec.counts.lock().unwrap().iter().sum(),
        unmatched: rec.unmatched.load(Ordering::Relaxed),
        wall_s,
        fps_total: if wall_s > 0.0 { frames as f64 / wall_s } else { 0.0 },
        lat_ms,
        lat_mean_ms,
        lat_method,
        cpu_cores,
        cpu_window,
        rss,
        run_wall_s,
        gpu,
        soak,
        counters,
    };
    (res, stages)
}

/// Soak records: `rss_mib` / `vram_mib` drift from the samples after the drift warm-up
/// (replacing the short-run second-half fit), and a `soak` object with the series.
fn soak_keys(o: &Opts, sk: &SoakRun, rec: &mut Vec<(String, Value)>) {
    let duration = o.duration_s.unwrap_or(0);
    let warmup_s = o.drift_warmup_s.unwrap_or(duration / 5);
    let warmup_ns = warmup_s * 1_000_000_000;
    let method = format!(
        "least-squares slope of the 1 s samples taken after the first {warmup_s} s of the run, up to the last measured frame (MiB per minute)"
    );
    let mut summary = Vec::new();
    for (key, samples) in [("rss_mib", &sk.rss_mib), ("vram_mib", &sk.vram_mib)] {
        let Some(d) = soak::drift_between(samples, warmup_ns, sk.end_ns) else {
            continue;
        };
        if let Some((_, Value::Object(m))) = rec.iter_mut().find(|(k, _)| k == key) {
            m.insert(
                "drift_mib_per_min".into(),
                Value::from(stats::round(d.per_min, 3)),
            );
            m.insert("drift_method".into(), Value::from(method.clone()));
            m.insert("drift_samples".into(), Value::from(d.samples as u64));
            m.remove("samples_second_half");
        }
        let (t, v) = soak::series(samples, 10_000_000_000);
        summary.push((
            key,
            json::obj(vec![
                ("drift_mib_per_min", Value::from(stats::round(d.per_min, 3))),
                ("after_warmup_first", Value::from(stats::round(d.first, 1))),
                ("after_warmup_last", Value::from(stats::round(d.last, 1))),
                ("after_warmup_min", Value::from(stats::round(d.min, 1))),
                ("after_warmup_max", Value::from(stats::round(d.max, 1))),
                ("after_warmup_median", Value::from(stats::round(d.median, 1))),
                ("samples", Value::from(samples.len() as u64)),
                (
                    "series_every_10s_t_s",
                    Value::Array(t.into_iter().map(Value::from).collect()),
                ),
                (
                    "series_every_10s_mib",
                    Value::Array(v.into_iter().map(Value::from).collect()),
                ),
            ]),
        ));
    }
    let mut pairs = vec![
        ("duration_s", Value::from(duration)),
        ("drift_warmup_s", Value::from(warmup_s)),
        ("sample_interval_s", Value::from(1u64)),
    ];
    if matches!(o.source, SourceKind::Files(_)) {
        pairs.push((
            "file_loops_per_camera",
            Value::Array(sk.file_passes.iter().map(|&n| Value::from(n)).collect()),
        ));
    }
    pairs.extend(summary);
    rec.push(("soak".into(), json::obj(pairs)));
}

/// Per-stage ms per batch (median, mean) from the src-pad probe times.
fn stage_breakdown(st: &StageTimes, warmup_batches: u64) -> Vec<(String, Value)> {
    let maps: Vec<HashMap<u64, (u64, usize)>> = st
        .points
        .iter()
        .map(|m| m.lock().unwrap().iter().map(|&(b, t, n)| (b, (t, n))).collect())
        .collect();
    let mut out = Vec::new();
    if let Some(m0) = maps.first() {
        let batches = m0.len();
        let slots: usize = m0.values().map(|v| v.1).sum();
        out.push(("batches".to_string(), Value::from(batches as u64)));
        out.push((
            "mean_batch_fill".to_string(),
            Value::from(if batches > 0 {
                slots as f64 / batches as f64
            } else {
                0.0
            }),
        ));
    }
    let mut per = Vec::new();
    for k in 1..maps.len() {
        let mut d: Vec<f64> = maps[k]
            .iter()
            .filter(|(b, _)| **b >= warmup_batches)
            .filter_map(|(b, (t, _))| maps[k - 1].get(b).map(|(t0, _)| (*t as f64 - *t0 as f64) / 1e6))
            .collect();
        if d.is_empty() {
            continue;
        }
        let mean = d.iter().sum::<f64>() / d.len() as f64;
        let name = st.names[k].trim_start_matches("st_").to_string();
        per.push((
            name,
            json::obj(vec![
                (
                    "p50",
                    Value::from(stats::round(stats::percentile(&mut d, 50.0), 3)),
                ),
                ("mean", Value::from(stats::round(mean, 3))),
                (
                    "p95",
                    Value::from(stats::round(stats::percentile(&mut d, 95.0), 3)),
                ),
            ]),
        ));
    }
    out.push(("stage_ms_per_batch".to_string(), json::obj_owned(per)));
    out
}

// ---------------------------------------------------------------------------------------
// trtmux overhead

struct Overhead {
    keys: Vec<(String, Value)>,
    summary: String,
}

fn trtmux_overhead(o: &Opts) -> Overhead {
    let n = o.cameras;
    let frames = o.overhead_frames.unwrap_or(o.frames.max(600));
    let reps = o.overhead_reps.max(1);
    let own_stats: std::cell::RefCell<Vec<(u64, u64)>> = std::cell::RefCell::new(Vec::new());
    // (process CPU s, wall s, on-CPU ns of the trtmux src thread, of the queue src threads)
    let run = |desc: &str| -> (f64, f64, u64, u64) {
        let p = parse(desc);
        let before = thread_cpu_ns();
        let c0 = cpu_time_s();
        let t0 = Instant::now();
        let mut end = (0.0, 0.0, Vec::new());
        if let Err(e) = run_to_eos_then(&p, o.timeout_s, None, || {
            end = (cpu_time_s(), t0.elapsed().as_secs_f64(), thread_cpu_ns());
            // trtmux's own time per batch (its `stats` property), without the base class.
            if let Some(m) = p.by_name("m") {
                let s = m.property::<gst::Structure>("stats");
                if let (Ok(b), Ok(ns)) = (s.get::<u64>("batches"), s.get::<u64>("total-ns")) {
                    own_stats.borrow_mut().push((b, ns));
                }
            }
        }) {
            eprintln!("trtvision-bench: overhead pipeline failed: {e}");
            std::process::exit(1);
        }
        // Pooled threads are reused (and renamed) across runs: per thread id, subtract
        // what it had used before this run.
        let mux = thread_cpu_delta(&before, &end.2, &|k: &str| k == "m:src");
        let queues = thread_cpu_delta(&before, &end.2, &|k: &str| {
            k.starts_with("queue") && k.ends_with(":src")
        });
        (end.0 - c0, end.1, mux, queues)
    };
    let small = (frames / 5).max(1);
    let desc_n = |f: u64| -> (String, String) {
        let srcs = |sink: &dyn Fn(u32) -> String| -> String {
            (0..n)
                .map(|i| format!("{} ! queue ! {}", source_desc(o, i, f), sink(i)))
                .collect::<Vec<_>>()
                .join(" ")
        };
        (
            format!(
                "trtmux name=m batch-size={n} ! fakesink name=out0 sync=false async=false {}",
                srcs(&|i| format!("m.sink_{i}"))
            ),
            srcs(&|i| format!("fakesink name=out{i} sync=false async=false")),
        )
    };
    let (with_mux, without) = desc_n(frames);
    let (a_big, b_big) = (with_mux.clone(), without.clone());
    let (a_small, b_small) = desc_n(small);
    // One unmeasured run of each to warm caches and the registry.
    run(&a_small);
    run(&b_small);
    // Per repetition: with and without trtmux at `frames` and at `small` batches, in an
    // order that alternates, so slow drifts of the machine's load cancel out.
    let (mut dcpu, mut dwall) = (Vec::new(), Vec::new());
    let (mut ncpu, mut nwall) = (Vec::new(), Vec::new());
    let (mut mux_thread, mut queue_diff) = (Vec::new(), Vec::new());
    let (mut cpu_a, mut cpu_b, mut wall_a, mut wall_b) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for r in 0..reps {
        let order: [&str; 4] = if r % 2 == 0 {
            [&a_big, &b_big, &a_small, &b_small]
        } else {
            [&b_small, &a_small, &b_big, &a_big]
        };
        let mut got: HashMap<&str, (f64, f64, u64, u64)> = HashMap::new();
        for d in order {
            got.insert(d, run(d));
        }
        let (ab, bb, as_, bs) = (
            got[a_big.as_str()],
            got[b_big.as_str()],
            got[a_small.as_str()],
            got[b_small.as_str()],
        );
        // Naive: (with − without) / batches at `frames` (includes per-run fixed costs).
        ncpu.push((ab.0 - bb.0) / frames as f64 * 1e6);
        nwall.push((ab.1 - bb.1) / frames as f64 * 1e6);
        // Marginal: difference of the differences between `frames` and `small` batches,
        // which removes the per-run fixed costs (pads, threads, start/stop).
        let db = (frames - small) as f64;
        dcpu.push(((ab.0 - bb.0) - (as_.0 - bs.0)) / db * 1e6);
        dwall.push(((ab.1 - bb.1) - (as_.1 - bs.1)) / db * 1e6);
        mux_thread.push(ab.2 as f64 / frames as f64 / 1e3);
        queue_diff.push((ab.3 as f64 - bb.3 as f64) / frames as f64 / 1e3);
        cpu_a.push(ab.0);
        cpu_b.push(bb.0);
        wall_a.push(ab.1);
        wall_b.push(bb.1);
    }
    // Batching delay: last frame of a batch arriving at a trtmux sink pad → batch pushed.
    let (c2p, batches_seen, fill) = complete_to_push(o, frames, &with_mux);
    let cpu_med = stats::median(&mut dcpu.clone());
    let wall_med = stats::median(&mut dwall.clone());
    let ncpu_med = stats::median(&mut ncpu.clone());
    let mux_thread_med = stats::median(&mut mux_thread.clone());
    let queue_diff_med = stats::median(&mut queue_diff.clone());
    let nwall_med = stats::median(&mut nwall.clone());
    let mut c2p_v = c2p;
    let c2p_obj = if c2p_v.is_empty() {
        Value::Null
    } else {
        json::obj(vec![
            (
                "p50",
                Value::from(stats::round(stats::percentile(&mut c2p_v, 50.0), 1)),
            ),
            (
                "p95",
                Value::from(stats::round(stats::percentile(&mut c2p_v, 95.0), 1)),
            ),
            (
                "p99",
                Value::from(stats::round(stats::percentile(&mut c2p_v, 99.0), 1)),
            ),
        ])
    };
    let rnd = |v: &[f64], d: u32| Value::Array(v.iter().map(|x| Value::from(stats::round(*x, d))).collect());
    let method = format!(
        "{n} x (trtscenesrc {w}x{h} {fmt} num-buffers={frames} ! queue) -> trtmux batch-size={n} -> fakesink \
         vs the same {n} sources each ! queue ! fakesink; identical frame counts; process CPU time (getrusage user+sys, all \
         threads) and wall time from set_state(PLAYING) to EOS. Each of {reps} repetitions runs both pipelines at \
         {frames} and at {small} frames per camera (order alternating between repetitions, one unmeasured warm-up \
         run of each first). trtmux_cpu_us_per_batch (= trtmux_us_per_batch) = median over repetitions of \
         ((with-without)@{frames} - (with-without)@{small}) / ({frames}-{small}) batches, i.e. the marginal cost \
         per batch with per-run fixed costs (pad/thread set-up, start/stop) removed; *_naive = (with-without)@{frames} \
         / {frames}. Note the CPU difference also contains what trtmux causes elsewhere (thread hand-offs, \
         context switches, the batch buffer reaching fakesink), which is part of its real cost. \
         Per-thread view (/proc/self/task/*/schedstat on-CPU ns, read at EOS before stopping): \
         trtmux_src_thread_cpu_us_per_batch = on-CPU time of the trtmux src task thread 'm:src' (aggregate(), \
         batch meta, push into fakesink, its futex waits/wake-ups) / {frames} batches; \
         trtmux_sink_side_cpu_us_per_batch = (queue src threads with trtmux - without) / {frames}: what pushing \
         the frames into trtmux sink pads costs the upstream threads compared with pushing them into fakesinks. \
         Their sum is the most direct estimate; the process-CPU difference is the noisiest one. trtmux_complete_to_push_us: separate probed run of the trtmux pipeline, time \
         from the last frame of a batch entering a trtmux sink pad (pad probe) to the batch leaving the trtmux \
         src pad (pad probe): aggregator wake-up + aggregate() per batch.",
        w = o.width,
        h = o.height,
        fmt = o.format
    );
    let keys = vec![
        (
            "trtmux_us_per_batch".to_string(),
            Value::from(stats::round(cpu_med, 2)),
        ),
        (
            "trtmux_cpu_us_per_batch".to_string(),
            Value::from(stats::round(cpu_med, 2)),
        ),
        (
            "trtmux_wall_us_per_batch".to_string(),
            Value::from(stats::round(wall_med, 2)),
        ),
        (
            "trtmux_cpu_us_per_batch_naive".to_string(),
            Value::from(stats::round(ncpu_med, 2)),
        ),
        (
            "trtmux_wall_us_per_batch_naive".to_string(),
            Value::from(stats::round(nwall_med, 2)),
        ),
        (
            "trtmux_own_us_per_batch".to_string(),
            {
                let v = own_stats.borrow();
                let (b, ns) = v.iter().fold((0u64, 0u64), |a, x| (a.0 + x.0, a.1 + x.1));
                if b > 0 {
                    Value::from(stats::round(ns as f64 / b as f64 / 1e3, 2))
                } else {
                    Value::Null
                }
            },
        ),
        (
            "trtmux_own_method".to_string(),
            Value::from("trtmux `stats` property: wall time inside aggregate() from entry to just before the batch is pushed (popping the frames, building the batch meta), summed over every run with trtmux and divided by its batches; excludes the aggregator base class's waiting/wake-ups and everything downstream"),
        ),
        (
            "trtmux_src_thread_cpu_us_per_batch".to_string(),
            Value::from(stats::round(mux_thread_med, 2)),
        ),
        (
            "trtmux_src_thread_cpu_us_per_batch_reps".to_string(),
            rnd(&mux_thread, 2),
        ),
        (
            "trtmux_sink_side_cpu_us_per_batch".to_string(),
            Value::from(stats::round(queue_diff_med, 2)),
        ),
        (
            "trtmux_sink_side_cpu_us_per_batch_reps".to_string(),
            rnd(&queue_diff, 2),
        ),
        ("trtmux_cpu_us_per_batch_reps".to_string(), rnd(&dcpu, 2)),
        ("trtmux_wall_us_per_batch_reps".to_string(), rnd(&dwall, 2)),
        ("trtmux_cpu_s_with_mux_reps".to_string(), rnd(&cpu_a, 4)),
        ("trtmux_cpu_s_without_mux_reps".to_string(), rnd(&cpu_b, 4)),
        ("trtmux_wall_s_with_mux_reps".to_string(), rnd(&wall_a, 4)),
        ("trtmux_wall_s_without_mux_reps".to_string(), rnd(&wall_b, 4)),
        ("trtmux_complete_to_push_us".to_string(), c2p_obj.clone()),
        ("trtmux_overhead_batches".to_string(), Value::from(frames)),
        ("trtmux_overhead_batches_small".to_string(), Value::from(small)),
        (
            "trtmux_overhead_batches_seen_probed".to_string(),
            Value::from(batches_seen),
        ),
        (
            "trtmux_overhead_mean_batch_fill".to_string(),
            Value::from(stats::round(fill, 3)),
        ),
        ("trtmux_overhead_target_us".to_string(), Value::from(50u64)),
        ("trtmux_method".to_string(), Value::from(method)),
    ];
    let summary = format!(
        "trtmux overhead: src thread {mux_thread_med:.1} µs CPU/batch + sink side {queue_diff_med:.1} µs; process-CPU \
         difference {cpu_med:.1} µs/batch marginal ({ncpu_med:.1} naive), {wall_med:.1} µs wall/batch \
         ({nwall_med:.1} naive) (median of {reps}; per rep CPU {:?}), complete→push {}",
        dcpu.iter().map(|x| stats::round(*x, 1)).collect::<Vec<_>>(),
        json::to_string_compact(&c2p_obj)
    );
    Overhead { keys, summary }
}

/// Probed run of `desc` (which has trtmux `m`): per batch, µs from the arrival of its
/// last frame at a sink pad to the batch at the src pad.
fn complete_to_push(o: &Opts, _frames: u64, desc: &str) -> (Vec<f64>, u64, f64) {
    let p = parse(desc);
    let t0 = Instant::now();
    let arrivals: Arc<Mutex<HashMap<(u32, u64), u64>>> = Arc::new(Mutex::new(HashMap::new()));
    let m = p.by_name("m").unwrap();
    let mut pads = Vec::new();
    for i in 0..o.cameras {
        // Request pads were created by parse::launch for the links.
        let pad = m.static_pad(&format!("sink_{i}")).expect("trtmux sink pad");
        pads.push(pad);
    }
    for (i, pad) in pads.iter().enumerate() {
        let arrivals = arrivals.clone();
        let i = i as u32;
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(buf) = info.buffer() {
                let now = t0.elapsed().as_nanos() as u64;
                arrivals.lock().unwrap().insert((i, buf.offset()), now);
            }
            gst::PadProbeReturn::Ok
        });
    }
    let out: Arc<Mutex<(Vec<f64>, u64, u64)>> = Arc::new(Mutex::new((Vec::new(), 0, 0)));
    {
        let out = out.clone();
        let arrivals = arrivals.clone();
        m.static_pad("src")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                let now = t0.elapsed().as_nanos() as u64;
                if let Some(buf) = info.buffer() {
                    if let Some(meta) = buf.meta::<gsttrtvision::batch::BatchMeta>() {
                        let mut a = arrivals.lock().unwrap();
                        let last = meta
                            .batch()
                            .slots
                            .iter()
                            .filter_map(|s| a.remove(&(s.pad_index(), s.buffer.offset())))
                            .max();
                        drop(a);
                        let mut o = out.lock().unwrap();
                        o.1 += 1;
                        o.2 += meta.batch().slots.len() as u64;
                        if let Some(l) = last {
                            o.0.push(now.saturating_sub(l) as f64 / 1e3);
                        }
                    }
                }
                gst::PadProbeReturn::Ok
            });
    }
    if let Err(e) = run_to_eos(&p, o.timeout_s) {
        eprintln!("trtvision-bench: probed trtmux pipeline failed: {e}");
        std::process::exit(1);
    }
    drop(p);
    let o = std::mem::take(&mut *out.lock().unwrap());
    let fill = if o.1 > 0 { o.2 as f64 / o.1 as f64 } else { 0.0 };
    (o.0, o.1, fill)
}

// ---------------------------------------------------------------------------------------

fn main() {
    let o = parse_args();
    let argv: Vec<String> = std::env::args().collect();
    let cmdline = argv
        .iter()
        .map(|a| {
            if a.contains(' ') || a.is_empty() {
                format!("'{a}'")
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    gst::init().expect("GStreamer initialises");
    gsttrtvision::plugin_register_static().expect("plugin registers");

    let (cpu_model, cores) = cpu_model_and_cores();
    let on_gpu = o.on_gpu();
    let device = o.device_name.clone().unwrap_or_else(|| {
        let gpu = if on_gpu {
            gpumon::gpu_name(nvml().as_deref())
        } else {
            None
        };
        gpu.unwrap_or_else(|| format!("cpu: {cpu_model} x{cores}"))
    });
    let (commit, dirty) = gpumon::commit();
    let dirty = dirty.unwrap_or(false);
    let (date, _) = gpumon::today();
    let load_start = loadavg();
    let overhead_only = o.what.as_deref() == Some("trtmux-overhead");
    let what = o.what.clone().unwrap_or_else(|| format!("{}cam", o.cameras));
    let model_name = o
        .model
        .as_ref()
        .map(|m| m.display().to_string())
        .unwrap_or_else(|| "none".into());
    let stages = o.stages();
    let backend = if stages.iter().any(|s| s == "infer") {
        o.backend.clone()
    } else {
        "none".into()
    };

    let mut rec: Vec<(String, Value)> = vec![
        ("device".into(), Value::from(device.clone())),
        ("date".into(), Value::from(date)),
        ("commit".into(), Value::from(commit)),
        ("commit_dirty".into(), Value::from(dirty)),
        ("what".into(), Value::from(what.clone())),
    ];
    let mut summary: String;

    if overhead_only {
        let oh = trtmux_overhead(&o);
        let frames = o.overhead_frames.unwrap_or(o.frames.max(600));
        rec.extend([
            ("pipeline".into(), Value::from(cmdline.to_string())),
            ("cameras".into(), Value::from(o.cameras)),
            ("width".into(), Value::from(o.width)),
            ("height".into(), Value::from(o.height)),
            ("format".into(), Value::from(o.format.clone())),
            ("batch_size".into(), Value::from(o.cameras)),
            ("model".into(), Value::from("none")),
            ("backend".into(), Value::from("none")),
            ("frames".into(), Value::from(frames * o.cameras as u64)),
            ("fps_total".into(), Value::Null),
            ("fps_per_camera".into(), Value::Null),
            ("latency_ms".into(), Value::Null),
            ("cpu_cores".into(), Value::Null),
            ("rss_mib".into(), Value::Null),
            ("vram_mib".into(), Value::Null),
            ("h2d_bytes_per_frame".into(), Value::Null),
            ("d2h_bytes_per_frame".into(), Value::Null),
            (
                "reference".into(),
                json::obj(vec![
                    ("name", Value::from("sources-queue-fakesink")),
                    ("fps_total", Value::Null),
                ]),
            ),
            ("ratio".into(), Value::Null),
        ]);
        rec.extend(oh.keys);
        summary = oh.summary;
    } else {
        let desc = main_desc(&o);
        let mut stage_names = vec!["m".to_string()];
        stage_names.extend(stages.iter().map(|s| format!("st_{s}")));
        let (r, st) = measured_run(&o, &desc, o.sink, &stage_names, true);
        let reference = o.reference.as_ref().map(|name| {
            let name = if o.is_scene() && name == "decode-only" {
                "sources-only".to_string()
            } else {
                name.clone()
            };
            let (rr, _) = measured_run(&o, &reference_desc(&o), SinkKind::Demux, &[], false);
            (name, rr)
        });
        let fps_cam = r.fps_total / o.cameras as f64;
        let lat = r
            .lat_ms
            .map(|(a, b, c)| {
                json::obj(vec![
                    ("p50", Value::from(stats::round(a, 2))),
                    ("p95", Value::from(stats::round(b, 2))),
                    ("p99", Value::from(stats::round(c, 2))),
                    ("mean", Value::from(stats::round(r.lat_mean_ms.unwrap_or(0.0), 2))),
                ])
            })
            .unwrap_or(Value::Null);
        let rss = r
            .rss
            .as_ref()
            .map(|s| {
                json::obj(vec![
                    ("steady", Value::from(stats::round(s.steady, 1))),
                    ("peak", Value::from(stats::round(s.peak, 1))),
                    (
                        "drift_mib_per_min",
                        Value::from(stats::round(s.drift_mib_per_min, 2)),
                    ),
                    ("samples_second_half", Value::from(s.samples_second_half as u64)),
                    (
                        "vmhwm",
                        s.vmhwm
                            .map(|v| Value::from(stats::round(v, 1)))
                            .unwrap_or(Value::Null),
                    ),
                ])
            })
            .unwrap_or(Value::Null);
        rec.extend([
            (
                "pipeline".into(),
                Value::from(format!("{cmdline} :: gst-launch-1.0 {desc}")),
            ),
            ("cameras".into(), Value::from(o.cameras)),
            ("width".into(), Value::from(o.width)),
            ("height".into(), Value::from(o.height)),
            ("format".into(), Value::from(o.format.clone())),
            ("batch_size".into(), Value::from(o.batch_size())),
            ("model".into(), Value::from(model_name.clone())),
            ("backend".into(), Value::from(backend.clone())),
            (
                "secondary_models".into(),
                Value::Array(
                    stages
                        .iter()
                        .filter_map(|s| match s.as_str() {
                            "depth-infer" => Some(format!(
                                "{} (sources {})",
                                o.depth_model.display(),
                                o.depth_sources
                            )),
                            "landmarks" => Some(format!("{} (on objects)", o.landmarks_model.display())),
                            _ => None,
                        })
                        .map(Value::from)
                        .collect(),
                ),
            ),
            (
                "stages".into(),
                Value::Array(stages.iter().map(|s| Value::from(s.clone())).collect()),
            ),
            ("sink".into(), Value::from(format!("{:?}", o.sink).to_lowercase())),
            ("masks_downloaded".into(), Value::from(!o.device_masks)),
            ("live".into(), Value::from(o.live)),
            ("frames".into(), Value::from(r.frames)),
            ("fps_total".into(), Value::from(stats::round(r.fps_total, 2))),
            ("fps_per_camera".into(), Value::from(stats::round(fps_cam, 2))),
            ("latency_ms".into(), lat),
            ("latency_method".into(), Value::from(r.lat_method)),
            (
                "cpu_cores".into(),
                r.cpu_cores
                    .map(|c| Value::from(stats::round(c, 3)))
                    .unwrap_or(Value::Null),
            ),
            ("rss_mib".into(), rss),
            (
                "vram_mib".into(),
                r.gpu
                    .as_ref()
                    .and_then(|g| g.vram.as_ref().map(|v| (g, v)))
                    .map(|(g, v)| {
                        json::obj(vec![
                            ("steady", Value::from(stats::round(v.steady, 1))),
                            ("peak", Value::from(stats::round(v.peak, 1))),
                            (
                                "drift_mib_per_min",
                                Value::from(stats::round(v.drift_mib_per_min, 2)),
                            ),
                            ("baseline_before_start", Value::from(stats::round(v.baseline, 1))),
                            (
                                "above_baseline_steady",
                                Value::from(stats::round(v.steady - v.baseline, 1)),
                            ),
                            ("samples", Value::from(g.vram_samples as u64)),
                            ("samples_second_half", Value::from(v.samples_second_half as u64)),
                            ("scope", Value::from("device-wide used memory (all processes)")),
                        ])
                    })
                    .unwrap_or(Value::Null),
            ),
            (
                "h2d_bytes_per_frame".into(),
                r.gpu
                    .as_ref()
                    .and_then(|g| g.h2d_per_frame)
                    .map(|v| Value::from(v.round()))
                    .unwrap_or(Value::Null),
            ),
            (
                "d2h_bytes_per_frame".into(),
                r.gpu
                    .as_ref()
                    .and_then(|g| g.d2h_per_frame)
                    .map(|v| Value::from(v.round()))
                    .unwrap_or(Value::Null),
            ),
        ]);
        if o.pcie {
            let g = r.gpu.as_ref();
            rec.push((
                "pcie_method".into(),
                match g {
                    Some(g) if g.h2d_per_frame.is_some() => Value::from(g.method),
                    _ => Value::from("requested (--pcie) but not measured: no NVML library and no nvidia-smi (or no sample)"),
                },
            ));
            rec.push((
                "pcie_total_mib".into(),
                json::obj(vec![
                    (
                        "h2d",
                        g.and_then(|g| g.h2d_total_mib)
                            .map(|v| Value::from(stats::round(v, 1)))
                            .unwrap_or(Value::Null),
                    ),
                    (
                        "d2h",
                        g.and_then(|g| g.d2h_total_mib)
                            .map(|v| Value::from(stats::round(v, 1)))
                            .unwrap_or(Value::Null),
                    ),
                    (
                        "samples_in_window",
                        Value::from(g.map(|g| g.pcie_samples_in_window as u64).unwrap_or(0)),
                    ),
                    ("source", Value::from(g.map(|g| g.pcie_source).unwrap_or("none"))),
                ]),
            ));
            rec.push((
                "pcie_sampled_per_frame".into(),
                match g.and_then(|g| g.sampled_per_frame) {
                    Some((h, d)) => json::obj(vec![
                        ("h2d", Value::from(h.round())),
                        ("d2h", Value::from(d.round())),
                        (
                            "method",
                            Value::from(
                                "nvmlDeviceGetPcieThroughput 20 ms windows integrated over the same window",
                            ),
                        ),
                    ]),
                    None => Value::Null,
                },
            ));
        }
        if let Some(g) = &r.gpu {
            if !o.pcie {
                rec.push(("gpu_sampling".into(), Value::from(g.method)));
            }
        }
        if let Some(sk) = &r.soak {
            soak_keys(&o, sk, &mut rec);
        }
        rec.push(("frames_in_cuda_memory".into(), Value::from(o.frames_cuda())));
        rec.push(("paced_realtime".into(), Value::from(o.pace && o.pace_rate == 1.0)));
        rec.push(("infer_props".into(), Value::from(o.infer_props.as_str())));
        rec.push((
            "element_warnings".into(),
            Value::from(
                ELEMENT_WARNINGS
                    .lock()
                    .map(|mut w| std::mem::take(&mut *w))
                    .unwrap_or_default(),
            ),
        ));
        rec.push((
            "pace_rate".into(),
            if o.pace {
                Value::from(o.pace_rate)
            } else {
                Value::Null
            },
        ));
        rec.push((
            "encode".into(),
            o.encode
                .as_ref()
                .map(|e| Value::from(format!("{e}enc speed-preset=ultrafast (no NVENC on the H100)")))
                .unwrap_or(Value::Null),
        ));
        match &reference {
            Some((name, rr)) => {
                rec.push((
                    "reference".into(),
                    json::obj(vec![
                        ("name", Value::from(name.clone())),
                        ("fps_total", Value::from(stats::round(rr.fps_total, 2))),
                        (
                            "cpu_cores",
                            rr.cpu_cores
                                .map(|c| Value::from(stats::round(c, 3)))
                                .unwrap_or(Value::Null),
                        ),
                        ("frames", Value::from(rr.frames)),
                        (
                            "h2d_bytes_per_frame",
                            rr.gpu
                                .as_ref()
                                .and_then(|g| g.h2d_per_frame)
                                .map(|v| Value::from(v.round()))
                                .unwrap_or(Value::Null),
                        ),
                        (
                            "d2h_bytes_per_frame",
                            rr.gpu
                                .as_ref()
                                .and_then(|g| g.d2h_per_frame)
                                .map(|v| Value::from(v.round()))
                                .unwrap_or(Value::Null),
                        ),
                        (
                            "latency_ms_p50",
                            rr.lat_ms
                                .map(|l| Value::from(stats::round(l.0, 3)))
                                .unwrap_or(Value::Null),
                        ),
                    ]),
                ));
                rec.push((
                    "ratio".into(),
                    if rr.fps_total > 0.0 {
                        Value::from(stats::round(r.fps_total / rr.fps_total, 4))
                    } else {
                        Value::Null
                    },
                ));
            }
            None => {
                rec.push(("reference".into(), Value::Null));
                rec.push(("ratio".into(), Value::Null));
            }
        }
        rec.push(("warmup_frames_per_camera".into(), Value::from(o.warmup)));
        rec.push(("frames_including_warmup".into(), Value::from(r.frames_all)));
        if !r.counters.is_empty() {
            // trtoverlay: frames drawn on the GPU; trtinfer: result bytes copied from the GPU.
            rec.push((
                "element_counters_including_warmup".into(),
                json::obj_owned(r.counters.clone()),
            ));
        }
        rec.push(("frames_left_sources".into(), Value::from(r.frames_sourced)));
        rec.push(("frames_unmatched".into(), Value::from(r.unmatched)));
        rec.push(("measured_wall_s".into(), Value::from(stats::round(r.wall_s, 3))));
        rec.push(("run_wall_s".into(), Value::from(stats::round(r.run_wall_s, 3))));
        rec.push(("cpu_window".into(), Value::from(r.cpu_window)));
        if let Some(st) = &st {
            // Stage timings skip the warm-up batches (≈ warmup frames per camera).
            rec.extend(stage_breakdown(
                st,
                o.warmup * o.cameras as u64 / o.batch_size().max(1) as u64,
            ));
        }
        summary = format!(
            "{what}: {} cams {}x{} {} model={} -> {:.1} fps total ({:.2}/cam), latency p50/p95/p99 {} ms, \
             {:.2} cores, rss steady {} MiB{}",
            o.cameras,
            o.width,
            o.height,
            o.format,
            model_name,
            r.fps_total,
            fps_cam,
            r.lat_ms
                .map(|l| format!("{:.1}/{:.1}/{:.1}", l.0, l.1, l.2))
                .unwrap_or("-".into()),
            r.cpu_cores.unwrap_or(f64::NAN),
            r.rss
                .as_ref()
                .map(|s| format!("{:.0}", s.steady))
                .unwrap_or("-".into()),
            reference
                .as_ref()
                .map(|(n, rr)| format!(
                    ", {n} {:.1} fps (ratio {:.3})",
                    rr.fps_total,
                    r.fps_total / rr.fps_total
                ))
                .unwrap_or_default()
        );
        if let Some(g) = &r.gpu {
            summary += &format!(
                "\nGPU: vram steady/peak {} MiB (device-wide), PCIe h2d {} / d2h {} bytes/frame",
                g.vram
                    .as_ref()
                    .map(|v| format!("{:.0}/{:.0}", v.steady, v.peak))
                    .unwrap_or("-".into()),
                g.h2d_per_frame.map(|v| format!("{v:.0}")).unwrap_or("-".into()),
                g.d2h_per_frame.map(|v| format!("{v:.0}")).unwrap_or("-".into()),
            );
        }
        if o.trtmux_overhead {
            let oh = trtmux_overhead(&o);
            rec.extend(oh.keys);
            summary += &format!("\n{}", oh.summary);
        }
    }
    let load_end = loadavg();
    rec.push((
        "loadavg".into(),
        json::obj(vec![
            (
                "start",
                Value::Array(load_start.into_iter().map(Value::from).collect()),
            ),
            (
                "end",
                Value::Array(load_end.into_iter().map(Value::from).collect()),
            ),
        ]),
    ));
    rec.push(("cpu_model".into(), Value::from(cpu_model)));
    rec.push(("cpu_logical_cores".into(), Value::from(cores as u64)));
    rec.push((
        "build".into(),
        Value::from(if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }),
    ));
    rec.push(("gstreamer".into(), Value::from(gst::version_string().to_string())));
    if on_gpu && !o.gpu_sampling() {
        rec.push((
            "note".into(),
            Value::from("GPU sampling off (--no-gpu-sample): vram_mib / h2d / d2h null"),
        ));
    }
    let text = json::to_string_pretty_ordered(&rec);
    match &o.out {
        Some(path) => {
            if let Some(dir) = path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            std::fs::write(path, format!("{text}\n"))
                .unwrap_or_else(|e| die(&format!("{}: {e}", path.display())));
            eprintln!("wrote {}", path.display());
        }
        None => println!("{text}"),
    }
    eprintln!("{summary}");
    if dirty {
        eprintln!("note: the working tree differs from HEAD; the record has commit_dirty=true");
    }
}

// ---------------------------------------------------------------------------------------

mod json {
    pub use serde_json::Value;

    pub fn obj(pairs: Vec<(&str, Value)>) -> Value {
        Value::Object(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }

    pub fn obj_owned(pairs: Vec<(String, Value)>) -> Value {
        Value::Object(pairs.into_iter().collect())
    }

    pub fn to_string_compact(v: &Value) -> String {
        serde_json::to_string(v).unwrap_or_default()
    }

    /// Top-level keys in the given order, one per line; nested values compact.
    pub fn to_string_pretty_ordered(rec: &[(String, Value)]) -> String {
        let mut s = String::from("{\n");
        for (i, (k, v)) in rec.iter().enumerate() {
            s += &format!(
                "  {}: {}{}\n",
                serde_json::to_string(k).unwrap(),
                to_string_compact(v),
                if i + 1 < rec.len() { "," } else { "" }
            );
        }
        s += "}";
        s
    }
}

mod stats {
    /// Nearest-rank-interpolated percentile (linear between closest ranks); sorts `v`.
    pub fn percentile(v: &mut [f64], p: f64) -> f64 {
        if v.is_empty() {
            return f64::NAN;
        }
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let r = p / 100.0 * (v.len() - 1) as f64;
        let (lo, hi) = (r.floor() as usize, r.ceil() as usize);
        v[lo] + (v[hi] - v[lo]) * (r - lo as f64)
    }

    pub fn median(v: &mut [f64]) -> f64 {
        percentile(v, 50.0)
    }

    /// Least-squares slope of y over x (0 with fewer than 2 points).
    pub fn slope(x: &[f64], y: &[f64]) -> f64 {
        let n = x.len().min(y.len());
        if n < 2 {
            return 0.0;
        }
        let mx = x[..n].iter().sum::<f64>() / n as f64;
        let my = y[..n].iter().sum::<f64>() / n as f64;
        let (mut sxy, mut sxx) = (0.0, 0.0);
        for i in 0..n {
            sxy += (x[i] - mx) * (y[i] - my);
            sxx += (x[i] - mx) * (x[i] - mx);
        }
        if sxx == 0.0 {
            0.0
        } else {
            sxy / sxx
        }
    }

    pub fn round(v: f64, digits: u32) -> f64 {
        let f = 10f64.powi(digits as i32);
        (v * f).round() / f
    }
}
