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
//!   output (all masks) brought to host memory every round;
//! * `<route>1` (e.g. `c1`): that route with single-buffered decoder outputs
//!   (`decoder-buffers=1`: the selection of a decoder call finishes and its outputs are
//!   released before the next call) instead of two output sets alive at once. Running
//!   `c` and `c1` in one invocation measures what double buffering costs in VRAM and
//!   gains in time (`double_buffering` in both records, next to the size of one decoder
//!   output set, `decoder_output_set_bytes`, to check the VRAM difference against).
//!
//! Every route gets a freshly opened engine (its own VRAM window), `--warmup` untimed
//! rounds and `--rounds` timed ones. One JSON per route in the bench schema
//! (/work/shared/bench-schema.md), `<device>-<what>-<YYYYMMDD>.json` in `--out-dir` (what:
//! `route-c`, `route-c-single-buffer`, with `-exact-arena` appended under
//! `--exact-arena`), with `ms_per_round`, `d2h_bytes_per_round` (what crosses device ->
//! host per round: for a/b/c the bytes a device-side selection copies back, boxes/scores
//! and kept masks; for seed every decoder output byte) and, on a GPU, VRAM baseline (after
//! open), steady and peak.
//!
//! `results_match`: the detections of each route's first round against those of the
//! first route run: `equal_bitwise` (scores and boxes by their f32 bits, masks by pixels;
//! not the masks' GPU addresses, which differ in every engine)
//! and `within_tolerance` (per frame and class the detections matched greedily by box IoU;
//! counts equal, nothing unmatched, box IoU >= 0.99, score difference <= 1e-3, mask IoU in
//! frame pixels >= 0.98 by default), with the worst matched pair. On the CPU the routes are
//! bit-identical. On a GPU they need not be: route a runs the encoder with batch 1, b and c
//! with batch F, and the decoder runs with batch K (a, b) or F (c); cuBLAS and cuDNN pick
//! kernels (tiling, split-K, convolution and reduction algorithms) per shape, so a row is
//! summed in another order and an f32 may differ in its last bits, which flips a mask pixel
//! at the threshold or the order of tied scores. Routes with the same shapes (c, its
//! single-buffered variant and seed, whose masks are selected on the CPU instead of by the
//! mask kernel) are expected bit-identical; `repeatable_bitwise` says whether a route's
//! last timed round equals its first bit for bit, `others` compares each route with every
//! other one. The exit status is 1 when a route is not within the tolerance.
//!
//! `--exact-arena` makes ONNX Runtime's CUDA arena grow by exactly what is requested
//! instead of in doubling steps, so that a VRAM difference shows what a tensor costs.

use trtvision_tools::cli;
use trtvision_tools::gpumon;
use trtvision_tools::procstats;

use std::path::PathBuf;
use std::time::Instant;

use gsttrtvision::backend::BackendKind;
use gsttrtvision::config::promptseg::PromptSegConfig;
use gsttrtvision::results::Detection;
use gsttrtvision::trtinfer::promptseg::compare::{compare, Comparison, Tolerance};
use gsttrtvision::trtinfer::promptseg::{PromptSegEngine, PromptSegOptions, Route};
use procstats::{cpu_model_and_cores, cpu_time_s, loadavg_1min, percentile, proc_status_mib, random_input};
use serde_json::{json, Value};

const USAGE: &str = "\
usage: trtvision-promptseg-bench [options]
  --config PATH        prompt-segmentation config TOML (default engines/promptseg-full.toml)
  --routes LIST        comma list of a, b, c, seed, each optionally followed by 1 for
                       single-buffered decoder outputs (default a,b,c,c1,seed)
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
  --exact-arena        grow ONNX Runtime's CUDA arena by exactly what is requested
  --box-iou-min V      tolerance: lowest box IoU of matched detections (default 0.99)
  --score-abs-max V    tolerance: largest score difference (default 0.001)
  --mask-iou-min V     tolerance: lowest mask IoU in frame pixels (default 0.98)
";

fn die(msg: &str) -> ! {
    eprintln!("trtvision-promptseg-bench: {msg}\n{USAGE}");
    std::process::exit(2);
}

/// A route as the benchmark runs it: the call order and the decoder output buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RouteSpec {
    route: Route,
    buffers: usize,
}

impl RouteSpec {
    fn parse(s: &str) -> Option<Self> {
        let (name, buffers) = match s.strip_suffix('1') {
            Some(n) => (n, 1),
            None => (s, 2),
        };
        Route::parse(name).map(|route| Self { route, buffers })
    }
    /// `c`, `c1`, ...
    fn name(self) -> String {
        match self.buffers {
            1 => format!("{}1", self.route.name()),
            _ => self.route.name().to_string(),
        }
    }
    /// `route-c`, `route-c-single-buffer`, ... (`-exact-arena` appended with `exact`).
    fn what(self, exact: bool) -> String {
        format!(
            "route-{}{}{}",
            self.route.name(),
            if self.buffers == 1 { "-single-buffer" } else { "" },
            if exact { "-exact-arena" } else { "" }
        )
    }
}

struct Opts {
    config: PathBuf,
    routes: Vec<RouteSpec>,
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
    exact_arena: bool,
    tolerance: Tolerance,
}

fn parse_args() -> Opts {
    let mut o = Opts {
        config: PathBuf::from("engines/promptseg-full.toml"),
        routes: ["a", "b", "c", "c1", "seed"]
            .iter()
            .filter_map(|r| RouteSpec::parse(r))
            .collect(),
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
        exact_arena: false,
        tolerance: Tolerance::default(),
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
                        RouteSpec::parse(&r.trim().to_ascii_lowercase())
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
            "--exact-arena" => o.exact_arena = true,
            "--box-iou-min" => o.tolerance.box_iou_min = cli.num(&a),
            "--score-abs-max" => o.tolerance.score_abs_max = cli.num(&a),
            "--mask-iou-min" => o.tolerance.mask_iou_min = cli.num(&a),
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
    if o.exact_arena && o.backend != BackendKind::OnnxRuntimeCuda {
        die("--exact-arena applies to the onnxruntime-cuda backend only");
    }
    for (i, r) in o.routes.iter().enumerate() {
        if o.routes[..i].contains(r) {
            die(&format!("--routes: route {} is named twice", r.name()));
        }
    }
    o
}

/// What one route measured.
struct RouteRun {
    spec: RouteSpec,
    lat_ms: Vec<f64>,
    wall_s: f64,
    cpu_cores: f64,
    d2h_bytes_per_round: f64,
    h2d_prompt_bytes_per_round: f64,
    encoder_calls: u64,
    decoder_calls: u64,
    detections: u64,
    /// Bytes of all outputs of one decoder call.
    decoder_output_bytes: u64,
    /// Detections of the first (warm-up) round and of the last timed round.
    first: Vec<Vec<Detection>>,
    last: Vec<Vec<Detection>>,
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

fn round6(v: f64) -> Value {
    if v.is_finite() {
        json!((v * 1e6).floor() / 1e6)
    } else {
        Value::Null
    }
}

/// What double-buffered decoder outputs cost and gain against single-buffered ones (same
/// route): time per round, VRAM steady/peak/growth over the baseline after open, and the
/// size of one decoder output set, which the VRAM difference should be close to (ONNX
/// Runtime's arena grows in doubling steps unless `--exact-arena`).
fn double_buffering(double: &RouteRun, single: &RouteRun) -> Value {
    let side = |r: &RouteRun| {
        json!({
            "decoder_buffers": r.spec.buffers,
            "ms_per_round": round3(percentile(&r.lat_ms, 50.0)),
            "vram_steady_mib": r.vram.as_ref().map(|v| round3(v.steady)),
            "vram_peak_mib": r.vram.as_ref().map(|v| round3(v.peak)),
            "vram_growth_mib": r.vram.as_ref().map(|v| round3(v.peak - v.baseline)),
        })
    };
    let diff = |f: fn(&gpumon::VramStats) -> f64| match (&double.vram, &single.vram) {
        (Some(d), Some(s)) => round3(f(d) - f(s)),
        _ => Value::Null,
    };
    let set = double.decoder_output_bytes.max(single.decoder_output_bytes);
    json!({
        "decoder_output_set_bytes": set,
        "decoder_output_set_mib": round3(set as f64 / (1024.0 * 1024.0)),
        "double": side(double),
        "single": side(single),
        "difference_double_minus_single": {
            "ms_per_round": round3(percentile(&double.lat_ms, 50.0) - percentile(&single.lat_ms, 50.0)),
            "vram_steady_mib": diff(|v| v.steady),
            "vram_peak_mib": diff(|v| v.peak),
            "vram_growth_mib": diff(|v| v.peak - v.baseline),
        },
        "note": "VRAM: NVML device memory used (baseline = first sample after the engine opened, growth = peak - baseline); the expected difference is one decoder output set, rounded up by ONNX Runtime's arena (doubling steps unless exact_arena)",
    })
}

fn run_route(
    o: &Opts,
    cfg: &PromptSegConfig,
    spec: RouteSpec,
    nvml: Option<&std::sync::Arc<gpumon::Nvml>>,
    t0: Instant,
) -> Result<RouteRun, String> {
    let route = spec.route;
    let mut engine = PromptSegEngine::open(
        cfg.clone(),
        &PromptSegOptions {
            kind: Some(o.backend),
            device_id: o.device_id,
            threads: o.threads,
            max_batch: Some(o.frames),
            route,
            decoder_buffers: spec.buffers,
            exact_arena: o.exact_arena,
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
    let mut last = Vec::new();
    for _ in 0..o.rounds {
        let t = Instant::now();
        last = engine
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
        spec,
        lat_ms: lat,
        wall_s,
        cpu_cores,
        d2h_bytes_per_round: d2h as f64 / n as f64,
        h2d_prompt_bytes_per_round: h2d as f64 / n as f64,
        encoder_calls: (after.encoder_calls - before.encoder_calls) / n,
        decoder_calls: (after.decoder_calls - before.decoder_calls) / n,
        detections: (after.detections - before.detections) / n,
        decoder_output_bytes: after.decoder_output_bytes,
        first,
        last,
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
    for &spec in &o.routes {
        match run_route(&o, &cfg, spec, nvml.as_ref(), t0) {
            Ok(r) => {
                eprintln!(
                    "route {:5}: {:9.1} ms/round (p50), d2h {:12.0} bytes/round, prompts up {:10.0} bytes/round, {} enc / {} dec calls, {} detections/round, decoder output set {} bytes{}",
                    spec.name(),
                    percentile(&r.lat_ms, 50.0),
                    r.d2h_bytes_per_round,
                    r.h2d_prompt_bytes_per_round,
                    r.encoder_calls,
                    r.decoder_calls,
                    r.detections,
                    r.decoder_output_bytes,
                    r.vram.as_ref().map_or(String::new(), |v| format!(
                        ", VRAM MiB baseline {:.0} steady {:.0} peak {:.0}",
                        v.baseline, v.steady, v.peak
                    ))
                );
                runs.push(r);
            }
            Err(e) => die(&format!("route {}: {e}", spec.name())),
        }
    }
    let load_end = loadavg_1min();
    let reference = runs
        .iter()
        .find(|r| r.spec.route == Route::Seed && r.spec.buffers == 2)
        .map(|r| o.frames as f64 / (percentile(&r.lat_ms, 50.0) / 1e3));
    let tol = o.tolerance;
    // Every route against every other one (first rounds), for the cause of a difference.
    let pairs: Vec<Vec<Comparison>> = runs
        .iter()
        .map(|r| runs.iter().map(|x| compare(&r.first, &x.first)).collect())
        .collect();
    for (i, r) in runs.iter().enumerate() {
        let line: Vec<String> = runs
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .map(|(j, x)| {
                let c = &pairs[i][j];
                let verdict = if c.equal_bitwise {
                    "bitwise"
                } else if c.within(&tol) {
                    "tolerance"
                } else {
                    "DIFFERENT"
                };
                format!("{} {verdict}", x.spec.name())
            })
            .collect();
        eprintln!("match {:5}: {}", r.spec.name(), line.join(", "));
    }
    let mut all_within = true;
    for (i, r) in runs.iter().enumerate() {
        let p50 = percentile(&r.lat_ms, 50.0);
        let fps = o.frames as f64 / (p50 / 1e3);
        let cmp = &pairs[0][i];
        let within = cmp.within(&tol);
        all_within &= within;
        let others: serde_json::Map<String, Value> = runs
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .map(|(j, x)| {
                let c = &pairs[j][i];
                (
                    x.spec.what(o.exact_arena),
                    json!({"equal_bitwise": c.equal_bitwise, "within_tolerance": c.within(&tol)}),
                )
            })
            .collect();
        let results_match = json!({
            "with": runs[0].spec.what(o.exact_arena),
            "equal_bitwise": cmp.equal_bitwise,
            "within_tolerance": within,
            "tolerance": {"box_iou_min": tol.box_iou_min, "score_abs_max": tol.score_abs_max,
                          "mask_iou_min": tol.mask_iou_min},
            "worst": {"box_iou": round6(cmp.box_iou), "score_abs": cmp.score_abs,
                      "mask_iou": round6(cmp.mask_iou), "unmatched": cmp.unmatched},
            "counts_equal": cmp.counts_equal,
            "matched": cmp.matched,
            "repeatable_bitwise": compare(&r.first, &r.last).equal_bitwise,
            "others": others,
            "note": "first round of each route against the first route run: detections matched per frame and class greedily by box IoU; worst = worst matched pair; masks compared in frame pixels; repeatable_bitwise = this route's last timed round equals its first",
        });
        let mut v = json!({
            "device": device,
            "date": date,
            "commit": commit,
            "commit_dirty": dirty,
            "what": r.spec.what(o.exact_arena),
            "route": r.spec.route.name(),
            "decoder_buffers": r.spec.buffers,
            "exact_arena": o.exact_arena,
            "decoder_output_set_bytes": r.decoder_output_bytes,
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
            "results_match": results_match,
            "d2h_note": "a/b/c: bytes a device-side selection copies back (boxes, logits, presence of every row, masks of kept queries); seed: every decoder output byte, every round. Measured traffic on a GPU backend with outputs_on_device (feature cuda); with host outputs (CPU backend) the bytes that would cross.",
        });
        if let Some(ref_fps) = reference {
            v["reference"] = json!({"name": "route-seed", "fps_total": round3(ref_fps)});
            v["ratio"] = round3(fps / ref_fps);
        }
        let partner = runs
            .iter()
            .find(|x| x.spec.route == r.spec.route && x.spec.buffers != r.spec.buffers);
        if let Some(x) = partner {
            let (double, single) = if r.spec.buffers == 2 { (r, x) } else { (x, r) };
            v["double_buffering"] = double_buffering(double, single);
        }
        let text = serde_json::to_string_pretty(&v).unwrap_or_default();
        match &o.out_dir {
            Some(dir) => {
                let path = dir.join(format!(
                    "{prefix}-{}-{date_compact}.json",
                    r.spec.what(o.exact_arena)
                ));
                if let Err(e) = std::fs::create_dir_all(dir).and_then(|_| std::fs::write(&path, text + "\n"))
                {
                    die(&format!("writing {}: {e}", path.display()));
                }
                eprintln!("wrote {}", path.display());
            }
            None => println!("{text}"),
        }
    }
    if !all_within {
        eprintln!(
            "trtvision-promptseg-bench: the routes gave different detections (beyond box IoU {}, score {}, mask IoU {})",
            tol.box_iou_min, tol.score_abs_max, tol.mask_iou_min
        );
        std::process::exit(1);
    }
}
