//! The service's event messages (schema trtvision-message-v1): recording started, finished
//! and failed, written as JSON lines to `[output] messages` and sent to `[output] broker`
//! (through the same sender as trtmsgbroker: bounded queue, nothing blocks the pipeline);
//! the `trtmsgbroker` that sends every frame's detections to the same broker; and the
//! `trtrecordrule` elements of `[[recording.rules]]`.

use super::config::OutputConfig;
use crate::broker::{Config as BrokerConfig, Destination, Sender};
use crate::recording::rule::RuleConfig;
use crate::recording::RecordingEvent;
use gst::prelude::*;
use std::io::Write;
use std::sync::Mutex;

/// `pipeline_id` of the service's messages.
pub const PIPELINE_ID: &str = "trtvision-serve";

/// Where the service's event messages go.
#[derive(Default)]
pub struct EventOutputs {
    file: Option<Mutex<std::fs::File>>,
    broker: Option<Sender>,
}

impl EventOutputs {
    /// Opens the configured outputs (the file is appended to).
    pub fn open(out: &OutputConfig) -> Result<Self, String> {
        let file = match &out.messages {
            Some(path) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                }
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| format!("cannot open the messages file {}: {e}", path.display()))?;
                Some(Mutex::new(f))
            }
            None => None,
        };
        let broker = match &out.broker {
            Some(uri) => {
                let mut config = BrokerConfig::new(Destination::parse(uri)?);
                // Unique per process: a second client with the same id would take over.
                config.client_id = format!("{PIPELINE_ID}-events-{}", std::process::id());
                Some(Sender::start(config, |n| {
                    gst::info!(gst::CAT_DEFAULT, "event broker: {n:?}");
                })?)
            }
            None => None,
        };
        Ok(EventOutputs { file, broker })
    }

    /// Waits until the broker acknowledged every event message, at most `timeout`; whether
    /// it did (true without a broker). The file is written unbuffered.
    pub fn flush(&self, timeout: std::time::Duration) -> bool {
        self.broker.as_ref().is_none_or(|b| b.flush(timeout))
    }

    /// Sends the message of `event` of camera `camera` (trtmux pad), `frames` frames in.
    pub fn publish(&self, camera: u32, frames: u64, event: &RecordingEvent) {
        let msg = crate::messages::recording_message(PIPELINE_ID, camera, frames, event);
        let encoded = crate::messages::encode(&msg);
        if let Some(f) = &self.file {
            let mut line = encoded.payload.clone();
            line.push(b'\n');
            if let Err(e) = f.lock().unwrap().write_all(&line) {
                gst::warning!(gst::CAT_DEFAULT, "cannot write the recording event: {e}");
            }
        }
        if let Some(b) = &self.broker {
            b.push(encoded.key, encoded.payload);
        }
    }
}

/// The `trtmsgbroker` of `[output] broker`: every frame's detections (and analytics events)
/// as schema-v1 messages, next to the service's recording events.
pub fn broker_element(uri: &str) -> Result<gst::Element, String> {
    gst::ElementFactory::make("trtmsgbroker")
        .name("broker")
        .property("uri", uri)
        .property("pipeline-id", PIPELINE_ID)
        .build()
        .map_err(|_| "the GStreamer element trtmsgbroker is not installed".to_string())
}

/// The `trtrecordrule` element of a `[[recording.rules]]` entry (named after the rule).
pub fn rule_element(rule: &RuleConfig) -> Result<gst::Element, String> {
    let e = gst::ElementFactory::make("trtrecordrule")
        .name(&rule.name)
        .property("min-confidence", rule.min_confidence)
        .property("before", rule.before)
        .property("after", rule.after)
        .property("cooldown", rule.cooldown)
        .build()
        .map_err(|_| "the GStreamer element trtrecordrule is not installed".to_string())?;
    if let Some(l) = &rule.label {
        e.set_property("label", l);
    }
    if let (Some(f), Some(z)) = (&rule.zone_file, &rule.zone) {
        e.set_property("zone-file", f.display().to_string());
        e.set_property("zone", z);
    }
    Ok(e)
}
