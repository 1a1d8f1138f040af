//! Soak runs of trtvision-bench: camera files that loop until a deadline, and the drift of a
//! sampled quantity (RSS, VRAM) after a warm-up period.
//!
//! A file camera loops without disturbing the rest of the pipeline: a probe on the decoder's
//! src pad drops the decoder's EOS while the deadline is ahead, seeks the decoder back to
//! the start (flushing, from another thread: a streaming thread may not seek itself), drops
//! the seek's flush events so trtmux and the elements after it never see them, replaces the
//! seek's segment by the stream's first one (open-ended: a segment is sticky, and a dropped
//! one would be sent again before the next buffer), and shifts the timestamps of every later
//! pass so they continue where the previous pass ended. Downstream sees one long stream with
//! monotonic timestamps.

use gst::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Per-camera state of a looping file source.
#[derive(Default)]
struct LoopState {
    /// Added to every buffer's PTS/DTS of the current pass, ns.
    offset_ns: i64,
    /// End (PTS + duration) of the latest buffer pushed downstream, shifted, ns.
    end_ns: u64,
    /// A loop seek is under way: its flush and segment events are dropped.
    seeking: bool,
    /// The first buffer after a loop seek sets the new offset.
    need_offset: bool,
    /// A loop seek failed: the next EOS ends the stream.
    give_up: bool,
    /// The stream's first segment without its stop (the file's duration), sent downstream
    /// in place of every later segment.
    segment: Option<gst::Event>,
}

/// Loops the file source feeding `decoder` until `deadline`; `passes` counts the
/// completed loops.
pub fn loop_until(decoder: &gst::Element, deadline: Instant, passes: Arc<AtomicU64>) -> Result<(), String> {
    let pad = decoder
        .static_pad("src")
        .ok_or_else(|| format!("{} has no src pad to loop on", decoder.name()))?;
    let state = Arc::new(Mutex::new(LoopState::default()));
    let dec = decoder.downgrade();
    pad.add_probe(
        // Flush events reach a probe only when asked for explicitly.
        gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM | gst::PadProbeType::EVENT_FLUSH,
        move |_, info| {
            let mut st = state.lock().unwrap();
            match &mut info.data {
                Some(gst::PadProbeData::Buffer(buf)) => {
                    if st.need_offset {
                        if let Some(pts) = buf.pts() {
                            st.offset_ns = st.end_ns as i64 - pts.nseconds() as i64;
                            st.need_offset = false;
                        }
                    }
                    let off = st.offset_ns;
                    let shift = |t: Option<gst::ClockTime>| {
                        t.map(|t| gst::ClockTime::from_nseconds((t.nseconds() as i64 + off).max(0) as u64))
                    };
                    if off != 0 {
                        let b = buf.make_mut();
                        b.set_pts(shift(b.pts()));
                        b.set_dts(shift(b.dts()));
                    }
                    if let Some(pts) = buf.pts() {
                        let dur = buf.duration().map(|d| d.nseconds()).unwrap_or(0);
                        st.end_ns = st.end_ns.max(pts.nseconds() + dur);
                    }
                    gst::PadProbeReturn::Ok
                }
                Some(gst::PadProbeData::Event(ev)) => match ev.type_() {
                    gst::EventType::Eos if Instant::now() < deadline && !st.give_up => {
                        st.seeking = true;
                        passes.fetch_add(1, Ordering::Relaxed);
                        let dec = dec.clone();
                        let state = state.clone();
                        std::thread::spawn(move || {
                            let Some(dec) = dec.upgrade() else { return };
                            let seek = gst::event::Seek::new(
                                1.0,
                                gst::SeekFlags::FLUSH | gst::SeekFlags::KEY_UNIT,
                                gst::SeekType::Set,
                                gst::ClockTime::ZERO,
                                gst::SeekType::None,
                                gst::ClockTime::NONE,
                            );
                            let ok = dec.static_pad("src").is_some_and(|p| p.send_event(seek));
                            if !ok {
                                // The stream then ends here; the run reports fewer frames.
                                {
                                    let mut st = state.lock().unwrap();
                                    st.give_up = true;
                                    st.seeking = false;
                                }
                                eprintln!(
                                    "trtvision-bench: {}: seeking back to the start failed; this camera ends",
                                    dec.name()
                                );
                                if let Some(p) = dec.static_pad("src") {
                                    p.push_event(gst::event::Eos::new());
                                }
                            }
                        });
                        gst::PadProbeReturn::Handled
                    }
                    gst::EventType::FlushStart | gst::EventType::FlushStop if st.seeking => {
                        gst::PadProbeReturn::Handled
                    }
                    gst::EventType::Segment => {
                        if st.seeking {
                            st.seeking = false;
                            st.need_offset = true;
                        }
                        if st.segment.is_none() {
                            if let gst::EventView::Segment(seg) = ev.view() {
                                if let Some(time) = seg.segment().downcast_ref::<gst::ClockTime>() {
                                    let mut open = time.clone();
                                    open.set_stop(gst::ClockTime::NONE);
                                    open.set_duration(gst::ClockTime::NONE);
                                    st.segment =
                                        Some(gst::event::Segment::builder(&open).seqnum(ev.seqnum()).build());
                                }
                            }
                        }
                        if let Some(first) = &st.segment {
                            *ev = first.clone();
                        }
                        gst::PadProbeReturn::Ok
                    }
                    _ => gst::PadProbeReturn::Ok,
                },
                _ => gst::PadProbeReturn::Ok,
            }
        },
    );
    Ok(())
}

/// Least-squares slope (per minute) and summary of `(t_ns, value)` samples taken between
/// `warmup_ns` and `end_ns`.
pub struct Drift {
    pub per_min: f64,
    pub samples: usize,
    pub first: f64,
    pub last: f64,
    pub min: f64,
    pub max: f64,
    pub median: f64,
}

/// [`Drift`] of the samples in `[warmup_ns, end_ns]`: samples after the last measured frame
/// (the pipeline draining and releasing memory at EOS) would bend the slope.
pub fn drift_between(samples: &[(u64, f64)], warmup_ns: u64, end_ns: u64) -> Option<Drift> {
    let after: Vec<(u64, f64)> = samples
        .iter()
        .copied()
        .filter(|s| s.0 >= warmup_ns && s.0 <= end_ns)
        .collect();
    if after.len() < 2 {
        return None;
    }
    let xs: Vec<f64> = after.iter().map(|s| s.0 as f64 / 60e9).collect();
    let mut v: Vec<f64> = after.iter().map(|s| s.1).collect();
    let per_min = crate::stats::slope(&xs, &v);
    v.sort_by(f64::total_cmp);
    Some(Drift {
        per_min,
        samples: after.len(),
        first: after[0].1,
        last: after[after.len() - 1].1,
        min: v[0],
        max: v[v.len() - 1],
        median: v[v.len() / 2],
    })
}

/// One sample per `every_ns` (the first at or after each step), as ([t_s], [value]).
pub fn series(samples: &[(u64, f64)], every_ns: u64) -> (Vec<f64>, Vec<f64>) {
    let (mut t, mut v) = (Vec::new(), Vec::new());
    let mut next = 0u64;
    for &(ns, x) in samples {
        if ns >= next {
            t.push((ns as f64 / 1e8).round() / 10.0);
            v.push((x * 10.0).round() / 10.0);
            next = (ns / every_ns + 1) * every_ns;
        }
    }
    (t, v)
}

#[cfg(test)]
mod drift_tests {
    use super::drift_between;

    #[test]
    fn drift_ignores_samples_outside_the_window() {
        // Flat at 2000 MiB for 20 s, then memory released at EOS.
        let mut s: Vec<(u64, f64)> = (0..=20).map(|i| (i * 1_000_000_000, 2000.0)).collect();
        s.push((20_500_000_000, 1048.0));
        s.push((21_000_000_000, 483.0));
        let d = drift_between(&s, 5_000_000_000, 20_000_000_000).unwrap();
        assert_eq!(d.samples, 16);
        assert_eq!(d.per_min, 0.0);
        assert_eq!((d.first, d.last, d.min), (2000.0, 2000.0, 2000.0));
        // With the tail the slope turns strongly negative: what the window prevents.
        let all = drift_between(&s, 5_000_000_000, u64::MAX).unwrap();
        assert!(all.per_min < -100.0, "{}", all.per_min);
        // A real leak of 1 MiB per second is found.
        let leak: Vec<(u64, f64)> = (0..=60).map(|i| (i * 1_000_000_000, 100.0 + i as f64)).collect();
        let d = drift_between(&leak, 10_000_000_000, 60_000_000_000).unwrap();
        assert!((d.per_min - 60.0).abs() < 1e-9, "{}", d.per_min);
        assert!(drift_between(&leak, 70_000_000_000, u64::MAX).is_none());
    }
}

/// Frame latencies of a run: every value (exact percentiles) or, for soak runs that may see
/// millions of frames, a histogram of fixed size (logarithmic buckets 0.1 % wide from 1 us
/// up), so that the benchmark's own memory does not grow with the frame count and bend the
/// RSS drift it measures.
pub enum Latencies {
    Exact(Vec<u64>),
    Histogram { counts: Vec<u64>, n: u64, sum_ns: u128 },
}

/// Bucket ratio of [`Latencies::Histogram`].
const BUCKET_RATIO: f64 = 1.001;
/// Values below this fall in bucket 0.
const BUCKET_MIN_NS: f64 = 1000.0;
/// 1 us to ~1000 s.
const BUCKETS: usize = 20_800;

impl Latencies {
    pub fn exact(capacity: usize) -> Self {
        Latencies::Exact(Vec::with_capacity(capacity))
    }

    pub fn histogram() -> Self {
        Latencies::Histogram {
            counts: vec![0; BUCKETS],
            n: 0,
            sum_ns: 0,
        }
    }

    fn bucket(ns: u64) -> usize {
        let x = ns as f64 / BUCKET_MIN_NS;
        if x <= 1.0 {
            0
        } else {
            ((x.ln() / BUCKET_RATIO.ln()) as usize).min(BUCKETS - 1)
        }
    }

    /// Geometric middle of bucket `i`, in ns.
    fn bucket_value(i: usize) -> f64 {
        BUCKET_MIN_NS * BUCKET_RATIO.powf(i as f64 + 0.5)
    }

    pub fn push(&mut self, ns: u64) {
        match self {
            Latencies::Exact(v) => v.push(ns),
            Latencies::Histogram { counts, n, sum_ns } => {
                counts[Self::bucket(ns)] += 1;
                *n += 1;
                *sum_ns += ns as u128;
            }
        }
    }

    pub fn len(&self) -> u64 {
        match self {
            Latencies::Exact(v) => v.len() as u64,
            Latencies::Histogram { n, .. } => *n,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How the percentiles are computed, for the record.
    pub fn method(&self) -> &'static str {
        match self {
            Latencies::Exact(_) => "exact (every frame's latency kept)",
            Latencies::Histogram { .. } => {
                "logarithmic histogram, buckets 0.1 % wide from 1 us (soak runs: fixed memory); percentiles within 0.1 %"
            }
        }
    }

    /// (p50, p95, p99, mean) in ms, None without values.
    pub fn summary_ms(&self) -> Option<(f64, f64, f64, f64)> {
        if self.is_empty() {
            return None;
        }
        match self {
            Latencies::Exact(v) => {
                let mut s: Vec<f64> = v.iter().map(|&n| n as f64 / 1e6).collect();
                s.sort_by(f64::total_cmp);
                let pct = |p: f64| crate::procstats::percentile(&s, p);
                let mean = s.iter().sum::<f64>() / s.len() as f64;
                Some((pct(50.0), pct(95.0), pct(99.0), mean))
            }
            Latencies::Histogram { counts, n, sum_ns } => {
                let pct = |p: f64| {
                    let rank = (p / 100.0 * (*n - 1) as f64).round() as u64;
                    let mut seen = 0u64;
                    for (i, &c) in counts.iter().enumerate() {
                        seen += c;
                        if seen > rank {
                            return Self::bucket_value(i) / 1e6;
                        }
                    }
                    Self::bucket_value(BUCKETS - 1) / 1e6
                };
                Some((pct(50.0), pct(95.0), pct(99.0), *sum_ns as f64 / *n as f64 / 1e6))
            }
        }
    }
}

#[cfg(test)]
mod latency_tests {
    use super::Latencies;

    #[test]
    fn histogram_percentiles_match_exact_ones() {
        let (mut e, mut h) = (Latencies::exact(0), Latencies::histogram());
        // A spread of latencies from 50 us to 2 s (deterministic).
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let ns = 50_000 + x % 2_000_000_000 / (1 + x % 97);
            e.push(ns);
            h.push(ns);
        }
        let (a, b) = (e.summary_ms().unwrap(), h.summary_ms().unwrap());
        for (exact, approx) in [(a.0, b.0), (a.1, b.1), (a.2, b.2), (a.3, b.3)] {
            assert!((approx - exact).abs() <= exact * 1.5e-3, "{exact} vs {approx}");
        }
        assert_eq!(h.len(), 200_000);
        assert!(Latencies::histogram().summary_ms().is_none());
        // Below 1 us and far above 1000 s land in the end buckets, without panicking.
        let mut t = Latencies::histogram();
        t.push(0);
        t.push(u64::MAX);
        assert_eq!(t.len(), 2);
    }
}
