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

#[path = "common/cli.rs"]
mod cli;
#[path = "common/gpumon.rs"]
mod gpumon;
#[path = "common/procstats.rs"]
mod procstats;

use procstats::{cpu_model_and_cores, cpu_time_s, percentile, proc_status_mib, random_input as make_input};

use std::path::PathBuf;
use std::time::Instant;

use gsttrtvision::backend::{self, BackendKind, BackendOptions, InferenceBackend, InputRef};
use gsttrtvision::config::ModelConfig;
use gsttrtvision::tensor::Tensor;
use serde_json::{json, Value};

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

// ---------------------------------------------------------------------------------------
// Input, parity, statistics

#[derive(Clone, Debug)]
struct Diff {
    name: String,
    max_abs: f64,
    rel_l2: f64,
    ref_max_abs: f64,
    elements: usize,
}

/// Per output: max |a-b| and ||a-b||₂ / ||a||₂ (a = reference).
fn compare(reference: &[Tensor], got: &[Tensor]) -> Result<Vec<Diff>, String> {
    let mut out = Vec::new();
    for r in reference {
        let g = got
            .iter()
            .find(|t| t.name == r.name)
            .ok_or_else(|| format!("output '{}' is missing", r.name))?;
        if g.shape != r.shape {
            return Err(format!(
                "output '{}' has shape {:?} vs {:?}",
                r.name, g.shape, r.shape
            ));
        }
        let (Some(a), Some(b)) = (r.to_f32(), g.to_f32()) else {
            // Integer outputs: exact equality.
            let same = r.host_bytes() == g.host_bytes();
            out.push(Diff {
                name: r.name.clone(),
                max_abs: if same { 0.0 } else { f64::INFINITY },
                rel_l2: if same { 0.0 } else { f64::INFINITY },
                ref_max_abs: f64::NAN,
                elements: r.shape.iter().product(),
            });
            continue;
        };
        let (mut max_abs, mut num, mut den, mut ref_max) = (0f64, 0f64, 0f64, 0f64);
        for (x, y) in a.iter().zip(&b) {
            let (x, y) = (*x as f64, *y as f64);
            let d = (x - y).abs();
            if d > max_abs || d.is_nan() {
                max_abs = if d.is_nan() { f64::INFINITY } else { d };
            }
            num += d * d;
            den += x * x;
            ref_max = ref_max.max(x.abs());
        }
        let rel = if den > 0.0 {
            (num / den).sqrt()
        } else if num == 0.0 {
            0.0
        } else {
            f64::INFINITY
        };
        out.push(Diff {
            name: r.name.clone(),
            max_abs,
            rel_l2: rel,
            ref_max_abs: ref_max,
            elements: a.len(),
        });
    }
    Ok(out)
}

fn diffs_json(d: &Result<Vec<Diff>, String>, tol: f64) -> Value {
    match d {
        Err(e) => json!({"pass": false, "error": e, "tolerance_rel_l2": tol}),
        Ok(d) => {
            let worst_rel = d.iter().map(|x| x.rel_l2).fold(0.0, f64::max);
            let worst_abs = d.iter().map(|x| x.max_abs).fold(0.0, f64::max);
            let outs: serde_json::Map<String, Value> = d
                .iter()
                .map(|x| {
                    (
                        x.name.clone(),
                        json!({"max_abs": num(x.max_abs), "rel_l2": num(x.rel_l2),
                               "ref_max_abs": num(x.ref_max_abs), "elements": x.elements}),
                    )
                })
                .collect();
            json!({"max_abs": num(worst_abs), "rel_l2": num(worst_rel), "tolerance_rel_l2": tol,
                   "pass": worst_rel <= tol, "outputs": outs})
        }
    }
}

fn diff_pass(d: &Result<Vec<Diff>, String>, tol: f64) -> bool {
    matches!(d, Ok(v) if v.iter().all(|x| x.rel_l2 <= tol))
}

fn diff_line(d: &Result<Vec<Diff>, String>) -> String {
    match d {
        Err(e) => format!("ERROR {e}"),
        Ok(v) => v
            .iter()
            .map(|x| format!("{}: max_abs {:.3e} rel_l2 {:.3e}", x.name, x.max_abs, x.rel_l2))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// A finite number, else null (JSON has no inf/NaN).
fn num(v: f64) -> Value {
    if v.is_finite() {
        json!(v)
    } else {
        Value::Null
    }
}

fn round(v: f64, d: i32) -> Value {
    let f = 10f64.powi(d);
    num((v * f).round() / f)
}

/// Timed calls of one backend on one input.
struct Timing {
    lat_ms: Vec<f64>, // sorted
    wall_s: f64,
    cpu_cores: f64,
    /// (start, end) ns since the sampler's t0.
    window: (u64, u64),
}

impl Timing {
    fn p(&self, q: f64) -> f64 {
        percentile(&self.lat_ms, q)
    }
    fn fps(&self, n: usize) -> f64 {
        n as f64 / (self.p(50.0) / 1e3)
    }
    fn latency_json(&self) -> Value {
        let mean = self.lat_ms.iter().sum::<f64>() / self.lat_ms.len().max(1) as f64;
        json!({"p50": round(self.p(50.0), 3), "p95": round(self.p(95.0), 3), "p99": round(self.p(99.0), 3),
               "mean": round(mean, 3), "min": round(self.lat_ms[0], 3),
               "max": round(*self.lat_ms.last().unwrap(), 3), "calls": self.lat_ms.len(),
               "timed_wall_s": round(self.wall_s, 4)})
    }
}

fn run_once(b: &mut dyn InferenceBackend, name: &str, t: &Tensor) -> Result<Vec<Tensor>, String> {
    b.infer(&[InputRef { name, tensor: t }])
        .map_err(|e| e.to_string())
}

fn time_calls(
    b: &mut dyn InferenceBackend,
    name: &str,
    t: &Tensor,
    warmup: usize,
    iters: usize,
    t0: Instant,
) -> Result<Timing, String> {
    for _ in 0..warmup {
        run_once(b, name, t)?;
    }
    let mut lat = Vec::with_capacity(iters);
    let c0 = cpu_time_s();
    let start = Instant::now();
    let w0 = t0.elapsed().as_nanos() as u64;
    for _ in 0..iters {
        let s = Instant::now();
        let out = run_once(b, name, t)?;
        lat.push(s.elapsed().as_secs_f64() * 1e3);
        drop(out);
    }
    let wall_s = start.elapsed().as_secs_f64();
    let w1 = t0.elapsed().as_nanos() as u64;
    let cpu = cpu_time_s() - c0;
    lat.sort_by(f64::total_cmp);
    Ok(Timing {
        lat_ms: lat,
        wall_s,
        cpu_cores: cpu / wall_s.max(1e-9),
        window: (w0, w1),
    })
}

fn open(
    o: &Opts,
    cfg: &ModelConfig,
    kind: BackendKind,
    max_batch: usize,
) -> Result<Box<dyn InferenceBackend>, String> {
    open_with(o, cfg, kind, max_batch, false, IoVariant::Plain)
}

/// How the device-input, device-output run loads the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IoVariant {
    /// Dynamic batch (as loaded by default).
    Plain,
    /// Batch dimension fixed at the batch size (`fixed-batch`).
    Fixed,
    /// Fixed batch and CUDA graphs (`cuda-graph`).
    Graph,
}

impl IoVariant {
    fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "plain" => Some(Self::Plain),
            "fixed" => Some(Self::Fixed),
            "graph" => Some(Self::Graph),
            _ => None,
        }
    }

    /// Key of the variant's object in the record.
    fn key(self) -> &'static str {
        match self {
            Self::Plain => "device_io",
            Self::Fixed => "device_io_fixed_batch",
            Self::Graph => "device_io_cuda_graph",
        }
    }
}

fn open_with(
    o: &Opts,
    cfg: &ModelConfig,
    kind: BackendKind,
    max_batch: usize,
    outputs_on_device: bool,
    variant: IoVariant,
) -> Result<Box<dyn InferenceBackend>, String> {
    backend::open(&BackendOptions {
        kind,
        model_path: cfg.model_path().to_path_buf(),
        max_batch,
        device_id: o.device_id,
        fp16: false,
        engine_cache_dir: None,
        threads: if kind == BackendKind::OnnxRuntimeCpu {
            o.threads
        } else {
            0
        },
        outputs_on_device,
        exact_arena: false,
        fixed_batch: variant != IoVariant::Plain,
        cuda_graph: variant == IoVariant::Graph,
        cuda_provider: Default::default(),
    })
    .map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------------------
// Device input (cargo feature `cuda`)

#[cfg(feature = "cuda")]
fn to_device(t: &Tensor, device_id: i32) -> Result<Tensor, String> {
    use gsttrtvision::cuda::{DeviceBuffer, DeviceContext};
    use gsttrtvision::tensor::TensorStorage;
    let ctx = DeviceContext::primary(device_id).map_err(|e| e.to_string())?;
    let bytes = t.host_bytes().ok_or("the input is not in host memory")?;
    let buf = DeviceBuffer::new(&ctx, bytes.len()).map_err(|e| e.to_string())?;
    buf.copy_from_host(bytes).map_err(|e| e.to_string())?;
    Ok(t.with_storage(TensorStorage::device(buf.ptr(), buf.len(), buf)))
}

/// A host copy of a device tensor (host tensors are cloned).
#[cfg(feature = "cuda")]
fn to_host(t: &Tensor, device_id: i32) -> Result<Tensor, String> {
    use gsttrtvision::cuda::{copy_device_to_host, DeviceContext};
    use gsttrtvision::tensor::TensorStorage;
    let TensorStorage::Device { ptr, len, .. } = &t.storage else {
        return Ok(t.clone());
    };
    let ctx = DeviceContext::primary(device_id).map_err(|e| e.to_string())?;
    let mut bytes = vec![0u8; t.len_bytes()];
    copy_device_to_host(&ctx, *ptr, *len, &mut bytes).map_err(|e| e.to_string())?;
    let bytes = gsttrtvision::tensor::PooledBytes::detached(bytes);
    Ok(t.with_storage(TensorStorage::Host(std::sync::Arc::new(bytes))))
}

#[cfg(not(feature = "cuda"))]
fn to_host(_t: &Tensor, _device_id: i32) -> Result<Tensor, String> {
    Err("this binary was built without the cargo feature `cuda` (device memory needs it)".into())
}

#[cfg(not(feature = "cuda"))]
fn to_device(_t: &Tensor, _device_id: i32) -> Result<Tensor, String> {
    Err("this binary was built without the cargo feature `cuda` (device memory needs it)".into())
}

// ---------------------------------------------------------------------------------------

struct CudaRun {
    timing: Timing,
    parity: Result<Vec<Diff>, String>,
    vram: Value,
    h2d_measured: Option<f64>,
    d2h_measured: Option<f64>,
    pcie_samples: usize,
    device_input: Value,
    device_input_pass: bool,
}

/// `--pcie-probe`: NVML's PCIe counters with nothing running, then with kernel launches
/// only (no copy): how many bytes the driver's own command traffic puts on the bus per
/// launch, to tell it apart from data in the pipeline measurements.
#[cfg(feature = "cuda")]
fn pcie_probe(o: &Opts) -> Result<Value, String> {
    use gsttrtvision::config::PreprocessConfig;
    use gsttrtvision::cuda::{CudaFrame, CudaPreprocessor, DeviceBuffer, DeviceContext, Event};
    use gsttrtvision::tensor::DType;
    let nvml = gpumon::Nvml::open(o.device_id.max(0) as u32)?;
    let ctx = DeviceContext::primary(o.device_id).map_err(|e| e.to_string())?;
    let (w, h) = (64u32, 64u32);
    let frame_mem = DeviceBuffer::new(&ctx, (w * h * 3 / 2) as usize).map_err(|e| e.to_string())?;
    frame_mem
        .copy_from_host(&vec![128u8; (w * h * 3 / 2) as usize])
        .map_err(|e| e.to_string())?;
    // SAFETY: both planes lie in the live allocation above (Y 64x64, UV 64x32).
    let frame = unsafe {
        CudaFrame::from_raw(
            gst_video::VideoFormat::Nv12,
            w,
            h,
            &[frame_mem.ptr(), frame_mem.ptr() + (w * h) as u64],
            &[w as usize, w as usize],
        )
    }
    .map_err(|e| e.to_string())?;
    let cfg = PreprocessConfig {
        width: 64,
        height: 64,
        dtype: DType::F16,
        ..Default::default()
    };
    let mut pre = CudaPreprocessor::new(&ctx, &cfg, 1).map_err(|e| e.to_string())?;
    // A second stream for the cross-stream phase: each launch waits on the other stream's
    // last launch (cuStreamWaitEvent), as the pipeline's elements wait on each other.
    let mut other = CudaPreprocessor::new(&ctx, &cfg, 1).map_err(|e| e.to_string())?;
    let (ev_a, ev_b) = (
        Event::new(&ctx, false).map_err(|e| e.to_string())?,
        Event::new(&ctx, false).map_err(|e| e.to_string())?,
    );
    let transform = [cfg.transform(w, h)];
    let frames = [frame];
    let secs = o.pcie_probe_s as f64;
    let t0 = Instant::now();
    #[derive(PartialEq)]
    enum Phase {
        Idle,
        Launches,
        CrossStream,
        Copies,
        BlockedWaits,
        HostFuncs,
    }
    // A host function that takes 300 us (a busy callback thread): the stream behind it
    // waits for the host, as ONNX Runtime's stream does once per run (cuLaunchHostFunc).
    extern "C" fn slow_host_fn(_: *mut std::ffi::c_void) {
        std::thread::sleep(std::time::Duration::from_micros(300));
    }
    // Long GPU work for the blocked-wait phases: 512 MiB device-to-device copies (~0.35 ms
    // each on an H100) on the second stream.
    let big = 512usize << 20;
    let (big_a, big_b) = (
        DeviceBuffer::new(&ctx, big).map_err(|e| e.to_string())?,
        DeviceBuffer::new(&ctx, big).map_err(|e| e.to_string())?,
    );
    let copy_on = |stream: cudarc::driver::sys::CUstream| -> Result<(), String> {
        let _g = ctx.push().map_err(|e| e.to_string())?;
        // SAFETY: two live allocations of `big` bytes of this context; a live stream of it.
        let r = unsafe { cudarc::driver::sys::cuMemcpyDtoDAsync_v2(big_b.ptr(), big_a.ptr(), big, stream) };
        if r == cudarc::driver::sys::CUresult::CUDA_SUCCESS {
            Ok(())
        } else {
            Err(format!("cuMemcpyDtoDAsync: {r:?}"))
        }
    };
    let mut phase = |what: Phase, pre: &mut CudaPreprocessor| -> Result<(f64, f64, u64, usize), String> {
        let sampler = gpumon::GpuSampler::start(Some(nvml.clone()), t0, true, 0)
            .ok_or("NVML sampling did not start")?;
        let a = t0.elapsed().as_nanos() as u64;
        let start = Instant::now();
        let mut launches = 0u64;
        let err = |e: gsttrtvision::cuda::CudaError| e.to_string();
        while start.elapsed().as_secs_f64() < secs {
            match what {
                Phase::Idle => std::thread::sleep(std::time::Duration::from_millis(20)),
                Phase::Launches => {
                    for _ in 0..64 {
                        drop(pre.run(&frames, &transform).map_err(err)?);
                        launches += 1;
                    }
                    pre.synchronize().map_err(err)?;
                }
                Phase::CrossStream => {
                    for _ in 0..32 {
                        // SAFETY: live streams of `ctx`, events of `ctx`.
                        unsafe {
                            ev_b.wait_on(pre.stream()).map_err(err)?;
                            drop(pre.run(&frames, &transform).map_err(err)?);
                            ev_a.record(pre.stream()).map_err(err)?;
                            ev_a.wait_on(other.stream()).map_err(err)?;
                            drop(other.run(&frames, &transform).map_err(err)?);
                            ev_b.record(other.stream()).map_err(err)?;
                        }
                        launches += 2;
                    }
                    other.synchronize().map_err(err)?;
                }
                Phase::HostFuncs => {
                    for _ in 0..8 {
                        {
                            let _g = ctx.push().map_err(err)?;
                            // SAFETY: a live stream of `ctx`; the function takes no data.
                            let r = unsafe {
                                cudarc::driver::sys::cuLaunchHostFunc(
                                    pre.stream(),
                                    Some(slow_host_fn),
                                    std::ptr::null_mut(),
                                )
                            };
                            if r != cudarc::driver::sys::CUresult::CUDA_SUCCESS {
                                return Err(format!("cuLaunchHostFunc: {r:?}"));
                            }
                        }
                        drop(pre.run(&frames, &transform).map_err(err)?);
                        launches += 1;
                    }
                    pre.synchronize().map_err(err)?;
                }
                Phase::Copies | Phase::BlockedWaits => {
                    // The copy on the other stream, then (blocked waits only) this stream
                    // waits for it on the GPU before its launch: the wait is queued long
                    // before the copy ends.
                    for _ in 0..8 {
                        copy_on(other.stream())?;
                        if what == Phase::BlockedWaits {
                            // SAFETY: live streams of `ctx`, an event of `ctx`.
                            unsafe {
                                ev_a.record(other.stream()).map_err(err)?;
                                ev_a.wait_on(pre.stream()).map_err(err)?;
                            }
                        }
                        drop(pre.run(&frames, &transform).map_err(err)?);
                        launches += 1;
                    }
                    other.synchronize().map_err(err)?;
                    pre.synchronize().map_err(err)?;
                }
            }
        }
        let z = t0.elapsed().as_nanos() as u64;
        let samples = sampler.finish();
        let p = gpumon::pcie_bytes(&samples, a, z);
        let rx = p.map(|p| p.h2d).unwrap_or(f64::NAN);
        let tx = p.map(|p| p.d2h).unwrap_or(f64::NAN);
        Ok((rx, tx, launches, p.map(|p| p.readings).unwrap_or(0)))
    };
    let (idle_rx, idle_tx, _, idle_n) = phase(Phase::Idle, &mut pre)?;
    let (rx, tx, launches, n) = phase(Phase::Launches, &mut pre)?;
    let (xrx, xtx, xlaunches, xn) = phase(Phase::CrossStream, &mut pre)?;
    let (crx, ctx_bytes, copies, cn) = phase(Phase::Copies, &mut pre)?;
    let (brx, btx, blocked, bn) = phase(Phase::BlockedWaits, &mut pre)?;
    let (hrx, htx, hostfns, hn) = phase(Phase::HostFuncs, &mut pre)?;
    let per = |total: f64, idle: f64, count: u64| (total - idle) / count.max(1) as f64;
    // A phase's bytes per second, and per `unit` (launch, host function) above the idle rate.
    let rates = |rx: f64, tx: f64, count: u64, unit: &str, extra: Value| -> Value {
        let mut m = match extra {
            Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        m.insert("h2d_bytes_per_s".into(), json!(round(rx / secs, 0)));
        m.insert("d2h_bytes_per_s".into(), json!(round(tx / secs, 0)));
        m.insert(
            format!("h2d_bytes_per_{unit}_above_idle"),
            json!(round(per(rx, idle_rx, count), 1)),
        );
        m.insert(
            format!("d2h_bytes_per_{unit}_above_idle"),
            json!(round(per(tx, idle_tx, count), 1)),
        );
        Value::Object(m)
    };
    Ok(json!({
        "probe": "pcie",
        "device": gpumon::gpu_name(Some(&nvml)),
        "seconds_per_phase": secs,
        "idle": {"h2d_bytes_per_s": round(idle_rx / secs, 0), "d2h_bytes_per_s": round(idle_tx / secs, 0), "samples": idle_n},
        "launches": rates(rx, tx, launches, "launch", json!({
            "count": launches,
            "per_s": round(launches as f64 / secs, 0),
            "samples": n,
        })),
        "cross_stream": rates(xrx, xtx, xlaunches, "launch", json!({
            "launches": xlaunches,
            "per_s": round(xlaunches as f64 / secs, 0),
            "samples": xn,
            "what": "the same launches alternating between two streams, each waiting on the other's last launch (cuStreamWaitEvent)",
        })),
        "copies": {
            "count": copies,
            "h2d_bytes_per_s": round(crx / secs, 0),
            "d2h_bytes_per_s": round(ctx_bytes / secs, 0),
            "samples": cn,
            "what": "512 MiB device-to-device copies on one stream, each followed by a launch on the other stream without waiting (the control of blocked_waits)",
        },
        "blocked_waits": {
            "count": blocked,
            "h2d_bytes_per_s": round(brx / secs, 0),
            "d2h_bytes_per_s": round(btx / secs, 0),
            "h2d_bytes_per_wait_above_copies": round(per(brx * copies as f64 / blocked.max(1) as f64, crx, copies), 1),
            "h2d_bytes_per_s_above_copies": round((brx - crx) / secs, 0),
            "samples": bn,
            "what": "the same copies and launches, each launch first waiting on the GPU (cuStreamWaitEvent) for the copy before it: the wait is queued ~0.35 ms before it is satisfied",
        },
        "host_funcs": rates(hrx, htx, hostfns, "host_func", json!({
            "count": hostfns,
            "samples": hn,
            "what": "cuLaunchHostFunc of a 300 us host function, then a launch behind it on the same stream (the stream waits ~0.3 ms for the host each time), 8 then a synchronize",
        })),
        "what": "each launch: trtpreprocess's kernel on one 64x64 NV12 frame (its NV12 entry point for batches of up to 8: 768 bytes of parameters inside the launch, no copy; 3 KiB before commit 460adc1), an event record; 64 launches then one stream synchronize",
    }))
}

#[cfg(not(feature = "cuda"))]
fn pcie_probe(_o: &Opts) -> Result<Value, String> {
    Err("this binary was built without the cargo feature `cuda`".into())
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
