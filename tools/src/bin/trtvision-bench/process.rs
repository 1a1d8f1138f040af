//! Process measurements: RSS, per-thread CPU time, load average.

use super::*;

pub(crate) fn proc_status_kib(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Per thread of this process: (tid, name, on-CPU ns) from /proc/self/task/*/schedstat.
/// GStreamer names its streaming threads `<element>:<pad>`.
pub(crate) fn thread_cpu_ns() -> Vec<(u64, String, u64)> {
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
pub(crate) fn thread_cpu_delta(
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

pub(crate) fn loadavg() -> Vec<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .filter_map(|v| v.parse().ok())
        .collect()
}

/// VmRSS sampler: one sample every `interval` until stopped.
pub(crate) struct RssSampler {
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) handle: Option<std::thread::JoinHandle<Vec<(u64, u64)>>>,
}

impl RssSampler {
    pub(crate) fn start(t0: Instant, interval: Duration) -> Self {
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
    pub(crate) fn finish(mut self) -> Vec<(u64, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().unwrap().join().unwrap_or_default()
    }
}
