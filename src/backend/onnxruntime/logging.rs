//! ONNX Runtime's own log lines in GStreamer's debug log (category `trtvision-ort`).
//!
//! Two sources:
//! - ONNX Runtime (C++): the environment is created with a logger function that writes
//!   each line into `trtvision-ort` (verbose -> DEBUG, info -> INFO, warning -> WARNING,
//!   error and fatal -> ERROR). Every session gets a log id of its own, registered with the
//!   element it works for: its lines name that element (`obj =`) as `GST_DEBUG` prints
//!   it. ONNX Runtime drops lines below its environment level, which follows the
//!   category's threshold whenever a session is opened (`GST_DEBUG=trtvision-ort:5`: all
//!   of them).
//! - The `ort` crate (Rust): it logs through `tracing` (execution-provider registration,
//!   library loading). When the first environment is made and the process has no global
//!   `tracing` subscriber yet, one is installed that forwards events of `ort` targets into
//!   `trtvision-ort` (ERROR, WARN, INFO, DEBUG, TRACE -> the GStreamer level of that name)
//!   and drops every other event. An application with a subscriber of its own installs it
//!   before the first ONNX Runtime session; it then gets `ort`'s events itself.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};

use ort::logging::{LogLevel, LoggerFunction};

use super::CAT;
use crate::backend::LogTarget;

/// Session log ids -> the element each session works for.
static TARGETS: Mutex<Option<HashMap<String, LogTarget>>> = Mutex::new(None);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A session's registration: its log id, removed when dropped.
#[derive(Debug)]
pub(super) struct SessionLogId(String);

impl SessionLogId {
    /// A new log id for a session of `target`'s element.
    pub(super) fn new(target: &LogTarget) -> Self {
        let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let name = target
            .get()
            .map(|e| gst::prelude::GstObjectExt::name(&e).to_string())
            .unwrap_or_else(|| "session".into());
        let id = format!("{name}#{n}");
        let mut g = TARGETS.lock().unwrap_or_else(|p| p.into_inner());
        g.get_or_insert_with(HashMap::new)
            .insert(id.clone(), target.clone());
        Self(id)
    }

    pub(super) fn as_str(&self) -> &str {
        &self.0
    }
}

impl Drop for SessionLogId {
    fn drop(&mut self) {
        let mut g = TARGETS.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = g.as_mut() {
            m.remove(&self.0);
        }
    }
}

fn element_of(id: &str) -> Option<gst::Element> {
    let g = TARGETS.lock().unwrap_or_else(|p| p.into_inner());
    g.as_ref()?.get(id)?.get()
}

/// The GStreamer level of an ONNX Runtime severity.
pub(super) fn gst_level(level: LogLevel) -> gst::DebugLevel {
    match level {
        LogLevel::Verbose => gst::DebugLevel::Debug,
        LogLevel::Info => gst::DebugLevel::Info,
        LogLevel::Warning => gst::DebugLevel::Warning,
        LogLevel::Error | LogLevel::Fatal => gst::DebugLevel::Error,
    }
}

/// The lowest ONNX Runtime severity the category's threshold shows.
pub(super) fn ort_level(threshold: gst::DebugLevel) -> LogLevel {
    if threshold >= gst::DebugLevel::Debug {
        LogLevel::Verbose
    } else if threshold >= gst::DebugLevel::Info {
        LogLevel::Info
    } else if threshold >= gst::DebugLevel::Warning {
        LogLevel::Warning
    } else if threshold >= gst::DebugLevel::Error {
        LogLevel::Error
    } else {
        LogLevel::Fatal
    }
}

/// The logger function of the environment.
pub(super) fn logger() -> LoggerFunction {
    Arc::new(|level, category, id, location, message| {
        let level = gst_level(level);
        if CAT.threshold() < level {
            return;
        }
        let element = element_of(id);
        CAT.log(
            element.as_ref(),
            level,
            gst::glib::gstr!("onnxruntime"),
            location,
            0,
            format_args!("onnxruntime: [{category}] {id}: {message}"),
        );
    })
}

/// ONNX Runtime's environment level to the category's threshold now.
pub(super) fn sync_level(env: &ort::environment::Environment) {
    env.set_log_level(ort_level(CAT.threshold()));
}

/// Installs the `tracing` subscriber for `ort`'s events, once per process, unless the
/// application has set a global subscriber already.
pub(super) fn install_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let installed = tracing::dispatcher::set_global_default(tracing::Dispatch::new(OrtEvents));
        if installed.is_err() {
            gst::info!(
                CAT,
                "the application has its own tracing subscriber: the ort crate's events go there"
            );
        }
    });
}

/// The GStreamer level of a `tracing` level.
fn level_of(level: &tracing::Level) -> gst::DebugLevel {
    match *level {
        tracing::Level::ERROR => gst::DebugLevel::Error,
        tracing::Level::WARN => gst::DebugLevel::Warning,
        tracing::Level::INFO => gst::DebugLevel::Info,
        tracing::Level::DEBUG => gst::DebugLevel::Debug,
        tracing::Level::TRACE => gst::DebugLevel::Trace,
    }
}

fn is_ort(target: &str) -> bool {
    target == "ort" || target.starts_with("ort::")
}

/// Forwards the `ort` crate's events into `trtvision-ort`; spans are not kept.
struct OrtEvents;

impl tracing::Subscriber for OrtEvents {
    fn register_callsite(&self, meta: &'static tracing::Metadata<'static>) -> tracing::subscriber::Interest {
        if is_ort(meta.target()) {
            // The category's threshold may change at run time: asked again per event.
            tracing::subscriber::Interest::sometimes()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn enabled(&self, meta: &tracing::Metadata<'_>) -> bool {
        is_ort(meta.target()) && (meta.is_span() || CAT.threshold() >= level_of(meta.level()))
    }

    fn new_span(&self, _span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _span: &tracing::span::Id, _values: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _span: &tracing::span::Id, _follows: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let meta = event.metadata();
        let level = level_of(meta.level());
        if CAT.threshold() < level {
            return;
        }
        let mut text = Fields::default();
        event.record(&mut text);
        let file = meta.file().unwrap_or("ort");
        let file = gst::glib::GString::from(file);
        CAT.log(
            None::<&gst::Element>,
            level,
            file.as_gstr(),
            meta.module_path().unwrap_or("ort"),
            meta.line().unwrap_or(0),
            format_args!("ort: {}", text.0),
        );
    }

    fn enter(&self, _span: &tracing::span::Id) {}

    fn exit(&self, _span: &tracing::span::Id) {}
}

/// An event's message followed by its other fields (`name=value`).
#[derive(Default)]
struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let rest = std::mem::take(&mut self.0);
            let _ = write!(self.0, "{value:?}");
            if !rest.is_empty() {
                self.0.push(' ');
                self.0.push_str(&rest);
            }
        } else {
            if !self.0.is_empty() {
                self.0.push(' ');
            }
            let _ = write!(self.0, "{}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            if !self.0.is_empty() {
                self.0.push(' ');
            }
            let _ = write!(self.0, "{}={value}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_map_both_ways() {
        assert_eq!(gst_level(LogLevel::Verbose), gst::DebugLevel::Debug);
        assert_eq!(gst_level(LogLevel::Fatal), gst::DebugLevel::Error);
        assert_eq!(ort_level(gst::DebugLevel::Debug), LogLevel::Verbose);
        assert_eq!(ort_level(gst::DebugLevel::Trace), LogLevel::Verbose);
        assert_eq!(ort_level(gst::DebugLevel::Info), LogLevel::Info);
        assert_eq!(ort_level(gst::DebugLevel::Fixme), LogLevel::Warning);
        assert_eq!(ort_level(gst::DebugLevel::Error), LogLevel::Error);
        assert_eq!(ort_level(gst::DebugLevel::None), LogLevel::Fatal);
        assert_eq!(level_of(&tracing::Level::WARN), gst::DebugLevel::Warning);
        assert!(is_ort("ort") && is_ort("ort::ep") && !is_ort("ortho") && !is_ort("tokio"));
    }
}
