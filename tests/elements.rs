//! Element behaviour checked on real pipelines: overlay pixels, demux timestamps and ROI
//! meta, mask statistics, JSON export, tiler output.

mod common;

use gst::glib;
use gst::prelude::*;
use gst_video::prelude::*;
use gsttrtvision::ops::overlay::draw::class_color;
use gsttrtvision::scene;

/// One RGBA camera through the chain with the given overlay settings; returns the output
/// frames (with ROI meta) of source 0.
fn overlay_run(model: &str, overlay: &str, format: &str) -> Vec<gst::Sample> {
    common::init();
    let p = common::parse(&format!(
        "trtmux name=m ! trtpreprocess config-file={c} ! trtinfer model={c} ! trtmaskselect ! trtoverlay {overlay} \
         ! trtdemux name=d trtscenesrc camera=2 num-buffers=4 ! video/x-raw,format={format},width=640,height=480 ! m.sink_0 \
         d.src_0 ! queue ! appsink name=out sync=false",
        c = common::cfg(model)
    ));
    let samples = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = p.by_name("out").unwrap().downcast::<gst_app::AppSink>().unwrap();
    let s2 = samples.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                s2.lock()
                    .unwrap()
                    .push(s.pull_sample().map_err(|_| gst::FlowError::Eos)?);
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    common::run_to_end(&p, gst::ClockTime::from_seconds(60)).unwrap();
    let out = std::mem::take(&mut *samples.lock().unwrap());
    out
}

fn rgba_at(frame: &gst_video::VideoFrameRef<&gst::BufferRef>, x: u32, y: u32) -> [u8; 3] {
    let stride = frame.plane_stride()[0] as usize;
    let d = frame.plane_data(0).unwrap();
    let i = y as usize * stride + x as usize * 4;
    [d[i], d[i + 1], d[i + 2]]
}

#[test]
fn overlay_draws_box_outlines_in_class_colours() {
    let samples = overlay_run(
        "shapes-yolo.toml",
        "line-width=3 draw-labels=false draw-masks=false",
        "RGBA",
    );
    assert_eq!(samples.len(), 4);
    let mut checked = 0;
    for s in &samples {
        let buf = s.buffer().unwrap();
        let info = gst_video::VideoInfo::from_caps(s.caps().unwrap()).unwrap();
        let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buf, &info).unwrap();
        let truth = scene::scene_objects(2, buf.offset(), 640, 480);
        for roi in buf.iter_meta::<gst_video::VideoRegionOfInterestMeta>() {
            let d = roi.param("detection").unwrap();
            let class = d.get::<u32>("class-id").unwrap();
            let (x0, y0) = (
                d.get::<f64>("x0").unwrap().round() as u32,
                d.get::<f64>("y0").unwrap().round() as u32,
            );
            let (x1, y1) = (
                d.get::<f64>("x1").unwrap().round() as u32,
                d.get::<f64>("y1").unwrap().round() as u32,
            );
            let want = class_color(class);
            // The three outermost rows/columns of the box carry the class colour.
            for k in 0..3 {
                assert_eq!(rgba_at(&frame, (x0 + x1) / 2, y0 + k), want, "top edge row {k}");
                assert_eq!(
                    rgba_at(&frame, (x0 + x1) / 2, y1 - 1 - k),
                    want,
                    "bottom edge row {k}"
                );
                assert_eq!(
                    rgba_at(&frame, x0 + k, (y0 + y1) / 2),
                    want,
                    "left edge column {k}"
                );
                assert_eq!(
                    rgba_at(&frame, x1 - 1 - k, (y0 + y1) / 2),
                    want,
                    "right edge column {k}"
                );
            }
            // Inside, the object is untouched (no mask drawn).
            let obj = truth.iter().find(|o| o.class_id == class).unwrap();
            let m = scene::object_mask(obj, 640, 480);
            let (cx, cy) = ((x0 + x1) / 2, (y0 + y1) / 2);
            if m.contains(cx, cy) {
                assert_eq!(rgba_at(&frame, cx, cy), scene::CLASS_COLORS[class as usize]);
            }
            // Outside the box, the background is untouched.
            if x0 >= 2 {
                assert_eq!(rgba_at(&frame, x0 - 2, (y0 + y1) / 2), scene::BACKGROUND);
            }
            checked += 1;
        }
    }
    assert!(checked >= 8, "only {checked} boxes checked");
}

#[test]
fn overlay_blends_masks_with_alpha() {
    let samples = overlay_run(
        "shapes-yolo-seg.toml",
        "draw-boxes=false draw-labels=false mask-alpha=0.5",
        "RGBA",
    );
    let mut checked = 0;
    for s in &samples {
        let buf = s.buffer().unwrap();
        let info = gst_video::VideoInfo::from_caps(s.caps().unwrap()).unwrap();
        let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buf, &info).unwrap();
        for roi in buf.iter_meta::<gst_video::VideoRegionOfInterestMeta>() {
            let class = roi.param("detection").unwrap().get::<u32>("class-id").unwrap();
            let mask = gsttrtvision::trtdemux::roi::read_mask(&roi).expect("mask attached");
            // A pixel well inside the mask: average of object and class colour.
            let (cx, cy) = (mask.x + mask.width / 2, mask.y + mask.height * 2 / 3);
            if !mask.contains(cx, cy) {
                continue;
            }
            let got = rgba_at(&frame, cx, cy);
            let (a, b) = (scene::CLASS_COLORS[class as usize], class_color(class));
            for c in 0..3 {
                let want = (a[c] as f32 + b[c] as f32) / 2.0;
                assert!(
                    (got[c] as f32 - want).abs() <= 2.0,
                    "channel {c}: {} vs {want}",
                    got[c]
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 4, "only {checked} masks checked");
}

#[test]
fn overlay_on_nv12_changes_luma_on_outlines() {
    let samples = overlay_run("shapes-yolo.toml", "line-width=2 draw-labels=false", "NV12");
    let s = &samples[0];
    let buf = s.buffer().unwrap();
    let info = gst_video::VideoInfo::from_caps(s.caps().unwrap()).unwrap();
    let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buf, &info).unwrap();
    let y_plane = frame.plane_data(0).unwrap();
    let stride = frame.plane_stride()[0] as usize;
    let roi = buf
        .iter_meta::<gst_video::VideoRegionOfInterestMeta>()
        .next()
        .expect("a detection");
    let d = roi.param("detection").unwrap();
    let class = d.get::<u32>("class-id").unwrap();
    let (x0, y0, x1) = (
        d.get::<f64>("x0").unwrap().round() as usize,
        d.get::<f64>("y0").unwrap().round() as usize,
        d.get::<f64>("x1").unwrap().round() as usize,
    );
    let want = gsttrtvision::video::color::YuvCoefficients::BT601_LIMITED.rgb_to_yuv(class_color(class))[0];
    let got = y_plane[y0 * stride + (x0 + x1) / 2];
    assert!((got as i32 - want as i32).abs() <= 2, "luma {got} vs {want}");
}

#[test]
fn demux_restores_timestamps_and_attaches_roi_meta() {
    common::init();
    let p = common::parse(&format!(
        "trtmux name=m ! trtpreprocess config-file={c} ! trtinfer model={c} ! trtdemux name=d \
         trtscenesrc camera=0 num-buffers=5 ! video/x-raw,width=320,height=240,framerate=25/1 ! m.sink_0 \
         trtscenesrc camera=1 num-buffers=5 ! video/x-raw,width=640,height=360,framerate=10/1 ! m.sink_1 \
         d.src_0 ! queue ! appsink name=a sync=false d.src_1 ! queue ! appsink name=b sync=false",
        c = common::cfg("shapes-yolo.toml")
    ));
    let a = common::collect(&p, "a");
    let b = common::collect(&p, "b");
    common::run_to_end(&p, gst::ClockTime::from_seconds(30)).unwrap();
    for (bufs, fps, cam, (w, h)) in [(a, 25u64, 0u32, (320u32, 240u32)), (b, 10, 1, (640, 360))] {
        let bufs = bufs.lock().unwrap();
        assert_eq!(bufs.len(), 5);
        for (i, buf) in bufs.iter().enumerate() {
            assert_eq!(buf.offset(), i as u64);
            assert_eq!(
                buf.pts(),
                Some(gst::ClockTime::SECOND.mul_div_floor(i as u64, fps).unwrap())
            );
            let rois: Vec<_> = buf.iter_meta::<gst_video::VideoRegionOfInterestMeta>().collect();
            assert_eq!(rois.len(), scene::scene_objects(cam, i as u64, w, h).len());
            for roi in rois {
                let d = roi.param("detection").unwrap();
                assert_eq!(d.get::<&str>("model").unwrap(), "shapes-yolo");
                assert_eq!(roi.roi_type(), d.get::<&str>("label").unwrap());
                assert!(d.get::<f64>("confidence").unwrap() > 0.5);
                assert_eq!(d.get::<i64>("object-id").unwrap(), -1);
            }
        }
    }
}

#[test]
fn maskselect_counts_bytes_and_limits_top_k() {
    common::init();
    let p = common::parse(&format!(
        "trtmux name=m ! trtpreprocess config-file={c} ! trtinfer model={c} ! trtmaskselect name=ms threshold=0.95 \
         ! fakesink trtscenesrc camera=0 num-buffers=3 ! video/x-raw,width=320,height=240 ! m.sink_0",
        c = common::cfg("shapes-yolo-seg.toml")
    ));
    common::run_to_end(&p, gst::ClockTime::from_seconds(30)).unwrap();
    let ms = p.by_name("ms").unwrap();
    let produced: u64 = ms.property("bytes-produced");
    // Threshold above every confidence (0.9 for this model): prototypes produced, no mask kept.
    assert_eq!(produced, 3 * 32 * 160 * 160 * 4);
    assert_eq!(ms.property::<u64>("bytes-kept"), 0);

    let p = common::parse(&format!(
        "trtmux name=m ! trtpreprocess config-file={c} ! trtinfer model={c} ! trtmaskselect name=ms \
         ! fakesink trtscenesrc camera=0 num-buffers=3 ! video/x-raw,width=320,height=240 ! m.sink_0",
        c = common::cfg("shapes-detr.toml")
    ));
    common::run_to_end(&p, gst::ClockTime::from_seconds(30)).unwrap();
    let ms = p.by_name("ms").unwrap();
    let kept: u64 = ms.property("bytes-kept");
    let expected: u64 = (0..3)
        .flat_map(|f| scene::scene_objects(0, f, 320, 240))
        .map(|o| {
            let (_, _, w, h) = o.bbox.to_pixel_rect(320, 240);
            (w * h) as u64
        })
        .sum();
    // Kept masks are cropped to the detected boxes, which match the objects within a pixel.
    assert!(
        kept > 0 && (kept as f64 - expected as f64).abs() / (expected as f64) < 0.15,
        "{kept} vs {expected}"
    );
    assert!(kept * 20 < ms.property::<u64>("bytes-produced"));
}

#[test]
fn json_export_writes_one_line_per_frame() {
    common::init();
    let path = std::env::temp_dir().join(format!("trtvision-json-{}.jsonl", std::process::id()));
    let p = common::parse(&format!(
        "trtmux name=m ! trtpreprocess config-file={c} ! trtinfer model={c} ! trtmaskselect ! trtjsonexport location={out} \
         ! fakesink trtscenesrc camera=0 num-buffers=4 ! video/x-raw,width=320,height=240 ! m.sink_0 \
         trtscenesrc camera=1 num-buffers=4 ! video/x-raw,width=320,height=240 ! m.sink_1",
        c = common::cfg("shapes-yolo-seg.toml"),
        out = path.display()
    ));
    common::run_to_end(&p, gst::ClockTime::from_seconds(30)).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 8);
    for l in &lines {
        let (src, frame) = (l["source"].as_u64().unwrap() as u32, l["frame"].as_u64().unwrap());
        let dets = l["detections"].as_array().unwrap();
        assert_eq!(dets.len(), scene::scene_objects(src, frame, 320, 240).len());
        for d in dets {
            assert_eq!(d["bbox"].as_array().unwrap().len(), 4);
            assert!(d["mask"]["area"].as_u64().unwrap() > 0);
        }
    }
    let _ = std::fs::remove_file(&path);
}

#[test]
fn tiler_places_each_source_in_its_tile() {
    common::init();
    let p = common::parse(
        "trtmux name=m ! trttiler columns=2 rows=1 width=640 height=240 ! video/x-raw,format=RGBA ! appsink name=out sync=false \
         videotestsrc num-buffers=3 pattern=red ! video/x-raw,width=320,height=240 ! m.sink_0 \
         videotestsrc num-buffers=3 pattern=blue ! video/x-raw,width=160,height=120 ! m.sink_1",
    );
    let out = common::collect(&p, "out");
    common::run_to_end(&p, gst::ClockTime::from_seconds(30)).unwrap();
    let out = out.lock().unwrap();
    assert_eq!(out.len(), 3);
    let map = out[0].map_readable().unwrap();
    let px = |x: usize, y: usize| &map[(y * 640 + x) * 4..(y * 640 + x) * 4 + 3];
    assert_eq!(px(160, 120), &[255, 0, 0]);
    assert_eq!(px(480, 120), &[0, 0, 255]);
}

#[test]
fn raw_parser_tensors_reach_frames_as_custom_meta() {
    common::init();
    let p = common::parse(&format!(
        "trtmux name=m ! trtpreprocess config-file={c} ! trtinfer model={c} parser=raw ! trtdemux name=d \
         trtscenesrc camera=0 num-buffers=2 ! video/x-raw,width=320,height=240 ! m.sink_0 \
         d.src_0 ! queue ! appsink name=out sync=false",
        c = common::cfg("shapes-yolo.toml")
    ));
    let out = common::collect(&p, "out");
    common::run_to_end(&p, gst::ClockTime::from_seconds(30)).unwrap();
    let out = out.lock().unwrap();
    assert_eq!(out.len(), 2);
    for buf in out.iter() {
        let meta = gst::meta::CustomMeta::from_buffer(buf, gsttrtvision::trtdemux::roi::TENSOR_META)
            .expect("tensor meta");
        let t = meta
            .structure()
            .get::<gst::Structure>("shapes-yolo/output0")
            .expect("output0");
        assert_eq!(t.get::<&str>("dtype").unwrap(), "f32");
        let shape: Vec<u64> = t
            .get::<gst::Array>("shape")
            .unwrap()
            .iter()
            .map(|v| v.get::<u64>().unwrap())
            .collect();
        assert_eq!(shape, vec![1, 8, 8400]);
        let data = t.get::<glib::Bytes>("data").unwrap();
        assert_eq!(data.len(), 8 * 8400 * 4);
        // The raw YOLO output holds the red square's score (0.9) at anchor 0 of class row 4.
        let scores: Vec<f32> = data
            .chunks_exact(4)
            .map(|c| f32::from_ne_bytes(c.try_into().unwrap()))
            .collect();
        assert!(scores[4 * 8400..5 * 8400].iter().any(|&s| (s - 0.9).abs() < 1e-3));
        // No detections were parsed.
        assert_eq!(buf.iter_meta::<gst_video::VideoRegionOfInterestMeta>().count(), 0);
    }
}

#[test]
fn overlay_device_property() {
    common::init();
    let o = gst::ElementFactory::make("trtoverlay").build().unwrap();
    assert_eq!(common::enum_nick(&o, "device"), "auto");
    o.set_property_from_str("device", "cpu");
    assert_eq!(common::enum_nick(&o, "device"), "cpu");
    assert_eq!(o.property::<u64>("gpu-frames"), 0);
}

#[test]
fn infer_download_dense_property() {
    common::init();
    let i = gst::ElementFactory::make("trtinfer").build().unwrap();
    assert!(
        !i.property::<bool>("download-dense"),
        "dense maps stay on the GPU by default"
    );
    i.set_property("download-dense", true);
    assert!(i.property::<bool>("download-dense"));
    assert_eq!(i.property::<u64>("d2h-bytes"), 0, "nothing copied before start");
}
