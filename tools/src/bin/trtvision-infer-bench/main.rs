//! trtvision-infer-bench: the inference backend alone, per batch size.
//!
//! For each batch size N (default 1, 2, 4, 8, 16) and the model's `[N, 3, H, W]` input
//! (H, W and dtype from the model config's `[input]`), filled with deterministic
//! pseudo-random values in [0, 1) (xorshift64*, seeded; never zeros):
//! 1. ONNX Runtime CPU provider: reference outputs, then warm-up and timed calls;
//! 2. ONNX Runtime CUDA provider (host input): parity against the CPU outputs (max abs
//!    diff and relative L2 per output; fails above `--tolerance` relative L2), warm-up and
//!    timed calls, VRAM (device-wide, NVML or nvidia-smi) and PCIe traffic (NVML);
//! 3. with the cargo feature `cuda`: the CUDA provider with the input already in device
//!    memory (`TensorStorage::Device`, copied once before timing), parity against the
//!    host-input result, timed the same way (`input_on_device`).
//!
//! One JSON record per N, in the bench schema (/work/shared/bench-schema.md):
//! `<device>-infer-batch-<N>-<YYYYMMDD>.json` in `--out-dir`. With a GPU the record is the
//! CUDA run with the CPU run as `reference`; without one (no driver, or an ONNX Runtime
//! without the CUDA provider) it says why and the record is the CPU run (device `cpu`).
//! Exit status: 0, or 1 when a parity check failed (records are written anyway), or 2 on
//! usage errors, or 3 when `--require-cuda` was given and CUDA could not run.

use trtvision_tools::cli;
use trtvision_tools::gpumon;
use trtvision_tools::procstats;

use procstats::{cpu_model_and_cores, cpu_time_s, percentile, proc_status_mib, random_input as make_input};

use std::path::PathBuf;
use std::time::Instant;

use gsttrtvision::backend::{self, BackendKind, BackendOptions, InferenceBackend, InputRef};
use gsttrtvision::config::ModelConfig;
use gsttrtvision::tensor::Tensor;
use serde_json::{json, Value};

mod device;
mod parity;
mod pcie;
use device::*;
use parity::*;
use pcie::*;

const USAGE: &str = "\
usage: trtvision-infer-bench [options]
  --model PATH             model config TOML (or .onnx: 640x640 f32 input) (default engines/shapes-yolo-seg.toml)
  --batches LIST           batch sizes, comma list (default 1,2,4,8,16)
  --warmup W               untimed calls per backend and batch size (default 10)
  --iters I                timed calls per GPU run (default 50)
  --cpu-iters I            timed calls of the CPU reference (default: --iters)
  --backends LIST          onnxruntime-cpu,onnxruntime-cuda (default both; cpu is always run as reference)
  --no-device-input        skip the device-input run (cargo feature cuda)
  --io-variants LIST       device input+outputs runs: plain (dynamic batch), fixed (fixed-batch), graph
                           (fixed-batch + cuda-graph); comma list (default plain,fixed,graph)
  --tolerance T            largest relative L2 error CUDA vs CPU (default 1e-3)
  --threads T              CPU provider intra-op threads (default 0 = ONNX Runtime's choice)
  --seed S                 input seed (default 12345)
  --device-id D            CUDA device (default 0)
  --out-dir DIR            write one JSON per batch size here (default: print them)
  --file-tag TAG           name the files <device>-infer-batch-<N>-TAG-<date>.json (several models)
  --device-name STR        override the device name (default: nvidia-smi/NVML name, or cpu)
  --require-cuda           exit 3 when the CUDA provider cannot run
  --pcie-probe S           only measure what NVML counts on PCIe with no copy at all: S seconds idle,
                           then S seconds of back-to-back kernel launches (one tiny preprocessing
                           launch each, parameters inside the launch); prints one JSON line with
                           bytes per second idle and bytes per launch (cargo feature cuda)
";

fn die(msg: &str) -> ! {
    eprintln!("trtvision-infer-bench: {msg}\n{USAGE}");
    std::process::exit(2);
}

struct Opts {
    model: PathBuf,
    batches: Vec<usize>,
    warmup: usize,
    iters: usize,
    cpu_iters: Option<usize>,
    cuda: bool,
    device_input: bool,
    io_variants: Vec<IoVariant>,
    tolerance: f64,
    threads: usize,
    seed: u64,
    device_id: i32,
    out_dir: Option<PathBuf>,
    /// Inserted in the file names (several models in one directory).
    file_tag: Option<String>,
    device_name: Option<String>,
    require_cuda: bool,
    /// Seconds of each `--pcie-probe` phase (0 = no probe).
    pcie_probe_s: u64,
}

fn parse_args() -> Opts {
    let mut o = Opts {
        model: PathBuf::from("engines/shapes-yolo-seg.toml"),
        batches: vec![1, 2, 4, 8, 16],
        warmup: 10,
        iters: 50,
        cpu_iters: None,
        cuda: true,
        device_input: true,
        io_variants: vec![IoVariant::Plain, IoVariant::Fixed, IoVariant::Graph],
        tolerance: 1e-3,
        threads: 0,
        seed: 12345,
        device_id: 0,
        out_dir: None,
        file_tag: None,
        device_name: None,
        require_cuda: false,
        pcie_probe_s: 0,
    };
    let mut cli = cli::Cli::from_env(die);
    while let Some(a) = cli.next_opt() {
        match a.as_str() {
            "--model" => o.model = PathBuf::from(cli.value(&a)),
            "--batches" => {
                o.batches = cli
                    .value(&a)
                    .split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| cli.parse(s.trim(), "--batches"))
                    .collect()
            }
            "--warmup" => o.warmup = cli.num(&a),
            "--iters" => o.iters = cli.num(&a),
            "--cpu-iters" => o.cpu_iters = Some(cli.num(&a)),
            "--backends" => {
                let v = cli.value(&a);
                o.cuda = false;
                for b in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    match BackendKind::parse(b) {
                        Some(BackendKind::OnnxRuntimeCuda) => o.cuda = true,
                        Some(BackendKind::OnnxRuntimeCpu) => {}
                        _ => die(&format!(
                            "--backends: '{b}' is not onnxruntime-cpu or onnxruntime-cuda"
                        )),
                    }
                }
            }
            "--no-device-input" => o.device_input = false,
            "--io-variants" => {
                let s = cli.value(&a);
                o.io_variants = s
                    .split(',')
                    .map(|v| {
                        IoVariant::parse(v).unwrap_or_else(|| {
                            die(&format!("--io-variants: '{v}' is not plain, fixed or graph"))
                        })
                    })
                    .collect();
            }
            "--tolerance" => o.tolerance = cli.num(&a),
            "--threads" => o.threads = cli.num(&a),
            "--seed" => o.seed = cli.num(&a),
            "--device-id" => o.device_id = cli.num(&a),
            "--out-dir" => o.out_dir = Some(PathBuf::from(cli.value(&a))),
            "--file-tag" => o.file_tag = Some(cli.value(&a)),
            "--device-name" => o.device_name = Some(cli.value(&a)),
            "--require-cuda" => o.require_cuda = true,
            "--pcie-probe" => o.pcie_probe_s = cli.num(&a),
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            _ => die(&format!("unknown option '{a}'")),
        }
    }
    if o.batches.is_empty() || o.batches.contains(&0) {
        die("--batches needs sizes > 0");
    }
    if o.iters == 0 || o.cpu_iters == Some(0) {
        die("--iters and --cpu-iters must be > 0");
    }
    if o.iters < 50 {
        eprintln!(
            "trtvision-infer-bench: note: --iters {} < 50: fine for a smoke test, too few for a result",
            o.iters
        );
    }
    o
}

fn main() {
    let o = parse_args();
    if o.pcie_probe_s > 0 {
        match pcie_probe(&o) {
            Ok(v) => {
                println!("{v}");
                return;
            }
            Err(e) => die(&format!("--pcie-probe: {e}")),
        }
    }
    let argv: Vec<String> = std::env::args().collect();
    let cmdline = argv.join(" ");
    let t0 = Instant::now();
    let (date, date_compact) = gpumon::today();
    let (commit, dirty) = gpumon::commit();

    let is_toml = o
        .model
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("toml"));
    let cfg = if is_toml {
        ModelConfig::from_file(&o.model)
    } else {
        ModelConfig::for_onnx(&o.model)
    }
    .unwrap_or_else(|e| die(&format!("{}: {e}", o.model.display())));
    let pre = cfg.preprocess;
    let max_n = *o.batches.iter().max().unwrap();

    let nvml = gpumon::Nvml::open(o.device_id.max(0) as u32);
    if let Err(e) = &nvml {
        eprintln!("NVML: {e} (VRAM via nvidia-smi if present, PCIe traffic not measured)");
    }
    let nvml = nvml.ok();
    let gpu_name = gpumon::gpu_name(nvml.as_deref());
    let vram_process_start = gpumon::used_mib(nvml.as_deref());
    let ort_lib = std::env::var("ORT_DYLIB_PATH").ok();
    eprintln!(
        "model {} input [N, 3, {}, {}] {}; GPU: {}; ONNX Runtime: {}",
        cfg.model_path().display(),
        pre.height,
        pre.width,
        pre.dtype.name(),
        gpu_name.as_deref().unwrap_or("none"),
        ort_lib.as_deref().unwrap_or("(search site-packages)")
    );

    // Input name from a CPU session (also loads ONNX Runtime).
    let probe = open(&o, &cfg, BackendKind::OnnxRuntimeCpu, max_n)
        .unwrap_or_else(|e| die(&format!("the CPU provider cannot open the model: {e}")));
    let input_name = cfg
        .input_name
        .clone()
        .unwrap_or_else(|| probe.inputs().first().map(|s| s.name.clone()).unwrap_or_default());
    let input_dtype = probe
        .inputs()
        .iter()
        .find(|s| s.name == input_name)
        .map(|s| s.dtype)
        .unwrap_or(pre.dtype);
    drop(probe);

    // Is the CUDA provider usable at all?
    let mut cuda_reason: Option<String> = None;
    if !o.cuda {
        cuda_reason = Some("not requested (--backends)".into());
    } else if let Err(e) = open(&o, &cfg, BackendKind::OnnxRuntimeCuda, max_n) {
        cuda_reason = Some(e);
    }
    let cuda_ok = cuda_reason.is_none();
    match &cuda_reason {
        None => eprintln!("CUDA provider: available"),
        Some(r) => eprintln!("CUDA unavailable: {r}\n  -> CPU numbers only (records with device 'cpu')"),
    }
    let (cpu_model, cores) = cpu_model_and_cores();
    let device = o.device_name.clone().unwrap_or_else(|| {
        if cuda_ok {
            gpu_name.clone().unwrap_or_else(|| "unknown GPU".into())
        } else {
            format!("cpu: {cpu_model} x{cores}")
        }
    });
    let prefix = if cuda_ok {
        gpumon::short_device(&device)
    } else {
        "cpu".to_string()
    };

    let mut all_pass = true;
    let mut summary = Vec::new();
    for (k, &n) in o.batches.iter().enumerate() {
        let shape = vec![n, 3, pre.height as usize, pre.width as usize];
        let input = make_input(
            &input_name,
            input_dtype,
            shape.clone(),
            o.seed.wrapping_add(n as u64),
        );
        let in_bytes = input.len_bytes();

        // CPU reference.
        let cpu_iters = o.cpu_iters.unwrap_or(o.iters);
        let (cpu_out, cpu_t) = {
            let mut b = open(&o, &cfg, BackendKind::OnnxRuntimeCpu, max_n)
                .unwrap_or_else(|e| die(&format!("CPU provider: {e}")));
            let out = run_once(b.as_mut(), &input_name, &input)
                .unwrap_or_else(|e| die(&format!("CPU provider, batch {n}: {e}")));
            let t = time_calls(b.as_mut(), &input_name, &input, o.warmup, cpu_iters, t0)
                .unwrap_or_else(|e| die(&format!("CPU provider, batch {n}: {e}")));
            (out, t)
        };
        let out_bytes: usize = cpu_out.iter().map(|t| t.len_bytes()).sum();
        eprintln!(
            "batch {n:2}: onnxruntime-cpu  p50 {:8.3} ms p95 {:8.3} ms -> {:8.1} frames/s ({} calls)",
            cpu_t.p(50.0),
            cpu_t.p(95.0),
            cpu_t.fps(n),
            cpu_iters
        );

        let cuda_run: Option<Result<CudaRun, String>> = cuda_ok.then(|| -> Result<CudaRun, String> {
            let before_open = gpumon::used_mib(nvml.as_deref());
            let mut b = open(&o, &cfg, BackendKind::OnnxRuntimeCuda, max_n)?;
            let after_open = gpumon::used_mib(nvml.as_deref());
            let out = run_once(b.as_mut(), &input_name, &input)?;
            let parity = compare(&cpu_out, &out);
            for _ in 0..o.warmup {
                run_once(b.as_mut(), &input_name, &input)?;
            }
            let after_warmup = gpumon::used_mib(nvml.as_deref());
            let sampler = gpumon::GpuSampler::start(nvml.clone(), t0, nvml.is_some(), 0);
            let timing = time_calls(b.as_mut(), &input_name, &input, 0, o.iters, t0);
            let samples = sampler.map(|s| s.finish()).unwrap_or_default();
            let timing = timing?;
            let (a, z) = timing.window;
            let frames = (n * o.iters) as f64;
            let pcie = gpumon::pcie_bytes(&samples, a, z);
            let h2d = pcie.map(|p| p.h2d / frames);
            let d2h = pcie.map(|p| p.d2h / frames);
            let pcie_samples = pcie.map(|p| p.readings).unwrap_or(0);
            let vs = gpumon::vram_stats(&samples, a, z);
            let vram = json!({
                "steady": vs.as_ref().map(|v| round(v.steady, 1)),
                "peak": vs.as_ref().map(|v| round(v.peak.max(after_warmup.unwrap_or(0.0)), 1)),
                "drift_mib_per_min": vs.as_ref().map(|v| round(v.drift_mib_per_min, 2)),
                "samples_second_half": vs.as_ref().map(|v| v.samples_second_half),
                "process_start": vram_process_start.map(|v| round(v, 1)),
                "before_open": before_open.map(|v| round(v, 1)),
                "after_open": after_open.map(|v| round(v, 1)),
                "after_warmup": after_warmup.map(|v| round(v, 1)),
                "session_after_warmup": match (before_open, after_warmup) {
                    (Some(a), Some(b)) => round(b - a, 1), _ => Value::Null },
                "scope": "device-wide used memory (all processes): NVML nvmlDeviceGetMemoryInfo, else nvidia-smi memory.used; steady/peak/drift over the timed calls, sampled back to back",
            });

            // Device input.
            let (device_input, device_input_pass) = if !o.device_input {
                (json!({"skipped": "--no-device-input"}), true)
            } else {
                match to_device(&input, o.device_id) {
                    Err(e) => (json!({"skipped": e}), true),
                    Ok(dev) => {
                        let r = (|| -> Result<(Value, bool), String> {
                            let dout = run_once(b.as_mut(), &input_name, &dev)?;
                            let vs_host = compare(&out, &dout);
                            let vs_cpu = compare(&cpu_out, &dout);
                            let dt = time_calls(b.as_mut(), &input_name, &dev, o.warmup, o.iters, t0)?;
                            let mut pass = diff_pass(&vs_host, o.tolerance) && diff_pass(&vs_cpu, o.tolerance);
                            // Input and outputs on the device: no copy at all per call; what
                            // NVML still counts on PCIe is the driver's and ONNX Runtime's own.
                            let device_io = |variant: IoVariant| -> Result<Value, String> {
                                // A fixed batch is fixed at this batch size (not padded).
                                let max = if variant == IoVariant::Plain { max_n } else { n };
                                let mut bd = open_with(&o, &cfg, BackendKind::OnnxRuntimeCuda, max, true, variant)?;
                                let warning = bd.take_warning();
                                let dio = run_once(bd.as_mut(), &input_name, &dev)?;
                                let on_device = dio.iter().all(|t| t.host_bytes().is_none());
                                let host: Vec<Tensor> =
                                    dio.iter().map(|t| to_host(t, o.device_id)).collect::<Result<_, _>>()?;
                                drop(dio);
                                let vs_cpu = compare(&cpu_out, &host);
                                for _ in 0..o.warmup {
                                    run_once(bd.as_mut(), &input_name, &dev)?;
                                }
                                // At least 3 s of calls (by this configuration's own speed): the
                                // PCIe figures then cover many NVML readings.
                                let probe = time_calls(bd.as_mut(), &input_name, &dev, 0, 20, t0)?;
                                let iters_io = o.iters.max((3000.0 / probe.p(50.0).max(1e-3)).ceil() as usize);
                                let sampler = gpumon::GpuSampler::start(nvml.clone(), t0, nvml.is_some(), 0);
                                let tio = time_calls(bd.as_mut(), &input_name, &dev, 0, iters_io, t0);
                                let samples = sampler.map(|s| s.finish()).unwrap_or_default();
                                let tio = tio?;
                                let (a, z) = tio.window;
                                let frames = (n * iters_io) as f64;
                                let pcie = gpumon::pcie_bytes(&samples, a, z);
                                let h2d = pcie.map(|p| p.h2d / frames);
                                let d2h = pcie.map(|p| p.d2h / frames);
                                let warning = warning.or_else(|| bd.take_warning());
                                let ok = on_device && diff_pass(&vs_cpu, o.tolerance);
                                eprintln!(
                                    "batch {n:2}: cuda, device input+outputs ({variant:?}) p50 {:8.3} ms -> {:8.1} frames/s; NVML h2d {:?} d2h {:?} B/frame; vs cpu: {}{}",
                                    tio.p(50.0), tio.fps(n), h2d.map(|v| v.round()), d2h.map(|v| v.round()), diff_line(&vs_cpu),
                                    warning.as_deref().map(|w| format!("; warning: {w}")).unwrap_or_default()
                                );
                                Ok(json!({
                                    "pass": ok,
                                    "fixed_batch": variant != IoVariant::Plain,
                                    "cuda_graph": variant == IoVariant::Graph,
                                    "backend_warning": warning,
                                    "outputs_on_device": on_device,
                                    "fps_total": round(tio.fps(n), 2),
                                    "latency_ms": tio.latency_json(),
                                    "cpu_cores": round(tio.cpu_cores, 3),
                                    "parity_vs_cpu": diffs_json(&vs_cpu, o.tolerance),
                                    "h2d_bytes_per_frame_measured": h2d.map(|v| round(v, 0)),
                                    "d2h_bytes_per_frame_measured": d2h.map(|v| round(v, 0)),
                                    "pcie_samples": pcie.map(|p| p.readings),
                                    "pcie_source": pcie.map(|p| p.source),
                                    "pcie_sampled_per_frame": pcie.and_then(|p| p.sampled).map(|(h, d)| json!({"h2d": round(h / frames, 0), "d2h": round(d / frames, 0)})),
                                    "h2d_bytes_per_frame_expected": 0,
                                    "d2h_bytes_per_frame_expected": 0,
                                    "method": "input in cuMemAlloc memory bound through ONNX Runtime I/O binding, outputs bound to CUDA memory (BackendOptions.outputs_on_device): no tensor copy per call; PCIe bytes are NVML's device-wide counters over the timed calls (driver command traffic included). fixed_batch: the batch dimension fixed at this batch size when the model loads; cuda_graph: runs captured into and replayed from CUDA graphs",
                                }))
                            };
                            let mut io = serde_json::Map::new();
                            for &variant in &o.io_variants {
                                let v = match device_io(variant) {
                                    Ok(v) => {
                                        pass &= v["pass"].as_bool().unwrap_or(false);
                                        v
                                    }
                                    Err(e) => {
                                        pass = false;
                                        json!({"error": e})
                                    }
                                };
                                io.insert(variant.key().to_string(), v);
                            }
                            eprintln!(
                                "batch {n:2}: cuda, device input p50 {:8.3} ms p95 {:8.3} ms -> {:8.1} frames/s; vs host input: {}",
                                dt.p(50.0), dt.p(95.0), dt.fps(n), diff_line(&vs_host)
                            );
                            Ok((
                                json!({
                                    "input_on_device": true,
                                    "fps_total": round(dt.fps(n), 2),
                                    "latency_ms": dt.latency_json(),
                                    "cpu_cores": round(dt.cpu_cores, 3),
                                    "ratio_vs_host_input": round(dt.fps(n) / timing.fps(n), 4),
                                    "parity_vs_host_input": diffs_json(&vs_host, o.tolerance),
                                    "parity_vs_cpu": diffs_json(&vs_cpu, o.tolerance),
                                    "h2d_bytes_per_frame_expected": 0,
                                    "method": "input copied once into cuMemAlloc memory of the primary context (DeviceBuffer), passed as TensorStorage::Device to OrtBackend (CUDA-located ORT value, no host copy); outputs still copied to host",
                                    "device_io": io.remove("device_io").unwrap_or(Value::Null),
                                    "device_io_variants": Value::Object(io),
                                }),
                                pass,
                            ))
                        })();
                        match r {
                            Ok(v) => v,
                            Err(e) => (json!({"input_on_device": true, "error": e}), false),
                        }
                    }
                }
            };
            Ok(CudaRun {
                timing,
                parity,
                vram,
                h2d_measured: h2d,
                d2h_measured: d2h,
                pcie_samples,
                device_input,
                device_input_pass,
            })
        });

        // Record.
        let cpu_ref = json!({
            "name": "onnxruntime-cpu",
            "fps_total": round(cpu_t.fps(n), 2),
            "latency_ms": cpu_t.latency_json(),
            "cpu_cores": round(cpu_t.cpu_cores, 3),
            "threads": if o.threads == 0 { json!("onnxruntime default") } else { json!(o.threads) },
            "calls": cpu_iters,
        });
        let mut rec: Vec<(&str, Value)> = vec![
            ("device", json!(device)),
            ("date", json!(date)),
            ("commit", json!(commit)),
            ("commit_dirty", json!(dirty)),
            ("what", json!(format!("infer-batch-{n}"))),
            (
                "pipeline",
                json!(format!(
                    "{cmdline} :: InferenceBackend::infer() on one [{n},3,{},{}] {} input (xorshift64* seed {}, values in [0,1)), one call per batch, outputs copied to host",
                    pre.height, pre.width, input_dtype.name(), o.seed.wrapping_add(n as u64)
                )),
            ),
            ("cameras", json!(n)),
            ("width", json!(pre.width)),
            ("height", json!(pre.height)),
            ("batch_size", json!(n)),
            ("model", json!(o.model.display().to_string())),
        ];
        let rss = json!({"steady": proc_status_mib("VmRSS:").map(|v| round(v, 1)),
                         "peak": proc_status_mib("VmHWM:").map(|v| round(v, 1)),
                         "drift_mib_per_min": Value::Null});
        let mut line;
        match &cuda_run {
            Some(Ok(c)) => {
                let t = &c.timing;
                let pass = diff_pass(&c.parity, o.tolerance) && c.device_input_pass;
                all_pass &= pass;
                eprintln!(
                    "batch {n:2}: onnxruntime-cuda p50 {:8.3} ms p95 {:8.3} ms -> {:8.1} frames/s, x{:.2} CPU; parity vs CPU: {} [{}]",
                    t.p(50.0), t.p(95.0), t.fps(n), t.fps(n) / cpu_t.fps(n), diff_line(&c.parity),
                    if pass { "PASS" } else { "FAIL" }
                );
                rec.extend([
                    ("backend", json!("onnxruntime-cuda")),
                    ("frames", json!(n * o.iters)),
                    ("fps_total", round(t.fps(n), 2)),
                    ("fps_per_camera", round(t.fps(n) / n as f64, 2)),
                    ("latency_ms", t.latency_json()),
                    ("cpu_cores", round(t.cpu_cores, 3)),
                    ("rss_mib", rss),
                    ("vram_mib", c.vram.clone()),
                    ("h2d_bytes_per_frame", c.h2d_measured.map(|v| round(v, 0)).unwrap_or(Value::Null)),
                    ("d2h_bytes_per_frame", c.d2h_measured.map(|v| round(v, 0)).unwrap_or(Value::Null)),
                    ("reference", cpu_ref.clone()),
                    ("ratio", round(t.fps(n) / cpu_t.fps(n), 4)),
                    ("cpu_latency_ms", cpu_t.latency_json()),
                    ("parity", diffs_json(&c.parity, o.tolerance)),
                    ("input_on_device", c.device_input.clone()),
                    ("h2d_bytes_per_frame_expected", json!(in_bytes / n)),
                    ("d2h_bytes_per_frame_expected", json!(out_bytes / n)),
                    ("pcie_samples_in_window", json!(c.pcie_samples)),
                    (
                        "pcie_method",
                        json!(if let Some(n) = nvml.as_deref() {
                            if n.pcie_counters().is_some() {
                                gpumon::METHOD_NVML_COUNTERS
                            } else {
                                gpumon::METHOD_NVML
                            }
                        } else {
                            "not measured (no NVML): h2d/d2h null; *_expected = input / output tensor bytes per frame"
                        }),
                    ),
                ]);
                line = format!(
                    "infer-batch-{n:<2} cuda {:9.1} fps p50 {:7.3} ms | cpu {:8.1} fps | x{:6.2} | rel_l2 {} | dev-input {}",
                    t.fps(n), t.p(50.0), cpu_t.fps(n), t.fps(n) / cpu_t.fps(n),
                    match &c.parity { Ok(d) => format!("{:.1e}", d.iter().map(|x| x.rel_l2).fold(0.0, f64::max)), Err(_) => "ERR".into() },
                    c.device_input.get("fps_total").map(|v| v.to_string()).unwrap_or_else(|| "-".into()),
                );
            }
            other => {
                let why = match other {
                    Some(Err(e)) => {
                        all_pass = false;
                        eprintln!("batch {n:2}: onnxruntime-cuda FAILED: {e}");
                        format!("the CUDA run failed: {e}")
                    }
                    _ => format!("CUDA unavailable: {}", cuda_reason.clone().unwrap_or_default()),
                };
                rec.extend([
                    ("backend", json!("onnxruntime-cpu")),
                    ("frames", json!(n * cpu_iters)),
                    ("fps_total", round(cpu_t.fps(n), 2)),
                    ("fps_per_camera", round(cpu_t.fps(n) / n as f64, 2)),
                    ("latency_ms", cpu_t.latency_json()),
                    ("cpu_cores", round(cpu_t.cpu_cores, 3)),
                    ("rss_mib", rss),
                    ("vram_mib", Value::Null),
                    ("h2d_bytes_per_frame", Value::Null),
                    ("d2h_bytes_per_frame", Value::Null),
                    ("reference", Value::Null),
                    ("ratio", Value::Null),
                    ("cpu_latency_ms", cpu_t.latency_json()),
                    ("parity", Value::Null),
                    ("input_on_device", Value::Null),
                    ("cuda", json!(why)),
                ]);
                line = format!(
                    "infer-batch-{n:<2} cpu only {:8.1} fps p50 {:7.3} ms ({why})",
                    cpu_t.fps(n),
                    cpu_t.p(50.0)
                );
            }
        }
        rec.extend([
            ("warmup_calls", json!(o.warmup)),
            ("timed_calls", json!(o.iters)),
            ("seed", json!(o.seed.wrapping_add(n as u64))),
            ("input_dtype", json!(input_dtype.name())),
            ("input_bytes", json!(in_bytes)),
            ("output_bytes", json!(out_bytes)),
            ("ort_library", json!(ort_lib)),
            ("cpu_model", json!(cpu_model)),
            ("cpu_logical_cores", json!(cores)),
            ("gpu", json!(gpu_name)),
            ("build", json!(if cfg!(feature = "cuda") { "release, features cuda" } else { "release" })),
            (
                "method",
                json!("latency = wall time of one InferenceBackend::infer() call (host input wrapped without copy; the CUDA provider copies it to the GPU and the outputs back into pooled host tensors); fps_total = N / median latency; warm-up calls first; a fresh session per backend and batch size"),
            ),
        ]);
        let mut text = String::from("{\n");
        for (i, (k, v)) in rec.iter().enumerate() {
            text += &format!(
                "  {}: {}{}\n",
                serde_json::to_string(k).unwrap(),
                serde_json::to_string(v).unwrap(),
                if i + 1 < rec.len() { "," } else { "" }
            );
        }
        text += "}\n";
        match &o.out_dir {
            Some(dir) => {
                let _ = std::fs::create_dir_all(dir);
                let tag = o.file_tag.as_deref().map(|t| format!("-{t}")).unwrap_or_default();
                let path = dir.join(format!("{prefix}-infer-batch-{n}{tag}-{date_compact}.json"));
                match std::fs::write(&path, &text) {
                    Ok(()) => eprintln!("wrote {}", path.display()),
                    Err(e) => {
                        eprintln!("trtvision-infer-bench: {}: {e}", path.display());
                        all_pass = false;
                    }
                }
            }
            None => print!("{text}"),
        }
        line = line.trim_end().to_string();
        summary.push(line);
        let _ = k;
    }
    eprintln!("--- summary ---");
    for l in &summary {
        eprintln!("{l}");
    }
    if o.require_cuda && !cuda_ok {
        eprintln!("--require-cuda: CUDA could not run");
        std::process::exit(3);
    }
    if !all_pass {
        eprintln!("PARITY FAILED (or a CUDA run failed) for at least one batch size");
        std::process::exit(1);
    }
}
