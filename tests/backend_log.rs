//! Backend log lines name their element: with two trtinfer elements in one pipeline, the
//! ONNX Runtime backend's lines (debug category `trtvision-ort`) carry each element as
//! their object, as `GST_DEBUG` prints it; so do the encoder's and decoder's lines of a
//! prompt-segmentation trtinfer.

mod common;

use std::sync::{Arc, Mutex};

/// Lines of the backend category: (the object displayed, the message).
type Lines = Arc<Mutex<Vec<(Option<String>, String)>>>;

/// Runs `desc` to its end with the `trtvision-ort` lines up to INFO captured.
fn backend_lines(desc: &str) -> Vec<(Option<String>, String)> {
    common::init();
    let lines: Lines = Arc::default();
    let seen = lines.clone();
    gst::log::set_threshold_for_name("trtvision-ort", gst::DebugLevel::Info);
    gst::log::set_active(true);
    gst::log::remove_default_log_function();
    let id = gst::log::add_log_function(move |cat, level, _file, _func, _line, obj, msg| {
        if cat.name() == "trtvision-ort" && level <= gst::DebugLevel::Info {
            // Displayed as GST_DEBUG prints it: the element's name.
            let name = obj.map(|o| o.to_string());
            let text = msg.get().map(|m| m.to_string()).unwrap_or_default();
            seen.lock().unwrap().push((name, text));
        }
    });
    let p = common::parse(desc);
    let r = common::run_to_end(&p, gst::ClockTime::from_seconds(120));
    gst::log::remove_log_function(id);
    r.expect("the pipeline runs");
    let lines = lines.lock().unwrap().clone();
    lines
}

#[test]
fn backend_lines_carry_their_element() {
    common::model("shapes-yolo.onnx");
    if !gsttrtvision::skip::have_ort() {
        return;
    }
    let model = common::cfg("shapes-yolo.toml");
    let lines = backend_lines(&format!(
        "trtmux name=m batch-size=1 ! trtpreprocess config-file={model} \
         ! trtinfer name=first-model model={model} backend=onnxruntime-cpu keep-input=true \
         ! trtinfer name=second-model model={model} backend=onnxruntime-cpu \
         ! fakesink trtscenesrc camera=0 num-buffers=2 ! video/x-raw,format=NV12,width=320,height=240 ! m.sink_0"
    ));
    for element in ["first-model", "second-model"] {
        assert!(
            lines
                .iter()
                .any(|(obj, text)| obj.as_deref().is_some_and(|o| o.contains(element))
                    && text.contains("loaded")),
            "no backend line names {element}: {lines:?}"
        );
    }
    assert_backend_lines_name_an_element(&lines);
}

#[test]
fn promptseg_encoder_and_decoder_lines_carry_their_element() {
    common::model("promptseg-tiny-encoder.onnx");
    common::model("promptseg-tiny-decoder.onnx");
    if !gsttrtvision::skip::have_ort() {
        return;
    }
    let cfg = common::cfg("promptseg-tiny.toml");
    let lines = backend_lines(&format!(
        "trtscenesrc num-buffers=2 ! video/x-raw,format=RGB,width=320,height=240 ! trtmux batch-size=1 \
         ! trtpreprocess config-file={cfg} ! trtinfer name=prompted model={cfg} ! fakesink"
    ));
    for stage in ["encoder", "decoder"] {
        assert!(
            lines.iter().any(
                |(obj, text)| obj.as_deref().is_some_and(|o| o.contains("prompted"))
                    && text.contains("loaded")
                    && text.contains(stage)
            ),
            "no {stage} line names the element: {lines:?}"
        );
    }
    assert_backend_lines_name_an_element(&lines);
}

/// Every line of the backends themselves names its element. ONNX Runtime's own logger and
/// the `ort` crate's process-wide events (library loading) are per process, not per element.
fn assert_backend_lines_name_an_element(lines: &[(Option<String>, String)]) {
    let backend: Vec<_> = lines
        .iter()
        .filter(|(_, t)| !t.starts_with("onnxruntime: ") && !t.starts_with("ort: "))
        .collect();
    assert!(
        backend.iter().all(|(obj, _)| obj.is_some()),
        "every backend line names its element: {backend:?}"
    );
}
