//! Bad input fails with a clear error message naming the cause, never a panic or a hang.

mod common;

use gst::prelude::*;
use std::io::Write;

fn scene_sources(n: u32, frames: u32) -> String {
    (0..n)
        .map(|i| format!(" trtscenesrc camera={i} num-buffers={frames} ! video/x-raw,width=320,height=240 ! m.sink_{i}"))
        .collect()
}

/// Runs `desc` and returns the error message it must end with.
fn expect_error(desc: &str) -> String {
    common::init();
    let p = common::parse(desc);
    match common::run_to_end(&p, gst::ClockTime::from_seconds(30)) {
        Ok(()) => panic!("pipeline '{desc}' succeeded but should have failed"),
        Err(e) => {
            assert_ne!(e, "timed out", "pipeline '{desc}' hung instead of failing");
            e
        }
    }
}

fn temp_file(name: &str, contents: &[u8]) -> std::path::PathBuf {
    let p = common::temp_path("errors", name);
    std::fs::File::create(&p).unwrap().write_all(contents).unwrap();
    p
}

fn infer_chain(infer_props: &str) -> String {
    format!(
        "trtmux name=m ! trtpreprocess config-file={cfg} ! trtinfer {infer_props} ! fakesink {src}",
        cfg = common::cfg("shapes-yolo.toml"),
        src = scene_sources(2, 3)
    )
}

#[test]
fn missing_model_file() {
    let e = expect_error(&infer_chain("model=/nonexistent/model.onnx parser=yolo"));
    assert!(e.contains("/nonexistent/model.onnx"), "{e}");
    assert!(e.contains("Could not load the model"), "{e}");
}

#[test]
fn corrupt_onnx_file() {
    let f = temp_file("corrupt.onnx", b"this is not an ONNX protobuf \x00\x01\x02\xff");
    let e = expect_error(&infer_chain(&format!("model={} parser=yolo", f.display())));
    assert!(e.contains("not a valid model"), "{e}");
}

#[test]
fn truncated_onnx_file() {
    let good = std::fs::read(common::model("shapes-yolo.onnx")).unwrap();
    let f = temp_file("truncated.onnx", &good[..good.len() / 2]);
    let e = expect_error(&infer_chain(&format!("model={} parser=yolo", f.display())));
    assert!(e.contains("not a valid model"), "{e}");
}

#[test]
fn model_input_shape_does_not_match() {
    let bad = common::model("bad-shape.onnx");
    let toml = format!(
        "[model]\nname = \"shapes-yolo\"\nonnx = \"{}\"\n[input]\nwidth = 640\nheight = 640\n[output]\nparser = \"yolo\"\n",
        bad.display()
    );
    let cfg = temp_file("bad-shape.toml", toml.as_bytes());
    let e = expect_error(&infer_chain(&format!("model={}", cfg.display())));
    assert!(e.contains("does not match the preprocessing"), "{e}");
    assert!(e.contains("320"), "message names the model's input size: {e}");
}

#[test]
fn model_outputs_do_not_match_parser() {
    // A YOLO detection model decoded as DETR: the parser names the missing tensors.
    let e = expect_error(&infer_chain(&format!(
        "model={} parser=detr",
        common::model("shapes-yolo.onnx").display()
    )));
    assert!(e.contains("do not match the 'detr' parser"), "{e}");
}

#[test]
fn inference_without_preprocessing() {
    let desc = format!(
        "trtmux name=m ! trtinfer model={} ! fakesink {}",
        common::cfg("shapes-yolo.toml"),
        scene_sources(2, 2)
    );
    let e = expect_error(&desc);
    assert!(
        e.contains("no input tensor was prepared for model 'shapes-yolo'"),
        "{e}"
    );
}

#[test]
fn batch_size_zero() {
    let e = expect_error(&format!(
        "trtmux name=m batch-size=0 ! fakesink {}",
        scene_sources(2, 2)
    ));
    assert!(e.contains("batch-size is 0"), "{e}");
}

#[test]
fn unsupported_frame_caps() {
    common::init();
    // Linking fails up front, naming the caps...
    let err = gst::parse::launch(
        "trtmux name=m ! fakesink videotestsrc num-buffers=2 ! video/x-raw,format=GRAY8 ! m.sink_0",
    )
    .expect_err("GRAY8 must not link to trtmux");
    assert!(err.to_string().contains("can't handle caps"), "{err}");
    // ...and caps that only show up at run time end in a negotiation error.
    let p = common::parse(
        "appsrc name=src format=time caps=video/x-raw,format=GRAY8,width=16,height=16,framerate=30/1 ! trtmux ! fakesink",
    );
    let src = p.by_name("src").unwrap().downcast::<gst_app::AppSrc>().unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let _ = src.push_buffer(gst::Buffer::with_size(256).unwrap());
    let _ = src.end_of_stream();
    let msg = p
        .bus()
        .unwrap()
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(10),
            &[gst::MessageType::Error, gst::MessageType::Eos],
        )
        .expect("the pipeline ends");
    p.set_state(gst::State::Null).unwrap();
    match msg.view() {
        gst::MessageView::Error(e) => {
            let text = format!("{} {:?}", e.error(), e.debug());
            assert!(
                text.to_lowercase().contains("negotiat") || text.contains("not raw video"),
                "{text}"
            );
        }
        _ => panic!("GRAY8 frames must not be batched"),
    }
}

#[test]
fn batches_cannot_be_linked_into_video_elements() {
    common::init();
    // A batch into a plain video element, and plain video into a batch element.
    let mux = gst::ElementFactory::make("trtmux").build().unwrap();
    let conv = gst::ElementFactory::make("videoconvert").build().unwrap();
    let _ = mux.request_pad_simple("sink_%u").unwrap();
    assert!(mux.link(&conv).is_err(), "trtmux ! videoconvert must not link");
    let src = gst::ElementFactory::make("videotestsrc").build().unwrap();
    let pre = gst::ElementFactory::make("trtpreprocess").build().unwrap();
    assert!(
        src.link(&pre).is_err(),
        "videotestsrc ! trtpreprocess must not link"
    );
}

/// A setting the chosen backend cannot honour is a warning on the bus (a sentence naming
/// it), and the pipeline still runs to the end.
#[test]
fn cuda_graph_on_the_cpu_backend_warns_and_runs() {
    common::init();
    let cfg = common::cfg("shapes-yolo.toml");
    let p = common::parse(&infer_chain(&format!(
        "model={cfg} backend=onnxruntime-cpu cuda-graph=true"
    )));
    let warnings = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let bus = p.bus().unwrap();
    bus.enable_sync_message_emission();
    let seen = warnings.clone();
    bus.connect_sync_message(Some("warning"), move |_, msg| {
        if let gst::MessageView::Warning(w) = msg.view() {
            seen.lock().unwrap().push(w.error().to_string());
        }
    });
    common::run_to_end(&p, gst::ClockTime::from_seconds(60)).expect("the pipeline runs");
    let warnings = warnings.lock().unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("cuda-graph applies to the onnxruntime-cuda and tensorrt backends"),
        "{warnings:?}"
    );
}
