//! Message schema of the results that leave the pipeline (`trtmsgbroker`), version 1.
//!
//! Two kinds of messages, both JSON objects with a common header:
//! - `frame`: one per frame, with its detections (and the zone counts of trtanalytics);
//! - `event`: one per analytics event (zone entry/exit, line crossing, occupancy threshold,
//!   dwell time) or pipeline event (recording started).
//!
//! Every message carries an idempotency `key`,
//! `<pipeline-id>/<camera>/<frame>/<kind>/<n>` (`n`: 0 for the frame message, the index of
//! the event within its frame for events): the same frame of the same pipeline always gets
//! the same keys, so a consumer that keeps the keys it has seen drops the duplicates that
//! at-least-once delivery (replays after an outage) may bring. The JSON Schema is
//! `docs/schema/trtvision-message-v1.schema.json` ([`SCHEMA`]).

use crate::batch::Batch;
use crate::results::Detection;
use serde::{Deserialize, Serialize};

/// Version written into every message (`schema_version`).
pub const SCHEMA_VERSION: u32 = 1;

/// The JSON Schema (draft 2020-12) of version 1 messages.
pub const SCHEMA: &str = include_str!("../../docs/schema/trtvision-message-v1.schema.json");

/// Which messages an element sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MessageKind {
    /// Per-frame messages only.
    Frame,
    /// Event messages only.
    Event,
    /// Both.
    #[default]
    Both,
}

impl MessageKind {
    pub fn frames(self) -> bool {
        matches!(self, MessageKind::Frame | MessageKind::Both)
    }
    pub fn events(self) -> bool {
        matches!(self, MessageKind::Event | MessageKind::Both)
    }
}

/// Fields common to every message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub schema_version: u32,
    /// Idempotency key, see the module documentation.
    pub key: String,
    pub pipeline_id: String,
    /// Camera (source) index: trtmux sink pad index.
    pub camera: u32,
    /// Frame number within the camera, from 0.
    pub frame: u64,
    /// PTS of the frame in nanoseconds, `null` when the frame has none.
    pub pts_ns: Option<u64>,
    /// Running time of the frame in nanoseconds (its segment's), `null` when unknown.
    pub running_time_ns: Option<u64>,
    /// Wall clock when the message was made, RFC 3339 UTC with milliseconds.
    pub wall_clock: String,
}

/// Summary of an instance mask (frame pixels).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaskSummary {
    /// Pixels set.
    pub area: u64,
    /// Tight rectangle of the mask crop `[x, y, width, height]`.
    pub bbox: [u32; 4],
    /// Centre of mass of the set pixels `[x, y]`, `null` for an empty mask.
    pub centroid: Option<[f32; 2]>,
}

impl MaskSummary {
    /// Summary of a host mask; `None` when its bits are only in GPU memory.
    pub fn of(m: &crate::results::FrameMask) -> Option<Self> {
        if m.data.len() != (m.width as usize) * (m.height as usize) {
            return None;
        }
        let (mut n, mut sx, mut sy) = (0u64, 0f64, 0f64);
        for (i, &v) in m.data.iter().enumerate() {
            if v >= 128 {
                n += 1;
                sx += (i % m.width as usize) as f64 + 0.5;
                sy += (i / m.width as usize) as f64 + 0.5;
            }
        }
        Some(MaskSummary {
            area: n,
            bbox: [m.x, m.y, m.width, m.height],
            centroid: (n > 0).then(|| {
                [
                    (m.x as f64 + sx / n as f64) as f32,
                    (m.y as f64 + sy / n as f64) as f32,
                ]
            }),
        })
    }
}

/// One detection of a frame message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectionMessage {
    pub model: String,
    pub label: String,
    pub class_id: u32,
    pub confidence: f32,
    /// Box in frame pixels `[x, y, width, height]`.
    pub bbox: [f32; 4],
    /// Tracker id (trttracker), `null` when untracked.
    pub track_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<MaskSummary>,
}

impl From<&Detection> for DetectionMessage {
    fn from(d: &Detection) -> Self {
        DetectionMessage {
            model: d.model.to_string(),
            label: d.label.to_string(),
            class_id: d.class_id,
            confidence: d.confidence,
            bbox: [d.bbox.x0, d.bbox.y0, d.bbox.width(), d.bbox.height()],
            track_id: (d.object_id >= 0).then_some(d.object_id),
            mask: d.mask.as_ref().and_then(MaskSummary::of),
        }
    }
}

/// Objects of one class in one zone on one frame (trtanalytics).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZoneCount {
    pub zone: String,
    pub label: String,
    pub class_id: u32,
    pub count: u32,
}

/// Direction of a line crossing: `forward` = from the left-hand side of the line (seen
/// along its arrow `from` -> `to` on screen, y pointing down) to its right-hand side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Forward,
    Backward,
}

/// The tracked object an event is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventObject {
    pub track_id: i64,
    pub label: String,
    pub class_id: u32,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A tracked object entered a zone.
    ZoneEntry { zone: String, object: EventObject },
    /// A tracked object left a zone (or was lost inside it); `dwell_s` is how long it was
    /// inside.
    ZoneExit {
        zone: String,
        object: EventObject,
        dwell_s: f64,
    },
    /// A tracked object's anchor point crossed a line.
    LineCrossing {
        line: String,
        object: EventObject,
        direction: Direction,
    },
    /// The number of objects in a zone reached (`above`) or fell below its threshold.
    Occupancy {
        zone: String,
        count: u32,
        threshold: u32,
        above: bool,
    },
    /// A tracked object has been in a zone for the zone's dwell threshold.
    Dwell {
        zone: String,
        object: EventObject,
        dwell_s: f64,
    },
    /// A recording of the camera started (file or URI). Kept for consumers of early v1
    /// messages; recordings are reported by [`Event::Recording`].
    RecordingStarted { location: String },
    /// An event recording of a camera (trtcamsrc) started, finished or failed.
    Recording(RecordingInfo),
}

/// The `recording` event: one event recording of a camera.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordingInfo {
    /// The camera's id (trtcamsrc `camera-id`).
    pub camera_id: String,
    /// `started`, `finished` or `failed`.
    pub state: String,
    /// The file.
    pub location: String,
    /// What asked for it: `signal`, `api` or `rule:<name>`.
    pub trigger: String,
    /// Wall clock of the first frame in the file (RFC 3339 UTC).
    pub start_time: String,
    /// Wall clock of the end of the file (finished and failed recordings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    /// Length of the file in nanoseconds (0 when it started).
    pub duration_ns: u64,
    /// Why it failed or ended before its end time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl From<&crate::recording::RecordingEvent> for RecordingInfo {
    fn from(e: &crate::recording::RecordingEvent) -> Self {
        RecordingInfo {
            camera_id: e.camera_id.clone(),
            state: e.state.as_str().to_owned(),
            location: e.location.clone(),
            trigger: e.trigger.clone(),
            start_time: e.start_time.clone(),
            end_time: e.end_time.clone(),
            duration_ns: e.duration_ns,
            reason: e.reason.clone(),
        }
    }
}

/// The event message of a recording event of camera `camera` (trtmux pad index): `frame`
/// is the number of frames of the camera so far; the key's last part is
/// `2 × recording number` for `started` and `2 × recording number + 1` for its end, so each
/// recording event has its own key.
pub fn recording_message(
    pipeline_id: &str,
    camera: u32,
    frame: u64,
    event: &crate::recording::RecordingEvent,
) -> Message {
    let n = 2 * event.id as usize + usize::from(event.state != crate::recording::RecordingState::Started);
    let at = FrameRef {
        camera,
        frame,
        pts_ns: None,
        running_time_ns: None,
    };
    Message::Event(EventMessage {
        header: header(pipeline_id, &at, "event", n, &wall_clock_now()),
        event: Event::Recording(event.into()),
    })
}

/// A per-frame message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameMessage {
    #[serde(flatten)]
    pub header: Header,
    pub width: u32,
    pub height: u32,
    pub detections: Vec<DetectionMessage>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<ZoneCount>,
}

/// An event message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventMessage {
    #[serde(flatten)]
    pub header: Header,
    pub event: Event,
}

/// Any message, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Message {
    Frame(FrameMessage),
    Event(EventMessage),
}

impl Message {
    pub fn header(&self) -> &Header {
        match self {
            Message::Frame(m) => &m.header,
            Message::Event(m) => &m.header,
        }
    }
}

/// A serialised message ready to be sent: its key and JSON bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    pub key: String,
    pub payload: Vec<u8>,
}

/// The idempotency key of message `n` of `kind` (`frame` or `event`) of a frame.
pub fn key(pipeline_id: &str, camera: u32, frame: u64, kind: &str, n: usize) -> String {
    format!("{pipeline_id}/{camera}/{frame}/{kind}/{n}")
}

/// The current wall clock as RFC 3339 UTC with milliseconds.
pub fn wall_clock_now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// Where a frame is: what the header needs besides the pipeline id.
#[derive(Debug, Clone, Copy)]
pub struct FrameRef {
    pub camera: u32,
    pub frame: u64,
    pub pts_ns: Option<u64>,
    pub running_time_ns: Option<u64>,
}

fn header(pipeline_id: &str, at: &FrameRef, kind: &str, n: usize, wall_clock: &str) -> Header {
    Header {
        schema_version: SCHEMA_VERSION,
        key: key(pipeline_id, at.camera, at.frame, kind, n),
        pipeline_id: pipeline_id.to_string(),
        camera: at.camera,
        frame: at.frame,
        pts_ns: at.pts_ns,
        running_time_ns: at.running_time_ns,
        wall_clock: wall_clock.to_string(),
    }
}

/// Messages of one frame: the frame message (when `kind` includes frames) followed by one
/// message per event (when it includes events), in event order.
pub fn frame_messages(
    pipeline_id: &str,
    kind: MessageKind,
    at: &FrameRef,
    (width, height): (u32, u32),
    detections: &[Detection],
    zones: &[ZoneCount],
    events: &[Event],
) -> Vec<Message> {
    let now = wall_clock_now();
    let mut out = Vec::new();
    if kind.frames() {
        out.push(Message::Frame(FrameMessage {
            header: header(pipeline_id, at, "frame", 0, &now),
            width,
            height,
            detections: detections.iter().map(DetectionMessage::from).collect(),
            zones: zones.to_vec(),
        }));
    }
    if kind.events() {
        for (n, e) in events.iter().enumerate() {
            out.push(Message::Event(EventMessage {
                header: header(pipeline_id, at, "event", n, &now),
                event: e.clone(),
            }));
        }
    }
    out
}

/// Messages of every frame of a batch (analytics results from trtanalytics included).
pub fn batch_messages(pipeline_id: &str, kind: MessageKind, batch: &Batch) -> Vec<Message> {
    let mut out = Vec::new();
    for slot in &batch.slots {
        let at = FrameRef {
            camera: slot.pad_index(),
            frame: slot.frame_number,
            pts_ns: slot.pts.map(|t| t.nseconds()),
            running_time_ns: slot
                .pts
                .and_then(|pts| slot.source.segment.to_running_time(pts))
                .map(|t| t.nseconds()),
        };
        let (zones, events) = match &slot.results.analytics {
            Some(a) => (&a.zones[..], &a.events[..]),
            None => (&[][..], &[][..]),
        };
        out.extend(frame_messages(
            pipeline_id,
            kind,
            &at,
            (slot.info.width(), slot.info.height()),
            &slot.results.detections,
            zones,
            events,
        ));
    }
    out
}

/// Serialises `m`.
pub fn encode(m: &Message) -> Encoded {
    Encoded {
        key: m.header().key.clone(),
        // Serialising these plain data types cannot fail (no maps with non-string keys).
        payload: serde_json::to_vec(m).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests;
