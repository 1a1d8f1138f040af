//! ONNX Runtime's own log lines reach GStreamer's debug log: with `trtvision-ort` at
//! DEBUG (as `GST_DEBUG=trtvision-ort:5` sets it), ONNX Runtime's session-creation lines
//! (its C++ logger, verbose and info) appear in that category naming the trtinfer element
//! of the session, and the `ort` crate's own events (through `tracing`, e.g. loading the
//! library) appear there too. One test in its own process: the library is loaded here
//! first.

mod common;

use std::sync::{Arc, Mutex};

/// (level, object shown, message) of each `trtvision-ort` line.
type Lines = Arc<Mutex<Vec<(gst::DebugLevel, Option<String>, String)>>>;

#[test]
fn onnxruntime_lines_reach_the_gstreamer_log() {
    common::model("shapes-yolo.onnx");
    if !gsttrtvision::skip::have_ort() {
        return;
    }
    common::init();
    let lines: Lines = Arc::default();
    let seen = lines.clone();
    gst::log::set_threshold_for_name("trtvision-ort", gst::DebugLevel::Debug);
    gst::log::set_active(true);
    gst::log::remove_default_log_function();
    let id = gst::log::add_log_function(move |cat, level, _file, _func, _line, obj, msg| {
        if cat.name() == "trtvision-ort" {
            let text = msg.get().map(|m| m.to_string()).unwrap_or_default();
            seen.lock()
                .unwrap()
                .push((level, obj.map(|o| o.to_string()), text));
        }
    });
    let model = common::cfg("shapes-yolo.toml");
    let p = common::parse(&format!(
        "trtmux name=m batch-size=1 ! trtpreprocess config-file={model} \
         ! trtinfer name=logged model={model} backend=onnxruntime-cpu ! fakesink \
         trtscenesrc camera=0 num-buffers=2 ! video/x-raw,format=NV12,width=320,height=240 ! m.sink_0"
    ));
    let r = common::run_to_end(&p, gst::ClockTime::from_seconds(120));
    gst::log::remove_log_function(id);
    r.expect("the pipeline runs");
    let lines = lines.lock().unwrap();
    let runtime: Vec<_> = lines
        .iter()
        .filter(|(_, _, t)| t.starts_with("onnxruntime: "))
        .collect();
    assert!(
        runtime
            .iter()
            .any(|(level, obj, _)| *level == gst::DebugLevel::Debug
                && obj.as_deref().is_some_and(|o| o.contains("logged"))),
        "no verbose ONNX Runtime line of the session names the element: {runtime:#?}"
    );
    assert!(
        runtime
            .iter()
            .any(|(_, _, t)| t.to_ascii_lowercase().contains("session")),
        "no session-creation line: {runtime:#?}"
    );
    let crate_events: Vec<_> = lines.iter().filter(|(_, _, t)| t.starts_with("ort: ")).collect();
    assert!(
        crate_events
            .iter()
            .any(|(level, _, t)| *level == gst::DebugLevel::Info && t.contains("Loaded ONNX Runtime")),
        "the ort crate's library-loading event is missing: {crate_events:#?}"
    );
}
