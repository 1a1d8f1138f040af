//! Multi-object tracking by detection, per source: SORT's motion model with ByteTrack's
//! association, on CPU, without GStreamer (the `trttracker` element wraps it).
//!
//! Per source (trtmux pad index) a [`SourceTracker`] keeps a set of tracks, each with a
//! constant-velocity Kalman filter on its box ([`kalman`]). On every frame:
//!
//! 1. every track is predicted one frame ahead (more if frame numbers skip);
//! 2. detections are split by confidence: *high* (`≥ high_threshold`), *low*
//!    (`≥ low_threshold` and below `high_threshold`), the rest is ignored;
//! 3. **stage 1**: confirmed tracks ↔ high detections; **stage 2**: confirmed tracks still
//!    unmatched ↔ low detections (ByteTrack: a partly occluded object whose confidence
//!    drops keeps its track); **stage 3**: tentative tracks ↔ high detections still
//!    unmatched. Each stage is a minimum-cost assignment ([`assignment`], Hungarian) on
//!    `1 − IoU(predicted box, detection box)`, where only pairs with the same model and
//!    class and an IoU of at least `iou_threshold` may match;
//! 4. matched tracks are corrected with their detection; a tentative track with
//!    `min_hits` matches in a row becomes confirmed and gets its id;
//! 5. unmatched tentative tracks are deleted; unmatched confirmed tracks are *lost*: they
//!    coast on their prediction and are deleted after more than `max_age` consecutive
//!    frames without a match (a gap of up to `max_age` frames is bridged);
//! 6. every high detection still unmatched starts a tentative track (low detections
//!    never start one).
//!
//! Ids: each source numbers its tracks 1, 2, 3, … in order of confirmation, so ids are
//! unique within a source (not across sources) and tentative tracks that never confirm
//! use up no id. An id is never reused. A detection gets the id of the confirmed track it
//! matched, written to [`Detection::object_id`]; every other detection (tentative track,
//! below `low_threshold`, invalid box) keeps `-1`. Detections are never removed or moved:
//! boxes stay the detector's. Tracks born on the first frame a source shows the tracker
//! are confirmed at once (as in ByteTrack), so objects present from the start have an id
//! from their first frame; objects that appear later get theirs on their `min_hits`-th
//! frame.
//!
//! Times: each track keeps the PTS of the first frame its object was detected on and of
//! the last frame a detection matched it; after every frame the source's confirmed tracks
//! (matched, coasting, and those that ended on the frame, marked lost) are listed as
//! [`TrackInfo`] in the frame's results (`FrameResults::tracks`), which the GstAnalytics
//! tracking entries carry.
//!
//! The tracker keeps its working memory (tracks, cost matrix, index lists) between
//! frames: once the number of objects has peaked, updating allocates nothing.

pub mod assignment;
pub mod kalman;

use crate::geometry::BoxF;
use crate::results::{Detection, TrackInfo};
use assignment::Assignment;
use kalman::BoxKalman;
use std::collections::HashMap;
use std::sync::Arc;

/// Tracker parameters (the `trttracker` properties).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackerConfig {
    /// Smallest IoU between a track's predicted box and a detection for them to match.
    pub iou_threshold: f32,
    /// Detections at or above this confidence are matched first and may start tracks.
    pub high_threshold: f32,
    /// Detections at or above this confidence (and below `high_threshold`) may only
    /// continue confirmed tracks; below it they are ignored.
    pub low_threshold: f32,
    /// Consecutive frames a confirmed track survives without a match.
    pub max_age: u32,
    /// Matches in a row before a track is confirmed and gets an id (1 = at once).
    pub min_hits: u32,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            iou_threshold: 0.3,
            high_threshold: 0.5,
            low_threshold: 0.1,
            max_age: 30,
            min_hits: 3,
        }
    }
}

/// One tracked object.
#[derive(Debug, Clone)]
pub struct Track {
    /// Id once confirmed, -1 while tentative.
    id: i64,
    model: Arc<str>,
    class_id: u32,
    kalman: BoxKalman,
    /// Box predicted for the current frame (what association compares against).
    predicted: BoxF,
    /// Matches in a row (while tentative) / in total.
    hits: u32,
    /// Consecutive frames without a match.
    misses: u32,
    /// Matched on the current frame.
    matched: bool,
    /// PTS of the frame that started the track (or of its first later frame with one).
    first_seen: Option<gst::ClockTime>,
    /// PTS of the last frame a detection matched the track.
    last_seen: Option<gst::ClockTime>,
}

impl Track {
    fn new(det: &Detection, now: Option<gst::ClockTime>) -> Self {
        Self {
            id: -1,
            model: det.model.clone(),
            class_id: det.class_id,
            kalman: BoxKalman::new(&det.bbox),
            predicted: det.bbox,
            hits: 1,
            misses: 0,
            matched: true,
            first_seen: now,
            last_seen: now,
        }
    }

    /// Track id, or -1 while the track is tentative.
    pub fn id(&self) -> i64 {
        self.id
    }
    /// Whether the track has been confirmed (has an id).
    pub fn is_confirmed(&self) -> bool {
        self.id >= 0
    }
    pub fn class_id(&self) -> u32 {
        self.class_id
    }
    pub fn model(&self) -> &str {
        &self.model
    }
    /// Filtered box estimate, frame pixels.
    pub fn bbox(&self) -> BoxF {
        self.kalman.bbox()
    }
    /// Consecutive frames without a matching detection.
    pub fn misses(&self) -> u32 {
        self.misses
    }
    /// Number of detections matched.
    pub fn hits(&self) -> u32 {
        self.hits
    }

    /// PTS of the frame the track's object was first detected on.
    pub fn first_seen(&self) -> Option<gst::ClockTime> {
        self.first_seen
    }
    /// PTS of the last frame a detection matched the track.
    pub fn last_seen(&self) -> Option<gst::ClockTime> {
        self.last_seen
    }

    fn info(&self, lost: bool) -> TrackInfo {
        TrackInfo {
            id: self.id,
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            lost,
        }
    }

    fn same_class(&self, det: &Detection) -> bool {
        self.class_id == det.class_id && (Arc::ptr_eq(&self.model, &det.model) || self.model == det.model)
    }
}

/// Working memory shared by all sources, reused from frame to frame.
#[derive(Debug, Default)]
struct Scratch {
    assignment: Assignment,
    rows: Vec<usize>,
    high: Vec<usize>,
    low: Vec<usize>,
    det_matched: Vec<bool>,
}

/// Tracks of one source.
#[derive(Debug, Default)]
pub struct SourceTracker {
    tracks: Vec<Track>,
    next_id: i64,
    last_frame: Option<u64>,
}

/// Which tracks and detections one association stage considers.
#[derive(Clone, Copy, PartialEq)]
enum Stage {
    ConfirmedHigh,
    ConfirmedLow,
    TentativeHigh,
}

impl SourceTracker {
    /// Live tracks (confirmed, lost or tentative), in creation order.
    pub fn tracks(&self) -> &[Track] {
        &self.tracks
    }

    /// Confirmed tracks still alive (matched or coasting).
    pub fn confirmed(&self) -> usize {
        self.tracks.iter().filter(|t| t.is_confirmed()).count()
    }

    /// Number of ids handed out so far.
    pub fn ids_assigned(&self) -> u64 {
        self.next_id.max(1) as u64 - 1
    }

    fn clear(&mut self) {
        self.tracks.clear();
        self.next_id = 1;
        self.last_frame = None;
    }

    fn confirm(&mut self, track: usize) {
        self.tracks[track].id = self.next_id;
        self.next_id += 1;
    }

    fn update(
        &mut self,
        cfg: &TrackerConfig,
        scratch: &mut Scratch,
        frame: (u64, Option<gst::ClockTime>),
        dets: &mut [Detection],
        infos: &mut Vec<TrackInfo>,
    ) {
        let (frame_number, now) = frame;
        infos.clear();
        // Frame numbers going backwards mean the source restarted: start afresh.
        let steps = match self.last_frame {
            Some(last) if frame_number > last => (frame_number - last).min(cfg.max_age as u64 + 1) as u32,
            _ => {
                self.clear();
                0
            }
        };
        let first_frame = self.last_frame.is_none();
        self.last_frame = Some(frame_number);

        for t in &mut self.tracks {
            for _ in 0..steps {
                t.kalman.predict();
            }
            t.predicted = t.kalman.bbox();
            t.matched = false;
        }

        let Scratch {
            assignment,
            rows,
            high,
            low,
            det_matched,
        } = scratch;
        high.clear();
        low.clear();
        det_matched.clear();
        det_matched.resize(dets.len(), false);
        for (i, d) in dets.iter_mut().enumerate() {
            d.object_id = -1;
            let b = &d.bbox;
            let valid = [b.x0, b.y0, b.x1, b.y1].iter().all(|v| v.is_finite()) && b.area() > 0.0;
            if !valid || d.confidence.is_nan() {
                continue;
            }
            if d.confidence >= cfg.high_threshold {
                high.push(i);
            } else if d.confidence >= cfg.low_threshold {
                low.push(i);
            }
        }

        for stage in [Stage::ConfirmedHigh, Stage::ConfirmedLow, Stage::TentativeHigh] {
            rows.clear();
            rows.extend(self.tracks.iter().enumerate().filter_map(|(i, t)| {
                let wanted = match stage {
                    Stage::ConfirmedHigh | Stage::ConfirmedLow => t.is_confirmed(),
                    Stage::TentativeHigh => !t.is_confirmed(),
                };
                (wanted && !t.matched).then_some(i)
            }));
            let cols: &[usize] = if stage == Stage::ConfirmedLow { low } else { high };
            if rows.is_empty() || cols.is_empty() {
                continue;
            }
            assignment.reset(rows.len(), cols.len());
            for (r, &ti) in rows.iter().enumerate() {
                let t = &self.tracks[ti];
                for (c, &di) in cols.iter().enumerate() {
                    let d = &dets[di];
                    if det_matched[di] || !t.same_class(d) {
                        continue;
                    }
                    let iou = t.predicted.iou(&d.bbox);
                    if iou >= cfg.iou_threshold && iou > 0.0 {
                        assignment.set(r, c, 1.0 - iou as f64);
                    }
                }
            }
            for &(r, c) in assignment.solve() {
                let (ti, di) = (rows[r], cols[c]);
                det_matched[di] = true;
                let t = &mut self.tracks[ti];
                t.kalman.update(&dets[di].bbox);
                t.matched = true;
                t.misses = 0;
                t.hits = t.hits.saturating_add(1);
                t.first_seen = t.first_seen.or(now);
                t.last_seen = now.or(t.last_seen);
                if !t.is_confirmed() && t.hits >= cfg.min_hits {
                    self.confirm(ti);
                }
                dets[di].object_id = self.tracks[ti].id;
            }
        }

        let max_age = cfg.max_age;
        let lost_steps = steps.max(1);
        self.tracks.retain_mut(|t| {
            if t.matched {
                return true;
            }
            if !t.is_confirmed() {
                return false;
            }
            t.misses = t.misses.saturating_add(lost_steps);
            t.kalman.freeze_size();
            let alive = t.misses <= max_age;
            if !alive {
                infos.push(t.info(true));
            }
            alive
        });

        for &di in high.iter() {
            if det_matched[di] {
                continue;
            }
            self.tracks.push(Track::new(&dets[di], now));
            if first_frame || cfg.min_hits <= 1 {
                let ti = self.tracks.len() - 1;
                self.confirm(ti);
                dets[di].object_id = self.tracks[ti].id;
            }
        }
        infos.extend(
            self.tracks
                .iter()
                .filter(|t| t.is_confirmed())
                .map(|t| t.info(false)),
        );
    }
}

/// Trackers of all sources, keyed by source (trtmux pad index).
#[derive(Debug, Default)]
pub struct Tracker {
    config: TrackerConfig,
    sources: HashMap<u32, SourceTracker>,
    scratch: Scratch,
}

impl Tracker {
    pub fn new(config: TrackerConfig) -> Self {
        Self {
            config,
            ..Default::default()
        }
    }

    pub fn config(&self) -> &TrackerConfig {
        &self.config
    }

    /// New parameters, effective from the next frame; tracks are kept.
    pub fn set_config(&mut self, config: TrackerConfig) {
        self.config = config;
    }

    /// Tracks frame `frame_number` of `source`: writes the id of each detection's track
    /// to its `object_id` (-1 when it has none). Frames of a source must come in order;
    /// a frame number not above the previous one restarts the source. Without times:
    /// see [`Tracker::update_frame`].
    pub fn update(&mut self, source: u32, frame_number: u64, detections: &mut [Detection]) {
        self.update_frame(source, frame_number, None, detections, &mut Vec::new());
    }

    /// [`Tracker::update`] for a frame with presentation time `pts`; replaces `tracks` with
    /// the source's confirmed tracks after the frame (see [`TrackInfo`]): those that ended
    /// on this frame (`lost`), then the live ones (matched or coasting), in creation order.
    pub fn update_frame(
        &mut self,
        source: u32,
        frame_number: u64,
        pts: Option<gst::ClockTime>,
        detections: &mut [Detection],
        tracks: &mut Vec<TrackInfo>,
    ) {
        let cfg = self.config;
        self.sources.entry(source).or_default().update(
            &cfg,
            &mut self.scratch,
            (frame_number, pts),
            detections,
            tracks,
        );
    }

    /// Forgets a source (it ended); its ids start again from 1 if it comes back.
    pub fn remove_source(&mut self, source: u32) {
        self.sources.remove(&source);
    }

    /// Forgets every source.
    pub fn reset(&mut self) {
        self.sources.clear();
    }

    /// The tracker of `source`, if it has seen a frame.
    pub fn source(&self, source: u32) -> Option<&SourceTracker> {
        self.sources.get(&source)
    }

    /// Confirmed tracks alive over all sources.
    pub fn confirmed_tracks(&self) -> usize {
        self.sources.values().map(SourceTracker::confirmed).sum()
    }
}

#[cfg(test)]
mod tests;
