//! Behaviour of `trtanalytics`: configuration loading and reloading while playing, and the
//! per-batch call into [`crate::analytics`].
//!
//! Reloading: setting `config-file` while playing, or changing the file (its modification
//! time is checked at most once a second), loads it again; a file that does not load keeps
//! the previous configuration and posts a warning naming the file and the key.

use crate::analytics::{Analytics, Config};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "trtanalytics",
        gst::DebugColorFlags::empty(),
        Some("trtvision zone and line analytics"),
    )
});

/// How often the configuration file's modification time is checked.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Default)]
struct Settings {
    config_file: Option<String>,
}

struct State {
    analytics: Analytics,
    path: PathBuf,
    mtime: Option<SystemTime>,
    checked: Instant,
}

#[derive(Default)]
pub struct TrtAnalytics {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
}

#[glib::object_subclass]
impl ObjectSubclass for TrtAnalytics {
    const NAME: &'static str = "GstTrtAnalytics";
    type Type = super::TrtAnalytics;
    type ParentType = gst_base::BaseTransform;
}

fn mtime(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl TrtAnalytics {
    /// Loads `path` into the running state; a failure keeps the old configuration and
    /// posts a warning.
    fn reload(&self, state: &mut State, path: PathBuf) {
        let t = mtime(&path);
        match Config::load(&path) {
            Ok(c) => {
                gst::info!(CAT, imp = self, "loaded {}", path.display());
                state.analytics.set_config(c);
            }
            Err(e) => {
                gst::element_imp_warning!(
                    self,
                    gst::ResourceError::Settings,
                    ("Kept the previous analytics configuration: {}", e)
                );
            }
        }
        state.path = path;
        state.mtime = t;
    }
}

impl ObjectImpl for TrtAnalytics {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![glib::ParamSpecString::builder("config-file")
                .nick("Config file")
                .blurb(
                    "TOML file with per-camera zones and directed lines (docs/analytics.md); reloaded when \
                     set while playing or when the file changes; a file that does not load keeps the \
                     previous configuration and posts a warning",
                )
                .mutable_playing()
                .build()]
        });
        PROPS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        match pspec.name() {
            "config-file" => {
                let v: Option<String> = value.get().expect("type checked upstream");
                self.settings.lock().unwrap().config_file = v.clone();
                if let (Some(state), Some(path)) = (self.state.lock().unwrap().as_mut(), v) {
                    self.reload(state, PathBuf::from(path));
                }
            }
            other => unreachable!("unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        match pspec.name() {
            "config-file" => self.settings.lock().unwrap().config_file.to_value(),
            other => unreachable!("unknown property {other}"),
        }
    }
}

impl GstObjectImpl for TrtAnalytics {}

impl ElementImpl for TrtAnalytics {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "TrtVision analytics",
                "Filter/Analyzer/Video",
                "Counts objects per class in polygon zones (by mask area or box point), reports zone \
                 entry/exit, dwell time, occupancy thresholds and directed line crossings",
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

impl BaseTransformImpl for TrtAnalytics {
    const MODE: gst_base::subclass::BaseTransformMode = gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let Some(file) = self.settings.lock().unwrap().config_file.clone() else {
            return Err(gst::error_msg!(
                gst::ResourceError::Settings,
                ("trtanalytics needs config-file: a TOML file with the zones and lines of each camera")
            ));
        };
        let path = PathBuf::from(file);
        let config =
            Config::load(&path).map_err(|e| gst::error_msg!(gst::ResourceError::Settings, ("{}", e)))?;
        gst::info!(
            CAT,
            imp = self,
            "{} cameras configured from {}",
            config.cameras.len(),
            path.display()
        );
        *self.state.lock().unwrap() = Some(State {
            analytics: Analytics::new(config),
            mtime: mtime(&path),
            path,
            checked: Instant::now(),
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *self.state.lock().unwrap() = None;
        Ok(())
    }

    fn transform_ip(&self, buf: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        let mut meta = crate::transform::batch_meta(self.obj().upcast_ref(), buf)?;
        let mut guard = self.state.lock().unwrap();
        let Some(state) = guard.as_mut() else {
            return Err(gst::FlowError::Flushing);
        };
        if state.checked.elapsed() >= WATCH_INTERVAL {
            state.checked = Instant::now();
            let t = mtime(&state.path);
            if t != state.mtime {
                let path = state.path.clone();
                self.reload(state, path);
            }
        }
        let batch = meta.batch_mut();
        let tracked = batch.tracked;
        for slot in &mut batch.slots {
            let time_ns = slot
                .pts
                .and_then(|pts| slot.source.segment.to_running_time(pts))
                .map_or(0, |t| t.nseconds());
            match state
                .analytics
                .process(slot.pad_index(), time_ns, &slot.results.detections, tracked)
            {
                Ok(a) => {
                    gst::trace!(
                        CAT,
                        imp = self,
                        "camera {} frame {}: {} zone counts, {} events",
                        slot.pad_index(),
                        slot.frame_number,
                        a.zones.len(),
                        a.events.len()
                    );
                    slot.results.analytics = Some(Arc::new(a));
                }
                Err(e) => {
                    gst::element_imp_error!(self, gst::StreamError::Failed, ("{}", e));
                    return Err(gst::FlowError::Error);
                }
            }
        }
        Ok(gst::FlowSuccess::Ok)
    }
}
