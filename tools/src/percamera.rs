//! Per-camera delivery: frames per second and latency of every camera over the measured
//! window and per fixed time window (e.g. 10 s), so that one starving camera or a rate
//! that drifts down during a long run shows in the record, not only the mean over all
//! cameras.
//!
//! Each measured frame is kept as (end time, latency) in whole microseconds (8 bytes a
//! frame: a 10-minute run of 120 cameras at 30 frames/s holds about 17 MB).

use serde_json::Value;

use crate::json;
use crate::stats::round;

/// Measured frames of each camera: (ns since the run's t0 the frame reached the end /
/// 1000, latency in us).
#[derive(Debug, Clone, Default)]
pub struct PerCamera {
    frames: Vec<Vec<(u32, u32)>>,
}

/// One time window of the summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// Start, seconds after the first measured frame reached the end.
    pub t_s: f64,
    pub fps_per_camera_min: f64,
    pub fps_per_camera_p5: f64,
    pub fps_per_camera_mean: f64,
    pub latency_ms_p50: f64,
    pub latency_ms_p99: f64,
}

/// What [`PerCamera::summary`] finds.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Frames per second of each camera over the whole window (frames / window length).
    pub fps: Vec<f64>,
    /// Each camera's own p99 latency (ms).
    pub latency_p99_ms: Vec<f64>,
    /// Whole windows only (a partial last window is left out).
    pub windows: Vec<Window>,
    pub window_s: f64,
}

/// Least-squares slope of `ys` over `xs`; `None` below two points.
fn slope(xs: &[f64], ys: &[f64]) -> Option<f64> {
    let n = xs.len() as f64;
    if xs.len() < 2 {
        return None;
    }
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let sxx: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
    let sxy: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

fn us(ns: u64) -> u32 {
    (ns / 1000).min(u64::from(u32::MAX)) as u32
}

/// `p`-th percentile (nearest rank on a sorted copy); 0 for no values.
fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p / 100.0 * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

impl PerCamera {
    pub fn new(cameras: usize) -> Self {
        Self {
            frames: vec![Vec::new(); cameras],
        }
    }

    /// A measured frame of `camera` that reached the end at `end_ns` after `latency_ns`.
    pub fn push(&mut self, camera: usize, end_ns: u64, latency_ns: u64) {
        if let Some(v) = self.frames.get_mut(camera) {
            v.push((us(end_ns), us(latency_ns)));
        }
    }

    /// Rates over `[first_ns, last_ns]` (the measured window: first measured frame out
    /// of its source to the last one at the end) and per window of `window_s` seconds
    /// starting at the first measured frame's end. `None` without frames or window.
    pub fn summary(&self, first_ns: u64, last_ns: u64, window_s: f64) -> Option<Summary> {
        let total: usize = self.frames.iter().map(Vec::len).sum();
        if total == 0 || last_ns <= first_ns || window_s <= 0.0 {
            return None;
        }
        let wall_s = (last_ns - first_ns) as f64 / 1e9;
        let fps = self.frames.iter().map(|v| v.len() as f64 / wall_s).collect();
        let latency_p99_ms = self
            .frames
            .iter()
            .map(|v| {
                pct(
                    &sorted(v.iter().map(|&(_, l)| f64::from(l) / 1e3).collect()),
                    99.0,
                )
            })
            .collect();
        let t_first = self.frames.iter().flatten().map(|&(t, _)| t).min().unwrap_or(0);
        let t_last = self.frames.iter().flatten().map(|&(t, _)| t).max().unwrap_or(0);
        let win_us = (window_s * 1e6) as u64;
        let whole = (u64::from(t_last - t_first) / win_us.max(1)) as usize;
        let mut counts = vec![vec![0u32; self.frames.len()]; whole];
        let mut lat: Vec<Vec<f64>> = vec![Vec::new(); whole];
        for (cam, v) in self.frames.iter().enumerate() {
            for &(t, l) in v {
                let w = (u64::from(t - t_first) / win_us.max(1)) as usize;
                if w < whole {
                    counts[w][cam] += 1;
                    lat[w].push(f64::from(l) / 1e3);
                }
            }
        }
        let windows = counts
            .into_iter()
            .zip(lat)
            .enumerate()
            .map(|(w, (c, l))| {
                let f = sorted(c.iter().map(|&n| f64::from(n) / window_s).collect());
                let l = sorted(l);
                Window {
                    t_s: w as f64 * window_s,
                    fps_per_camera_min: f.first().copied().unwrap_or(0.0),
                    fps_per_camera_p5: pct(&f, 5.0),
                    fps_per_camera_mean: f.iter().sum::<f64>() / f.len().max(1) as f64,
                    latency_ms_p50: pct(&l, 50.0),
                    latency_ms_p99: pct(&l, 99.0),
                }
            })
            .collect();
        Some(Summary {
            fps,
            latency_p99_ms,
            windows,
            window_s,
        })
    }
}

impl Summary {
    /// Slowest camera's rate over the whole window.
    pub fn fps_min(&self) -> f64 {
        sorted(self.fps.clone()).first().copied().unwrap_or(0.0)
    }

    /// Slope of the windows' p99 latency over time, ms per minute (growing latency: the
    /// pipeline falls behind); `None` below two windows.
    pub fn latency_drift_ms_per_min(&self) -> Option<f64> {
        let xs: Vec<f64> = self.windows.iter().map(|w| w.t_s / 60.0).collect();
        let ys: Vec<f64> = self.windows.iter().map(|w| w.latency_ms_p99).collect();
        slope(&xs, &ys)
    }

    /// 5th percentile of the cameras' rates.
    pub fn fps_p5(&self) -> f64 {
        pct(&sorted(self.fps.clone()), 5.0)
    }

    /// Record keys: `fps_per_camera_min`, `fps_per_camera_p5` and a `per_camera` object
    /// (rates and p99 latencies across cameras, and the windows).
    pub fn record_keys(&self) -> Vec<(String, Value)> {
        let r2 = |x: f64| Value::from(round(x, 2));
        let f = sorted(self.fps.clone());
        let l = sorted(self.latency_p99_ms.clone());
        let windows = self
            .windows
            .iter()
            .map(|w| {
                json::obj(vec![
                    ("t_s", r2(w.t_s)),
                    ("fps_per_camera_min", r2(w.fps_per_camera_min)),
                    ("fps_per_camera_p5", r2(w.fps_per_camera_p5)),
                    ("fps_per_camera_mean", r2(w.fps_per_camera_mean)),
                    ("latency_ms_p50", r2(w.latency_ms_p50)),
                    ("latency_ms_p99", r2(w.latency_ms_p99)),
                ])
            })
            .collect::<Vec<_>>();
        let worst_window = |get: fn(&Window) -> f64| {
            self.windows
                .iter()
                .map(get)
                .min_by(f64::total_cmp)
                .map(r2)
                .unwrap_or(Value::Null)
        };
        let highest_p99 = self
            .windows
            .iter()
            .map(|w| w.latency_ms_p99)
            .max_by(f64::total_cmp)
            .map(r2)
            .unwrap_or(Value::Null);
        vec![
            ("fps_per_camera_min".to_string(), r2(self.fps_min())),
            ("fps_per_camera_p5".to_string(), r2(self.fps_p5())),
            (
                "latency_drift_ms_per_min".to_string(),
                self.latency_drift_ms_per_min().map(r2).unwrap_or(Value::Null),
            ),
            (
                "per_camera".to_string(),
                json::obj(vec![
                    (
                        "method",
                        Value::from(
                            "every measured frame's end time and latency per camera; fps = frames / measured window; windows of window_s seconds from the first measured frame's end (whole windows only); latency_ms_p99 = each camera's own p99",
                        ),
                    ),
                    ("window_s", r2(self.window_s)),
                    (
                        "fps",
                        json::obj(vec![
                            ("min", r2(pct(&f, 0.0))),
                            ("p5", r2(pct(&f, 5.0))),
                            ("p50", r2(pct(&f, 50.0))),
                            ("max", r2(pct(&f, 100.0))),
                        ]),
                    ),
                    (
                        "latency_ms_p99",
                        json::obj(vec![
                            ("min", r2(pct(&l, 0.0))),
                            ("p50", r2(pct(&l, 50.0))),
                            ("max", r2(pct(&l, 100.0))),
                        ]),
                    ),
                    ("worst_window_fps_per_camera_min", worst_window(|w| w.fps_per_camera_min)),
                    ("worst_window_latency_ms_p99", highest_p99),
                    ("windows", Value::Array(windows)),
                ]),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    /// Three cameras over 30 s: two at 30 frames/s, one at 30 for 20 s then 15; the slow
    /// window and the slow camera show, the mean would not single them out.
    #[test]
    fn slow_camera_and_slow_window_show() {
        let mut p = PerCamera::new(3);
        for cam in 0..3 {
            let mut t = 0u64;
            while t < 30 * S {
                let lat = if cam == 2 { 80_000_000 } else { 40_000_000 };
                p.push(cam, S + t, lat);
                t += if cam == 2 && t >= 20 * S { S / 15 } else { S / 30 };
            }
        }
        let s = p.summary(S, 31 * S, 10.0).unwrap();
        assert_eq!(s.windows.len(), 2, "the partial last window is left out");
        assert!((s.fps[0] - 30.0).abs() < 0.1, "{:?}", s.fps);
        assert!((s.fps[2] - 25.0).abs() < 0.2, "{:?}", s.fps);
        assert!((s.fps_min() - s.fps[2]).abs() < 1e-9);
        assert!((s.windows[0].fps_per_camera_min - 30.0).abs() < 0.2);
        assert!((s.windows[1].fps_per_camera_min - 30.0).abs() < 0.2);
        assert!((s.latency_p99_ms[2] - 80.0).abs() < 1e-6);
        assert!((s.latency_p99_ms[0] - 40.0).abs() < 1e-6);
        // With 5-s windows the slow part (from 20 s) is the fifth window.
        let s5 = p.summary(S, 31 * S, 5.0).unwrap();
        assert_eq!(s5.windows.len(), 5);
        assert!(
            (s5.windows[4].fps_per_camera_min - 15.0).abs() < 0.3,
            "{:?}",
            s5.windows[4]
        );
        assert!((s5.windows[0].fps_per_camera_mean - 30.0).abs() < 0.2);
        // Latency constant over the windows: no drift.
        assert!(s5.latency_drift_ms_per_min().unwrap().abs() < 1e-6);
        let keys = s.record_keys();
        assert_eq!(keys[0].0, "fps_per_camera_min");
        assert_eq!(keys[1].0, "fps_per_camera_p5");
    }

    /// Latency growing by 60 ms per minute shows as that drift.
    #[test]
    fn growing_latency_is_a_drift() {
        let mut p = PerCamera::new(1);
        let mut t = 0u64;
        while t < 60 * S {
            // 40 ms + 1 ms per second.
            p.push(0, S + t, 40_000_000 + t / 1000);
            t += S / 30;
        }
        let s = p.summary(S, 61 * S, 10.0).unwrap();
        let d = s.latency_drift_ms_per_min().unwrap();
        assert!((d - 60.0).abs() < 1.0, "{d}");
    }

    #[test]
    fn nothing_measured_is_none() {
        let p = PerCamera::new(2);
        assert!(p.summary(0, S, 10.0).is_none());
        let mut q = PerCamera::new(1);
        q.push(0, S, 1);
        assert!(q.summary(S, S, 10.0).is_none(), "empty window");
        assert!(q.summary(0, 2 * S, 0.0).is_none(), "no window length");
        // A camera index out of range is ignored, not a panic.
        q.push(7, S, 1);
    }
}
