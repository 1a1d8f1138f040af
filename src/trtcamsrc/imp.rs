//! Behaviour of `trtcamsrc`.
//!
//! The bin holds one persistent `appsrc` behind its `src` ghost pad and, per connection, a
//! `session` bin: source by URI scheme (`rtspsrc`, `urisourcebin`) → `parsebin` →
//! decoder (NVDEC into CUDA memory or software) → NV12 → `appsink`. The appsink hands each
//! frame, restamped onto one monotonic timeline ([`crate::live::Restamp`]), to the appsrc,
//! so a session can be torn down and rebuilt while downstream keeps its pad, caps and
//! segment. A controller thread owns the sessions: it reconnects after an inner error (the
//! ERROR message is caught in `handle_message` and never reaches the pipeline), after the
//! end of a live stream and after a stall, with exponential backoff, and posts
//! `trtcamsrc-status` element messages. After the last allowed attempt the camera posts
//! `failed` and ends its stream with EOS.

use super::{Decoder, Protocols};
use crate::live::{Backoff, FrameTimeouts, Restamp, Secrets};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use std::sync::mpsc;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "trtcamsrc",
        gst::DebugColorFlags::empty(),
        Some("trtvision camera source"),
    )
});

pub const STATUS_MESSAGE: &str = "trtcamsrc-status";

const DEFAULT_LATENCY_MS: u32 = 200;
const DEFAULT_STALL_MS: u32 = 5000;
const DEFAULT_CONNECT_MS: u32 = 20000;
const DEFAULT_RECONNECT_MS: u32 = 1000;
const DEFAULT_MAX_RECONNECT_MS: u32 = 30000;
const DEFAULT_ATTEMPTS: i32 = -1;
/// Frames the output queue holds before dropping the oldest (downstream slower than the
/// camera): a live camera never waits for its consumer.
const OUTPUT_QUEUE_FRAMES: u64 = 30;

#[derive(Debug, Clone)]
pub(super) struct Settings {
    uri: Option<String>,
    pub(super) camera_id: String,
    latency_ms: u32,
    protocols: Protocols,
    decoder: Decoder,
    stall_ms: u32,
    connect_ms: u32,
    reconnect_ms: u32,
    max_reconnect_ms: u32,
    attempts: i32,
    user_id: Option<String>,
    user_pw: Option<String>,
    pub(super) record: super::record::RecordSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            uri: None,
            camera_id: String::new(),
            latency_ms: DEFAULT_LATENCY_MS,
            protocols: Protocols::Auto,
            decoder: Decoder::Auto,
            stall_ms: DEFAULT_STALL_MS,
            connect_ms: DEFAULT_CONNECT_MS,
            reconnect_ms: DEFAULT_RECONNECT_MS,
            max_reconnect_ms: DEFAULT_MAX_RECONNECT_MS,
            attempts: DEFAULT_ATTEMPTS,
            user_id: None,
            user_pw: None,
            record: Default::default(),
        }
    }
}

/// What the controller thread is told.
enum Command {
    /// The session numbered `.0` failed (error, end of a live stream).
    Failed(u64, String),
    /// The session numbered `.0` delivered its first frame.
    Streaming(u64),
    /// The session numbered `.0` reached the end of a finite stream (a file).
    Finished(u64),
    /// The application ended the stream (EOS sent to the element, e.g. at shutdown).
    EndOfStream,
    Stop,
}

/// Shared between the controller, the appsink callbacks and `handle_message`.
pub(super) struct Shared {
    /// Number and bin of the current session.
    session: Mutex<Option<(u64, gst::Bin)>>,
    last_frame: Mutex<Instant>,
    restamp: Mutex<Restamp>,
    last_caps: Mutex<Option<gst::Caps>>,
    /// History and running recording (event recording on).
    pub(super) recorder: Mutex<Option<crate::recording::Recorder>>,
}

struct Controller {
    tx: mpsc::Sender<Command>,
    thread: std::thread::JoinHandle<()>,
}

pub struct TrtCamSrc {
    pub(super) settings: Mutex<Settings>,
    appsrc: gst_app::AppSrc,
    pub(super) shared: Arc<Shared>,
    controller: Mutex<Option<Controller>>,
    /// Sender of the running controller, for `handle_message` and the callbacks.
    tx: Mutex<Option<mpsc::Sender<Command>>>,
    reconnects: std::sync::atomic::AtomicU32,
}

fn scheme(uri: &str) -> Option<String> {
    uri.split_once("://").map(|(s, _)| s.to_ascii_lowercase())
}

fn is_live_scheme(scheme: &str) -> bool {
    matches!(scheme, "rtsp" | "rtsps" | "rtspt" | "rtspu" | "http" | "https")
}

impl TrtCamSrc {
    fn secrets(&self) -> Secrets {
        let s = self.settings.lock().unwrap();
        Secrets::new(
            s.uri.as_deref().unwrap_or(""),
            s.user_id.as_deref(),
            s.user_pw.as_deref(),
        )
    }

    /// Posts a `trtcamsrc-status` element message (reason already free of secrets).
    fn post_status(&self, state: &str, reason: &str) {
        let camera_id = self.settings.lock().unwrap().camera_id.clone();
        let reconnects = self.reconnects.load(std::sync::atomic::Ordering::Relaxed);
        gst::info!(CAT, imp = self, "camera {camera_id}: {state} ({reason})");
        let s = gst::Structure::builder(STATUS_MESSAGE)
            .field("camera-id", camera_id)
            .field("state", state)
            .field("reason", reason)
            .field("reconnects", reconnects)
            .build();
        let _ = self
            .obj()
            .post_message(gst::message::Element::builder(s).src(&*self.obj()).build());
    }

    fn send(&self, cmd: Command) {
        if let Some(tx) = self.tx.lock().unwrap().as_ref() {
            let _ = tx.send(cmd);
        }
    }

    /// Pipeline running time now, when the bin has a clock.
    fn running_time_now(&self) -> Option<gst::ClockTime> {
        let obj = self.obj();
        let clock = obj.clock()?;
        let base = obj.base_time()?;
        clock.time().checked_sub(base)
    }

    /// Hands one decoded frame of session `number` to the output.
    fn on_sample(&self, number: u64, sample: gst::Sample) -> Result<gst::FlowSuccess, gst::FlowError> {
        let first = {
            let mut last = self.shared.last_frame.lock().unwrap();
            *last = Instant::now();
            drop(last);
            self.shared
                .session
                .lock()
                .unwrap()
                .as_ref()
                .is_some_and(|(n, _)| *n == number)
        };
        if !first {
            // A frame of a session being torn down.
            return Err(gst::FlowError::Flushing);
        }
        let Some(buffer) = sample.buffer_owned() else {
            return Ok(gst::FlowSuccess::Ok);
        };
        let segment = sample
            .segment()
            .and_then(|s| s.downcast_ref::<gst::ClockTime>().cloned());
        let rt = buffer
            .pts()
            .and_then(|pts| segment.as_ref().and_then(|s| s.to_running_time(pts)))
            .unwrap_or(gst::ClockTime::ZERO);
        let now = self.running_time_now();
        let (pts, discont, starts) = {
            let mut r = self.shared.restamp.lock().unwrap();
            let (pts, discont) = r.map(rt, buffer.duration(), now);
            (pts, discont, discont)
        };
        if starts {
            self.send(Command::Streaming(number));
        }
        if let Some(caps) = sample.caps_owned() {
            let mut last = self.shared.last_caps.lock().unwrap();
            if last.as_ref() != Some(&caps) {
                gst::debug!(CAT, imp = self, "output caps {caps}");
                self.appsrc.set_caps(Some(&caps));
                *last = Some(caps);
            }
        }
        let mut buffer = buffer;
        {
            let b = buffer.make_mut();
            b.set_pts(pts);
            b.set_dts(gst::ClockTime::NONE);
            if discont {
                b.set_flags(gst::BufferFlags::DISCONT);
            } else {
                b.unset_flags(gst::BufferFlags::DISCONT);
            }
        }
        // The output queue drops its oldest frames when full: never an error here.
        let _ = self.appsrc.push_buffer(buffer);
        Ok(gst::FlowSuccess::Ok)
    }

    /// Decoder, and the caps it must output, for parsed caps `caps`.
    fn decoder_for(&self, caps: &gst::CapsRef, choice: Decoder) -> Result<(gst::Element, gst::Caps), String> {
        let name = caps
            .structure(0)
            .map(|s| s.name().to_string())
            .unwrap_or_default();
        let (nv, sw): (&str, &[&str]) = match name.as_str() {
            "video/x-h264" => ("nvh264dec", &["avdec_h264", "openh264dec"]),
            "video/x-h265" => ("nvh265dec", &["avdec_h265", "libde265dec"]),
            _ => {
                return Err(format!(
                    "the camera sends {name}, which trtcamsrc cannot decode (H.264 and H.265 are supported)"
                ))
            }
        };
        let nv12 = gst_video::VideoCapsBuilder::new()
            .format(gst_video::VideoFormat::Nv12)
            .build();
        if choice != Decoder::Software {
            if let Ok(dec) = gst::ElementFactory::make(nv).build() {
                // NV12 in CUDA memory (its own caps: `nv12` is shared, so not writable).
                let cuda = gst_video::VideoCapsBuilder::new()
                    .features([crate::batch::CUDA_MEMORY_FEATURE])
                    .format(gst_video::VideoFormat::Nv12)
                    .build();
                return Ok((dec, cuda));
            }
            if choice == Decoder::Nvdec {
                return Err(format!(
                    "decoder=nvdec but {nv} is not available (no nvcodec plugin or no GPU)"
                ));
            }
        }
        sw.iter()
            .find_map(|f| gst::ElementFactory::make(f).build().ok())
            .map(|d| (d, nv12))
            .ok_or_else(|| {
                format!(
                    "no software decoder for {name} is installed (tried {})",
                    sw.join(", ")
                )
            })
    }

    /// Links a parsed video pad of session `number` to decoder → NV12 → appsink.
    fn link_parsed(&self, number: u64, session: &gst::Bin, pad: &gst::Pad) -> Result<(), String> {
        let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
        if !caps.structure(0).is_some_and(|s| s.name().starts_with("video/")) {
            // Audio or metadata streams of the camera are not used.
            let sink = gst::ElementFactory::make("fakesink")
                .property("sync", false)
                .property("async", false)
                .build()
                .map_err(|e| e.to_string())?;
            session.add(&sink).map_err(|e| e.to_string())?;
            sink.sync_state_with_parent().map_err(|e| e.to_string())?;
            pad.link(&sink.static_pad("sink").expect("fakesink has a sink pad"))
                .map_err(|e| e.to_string())?;
            return Ok(());
        }
        let choice = self.settings.lock().unwrap().decoder;
        let (decoder, out_caps) = self.decoder_for(&caps, choice)?;
        self.tap_parsed(pad);
        gst::info!(
            CAT,
            imp = self,
            "decoding {} with {}",
            caps.structure(0).map(|s| s.name().as_str()).unwrap_or("?"),
            decoder
                .factory()
                .map(|f| f.name().to_string())
                .unwrap_or_default()
        );
        let live = self
            .settings
            .lock()
            .unwrap()
            .uri
            .as_deref()
            .and_then(scheme)
            .is_some_and(|s| is_live_scheme(&s));
        let is_cuda = out_caps
            .features(0)
            .is_some_and(|f| f.contains(crate::batch::CUDA_MEMORY_FEATURE));
        let mut chain = vec![decoder];
        if !is_cuda {
            chain.push(
                gst::ElementFactory::make("videoconvert")
                    .build()
                    .map_err(|e| e.to_string())?,
            );
        }
        chain.push(
            gst::ElementFactory::make("capsfilter")
                .property("caps", &out_caps)
                .build()
                .map_err(|e| e.to_string())?,
        );
        let sink = gst_app::AppSink::builder()
            .sync(!live)
            .async_(false)
            .max_buffers(2)
            .build();
        let weak = self.obj().downgrade();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    let sample = s.pull_sample().map_err(|_| gst::FlowError::Flushing)?;
                    match weak.upgrade() {
                        Some(obj) => obj.imp().on_sample(number, sample),
                        None => Err(gst::FlowError::Flushing),
                    }
                })
                .eos({
                    let weak = self.obj().downgrade();
                    move |_| {
                        if let Some(obj) = weak.upgrade() {
                            let imp = obj.imp();
                            if live {
                                imp.send(Command::Failed(number, "the camera ended its stream".into()));
                            } else {
                                imp.send(Command::Finished(number));
                            }
                        }
                    }
                })
                .build(),
        );
        chain.push(sink.upcast());
        session.add_many(&chain).map_err(|e| e.to_string())?;
        gst::Element::link_many(&chain).map_err(|e| e.to_string())?;
        for e in chain.iter().rev() {
            e.sync_state_with_parent().map_err(|e| e.to_string())?;
        }
        let sinkpad = chain[0].static_pad("sink").expect("decoders have a sink pad");
        pad.link(&sinkpad)
            .map_err(|e| format!("cannot link the parsed stream: {e}"))?;
        Ok(())
    }

    /// Builds session `number` for the configured URI (not yet started).
    fn build_session(&self, number: u64) -> Result<gst::Bin, String> {
        let s = self.settings.lock().unwrap().clone();
        let uri = s.uri.clone().ok_or("no uri set")?;
        let scheme = scheme(&uri).ok_or("the uri has no scheme")?;
        let session = gst::Bin::with_name(&format!("session{number}"));
        self.headers_in_keyframes(&session);
        let source = if scheme.starts_with("rtsp") {
            let src = gst::ElementFactory::make("rtspsrc")
                .property("location", &uri)
                .property("latency", s.latency_ms)
                .build()
                .map_err(|e| format!("rtspsrc is missing: {e}"))?;
            match s.protocols {
                Protocols::Tcp => src.set_property_from_str("protocols", "tcp"),
                Protocols::Udp => src.set_property_from_str("protocols", "udp"),
                Protocols::Auto => {}
            }
            if let Some(u) = &s.user_id {
                src.set_property("user-id", u);
            }
            if let Some(p) = &s.user_pw {
                src.set_property("user-pw", p);
            }
            // The connection itself must not outlast a stall, nor a slow first frame.
            let tcp_timeout = u64::from(s.stall_ms.max(s.connect_ms).max(100)) * 1000;
            src.set_property("tcp-timeout", tcp_timeout);
            src.set_property("timeout", tcp_timeout);
            src
        } else {
            gst::ElementFactory::make("urisourcebin")
                .property("uri", &uri)
                .build()
                .map_err(|e| format!("urisourcebin is missing: {e}"))?
        };
        session.add(&source).map_err(|e| e.to_string())?;
        let weak = self.obj().downgrade();
        let session_weak = session.downgrade();
        source.connect_pad_added(move |_, pad| {
            let (Some(obj), Some(session)) = (weak.upgrade(), session_weak.upgrade()) else {
                return;
            };
            let imp = obj.imp();
            let res = (|| -> Result<(), String> {
                let parse = gst::ElementFactory::make("parsebin")
                    .build()
                    .map_err(|e| e.to_string())?;
                session.add(&parse).map_err(|e| e.to_string())?;
                let (weak, session_weak) = (obj.downgrade(), session.downgrade());
                parse.connect_pad_added(move |_, pad| {
                    let (Some(obj), Some(session)) = (weak.upgrade(), session_weak.upgrade()) else {
                        return;
                    };
                    if let Err(e) = obj.imp().link_parsed(number, &session, pad) {
                        obj.imp().send(Command::Failed(number, e));
                    }
                });
                parse.sync_state_with_parent().map_err(|e| e.to_string())?;
                pad.link(&parse.static_pad("sink").expect("parsebin has a sink pad"))
                    .map_err(|e| e.to_string())?;
                Ok(())
            })();
            if let Err(e) = res {
                imp.send(Command::Failed(number, e));
            }
        });
        Ok(session)
    }

    fn start_session(&self, number: u64) -> Result<(), String> {
        let session = self.build_session(number)?;
        self.shared.restamp.lock().unwrap().new_connection();
        *self.shared.last_frame.lock().unwrap() = Instant::now();
        *self.shared.session.lock().unwrap() = Some((number, session.clone()));
        self.obj().add(&session).map_err(|e| e.to_string())?;
        session
            .sync_state_with_parent()
            .map_err(|_| "the camera source could not start".to_string())?;
        Ok(())
    }

    fn stop_session(&self) {
        let Some((_, session)) = self.shared.session.lock().unwrap().take() else {
            return;
        };
        let _ = session.set_state(gst::State::Null);
        let _ = self.obj().remove(&session);
    }

    /// The application ended the stream: no reconnect after this; the running recording is
    /// finalised (and its message posted) before the EOS goes downstream.
    fn end_by_application(&self) {
        self.stop_session();
        self.interrupt_recording("the pipeline ended the camera's stream");
        let _ = self.appsrc.end_of_stream();
        self.post_status("stopped", "the pipeline ended the stream");
    }

    /// The controller thread: one session at a time, reconnects with backoff, stall
    /// detection.
    fn control(&self, rx: mpsc::Receiver<Command>) {
        let s = self.settings.lock().unwrap().clone();
        let secrets = self.secrets();
        let timeouts = FrameTimeouts {
            connect: Duration::from_millis(u64::from(s.connect_ms.max(1))),
            stall: Duration::from_millis(u64::from(s.stall_ms.max(1))),
        };
        let mut backoff = Backoff::new(
            Duration::from_millis(u64::from(s.reconnect_ms)),
            Duration::from_millis(u64::from(s.max_reconnect_ms)),
        );
        let mut number = 0u64;
        let mut streaming = false;
        let mut failed = false;
        let mut ended = false;
        self.post_status(
            "connecting",
            &crate::live::redact_uri(s.uri.as_deref().unwrap_or("")),
        );
        let mut pending: Option<String> = self.start_session(number).err();
        loop {
            if let Some(reason) = pending.take() {
                let reason = secrets.redact(&reason);
                self.stop_session();
                self.interrupt_recording(&format!("the camera dropped: {reason}"));
                streaming = false;
                let wait = backoff.failed();
                if !backoff.may_retry(s.attempts) {
                    self.post_status("failed", &reason);
                    failed = true;
                    let _ = self.appsrc.end_of_stream();
                } else {
                    self.reconnects.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    self.post_status(
                        "reconnecting",
                        &format!("{reason}; next attempt in {} ms", wait.as_millis()),
                    );
                    match rx.recv_timeout(wait) {
                        Ok(Command::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
                        Ok(Command::EndOfStream) => {
                            ended = true;
                            self.end_by_application();
                            continue;
                        }
                        _ => {}
                    }
                    number += 1;
                    self.post_status(
                        "connecting",
                        &crate::live::redact_uri(s.uri.as_deref().unwrap_or("")),
                    );
                    pending = self.start_session(number).err();
                    continue;
                }
            }
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(Command::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Ok(Command::Failed(n, reason)) if n == number && !failed && !ended => pending = Some(reason),
                Ok(Command::Streaming(n)) if n == number => {
                    streaming = true;
                    backoff.reset();
                    self.post_status("streaming", "first frame received");
                }
                Ok(Command::Finished(n)) if n == number && !ended => {
                    ended = true;
                    self.interrupt_recording("the camera's stream ended");
                    let _ = self.appsrc.end_of_stream();
                }
                Ok(Command::EndOfStream) if !ended && !failed => {
                    ended = true;
                    self.end_by_application();
                }
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if failed || ended || pending.is_some() {
                continue;
            }
            // Before its first frame a connection has `connect-timeout` (opening, the first
            // keyframe and the decoder's start may take long when many cameras start at
            // once); then `stall-timeout` between frames.
            let idle = self.shared.last_frame.lock().unwrap().elapsed();
            if let Some(reason) = timeouts.expired(streaming, idle) {
                if streaming {
                    self.post_status("stalled", &reason);
                }
                pending = Some(reason);
            }
        }
        self.stop_session();
        self.interrupt_recording("the camera stopped");
    }

    fn start_controller(&self) {
        let (tx, rx) = mpsc::channel();
        *self.tx.lock().unwrap() = Some(tx.clone());
        self.reconnects.store(0, std::sync::atomic::Ordering::Relaxed);
        *self.shared.restamp.lock().unwrap() = Restamp::default();
        *self.shared.last_caps.lock().unwrap() = None;
        self.start_recorder();
        let weak = self.obj().downgrade();
        let thread = std::thread::Builder::new()
            .name("trtcamsrc-ctl".into())
            .spawn(move || {
                if let Some(obj) = weak.upgrade() {
                    obj.imp().control(rx);
                }
            })
            .expect("a thread can be spawned");
        *self.controller.lock().unwrap() = Some(Controller { tx, thread });
    }

    fn stop_controller(&self) {
        *self.tx.lock().unwrap() = None;
        if let Some(c) = self.controller.lock().unwrap().take() {
            let _ = c.tx.send(Command::Stop);
            let _ = c.thread.join();
        }
    }

    /// Whether `obj` is the current session or inside it, and that session's number.
    fn session_of(&self, obj: &gst::Object) -> Option<u64> {
        let current = self.shared.session.lock().unwrap().clone();
        let (n, bin) = current?;
        let mut o = Some(obj.clone());
        while let Some(x) = o {
            if x == *bin.upcast_ref::<gst::Object>() {
                return Some(n);
            }
            o = x.parent();
        }
        None
    }

    fn is_in_a_session(&self, obj: &gst::Object) -> bool {
        let mut o = Some(obj.clone());
        while let Some(x) = o {
            if x.name().starts_with("session") && x.parent().as_ref() == Some(self.obj().upcast_ref()) {
                return true;
            }
            o = x.parent();
        }
        false
    }
}

#[glib::object_subclass]
impl ObjectSubclass for TrtCamSrc {
    const NAME: &'static str = "GstTrtCamSrc";
    type Type = super::TrtCamSrc;
    type ParentType = gst::Bin;

    fn new() -> Self {
        let appsrc = gst_app::AppSrc::builder()
            .name("output")
            .is_live(true)
            .format(gst::Format::Time)
            .do_timestamp(false)
            .max_buffers(OUTPUT_QUEUE_FRAMES)
            .max_bytes(0)
            .max_time(gst::ClockTime::ZERO)
            .leaky_type(gst_app::AppLeakyType::Downstream)
            .build();
        Self {
            settings: Mutex::new(Settings::default()),
            appsrc,
            shared: Arc::new(Shared {
                session: Mutex::new(None),
                last_frame: Mutex::new(Instant::now()),
                restamp: Mutex::new(Restamp::default()),
                last_caps: Mutex::new(None),
                recorder: Mutex::new(None),
            }),
            controller: Mutex::new(None),
            tx: Mutex::new(None),
            reconnects: std::sync::atomic::AtomicU32::new(0),
        }
    }
}

impl ObjectImpl for TrtCamSrc {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("uri")
                    .nick("URI")
                    .blurb("Camera URI: rtsp://, rtsps://, http(s):// or file:// (credentials in it never appear in logs or messages)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("camera-id")
                    .nick("Camera id")
                    .blurb("Name of the camera in status messages")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("latency")
                    .nick("Latency")
                    .blurb("RTSP jitter buffer in milliseconds")
                    .default_value(DEFAULT_LATENCY_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("protocols", Protocols::Auto)
                    .nick("Protocols")
                    .blurb("RTSP lower transport")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("decoder", Decoder::Auto)
                    .nick("Decoder")
                    .blurb("NVDEC into CUDA memory, a software decoder, or NVDEC when available")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("stall-timeout")
                    .nick("Stall timeout")
                    .blurb("Milliseconds without a frame, once the camera streams, before it reconnects")
                    .minimum(1)
                    .default_value(DEFAULT_STALL_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("connect-timeout")
                    .nick("Connect timeout")
                    .blurb("Milliseconds a connection may take to deliver its first frame (connecting, first keyframe, decoder start) before the camera reconnects")
                    .minimum(1)
                    .default_value(DEFAULT_CONNECT_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("reconnect-interval")
                    .nick("Reconnect interval")
                    .blurb("Milliseconds before the first reconnect attempt; doubled after each failed attempt")
                    .default_value(DEFAULT_RECONNECT_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("max-reconnect-interval")
                    .nick("Maximum reconnect interval")
                    .blurb("Largest wait between reconnect attempts, in milliseconds")
                    .default_value(DEFAULT_MAX_RECONNECT_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecInt::builder("reconnect-attempts")
                    .nick("Reconnect attempts")
                    .blurb("Reconnect attempts after a failure before the camera gives up (posts failed and ends its stream); -1 = for ever")
                    .minimum(-1)
                    .default_value(DEFAULT_ATTEMPTS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("user-id")
                    .nick("User id")
                    .blurb("RTSP user name (never logged)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("user-pw")
                    .nick("User password")
                    .blurb("RTSP password (never logged)")
                    .mutable_ready()
                    .build(),
            ]
            .into_iter()
            .chain(super::record::properties())
            .collect()
        });
        PROPS.as_ref()
    }

    fn signals() -> &'static [glib::subclass::Signal] {
        static SIGNALS: LazyLock<Vec<glib::subclass::Signal>> = LazyLock::new(super::record::signals);
        SIGNALS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap();
        match pspec.name() {
            "uri" => s.uri = value.get().expect("type checked upstream"),
            "camera-id" => {
                s.camera_id = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .unwrap_or_default()
            }
            "latency" => s.latency_ms = value.get().expect("type checked upstream"),
            "protocols" => s.protocols = value.get().expect("type checked upstream"),
            "decoder" => s.decoder = value.get().expect("type checked upstream"),
            "stall-timeout" => s.stall_ms = value.get().expect("type checked upstream"),
            "connect-timeout" => s.connect_ms = value.get().expect("type checked upstream"),
            "reconnect-interval" => s.reconnect_ms = value.get().expect("type checked upstream"),
            "max-reconnect-interval" => s.max_reconnect_ms = value.get().expect("type checked upstream"),
            "reconnect-attempts" => s.attempts = value.get().expect("type checked upstream"),
            "user-id" => s.user_id = value.get().expect("type checked upstream"),
            "user-pw" => s.user_pw = value.get().expect("type checked upstream"),
            name if super::record::set_property(&mut s.record, name, value) => {}
            _ => unreachable!("unknown property {}", pspec.name()),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap();
        match pspec.name() {
            "uri" => s.uri.to_value(),
            "camera-id" => s.camera_id.to_value(),
            "latency" => s.latency_ms.to_value(),
            "protocols" => s.protocols.to_value(),
            "decoder" => s.decoder.to_value(),
            "stall-timeout" => s.stall_ms.to_value(),
            "connect-timeout" => s.connect_ms.to_value(),
            "reconnect-interval" => s.reconnect_ms.to_value(),
            "max-reconnect-interval" => s.max_reconnect_ms.to_value(),
            "reconnect-attempts" => s.attempts.to_value(),
            // Write-only in effect: reading a secret back gives nothing.
            "user-id" | "user-pw" => None::<String>.to_value(),
            name => super::record::property(&s.record, name)
                .unwrap_or_else(|| unreachable!("unknown property {name}")),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.add(&self.appsrc).expect("adding the output appsrc");
        let target = self.appsrc.static_pad("src").expect("appsrc has a src pad");
        let templ = obj.pad_template("src").expect("template exists");
        let ghost = gst::GhostPad::builder_from_template_with_target(&templ, &target)
            .expect("ghost pad targets the appsrc")
            .name("src")
            .build();
        obj.add_pad(&ghost).expect("adding the src pad");
        obj.set_suppressed_flags(gst::ElementFlags::SINK);
        obj.set_element_flags(gst::ElementFlags::SOURCE);
    }
}

impl GstObjectImpl for TrtCamSrc {}

impl ElementImpl for TrtCamSrc {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "TrtVision camera source",
                "Source/Video/Network",
                "One camera (RTSP, HTTP or file URI) decoded to NV12, reconnecting after errors and stalls without failing the pipeline",
                "gst-trtvision developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            vec![gst::PadTemplate::new(
                "src",
                gst::PadDirection::Src,
                gst::PadPresence::Always,
                &crate::caps::frame_caps_any_memory(),
            )
            .expect("valid src template")]
        });
        TEMPLATES.as_ref()
    }

    fn send_event(&self, event: gst::Event) -> bool {
        if event.type_() == gst::EventType::Eos {
            gst::debug!(CAT, imp = self, "EOS from the application");
            return self.end_stream();
        }
        self.parent_send_event(event)
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        if transition == gst::StateChange::NullToReady {
            let s = self.settings.lock().unwrap().clone();
            let Some(uri) = s.uri.as_deref() else {
                gst::element_imp_error!(
                    self,
                    gst::ResourceError::NotFound,
                    ["trtcamsrc has no uri: set uri=rtsp://… (or http://, file://)"]
                );
                return Err(gst::StateChangeError);
            };
            if scheme(uri).is_none() {
                let shown = crate::live::redact_uri(uri);
                gst::element_imp_error!(
                    self,
                    gst::ResourceError::NotFound,
                    [
                        "trtcamsrc uri {} has no scheme: use rtsp://, rtsps://, http(s):// or file://",
                        shown
                    ]
                );
                return Err(gst::StateChangeError);
            }
        }
        if transition == gst::StateChange::PausedToReady {
            self.stop_controller();
        }
        let res = self.parent_change_state(transition)?;
        if transition == gst::StateChange::ReadyToPaused {
            self.start_controller();
        }
        Ok(res)
    }
}

impl TrtCamSrc {
    /// An EOS sent to the element (the application stopping the pipeline) ends the camera:
    /// no reconnect, the running recording is finalised, then EOS goes downstream. Without
    /// a running controller the appsrc takes it directly.
    fn end_stream(&self) -> bool {
        match self.tx.lock().unwrap().as_ref() {
            Some(tx) => tx.send(Command::EndOfStream).is_ok(),
            None => self.appsrc.end_of_stream().is_ok(),
        }
    }
}

impl BinImpl for TrtCamSrc {
    fn handle_message(&self, msg: gst::Message) {
        let from_session = msg.src().map(|s| (self.session_of(s), self.is_in_a_session(s)));
        match msg.view() {
            gst::MessageView::Error(e) => {
                if let Some((current, inside)) = from_session {
                    if inside {
                        let reason = self.secrets().redact(&e.error().to_string());
                        gst::debug!(
                            CAT,
                            imp = self,
                            "inner error: {}",
                            self.secrets().redact(&format!("{:?}", e.debug()))
                        );
                        if let Some(n) = current {
                            self.send(Command::Failed(n, reason));
                        }
                        return;
                    }
                }
                self.parent_handle_message(msg)
            }
            // The sessions' own ends, state changes and stream messages stay inside the bin.
            gst::MessageView::Eos(_)
            | gst::MessageView::AsyncDone(_)
            | gst::MessageView::AsyncStart(_)
            | gst::MessageView::StreamCollection(_)
            | gst::MessageView::StreamsSelected(_)
            | gst::MessageView::Warning(_)
                if from_session.is_some_and(|(_, inside)| inside) =>
            {
                if let gst::MessageView::Warning(w) = msg.view() {
                    gst::debug!(
                        CAT,
                        imp = self,
                        "inner warning: {}",
                        self.secrets().redact(&w.error().to_string())
                    );
                }
            }
            _ => self.parent_handle_message(msg),
        }
    }
}
