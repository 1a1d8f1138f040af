//! trtinfer's statistics are readable at any time: from a sync bus handler called while
//! the element posts a message from its streaming thread, and from another thread while a
//! slow model infers a batch (bounded waits: a blocked read fails the test instead of
//! hanging it).

mod common;

use gst::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

fn pipeline(model: &str, infer_props: &str, cameras: usize, frames: u32) -> gst::Pipeline {
    common::init();
    let mut desc = format!(
        "trtmux name=m batch-size={cameras} ! trtpreprocess config-file={model} \
         ! trtinfer name=infer model={model} {infer_props} ! fakesink sync=false"
    );
    for i in 0..cameras {
        desc += &format!(
            " trtscenesrc camera={i} num-buffers={frames} ! video/x-raw,format=NV12,width=320,height=240,framerate=30/1 ! m.sink_{i}"
        );
    }
    common::parse(&desc)
}

/// Runs `p` to EOS on another thread; `Err` when it does not end within `limit`.
fn run_bounded(p: gst::Pipeline, limit: Duration) -> Result<(), String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = common::run_to_end(&p, gst::ClockTime::from_seconds(600));
        let _ = p.set_state(gst::State::Null);
        let _ = tx.send(r);
    });
    rx.recv_timeout(limit)
        .map_err(|_| format!("the pipeline did not finish within {limit:?}: a property read blocked"))?
}

#[test]
fn sync_bus_handler_reads_statistics_while_a_warning_is_posted() {
    common::model("shapes-yolo.onnx");
    if !gsttrtvision::skip::have_ort() {
        return;
    }
    // cuda-graph on the CPU provider: the backend warns, and trtinfer posts the warning
    // from its streaming thread during the first batch.
    let p = pipeline(
        &common::cfg("shapes-yolo.toml"),
        "backend=onnxruntime-cpu cuda-graph=true",
        2,
        3,
    );
    let infer = p.by_name("infer").unwrap();
    let warnings = Arc::new(AtomicU64::new(0));
    let seen = warnings.clone();
    p.bus().unwrap().set_sync_handler(move |_, msg| {
        // Read on every message, in the posting thread.
        let _: u64 = infer.property("d2h-bytes");
        let backend: Option<String> = infer.property("backend-in-use");
        if let gst::MessageView::Warning(w) = msg.view() {
            if msg.src().is_some_and(|s| s.name() == "infer") {
                assert_eq!(backend.as_deref(), Some("onnxruntime-cpu"), "{}", w.error());
                seen.fetch_add(1, Ordering::SeqCst);
            }
        }
        gst::BusSyncReply::Pass
    });
    run_bounded(p, Duration::from_secs(240)).expect("runs to the end");
    assert_eq!(warnings.load(Ordering::SeqCst), 1, "the backend's warning, once");
}

#[test]
fn statistics_are_read_without_waiting_for_a_slow_inference() {
    common::model("yolo11n.onnx");
    if !gsttrtvision::skip::have_ort() {
        return;
    }
    // YOLO11n at 640x640 on the CPU, 4 frames a batch: each inference takes far longer
    // than a property read may.
    let p = pipeline(
        &common::cfg("yolo11n.toml"),
        "backend=onnxruntime-cpu threads=1",
        4,
        2,
    );
    let infer = p.by_name("infer").unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let (stop, slowest) = (done.clone(), Arc::new(AtomicU64::new(0)));
    let worst = slowest.clone();
    let reads = Arc::new(AtomicU64::new(0));
    let count = reads.clone();
    let poller = std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            let t = Instant::now();
            let _: u64 = infer.property("d2h-bytes");
            let _: Option<String> = infer.property("backend-in-use");
            worst.fetch_max(t.elapsed().as_micros() as u64, Ordering::SeqCst);
            count.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    let started = Instant::now();
    let r = run_bounded(p, Duration::from_secs(400));
    let elapsed = started.elapsed();
    done.store(true, Ordering::SeqCst);
    poller.join().unwrap();
    r.expect("runs to the end");
    let slowest = Duration::from_micros(slowest.load(Ordering::SeqCst));
    let per_batch = elapsed / 2;
    eprintln!(
        "{} reads, slowest {slowest:?}; {elapsed:?} for 2 batches",
        reads.load(Ordering::SeqCst)
    );
    assert!(
        per_batch > Duration::from_millis(400),
        "the model is too fast to show a blocked read ({per_batch:?} a batch)"
    );
    assert!(
        slowest < per_batch / 4 && slowest < Duration::from_millis(250),
        "a read waited {slowest:?} (a batch takes {per_batch:?})"
    );
}
