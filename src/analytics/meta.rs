//! trtanalytics results as GStreamer metadata on each frame after trtdemux (documented in
//! docs/metadata.md and docs/analytics.md).
//!
//! - Per detection: a [`OBJECT_PARAM`] parameter structure on its
//!   `GstVideoRegionOfInterestMeta`: `zones` (array of strings: the zones it is in, in
//!   configuration order), `dwell-s` (array of doubles, one per zone: seconds since a
//!   tracked object entered it, -1 for an untracked object), `lines` (array of strings: the
//!   lines it crossed on this frame) and `directions` (array of strings, one per line:
//!   `forward` or `backward`).
//! - Per frame: a GstCustomMeta [`FRAME_META`] whose structure [`FRAME_STRUCTURE`] holds
//!   `camera` (uint, trtmux sink pad index), `zones` (array of `zone` structures: `name`,
//!   `total` (uint, objects of every class inside), `over-threshold` (boolean: `total` at
//!   or above `occupancy-threshold`), `occupancy-threshold` (uint, only when configured),
//!   `labels`, `class-ids`, `counts` (parallel arrays: objects inside per class)) and
//!   `lines` (array of `line` structures: `name`, `forward`, `backward` (uint, crossings on
//!   this frame), `forward-total`, `backward-total` (uint64, crossings since the camera's
//!   rules were loaded)).

use super::{FrameAnalytics, ObjectAnalytics, ObjectInZone};
use crate::messages::Direction;
use gst::glib;

/// Name of the ROI parameter structure with a detection's zones and line crossings.
pub const OBJECT_PARAM: &str = "trtvision-analytics";
/// Name of the GstCustomMeta carrying a frame's zone and line summary.
pub const FRAME_META: &str = "TrtVisionAnalyticsMeta";
/// Name of the structure of [`FRAME_META`].
pub const FRAME_STRUCTURE: &str = "trtvision-analytics-frame";

fn direction_name(d: Direction) -> &'static str {
    match d {
        Direction::Forward => "forward",
        Direction::Backward => "backward",
    }
}

fn strings(s: &gst::StructureRef, field: &str) -> Option<Vec<String>> {
    s.get::<gst::Array>(field)
        .ok()?
        .iter()
        .map(|v| v.get::<String>().ok())
        .collect()
}

fn numbers<T: for<'a> glib::value::FromValue<'a> + 'static>(
    s: &gst::StructureRef,
    field: &str,
) -> Option<Vec<T>> {
    s.get::<gst::Array>(field)
        .ok()?
        .iter()
        .map(|v| v.get::<T>().ok())
        .collect()
}

impl ObjectAnalytics {
    /// The [`OBJECT_PARAM`] structure of this object.
    pub fn to_structure(&self) -> gst::Structure {
        gst::Structure::builder(OBJECT_PARAM)
            .field(
                "zones",
                gst::Array::new(self.zones.iter().map(|z| z.zone.clone())),
            )
            .field(
                "dwell-s",
                gst::Array::new(self.zones.iter().map(|z| z.dwell_s.unwrap_or(-1.0))),
            )
            .field(
                "lines",
                gst::Array::new(self.crossings.iter().map(|c| c.0.clone())),
            )
            .field(
                "directions",
                gst::Array::new(self.crossings.iter().map(|c| direction_name(c.1))),
            )
            .build()
    }

    /// Reads an [`OBJECT_PARAM`] structure back; `None` when it is not one or a field is
    /// missing or malformed.
    pub fn from_structure(s: &gst::StructureRef) -> Option<Self> {
        if s.name() != OBJECT_PARAM {
            return None;
        }
        let (zones, dwell) = (strings(s, "zones")?, numbers::<f64>(s, "dwell-s")?);
        let (lines, directions) = (strings(s, "lines")?, strings(s, "directions")?);
        if zones.len() != dwell.len() || lines.len() != directions.len() {
            return None;
        }
        Some(ObjectAnalytics {
            zones: zones
                .into_iter()
                .zip(dwell)
                .map(|(zone, d)| ObjectInZone {
                    zone,
                    dwell_s: (d >= 0.0).then_some(d),
                })
                .collect(),
            crossings: lines
                .into_iter()
                .zip(directions)
                .map(|(l, d)| match d.as_str() {
                    "forward" => Some((l, Direction::Forward)),
                    "backward" => Some((l, Direction::Backward)),
                    _ => None,
                })
                .collect::<Option<_>>()?,
        })
    }

    /// The analytics of a detection from its ROI meta, when trtanalytics ran on its frame.
    pub fn from_roi(roi: &gst_video::VideoRegionOfInterestMeta) -> Option<Self> {
        Self::from_structure(roi.param(OBJECT_PARAM)?)
    }
}

/// Objects of one class in a zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassCount {
    pub label: String,
    pub class_id: u32,
    pub count: u32,
}

/// One zone on one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneSummary {
    pub name: String,
    /// Objects of every class inside.
    pub total: u32,
    pub occupancy_threshold: Option<u32>,
    /// `total` is at or above `occupancy_threshold`.
    pub over_threshold: bool,
    /// Objects inside per class (classes with at least one object, by class id).
    pub classes: Vec<ClassCount>,
}

/// One line on one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LineCounts {
    /// Crossings on this frame.
    pub forward: u32,
    pub backward: u32,
    /// Crossings since the camera's rules were loaded.
    pub forward_total: u64,
    pub backward_total: u64,
}

/// The zone and line summary of one frame ([`FRAME_META`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameSummary {
    /// trtmux sink pad index.
    pub camera: u32,
    /// Every zone of the camera, in configuration order.
    pub zones: Vec<ZoneSummary>,
    /// Every line of the camera, in configuration order.
    pub lines: Vec<(String, LineCounts)>,
}

impl FrameSummary {
    /// The summary of a frame of `camera`; `None` when the camera has no rules.
    pub fn of(camera: u32, a: &FrameAnalytics) -> Option<Self> {
        let rules = a.rules.as_ref()?;
        let zones = rules
            .zones
            .iter()
            .enumerate()
            .map(|(i, z)| {
                let state = a.zone_states.get(i).copied().unwrap_or_default();
                ZoneSummary {
                    name: z.name.clone(),
                    total: state.total,
                    occupancy_threshold: z.occupancy_threshold,
                    over_threshold: state.alarm,
                    classes: a
                        .zones
                        .iter()
                        .filter(|c| c.zone == z.name)
                        .map(|c| ClassCount {
                            label: c.label.clone(),
                            class_id: c.class_id,
                            count: c.count,
                        })
                        .collect(),
                }
            })
            .collect();
        let lines = rules
            .lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let (forward, backward) = a.line_counts.get(i).copied().unwrap_or_default();
                let (forward_total, backward_total) = a.line_totals.get(i).copied().unwrap_or_default();
                (
                    l.name.clone(),
                    LineCounts {
                        forward,
                        backward,
                        forward_total,
                        backward_total,
                    },
                )
            })
            .collect();
        Some(FrameSummary { camera, zones, lines })
    }

    /// The [`FRAME_STRUCTURE`] of this summary.
    pub fn to_structure(&self) -> gst::Structure {
        let zones = self.zones.iter().map(|z| {
            let mut b = gst::Structure::builder("zone")
                .field("name", &z.name)
                .field("total", z.total)
                .field("over-threshold", z.over_threshold)
                .field(
                    "labels",
                    gst::Array::new(z.classes.iter().map(|c| c.label.clone())),
                )
                .field("class-ids", gst::Array::new(z.classes.iter().map(|c| c.class_id)))
                .field("counts", gst::Array::new(z.classes.iter().map(|c| c.count)));
            if let Some(t) = z.occupancy_threshold {
                b = b.field("occupancy-threshold", t);
            }
            b.build()
        });
        let lines = self.lines.iter().map(|(name, c)| {
            gst::Structure::builder("line")
                .field("name", name)
                .field("forward", c.forward)
                .field("backward", c.backward)
                .field("forward-total", c.forward_total)
                .field("backward-total", c.backward_total)
                .build()
        });
        gst::Structure::builder(FRAME_STRUCTURE)
            .field("camera", self.camera)
            .field("zones", gst::Array::new(zones))
            .field("lines", gst::Array::new(lines))
            .build()
    }

    /// Reads a [`FRAME_STRUCTURE`] back; `None` when it is not one or a field is missing or
    /// malformed.
    pub fn from_structure(s: &gst::StructureRef) -> Option<Self> {
        if s.name() != FRAME_STRUCTURE {
            return None;
        }
        let structures = |field: &str| -> Option<Vec<gst::Structure>> {
            s.get::<gst::Array>(field)
                .ok()?
                .iter()
                .map(|v| v.get::<gst::Structure>().ok())
                .collect()
        };
        let zones = structures("zones")?
            .iter()
            .map(|z| {
                let labels = strings(z, "labels")?;
                let ids = numbers::<u32>(z, "class-ids")?;
                let counts = numbers::<u32>(z, "counts")?;
                if labels.len() != ids.len() || labels.len() != counts.len() {
                    return None;
                }
                Some(ZoneSummary {
                    name: z.get("name").ok()?,
                    total: z.get("total").ok()?,
                    occupancy_threshold: z.get("occupancy-threshold").ok(),
                    over_threshold: z.get("over-threshold").ok()?,
                    classes: labels
                        .into_iter()
                        .zip(ids)
                        .zip(counts)
                        .map(|((label, class_id), count)| ClassCount {
                            label,
                            class_id,
                            count,
                        })
                        .collect(),
                })
            })
            .collect::<Option<_>>()?;
        let lines = structures("lines")?
            .iter()
            .map(|l| {
                Some((
                    l.get("name").ok()?,
                    LineCounts {
                        forward: l.get("forward").ok()?,
                        backward: l.get("backward").ok()?,
                        forward_total: l.get("forward-total").ok()?,
                        backward_total: l.get("backward-total").ok()?,
                    },
                ))
            })
            .collect::<Option<_>>()?;
        Some(FrameSummary {
            camera: s.get("camera").ok()?,
            zones,
            lines,
        })
    }

    /// Registers [`FRAME_META`] (once per process).
    pub fn register_meta() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| gst::meta::CustomMeta::register(FRAME_META, &[]));
    }

    /// Attaches this summary to `buffer` as a [`FRAME_META`].
    pub fn attach(&self, buffer: &mut gst::BufferRef) {
        Self::register_meta();
        if let Ok(mut meta) = gst::meta::CustomMeta::add(buffer, FRAME_META) {
            let s = meta.mut_structure();
            s.set_name(FRAME_STRUCTURE);
            for (field, value) in self.to_structure().iter() {
                s.set_value(field, value.clone());
            }
        }
    }

    /// The summary attached to `buffer`, if any.
    pub fn from_buffer(buffer: &gst::BufferRef) -> Option<Self> {
        Self::register_meta();
        let meta = gst::meta::CustomMeta::from_buffer(buffer, FRAME_META).ok()?;
        Self::from_structure(meta.structure())
    }
}

#[cfg(test)]
mod tests;
