//! Behaviour of `trtrecordrule`: the rule from the properties, evaluated on every frame of
//! each batch; a trigger is handed to a worker thread that finds the camera of the trtmux
//! sink pad the frame came from (through trtmux's `sink_<n>` and the elements upstream of
//! it) and emits its `record-by` action signal with trigger `rule:<name>`. The streaming
//! thread never waits for a recording to start.

use crate::recording::rule::{Rule, RuleConfig, Trigger};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{LazyLock, Mutex};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "trtrecordrule",
        gst::DebugColorFlags::empty(),
        Some("trtvision detection rule for event recordings"),
    )
});

/// Triggers waiting for the worker; more are dropped (the cooldown makes this rare).
const QUEUE: usize = 64;

#[derive(Debug, Clone)]
struct Settings {
    rule: RuleConfig,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            rule: RuleConfig::named(""),
        }
    }
}

struct State {
    rule: Rule,
    tx: mpsc::SyncSender<Trigger>,
    worker: std::thread::JoinHandle<()>,
}

#[derive(Default)]
pub struct TrtRecordRule {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
}

#[glib::object_subclass]
impl ObjectSubclass for TrtRecordRule {
    const NAME: &'static str = "GstTrtRecordRule";
    type Type = super::TrtRecordRule;
    type ParentType = gst_base::BaseTransform;
}

/// The element upstream of `pad` that has the `record-by` signal (a trtcamsrc), following
/// single-input elements (queues, capsfilters, converters).
fn camera_upstream(pad: &gst::Pad) -> Option<gst::Element> {
    let mut peer = pad.peer()?;
    for _ in 0..32 {
        let element = peer.parent_element()?;
        if element.has_signal("record-by") {
            return Some(element);
        }
        let sinks = element.sink_pads();
        let [only] = sinks.as_slice() else { return None };
        peer = only.peer()?;
    }
    None
}

trait HasSignal {
    fn has_signal(&self, name: &str) -> bool;
}

impl HasSignal for gst::Element {
    fn has_signal(&self, name: &str) -> bool {
        glib::subclass::signal::SignalId::lookup(name, self.type_()).is_some()
    }
}

/// trtmux upstream of `pad`, through single-input elements.
fn mux_upstream(pad: &gst::Pad) -> Option<gst::Element> {
    let mut peer = pad.peer()?;
    for _ in 0..64 {
        let element = peer.parent_element()?;
        if element.factory().is_some_and(|f| f.name() == "trtmux") {
            return Some(element);
        }
        let sinks = element.sink_pads();
        let [only] = sinks.as_slice() else { return None };
        peer = only.peer()?;
    }
    None
}

impl TrtRecordRule {
    fn name(&self) -> String {
        self.obj().name().to_string()
    }

    /// Emits the recording of `t` on its camera (worker thread).
    fn fire(obj: &super::TrtRecordRule, t: &Trigger) {
        let imp = obj.imp();
        let camera = obj
            .static_pad("sink")
            .and_then(|p| mux_upstream(&p))
            .and_then(|mux| mux.static_pad(&format!("sink_{}", t.camera)))
            .and_then(|p| camera_upstream(&p));
        let Some(camera) = camera else {
            gst::warning!(
                CAT,
                imp = imp,
                "{}: source {} is not a trtcamsrc camera (no record action upstream of trtmux sink_{})",
                t.trigger,
                t.camera,
                t.camera
            );
            return;
        };
        gst::info!(
            CAT,
            imp = imp,
            "{}: {} {:.2} on source {} -> recording of {}",
            t.trigger,
            t.label,
            t.confidence,
            t.camera,
            camera.name()
        );
        let _ = camera.emit_by_name::<String>("record-by", &[&t.trigger, &t.before, &t.after]);
    }
}

impl ObjectImpl for TrtRecordRule {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("label")
                    .nick("Label")
                    .blurb("Detection label that triggers a recording (unset: any label)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecDouble::builder("min-confidence")
                    .nick("Minimum confidence")
                    .blurb("Lowest detection confidence that triggers a recording")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(0.5)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("zone-file")
                    .nick("Zone file")
                    .blurb("trtanalytics config file (TOML) holding the zone; with zone, only objects in it trigger")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("zone")
                    .nick("Zone")
                    .blurb("Name of the zone in zone-file (per camera: the camera's zone of that name)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecDouble::builder("before")
                    .nick("Before")
                    .blurb("Seconds recorded before the detection")
                    .minimum(0.0)
                    .maximum(3600.0)
                    .default_value(5.0)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecDouble::builder("after")
                    .nick("After")
                    .blurb("Seconds recorded after the detection (a new detection during a recording extends it)")
                    .minimum(0.0)
                    .maximum(3600.0)
                    .default_value(5.0)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecDouble::builder("cooldown")
                    .nick("Cooldown")
                    .blurb("Seconds (stream time) after a trigger before the same camera can trigger again")
                    .minimum(0.0)
                    .maximum(3600.0)
                    .default_value(30.0)
                    .mutable_ready()
                    .build(),
            ]
        });
        PROPS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let r = &mut self.settings.lock().unwrap().rule;
        let get = || value.get::<f64>().expect("type checked upstream");
        match pspec.name() {
            "label" => r.label = value.get().expect("type checked upstream"),
            "min-confidence" => r.min_confidence = get(),
            "zone-file" => {
                r.zone_file = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .map(PathBuf::from)
            }
            "zone" => r.zone = value.get().expect("type checked upstream"),
            "before" => r.before = get(),
            "after" => r.after = get(),
            "cooldown" => r.cooldown = get(),
            other => unreachable!("unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let r = &self.settings.lock().unwrap().rule;
        match pspec.name() {
            "label" => r.label.to_value(),
            "min-confidence" => r.min_confidence.to_value(),
            "zone-file" => r.zone_file.as_ref().map(|p| p.display().to_string()).to_value(),
            "zone" => r.zone.to_value(),
            "before" => r.before.to_value(),
            "after" => r.after.to_value(),
            "cooldown" => r.cooldown.to_value(),
            other => unreachable!("unknown property {other}"),
        }
    }
}

impl GstObjectImpl for TrtRecordRule {}

impl ElementImpl for TrtRecordRule {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "TrtVision recording rule",
                "Filter/Analyzer/Video",
                "Starts an event recording of a camera (trtcamsrc record-by) when a detection of a class, \
                 above a confidence and optionally inside a zone appears, with a cooldown per camera",
                "gst-trtvision developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static T: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(crate::transform::batch_pad_templates);
        T.as_ref()
    }
}

impl BaseTransformImpl for TrtRecordRule {
    const MODE: gst_base::subclass::BaseTransformMode = gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let mut config = self.settings.lock().unwrap().rule.clone();
        config.name = self.name();
        let rule = Rule::new(config).map_err(|e| gst::error_msg!(gst::ResourceError::Settings, ("{}", e)))?;
        let (tx, rx) = mpsc::sync_channel::<Trigger>(QUEUE);
        let weak = self.obj().downgrade();
        let worker = std::thread::Builder::new()
            .name("trtrecordrule".into())
            .spawn(move || {
                while let Ok(t) = rx.recv() {
                    let Some(obj) = weak.upgrade() else { break };
                    TrtRecordRule::fire(&obj, &t);
                }
            })
            .map_err(|e| {
                gst::error_msg!(gst::CoreError::Failed, ("cannot start the rule's thread: {}", e))
            })?;
        *self.state.lock().unwrap() = Some(State { rule, tx, worker });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        if let Some(s) = self.state.lock().unwrap().take() {
            drop(s.tx);
            let _ = s.worker.join();
        }
        Ok(())
    }

    fn transform_ip(&self, buf: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        let meta = crate::transform::batch_meta(self.obj().upcast_ref(), buf)?;
        let mut guard = self.state.lock().unwrap();
        let Some(state) = guard.as_mut() else {
            return Err(gst::FlowError::Flushing);
        };
        for slot in &meta.batch().slots {
            let time_ns = slot
                .pts
                .and_then(|pts| slot.source.segment.to_running_time(pts))
                .map_or(0, |t| t.nseconds());
            if let Some(t) = state
                .rule
                .evaluate(slot.pad_index(), time_ns, &slot.results.detections)
            {
                if state.tx.try_send(t).is_err() {
                    gst::warning!(
                        CAT,
                        imp = self,
                        "recording requests are not taken fast enough: one dropped"
                    );
                }
            }
        }
        Ok(gst::FlowSuccess::Ok)
    }
}
