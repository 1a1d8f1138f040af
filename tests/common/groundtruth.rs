//! The synthetic 8-camera pipeline (trtscenesrc x 8 -> trtmux -> trtpreprocess ->
//! trtinfer -> trtmaskselect -> trtdemux) and its check against the scene's ground truth.

use gst::prelude::*;
use gsttrtvision::geometry::BoxF;
use gsttrtvision::results::FrameMask;
use gsttrtvision::scene;
use gsttrtvision::trtdemux::roi;
use std::sync::{Arc, Mutex};

/// (format, width, height) of the eight cameras.
pub const CAMERAS: [(&str, u32, u32); 8] = [
    ("NV12", 640, 480),
    ("NV12", 1280, 720),
    ("I420", 640, 480),
    ("RGBA", 800, 600),
    ("NV12", 1920, 1080),
    ("BGRx", 640, 360),
    ("I420", 480, 640),
    ("RGB", 320, 240),
];

#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub camera: u32,
    pub frame: u64,
    pub width: u32,
    pub height: u32,
    pub detections: Vec<(u32, BoxF, f64, Option<FrameMask>)>,
}

pub fn mask_iou(a: &FrameMask, b: &FrameMask) -> f64 {
    a.iou(b)
}

/// Runs the pipeline with `model` (a config in engines/) for `frames` frames per camera;
/// `infer` and `extra` are added to the trtinfer and trtmaskselect properties.
pub fn run_pipeline(model: &str, frames: u32, infer: &str, extra: &str) -> Vec<Seen> {
    super::init();
    let cfg = super::engines_dir().join(model);
    let mut desc = format!(
        "trtmux name=m batch-size=8 ! trtpreprocess config-file={cfg} ! trtinfer model={cfg} {infer} ! trtmaskselect {extra} ! trtdemux name=d",
        cfg = cfg.display()
    );
    for (i, (fmt, w, h)) in CAMERAS.iter().enumerate() {
        desc += &format!(
            " trtscenesrc camera={i} num-buffers={frames} ! video/x-raw,format={fmt},width={w},height={h},framerate=30/1 ! m.sink_{i} \
              d.src_{i} ! queue ! appsink name=out{i} sync=false"
        );
    }
    let p = super::parse(&desc);
    let seen = Arc::new(Mutex::new(Vec::new()));
    for i in 0..CAMERAS.len() {
        let sink = p
            .by_name(&format!("out{i}"))
            .unwrap()
            .downcast::<gst_app::AppSink>()
            .unwrap();
        let seen = seen.clone();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let buf = sample.buffer().unwrap();
                    let info = gst_video::VideoInfo::from_caps(sample.caps().unwrap()).unwrap();
                    let detections = buf
                        .iter_meta::<gst_video::VideoRegionOfInterestMeta>()
                        .map(|roi| {
                            let d = roi.param("detection").expect("detection param");
                            let b = BoxF::new(
                                d.get::<f64>("x0").unwrap() as f32,
                                d.get::<f64>("y0").unwrap() as f32,
                                d.get::<f64>("x1").unwrap() as f32,
                                d.get::<f64>("y1").unwrap() as f32,
                            );
                            (
                                d.get::<u32>("class-id").unwrap(),
                                b,
                                d.get::<f64>("confidence").unwrap(),
                                roi::read_mask(&roi),
                            )
                        })
                        .collect();
                    seen.lock().unwrap().push(Seen {
                        camera: i as u32,
                        frame: buf.offset(),
                        width: info.width(),
                        height: info.height(),
                        detections,
                    });
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
    }
    super::run_to_end(&p, gst::ClockTime::from_seconds(120)).expect("pipeline runs to EOS");
    let out = std::mem::take(&mut *seen.lock().unwrap());
    out
}

/// Every ground-truth object found once with IoU ≥ 0.9 and the right class, nothing else;
/// masks (when expected) with IoU ≥ 0.8.
pub fn check_against_ground_truth(seen: &[Seen], frames: u32, masks: bool) {
    assert_eq!(
        seen.len(),
        CAMERAS.len() * frames as usize,
        "every frame of every camera comes out"
    );
    let (mut objects, mut worst_box, mut worst_mask) = (0, 1.0f32, 1.0f64);
    for s in seen {
        let (_, w, h) = CAMERAS[s.camera as usize];
        assert_eq!((s.width, s.height), (w, h));
        let truth = scene::scene_objects(s.camera, s.frame, w, h);
        assert_eq!(
            s.detections.len(),
            truth.len(),
            "camera {} frame {}: {} detections for {} objects: {:?}",
            s.camera,
            s.frame,
            s.detections.len(),
            truth.len(),
            s.detections.iter().map(|d| (d.0, d.1)).collect::<Vec<_>>()
        );
        for obj in &truth {
            objects += 1;
            let det = s
                .detections
                .iter()
                .find(|d| d.0 == obj.class_id)
                .unwrap_or_else(|| {
                    panic!(
                        "camera {} frame {}: class {} missed",
                        s.camera, s.frame, obj.class_id
                    )
                });
            let iou = det.1.iou(&obj.bbox);
            worst_box = worst_box.min(iou);
            assert!(
                iou >= 0.9,
                "camera {} frame {} class {}: box IoU {iou} ({:?} vs {:?})",
                s.camera,
                s.frame,
                obj.class_id,
                det.1,
                obj.bbox
            );
            assert!(det.2 > 0.5);
            if masks {
                let m = det
                    .3
                    .as_ref()
                    .unwrap_or_else(|| panic!("camera {} frame {}: no mask", s.camera, s.frame));
                let iou = mask_iou(m, &scene::object_mask(obj, w, h));
                worst_mask = worst_mask.min(iou);
                assert!(
                    iou >= 0.8,
                    "camera {} frame {} class {}: mask IoU {iou}",
                    s.camera,
                    s.frame,
                    obj.class_id
                );
            } else {
                assert!(det.3.is_none());
            }
        }
    }
    assert!(
        objects > seen.len(),
        "the scene must hold several objects per frame"
    );
    eprintln!("{objects} objects matched; worst box IoU {worst_box:.3}, worst mask IoU {worst_mask:.3}");
}
