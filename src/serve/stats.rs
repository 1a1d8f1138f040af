//! Per-camera statistics gathered by pad probes: frames out of trtdemux, frame rate,
//! latency from the trtmux input to the trtdemux output, gaps, and the camera's state.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Frames waiting between trtmux's input and trtdemux's output beyond this many are
/// forgotten (a camera whose frames are dropped on removal must not grow the queue).
const MAX_IN_FLIGHT: usize = 512;
/// Latency samples kept for the quantiles.
const LATENCY_SAMPLES: usize = 512;
/// Window of the frame rate.
const FPS_WINDOW: Duration = Duration::from_secs(2);

/// Statistics of one camera.
#[derive(Debug)]
pub struct CameraStats {
    /// Frames that left trtdemux.
    pub frames: u64,
    /// Times the camera's timeline jumped (a GAP event, a DISCONT frame or a timestamp
    /// more than 1.5 frame durations after the previous one).
    pub gaps: u64,
    /// Reconnections reported by the source.
    pub reconnects: u64,
    /// Last state: connecting, streaming, stalled, reconnecting, failed.
    pub state: String,
    /// Last reason given with a state change.
    pub reason: Option<String>,
    in_flight: VecDeque<(Option<u64>, Instant)>,
    outputs: VecDeque<Instant>,
    latencies: VecDeque<f64>,
    last_end: Option<u64>,
}

impl Default for CameraStats {
    fn default() -> Self {
        Self {
            frames: 0,
            gaps: 0,
            reconnects: 0,
            state: "connecting".into(),
            reason: None,
            in_flight: VecDeque::with_capacity(64),
            outputs: VecDeque::with_capacity(128),
            latencies: VecDeque::with_capacity(LATENCY_SAMPLES),
            last_end: None,
        }
    }
}

impl CameraStats {
    /// A frame with timestamp `pts` (ns) entered trtmux at `now`.
    pub fn frame_in(&mut self, pts: Option<u64>, now: Instant) {
        if self.in_flight.len() >= MAX_IN_FLIGHT {
            self.in_flight.pop_front();
        }
        self.in_flight.push_back((pts, now));
    }

    /// A frame left trtdemux at `now`; returns its latency through the analytics when its
    /// entry was seen.
    pub fn frame_out(
        &mut self,
        pts: Option<u64>,
        duration: Option<u64>,
        discont: bool,
        now: Instant,
    ) -> Option<Duration> {
        self.frames += 1;
        if self.state == "connecting" {
            self.state = "streaming".into();
        }
        let jumped = match (self.last_end, pts) {
            (Some(end), Some(p)) => duration.is_some_and(|d| p > end + d / 2),
            _ => false,
        };
        if (discont && self.frames > 1) || jumped {
            self.gaps += 1;
        }
        if let Some(p) = pts {
            self.last_end = Some(p + duration.unwrap_or(0));
        }
        if self.outputs.len() >= 4096 {
            self.outputs.pop_front();
        }
        self.outputs.push_back(now);
        // Frames leave in the order they entered; entries older than this one belong to
        // frames that never came out.
        let mut latency = None;
        while let Some((p, at)) = self.in_flight.pop_front() {
            if p == pts {
                latency = Some(now.saturating_duration_since(at));
                break;
            }
        }
        if let Some(l) = latency {
            if self.latencies.len() >= LATENCY_SAMPLES {
                self.latencies.pop_front();
            }
            self.latencies.push_back(l.as_secs_f64());
        }
        latency
    }

    /// A GAP event: the camera has no frame for a while.
    pub fn gap(&mut self) {
        self.gaps += 1;
    }

    /// Frames per second over the last two seconds.
    pub fn fps(&mut self, now: Instant) -> f64 {
        while self
            .outputs
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > FPS_WINDOW)
        {
            self.outputs.pop_front();
        }
        match (self.outputs.front(), self.outputs.back()) {
            (Some(first), Some(last)) if self.outputs.len() > 1 => {
                let span = last.saturating_duration_since(*first).as_secs_f64();
                if span > 0.0 {
                    (self.outputs.len() - 1) as f64 / span
                } else {
                    0.0
                }
            }
            _ => 0.0,
        }
    }

    /// Latency quantile `q` (0..=1) in seconds over the last samples.
    pub fn latency_quantile(&self, q: f64) -> Option<f64> {
        quantile(self.latencies.iter().copied().collect(), q)
    }
}

/// Nearest-rank quantile of `values`.
pub fn quantile(mut values: Vec<f64>, q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((q.clamp(0.0, 1.0) * values.len() as f64).ceil() as usize).clamp(1, values.len());
    Some(values[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: u64 = 33_333_333;

    #[test]
    fn latency_matches_frames_by_timestamp() {
        let mut s = CameraStats::default();
        let t0 = Instant::now();
        s.frame_in(Some(0), t0);
        s.frame_in(Some(FRAME), t0 + Duration::from_millis(33));
        let l = s.frame_out(Some(0), Some(FRAME), false, t0 + Duration::from_millis(10));
        assert_eq!(l, Some(Duration::from_millis(10)));
        let l = s.frame_out(Some(FRAME), Some(FRAME), false, t0 + Duration::from_millis(63));
        assert_eq!(l, Some(Duration::from_millis(30)));
        assert_eq!(s.frames, 2);
        assert_eq!(s.gaps, 0);
        assert_eq!(s.state, "streaming");
        assert_eq!(s.latency_quantile(0.5), Some(0.01));
        assert_eq!(s.latency_quantile(0.99), Some(0.03));
    }

    #[test]
    fn timestamp_jumps_and_discont_are_gaps() {
        let mut s = CameraStats::default();
        let t = Instant::now();
        s.frame_out(Some(0), Some(FRAME), true, t);
        assert_eq!(s.gaps, 0, "the first frame's DISCONT is the stream start");
        s.frame_out(Some(FRAME), Some(FRAME), false, t);
        s.frame_out(Some(4 * FRAME), Some(FRAME), false, t);
        assert_eq!(s.gaps, 1);
        s.frame_out(Some(5 * FRAME), Some(FRAME), true, t);
        s.gap();
        assert_eq!(s.gaps, 3);
    }

    #[test]
    fn in_flight_queue_is_bounded_and_fps_counts_a_window() {
        let mut s = CameraStats::default();
        let t0 = Instant::now();
        for i in 0..(MAX_IN_FLIGHT as u64 * 3) {
            s.frame_in(Some(i), t0);
        }
        assert_eq!(s.in_flight.len(), MAX_IN_FLIGHT);
        for i in 0..=30u64 {
            s.frame_out(None, None, false, t0 + Duration::from_millis(i * 1000 / 30));
        }
        let fps = s.fps(t0 + Duration::from_millis(1000));
        assert!((fps - 30.0).abs() < 0.5, "{fps}");
        assert_eq!(s.fps(t0 + Duration::from_secs(10)), 0.0);
    }

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(v.clone(), 0.5), Some(50.0));
        assert_eq!(quantile(v.clone(), 0.99), Some(99.0));
        assert_eq!(quantile(v, 1.0), Some(100.0));
        assert_eq!(quantile(vec![], 0.5), None);
    }
}
