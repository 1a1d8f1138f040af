//! Event recording in `trtcamsrc`: properties, the `record` / `record-by` action signals
//! and the tap on the parsed stream that feeds the camera's [`Recorder`].
//!
//! The tap is a buffer probe on the parsed (compressed, access-unit aligned) pad of each
//! session, before the decoder: the units are kept by reference, never copied or
//! re-encoded. A recording that runs when the connection drops ends with what it has (the
//! next connection may send another format); the history is cleared and refilled by the
//! new connection.

use super::imp::TrtCamSrc;
use crate::recording::{Container, Options, Recorder, RecordingEvent, RecordingState, Request};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

pub(super) const DEFAULT_BEFORE_S: f64 = 5.0;
pub(super) const DEFAULT_AFTER_S: f64 = 5.0;
const DEFAULT_MAX_BYTES: u64 = 64 << 20;
/// The longest history or recording interval a camera accepts, in seconds.
const MAX_SECONDS: f64 = 3600.0;

/// Recording settings.
#[derive(Debug, Clone)]
pub(super) struct RecordSettings {
    pub buffer_s: u32,
    pub max_bytes: u64,
    pub dir: Option<String>,
    pub prefix: String,
    pub container: Container,
    pub fragment_ms: u32,
    pub before_s: f64,
    pub after_s: f64,
}

impl Default for RecordSettings {
    fn default() -> Self {
        Self {
            buffer_s: 0,
            max_bytes: DEFAULT_MAX_BYTES,
            dir: None,
            prefix: String::new(),
            container: Container::Mp4,
            fragment_ms: crate::recording::DEFAULT_FRAGMENT_MS,
            before_s: DEFAULT_BEFORE_S,
            after_s: DEFAULT_AFTER_S,
        }
    }
}

pub(super) fn properties() -> Vec<glib::ParamSpec> {
    vec![
        glib::ParamSpecUInt::builder("record-buffer")
            .nick("Record buffer")
            .blurb("Seconds of the camera's compressed stream kept for event recordings (from a keyframe; 0 = event recording off)")
            .maximum(MAX_SECONDS as u32)
            .default_value(0)
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt64::builder("record-max-bytes")
            .nick("Record buffer bytes")
            .blurb("Most bytes of compressed stream kept for event recordings (whole GOPs are dropped from the front)")
            .minimum(1)
            .default_value(DEFAULT_MAX_BYTES)
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("record-dir")
            .nick("Record folder")
            .blurb("Folder of the event recordings (created when needed; default: the working directory)")
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("record-file-prefix")
            .nick("Record file prefix")
            .blurb("Start of each recording's file name: <prefix><camera-id>-<UTC date and time>.<mp4|mkv>")
            .default_value(Some(""))
            .mutable_ready()
            .build(),
        glib::ParamSpecEnum::builder_with_default("record-container", Container::Mp4)
            .nick("Record container")
            .blurb("File format of the recordings")
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("record-fragment-duration")
            .nick("Record fragment duration")
            .blurb("MP4 recordings: milliseconds of stream per fragment; a recording cut off by a crash plays up to its last fragment. 0 = one index written when the recording ends (lost if the process dies)")
            .maximum(3_600_000)
            .default_value(crate::recording::DEFAULT_FRAGMENT_MS)
            .mutable_ready()
            .build(),
        glib::ParamSpecDouble::builder("record-before")
            .nick("Record before")
            .blurb("Seconds before the event a recording starts at when the request gives a negative value")
            .minimum(0.0)
            .maximum(MAX_SECONDS)
            .default_value(DEFAULT_BEFORE_S)
            .mutable_playing()
            .build(),
        glib::ParamSpecDouble::builder("record-after")
            .nick("Record after")
            .blurb("Seconds after the event a recording lasts when the request gives a negative value")
            .minimum(0.0)
            .maximum(MAX_SECONDS)
            .default_value(DEFAULT_AFTER_S)
            .mutable_playing()
            .build(),
    ]
}

/// Sets a recording property; `false` when `name` is not one.
pub(super) fn set_property(s: &mut RecordSettings, name: &str, value: &glib::Value) -> bool {
    match name {
        "record-buffer" => s.buffer_s = value.get().expect("type checked upstream"),
        "record-max-bytes" => s.max_bytes = value.get().expect("type checked upstream"),
        "record-dir" => s.dir = value.get().expect("type checked upstream"),
        "record-file-prefix" => {
            s.prefix = value
                .get::<Option<String>>()
                .expect("type checked upstream")
                .unwrap_or_default()
        }
        "record-container" => s.container = value.get().expect("type checked upstream"),
        "record-fragment-duration" => s.fragment_ms = value.get().expect("type checked upstream"),
        "record-before" => s.before_s = value.get().expect("type checked upstream"),
        "record-after" => s.after_s = value.get().expect("type checked upstream"),
        _ => return false,
    }
    true
}

pub(super) fn property(s: &RecordSettings, name: &str) -> Option<glib::Value> {
    Some(match name {
        "record-buffer" => s.buffer_s.to_value(),
        "record-max-bytes" => s.max_bytes.to_value(),
        "record-dir" => s.dir.to_value(),
        "record-file-prefix" => s.prefix.to_value(),
        "record-container" => s.container.to_value(),
        "record-fragment-duration" => s.fragment_ms.to_value(),
        "record-before" => s.before_s.to_value(),
        "record-after" => s.after_s.to_value(),
        _ => return None,
    })
}

/// `record(before, after) -> location` and `record-by(trigger, before, after) -> location`.
pub(super) fn signals() -> Vec<glib::subclass::Signal> {
    vec![
        glib::subclass::Signal::builder("record")
            .param_types([f64::static_type(), f64::static_type()])
            .return_type::<String>()
            .action()
            .class_handler(|args| {
                let obj = args[0].get::<super::TrtCamSrc>().expect("signal target");
                let before = args[1].get::<f64>().unwrap_or(-1.0);
                let after = args[2].get::<f64>().unwrap_or(-1.0);
                Some(obj.imp().record("signal", before, after).to_value())
            })
            .build(),
        glib::subclass::Signal::builder("record-by")
            .param_types([String::static_type(), f64::static_type(), f64::static_type()])
            .return_type::<String>()
            .action()
            .class_handler(|args| {
                let obj = args[0].get::<super::TrtCamSrc>().expect("signal target");
                let trigger = args[1].get::<String>().unwrap_or_else(|_| "signal".into());
                let before = args[2].get::<f64>().unwrap_or(-1.0);
                let after = args[3].get::<f64>().unwrap_or(-1.0);
                Some(obj.imp().record(&trigger, before, after).to_value())
            })
            .build(),
    ]
}

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "trtcamsrc",
        gst::DebugColorFlags::empty(),
        Some("trtvision camera source"),
    )
});

fn seconds(v: f64, default: f64) -> Duration {
    let v = if v.is_finite() && v >= 0.0 { v } else { default };
    Duration::from_secs_f64(v.min(MAX_SECONDS))
}

impl TrtCamSrc {
    fn camera_name(&self) -> String {
        let id = self.settings.lock().unwrap().camera_id.clone();
        if id.is_empty() {
            self.obj().name().to_string()
        } else {
            id
        }
    }

    pub(super) fn post_recording(&self, event: &RecordingEvent) {
        gst::info!(
            CAT,
            imp = self,
            "recording {} of camera {}: {} ({}{})",
            event.id,
            event.camera_id,
            event.state.as_str(),
            event.location,
            event
                .reason
                .as_deref()
                .map(|r| format!(", {r}"))
                .unwrap_or_default()
        );
        let _ = self.obj().post_message(
            gst::message::Element::builder(event.structure())
                .src(&*self.obj())
                .build(),
        );
    }

    /// Makes the camera's recorder when `record-buffer` is set (at start).
    pub(super) fn start_recorder(&self) {
        let s = self.settings.lock().unwrap().record.clone();
        let recorder = (s.buffer_s > 0).then(|| {
            let weak = self.obj().downgrade();
            Recorder::new(
                Duration::from_secs(u64::from(s.buffer_s)),
                usize::try_from(s.max_bytes).unwrap_or(usize::MAX),
                std::sync::Arc::new(move |e: RecordingEvent| {
                    if let Some(obj) = weak.upgrade() {
                        obj.imp().post_recording(&e);
                    }
                }),
            )
        });
        *self.shared.recorder.lock().unwrap() = recorder;
    }

    /// Parsers keep the codec headers in every keyframe, so any GOP of the history can
    /// start a file.
    pub(super) fn headers_in_keyframes(&self, session: &gst::Bin) {
        if self.settings.lock().unwrap().record.buffer_s == 0 {
            return;
        }
        session.connect_deep_element_added(|_, _, element| {
            let is_parser = element
                .factory()
                .is_some_and(|f| matches!(f.name().as_str(), "h264parse" | "h265parse"));
            if is_parser {
                element.set_property("config-interval", -1i32);
            }
        });
    }

    /// Feeds the parsed (compressed) units of `pad` to the recorder.
    pub(super) fn tap_parsed(&self, pad: &gst::Pad) {
        if self.shared.recorder.lock().unwrap().is_none() {
            return;
        }
        let shared = self.shared.clone();
        pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            if let (Some(buffer), Some(caps)) = (info.buffer(), pad.current_caps()) {
                if let Some(r) = shared.recorder.lock().unwrap().as_mut() {
                    r.push(buffer, &caps);
                }
            }
            gst::PadProbeReturn::Ok
        });
    }

    /// The connection ended: the running recording ends with what it has; waits until its
    /// file is finalised.
    pub(super) fn interrupt_recording(&self, reason: &str) {
        let pending = {
            let mut r = self.shared.recorder.lock().unwrap();
            match r.as_mut() {
                Some(r) => {
                    r.interrupt(reason);
                    r.take_finishing()
                }
                None => Vec::new(),
            }
        };
        for t in pending {
            let _ = t.join();
        }
    }

    /// Starts or extends a recording; returns its file, or "" when none could start (a
    /// `failed` message says why).
    pub(super) fn record(&self, trigger: &str, before: f64, after: f64) -> String {
        let s = self.settings.lock().unwrap().record.clone();
        let camera_id = self.camera_name();
        let req = Request {
            before: seconds(before, s.before_s),
            after: seconds(after, s.after_s),
            trigger: trigger.to_owned(),
        };
        let opts = Options {
            dir: PathBuf::from(s.dir.as_deref().unwrap_or(".")),
            prefix: s.prefix.clone(),
            camera_id: camera_id.clone(),
            container: s.container,
            fragment_ms: s.fragment_ms,
        };
        let result = match self.shared.recorder.lock().unwrap().as_mut() {
            Some(r) => r.start(&req, &opts),
            None => Err(RecordingEvent::failed(
                &camera_id,
                trigger,
                "event recording is off: set record-buffer to the seconds of history to keep",
            )),
        };
        match result {
            Ok((event, new)) => {
                if new {
                    self.post_recording(&event);
                } else {
                    gst::info!(CAT, imp = self, "recording {} extended", event.location);
                }
                event.location
            }
            Err(event) => {
                debug_assert_eq!(event.state, RecordingState::Failed);
                self.post_recording(&event);
                String::new()
            }
        }
    }
}
