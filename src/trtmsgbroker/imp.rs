//! Behaviour of `trtmsgbroker`: properties, messages from batches or frames, the sender's
//! life cycle and its element messages.
//!
//! Element messages (on the bus, from the sender thread):
//! - `trtmsgbroker-state`: `connected` (bool), `uri` (string, credentials stripped) and,
//!   when disconnected, `reason` (string);
//! - `trtmsgbroker-dropped`: `dropped` (uint64, total so far; at most one a second).

use super::MessageKind;
use crate::batch::BatchMeta;
use crate::broker::{self, Notice, Sender};
use crate::messages::{self, FrameRef};
use crate::results::Detection;
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "trtmsgbroker",
        gst::DebugColorFlags::empty(),
        Some("trtvision message broker sink"),
    )
});

const DEFAULT_QUEUE_SIZE: u32 = 1024;
const DEFAULT_SPOOL_MAX_BYTES: u64 = 256 << 20;
const DEFAULT_FLUSH_TIMEOUT_MS: u32 = 5000;
const DEFAULT_TIMEOUT_MS: u32 = 2000;
const DEFAULT_BATCH: u32 = 64;
const DEFAULT_MAX_INFLIGHT: u32 = 256;

#[derive(Debug, Clone)]
struct Settings {
    uri: Option<String>,
    message_kind: MessageKind,
    pipeline_id: Option<String>,
    camera: u32,
    queue_size: u32,
    batch: u32,
    max_inflight: u32,
    spool_dir: Option<String>,
    spool_max_bytes: u64,
    username: Option<String>,
    password: Option<String>,
    tls_ca_file: Option<String>,
    tls_cert_file: Option<String>,
    tls_key_file: Option<String>,
    tls_insecure: bool,
    flush_timeout_ms: u32,
    timeout_ms: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            uri: None,
            message_kind: MessageKind::default(),
            pipeline_id: None,
            camera: 0,
            queue_size: DEFAULT_QUEUE_SIZE,
            batch: DEFAULT_BATCH,
            max_inflight: DEFAULT_MAX_INFLIGHT,
            spool_dir: None,
            spool_max_bytes: DEFAULT_SPOOL_MAX_BYTES,
            username: None,
            password: None,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            tls_insecure: false,
            flush_timeout_ms: DEFAULT_FLUSH_TIMEOUT_MS,
            timeout_ms: DEFAULT_TIMEOUT_MS,
        }
    }
}

/// Between start and stop.
struct State {
    /// Shared with the EOS handler, which flushes without holding the state lock.
    sender: Arc<Sender>,
    pipeline_id: String,
    kind: messages::MessageKind,
    camera: u32,
    flush_timeout: Duration,
    /// Frame size of video input (from the caps).
    size: (u32, u32),
    /// Frame counter of video input whose buffers carry no offset.
    next_frame: u64,
}

#[derive(Default)]
pub struct TrtMsgBroker {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    /// Counters kept after stop (read-only properties).
    last_counts: Mutex<(u64, u64, u64, u64)>,
}

#[glib::object_subclass]
impl ObjectSubclass for TrtMsgBroker {
    const NAME: &'static str = "GstTrtMsgBroker";
    type Type = super::TrtMsgBroker;
    type ParentType = gst_base::BaseSink;
}

fn string_prop(name: &str, nick: &str, blurb: &str) -> glib::ParamSpec {
    glib::ParamSpecString::builder(name)
        .nick(nick)
        .blurb(blurb)
        .mutable_ready()
        .build()
}

fn counter_prop(name: &str, blurb: &str) -> glib::ParamSpec {
    glib::ParamSpecUInt64::builder(name)
        .nick(name)
        .blurb(blurb)
        .read_only()
        .build()
}

impl TrtMsgBroker {
    fn counts(&self) -> (u64, u64, u64, u64) {
        match self.state.lock().unwrap().as_ref() {
            Some(s) => s.sender.counters().get(),
            None => *self.last_counts.lock().unwrap(),
        }
    }

    fn send(&self, state: &State, msgs: Vec<messages::Message>) {
        for m in &msgs {
            let e = messages::encode(m);
            state.sender.push(e.key, e.payload);
        }
        gst::trace!(CAT, imp = self, "queued {} messages", msgs.len());
    }

    /// Detections of a video frame, from its ROI metas (trtdemux).
    fn frame_detections(buffer: &gst::BufferRef) -> Vec<Detection> {
        buffer
            .iter_meta::<gst_video::VideoRegionOfInterestMeta>()
            .filter_map(|roi| {
                let s = roi.param(crate::trtdemux::roi::DETECTION_PARAM)?;
                let f = |n: &str| s.get::<f64>(n).ok().map(|v| v as f32);
                let mut d = Detection::new(
                    Arc::from(s.get::<String>("model").ok()?.as_str()),
                    s.get::<u32>("class-id").ok()?,
                    Arc::from(s.get::<String>("label").ok()?.as_str()),
                    f("confidence")?,
                    crate::geometry::BoxF::new(f("x0")?, f("y0")?, f("x1")?, f("y1")?),
                );
                d.object_id = s.get::<i64>("object-id").unwrap_or(-1);
                d.mask = crate::trtdemux::roi::read_mask(&roi);
                Some(d)
            })
            .collect()
    }

    fn notice(obj: &super::TrtMsgBroker, uri: &str, n: Notice) {
        let s = match n {
            Notice::Connected => {
                gst::info!(CAT, obj = obj, "connected to {uri}");
                gst::Structure::builder("trtmsgbroker-state")
                    .field("connected", true)
                    .field("uri", uri)
                    .build()
            }
            Notice::Disconnected(reason) => {
                gst::warning!(CAT, obj = obj, "{uri} unreachable: {reason}");
                gst::Structure::builder("trtmsgbroker-state")
                    .field("connected", false)
                    .field("uri", uri)
                    .field("reason", reason)
                    .build()
            }
            Notice::Dropped(n) => {
                gst::warning!(
                    CAT,
                    obj = obj,
                    "{n} messages dropped so far (spool full or not configured)"
                );
                gst::Structure::builder("trtmsgbroker-dropped")
                    .field("dropped", n)
                    .build()
            }
            Notice::SpoolError(e) => {
                gst::element_warning!(
                    obj,
                    gst::ResourceError::Write,
                    ("The message spool failed: {}", e)
                );
                return;
            }
        };
        let _ = obj.post_message(gst::message::Element::builder(s).src(obj).build());
    }
}

impl ObjectImpl for TrtMsgBroker {
    fn constructed(&self) {
        self.parent_constructed();
        // A message sink consumes results as they come, not at their presentation time.
        self.obj().set_sync(false);
    }

    fn properties() -> &'static [glib::ParamSpec] {
        static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                string_prop(
                    "uri",
                    "URI",
                    "Broker and destination: mqtt://host:1883/topic (?version=5 for MQTT 5), \
                     redis://host:6379/stream, nats://host:4222/subject (JetStream); mqtts://, \
                     rediss://, nats+tls:// for TLS. user:password@ is accepted and never logged",
                ),
                glib::ParamSpecEnum::builder_with_default("message-kind", MessageKind::default())
                    .nick("Message kind")
                    .blurb("Which messages are sent: per-frame messages, analytics events, or both")
                    .mutable_ready()
                    .build(),
                string_prop(
                    "pipeline-id",
                    "Pipeline id",
                    "First part of every message's idempotency key <pipeline-id>/<camera>/<frame>/<kind>/<n>; \
                     keep it stable across restarts so replays deduplicate (default: the element name)",
                ),
                glib::ParamSpecUInt::builder("camera")
                    .nick("Camera")
                    .blurb("Camera index written into messages of video input (after trtdemux); batches carry their own")
                    .default_value(0)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("queue-size")
                    .nick("Queue size")
                    .blurb("Messages held in memory while the broker is slow or down, before the spool takes them")
                    .minimum(1)
                    .maximum(1 << 20)
                    .default_value(DEFAULT_QUEUE_SIZE)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("batch")
                    .nick("Batch")
                    .blurb("Redis and NATS: messages sent per round trip to the broker (each batch is \
                            acknowledged as a whole)")
                    .minimum(1)
                    .maximum(4096)
                    .default_value(DEFAULT_BATCH)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("max-inflight")
                    .nick("Max in flight")
                    .blurb("MQTT: QoS 1 messages sent and not yet acknowledged (PUBACK), at most; each counts \
                            as sent when its own PUBACK came (an MQTT 5 broker's Receive Maximum lowers it)")
                    .minimum(1)
                    .maximum(u16::MAX as u32)
                    .default_value(DEFAULT_MAX_INFLIGHT)
                    .mutable_ready()
                    .build(),
                string_prop(
                    "spool-dir",
                    "Spool directory",
                    "Directory of the on-disk spool that keeps messages while the broker is unreachable \
                     (replayed in order; kept across restarts). Unset: no spool, a full queue drops",
                ),
                glib::ParamSpecUInt64::builder("spool-max-bytes")
                    .nick("Spool max bytes")
                    .blurb("Largest size of unsent messages in the spool; beyond it messages are dropped and counted")
                    .minimum(1)
                    .default_value(DEFAULT_SPOOL_MAX_BYTES)
                    .mutable_ready()
                    .build(),
                string_prop("username", "User name", "User name for the broker (overrides the URI's)"),
                glib::ParamSpecString::builder("password")
                    .nick("Password")
                    .blurb("Password for the broker (overrides the URI's); write-only, never logged")
                    .write_only()
                    .mutable_ready()
                    .build(),
                string_prop(
                    "tls-ca-file",
                    "TLS CA file",
                    "PEM file with the CA certificates that sign the broker's certificate; turns TLS on",
                ),
                string_prop("tls-cert-file", "TLS client certificate", "PEM client certificate (with tls-key-file)"),
                string_prop("tls-key-file", "TLS client key", "PEM private key of tls-cert-file"),
                glib::ParamSpecBoolean::builder("tls-insecure")
                    .nick("TLS insecure")
                    .blurb("Accept any broker certificate without verifying it (encrypted, but the broker is not \
                            identified): for test brokers only")
                    .default_value(false)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("flush-timeout")
                    .nick("Flush timeout")
                    .blurb("Milliseconds EOS waits for queued and spooled messages to reach the broker; what is \
                            left stays in the spool (or is dropped without one)")
                    .default_value(DEFAULT_FLUSH_TIMEOUT_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("timeout")
                    .nick("Timeout")
                    .blurb("Milliseconds one connection attempt may take, and the longest wait for the next \
                            acknowledgement while messages are in flight")
                    .minimum(10)
                    .default_value(DEFAULT_TIMEOUT_MS)
                    .mutable_ready()
                    .build(),
                counter_prop("sent", "Messages acknowledged by the broker (replayed ones included)"),
                counter_prop("spooled", "Messages written to the on-disk spool"),
                counter_prop("replayed", "Spooled messages acknowledged by the broker"),
                counter_prop("dropped", "Messages lost because the spool was full or not configured"),
            ]
        });
        PROPS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap();
        let string = || value.get::<Option<String>>().expect("type checked upstream");
        match pspec.name() {
            "uri" => {
                s.uri = string();
                if let Some(u) = &s.uri {
                    gst::debug!(CAT, imp = self, "uri set to {}", broker::redact_str(u));
                }
            }
            "message-kind" => s.message_kind = value.get().expect("type checked upstream"),
            "pipeline-id" => s.pipeline_id = string(),
            "camera" => s.camera = value.get().expect("type checked upstream"),
            "queue-size" => s.queue_size = value.get().expect("type checked upstream"),
            "batch" => s.batch = value.get().expect("type checked upstream"),
            "max-inflight" => s.max_inflight = value.get().expect("type checked upstream"),
            "spool-dir" => s.spool_dir = string(),
            "spool-max-bytes" => s.spool_max_bytes = value.get().expect("type checked upstream"),
            "username" => s.username = string(),
            "password" => s.password = string(),
            "tls-ca-file" => s.tls_ca_file = string(),
            "tls-cert-file" => s.tls_cert_file = string(),
            "tls-key-file" => s.tls_key_file = string(),
            "tls-insecure" => s.tls_insecure = value.get().expect("type checked upstream"),
            "flush-timeout" => s.flush_timeout_ms = value.get().expect("type checked upstream"),
            "timeout" => s.timeout_ms = value.get().expect("type checked upstream"),
            other => unreachable!("unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let counts = || self.counts();
        let s = self.settings.lock().unwrap().clone();
        match pspec.name() {
            "uri" => s.uri.to_value(),
            "message-kind" => s.message_kind.to_value(),
            "pipeline-id" => s.pipeline_id.to_value(),
            "camera" => s.camera.to_value(),
            "queue-size" => s.queue_size.to_value(),
            "batch" => s.batch.to_value(),
            "max-inflight" => s.max_inflight.to_value(),
            "spool-dir" => s.spool_dir.to_value(),
            "spool-max-bytes" => s.spool_max_bytes.to_value(),
            "username" => s.username.to_value(),
            "password" => None::<String>.to_value(),
            "tls-ca-file" => s.tls_ca_file.to_value(),
            "tls-cert-file" => s.tls_cert_file.to_value(),
            "tls-key-file" => s.tls_key_file.to_value(),
            "tls-insecure" => s.tls_insecure.to_value(),
            "flush-timeout" => s.flush_timeout_ms.to_value(),
            "timeout" => s.timeout_ms.to_value(),
            "sent" => counts().0.to_value(),
            "spooled" => counts().1.to_value(),
            "replayed" => counts().2.to_value(),
            "dropped" => counts().3.to_value(),
            other => unreachable!("unknown property {other}"),
        }
    }
}

impl GstObjectImpl for TrtMsgBroker {}

impl ElementImpl for TrtMsgBroker {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "TrtVision message broker",
                "Sink/Analyzer/Network",
                "Sends per-frame results and analytics events to MQTT, Redis Streams or NATS JetStream, \
                 spooling to disk while the broker is unreachable",
                "gst-trtvision developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static T: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let mut caps = crate::batch::batch_caps_any_memory();
            caps.merge(gst::Caps::builder("video/x-raw").any_features().build());
            vec![
                gst::PadTemplate::new("sink", gst::PadDirection::Sink, gst::PadPresence::Always, &caps)
                    .expect("valid sink template"),
            ]
        });
        T.as_ref()
    }
}

impl BaseSinkImpl for TrtMsgBroker {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let s = self.settings.lock().unwrap().clone();
        let Some(uri) = s.uri.as_deref() else {
            return Err(gst::error_msg!(
                gst::ResourceError::Settings,
                ("trtmsgbroker needs a broker: set uri, e.g. uri=mqtt://127.0.0.1:1883/trtvision")
            ));
        };
        let destination = broker::Destination::parse(uri).map_err(|e| {
            gst::error_msg!(gst::ResourceError::Settings, ("Invalid trtmsgbroker uri: {}", e))
        })?;
        let name = self.obj().name().to_string();
        let pipeline_id = s.pipeline_id.clone().unwrap_or_else(|| name.clone());
        let mut config = broker::Config::new(destination);
        config.credentials = broker::Credentials {
            username: s.username.clone(),
            password: s.password.clone(),
            tls_ca_file: s.tls_ca_file.as_ref().map(PathBuf::from),
            tls_cert_file: s.tls_cert_file.as_ref().map(PathBuf::from),
            tls_key_file: s.tls_key_file.as_ref().map(PathBuf::from),
            tls_insecure: s.tls_insecure,
        };
        config.client_id = format!("{pipeline_id}-{name}-{}", std::process::id());
        config.queue_size = s.queue_size as usize;
        config.batch = s.batch as usize;
        config.max_inflight = s.max_inflight as usize;
        config.spool = s.spool_dir.as_ref().map(|d| {
            let file: String = format!("{pipeline_id}-{name}")
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            (PathBuf::from(d), file)
        });
        config.spool_max_bytes = s.spool_max_bytes;
        config.timeout = Duration::from_millis(s.timeout_ms as u64);
        let redacted = config.destination.redacted();
        gst::info!(
            CAT,
            imp = self,
            "sending to {redacted} as pipeline '{pipeline_id}'"
        );
        let weak = self.obj().downgrade();
        let uri_for_notice = redacted.clone();
        let sender = Sender::start(config, move |n| {
            if let Some(obj) = weak.upgrade() {
                Self::notice(&obj, &uri_for_notice, n);
            }
        })
        .map_err(|e| {
            gst::error_msg!(
                gst::ResourceError::OpenWrite,
                ("trtmsgbroker could not start: {}", e)
            )
        })?;
        let (queued, spooled) = sender.pending();
        if spooled > 0 {
            gst::info!(
                CAT,
                imp = self,
                "{spooled} messages of an earlier run wait in the spool ({queued} queued)"
            );
        }
        *self.state.lock().unwrap() = Some(State {
            sender: Arc::new(sender),
            pipeline_id,
            kind: s.message_kind.into(),
            camera: s.camera,
            flush_timeout: Duration::from_millis(s.flush_timeout_ms as u64),
            size: (0, 0),
            next_frame: 0,
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        if let Some(state) = self.state.lock().unwrap().take() {
            // The streaming thread is gone: this is the only reference left.
            let Ok(sender) = Arc::try_unwrap(state.sender) else {
                return Ok(());
            };
            let (unsent, counts) = sender.stop();
            *self.last_counts.lock().unwrap() = counts;
            gst::info!(
                CAT,
                imp = self,
                "stopped: sent {}, spooled {}, replayed {}, dropped {}; {unsent} left unsent",
                counts.0,
                counts.1,
                counts.2,
                counts.3
            );
        }
        Ok(())
    }

    fn set_caps(&self, caps: &gst::Caps) -> Result<(), gst::LoggableError> {
        if let Ok(info) = gst_video::VideoInfo::from_caps(caps) {
            if let Some(s) = self.state.lock().unwrap().as_mut() {
                s.size = (info.width(), info.height());
            }
        }
        Ok(())
    }

    fn event(&self, event: gst::Event) -> bool {
        if let gst::EventView::Eos(_) = event.view() {
            let sender = self
                .state
                .lock()
                .unwrap()
                .as_ref()
                .map(|s| (s.sender.clone(), s.flush_timeout));
            if let Some((sender, timeout)) = sender {
                if !sender.flush(timeout) {
                    let (queued, spooled) = sender.pending();
                    gst::warning!(
                        CAT,
                        imp = self,
                        "EOS: {queued} queued and {spooled} spooled messages not acknowledged within {} ms",
                        timeout.as_millis()
                    );
                }
            }
        }
        self.parent_event(event)
    }

    fn render(&self, buffer: &gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        let mut guard = self.state.lock().unwrap();
        let Some(state) = guard.as_mut() else {
            return Err(gst::FlowError::Flushing);
        };
        let msgs = if let Some(meta) = buffer.meta::<BatchMeta>() {
            messages::batch_messages(&state.pipeline_id, state.kind, meta.batch())
        } else {
            let frame = match buffer.offset() {
                o if o != gst::ffi::GST_BUFFER_OFFSET_NONE => o,
                _ => state.next_frame,
            };
            state.next_frame = frame + 1;
            let segment = self.obj().segment();
            let running_time_ns = buffer.pts().and_then(|pts| {
                segment
                    .downcast_ref::<gst::ClockTime>()
                    .and_then(|s| s.to_running_time(pts))
                    .map(|t| t.nseconds())
            });
            let at = FrameRef {
                camera: state.camera,
                frame,
                pts_ns: buffer.pts().map(|t| t.nseconds()),
                running_time_ns,
            };
            messages::frame_messages(
                &state.pipeline_id,
                state.kind,
                &at,
                state.size,
                &Self::frame_detections(buffer),
                &[],
                &[],
            )
        };
        self.send(state, msgs);
        let (sent, _, _, dropped) = state.sender.counters().get();
        gst::log!(CAT, imp = self, "sent {sent}, dropped {dropped}");
        drop(guard);
        Ok(gst::FlowSuccess::Ok)
    }
}
