//! Inputs, parity against the reference run, timings of backend calls.

use super::*;

#[derive(Clone, Debug)]
pub(crate) struct Diff {
    pub(crate) name: String,
    pub(crate) max_abs: f64,
    pub(crate) rel_l2: f64,
    pub(crate) ref_max_abs: f64,
    pub(crate) elements: usize,
}

/// Per output: max |a-b| and ||a-b||₂ / ||a||₂ (a = reference).
pub(crate) fn compare(reference: &[Tensor], got: &[Tensor]) -> Result<Vec<Diff>, String> {
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

pub(crate) fn diffs_json(d: &Result<Vec<Diff>, String>, tol: f64) -> Value {
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

pub(crate) fn diff_pass(d: &Result<Vec<Diff>, String>, tol: f64) -> bool {
    matches!(d, Ok(v) if v.iter().all(|x| x.rel_l2 <= tol))
}

pub(crate) fn diff_line(d: &Result<Vec<Diff>, String>) -> String {
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
pub(crate) fn num(v: f64) -> Value {
    if v.is_finite() {
        json!(v)
    } else {
        Value::Null
    }
}

pub(crate) fn round(v: f64, d: i32) -> Value {
    let f = 10f64.powi(d);
    num((v * f).round() / f)
}

/// Timed calls of one backend on one input.
pub(crate) struct Timing {
    pub(crate) lat_ms: Vec<f64>, // sorted
    pub(crate) wall_s: f64,
    pub(crate) cpu_cores: f64,
    /// (start, end) ns since the sampler's t0.
    pub(crate) window: (u64, u64),
}

impl Timing {
    pub(crate) fn p(&self, q: f64) -> f64 {
        percentile(&self.lat_ms, q)
    }
    pub(crate) fn fps(&self, n: usize) -> f64 {
        n as f64 / (self.p(50.0) / 1e3)
    }
    pub(crate) fn latency_json(&self) -> Value {
        let mean = self.lat_ms.iter().sum::<f64>() / self.lat_ms.len().max(1) as f64;
        json!({"p50": round(self.p(50.0), 3), "p95": round(self.p(95.0), 3), "p99": round(self.p(99.0), 3),
               "mean": round(mean, 3), "min": round(self.lat_ms[0], 3),
               "max": round(*self.lat_ms.last().unwrap(), 3), "calls": self.lat_ms.len(),
               "timed_wall_s": round(self.wall_s, 4)})
    }
}

pub(crate) fn run_once(b: &mut dyn InferenceBackend, name: &str, t: &Tensor) -> Result<Vec<Tensor>, String> {
    b.infer(&[InputRef { name, tensor: t }])
        .map_err(|e| e.to_string())
}

pub(crate) fn time_calls(
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

pub(crate) fn open(
    o: &Opts,
    cfg: &ModelConfig,
    kind: BackendKind,
    max_batch: usize,
) -> Result<Box<dyn InferenceBackend>, String> {
    open_with(o, cfg, kind, max_batch, false, IoVariant::Plain)
}

/// How the device-input, device-output run loads the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IoVariant {
    /// Dynamic batch (as loaded by default).
    Plain,
    /// Batch dimension fixed at the batch size (`fixed-batch`).
    Fixed,
    /// Fixed batch and CUDA graphs (`cuda-graph`).
    Graph,
}

impl IoVariant {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "plain" => Some(Self::Plain),
            "fixed" => Some(Self::Fixed),
            "graph" => Some(Self::Graph),
            _ => None,
        }
    }

    /// Key of the variant's object in the record.
    pub(crate) fn key(self) -> &'static str {
        match self {
            Self::Plain => "device_io",
            Self::Fixed => "device_io_fixed_batch",
            Self::Graph => "device_io_cuda_graph",
        }
    }
}

pub(crate) fn open_with(
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
        ..Default::default()
    })
    .map_err(|e| e.to_string())
}
