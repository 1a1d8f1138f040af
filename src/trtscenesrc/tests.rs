//! Harness tests: negotiation, timestamps/offsets, and pixels against the ground truth.

use super::SceneSrc;
use crate::scene;
use crate::video::FrameReader;
use gst::prelude::*;
use std::sync::Once;

fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        gst::init().unwrap();
        // No plugin here: register the type directly for the tests.
        gst::Element::register(None, "trtscenesrc", gst::Rank::NONE, SceneSrc::static_type()).unwrap();
    });
}

fn harness(camera: u32, caps: &str) -> gst_check::Harness {
    init();
    let mut h = gst_check::Harness::new("trtscenesrc");
    h.element().unwrap().set_property("camera", camera);
    h.set_sink_caps_str(caps);
    h.play();
    h
}

#[test]
fn default_caps_are_rgba_640x480_30fps() {
    init();
    let mut h = gst_check::Harness::new("trtscenesrc");
    h.play();
    let buf = h.pull().unwrap();
    let caps = h.sinkpad().unwrap().current_caps().unwrap();
    let info = gst_video::VideoInfo::from_caps(&caps).unwrap();
    assert_eq!(info.format(), gst_video::VideoFormat::Rgba);
    assert_eq!((info.width(), info.height()), (640, 480));
    assert_eq!(info.fps(), gst::Fraction::new(30, 1));
    assert_eq!(buf.size(), 640 * 480 * 4);
}

#[test]
fn offsets_and_timestamps_follow_frame_index() {
    let mut h = harness(1, "video/x-raw,format=I420,width=64,height=48,framerate=25/1");
    for n in 0..4u64 {
        let buf = h.pull().unwrap();
        assert_eq!(buf.offset(), n);
        assert_eq!(buf.offset_end(), n + 1);
        assert_eq!(buf.pts(), Some(gst::ClockTime::from_mseconds(40 * n)));
        assert_eq!(buf.duration(), Some(gst::ClockTime::from_mseconds(40)));
    }
}

#[test]
fn pixels_match_ground_truth_in_every_format() {
    for format in ["NV12", "I420", "RGB", "BGR", "RGBA", "BGRA", "RGBx", "BGRx"] {
        let (w, h) = (321u32, 181u32);
        let caps = format!("video/x-raw,format={format},width={w},height={h},framerate=30/1");
        let mut hs = harness(3, &caps);
        for _ in 0..2 {
            let buf = hs.pull().unwrap();
            let info =
                gst_video::VideoInfo::from_caps(&hs.sinkpad().unwrap().current_caps().unwrap()).unwrap();
            let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buf.as_ref(), &info).unwrap();
            let reader = FrameReader::new(&frame).unwrap();
            let objs = scene::scene_objects(3, buf.offset(), w, h);
            assert!(objs.len() >= 2);
            let tol = if format == "NV12" || format == "I420" {
                4
            } else {
                0
            };
            for o in &objs {
                let m = scene::object_mask(o, w, h);
                // A pixel whose whole 2x2 chroma block is inside the object.
                let (cx, cy) = ((m.x + m.width / 2) & !1, (m.y + m.height * 3 / 4) & !1);
                assert!(m.contains(cx, cy) && m.contains(cx + 1, cy + 1));
                let got = reader.rgb_at(cx, cy);
                let want = scene::CLASS_COLORS[o.class_id as usize];
                for k in 0..3 {
                    assert!((got[k] as i32 - want[k] as i32).abs() <= tol, "{format} {got:?}");
                }
            }
            let bg = reader.rgb_at(0, 0);
            if !objs.iter().any(|o| o.bbox.x0 < 2.0 && o.bbox.y0 < 2.0) {
                assert!((bg[0] as i32 - scene::BACKGROUND[0] as i32).abs() <= tol);
            }
        }
    }
}

#[test]
fn camera_property_roundtrip() {
    init();
    let e = gst::ElementFactory::make("trtscenesrc")
        .property("camera", 7u32)
        .property("is-live", true)
        .build()
        .unwrap();
    assert_eq!(e.property::<u32>("camera"), 7);
    assert!(e.property::<bool>("is-live"));
}

#[test]
fn seek_moves_to_the_frame_at_that_time() {
    let mut h = harness(0, "video/x-raw,format=RGBA,width=32,height=24,framerate=10/1");
    assert_eq!(h.pull().unwrap().offset(), 0);
    let seek = gst::event::Seek::new(
        1.0,
        gst::SeekFlags::FLUSH,
        gst::SeekType::Set,
        gst::ClockTime::from_seconds(2),
        gst::SeekType::None,
        gst::ClockTime::NONE,
    );
    assert!(h.push_upstream_event(seek));
    // Buffers queued before the flush may still be in the harness; skip them.
    let buf = (0..50)
        .map(|_| h.pull().unwrap())
        .find(|b| b.offset() >= 20)
        .unwrap();
    assert_eq!(buf.offset(), 20);
    assert_eq!(buf.pts(), Some(gst::ClockTime::from_seconds(2)));
}
