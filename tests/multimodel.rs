//! Several models on one stream set: a detector on every camera, a depth model on some
//! cameras (trtpreprocess `sources`), a landmark model on the detected objects
//! (`operate-on=objects`), each result checked against the synthetic scene's ground truth.

mod common;

use gst_video::prelude::*;
use gsttrtvision::ops::overlay::draw::colormap::{lut_index, Colormap};
use gsttrtvision::results::{FrameMask, ObjectResult};
use gsttrtvision::scene;
use gsttrtvision::trtdemux::roi;

/// Depth the synthetic depth model gives each class, and the background
/// (engines/generate_models.py).
const DEPTH_OF_CLASS: [f32; 4] = [2.0, 4.0, 6.0, 8.0];
const DEPTH_BACKGROUND: f32 = 10.0;
/// Side of the landmark model's crops.
const CROP: f32 = 64.0;

/// One output frame: camera, caps' video info, the buffer.
type Out = common::Demuxed;

/// Runs `chain` (the part between trtmux and trtdemux) on `cameras` = (format, w, h) for
/// `frames` frames; returns every demuxed frame, or the error message.
fn run(chain: &str, cameras: &[(&str, u32, u32)], frames: u32) -> Result<Vec<Out>, String> {
    common::run_demuxed(chain, "", "", cameras, frames)
}

fn cfg(name: &str) -> String {
    common::model(&format!("{}.onnx", name.trim_end_matches(".toml")));
    common::cfg(name)
}

/// Keypoint truth of one scene object (frame pixels): centroid of its pixels, mean x of its
/// topmost pixels (the rows one crop row covers) at the top edge, box corners.
fn true_keypoints(mask: &FrameMask, rows_per_crop_row: f32) -> [(f32, f32); 4] {
    let (mut sx, mut sy, mut n) = (0f64, 0f64, 0f64);
    let (mut tx, mut tn) = (0f64, 0f64);
    let mut top = None;
    for y in 0..mask.height {
        for x in 0..mask.width {
            if mask.data[(y * mask.width + x) as usize] < 128 {
                continue;
            }
            let (fx, fy) = ((mask.x + x) as f64 + 0.5, (mask.y + y) as f64 + 0.5);
            sx += fx;
            sy += fy;
            n += 1.0;
            let t = *top.get_or_insert(y);
            if ((y - t) as f32) < rows_per_crop_row.max(1.0) {
                tx += fx;
                tn += 1.0;
            }
        }
    }
    let top_y = (mask.y + top.unwrap_or(0)) as f32;
    [
        ((sx / n) as f32, (sy / n) as f32),
        ((tx / tn) as f32, top_y),
        (mask.x as f32, mask.y as f32),
        ((mask.x + mask.width) as f32, (mask.y + mask.height) as f32),
    ]
}

fn detections(b: &gst::BufferRef) -> Vec<(String, u32, [f32; 4], Vec<ObjectResult>)> {
    b.iter_meta::<gst_video::VideoRegionOfInterestMeta>()
        .map(|r| {
            let d = r.param("detection").expect("detection param");
            let f = |k: &str| d.get::<f64>(k).unwrap() as f32;
            (
                d.get::<String>("model").unwrap(),
                d.get::<u32>("class-id").unwrap(),
                [f("x0"), f("y0"), f("x1"), f("y1")],
                roi::read_secondary(&r),
            )
        })
        .collect()
}

const DETECT: &str = "trtpreprocess config-file={det} ! trtinfer model={det}";

fn detector() -> String {
    DETECT.replace("{det}", &cfg("shapes-yolo.toml"))
}

#[test]
fn landmarks_on_detected_objects_match_ground_truth() {
    let cameras = [
        ("NV12", 640, 480),
        ("RGBA", 800, 600),
        ("I420", 1280, 720),
        ("BGRx", 640, 360),
    ];
    let chain = format!(
        "{} ! trtinfer model={} operate-on=objects operate-on-model=shapes-yolo max-batch=3",
        detector(),
        cfg("shapes-landmarks.toml")
    );
    let frames = 4;
    let outs = run(&chain, &cameras, frames).expect("pipeline runs");
    assert_eq!(outs.len(), cameras.len() * frames as usize);
    let (mut objects, mut worst) = (0, 0f32);
    for o in &outs {
        let (w, h) = (o.info.width(), o.info.height());
        let truth = scene::scene_objects(o.camera, o.buffer.offset(), w, h);
        let dets = detections(&o.buffer);
        assert_eq!(
            dets.len(),
            truth.len(),
            "camera {} frame {}",
            o.camera,
            o.buffer.offset()
        );
        for (model, class, b, secondary) in &dets {
            assert_eq!(model, "shapes-yolo");
            assert_eq!(
                secondary.len(),
                1,
                "one secondary result per object: {secondary:?}"
            );
            let r = &secondary[0];
            assert_eq!(&*r.model, "shapes-landmarks");
            let attr = r.attribute.as_ref().expect("a colour attribute");
            assert_eq!(
                attr.class_id, *class,
                "the crop's colour is the detection's class"
            );
            assert!(attr.score > 0.95, "colour share {}", attr.score);
            let obj = truth
                .iter()
                .find(|t| t.class_id == *class)
                .expect("class in the scene");
            let mask = scene::object_mask(obj, w, h);
            // One crop pixel in frame pixels, per axis (the box is stretched to 64x64).
            let (cx, cy) = ((b[2] - b[0]) / CROP, (b[3] - b[1]) / CROP);
            let expected = true_keypoints(&mask, cy);
            let names: Vec<&str> = r.keypoints.iter().map(|k| &*k.name).collect();
            assert_eq!(names, ["centroid", "top", "top-left", "bottom-right"]);
            for (k, (p, t)) in r.keypoints.iter().zip(expected).enumerate() {
                // The detector's box is within 2 frame pixels of the truth on these sizes;
                // the crop adds its own resolution: 0.25 crop pixel for the centroid, 1.5
                // for the extreme points.
                let cells = if k == 0 { 0.25 } else { 1.5 };
                let (ex, ey) = (
                    (p.x - t.0).abs() / (cells * cx + 2.0),
                    (p.y - t.1).abs() / (cells * cy + 2.0),
                );
                worst = worst.max(ex).max(ey);
                assert!(
                    ex <= 1.0 && ey <= 1.0,
                    "camera {} frame {} class {class} keypoint {}: ({}, {}) vs truth {t:?} (box {b:?})",
                    o.camera,
                    o.buffer.offset(),
                    p.name,
                    p.x,
                    p.y
                );
            }
            objects += 1;
        }
    }
    assert!(objects > outs.len(), "several objects per frame");
    eprintln!("{objects} objects, worst keypoint error {worst:.2} of its tolerance");
}

/// Values of the dense map `field` of a frame's TrtVisionTensorMeta with its placement.
struct Dense {
    values: Vec<f32>,
    shape: Vec<u64>,
    scale: (f64, f64),
    pad: (f64, f64),
    model: (u32, u32),
}

fn dense(b: &gst::BufferRef, field: &str) -> Option<Dense> {
    let meta = gst::meta::CustomMeta::from_buffer(b, roi::TENSOR_META).ok()?;
    let t = meta.structure().get::<gst::Structure>(field).ok()?;
    assert_eq!(t.get::<String>("kind").unwrap(), "dense");
    let data: gst::glib::Bytes = t.get("data").unwrap();
    let shape: Vec<u64> = t
        .get::<gst::Array>("shape")
        .unwrap()
        .iter()
        .map(|v| v.get::<u64>().unwrap())
        .collect();
    Some(Dense {
        values: data
            .chunks_exact(4)
            .map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        shape,
        scale: (t.get("scale-x").unwrap(), t.get("scale-y").unwrap()),
        pad: (t.get("pad-x").unwrap(), t.get("pad-y").unwrap()),
        model: (t.get("model-width").unwrap(), t.get("model-height").unwrap()),
    })
}

/// Class of frame pixel (x, y) in the scene (None = background) and whether all pixels
/// within `margin` share it.
fn scene_class(
    masks: &[(u32, FrameMask)],
    x: u32,
    y: u32,
    margin: i64,
    w: u32,
    h: u32,
) -> (Option<u32>, bool) {
    let at = |x: i64, y: i64| -> Option<u32> {
        if x < 0 || y < 0 || x >= w as i64 || y >= h as i64 {
            return None;
        }
        masks
            .iter()
            .find(|(_, m)| m.contains(x as u32, y as u32))
            .map(|(c, _)| *c)
    };
    let c = at(x as i64, y as i64);
    let uniform =
        (-margin..=margin).all(|dy| (-margin..=margin).all(|dx| at(x as i64 + dx, y as i64 + dy) == c));
    (c, uniform)
}

#[test]
fn depth_on_camera_0_only_detections_on_all_models_kept_apart() {
    // Camera 0: RGB camera with detector and depth; cameras 1-2: "SLAM" cameras, detector only.
    let cameras = [("RGBA", 640, 480), ("NV12", 640, 480), ("I420", 1280, 720)];
    let depth = cfg("shapes-depth.toml");
    let chain = format!(
        "{} ! trtpreprocess config-file={depth} sources=0 ! trtinfer model={depth}",
        detector()
    );
    let frames = 3;
    let outs = run(&chain, &cameras, frames).expect("pipeline runs");
    assert_eq!(outs.len(), cameras.len() * frames as usize);
    for o in &outs {
        let (w, h) = (o.info.width(), o.info.height());
        let truth = scene::scene_objects(o.camera, o.buffer.offset(), w, h);
        let dets = detections(&o.buffer);
        assert_eq!(dets.len(), truth.len(), "detections on every camera");
        assert!(dets.iter().all(|d| d.0 == "shapes-yolo" && d.3.is_empty()));
        let map = dense(&o.buffer, "shapes-depth/depth");
        if o.camera != 0 {
            assert!(map.is_none(), "camera {} has no depth", o.camera);
            continue;
        }
        let map = map.expect("camera 0 has a depth map");
        assert_eq!(map.shape, [1, 1, 320, 320]);
        assert_eq!(map.model, (320, 320));
        let masks: Vec<(u32, FrameMask)> = truth
            .iter()
            .map(|t| (t.class_id, scene::object_mask(t, w, h)))
            .collect();
        let (mut checked, mut wrong) = (0, 0);
        for y in (0..h).step_by(3) {
            for x in (0..w).step_by(3) {
                let (class, uniform) = scene_class(&masks, x, y, 3, w, h);
                if !uniform {
                    continue;
                }
                let u = ((x as f64 + 0.5) * map.scale.0 + map.pad.0) as usize;
                let v = ((y as f64 + 0.5) * map.scale.1 + map.pad.1) as usize;
                let got = map.values[v * 320 + u];
                let want = class.map_or(DEPTH_BACKGROUND, |c| DEPTH_OF_CLASS[c as usize]);
                checked += 1;
                wrong += (got != want) as usize;
            }
        }
        assert!(
            checked > 10_000 && wrong == 0,
            "{wrong} of {checked} depth samples differ from the scene"
        );
    }
}

#[test]
fn overlay_draws_the_depth_colour_map() {
    let depth = cfg("shapes-depth.toml");
    let (w, h) = (640u32, 480u32);
    for (colormap, range) in [("gray", (0.0f32, 10.0f32)), ("turbo", (2.0, 10.0))] {
        let chain = format!(
            "trtpreprocess config-file={depth} ! trtinfer model={depth} ! trtoverlay dense-colormap={colormap} dense-alpha=1 dense-range={},{}",
            range.0, range.1
        );
        let outs = run(&chain, &[("RGBA", w, h)], 2).expect("pipeline runs");
        let cmap = Colormap::parse(colormap).unwrap();
        for o in &outs {
            let truth = scene::scene_objects(0, o.buffer.offset(), w, h);
            let masks: Vec<(u32, FrameMask)> = truth
                .iter()
                .map(|t| (t.class_id, scene::object_mask(t, w, h)))
                .collect();
            let frame =
                gst_video::VideoFrameRef::from_buffer_ref_readable(o.buffer.as_ref(), &o.info).unwrap();
            let data = frame.plane_data(0).unwrap();
            let stride = frame.plane_stride()[0] as usize;
            let (mut checked, mut classes) = (0, std::collections::HashSet::new());
            for y in (0..h).step_by(4) {
                for x in (0..w).step_by(4) {
                    let (class, uniform) = scene_class(&masks, x, y, 3, w, h);
                    if !uniform {
                        continue;
                    }
                    let value = class.map_or(DEPTH_BACKGROUND, |c| DEPTH_OF_CLASS[c as usize]);
                    let k = lut_index(value, range.0, range.1);
                    let want = cmap.rgb(k as f32 / 255.0);
                    let p = &data[y as usize * stride + x as usize * 4..][..3];
                    assert_eq!(p, want, "{colormap}: pixel ({x}, {y}) of class {class:?}");
                    checked += 1;
                    classes.insert(class);
                }
            }
            assert!(
                checked > 5000 && classes.len() >= 3,
                "{checked} pixels of {} classes",
                classes.len()
            );
        }
    }
}

#[test]
fn object_selection_classes_size_and_cap() {
    let cameras = [("RGBA", 640, 480), ("RGBA", 640, 480)];
    let lm = cfg("shapes-landmarks.toml");
    let count = |extra: &str| -> (usize, usize, Vec<u32>) {
        let chain = format!(
            "{} ! trtinfer model={lm} operate-on=objects operate-on-model=shapes-yolo {extra}",
            detector()
        );
        let outs = run(&chain, &cameras, 2).expect("pipeline runs");
        let mut with = 0;
        let mut total = 0;
        let mut classes = Vec::new();
        for o in &outs {
            for d in detections(&o.buffer) {
                total += 1;
                if !d.3.is_empty() {
                    with += 1;
                    classes.push(d.1);
                }
            }
        }
        (with, total, classes)
    };
    let (with, total, _) = count("");
    assert_eq!(with, total, "every object without a filter");
    let (with, _, classes) = count("operate-on-classes=0,2");
    assert!(
        with > 0 && classes.iter().all(|c| *c == 0 || *c == 2),
        "{classes:?}"
    );
    let (with, _, _) = count("min-object-size=10000");
    assert_eq!(with, 0, "no object is that large");
    // One crop per batch of 2 frames, 2 batches.
    let (with, total, _) = count("max-objects-per-batch=1");
    assert!(total > 2);
    assert_eq!(with, 2);
}

#[test]
fn json_export_carries_keypoints_and_dense_summaries() {
    let path = common::temp_path("multimodel", "out.jsonl");
    let depth = cfg("shapes-depth.toml");
    let chain = format!(
        "{} ! trtpreprocess config-file={depth} ! trtinfer model={depth} ! trtinfer model={} operate-on=objects operate-on-model=shapes-yolo ! trtjsonexport location={}",
        detector(),
        cfg("shapes-landmarks.toml"),
        path.display()
    );
    run(&chain, &[("RGBA", 640, 480)], 2).expect("pipeline runs");
    let text = std::fs::read_to_string(&path).unwrap();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let dense = &v["dense"][0];
        assert_eq!(dense["model"], "shapes-depth");
        let min = dense["min"].as_f64().unwrap();
        assert!(
            DEPTH_OF_CLASS.contains(&(min as f32)),
            "the nearest object's depth, got {min}"
        );
        assert_eq!(dense["max"].as_f64().unwrap(), 10.0);
        for d in v["detections"].as_array().unwrap() {
            let s = &d["secondary"][0];
            assert_eq!(s["model"], "shapes-landmarks");
            assert_eq!(s["keypoints"].as_array().unwrap().len(), 4);
            assert_eq!(s["attribute"]["class_id"], d["class_id"]);
        }
    }
}

#[test]
fn bad_configurations_are_clear_errors() {
    let lm = cfg("shapes-landmarks.toml");
    let det = cfg("shapes-yolo.toml");
    let cam = [("RGBA", 320, 240)];
    let cases = [
        (
            format!(
                "{} ! trtinfer model={lm} operate-on=objects operate-on-model=nope",
                detector()
            ),
            "operate-on-model 'nope' has not run on this batch",
        ),
        (
            format!(
                "trtinfer model={lm} operate-on=objects operate-on-model=shapes-yolo ! {}",
                detector()
            ),
            "models that ran: none",
        ),
        (
            format!("{} ! trtinfer model={lm}", detector()),
            "set operate-on=objects",
        ),
        (
            format!(
                "{} ! trtinfer model={det} model-name=second operate-on=objects",
                detector()
            ),
            "need the landmarks parser",
        ),
        (
            format!(
                "{} ! trtinfer model={lm} operate-on=objects operate-on-classes=red",
                detector()
            ),
            "operate-on-classes must be comma-separated class ids",
        ),
        (
            format!(
                "{} ! trtinfer model={lm} operate-on=objects operate-on-model=shapes-landmarks",
                detector()
            ),
            "names this element's own model",
        ),
    ];
    for (chain, want) in cases {
        let err = match run(&chain, &cam, 2) {
            Ok(_) => panic!("'{chain}' ran without an error"),
            Err(e) => e,
        };
        assert!(
            err.contains(want),
            "'{chain}': error '{err}' does not say '{want}'"
        );
    }
}
