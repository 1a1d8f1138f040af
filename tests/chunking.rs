//! A batch larger than the model's max-batch runs in chunks of at most max-batch rows:
//! 24 cameras through `max-batch=16` (chunks of 16 and 8) give the results of 24
//! single-frame inferences (`max-batch=1`), masks included.

mod common;

use gst::prelude::*;
use gsttrtvision::batch::BatchMeta;
use std::sync::{Arc, Mutex};

const CAMERAS: usize = 24;
const FRAMES: u32 = 2;

/// One detection: class, box, confidence, mask pixels set.
type Found = (u32, [f32; 4], f32, usize);

/// Detections per (source, frame) after trtinfer and trtmaskselect with `max_batch`.
fn run(max_batch: u32) -> Vec<((u32, u64), Vec<Found>)> {
    common::init();
    let model = common::cfg("shapes-yolo-seg.toml");
    let mut desc = format!(
        "trtmux name=m batch-size={CAMERAS} ! trtpreprocess config-file={model} \
         ! trtinfer model={model} max-batch={max_batch} ! trtmaskselect ! appsink name=out sync=false"
    );
    for i in 0..CAMERAS {
        desc += &format!(
            " trtscenesrc camera={i} num-buffers={FRAMES} ! video/x-raw,format=NV12,width=320,height=240,framerate=30/1 ! m.sink_{i}"
        );
    }
    let p = common::parse(&desc);
    let found = Arc::new(Mutex::new(Vec::new()));
    let sink = p.by_name("out").unwrap().downcast::<gst_app::AppSink>().unwrap();
    let f = found.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let buffer = sample.buffer().ok_or(gst::FlowError::Error)?;
                let meta = buffer.meta::<BatchMeta>().ok_or(gst::FlowError::Error)?;
                for slot in &meta.batch().slots {
                    let dets = slot
                        .results
                        .detections
                        .iter()
                        .map(|d| {
                            let b = &d.bbox;
                            let mask = d
                                .mask
                                .as_ref()
                                .map_or(0, |m| m.data.iter().filter(|&&v| v >= 128).count());
                            (d.class_id, [b.x0, b.y0, b.x1, b.y1], d.confidence, mask)
                        })
                        .collect();
                    f.lock()
                        .unwrap()
                        .push(((slot.pad_index(), slot.frame_number), dets));
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    common::run_to_end(&p, gst::ClockTime::from_seconds(300)).expect("pipeline runs");
    let mut v = std::mem::take(&mut *found.lock().unwrap());
    v.sort_by_key(|(k, _)| *k);
    v
}

#[test]
fn batch_larger_than_max_batch_runs_in_chunks() {
    common::model("shapes-yolo-seg.onnx");
    if !gsttrtvision::skip::have_ort() {
        return;
    }
    let chunked = run(16);
    let single = run(1);
    assert_eq!(
        chunked.len(),
        CAMERAS * FRAMES as usize,
        "every frame of every camera"
    );
    assert_eq!(
        chunked.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
        single.iter().map(|(k, _)| *k).collect::<Vec<_>>()
    );
    let mut total = 0;
    for ((key, a), (_, b)) in chunked.iter().zip(&single) {
        assert_eq!(a.len(), b.len(), "{key:?}: {a:?} vs {b:?}");
        for (x, y) in a.iter().zip(b) {
            assert_eq!(x.0, y.0, "{key:?} class");
            for i in 0..4 {
                assert!(
                    (x.1[i] - y.1[i]).abs() < 0.05,
                    "{key:?} box {:?} vs {:?}",
                    x.1,
                    y.1
                );
            }
            assert!((x.2 - y.2).abs() < 1e-3, "{key:?} confidence {} vs {}", x.2, y.2);
            assert!(
                x.3.abs_diff(y.3) <= x.3 / 100 + 2,
                "{key:?} mask pixels {} vs {}",
                x.3,
                y.3
            );
        }
        total += a.len();
    }
    assert!(total >= CAMERAS, "the scenes give detections ({total})");
    assert!(
        chunked.iter().any(|(_, d)| d.iter().any(|x| x.3 > 0)),
        "masks are selected"
    );
}
