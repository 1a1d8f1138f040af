//! trtinfer `sessions`: several model instances on alternate batches. Results identical to
//! one session on the 8-camera ground-truth pipeline, batches leave in order, EOS drains
//! the batches in flight, a flushing seek mid-stream is safe, and settings a multi-session
//! element cannot honour are refused with a sentence.

mod common;

use common::groundtruth::{check_against_ground_truth, run_pipeline, Seen};
use gst::prelude::*;
use gsttrtvision::batch::BatchMeta;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn sorted(mut seen: Vec<Seen>) -> Vec<Seen> {
    seen.sort_by_key(|s| (s.camera, s.frame));
    seen
}

/// Runs `f` on a thread and fails if it does not finish within `secs` (a hang).
fn within<T: Send + 'static>(secs: u64, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(Ok(v)) => v,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("{what}: did not finish within {secs} s (hang)"),
    }
}

#[test]
fn two_and_three_sessions_give_the_results_of_one() {
    let frames = 12;
    let one = sorted(run_pipeline("shapes-yolo-seg.toml", frames, "", ""));
    check_against_ground_truth(&one, frames, true);
    for n in [2, 3] {
        // Every frame of every camera comes out: EOS drained the batches in flight.
        let many = sorted(run_pipeline(
            "shapes-yolo-seg.toml",
            frames,
            &format!("sessions={n}"),
            "",
        ));
        check_against_ground_truth(&many, frames, true);
        assert_eq!(many, one, "sessions={n} differs from sessions=1");
    }
}

/// Batch numbers (and timestamps) of the batches leaving a trtinfer with `props`.
fn batches_out(
    props: &str,
    cameras: u32,
    frames: u32,
    seek_after: Option<usize>,
) -> Vec<(u64, Option<gst::ClockTime>)> {
    common::init();
    let c = common::cfg("shapes-yolo.toml");
    let mut desc = format!(
        "trtmux name=m batch-size={cameras} ! trtpreprocess config-file={c} ! trtinfer name=infer model={c} {props} ! fakesink name=sink sync=false"
    );
    for i in 0..cameras {
        desc += &format!(
            " trtscenesrc camera={i} num-buffers={frames} ! video/x-raw,format=NV12,width=320,height=240,framerate=30/1 ! m.sink_{i}"
        );
    }
    let p = common::parse(&desc);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    p.by_name("infer").unwrap().static_pad("src").unwrap().add_probe(
        gst::PadProbeType::BUFFER,
        move |_, info| {
            if let Some(b) = info.buffer() {
                let n = b.meta::<BatchMeta>().expect("batch meta").batch().batch_number;
                s.lock().unwrap().push((n, b.pts()));
            }
            gst::PadProbeReturn::Ok
        },
    );
    p.set_state(gst::State::Playing).unwrap();
    if let Some(k) = seek_after {
        let t0 = std::time::Instant::now();
        while seen.lock().unwrap().len() < k {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "no batches before the seek"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        p.seek_simple(
            gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE,
            gst::ClockTime::ZERO,
        )
        .expect("the pipeline accepts a flushing seek");
    }
    let msg = p.bus().unwrap().timed_pop_filtered(
        gst::ClockTime::from_seconds(60),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    p.set_state(gst::State::Null).unwrap();
    match msg.as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Eos(_)) => {}
        Some(gst::MessageView::Error(e)) => panic!("error: {} {:?}", e.error(), e.debug()),
        _ => panic!("no EOS"),
    }
    let out = std::mem::take(&mut *seen.lock().unwrap());
    out
}

#[test]
fn batches_leave_in_order_and_eos_drains_them() {
    within(90, "sessions order", || {
        let frames = 24;
        let out = batches_out("sessions=3", 2, frames, None);
        let numbers: Vec<u64> = out.iter().map(|b| b.0).collect();
        assert_eq!(
            numbers.len(),
            frames as usize,
            "every batch comes out before EOS: {numbers:?}"
        );
        assert!(
            numbers.windows(2).all(|w| w[1] > w[0]),
            "out of order: {numbers:?}"
        );
        assert!(
            out.windows(2).all(|w| w[1].1 >= w[0].1),
            "timestamps out of order"
        );
    });
}

#[test]
fn flushing_seek_mid_stream_with_batches_in_flight() {
    within(90, "sessions flush", || {
        let frames = 40;
        let out = batches_out("sessions=2", 2, frames, Some(4));
        let pts: Vec<_> = out.iter().map(|b| b.1).collect();
        let restart = (1..pts.len())
            .find(|&i| pts[i] < pts[i - 1])
            .unwrap_or_else(|| panic!("the stream did not restart: {pts:?}"));
        let after = &pts[restart..];
        assert_eq!(
            after.first().copied().flatten(),
            Some(gst::ClockTime::ZERO),
            "{pts:?}"
        );
        assert!(
            after.windows(2).all(|w| w[1] > w[0]),
            "out of order after the seek: {pts:?}"
        );
        assert!(after.len() >= 10, "too few batches after the seek: {pts:?}");
    });
}

fn start_error(props: &str, model: &str) -> String {
    common::init();
    let c = common::cfg(model);
    let p = common::parse(&format!(
        "trtscenesrc num-buffers=2 ! video/x-raw,format=NV12,width=320,height=240 ! trtmux batch-size=1 ! trtpreprocess config-file={c} ! trtinfer model={c} {props} ! fakesink"
    ));
    let _ = p.set_state(gst::State::Playing);
    let msg = p.bus().unwrap().timed_pop_filtered(
        gst::ClockTime::from_seconds(30),
        &[gst::MessageType::Error, gst::MessageType::Eos],
    );
    p.set_state(gst::State::Null).unwrap();
    match msg.as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Error(e)) => format!("{} {:?}", e.error(), e.debug()),
        _ => panic!("trtinfer {props} started without an error"),
    }
}

#[test]
fn settings_several_sessions_cannot_honour_are_refused() {
    let e = start_error("sessions=2 interval=1", "shapes-yolo.toml");
    assert!(e.contains("sessions=2 cannot be combined with interval=1"), "{e}");
    let e = start_error("sessions=2 operate-on=objects", "shapes-yolo.toml");
    assert!(e.contains("operate-on=objects"), "{e}");
}

#[test]
fn invalid_cuda_provider_options_are_refused() {
    // GEnum properties: GStreamer refuses a value outside the set when the line is parsed.
    common::init();
    let c = common::cfg("shapes-yolo.toml");
    for bad in [
        "cudnn-conv-algo-search=fast",
        "use-tf32=maybe",
        "cudnn-conv-use-max-workspace=always",
    ] {
        let line = format!("trtscenesrc num-buffers=1 ! trtmux ! trtinfer model={c} {bad} ! fakesink");
        assert!(gst::parse::launch(&line).is_err(), "{bad} was accepted");
    }
    let ok = format!(
        "trtscenesrc num-buffers=1 ! trtmux ! trtinfer model={c} cudnn-conv-algo-search=heuristic \
         use-tf32=false cudnn-conv-use-max-workspace=true ! fakesink"
    );
    assert!(gst::parse::launch(&ok).is_ok());
}
