//! Fault suite: errors in the middle of a stream, state cycling, concurrent pipelines,
//! extreme frame sizes, reference leaks, bad model configs, batches without metadata,
//! flushing seeks and inference intervals. Every test runs under a watchdog, so a hang is
//! a failure naming the test instead of a stuck CI job.

mod common;

use gst::prelude::*;
use gsttrtvision::batch::BatchMeta;
use gsttrtvision::results::FrameMask;
use gsttrtvision::scene;
use gsttrtvision::trtdemux::roi;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::within;

/// trtmux → trtpreprocess → trtinfer with `model` (a file in engines/), then `tail`.
fn infer_chain(model: &str, infer_props: &str, tail: &str) -> String {
    format!(
        "trtmux name=m ! trtpreprocess config-file={c} ! trtinfer model={c} {infer_props} ! {tail}",
        c = common::cfg(model)
    )
}

/// `n` synthetic cameras of `frames` frames at `caps` (a video/x-raw caps string tail)
/// into m.sink_i, and trtdemux's d.src_i into a queue and appsink outI.
fn scene_sources_and_sinks(n: u32, frames: u32, caps: &str) -> String {
    (0..n)
        .map(|i| {
            format!(
                " trtscenesrc camera={i} num-buffers={frames} ! video/x-raw,{caps} ! m.sink_{i} \
                 d.src_{i} ! queue ! appsink name=out{i} sync=false"
            )
        })
        .collect()
}

/// One detection as seen in the ROI meta of a demuxed frame.
#[derive(Debug, Clone, PartialEq)]
struct Roi {
    class: u32,
    rect: (u32, u32, u32, u32),
    exact: [f64; 4],
    confidence: f64,
    mask: Option<FrameMask>,
}

/// One demuxed frame.
#[derive(Debug, Clone)]
struct Frame {
    offset: u64,
    width: u32,
    height: u32,
    rois: Vec<Roi>,
}

fn rois_of(buf: &gst::BufferRef) -> Vec<Roi> {
    buf.iter_meta::<gst_video::VideoRegionOfInterestMeta>()
        .map(|r| {
            let d = r.param("detection").expect("detection parameters");
            let f = |k: &str| d.get::<f64>(k).unwrap();
            Roi {
                class: d.get::<u32>("class-id").unwrap(),
                rect: r.rect(),
                exact: [f("x0"), f("y0"), f("x1"), f("y1")],
                confidence: f("confidence"),
                mask: roi::read_mask(&r),
            }
        })
        .collect()
}

type Frames = Arc<Mutex<Vec<Vec<Frame>>>>;

/// Records every frame reaching the appsinks out0..out{n-1} (per source, in arrival order).
fn record_sinks(p: &gst::Pipeline, n: u32) -> Frames {
    let frames: Frames = Arc::new(Mutex::new(vec![Vec::new(); n as usize]));
    for i in 0..n {
        let frames = frames.clone();
        common::on_sample(p, &format!("out{i}"), move |sample| {
            let buf = sample.buffer().expect("sample has a buffer");
            let info = gst_video::VideoInfo::from_caps(sample.caps().expect("caps")).unwrap();
            frames.lock().unwrap()[i as usize].push(Frame {
                offset: buf.offset(),
                width: info.width(),
                height: info.height(),
                rois: rois_of(buf),
            });
        });
    }
    frames
}

fn offsets(frames: &[Frame]) -> Vec<u64> {
    frames.iter().map(|f| f.offset).collect()
}

/// The detections of a frame match the scene's objects: same classes, boxes with IoU ≥ 0.8.
fn assert_matches_truth(camera: u32, f: &Frame) {
    let truth = scene::scene_objects(camera, f.offset, f.width, f.height);
    let mut got: Vec<u32> = f.rois.iter().map(|r| r.class).collect();
    got.sort_unstable();
    let want: Vec<u32> = truth.iter().map(|o| o.class_id).collect();
    assert_eq!(
        got, want,
        "camera {camera} frame {} ({}x{}): classes",
        f.offset, f.width, f.height
    );
    for r in &f.rois {
        let obj = truth.iter().find(|o| o.class_id == r.class).unwrap();
        let b = gsttrtvision::geometry::BoxF::new(
            r.exact[0] as f32,
            r.exact[1] as f32,
            r.exact[2] as f32,
            r.exact[3] as f32,
        );
        let iou = b.iou(&obj.bbox);
        assert!(
            iou >= 0.8,
            "camera {camera} frame {}: class {} box {b:?} vs truth {:?} (IoU {iou})",
            f.offset,
            r.class,
            obj.bbox
        );
    }
}

/// Waits (bounded) until `cond` holds.
fn wait_until(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}

fn error_text(msg: &gst::Message) -> Option<(String, String)> {
    match msg.view() {
        gst::MessageView::Error(e) => Some((
            format!(
                "{} ({})",
                e.error(),
                e.debug().map(|d| d.to_string()).unwrap_or_default()
            ),
            msg.src().map(|s| s.name().to_string()).unwrap_or_default(),
        )),
        _ => None,
    }
}

// --- 1. a source failing mid-stream -------------------------------------------------------

#[test]
fn source_error_mid_stream_ends_the_pipeline() {
    within(60, "source error mid-stream", || {
        common::init();
        // Source 0 fails on its 5th buffer; source 1 runs for 40 frames.
        let desc = format!(
            "{chain} \
             videotestsrc num-buffers=50 ! video/x-raw,format=NV12,width=320,height=240,framerate=30/1 \
               ! identity name=failing error-after=5 ! m.sink_0 \
             trtscenesrc camera=1 num-buffers=40 ! video/x-raw,format=NV12,width=320,height=240 ! m.sink_1 \
             d.src_0 ! queue ! appsink name=out0 sync=false d.src_1 ! queue ! appsink name=out1 sync=false",
            chain = infer_chain(
                "shapes-yolo.toml",
                "",
                "trtmaskselect ! trtoverlay ! trtdemux name=d"
            )
        );
        let p = common::parse(&desc);
        let frames = record_sinks(&p, 2);
        // An error posted while the sinks preroll leaves the pipeline short of PLAYING (the
        // bin does not finish the pending state change), so prerolled frames never reach
        // new-sample: hold the failing buffer back until the pipeline plays.
        let go = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let g = go.clone();
        p.by_name("failing")
            .unwrap()
            .static_pad("sink")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                if info.buffer().is_some_and(|b| b.offset() >= 4) {
                    let (lock, cv) = &*g;
                    let _unused = cv
                        .wait_timeout_while(lock.lock().unwrap(), Duration::from_secs(20), |go| !*go)
                        .unwrap();
                }
                gst::PadProbeReturn::Ok
            });
        p.set_state(gst::State::Playing).unwrap();
        let (res, state, _) = p.state(gst::ClockTime::from_seconds(20));
        assert_eq!(
            (res, state),
            (Ok(gst::StateChangeSuccess::Success), gst::State::Playing)
        );
        assert!(
            wait_until(20, || frames.lock().unwrap().iter().all(|f| f.len() >= 4)),
            "frames 0..3 of both sources come out"
        );
        *go.0.lock().unwrap() = true;
        go.1.notify_all();
        let bus = p.bus().unwrap();
        let msg = bus
            .timed_pop_filtered(
                gst::ClockTime::from_seconds(20),
                &[gst::MessageType::Error, gst::MessageType::Eos],
            )
            .expect("the pipeline ends (no hang)");
        let (text, src) = error_text(&msg).expect("the pipeline ends with an error, not EOS");
        assert_eq!(src, "failing", "the error comes from the failing element: {text}");
        assert!(text.contains("Failed after iterations as requested"), "{text}");
        // The failed source ends (basesrc sends EOS after a flow error), so the other one is
        // no longer held back by the batching and drains completely.
        let drained = wait_until(20, || frames.lock().unwrap()[1].len() == 40);
        p.set_state(gst::State::Null).unwrap();
        let frames = frames.lock().unwrap();
        assert_eq!(
            offsets(&frames[0]),
            vec![0, 1, 2, 3],
            "source 0: exactly the frames before the error"
        );
        assert!(
            drained,
            "source 1 stalled after the error: {:?}",
            offsets(&frames[1])
        );
        assert_eq!(
            offsets(&frames[1]),
            (0..40).collect::<Vec<_>>(),
            "source 1 in order"
        );
        for f in &frames[1] {
            assert_matches_truth(1, f);
        }
    });
}

#[test]
fn source_error_then_immediate_teardown() {
    within(60, "source error, immediate teardown", || {
        common::init();
        // The usual application: stop as soon as an error shows up, whatever is in flight
        // (including the error racing the preroll).
        let desc = format!(
            "{chain} \
             videotestsrc num-buffers=50 ! video/x-raw,format=I420,width=160,height=120,framerate=30/1 \
               ! identity error-after=ERR ! m.sink_0 \
             trtscenesrc camera=1 num-buffers=50 ! video/x-raw,format=NV12,width=160,height=120 ! m.sink_1 \
             d.src_0 ! queue ! appsink name=out0 sync=false d.src_1 ! queue ! appsink name=out1 sync=false",
            chain = infer_chain(
                "shapes-yolo-seg.toml",
                "",
                "trtmaskselect ! trtoverlay ! trtdemux name=d"
            )
        );
        for err_after in [1, 2, 3, 5, 8, 13] {
            let p = common::parse(&desc.replace("ERR", &err_after.to_string()));
            let e = common::run_to_end(&p, gst::ClockTime::from_seconds(20)).expect_err("the pipeline fails");
            assert!(
                e.contains("Failed after iterations as requested"),
                "error-after={err_after}: {e}"
            );
        }
    });
}

/// A fatal flow return from downstream that nobody posts (an unlinked trtdemux pad, a sink
/// refusing a buffer) must still end the pipeline with an error once every source has
/// pushed all its frames: then the only thread left to notice is trtmux's.
#[test]
fn downstream_flow_error_after_the_sources_finished() {
    within(60, "downstream flow error", || {
        common::init();
        // (a) A parse-launched pipeline run twice: parse-launch links `d.src_0` once, and
        // trtdemux removes its pads on PAUSED→READY, so the second run pushes into an
        // unlinked pad (not-linked).
        let desc = infer_chain("shapes-yolo.toml", "", "trtdemux name=d")
            + " trtscenesrc camera=0 num-buffers=2 ! video/x-raw,format=NV12,width=160,height=120 ! m.sink_0 \
                d.src_0 ! queue ! fakesink";
        let p = common::parse(&desc);
        common::run_to_end(&p, gst::ClockTime::from_seconds(10)).expect("the first run ends");
        let e = common::run_to_end(&p, gst::ClockTime::from_seconds(10))
            .expect_err("the second run cannot deliver its frames");
        assert_ne!(e, "timed out", "the second run hung on a not-linked flow");
        assert!(e.contains("Internal data stream error"), "{e}");
        assert!(e.to_lowercase().contains("not linked"), "{e}");
        // (b) A sink that refuses the first frame (returns an error, posts nothing).
        let desc = infer_chain("shapes-yolo.toml", "", "trtdemux name=d")
            + " trtscenesrc camera=0 num-buffers=2 ! video/x-raw,format=NV12,width=160,height=120 ! m.sink_0 \
                d.src_0 ! appsink name=out0 sync=false";
        let p = common::parse(&desc);
        p.by_name("out0")
            .unwrap()
            .downcast::<gst_app::AppSink>()
            .unwrap()
            .set_callbacks(
                gst_app::AppSinkCallbacks::builder()
                    .new_sample(|_| Err(gst::FlowError::Error))
                    .build(),
            );
        let e = common::run_to_end(&p, gst::ClockTime::from_seconds(10))
            .expect_err("the refused frame ends the pipeline");
        assert_ne!(e, "timed out", "a refused frame hung the pipeline");
        assert!(e.contains("Internal data stream error"), "{e}");
    });
}

#[test]
fn application_error_on_appsrc_mid_stream() {
    within(60, "appsrc error mid-stream", || {
        common::init();
        let desc = format!(
            "{chain} appsrc name=src format=time caps=video/x-raw,format=RGBA,width=320,height=240,framerate=30/1 \
             ! m.sink_0 d.src_0 ! queue ! appsink name=out0 sync=false",
            chain = infer_chain("shapes-yolo.toml", "", "trtdemux name=d")
        );
        let p = common::parse(&desc);
        let frames = record_sinks(&p, 1);
        let src = p.by_name("src").unwrap().downcast::<gst_app::AppSrc>().unwrap();
        p.set_state(gst::State::Playing).unwrap();
        for n in 0..5u64 {
            src.push_buffer(scene_frame(0, n, 320, 240)).unwrap();
        }
        // The application gives up on its source (e.g. a camera disconnect) and says why.
        assert!(
            wait_until(20, || frames.lock().unwrap()[0].len() == 5),
            "frames before the error were not delivered"
        );
        gst::element_error!(
            src,
            gst::ResourceError::Read,
            ("camera 0 disconnected"),
            ["test application"]
        );
        let msg = p
            .bus()
            .unwrap()
            .timed_pop_filtered(
                gst::ClockTime::from_seconds(10),
                &[gst::MessageType::Error, gst::MessageType::Eos],
            )
            .expect("the error reaches the bus");
        let (text, _) = error_text(&msg).expect("an error, not EOS");
        assert!(text.contains("camera 0 disconnected"), "{text}");
        // Pushing after the error must not block, and stopping must not hang.
        let _ = src.push_buffer(scene_frame(0, 5, 320, 240));
        p.set_state(gst::State::Null).unwrap();
        let frames = frames.lock().unwrap();
        // Frame 5 was pushed after the error and may or may not get through before the stop.
        let got = offsets(&frames[0]);
        assert!(
            got == vec![0, 1, 2, 3, 4] || got == vec![0, 1, 2, 3, 4, 5],
            "{got:?}"
        );
        for f in &frames[0] {
            assert_matches_truth(0, f);
        }
    });
}

/// An RGBA frame of the synthetic scene with offset and timestamps set.
fn scene_frame(camera: u32, n: u64, w: u32, h: u32) -> gst::Buffer {
    let mut data = vec![0u8; (w * h * 4) as usize];
    scene::render_rgba(camera, n, w, h, &mut data);
    let mut b = gst::Buffer::from_mut_slice(data);
    {
        let b = b.get_mut().unwrap();
        b.set_pts(gst::ClockTime::SECOND.mul_div_floor(n, 30).unwrap());
        b.set_duration(gst::ClockTime::SECOND.mul_div_floor(1, 30).unwrap());
        b.set_offset(n);
        b.set_offset_end(n + 1);
    }
    b
}

// --- 2. state cycling ----------------------------------------------------------------------

const CYCLE_CAPS: &str = "format=NV12,width=160,height=120";

fn check_cycle(frames: &Frames, cycle: usize) {
    let frames = frames.lock().unwrap();
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(offsets(f), vec![0, 1], "cycle {cycle}: source {i} frames");
        assert!(
            f.iter().all(|f| !f.rois.is_empty()),
            "cycle {cycle}: source {i} has frames without detections"
        );
    }
}

#[test]
fn null_playing_null_cycles_reuse_one_pipeline() {
    within(60, "state cycles (one pipeline)", || {
        common::init();
        // trtdemux removes its pads on PAUSED→READY and adds them again on the next run,
        // so the app links them on pad-added (parse-launch links sometimes-pads only once).
        let mut desc = infer_chain(
            "shapes-yolo.toml",
            "",
            "trtmaskselect ! trtoverlay ! trtdemux name=d",
        );
        for i in 0..2 {
            desc += &format!(
                " trtscenesrc camera={i} num-buffers=2 ! video/x-raw,{CYCLE_CAPS} ! m.sink_{i} \
                  queue name=q{i} ! appsink name=out{i} sync=false"
            );
        }
        let p = common::parse(&desc);
        let queues: Vec<gst::Element> = (0..2).map(|i| p.by_name(&format!("q{i}")).unwrap()).collect();
        p.by_name("d").unwrap().connect_pad_added(move |_, pad| {
            let i: usize = pad.name()["src_".len()..].parse().unwrap();
            pad.link(&queues[i].static_pad("sink").unwrap())
                .expect("demux pad links");
        });
        let frames = record_sinks(&p, 2);
        for cycle in 0..60 {
            frames.lock().unwrap().iter_mut().for_each(Vec::clear);
            common::run_to_end(&p, gst::ClockTime::from_seconds(10))
                .unwrap_or_else(|e| panic!("cycle {cycle}: {e}"));
            check_cycle(&frames, cycle);
        }
    });
}

#[test]
fn build_run_destroy_fresh_pipelines() {
    within(60, "state cycles (fresh pipelines)", || {
        common::init();
        let desc = infer_chain(
            "shapes-yolo.toml",
            "",
            "trtmaskselect ! trtoverlay ! trtdemux name=d",
        ) + &scene_sources_and_sinks(2, 2, CYCLE_CAPS);
        for cycle in 0..40 {
            let p = common::parse(&desc);
            let frames = record_sinks(&p, 2);
            common::run_to_end(&p, gst::ClockTime::from_seconds(10))
                .unwrap_or_else(|e| panic!("cycle {cycle}: {e}"));
            drop(p);
            check_cycle(&frames, cycle);
        }
    });
}

// --- 3. concurrent pipelines ---------------------------------------------------------------

#[test]
fn two_pipelines_run_concurrently() {
    within(90, "concurrent pipelines", || {
        common::init();
        let run = |model: &'static str, cameras: u32, frames: u32| {
            std::thread::spawn(move || {
                let desc = infer_chain(model, "", "trtmaskselect ! trtoverlay ! trtdemux name=d")
                    + &scene_sources_and_sinks(cameras, frames, "format=NV12,width=320,height=240");
                let p = common::parse(&desc);
                let out = record_sinks(&p, cameras);
                common::run_to_end(&p, gst::ClockTime::from_seconds(60)).expect("runs to EOS");
                let out = std::mem::take(&mut *out.lock().unwrap());
                out
            })
        };
        let a = run("shapes-yolo.toml", 3, 8);
        let b = run("shapes-detr.toml", 2, 10);
        for (name, handle, cameras, frames) in [("yolo", a, 3, 8u64), ("detr", b, 2, 10)] {
            let out = handle
                .join()
                .unwrap_or_else(|_| panic!("{name} pipeline panicked"));
            assert_eq!(out.len(), cameras);
            for (cam, f) in out.iter().enumerate() {
                assert_eq!(offsets(f), (0..frames).collect::<Vec<_>>(), "{name} camera {cam}");
                for frame in f {
                    assert!(!frame.rois.is_empty(), "{name} camera {cam}: no detections");
                    assert_matches_truth(cam as u32, frame);
                }
            }
        }
    });
}

// --- 4. extreme and odd frame sizes --------------------------------------------------------

#[test]
fn one_by_one_frames() {
    within(60, "1x1 frames", || {
        common::init();
        // Through the whole analytics chain to trtdemux: no objects fit, nothing breaks.
        let desc = infer_chain(
            "shapes-yolo-seg.toml",
            "",
            "trtmaskselect ! trtoverlay ! trtjsonexport location=LOC ! trtdemux name=d",
        )
        .replace(
            "LOC",
            &common::temp_path("faults", "1x1.jsonl").display().to_string(),
        )
            + " trtscenesrc camera=0 num-buffers=2 ! video/x-raw,format=NV12,width=1,height=1 ! m.sink_0 \
                d.src_0 ! queue ! appsink name=out0 sync=false \
                trtscenesrc camera=1 num-buffers=2 ! video/x-raw,format=RGBA,width=1,height=1 ! m.sink_1 \
                d.src_1 ! queue ! appsink name=out1 sync=false \
                trtscenesrc camera=2 num-buffers=2 ! video/x-raw,format=I420,width=1,height=1 ! m.sink_2 \
                d.src_2 ! queue ! appsink name=out2 sync=false";
        let p = common::parse(&desc);
        let out = record_sinks(&p, 3);
        common::run_to_end(&p, gst::ClockTime::from_seconds(30)).expect("1x1 frames run to EOS");
        for (i, f) in out.lock().unwrap().iter().enumerate() {
            assert_eq!(offsets(f), vec![0, 1], "source {i}");
            assert!(f
                .iter()
                .all(|f| (f.width, f.height) == (1, 1) && f.rois.is_empty()));
        }
        // And into a mosaic.
        let p = common::parse(
            "trtmux name=m ! trttiler width=16 height=16 ! video/x-raw,format=NV12 ! appsink name=tiles sync=false \
             trtscenesrc camera=0 num-buffers=2 ! video/x-raw,format=NV12,width=1,height=1 ! m.sink_0 \
             trtscenesrc camera=1 num-buffers=2 ! video/x-raw,format=RGBA,width=1,height=1 ! m.sink_1",
        );
        let tiles = common::collect(&p, "tiles");
        common::run_to_end(&p, gst::ClockTime::from_seconds(30)).expect("1x1 mosaic runs to EOS");
        assert_eq!(tiles.lock().unwrap().len(), 2);
    });
}

#[test]
fn huge_8192_frame() {
    within(90, "8192x8192 frame", || {
        common::init();
        let desc = infer_chain("shapes-yolo.toml", "", "trtdemux name=d")
            + &scene_sources_and_sinks(1, 1, "format=NV12,width=8192,height=8192");
        let p = common::parse(&desc);
        let out = record_sinks(&p, 1);
        common::run_to_end(&p, gst::ClockTime::from_seconds(60)).expect("an 8192x8192 frame runs to EOS");
        let out = out.lock().unwrap();
        assert_eq!(offsets(&out[0]), vec![0]);
        assert_eq!((out[0][0].width, out[0][0].height), (8192, 8192));
        assert!(!out[0][0].rois.is_empty(), "no detections on the 8192x8192 frame");
        assert_matches_truth(0, &out[0][0]);
    });
}

#[test]
fn odd_frame_sizes_through_preprocess_overlay_and_tiler() {
    within(90, "odd frame sizes", || {
        common::init();
        let formats = ["NV12", "I420", "RGB", "BGRx"];
        let mut desc = infer_chain(
            "shapes-yolo-seg.toml",
            "",
            "trtmaskselect ! trtoverlay ! trtdemux name=d",
        );
        for (i, fmt) in formats.iter().enumerate() {
            desc += &format!(
                " trtscenesrc camera={i} num-buffers=3 ! video/x-raw,format={fmt},width=641,height=479 ! m.sink_{i} \
                  d.src_{i} ! queue ! appsink name=out{i} sync=false"
            );
        }
        let p = common::parse(&desc);
        let out = record_sinks(&p, formats.len() as u32);
        common::run_to_end(&p, gst::ClockTime::from_seconds(60)).expect("641x479 frames run to EOS");
        for (i, f) in out.lock().unwrap().iter().enumerate() {
            assert_eq!(offsets(f), vec![0, 1, 2], "{}", formats[i]);
            for frame in f {
                assert_eq!((frame.width, frame.height), (641, 479));
                assert_matches_truth(i as u32, frame);
                for r in &frame.rois {
                    let m = r.mask.as_ref().expect("seg detections carry a mask");
                    assert!(
                        m.x + m.width <= 641 && m.y + m.height <= 479,
                        "mask inside the frame"
                    );
                }
            }
        }
        // Odd mosaic sizes in every output format family.
        for fmt in ["NV12", "I420", "RGBA", "RGB"] {
            let mut desc = format!(
                "{} ! trttiler width=641 height=479 ! video/x-raw,format={fmt} ! appsink name=tiles sync=false",
                infer_chain("shapes-yolo.toml", "", "trtoverlay")
            );
            for (i, sfmt) in formats.iter().enumerate() {
                desc += &format!(
                    " trtscenesrc camera={i} num-buffers=2 ! video/x-raw,format={sfmt},width=641,height=479 ! m.sink_{i}"
                );
            }
            let p = common::parse(&desc);
            let tiles = common::collect(&p, "tiles");
            common::run_to_end(&p, gst::ClockTime::from_seconds(30))
                .unwrap_or_else(|e| panic!("641x479 {fmt} mosaic: {e}"));
            let tiles = tiles.lock().unwrap();
            assert_eq!(tiles.len(), 2, "{fmt} mosaic frames");
            let info = gst_video::VideoInfo::builder(fmt.parse().unwrap(), 641, 479)
                .build()
                .unwrap();
            assert!(tiles.iter().all(|t| t.size() >= info.size()), "{fmt} mosaic size");
        }
    });
}

// --- 5. leaks --------------------------------------------------------------------------------

/// Reference count of a buffer.
fn refcount(b: &gst::Buffer) -> i32 {
    // SAFETY: `b` is a valid GstBuffer for the duration of the call; the field is only read.
    unsafe { (*b.as_ptr()).mini_object.refcount }
}

/// Pushes 2 × 6 scene frames through appsrc into `chain` (which names trtmux `m`), runs it
/// to EOS, tears it down, and returns the buffers that were pushed.
fn push_through(chain: &str) -> Vec<gst::Buffer> {
    let p = common::parse(&format!(
        "{chain} \
         appsrc name=src0 format=time caps=video/x-raw,format=RGBA,width=320,height=240,framerate=30/1 ! m.sink_0 \
         appsrc name=src1 format=time caps=video/x-raw,format=RGBA,width=320,height=240,framerate=30/1 ! m.sink_1"
    ));
    let sinks: Vec<gst_app::AppSink> = p
        .iterate_sinks()
        .into_iter()
        .filter_map(|e| e.ok()?.downcast::<gst_app::AppSink>().ok())
        .collect();
    let delivered = Arc::new(AtomicUsize::new(0));
    for s in &sinks {
        let d = delivered.clone();
        s.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    // Pull and drop: nothing of the output is kept.
                    s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    d.fetch_add(1, Ordering::SeqCst);
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
    }
    p.set_state(gst::State::Playing).unwrap();
    let mut pushed = Vec::new();
    for cam in 0..2u32 {
        let src = p
            .by_name(&format!("src{cam}"))
            .unwrap()
            .downcast::<gst_app::AppSrc>()
            .unwrap();
        for n in 0..6 {
            let b = scene_frame(cam, n, 320, 240);
            pushed.push(b.clone());
            src.push_buffer(b).unwrap();
        }
        src.end_of_stream().unwrap();
    }
    let msg = p.bus().unwrap().timed_pop_filtered(
        gst::ClockTime::from_seconds(30),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    p.set_state(gst::State::Null).unwrap();
    match msg.as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Eos(_)) => {}
        other => panic!("pipeline did not reach EOS: {other:?}"),
    }
    assert!(delivered.load(Ordering::SeqCst) > 0, "nothing reached the sinks");
    drop(sinks);
    drop(p);
    pushed
}

#[test]
fn pushed_frames_are_released_after_teardown() {
    within(60, "frame refcounts", || {
        common::init();
        let json = common::temp_path("faults", "leaks.jsonl").display().to_string();
        let tails = [
            format!(
                "trtmaskselect ! trtoverlay ! trtjsonexport location={json} ! trtdemux name=d \
                 d.src_0 ! queue ! appsink name=out0 sync=false d.src_1 ! queue ! appsink name=out1 sync=false"
            ),
            "trtmaskselect ! trtoverlay ! trttiler width=320 height=240 ! appsink name=out0 sync=false".to_string(),
        ];
        for tail in tails {
            for model in ["shapes-yolo-seg.toml", "shapes-detr.toml"] {
                let pushed = push_through(&infer_chain(model, "", &tail));
                assert_eq!(pushed.len(), 12);
                for (i, b) in pushed.iter().enumerate() {
                    assert_eq!(
                        refcount(b),
                        1,
                        "{model} / {tail}: frame {i} still referenced after the pipeline was destroyed"
                    );
                }
            }
        }
    });
}

const LEAKS_CHILD_ENV: &str = "TRTVISION_FAULTS_LEAKS_CHILD";
const LEAKS_MARK: &str = "TRTVISION-LEAKS-MARK";

/// Helper run by `leaks_tracer_finds_nothing_alive` in a child process with the leaks
/// tracer enabled (`GST_TRACERS=leaks GST_DEBUG=GST_TRACER:7`); a no-op in a normal run.
/// It logs the live objects before any pipeline exists and again after two runs (objects
/// meant to live for the whole process, such as pad templates, are flagged
/// may-be-leaked and not logged).
#[test]
fn leaks_tracer_child() {
    if std::env::var_os(LEAKS_CHILD_ENV).is_none() {
        return;
    }
    common::init();
    let tracer = gst::active_tracers()
        .into_iter()
        .find(|t| t.type_().name() == "GstLeaksTracer")
        .expect("the leaks tracer is active (GST_TRACERS=leaks)");
    let json = common::temp_path("faults", "leaks-child.jsonl")
        .display()
        .to_string();
    let chain = infer_chain(
        "shapes-yolo-seg.toml",
        "",
        &format!(
            "trtmaskselect ! trtoverlay ! trtjsonexport location={json} ! trtdemux name=d \
             d.src_0 ! queue ! appsink name=out0 sync=false d.src_1 ! queue ! appsink name=out1 sync=false"
        ),
    );
    eprintln!("{LEAKS_MARK} before");
    tracer.emit_by_name::<()>("log-live-objects", &[]);
    eprintln!("{LEAKS_MARK} runs");
    for _ in 0..2 {
        drop(push_through(&chain));
    }
    // A pad task's thread drops its last reference to the GstTask after the task function
    // returned, asynchronously to the state change that stopped it: let it finish.
    std::thread::sleep(std::time::Duration::from_millis(500));
    eprintln!("{LEAKS_MARK} after");
    tracer.emit_by_name::<()>("log-live-objects", &[]);
    // A leak planted on purpose, to show that the tracer does see one.
    std::mem::forget(scene_frame(0, 0, 16, 16));
    eprintln!("{LEAKS_MARK} planted");
    tracer.emit_by_name::<()>("log-live-objects", &[]);
    eprintln!("{LEAKS_MARK} done");
}

/// `(type, address)` of the `object-alive` records the leaks tracer logged in `section`.
fn alive_in(stderr: &str, section: &str) -> std::collections::BTreeSet<(String, String)> {
    let field = |line: &str, key: &str| -> Option<String> {
        let rest = &line[line.find(key)? + key.len()..];
        let rest = &rest[rest.find(')')? + 1..];
        Some(rest[..rest.find([',', ';']).unwrap_or(rest.len())].to_string())
    };
    stderr
        .lines()
        .skip_while(|l| !l.contains(&format!("{LEAKS_MARK} {section}")))
        .skip(1)
        .take_while(|l| !l.contains(LEAKS_MARK))
        .filter(|l| l.contains("object-alive"))
        .filter_map(|l| Some((field(l, "type-name=")?, field(l, "address=")?)))
        .collect()
}

#[test]
fn leaks_tracer_finds_nothing_alive() {
    within(90, "leaks tracer", || {
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(exe)
            .args(["--exact", "leaks_tracer_child", "--nocapture", "--test-threads=1"])
            .env(LEAKS_CHILD_ENV, "1")
            .env("GST_TRACERS", "leaks")
            .env("GST_DEBUG", "GST_TRACER:7")
            .env_remove("GST_DEBUG_FILE")
            .output()
            .expect("the test binary runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.contains(&format!("{LEAKS_MARK} done")),
            "child failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            stderr.lines().rev().take(40).collect::<Vec<_>>().join("\n")
        );
        let before = alive_in(&stderr, "before");
        let after = alive_in(&stderr, "after");
        let planted = alive_in(&stderr, "planted");
        assert!(
            planted.difference(&after).any(|(t, _)| t == "GstBuffer"),
            "the tracer did not see the planted leak: {planted:?}"
        );
        let leaked: Vec<_> = after.difference(&before).collect();
        assert!(
            leaked.is_empty(),
            "{} objects created by later runs are still alive after teardown: {leaked:?}",
            leaked.len()
        );
    });
}

// --- 6. bad model configs --------------------------------------------------------------------

fn bad_config(name: &str, edit: impl Fn(String) -> String) -> std::path::PathBuf {
    let good = std::fs::read_to_string(common::engines_dir().join("shapes-yolo.toml")).unwrap();
    // Absolute paths, so the config works from the temporary directory.
    let good = good
        .replace(
            "models/shapes-yolo.onnx",
            &common::model("shapes-yolo.onnx").display().to_string(),
        )
        .replace(
            "\"shapes.txt\"",
            &format!("\"{}\"", common::engines_dir().join("shapes.txt").display()),
        );
    let edited = edit(good.clone());
    assert_ne!(edited, good, "{name}: the edit changed nothing");
    let p = common::temp_path("faults", name);
    std::fs::write(&p, edited).unwrap();
    p
}

fn expect_error(desc: &str) -> String {
    let p = common::parse(desc);
    match common::run_to_end(&p, gst::ClockTime::from_seconds(20)) {
        Ok(()) => panic!("pipeline '{desc}' succeeded but should have failed"),
        Err(e) => {
            assert_ne!(e, "timed out", "pipeline '{desc}' hung instead of failing");
            e
        }
    }
}

#[test]
fn invalid_model_configs_are_named_by_both_elements() {
    within(60, "invalid model configs", || {
        common::init();
        let labels = common::engines_dir().join("shapes.txt").display().to_string();
        let cases: Vec<(&str, std::path::PathBuf, Vec<String>)> = vec![
            (
                "missing labels",
                bad_config("missing-labels.toml", |t| {
                    t.replace(&labels, "/nonexistent/labels.txt")
                }),
                vec!["the labels file /nonexistent/labels.txt does not exist".into()],
            ),
            (
                "width 0",
                bad_config("width-zero.toml", |t| t.replace("width = 640", "width = 0")),
                vec!["[input] width must be between 1 and 16384".into(), "got 0".into()],
            ),
            (
                "unknown parser",
                bad_config("unknown-parser.toml", |t| {
                    t.replace("parser = \"yolo\"", "parser = \"ssd\"")
                }),
                vec!["unknown [output] parser 'ssd'".into()],
            ),
        ];
        let good = common::cfg("shapes-yolo.toml");
        let sources = " trtscenesrc camera=0 num-buffers=2 ! video/x-raw,width=320,height=240 ! m.sink_0";
        for (what, path, wants) in &cases {
            let path = path.display().to_string();
            for (element, desc) in [
                (
                    "trtinfer",
                    format!(
                        "trtmux name=m ! trtpreprocess config-file={good} ! trtinfer model={path} ! fakesink{sources}"
                    ),
                ),
                (
                    "trtpreprocess",
                    format!(
                        "trtmux name=m ! trtpreprocess config-file={path} ! trtinfer model={good} ! fakesink{sources}"
                    ),
                ),
            ] {
                let e = expect_error(&desc);
                assert!(e.contains(&path), "{what} via {element}: the file is named: {e}");
                for want in wants {
                    assert!(e.contains(want.as_str()), "{what} via {element}: '{want}' in: {e}");
                }
            }
        }
    });
}

// --- 7. batches without metadata -------------------------------------------------------------

#[test]
fn batch_caps_without_meta_are_rejected_clearly() {
    within(60, "batches without meta", || {
        common::init();
        let yolo = common::cfg("shapes-yolo.toml");
        let cases = [
            (
                "trtpreprocess",
                format!("trtpreprocess config-file={yolo} ! fakesink"),
            ),
            ("trtinfer", format!("trtinfer model={yolo} ! fakesink")),
            ("trtmaskselect", "trtmaskselect ! fakesink".to_string()),
            ("trtoverlay", "trtoverlay ! fakesink".to_string()),
            (
                "trtjsonexport",
                format!(
                    "trtjsonexport location={} ! fakesink",
                    common::temp_path("faults", "nometa.jsonl").display()
                ),
            ),
            ("trtdemux", "trtdemux".to_string()),
            ("trttiler", "trttiler ! fakesink".to_string()),
        ];
        for (element, tail) in cases {
            let p = common::parse(&format!(
                "appsrc name=src format=time caps=application/x-trtvision-batch,framerate=30/1 ! {tail}"
            ));
            let src = p.by_name("src").unwrap().downcast::<gst_app::AppSrc>().unwrap();
            p.set_state(gst::State::Playing).unwrap();
            let mut b = gst::Buffer::new();
            b.get_mut().unwrap().set_pts(gst::ClockTime::ZERO);
            let _ = src.push_buffer(b);
            let _ = src.end_of_stream();
            let msg = p.bus().unwrap().timed_pop_filtered(
                gst::ClockTime::from_seconds(10),
                &[gst::MessageType::Error, gst::MessageType::Eos],
            );
            p.set_state(gst::State::Null).unwrap();
            let msg = msg.unwrap_or_else(|| panic!("{element}: no error and no EOS (hang)"));
            let (text, _) =
                error_text(&msg).unwrap_or_else(|| panic!("{element} accepted a batch without metadata"));
            assert!(
                text.contains("without batch metadata") && text.contains(element),
                "{element}: {text}"
            );
        }
    });
}

// --- 8. flushing seek ------------------------------------------------------------------------

#[test]
fn flushing_seek_back_to_start_mid_stream() {
    within(60, "flushing seek", || {
        common::init();
        let frames = 60u64;
        let desc = infer_chain(
            "shapes-yolo.toml",
            "",
            "trtmaskselect ! trtoverlay ! trtdemux name=d",
        ) + &scene_sources_and_sinks(2, frames as u32, "format=NV12,width=320,height=240");
        let p = common::parse(&desc);
        let out = record_sinks(&p, 2);
        p.set_state(gst::State::Playing).unwrap();
        assert!(
            wait_until(20, || out.lock().unwrap().iter().all(|f| f.len() >= 5)),
            "no frames before the seek"
        );
        p.seek_simple(
            gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE,
            gst::ClockTime::ZERO,
        )
        .expect("the pipeline accepts a flushing seek");
        let msg = p.bus().unwrap().timed_pop_filtered(
            gst::ClockTime::from_seconds(30),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        );
        p.set_state(gst::State::Null).unwrap();
        match msg.as_ref().map(|m| m.view()) {
            Some(gst::MessageView::Eos(_)) => {}
            Some(gst::MessageView::Error(e)) => panic!("error after the seek: {} {:?}", e.error(), e.debug()),
            _ => panic!("no EOS after the seek (deadlock?)"),
        }
        for (cam, f) in out.lock().unwrap().iter().enumerate() {
            // Frames before the seek, then the stream again from frame 0 to the end; each
            // run in order and gap-free.
            let o = offsets(f);
            let restart = (1..o.len())
                .find(|&i| o[i] <= o[i - 1])
                .unwrap_or_else(|| panic!("camera {cam}: the stream did not restart: {o:?}"));
            let (before, after) = o.split_at(restart);
            assert_eq!(
                before,
                (0..before.len() as u64).collect::<Vec<_>>(),
                "camera {cam}"
            );
            assert_eq!(after.first(), Some(&0), "camera {cam} restarts at frame 0: {o:?}");
            assert!(
                after.windows(2).all(|w| w[1] == w[0] + 1),
                "camera {cam} after the seek: {o:?}"
            );
            // basesrc's num-buffers counts every buffer since start, flushed ones included,
            // so the stream ends early by the frames made before the seek.
            assert!(
                after.len() >= 10,
                "camera {cam}: too few frames after the seek: {o:?}"
            );
            for frame in f {
                assert_matches_truth(cam as u32, frame);
            }
        }
    });
}

// --- 9. inference interval ------------------------------------------------------------------

#[test]
fn interval_reuses_the_last_results_per_source() {
    within(60, "interval", || {
        common::init();
        let frames = 9u64;
        let desc = infer_chain(
            "shapes-yolo-seg.toml",
            "name=infer interval=2",
            "trtmaskselect ! trtdemux name=d",
        ) + &scene_sources_and_sinks(2, frames as u32, "format=NV12,width=320,height=240");
        let p = common::parse(&desc);
        // Batch k must hold frame k of both sources for the comparison below.
        let layout = Arc::new(Mutex::new(BTreeMap::new()));
        let l = layout.clone();
        p.by_name("infer").unwrap().static_pad("src").unwrap().add_probe(
            gst::PadProbeType::BUFFER,
            move |_, info| {
                if let Some(b) = info.buffer() {
                    let batch = b.meta::<BatchMeta>().expect("batch meta");
                    let batch = batch.batch();
                    let slots: Vec<(u32, u64)> = batch
                        .slots
                        .iter()
                        .map(|s| (s.pad_index(), s.frame_number))
                        .collect();
                    l.lock().unwrap().insert(batch.batch_number, slots);
                }
                gst::PadProbeReturn::Ok
            },
        );
        let out = record_sinks(&p, 2);
        common::run_to_end(&p, gst::ClockTime::from_seconds(30)).expect("runs to EOS");
        for (k, slots) in layout.lock().unwrap().iter() {
            assert_eq!(slots.len(), 2, "batch {k}");
            assert!(slots.iter().all(|&(_, n)| n == *k), "batch {k}: {slots:?}");
        }
        for (cam, f) in out.lock().unwrap().iter().enumerate() {
            assert_eq!(offsets(f), (0..frames).collect::<Vec<_>>());
            for frame in f {
                assert!(
                    !frame.rois.is_empty(),
                    "camera {cam} frame {}: no detections",
                    frame.offset
                );
                let inferred = &f[(frame.offset - frame.offset % 3) as usize];
                if frame.offset % 3 == 0 {
                    assert_matches_truth(cam as u32, frame);
                    assert!(
                        frame.rois.iter().all(|r| r.mask.is_some()),
                        "masks on inferred frames"
                    );
                } else {
                    assert_eq!(
                        frame.rois, inferred.rois,
                        "camera {cam} frame {}: results differ from those of frame {}",
                        frame.offset, inferred.offset
                    );
                }
            }
            // The objects move: inference really ran again on frames 3 and 6.
            assert_ne!(f[0].rois, f[3].rois, "camera {cam}");
            assert_ne!(f[3].rois, f[6].rois, "camera {cam}");
        }
    });
}
