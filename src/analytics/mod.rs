//! Zone and line analytics on per-frame detections (`trtanalytics`).
//!
//! Per camera and frame: how many objects of each class are in each zone (an object with a
//! mask counts when at least `min-mask-fraction` of its mask pixels lie inside the polygon,
//! else when its box anchor point does), zone entry/exit and dwell time of tracked objects,
//! occupancy threshold crossings, and crossings of directed lines by tracked objects'
//! anchor points. Results are [`FrameAnalytics`], carried in the frame's results and sent
//! by trtmsgbroker as events (schema in [`crate::messages`]).

pub mod config;
pub mod geometry;
pub mod meta;

pub use config::{Anchor, Config};

use crate::messages::{Direction, Event, EventObject, ZoneCount};
use crate::results::Detection;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// What trtanalytics found on one frame.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FrameAnalytics {
    /// Objects per class in each zone (classes with at least one object).
    pub zones: Vec<ZoneCount>,
    /// Events of this frame, in order.
    pub events: Vec<Event>,
    /// The camera's zones and lines (for drawing), `None` for cameras not configured.
    pub rules: Option<Arc<config::Camera>>,
    /// Per zone of `rules`, in order: objects inside (every class) and whether that is at or
    /// above the zone's occupancy threshold (the alarm trtoverlay draws in red).
    pub zone_states: Vec<ZoneState>,
    /// Per line of `rules`, in order: crossings since the camera's rules were loaded,
    /// `(forward, backward)`.
    pub line_totals: Vec<(u64, u64)>,
    /// Per line of `rules`, in order: crossings on this frame, `(forward, backward)`.
    pub line_counts: Vec<(u32, u32)>,
    /// Per detection of the frame, in the order of the frame's detections (empty for
    /// cameras not configured): the zones it is in and the lines it crossed.
    pub objects: Vec<ObjectAnalytics>,
}

/// What trtanalytics found about one detection on one frame.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObjectAnalytics {
    /// Zones the object is in, in configuration order.
    pub zones: Vec<ObjectInZone>,
    /// Lines the object's anchor point crossed since its track's previous frame, in
    /// configuration order.
    pub crossings: Vec<(String, Direction)>,
}

/// An object inside a zone.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectInZone {
    pub zone: String,
    /// Seconds (running time) since a tracked object entered the zone; `None` for an
    /// untracked object.
    pub dwell_s: Option<f64>,
}

/// Occupancy of one zone on one frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ZoneState {
    pub total: u32,
    pub alarm: bool,
}

/// Tracks kept this many frames after they were last seen (for line crossings across gaps).
const TRACK_MEMORY_FRAMES: u64 = 300;

#[derive(Default)]
struct CameraState {
    frames: u64,
    /// Last anchor point and frame of each track.
    anchors: HashMap<i64, ((f32, f32), u64)>,
    /// Per zone: tracks inside with their entry time (ns) and whether dwell was reported.
    inside: Vec<BTreeMap<i64, (u64, bool, EventObject)>>,
    /// Per zone: whether the occupancy was at or above its threshold.
    above: Vec<bool>,
    /// Per line: crossings (forward, backward).
    crossings: Vec<(u64, u64)>,
}

/// The analytics state of a pipeline: configuration and per-camera history.
pub struct Analytics {
    config: Config,
    /// The rules of each configured camera, shared with the frames' results.
    rules: HashMap<u32, Arc<config::Camera>>,
    cameras: HashMap<u32, CameraState>,
}

fn rules_of(config: &Config) -> HashMap<u32, Arc<config::Camera>> {
    config
        .cameras
        .iter()
        .map(|c| (c.id, Arc::new(c.clone())))
        .collect()
}

/// A line rule met an untracked object.
#[derive(Debug, Clone, PartialEq)]
pub struct NeedsTracker {
    pub camera: u32,
    pub line: String,
}

impl std::fmt::Display for NeedsTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "line '{}' of camera {} needs track ids, but its objects are untracked: put trttracker before trtanalytics",
            self.line, self.camera
        )
    }
}

impl Analytics {
    pub fn new(config: Config) -> Self {
        Analytics {
            rules: rules_of(&config),
            config,
            cameras: HashMap::new(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Replaces the configuration; the history of cameras whose zones and lines did not
    /// change is kept.
    pub fn set_config(&mut self, config: Config) {
        let old = std::mem::replace(&mut self.config, config);
        let new = &self.config;
        self.cameras.retain(|id, _| old.camera(*id) == new.camera(*id));
        self.rules = rules_of(new);
    }

    /// Analyses one frame of `camera` at `time_ns` (running time; dwell times). `tracked`:
    /// a tracker ran on the frame (its untracked objects are tracks not confirmed yet, which
    /// lines skip); without one, a line rule with objects to follow is an error.
    pub fn process(
        &mut self,
        camera: u32,
        time_ns: u64,
        detections: &[Detection],
        tracked: bool,
    ) -> Result<FrameAnalytics, NeedsTracker> {
        let Some(rules) = self.rules.get(&camera) else {
            return Ok(FrameAnalytics::default());
        };
        let cam = &**rules;
        let (anchor, fraction) = (self.config.anchor, self.config.min_mask_fraction);
        if let Some(line) = cam.lines.iter().filter(|_| !tracked).find(|l| {
            detections
                .iter()
                .any(|d| d.object_id < 0 && config::accepts(&l.classes, &d.label))
        }) {
            return Err(NeedsTracker {
                camera,
                line: line.name.clone(),
            });
        }
        let st = self.cameras.entry(camera).or_default();
        st.inside.resize_with(cam.zones.len(), BTreeMap::new);
        st.above.resize(cam.zones.len(), false);
        st.crossings.resize(cam.lines.len(), (0, 0));
        let frame = st.frames;
        st.frames += 1;
        let mut out = FrameAnalytics {
            rules: Some(rules.clone()),
            line_counts: vec![(0, 0); cam.lines.len()],
            objects: vec![ObjectAnalytics::default(); detections.len()],
            ..Default::default()
        };
        let object = |d: &Detection| EventObject {
            track_id: d.object_id,
            label: d.label.to_string(),
            class_id: d.class_id,
        };
        let secs = |from: u64| time_ns.saturating_sub(from) as f64 / 1e9;

        for (zi, zone) in cam.zones.iter().enumerate() {
            let mut counts: BTreeMap<(u32, &str), u32> = BTreeMap::new();
            let mut now_inside = BTreeMap::new();
            let mut members = Vec::new();
            for (i, d) in detections
                .iter()
                .enumerate()
                .filter(|(_, d)| config::accepts(&zone.classes, &d.label))
            {
                if !geometry::in_zone(&zone.polygon, d, anchor, fraction) {
                    continue;
                }
                *counts.entry((d.class_id, &d.label)).or_default() += 1;
                members.push(i);
                if d.object_id >= 0 {
                    now_inside.insert(d.object_id, d);
                }
            }
            let total: u32 = counts.values().sum();
            out.zones
                .extend(counts.into_iter().map(|((class_id, label), count)| ZoneCount {
                    zone: zone.name.clone(),
                    label: label.to_string(),
                    class_id,
                    count,
                }));
            let inside = &mut st.inside[zi];
            let left: Vec<i64> = inside
                .keys()
                .filter(|id| !now_inside.contains_key(id))
                .copied()
                .collect();
            for id in left {
                if let Some((since, _, obj)) = inside.remove(&id) {
                    out.events.push(Event::ZoneExit {
                        zone: zone.name.clone(),
                        object: obj,
                        dwell_s: secs(since),
                    });
                }
            }
            for (id, d) in &now_inside {
                let entry = inside.entry(*id).or_insert_with(|| {
                    out.events.push(Event::ZoneEntry {
                        zone: zone.name.clone(),
                        object: object(d),
                    });
                    (time_ns, false, object(d))
                });
                if let Some(t) = zone.dwell_threshold_s {
                    if !entry.1 && secs(entry.0) >= t {
                        entry.1 = true;
                        out.events.push(Event::Dwell {
                            zone: zone.name.clone(),
                            object: object(d),
                            dwell_s: secs(entry.0),
                        });
                    }
                }
            }
            for i in members {
                let id = detections[i].object_id;
                out.objects[i].zones.push(ObjectInZone {
                    zone: zone.name.clone(),
                    dwell_s: (id >= 0).then(|| inside.get(&id).map_or(0.0, |e| secs(e.0))),
                });
            }
            out.zone_states.push(ZoneState {
                total,
                alarm: zone.occupancy_threshold.is_some_and(|t| total >= t),
            });
            if let Some(threshold) = zone.occupancy_threshold {
                let above = total >= threshold;
                if above != st.above[zi] {
                    st.above[zi] = above;
                    out.events.push(Event::Occupancy {
                        zone: zone.name.clone(),
                        count: total,
                        threshold,
                        above,
                    });
                }
            }
        }

        let mut tracked: Vec<(usize, &Detection)> = detections
            .iter()
            .enumerate()
            .filter(|(_, d)| d.object_id >= 0)
            .collect();
        tracked.sort_by_key(|(_, d)| d.object_id);
        for (i, d) in tracked {
            let p = anchor.point(&d.bbox);
            if let Some((prev, _)) = st.anchors.insert(d.object_id, (p, frame)) {
                for (li, line) in cam.lines.iter().enumerate() {
                    if !config::accepts(&line.classes, &d.label) {
                        continue;
                    }
                    if let Some(forward) = geometry::crossing(line.from, line.to, prev, p) {
                        let (t, n) = (&mut st.crossings[li], &mut out.line_counts[li]);
                        let direction = if forward {
                            t.0 += 1;
                            n.0 += 1;
                            Direction::Forward
                        } else {
                            t.1 += 1;
                            n.1 += 1;
                            Direction::Backward
                        };
                        out.objects[i].crossings.push((line.name.clone(), direction));
                        out.events.push(Event::LineCrossing {
                            line: line.name.clone(),
                            object: object(d),
                            direction,
                        });
                    }
                }
            }
        }
        st.anchors.retain(|_, (_, f)| frame - *f <= TRACK_MEMORY_FRAMES);
        out.line_totals.clone_from(&st.crossings);
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
