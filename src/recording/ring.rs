//! The ring of compressed access units a camera keeps for event recordings.
//!
//! Units are grouped in GOPs (a keyframe and the delta units after it); the ring always
//! starts on a keyframe and drops whole GOPs from the front. It keeps at least `span` of
//! stream time when the camera has sent that much (so at most `span` plus one GOP) and at
//! most `max_bytes` (but always the newest GOP).

use gst::ClockTime;
use std::collections::VecDeque;

/// One compressed access unit and its stream time (PTS, else DTS) in nanoseconds.
#[derive(Debug, Clone)]
pub struct Unit {
    pub buffer: gst::Buffer,
    pub time: u64,
}

impl Unit {
    /// The unit of `buffer`, timed by its PTS (else DTS, else `fallback`).
    pub fn new(buffer: gst::Buffer, fallback: u64) -> Self {
        let time = buffer
            .pts()
            .or(buffer.dts())
            .map(ClockTime::nseconds)
            .unwrap_or(fallback);
        Unit { buffer, time }
    }

    pub fn is_keyframe(&self) -> bool {
        !self.buffer.flags().contains(gst::BufferFlags::DELTA_UNIT)
    }
}

/// A keyframe and the delta units that follow it, with the caps they were parsed with.
#[derive(Debug, Clone)]
pub struct Gop {
    pub caps: gst::Caps,
    pub units: Vec<Unit>,
    pub bytes: usize,
}

impl Gop {
    pub fn start(&self) -> u64 {
        self.units.first().map_or(0, |u| u.time)
    }
}

/// Bounded history of one camera's compressed stream.
#[derive(Debug)]
pub struct Ring {
    gops: VecDeque<Gop>,
    span: u64,
    max_bytes: usize,
    bytes: usize,
    newest: Option<u64>,
}

/// What [`Ring::push`] did with a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Kept (first unit of a new GOP when `true`).
    Kept(bool),
    /// Dropped: a delta unit before any keyframe (nothing could decode it).
    BeforeKeyframe,
}

impl Ring {
    /// A ring keeping `span` of stream time and at most `max_bytes`.
    pub fn new(span: ClockTime, max_bytes: usize) -> Self {
        Ring {
            gops: VecDeque::new(),
            span: span.nseconds(),
            max_bytes,
            bytes: 0,
            newest: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.gops.is_empty()
    }

    pub fn clear(&mut self) {
        self.gops.clear();
        self.bytes = 0;
        self.newest = None;
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// GOPs held, oldest first.
    pub fn gops(&self) -> impl Iterator<Item = &Gop> {
        self.gops.iter()
    }

    /// Stream time of the newest unit.
    pub fn newest(&self) -> Option<u64> {
        self.newest
    }

    /// Stream time covered, from the first keyframe to the newest unit.
    pub fn covered(&self) -> u64 {
        match (self.gops.front(), self.newest) {
            (Some(g), Some(n)) => n.saturating_sub(g.start()),
            _ => 0,
        }
    }

    /// Adds a unit parsed with `caps`. A keyframe, or a unit whose caps differ from its
    /// GOP's (then only a keyframe can start the new GOP), starts a new GOP.
    pub fn push(&mut self, unit: Unit, caps: &gst::Caps) -> Pushed {
        let same_caps = self.gops.back().is_some_and(|g| g.caps == *caps);
        let new_gop = unit.is_keyframe();
        if !new_gop && !same_caps {
            if !self.gops.is_empty() {
                // The stream changed format without a keyframe: the history cannot continue.
                self.clear();
            }
            return Pushed::BeforeKeyframe;
        }
        self.newest = Some(self.newest.map_or(unit.time, |n| n.max(unit.time)));
        let size = unit.buffer.size();
        self.bytes += size;
        if new_gop {
            self.gops.push_back(Gop {
                caps: caps.clone(),
                units: vec![unit],
                bytes: size,
            });
        } else if let Some(g) = self.gops.back_mut() {
            g.units.push(unit);
            g.bytes += size;
        }
        self.trim();
        Pushed::Kept(new_gop)
    }

    fn trim(&mut self) {
        let newest = self.newest.unwrap_or(0);
        while self.gops.len() > 1 {
            let second_start = self.gops[1].start();
            let over_span = newest.saturating_sub(second_start) >= self.span;
            let over_bytes = self.bytes > self.max_bytes;
            if !(over_span || over_bytes) {
                break;
            }
            if let Some(g) = self.gops.pop_front() {
                self.bytes -= g.bytes;
            }
        }
    }

    /// Index of the GOP a recording of `before` ending now starts with: the newest GOP
    /// starting at or before `newest - before`, else the oldest one.
    pub fn start_for(&self, before: ClockTime) -> Option<usize> {
        let newest = self.newest?;
        let from = newest.saturating_sub(before.nseconds());
        let idx = self.gops.iter().rposition(|g| g.start() <= from).unwrap_or(0);
        (!self.gops.is_empty()).then_some(idx)
    }

    /// The GOPs from index `from` on, oldest first.
    pub fn from(&self, from: usize) -> impl Iterator<Item = &Gop> {
        self.gops.iter().skip(from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn unit(t_ms: u64, key: bool, size: usize) -> Unit {
        let mut b = gst::Buffer::with_size(size).unwrap();
        {
            let b = b.get_mut().unwrap();
            b.set_pts(ClockTime::from_mseconds(t_ms));
            if !key {
                b.set_flags(gst::BufferFlags::DELTA_UNIT);
            }
        }
        Unit::new(b, 0)
    }

    fn caps(w: i32) -> gst::Caps {
        gst::Caps::builder("video/x-h264").field("width", w).build()
    }

    /// 30 frames/s, a keyframe every `gop` frames, `n` frames.
    fn fill(ring: &mut Ring, n: u64, gop: u64, size: usize) {
        let c = caps(64);
        for i in 0..n {
            ring.push(unit(i * 1000 / 30, i % gop == 0, size), &c);
        }
    }

    #[test]
    fn starts_on_a_keyframe_and_drops_leading_deltas() {
        gst::init().unwrap();
        let mut r = Ring::new(ClockTime::from_seconds(2), usize::MAX);
        assert_eq!(r.push(unit(0, false, 10), &caps(64)), Pushed::BeforeKeyframe);
        assert!(r.is_empty());
        assert_eq!(r.push(unit(33, true, 10), &caps(64)), Pushed::Kept(true));
        assert_eq!(r.push(unit(66, false, 10), &caps(64)), Pushed::Kept(false));
        assert!(r.gops().next().unwrap().units[0].is_keyframe());
    }

    #[test]
    fn keeps_the_span_and_at_most_one_gop_more() {
        gst::init().unwrap();
        let mut r = Ring::new(ClockTime::from_seconds(2), usize::MAX);
        fill(&mut r, 300, 15, 100);
        // 10 s sent; GOPs of 0.5 s: at least 2 s kept, less than 2.5 s.
        let covered = r.covered();
        assert!((2000 * MS..2500 * MS).contains(&covered), "{covered}");
        for g in r.gops() {
            assert!(g.units[0].is_keyframe());
            assert!(g.units[1..].iter().all(|u| !u.is_keyframe()));
        }
        assert_eq!(r.bytes(), r.gops().map(|g| g.units.len() * 100).sum::<usize>());
    }

    #[test]
    fn byte_cap_drops_whole_gops_but_keeps_the_newest() {
        gst::init().unwrap();
        let mut r = Ring::new(ClockTime::from_seconds(60), 3000);
        fill(&mut r, 300, 15, 100);
        assert!(r.bytes() <= 3000, "{}", r.bytes());
        assert_eq!(r.gops().count(), 2);
        let mut tiny = Ring::new(ClockTime::from_seconds(60), 10);
        fill(&mut tiny, 40, 15, 100);
        assert_eq!(tiny.gops().count(), 1, "the newest GOP stays");
    }

    #[test]
    fn start_for_picks_the_gop_covering_before() {
        gst::init().unwrap();
        let mut r = Ring::new(ClockTime::from_seconds(10), usize::MAX);
        fill(&mut r, 181, 15, 10); // newest at 6 s, GOPs start every 0.5 s.
        let starts: Vec<u64> = r.gops().map(|g| g.start() / MS).collect();
        let i = r.start_for(ClockTime::from_seconds(2)).unwrap();
        assert_eq!(starts[i], 4000);
        let i = r.start_for(ClockTime::from_mseconds(2200)).unwrap();
        assert_eq!(starts[i], 3500);
        // More than the ring holds: its oldest GOP.
        assert_eq!(r.start_for(ClockTime::from_seconds(100)), Some(0));
        assert_eq!(Ring::new(ClockTime::ZERO, 1).start_for(ClockTime::ZERO), None);
    }

    #[test]
    fn caps_change_without_keyframe_clears_and_waits_for_one() {
        gst::init().unwrap();
        let mut r = Ring::new(ClockTime::from_seconds(10), usize::MAX);
        fill(&mut r, 20, 15, 10);
        assert_eq!(r.push(unit(700, false, 10), &caps(128)), Pushed::BeforeKeyframe);
        assert!(r.is_empty());
        assert_eq!(r.push(unit(733, true, 10), &caps(128)), Pushed::Kept(true));
        assert_eq!(r.gops().next().unwrap().caps, caps(128));
    }
}
