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
//!
//! Here: settings, properties, state changes and messages; the session bin is built in
//! `imp/session.rs`, the controller thread runs in `imp/controller.rs`, event recording
//! in `record.rs`.

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
}

mod controller;
mod session;

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
