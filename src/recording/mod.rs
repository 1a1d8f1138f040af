//! Event recording (smart record): a camera keeps the last seconds of its compressed stream
//! in a [`ring::Ring`] and, when asked, writes the interval [event − before, event + after]
//! into a file without re-encoding ([`writer::Writer`]).
//!
//! [`Recorder`] is the state of one camera: every parsed access unit goes through
//! [`Recorder::push`] (into the ring, and into the file while a recording runs);
//! [`Recorder::start`] opens a recording from the newest GOP starting at or before
//! `now − before`, or extends the running one to `now + after` (one file per camera at a
//! time); the recording ends when the stream reaches its end time, or with what it has when
//! the camera drops ([`Recorder::interrupt`]). Files start on a keyframe and their
//! timestamps start at 0. Events ([`RecordingEvent`]) say when a file started, finished or
//! failed; the finalising (index written) happens on a thread of its own.

pub mod ring;
pub mod rule;
pub mod writer;

use gst::glib;
use ring::{Pushed, Ring, Unit};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use writer::Writer;

/// Element message posted for each [`RecordingEvent`].
pub const RECORDING_MESSAGE: &str = "trtcamsrc-recording";

/// File format of the recordings.
#[derive(Debug, Default, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstTrtRecordContainer")]
pub enum Container {
    #[default]
    #[enum_value(
        name = "MP4 (mp4mux; fragmented: playable up to the last fragment when cut off)",
        nick = "mp4"
    )]
    Mp4 = 0,
    #[enum_value(name = "Matroska (matroskamux; playable even when cut off)", nick = "mkv")]
    Mkv = 1,
}

impl Container {
    pub fn extension(self) -> &'static str {
        match self {
            Container::Mp4 => "mp4",
            Container::Mkv => "mkv",
        }
    }
}

/// Default length of an MP4 fragment: what a crash of the process may cost.
pub const DEFAULT_FRAGMENT_MS: u32 = 1000;

/// An `mp4mux` writing a fragmented MP4 (`moov` first, then one `moof`+`mdat` per
/// `fragment_ms` of stream, the index completed at the end): a file cut off by a crash or a
/// power loss still plays up to its last complete fragment. `fragment_ms` 0 = a classic
/// MP4, whose index is written only when it ends (unplayable if it never does).
pub fn mp4_muxer(fragment_ms: u32) -> Result<gst::Element, String> {
    gst::ElementFactory::make("mp4mux")
        .property("fragment-duration", fragment_ms)
        .build()
        .map_err(|_| "the GStreamer element mp4mux is not installed".to_string())
}

/// Where and how a camera's recordings are written.
#[derive(Debug, Clone)]
pub struct Options {
    pub dir: PathBuf,
    pub prefix: String,
    pub camera_id: String,
    pub container: Container,
    /// MP4 fragment length in milliseconds (0 = not fragmented), see [`mp4_muxer`].
    pub fragment_ms: u32,
}

/// The file name of a recording that starts at wall-clock `at`:
/// `<prefix><camera>-<YYYYMMDD>T<HHMMSS>.<mmm>Z.<ext>`.
pub fn file_name(prefix: &str, camera_id: &str, at: SystemTime, container: Container) -> String {
    let stamp: String = humantime::format_rfc3339_millis(at)
        .to_string()
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect();
    format!("{prefix}{camera_id}-{stamp}.{}", container.extension())
}

/// A file path in `dir` for `name` that does not exist yet (`-1`, `-2`… appended).
fn unused_path(dir: &Path, name: &str) -> PathBuf {
    let first = dir.join(name);
    if !first.exists() {
        return first;
    }
    let (stem, ext) = name.rsplit_once('.').unwrap_or((name, ""));
    (1..)
        .map(|i| dir.join(format!("{stem}-{i}.{ext}")))
        .find(|p| !p.exists())
        .unwrap_or(first)
}

/// State of a recording in an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordingState {
    Started,
    Finished,
    Failed,
}

impl RecordingState {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordingState::Started => "started",
            RecordingState::Finished => "finished",
            RecordingState::Failed => "failed",
        }
    }
}

/// A recording started, finished or failed.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordingEvent {
    /// Number of the recording within the camera, from 0.
    pub id: u64,
    pub camera_id: String,
    pub state: RecordingState,
    pub location: String,
    /// `signal`, `api` or `rule:<name>`.
    pub trigger: String,
    /// Wall clock of the first frame in the file (RFC 3339 UTC).
    pub start_time: String,
    /// Wall clock of the end of the file (finished and failed).
    pub end_time: Option<String>,
    /// Stream time in the file (0 when it started).
    pub duration_ns: u64,
    /// Why it failed, or why it ended before its end time.
    pub reason: Option<String>,
}

impl RecordingEvent {
    /// A recording of `camera_id` that could not start.
    pub fn failed(camera_id: &str, trigger: &str, reason: &str) -> Self {
        RecordingEvent {
            id: 0,
            camera_id: camera_id.to_owned(),
            state: RecordingState::Failed,
            location: String::new(),
            trigger: trigger.to_owned(),
            start_time: wall(SystemTime::now()),
            end_time: None,
            duration_ns: 0,
            reason: Some(reason.to_owned()),
        }
    }

    /// The `trtcamsrc-recording` element message structure.
    pub fn structure(&self) -> gst::Structure {
        let mut s = gst::Structure::builder(RECORDING_MESSAGE)
            .field("camera-id", &self.camera_id)
            .field("recording-id", self.id)
            .field("state", self.state.as_str())
            .field("location", &self.location)
            .field("trigger", &self.trigger)
            .field("start-time", &self.start_time)
            .field("duration-ns", self.duration_ns)
            .build();
        if let Some(e) = &self.end_time {
            s.set("end-time", e);
        }
        if let Some(r) = &self.reason {
            s.set("reason", r);
        }
        s
    }

    /// Reads a `trtcamsrc-recording` structure back.
    pub fn from_structure(s: &gst::StructureRef) -> Option<Self> {
        if s.name() != RECORDING_MESSAGE {
            return None;
        }
        let state = match s.get::<String>("state").ok()?.as_str() {
            "started" => RecordingState::Started,
            "finished" => RecordingState::Finished,
            "failed" => RecordingState::Failed,
            _ => return None,
        };
        Some(RecordingEvent {
            id: s.get("recording-id").ok()?,
            camera_id: s.get("camera-id").ok()?,
            state,
            location: s.get("location").ok()?,
            trigger: s.get("trigger").ok()?,
            start_time: s.get("start-time").ok()?,
            end_time: s.get("end-time").ok(),
            duration_ns: s.get("duration-ns").ok()?,
            reason: s.get("reason").ok(),
        })
    }
}

/// Receives the events of finalised recordings (from the finalising thread).
pub type Notify = Arc<dyn Fn(RecordingEvent) + Send + Sync>;

/// A recording request.
#[derive(Debug, Clone)]
pub struct Request {
    pub before: Duration,
    pub after: Duration,
    pub trigger: String,
}

struct Active {
    event: RecordingEvent,
    writer: Writer,
    caps: gst::Caps,
    /// Stream time of the first unit in the file and of the end of the newest one.
    first: u64,
    last_end: u64,
    /// Stream time at which the recording ends.
    end: u64,
    start_wall: SystemTime,
}

/// Ring and running recording of one camera.
pub struct Recorder {
    ring: Ring,
    active: Option<Active>,
    next_id: u64,
    max_bytes: usize,
    notify: Notify,
    /// Threads finalising ended recordings.
    finishing: Vec<std::thread::JoinHandle<()>>,
    /// Units without timestamps (codec headers a parser sends on their own), joined to the
    /// next unit.
    pending: Option<gst::Buffer>,
}

fn wall(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

impl Recorder {
    /// A recorder keeping `buffer` of stream time and at most `max_bytes`.
    pub fn new(buffer: Duration, max_bytes: usize, notify: Notify) -> Self {
        Recorder {
            ring: Ring::new(gst::ClockTime::from_nseconds(buffer.as_nanos() as u64), max_bytes),
            active: None,
            next_id: 0,
            max_bytes,
            notify,
            finishing: Vec::new(),
            pending: None,
        }
    }

    /// The ring (for inspection).
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// Location of the running recording.
    pub fn active(&self) -> Option<&str> {
        self.active.as_ref().map(|a| a.event.location.as_str())
    }

    /// One parsed access unit of the camera.
    pub fn push(&mut self, buffer: &gst::Buffer, caps: &gst::Caps) {
        if buffer.pts().is_none() && buffer.dts().is_none() {
            // Headers (SPS/PPS/SEI) without a time of their own belong to the next unit.
            self.pending = Some(match self.pending.take() {
                Some(mut p) => {
                    p.append(buffer.clone());
                    p
                }
                None => buffer.clone(),
            });
            return;
        }
        let joined;
        let buffer = match self.pending.take() {
            Some(mut b) => {
                b.append(buffer.clone());
                {
                    let m = b.make_mut();
                    m.set_pts(buffer.pts());
                    m.set_dts(buffer.dts());
                    m.set_duration(buffer.duration());
                    m.set_flags(buffer.flags());
                }
                joined = b;
                &joined
            }
            None => buffer,
        };
        let fallback = self.ring.newest().unwrap_or(0);
        let unit = Unit::new(buffer.clone(), fallback);
        let (time, duration) = (unit.time, buffer.duration().map_or(0, |d| d.nseconds()));
        let pushed = self.ring.push(unit, caps);
        let Some(a) = self.active.as_mut() else { return };
        if a.caps != *caps {
            self.finish(Some("the camera's stream changed format".into()));
            return;
        }
        if pushed == Pushed::BeforeKeyframe {
            return;
        }
        if time >= a.end {
            self.finish(None);
            return;
        }
        a.writer.push(buffer);
        a.last_end = a.last_end.max(time + duration.max(1));
        if let Some(f) = a.writer.failure() {
            let f = f.to_owned();
            self.finish(Some(f));
        }
    }

    /// Starts a recording (or extends the running one); returns its event (`started` for a
    /// new file, the running one's otherwise) and whether it is new, or the `failed` event.
    #[allow(clippy::result_large_err)] // built once per request, never on the hot path
    pub fn start(&mut self, req: &Request, opts: &Options) -> Result<(RecordingEvent, bool), RecordingEvent> {
        self.start_inner(req, opts).map_err(|(id, location, reason)| {
            let mut e = RecordingEvent::failed(&opts.camera_id, &req.trigger, &reason);
            e.id = id;
            e.location = location;
            e
        })
    }

    /// Threads still finalising files (to join without holding the recorder).
    pub fn take_finishing(&mut self) -> Vec<std::thread::JoinHandle<()>> {
        self.finishing.retain(|t| !t.is_finished());
        std::mem::take(&mut self.finishing)
    }

    #[allow(clippy::type_complexity)]
    fn start_inner(
        &mut self,
        req: &Request,
        opts: &Options,
    ) -> Result<(RecordingEvent, bool), (u64, String, String)> {
        let none = |m: &str| (self.next_id, String::new(), m.to_owned());
        let newest = self
            .ring
            .newest()
            .ok_or_else(|| none("no keyframe has been received from the camera yet"))?;
        let end = newest.saturating_add(req.after.as_nanos() as u64);
        if let Some(a) = self.active.as_mut() {
            a.end = a.end.max(end);
            return Ok((a.event.clone(), false));
        }
        let from = self
            .ring
            .start_for(gst::ClockTime::from_nseconds(req.before.as_nanos() as u64))
            .ok_or_else(|| none("no keyframe has been received from the camera yet"))?;
        let first_gop = self
            .ring
            .from(from)
            .next()
            .ok_or_else(|| none("the history is empty"))?;
        let caps = first_gop.caps.clone();
        let first = first_gop.start();
        let now = SystemTime::now();
        let start_wall = now
            .checked_sub(Duration::from_nanos(newest.saturating_sub(first)))
            .unwrap_or(now);
        std::fs::create_dir_all(&opts.dir).map_err(|e| {
            none(&format!(
                "cannot create the recording folder {}: {e}",
                opts.dir.display()
            ))
        })?;
        let name = file_name(&opts.prefix, &opts.camera_id, start_wall, opts.container);
        let location = unused_path(&opts.dir, &name);
        let id = self.next_id;
        self.next_id += 1;
        let event = RecordingEvent {
            id,
            camera_id: opts.camera_id.clone(),
            state: RecordingState::Started,
            location: location.display().to_string(),
            trigger: req.trigger.clone(),
            start_time: wall(start_wall),
            end_time: None,
            duration_ns: 0,
            reason: None,
        };
        let mut writer = Writer::start(&caps, &location, opts, self.max_bytes as u64)
            .map_err(|e| (id, event.location.clone(), e))?;
        let mut last_end = first;
        for g in self.ring.from(from).filter(|g| g.caps == caps) {
            for u in &g.units {
                writer.push(&u.buffer);
                let d = u.buffer.duration().map_or(1, |d| d.nseconds().max(1));
                last_end = last_end.max(u.time + d);
            }
        }
        self.active = Some(Active {
            event: event.clone(),
            writer,
            caps,
            first,
            last_end,
            end,
            start_wall,
        });
        Ok((event, true))
    }

    /// The camera dropped (or stops): the running recording ends with what it has, and the
    /// history (of a connection that is gone) is cleared.
    pub fn interrupt(&mut self, reason: &str) {
        if self.active.is_some() {
            self.finish(Some(reason.to_owned()));
        }
        self.ring.clear();
        self.pending = None;
    }

    /// Ends the running recording: EOS into its writer, finalised on a thread that then
    /// sends the `finished` (or `failed`) event.
    fn finish(&mut self, reason: Option<String>) {
        let Some(a) = self.active.take() else { return };
        let notify = self.notify.clone();
        let duration = a.last_end.saturating_sub(a.first);
        let mut event = a.event;
        event.duration_ns = duration;
        event.end_time = Some(wall(a.start_wall + Duration::from_nanos(duration)));
        event.reason = reason;
        let writer = a.writer;
        let spawned = std::thread::Builder::new()
            .name("trtvision-rec-finish".into())
            .spawn(move || {
                match writer.finish() {
                    Ok(()) => event.state = RecordingState::Finished,
                    Err(e) => {
                        event.state = RecordingState::Failed;
                        event.reason = Some(e);
                    }
                }
                notify(event);
            });
        match spawned {
            Ok(t) => self.finishing.push(t),
            Err(e) => gst::error!(gst::CAT_DEFAULT, "cannot finalise a recording: {e}"),
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.finish(Some("the camera stopped".into()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_carry_camera_and_wall_clock() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_765_000_000_123);
        let n = file_name("rec-", "door", t, Container::Mp4);
        assert_eq!(n, "rec-door-20251206T054640.123Z.mp4");
        assert!(file_name("", "c", t, Container::Mkv).ends_with(".mkv"));
        let dir = std::env::temp_dir().join(format!("trtvision-rec-names-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.mp4"), b"").unwrap();
        assert_eq!(unused_path(&dir, "a.mp4"), dir.join("a-1.mp4"));
        assert_eq!(unused_path(&dir, "b.mp4"), dir.join("b.mp4"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn event_structure_round_trips() {
        gst::init().unwrap();
        let e = RecordingEvent {
            id: 3,
            camera_id: "cam".into(),
            state: RecordingState::Finished,
            location: "/r/a.mp4".into(),
            trigger: "rule:person".into(),
            start_time: "2026-12-07T14:00:00.000Z".into(),
            end_time: Some("2026-12-07T14:00:04.000Z".into()),
            duration_ns: 4_000_000_000,
            reason: None,
        };
        let s = e.structure();
        assert_eq!(s.name(), RECORDING_MESSAGE);
        assert_eq!(RecordingEvent::from_structure(&s), Some(e));
    }
}
