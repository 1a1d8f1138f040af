//! Command line of trtvision-bench: options, their defaults and checks.

use super::*;

pub(crate) const USAGE: &str = "\
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
pub(crate) enum SinkKind {
    Demux,
    Tiler,
    Fakesink,
}

#[derive(Clone, Debug)]
pub(crate) enum SourceKind {
    Scene,
    Files(PathBuf),
}

#[derive(Clone, Debug)]
pub(crate) struct Opts {
    pub(crate) cameras: u32,
    pub(crate) frames: u64,
    pub(crate) warmup: u64,
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) format: String,
    pub(crate) batch_size: Option<u32>,
    pub(crate) push_timeout: Option<u64>,
    pub(crate) model: Option<PathBuf>,
    pub(crate) backend: String,
    pub(crate) stages: Option<Vec<String>>,
    pub(crate) sink: SinkKind,
    pub(crate) live: bool,
    pub(crate) source: SourceKind,
    pub(crate) nvdec: bool,
    pub(crate) reference: Option<String>,
    pub(crate) trtmux_overhead: bool,
    pub(crate) overhead_frames: Option<u64>,
    pub(crate) overhead_reps: u32,
    pub(crate) what: Option<String>,
    pub(crate) device_name: Option<String>,
    pub(crate) out: Option<PathBuf>,
    pub(crate) timeout_s: u64,
    pub(crate) nvdec_cuda_caps: bool,
    pub(crate) pace: bool,
    /// Rate of `--pace` relative to the files' timestamps (1 = real time).
    pub(crate) pace_rate: f64,
    /// Extra properties of the main trtinfer (`--infer-props`).
    pub(crate) infer_props: String,
    pub(crate) encode: Option<String>,
    pub(crate) pcie: bool,
    /// trtmaskselect download-masks=false: masks stay on the GPU (drawn there).
    pub(crate) device_masks: bool,
    pub(crate) gpu_sample: Option<bool>,
    pub(crate) decoder: String,
    pub(crate) depth_model: PathBuf,
    pub(crate) depth_sources: String,
    pub(crate) landmarks_model: PathBuf,
    pub(crate) fps: u32,
    pub(crate) duration_s: Option<u64>,
    pub(crate) drift_warmup_s: Option<u64>,
}

/// Stages `--stages` accepts.
pub(crate) const STAGES: [&str; 8] = [
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
pub(crate) fn engines_dir() -> PathBuf {
    let here = PathBuf::from("engines");
    if here.join("shapes-yolo.toml").is_file() {
        return std::path::absolute(&here).unwrap_or(here);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("engines")
}

pub(crate) fn die(msg: &str) -> ! {
    eprintln!("trtvision-bench: {msg}\n{USAGE}");
    std::process::exit(2);
}

pub(crate) fn parse_args() -> Opts {
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
    pub(crate) fn batch_size(&self) -> u32 {
        self.batch_size.unwrap_or(self.cameras)
    }
    pub(crate) fn stages(&self) -> Vec<String> {
        match (&self.stages, &self.model) {
            (Some(s), _) => s.clone(),
            (None, Some(_)) => ["preprocess", "infer", "maskselect", "overlay"]
                .map(String::from)
                .to_vec(),
            (None, None) => vec![],
        }
    }
    pub(crate) fn is_scene(&self) -> bool {
        matches!(self.source, SourceKind::Scene)
    }
    pub(crate) fn on_gpu(&self) -> bool {
        self.backend.contains("cuda") || self.backend.contains("tensorrt") || self.nvdec
    }
    /// Whether the main run samples the GPU (VRAM, and PCIe with --pcie).
    pub(crate) fn gpu_sampling(&self) -> bool {
        self.pcie || self.gpu_sample.unwrap_or_else(|| self.on_gpu())
    }
    /// Frames after the decoder are GstCudaMemory (forced by caps).
    pub(crate) fn frames_cuda(&self) -> bool {
        matches!(self.source, SourceKind::Files(_)) && self.nvdec && self.nvdec_cuda_caps
    }
}
