//! trtvision-promptseg-bench: prompt-conditioned segmentation (encoder + per-class decoder)
//! orchestrations compared in one run.
//!
//! Each round is F frames (default 8) x K class prompts (default 4, the config's first K)
//! on the config's encoder/decoder pair (default engines/promptseg-full.toml: SAM3 tensor
//! sizes), with a deterministic pseudo-random encoder input and letterbox transforms of
//! `--frame-size` frames. Routes (see `gsttrtvision::trtinfer::promptseg`):
//! * `a`: per frame, encoder batch 1 then decoder batch K;
//! * `b`: encoder batch F, then per frame the decoder with batch K;
//! * `c`: encoder batch F, then per class the decoder with batch F fed directly by the
//!   encoder's output tensors, prompts replicated once;
//! * `seed`: route c as written by hand: prompts rebuilt and uploaded and every decoder
//!   output (all masks) brought to host memory every round.
//!
//! Every route gets a freshly opened engine (its own VRAM window), `--warmup` untimed
//! rounds and `--rounds` timed ones; the detections of its first round are compared with
//! those of the first route run (`results_match`). One JSON per route in the bench schema
//! (/work/shared/bench-schema.md), `<device>-route-<r>-<YYYYMMDD>.json` in `--out-dir`,
//! with `ms_per_round`, `d2h_bytes_per_round` (what crosses device -> host per round: for
//! a/b/c the bytes a device-side selection copies back, boxes/scores and kept masks; for
//! seed every decoder output byte) and, on a GPU, VRAM steady/peak.

#[path = "common/cli.rs"]
mod cli;
#[path = "common/gpumon.rs"]
mod gpumon;
#[path = "common/procstats.rs"]
mod procstats;

use std::path::PathBuf;
use std::time::Instant;

use gsttrtvision::backend::BackendKind;
use gsttrtvision::config::promptseg::PromptSegConfig;
use gsttrtvision::results::Detection;
use gsttrtvision::trtinfer::promptseg::{PromptSegEngine, PromptSegOptions, Route};
use procstats::{cpu_model_and_cores, cpu_time_s, loadavg_1min, percentile, proc_status_mib, random_input};
use serde_json::{json, Value};

const USAGE: &str = "\
usage: trtvision-promptseg-bench [options]
  --config PATH        prompt-segmentation config TOML (default engines/promptseg-full.toml)
  --routes LIST        comma list of a, b, c, seed (default a,b,c,seed)
  --frames F           frames per round (default 8, at most the config's max-batch)
  --classes K          class prompts per round: the config's first K (default 4)
  --rounds N           timed rounds per route (default 20)
  --warmup W           untimed rounds per route (default 2)
  --backend NAME       onnxruntime-cpu or onnxruntime-cuda (default onnxruntime-cpu)
  --threads T          CPU provider intra-op threads (default 0 = ONNX Runtime's choice)
  --frame-size WxH     camera frame size the boxes map back to (default 1920x1080)
  --seed S             input seed (default 12345)
  --device-id D        CUDA device (default 0)
  --out-dir DIR        write one JSON per route here (default: print them)
  --device-name STR    override the device name (default: GPU name, or cpu: <model> x<cores>)
";

fn die(msg: &str) -> ! {
    eprintln!("trtvision-promptseg-bench: {msg}\n{USAGE}");
    std::process::exit(2);
}

struct Opts {
    config: PathBuf,
    routes: Vec<Route>,
    frames: usize,
    classes: usize,
    rounds: usize,
    warmup: usize,
    backend: BackendKind,
    threads: usize,
    frame_w: u32,
    frame_h: u32,
    seed: u64,
    device_id: i32,
    out_dir: Option<PathBuf>,
    device_name: Option<String>,
}

fn parse_args() -> Opts {
    let mut o = Opts {
        config: PathBuf::from("engines/promptseg-full.toml"),
        routes: vec![Route::A, Route::B, Route::C, Route::Seed],
        frames: 8,
        classes: 4,
        rounds: 20,
        warmup: 2,
        backend: BackendKind::OnnxRuntimeCpu,
        threads: 0,
        frame_w: 1920,
        frame_h: 1080,
        seed: 12345,
        device_id: 0,
        out_dir: None,
        device_name: None,
    };
    let mut cli = cli::Cli::from_env(die);
    while let Some(a) = cli.next_opt() {
        match a.as_str() {
            "--config" => o.config = PathBuf::from(cli.value(&a)),
            "--routes" => {
                o.routes = cli
                    .value(&a)
                    .split(',')
                    .map(|r| {
                        Route::parse(r.trim())
                            .unwrap_or_else(|| die(&format!("--routes: unknown route '{r}'")))
                    })
                    .collect()
            }
            "--frames" => o.frames = cli.num(&a),
            "--classes" => o.classes = cli.num(&a),
            "--rounds" => o.rounds = cli.num(&a),
            "--warmup" => o.warmup = cli.num(&a),
            "--backend" => {
                let v = cli.value(&a);
                o.backend = match BackendKind::parse(&v) {
                    Some(k @ (BackendKind::OnnxRuntimeCpu | BackendKind::OnnxRuntimeCuda)) => k,
                    _ => die(&format!(
                        "--backend: '{v}' is not onnxruntime-cpu or onnxruntime-cuda"
                    )),
                }
            }
            "--threads" => o.threads = cli.num(&a),
            "--frame-size" => {
                let v = cli.value(&a);
                let (w, h) = v
                    .split_once('x')
                    .unwrap_or_else(|| die("--frame-size: expected WxH"));
                (o.frame_w, o.frame_h) = (cli.parse(w, "--frame-size"), cli.parse(h, "--frame-size"));
            }
            "--seed" => o.seed = cli.num(&a),
            "--device-id" => o.device_id = cli.num(&a),
            "--out-dir" => o.out_dir = Some(PathBuf::from(cli.value(&a))),
            "--device-name" => o.device_name = Some(cli.value(&a)),
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            other => die(&format!("unknown option '{other}'")),
        }
    }
    if o.frames == 0
        || o.classes == 0
        || o.rounds == 0
        || o.routes.is_empty()
        || o.frame_w == 0
        || o.frame_h == 0
    {
        die("--frames, --classes, --rounds, --routes and --frame-size must not be zero or empty");
    }
    o
}

/// What one route measured.
struct RouteRun {
    route: Route,
    lat_ms: Vec<f64>,
    wall_s: f64,
    cpu_cores: f64,
    d2h_bytes_per_round: f64,
    h2d_prompt_bytes_per_round: f64,
    encoder_calls: u64,
    decoder_calls: u64,
    detections: u64,
    first: Vec<Vec<Detection>>,
    vram: Option<gpumon::VramStats>,
    rss_peak_mib: Option<f64>,
    rss_steady_mib: Option<f64>,
}

fn round3(v: f64) -> Value {
    if v.is_finite() {
        json!((v * 1000.0).round() / 1000.0)
    } else {
        Value::Null
    }
}

fn run_route(
    o: &Opts,
    cfg: &PromptSegConfig,
    route: Route,
    nvml: Option<&std::sync::Arc<gpumon::Nvml>>,
    t0: Instant,
) -> Result<RouteRun, String> {
    let mut engine = PromptSegEngine::open(
        cfg.clone(),
        &PromptSegOptions {
            kind: Some(o.backend),
            device_id: o.device_id,
            threads: o.threads,
            max_batch: Some(o.frames),
            route,
            ..Default::default()
        },
    )
    .map_err(|e| e.to_string())?;
    let pre = cfg.preprocess;
    let input = random_input(
        cfg.input_name.as_deref().unwrap_or("image"),
        pre.dtype,
        vec![o.frames, 3, pre.height as usize, pre.width as usize],
        o.seed,
    );
    let transforms = vec![pre.transform(o.frame_w, o.frame_h); o.frames];
    let sampler = gpumon::GpuSampler::start(nvml.cloned(), t0, false, 50);
    let mut first = Vec::new();
    for i in 0..o.warmup.max(1) {
        let r = engine
            .run(route, &input, &transforms)
            .map_err(|e| e.to_string())?;
        if i == 0 {
            first = r;
        }
    }
    let (mut lat, mut d2h, mut h2d) = (Vec::with_capacity(o.rounds), 0u64, 0u64);
    let before = engine.totals();
    let (cpu0, w0) = (cpu_time_s(), Instant::now());
    let window_start = t0.elapsed().as_nanos() as u64;
    let mut rss = Vec::with_capacity(o.rounds);
    for _ in 0..o.rounds {
        let t = Instant::now();
        engine
            .run(route, &input, &transforms)
            .map_err(|e| e.to_string())?;
        lat.push(t.elapsed().as_secs_f64() * 1e3);
        let st = engine.last_round();
        d2h += st.d2h_bytes;
        h2d += st.h2d_prompt_bytes;
        rss.extend(proc_status_mib("VmRSS:"));
    }
    let wall_s = w0.elapsed().as_secs_f64();
    let window_end = t0.elapsed().as_nanos() as u64;
    let cpu_cores = (cpu_time_s() - cpu0) / wall_s;
    let after = engine.totals();
    let samples = sampler.map(|s| s.finish()).unwrap_or_default();
    lat.sort_by(f64::total_cmp);
    rss.sort_by(f64::total_cmp);
    let n = o.rounds as u64;
    Ok(RouteRun {
        route,
        lat_ms: lat,
        wall_s,
        cpu_cores,
        d2h_bytes_per_round: d2h as f64 / n as f64,
        h2d_prompt_bytes_per_round: h2d as f64 / n as f64,
        encoder_calls: (after.encoder_calls - before.encoder_calls) / n,
        decoder_calls: (after.decoder_calls - before.decoder_calls) / n,
        detections: (after.detections - before.detections) / n,
        first,
        vram: gpumon::vram_stats(&samples, window_start, window_end),
        rss_peak_mib: proc_status_mib("VmHWM:"),
        rss_steady_mib: rss.get(rss.len() / 2).copied(),
    })
}

fn main() {
    let o = parse_args();
    let cmdline = std::env::args().collect::<Vec<_>>().join(" ");
    let t0 = Instant::now();
    let (date, date_compact) = gpumon::today();
    let (commit, dirty) = gpumon::commit();
    let mut cfg = PromptSegConfig::from_file(&o.config)
        .unwrap_or_else(|e| die(&format!("{}: {e}", o.config.display())));
    if o.classes > cfg.classes.len() {
        die(&format!(
            "--classes {}: the config has {} classes",
            o.classes,
            cfg.classes.len()
        ));
    }
    cfg.classes.truncate(o.classes);
    let on_gpu = o.backend != BackendKind::OnnxRuntimeCpu;
    let nvml = if on_gpu {
        gpumon::Nvml::open(o.device_id.max(0) as u32)
            .map_err(|e| eprintln!("NVML: {e} (VRAM via nvidia-smi if present)"))
            .ok()
    } else {
        None
    };
    let (cpu_model, cores) = cpu_model_and_cores();
    let device = o.device_name.clone().unwrap_or_else(|| {
        if on_gpu {
            gpumon::gpu_name(nvml.as_deref()).unwrap_or_else(|| "unknown GPU".into())
        } else {
            format!("cpu: {cpu_model} x{cores}")
        }
    });
    let prefix = if on_gpu {
        gpumon::short_device(&device)
    } else {
        "cpu".into()
    };
    eprintln!(
        "{}: {} frames x {} classes per round, {} timed rounds per route, backend {}, device {device}",
        o.config.display(),
        o.frames,
        o.classes,
        o.rounds,
        o.backend.name()
    );

    let load_start = loadavg_1min();
    let mut runs = Vec::new();
    for &route in &o.routes {
        match run_route(&o, &cfg, route, nvml.as_ref(), t0) {
            Ok(r) => {
                eprintln!(
                    "route {:4}: {:9.1} ms/round (p50), d2h {:12.0} bytes/round, prompts up {:10.0} bytes/round, {} enc / {} dec calls, {} detections/round",
                    route.name(),
                    percentile(&r.lat_ms, 50.0),
                    r.d2h_bytes_per_round,
                    r.h2d_prompt_bytes_per_round,
                    r.encoder_calls,
                    r.decoder_calls,
                    r.detections
                );
                runs.push(r);
            }
            Err(e) => die(&format!("route {}: {e}", route.name())),
        }
    }
    let load_end = loadavg_1min();
    let reference = runs
        .iter()
        .find(|r| r.route == Route::Seed)
        .map(|r| o.frames as f64 / (percentile(&r.lat_ms, 50.0) / 1e3));
    let mut all_match = true;
    for r in &runs {
        let p50 = percentile(&r.lat_ms, 50.0);
        let fps = o.frames as f64 / (p50 / 1e3);
        let matches = r.first == runs[0].first;
        all_match &= matches;
        let mut v = json!({
            "device": device,
            "date": date,
            "commit": commit,
            "commit_dirty": dirty,
            "what": format!("route-{}", r.route.name()),
            "pipeline": cmdline,
            "cameras": o.frames,
            "width": o.frame_w,
            "height": o.frame_h,
            "batch_size": o.frames,
            "classes": o.classes,
            "model": o.config.display().to_string(),
            "backend": o.backend.name(),
            "frames": o.frames * o.rounds,
            "rounds": o.rounds,
            "warmup_rounds": o.warmup.max(1),
            "fps_total": round3(fps),
            "fps_per_camera": round3(fps / o.frames as f64),
            "ms_per_round": round3(p50),
            "latency_ms": {"p50": round3(p50), "p95": round3(percentile(&r.lat_ms, 95.0)),
                           "p99": round3(percentile(&r.lat_ms, 99.0)), "min": round3(r.lat_ms[0]),
                           "max": round3(r.lat_ms[r.lat_ms.len() - 1]), "timed_wall_s": round3(r.wall_s),
                           "per": "round (F frames x K classes)"},
            "cpu_cores": round3(r.cpu_cores),
            "loadavg_1min": {"start": load_start, "end": load_end, "cores": cores},
            "rss_mib": {"steady": r.rss_steady_mib.map(round3), "peak": r.rss_peak_mib.map(round3),
                        "drift_mib_per_min": Value::Null},
            "vram_mib": r.vram.as_ref().map(|v| json!({"steady": round3(v.steady), "peak": round3(v.peak),
                "drift_mib_per_min": round3(v.drift_mib_per_min), "baseline": round3(v.baseline)})),
            "d2h_bytes_per_round": r.d2h_bytes_per_round,
            "d2h_bytes_per_frame": r.d2h_bytes_per_round / o.frames as f64,
            "h2d_bytes_per_frame": Value::Null,
            "h2d_prompt_bytes_per_round": r.h2d_prompt_bytes_per_round,
            "encoder_calls_per_round": r.encoder_calls,
            "decoder_calls_per_round": r.decoder_calls,
            "detections_per_round": r.detections,
            "results_match": {"with": format!("route-{}", runs[0].route.name()), "equal": matches},
            "d2h_note": "a/b/c: bytes a device-side selection copies back (boxes, logits, presence of every row, masks of kept queries); seed: every decoder output byte, every round. Measured traffic on a GPU backend with outputs_on_device (feature cuda); with host outputs (CPU backend) the bytes that would cross.",
        });
        if let Some(ref_fps) = reference {
            v["reference"] = json!({"name": "route-seed", "fps_total": round3(ref_fps)});
            v["ratio"] = round3(fps / ref_fps);
        }
        let text = serde_json::to_string_pretty(&v).unwrap_or_default();
        match &o.out_dir {
            Some(dir) => {
                let path = dir.join(format!("{prefix}-route-{}-{date_compact}.json", r.route.name()));
                if let Err(e) = std::fs::create_dir_all(dir).and_then(|_| std::fs::write(&path, text + "\n"))
                {
                    die(&format!("writing {}: {e}", path.display()));
                }
                eprintln!("wrote {}", path.display());
            }
            None => println!("{text}"),
        }
    }
    if !all_match {
        eprintln!("trtvision-promptseg-bench: the routes gave different detections");
        std::process::exit(1);
    }
}
