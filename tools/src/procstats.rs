//! Process facts shared by the benchmark binaries: CPU time, memory, CPU model, percentiles
//! and deterministic pseudo-random inputs.

use gsttrtvision::tensor::{DType, PooledBytes, Tensor};

/// Process CPU time (user + system, all threads), seconds.
pub fn cpu_time_s() -> f64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// A `/proc/self/status` value given in kB (`VmRSS:`, `VmHWM:`), in MiB.
pub fn proc_status_mib(key: &str) -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|k| k / 1024.0)
}

/// The 1-minute load average of the machine (`/proc/loadavg`).
pub fn loadavg_1min() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// CPU model name and the cores this process may use.
pub fn cpu_model_and_cores() -> (String, usize) {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    (model, cores)
}

/// Linear-interpolated percentile `p` (0..100) of sorted values; NaN when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let r = p / 100.0 * (sorted.len() - 1) as f64;
    let (lo, hi) = (r.floor() as usize, r.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (r - lo as f64)
}

/// xorshift64* → f32 in [0, 1).
pub struct Rng(pub u64);

impl Rng {
    pub fn next_f32(&mut self) -> f32 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        let v = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (v >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// A host tensor of deterministic pseudo-random values in [0, 1) (f32, or f16).
pub fn random_input(name: &str, dtype: DType, shape: Vec<usize>, seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut rng = Rng(seed.max(1) ^ 0x9E37_79B9_7F4A_7C15);
    let mut bytes = Vec::with_capacity(n * dtype.size());
    for _ in 0..n {
        let v = rng.next_f32();
        match dtype {
            DType::F16 => bytes.extend_from_slice(&half::f16::from_f32(v).to_ne_bytes()),
            _ => bytes.extend_from_slice(&v.to_ne_bytes()),
        }
    }
    Tensor::host(name, dtype, shape, PooledBytes::detached(bytes))
}
