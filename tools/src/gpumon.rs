//! GPU monitoring shared by the benchmark binaries.
//!
//! - NVML (`libnvidia-ml.so.1` through the `nvml-wrapper` crate, loaded at run time; present
//!   wherever the NVIDIA driver is): device name, device-wide used memory, PCIe RX/TX throughput.
//! - Fallback without NVML: `nvidia-smi` (`--query-gpu=...` and `dmon -s tm`).
//! - Neither: every GPU number is `None` (null in the JSON), never a failure.
//!
//! PCIe direction, from the GPU's point of view (NVML `nvmlDeviceGetPcieThroughput`, the
//! source of `nvidia-smi dmon` columns `rxpci`/`txpci`): RX = bytes the GPU received =
//! host→device (H2D); TX = bytes the GPU sent = device→host (D2H).
//!
//! Two NVML sources, both sampled: the cumulative PCIe byte counters
//! (`nvmlDeviceGetFieldValues` fields `NVML_FI_DEV_PCIE_COUNT_RX_BYTES` / `_TX_BYTES`, every
//! byte counted, no sampling gaps) are the figure when the driver has them; the throughput
//! (`nvmlDeviceGetPcieThroughput`, KB/s over a 20 ms window per call, integrated over time)
//! is kept as a cross-check and is the figure on drivers without the counters.

use std::io::BufRead;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// NVML (nvml-wrapper: libnvidia-ml is loaded at run time)

use nvml_wrapper::enum_wrappers::device::PcieUtilCounter;
use nvml_wrapper::enums::device::SampleValue;
use nvml_wrapper::structs::device::FieldId;

/// `NVML_FI_DEV_PCIE_COUNT_TX_BYTES` / `_RX_BYTES` (nvml.h; "value can be wrapped").
const NVML_FI_DEV_PCIE_COUNT_TX_BYTES: u32 = 197;
const NVML_FI_DEV_PCIE_COUNT_RX_BYTES: u32 = 198;
/// Raw counter reading: (RX, TX, counter width in bits).
pub type PcieCounters = (u64, u64, u32);

/// NVML opened for one GPU.
pub struct Nvml {
    nvml: nvml_wrapper::Nvml,
    index: u32,
}

impl Nvml {
    /// NVML for GPU `index`, or the reason it is not there.
    pub fn open(index: u32) -> Result<Arc<Nvml>, String> {
        // The driver installs libnvidia-ml.so.1; the unversioned name only comes with
        // development packages.
        let mut why = String::new();
        for lib in ["libnvidia-ml.so.1", "libnvidia-ml.so"] {
            match nvml_wrapper::Nvml::builder()
                .lib_path(std::ffi::OsStr::new(lib))
                .init()
            {
                Ok(nvml) => {
                    nvml.device_by_index(index)
                        .map_err(|e| format!("NVML has no GPU {index}: {e}"))?;
                    return Ok(Arc::new(Nvml { nvml, index }));
                }
                Err(nvml_wrapper::error::NvmlError::LibloadingError(_)) => {
                    why = "libnvidia-ml.so.1 (NVML, part of the NVIDIA driver) cannot be loaded".into();
                }
                Err(e) => return Err(format!("NVML does not start ({e}): no usable NVIDIA driver/GPU")),
            }
        }
        Err(why)
    }

    fn device(&self) -> Option<nvml_wrapper::Device<'_>> {
        self.nvml.device_by_index(self.index).ok()
    }

    pub fn name(&self) -> Option<String> {
        self.device()?.name().ok().map(|n| n.trim().to_string())
    }

    /// (used, total) device memory in MiB, device-wide (all processes). Used = total − free,
    /// as `nvmlMemory_t` (v1) counts it: memory the driver reserves is included.
    pub fn memory_mib(&self) -> Option<(f64, f64)> {
        let m = self.device()?.memory_info().ok()?;
        let used = m.total.saturating_sub(m.free);
        Some((used as f64 / 1048576.0, m.total as f64 / 1048576.0))
    }

    /// (rx = H2D, tx = D2H) PCIe throughput in bytes/s over NVML's 20 ms window. Blocks
    /// about 2 × 20 ms.
    pub fn pcie_bytes_per_s(&self) -> Option<(f64, f64)> {
        let d = self.device()?;
        let rx = d.pcie_throughput(PcieUtilCounter::Receive).ok()?;
        let tx = d.pcie_throughput(PcieUtilCounter::Send).ok()?;
        Some((rx as f64 * 1024.0, tx as f64 * 1024.0))
    }

    /// The cumulative PCIe byte counters (RX = H2D, TX = D2H) as NVML holds them (they wrap
    /// at the returned width), or `None` where the driver/GPU has no such fields.
    pub fn pcie_counters(&self) -> Option<PcieCounters> {
        let fields = [
            FieldId(NVML_FI_DEV_PCIE_COUNT_RX_BYTES),
            FieldId(NVML_FI_DEV_PCIE_COUNT_TX_BYTES),
        ];
        let values = self.device()?.field_values_for(&fields).ok()?;
        let mut read = Vec::with_capacity(2);
        for v in values {
            read.push(v.ok()?.value.ok()?);
        }
        let narrow = read.iter().any(|v| matches!(v, SampleValue::U32(_)));
        let raw = |v: &SampleValue| match *v {
            SampleValue::U32(x) => x as u64,
            SampleValue::U64(x) => x,
            SampleValue::I64(x) => x as u64,
            SampleValue::F64(x) => x as u64,
        };
        let (rx, tx) = (raw(read.first()?), raw(read.get(1)?));
        Some((rx, tx, if narrow { 32 } else { 64 }))
    }
}

/// Unwraps successive raw counter readings into bytes since the first reading.
#[derive(Default)]
pub struct CounterTotals {
    last: Option<PcieCounters>,
    h2d: u64,
    d2h: u64,
}

impl CounterTotals {
    /// Adds one reading; returns (H2D, D2H) bytes since the first. A counter of width `w`
    /// is taken to have wrapped at most once between two readings.
    pub fn push(&mut self, now: PcieCounters) -> (u64, u64) {
        if let Some((rx, tx, _)) = self.last {
            let delta = |a: u64, b: u64| -> u64 {
                if now.2 >= 64 {
                    b.wrapping_sub(a)
                } else {
                    b.wrapping_sub(a) & ((1u64 << now.2) - 1)
                }
            };
            self.h2d += delta(rx, now.0);
            self.d2h += delta(tx, now.1);
        }
        self.last = Some(now);
        (self.h2d, self.d2h)
    }
}

// ---------------------------------------------------------------------------------------
// nvidia-smi

/// `nvidia-smi --query-gpu=FIELD --format=csv,noheader,nounits` for GPU 0, trimmed.
pub fn smi_query(field: &str) -> Option<String> {
    let out = std::process::Command::new("nvidia-smi")
        .args([
            &format!("--query-gpu={field}"),
            "--format=csv,noheader,nounits",
            "-i",
            "0",
        ])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()?
        .trim()
        .to_string();
    (!s.is_empty()).then_some(s)
}

/// GPU 0's name from NVML, else nvidia-smi; `None` without a GPU.
pub fn gpu_name(nvml: Option<&Nvml>) -> Option<String> {
    nvml.and_then(|n| n.name()).or_else(|| smi_query("name"))
}

/// Device-wide used memory (MiB), NVML else nvidia-smi.
pub fn used_mib(nvml: Option<&Nvml>) -> Option<f64> {
    match nvml {
        Some(n) => n.memory_mib().map(|m| m.0),
        None => smi_query("memory.used").and_then(|s| s.parse().ok()),
    }
}

/// Short device name for file names: "NVIDIA H100 80GB HBM3" → "h100".
pub fn short_device(name: &str) -> String {
    let rest = name.trim().trim_start_matches("NVIDIA").trim();
    let rest = rest.trim_start_matches("GeForce").trim();
    let tok = rest.split_whitespace().next().unwrap_or("gpu");
    let s: String = tok
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_lowercase();
    if s.is_empty() {
        "gpu".into()
    } else {
        s
    }
}

// ---------------------------------------------------------------------------------------
// Background sampler

/// One sample: ns since the sampler's t0, used MiB, H2D and D2H bytes/s (throughput,
/// stamped at the middle of its window) and the cumulative H2D/D2H byte counters since the
/// sampler started (stamped at `t_count_ns`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub t_ns: u64,
    pub used_mib: Option<f64>,
    pub h2d_bps: Option<f64>,
    pub d2h_bps: Option<f64>,
    pub t_count_ns: u64,
    pub h2d_total: Option<u64>,
    pub d2h_total: Option<u64>,
}

pub struct GpuSampler {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    handle: Option<std::thread::JoinHandle<()>>,
    child: Option<std::process::Child>,
    pub method: &'static str,
    /// For the last counter reading at `finish` (NVML sampling with PCIe only).
    last_reading: Option<(Arc<Nvml>, Instant, Arc<Mutex<CounterTotals>>)>,
}

pub const METHOD_NVML_COUNTERS: &str = "NVML (libnvidia-ml) PCIe byte counters \
    (nvmlDeviceGetFieldValues NVML_FI_DEV_PCIE_COUNT_RX_BYTES = bytes received by the GPU = \
    host-to-device, _TX_BYTES = device-to-host; cumulative, unwrapped) read every ~40 ms in a background \
    thread, interpolated to the first and last measured frame, difference divided by the measured \
    frames; counts all PCIe traffic of the GPU (every process, driver command buffers, NVDEC \
    bitstream). Cross-check in pcie_sampled: nvmlDeviceGetPcieThroughput (20 ms windows) integrated \
    over the same window. Memory: nvmlDeviceGetMemoryInfo used, device-wide, each loop.";
pub const METHOD_NVML: &str = "NVML (libnvidia-ml) sampled back to back in a background thread: \
    nvmlDeviceGetPcieThroughput RX (bytes received by the GPU = host-to-device) and TX (bytes sent by \
    the GPU = device-to-host), KB/s (x1024) over NVML's 20 ms window per call, integrated over time \
    (trapezoids) across the measured window and divided by the measured frames; counts all PCIe \
    traffic of the GPU (every process, driver, NVDEC bitstream). Memory: nvmlDeviceGetMemoryInfo \
    used, device-wide, each loop (~40-60 ms).";
pub const METHOD_SMI: &str = "nvidia-smi dmon -s tm -d 1 (no NVML library): rxpci = PCIe RX of the GPU = \
    host-to-device, txpci = device-to-host, MB/s (x2^20) sampled once per second (a short NVML window \
    each), integrated over time across the measured window / measured frames (coarse: few samples in short \
    runs); fb = used frame-buffer MiB, device-wide.";

impl GpuSampler {
    /// Starts sampling with NVML (every ~`interval_ms`, PCIe too when `pcie`), else with
    /// `nvidia-smi dmon`; `None` when neither is there.
    pub fn start(nvml: Option<Arc<Nvml>>, t0: Instant, pcie: bool, interval_ms: u64) -> Option<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::with_capacity(4096)));
        if let Some(n) = nvml {
            // A first counter reading before returning: a window that starts right after
            // `start` lies inside the readings.
            let totals = Arc::new(Mutex::new(CounterTotals::default()));
            if pcie {
                let t_count = t0.elapsed().as_nanos() as u64;
                if let Some((h2d, d2h)) = n.pcie_counters().map(|c| totals.lock().unwrap().push(c)) {
                    samples.lock().unwrap().push(Sample {
                        t_ns: t_count,
                        t_count_ns: t_count,
                        h2d_total: Some(h2d),
                        d2h_total: Some(d2h),
                        ..Default::default()
                    });
                }
            }
            let (s, v, tt) = (stop.clone(), samples.clone(), totals.clone());
            let last_reading = pcie.then(|| (n.clone(), t0, totals.clone()));
            let handle = std::thread::Builder::new()
                .name("gpu-sampler".into())
                .spawn(move || {
                    while !s.load(Ordering::Relaxed) {
                        let t_count = t0.elapsed().as_nanos() as u64;
                        let counted = if pcie {
                            n.pcie_counters().map(|c| tt.lock().unwrap().push(c))
                        } else {
                            None
                        };
                        let t_mem = t0.elapsed().as_nanos() as u64;
                        let used = n.memory_mib().map(|m| m.0);
                        let (h2d, d2h) = if pcie {
                            match n.pcie_bytes_per_s() {
                                Some((rx, tx)) => (Some(rx), Some(tx)),
                                None => (None, None),
                            }
                        } else {
                            (None, None)
                        };
                        // The PCIe window ended now; stamp it at its middle.
                        let t = if pcie {
                            (t_mem + t0.elapsed().as_nanos() as u64) / 2
                        } else {
                            t_mem
                        };
                        v.lock().unwrap().push(Sample {
                            t_ns: t,
                            used_mib: used,
                            h2d_bps: h2d,
                            d2h_bps: d2h,
                            t_count_ns: t_count,
                            h2d_total: counted.map(|c| c.0),
                            d2h_total: counted.map(|c| c.1),
                        });
                        // PCIe calls block ~2 x 20 ms themselves; without them (or when they
                        // fail) sleep so the loop never spins.
                        if !pcie || interval_ms > 0 || h2d.is_none() {
                            std::thread::sleep(Duration::from_millis(interval_ms.max(20)));
                        }
                    }
                })
                .ok()?;
            return Some(Self {
                stop,
                samples,
                handle: Some(handle),
                child: None,
                method: METHOD_NVML,
                last_reading,
            });
        }
        // nvidia-smi dmon fallback.
        let mut child = std::process::Command::new("nvidia-smi")
            .args(["dmon", "-s", "tm", "-d", "1", "-i", "0"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let stdout = child.stdout.take()?;
        let v = samples.clone();
        let handle = std::thread::spawn(move || {
            let mut cols: Vec<String> = Vec::new();
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let t = t0.elapsed().as_nanos() as u64;
                let l = line.trim();
                if let Some(h) = l.strip_prefix('#') {
                    let names: Vec<String> = h.split_whitespace().map(str::to_lowercase).collect();
                    if names.iter().any(|c| c == "rxpci" || c == "fb") {
                        cols = names;
                    }
                    continue;
                }
                let vals: Vec<&str> = l.split_whitespace().collect();
                if cols.is_empty() || vals.len() != cols.len() {
                    continue;
                }
                let get = |name: &str| -> Option<f64> {
                    cols.iter()
                        .position(|c| c == name)
                        .and_then(|i| vals[i].parse::<f64>().ok())
                };
                v.lock().unwrap().push(Sample {
                    t_ns: t,
                    used_mib: get("fb"),
                    h2d_bps: get("rxpci").map(|x| x * 1048576.0),
                    d2h_bps: get("txpci").map(|x| x * 1048576.0),
                    ..Default::default()
                });
            }
        });
        Some(Self {
            stop,
            samples,
            handle: Some(handle),
            child: Some(child),
            method: METHOD_SMI,
            last_reading: None,
        })
    }

    pub fn finish(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        // A last counter reading now: a window that ended right before `finish` lies
        // inside the readings.
        if let Some((n, t0, totals)) = self.last_reading.take() {
            let t_count = t0.elapsed().as_nanos() as u64;
            if let Some((h2d, d2h)) = n.pcie_counters().map(|c| totals.lock().unwrap().push(c)) {
                self.samples.lock().unwrap().push(Sample {
                    t_ns: t_count,
                    t_count_ns: t_count,
                    h2d_total: Some(h2d),
                    d2h_total: Some(d2h),
                    ..Default::default()
                });
            }
        }
        std::mem::take(&mut *self.samples.lock().unwrap())
    }
}

/// ∫ rate dt over [a, b] (ns) by trapezoids over the samples, holding the first/last
/// value flat to the window's edges; `None` with no sample of that rate.
pub fn integrate(samples: &[Sample], a: u64, b: u64, rate: impl Fn(&Sample) -> Option<f64>) -> Option<f64> {
    let pts: Vec<(f64, f64)> = samples
        .iter()
        .filter_map(|s| rate(s).map(|r| (s.t_ns as f64 / 1e9, r)))
        .collect();
    if pts.is_empty() || b <= a {
        return None;
    }
    let (a, b) = (a as f64 / 1e9, b as f64 / 1e9);
    let value_at = |t: f64| -> f64 {
        if t <= pts[0].0 {
            return pts[0].1;
        }
        if t >= pts[pts.len() - 1].0 {
            return pts[pts.len() - 1].1;
        }
        let i = pts.partition_point(|p| p.0 <= t);
        let (p0, p1) = (pts[i - 1], pts[i]);
        if p1.0 == p0.0 {
            p1.1
        } else {
            p0.1 + (p1.1 - p0.1) * (t - p0.0) / (p1.0 - p0.0)
        }
    };
    let mut knots = vec![a];
    knots.extend(pts.iter().map(|p| p.0).filter(|&t| t > a && t < b));
    knots.push(b);
    let mut total = 0.0;
    for w in knots.windows(2) {
        total += (value_at(w[0]) + value_at(w[1])) / 2.0 * (w[1] - w[0]);
    }
    Some(total)
}

/// A cumulative counter interpolated linearly at `t` (ns), clamped to the first/last
/// reading outside them; `None` without readings.
fn counter_at(pts: &[(u64, u64)], t: u64) -> Option<f64> {
    let (first, last) = (pts.first()?, pts.last()?);
    if t <= first.0 {
        return Some(first.1 as f64);
    }
    if t >= last.0 {
        return Some(last.1 as f64);
    }
    let i = pts.partition_point(|p| p.0 <= t);
    let (p0, p1) = (pts[i - 1], pts[i]);
    let f = (t - p0.0) as f64 / (p1.0 - p0.0).max(1) as f64;
    Some(p0.1 as f64 + (p1.1 as f64 - p0.1 as f64) * f)
}

/// PCIe bytes moved in [a, b] (ns): from the byte counters when the window lies inside
/// their readings, else from the integrated throughput.
#[derive(Debug, Clone, Copy)]
pub struct PcieBytes {
    pub h2d: f64,
    pub d2h: f64,
    /// "counters" or "throughput".
    pub source: &'static str,
    /// The integrated throughput over the same window (cross-check), when sampled.
    pub sampled: Option<(f64, f64)>,
    /// Readings inside the window (counter readings when counted, else throughput samples).
    pub readings: usize,
}

pub fn pcie_bytes(samples: &[Sample], a: u64, b: u64) -> Option<PcieBytes> {
    let sampled = integrate(samples, a, b, |s| s.h2d_bps).zip(integrate(samples, a, b, |s| s.d2h_bps));
    let pts = |f: fn(&Sample) -> Option<u64>| -> Vec<(u64, u64)> {
        samples
            .iter()
            .filter_map(|s| f(s).map(|v| (s.t_count_ns, v)))
            .collect()
    };
    let (rx, tx) = (pts(|s| s.h2d_total), pts(|s| s.d2h_total));
    let covered = rx.len() >= 2 && rx[0].0 <= a && rx[rx.len() - 1].0 >= b;
    if covered && b > a {
        let d = |p: &[(u64, u64)]| counter_at(p, b).zip(counter_at(p, a)).map(|(y, x)| y - x);
        if let (Some(h2d), Some(d2h)) = (d(&rx), d(&tx)) {
            return Some(PcieBytes {
                h2d,
                d2h,
                source: "counters",
                sampled,
                readings: rx.iter().filter(|p| p.0 >= a && p.0 <= b).count(),
            });
        }
    }
    sampled.map(|(h2d, d2h)| PcieBytes {
        h2d,
        d2h,
        source: "throughput",
        sampled,
        readings: count_in(samples, a, b, |s| s.h2d_bps),
    })
}

/// Number of samples of a rate inside [a, b].
pub fn count_in(samples: &[Sample], a: u64, b: u64, rate: impl Fn(&Sample) -> Option<f64>) -> usize {
    samples
        .iter()
        .filter(|s| s.t_ns >= a && s.t_ns <= b && rate(s).is_some())
        .count()
}

/// VRAM (MiB, device-wide): baseline (first sample), steady (median of the second half of
/// the window), peak (whole run), drift (least-squares MiB/min over the second half).
pub struct VramStats {
    pub baseline: f64,
    pub steady: f64,
    pub peak: f64,
    pub drift_mib_per_min: f64,
    pub samples_second_half: usize,
}

pub fn vram_stats(samples: &[Sample], a: u64, b: u64) -> Option<VramStats> {
    let all: Vec<(u64, f64)> = samples
        .iter()
        .filter_map(|s| s.used_mib.map(|m| (s.t_ns, m)))
        .collect();
    let baseline = all.first()?.1;
    let peak = all.iter().map(|s| s.1).fold(f64::MIN, f64::max);
    let win: Vec<(u64, f64)> = all.iter().copied().filter(|s| s.0 >= a && s.0 <= b).collect();
    let use_ = if win.len() >= 2 { &win } else { &all };
    let half = &use_[use_.len() / 2..];
    let mut v: Vec<f64> = half.iter().map(|s| s.1).collect();
    v.sort_by(f64::total_cmp);
    let steady = v[v.len() / 2];
    let xs: Vec<f64> = half.iter().map(|s| s.0 as f64 / 60e9).collect();
    let ys: Vec<f64> = half.iter().map(|s| s.1).collect();
    let n = xs.len();
    let drift = if n < 2 {
        0.0
    } else {
        let mx = xs.iter().sum::<f64>() / n as f64;
        let my = ys.iter().sum::<f64>() / n as f64;
        let sxy: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
        let sxx: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
        if sxx == 0.0 {
            0.0
        } else {
            sxy / sxx
        }
    };
    Some(VramStats {
        baseline,
        steady,
        peak,
        drift_mib_per_min: drift,
        samples_second_half: half.len(),
    })
}

// ---------------------------------------------------------------------------------------
// Record facts

/// Today (UTC) as ("YYYY-MM-DD", "YYYYMMDD"); `TRTV_DATE=YYYY-MM-DD` overrides.
pub fn today() -> (String, String) {
    if let Ok(d) = std::env::var("TRTV_DATE") {
        let d = d.trim().to_string();
        if d.len() == 10 {
            let compact = d.replace('-', "");
            return (d, compact);
        }
    }
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    // Howard Hinnant's civil_from_days.
    let z = secs.div_euclid(86400) + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    (format!("{y:04}-{m:02}-{d:02}"), format!("{y:04}{m:02}{d:02}"))
}

/// (commit, dirty): `TRTV_COMMIT` (+ `TRTV_COMMIT_DIRTY=1`) when set (the GPU machine has
/// no git), else `git rev-parse HEAD` in the source tree; "unknown" otherwise.
pub fn commit() -> (String, Option<bool>) {
    if let Ok(c) = std::env::var("TRTV_COMMIT") {
        if !c.trim().is_empty() {
            let dirty = std::env::var("TRTV_COMMIT_DIRTY").ok().map(|v| v.trim() == "1");
            return (c.trim().to_string(), dirty);
        }
    }
    let dir = env!("CARGO_MANIFEST_DIR");
    let sha = std::process::Command::new("git")
        .args(["-C", dir, "rev-parse", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match sha {
        Some(s) => {
            let dirty = std::process::Command::new("git")
                .args(["-C", dir, "status", "--porcelain", "--untracked-files=no"])
                .output()
                .ok()
                .map(|o| !o.stdout.is_empty());
            (s, dirty)
        }
        None => ("unknown".into(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvml_reads_the_device_or_says_why() {
        match Nvml::open(0) {
            Ok(nvml) => {
                let name = nvml.name().expect("an opened GPU has a name");
                let (used, total) = nvml.memory_mib().expect("an opened GPU reports its memory");
                assert!(
                    !name.is_empty() && used > 0.0 && total >= used,
                    "{name}: {used} of {total} MiB"
                );
                eprintln!(
                    "NVML: {name}, {used:.0} of {total:.0} MiB used, PCIe counters {:?}",
                    nvml.pcie_counters()
                );
            }
            Err(why) => {
                assert!(!why.is_empty());
                eprintln!("SKIPPED nvml_reads_the_device_or_says_why: no NVML here: {why}");
            }
        }
    }

    #[test]
    fn counters_unwrap_at_their_width() {
        let mut t = CounterTotals::default();
        assert_eq!(t.push((u32::MAX as u64 - 10, 5, 32)), (0, 0));
        // RX wrapped past 2^32: 11 bytes to 0, then 20 more.
        assert_eq!(t.push((20, 105, 32)), (31, 100));
        let mut w = CounterTotals::default();
        w.push((1 << 40, 0, 64));
        assert_eq!(w.push(((1 << 40) + 7, 3, 64)), (7, 3));
    }

    fn counted(t_ms: u64, h2d: u64, d2h: u64) -> Sample {
        Sample {
            t_ns: t_ms * 1_000_000,
            t_count_ns: t_ms * 1_000_000,
            h2d_total: Some(h2d),
            d2h_total: Some(d2h),
            h2d_bps: Some(1000.0),
            d2h_bps: Some(10.0),
            ..Default::default()
        }
    }

    #[test]
    fn pcie_bytes_prefer_counters_and_interpolate() {
        let s = [counted(0, 0, 0), counted(100, 1000, 100), counted(200, 3000, 300)];
        let p = pcie_bytes(&s, 50_000_000, 150_000_000).unwrap();
        assert_eq!(p.source, "counters");
        assert!((p.h2d - 1500.0).abs() < 1e-6, "{}", p.h2d);
        assert!((p.d2h - 150.0).abs() < 1e-6);
        let (h, _) = p.sampled.unwrap();
        assert!((h - 100.0).abs() < 1e-6, "1000 B/s over 0.1 s: {h}");
        // A window outside the readings falls back to the throughput.
        let q = pcie_bytes(&s, 150_000_000, 300_000_000).unwrap();
        assert_eq!(q.source, "throughput");
    }
}
