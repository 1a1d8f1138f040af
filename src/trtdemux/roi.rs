//! How per-frame results are written as `GstVideoRegionOfInterestMeta` (documented in
//! docs/metadata.md).
//!
//! One ROI meta per detection: `roi_type` = label, rectangle = box in frame pixels
//! (rounded outwards, clamped), `id` = index of the detection in the frame (0, 1, …, so
//! applications can look ROIs up by id). Parameters:
//! - `detection`: `model` (string), `label` (string), `class-id` (uint), `confidence`
//!   (double), `object-id` (int64, -1 untracked), `x0`,`y0`,`x1`,`y1` (double, exact box);
//! - `trtvision-mask` (only with a mask): `x`,`y`,`width`,`height` (uint, frame pixels of
//!   the mask's top-left corner and size) and `data` (GBytes, `width*height` bytes,
//!   row-major, 0 = background, 255 = object);
//! - `trtvision-landmarks` (one per secondary model with keypoints): `model` (string),
//!   `names` (array of strings), `x`, `y`, `score` (arrays of doubles; frame pixels);
//! - `trtvision-attribute` (one per secondary model whose best attribute class reached its
//!   threshold): `model` (string), `label` (string), `class-id` (uint), `score` (double);
//! - `trtvision-track` (detections that carry a track id, after trttracker): `object-id`
//!   (int64), `first-seen` and `last-seen` (uint64, PTS in nanoseconds of the first frame
//!   the track's object was detected on and of the last frame a detection matched it; left
//!   out when unknown);
//! - `trtvision-analytics` (when trtanalytics has rules for the camera): the zones the
//!   detection is in and the lines it crossed on this frame
//!   ([`crate::analytics::meta::OBJECT_PARAM`]).
//!
//! trtanalytics' per-frame zone and line summary is a GstCustomMeta
//! ([`crate::analytics::meta::FRAME_META`]), attached by [`attach_analytics_frame`].

use crate::analytics::meta::FrameSummary;
use crate::analytics::FrameAnalytics;
use crate::results::{Attribute, DenseMap, Detection, FrameMask, Keypoint, ObjectResult, TrackInfo};
use gst::glib;
use std::sync::Arc;

/// Name of the ROI parameter structure with the detection fields.
pub const DETECTION_PARAM: &str = "detection";
/// Name of the ROI parameter structure with the mask.
pub const MASK_PARAM: &str = "trtvision-mask";
/// Name of the ROI parameter structures with a secondary model's keypoints.
pub const LANDMARKS_PARAM: &str = "trtvision-landmarks";
/// Name of the ROI parameter structures with a secondary model's best attribute.
pub const ATTRIBUTE_PARAM: &str = "trtvision-attribute";
/// Name of the ROI parameter structure with the detection's track (trttracker).
pub const TRACK_PARAM: &str = "trtvision-track";

/// Attaches a frame's results: its ROI metas ([`attach`]) and its tensors and dense maps
/// ([`attach_tensors`]).
pub fn attach_frame(
    buffer: &mut gst::BufferRef,
    results: &crate::results::FrameResults,
    analytics: Option<&FrameAnalytics>,
    info: &gst_video::VideoInfo,
) {
    attach(
        buffer,
        &results.detections,
        &results.tracks,
        analytics,
        info.width(),
        info.height(),
    );
    attach_tensors(buffer, &results.tensors, &results.dense);
}

/// Adds one ROI meta per detection to `buffer`, with the detection's track from `tracks`
/// (the frame's [`crate::results::FrameResults::tracks`]) and its trtanalytics results
/// when `analytics` holds one per detection.
pub fn attach(
    buffer: &mut gst::BufferRef,
    detections: &[Detection],
    tracks: &[TrackInfo],
    analytics: Option<&FrameAnalytics>,
    frame_w: u32,
    frame_h: u32,
) {
    let objects = analytics
        .filter(|a| a.rules.is_some() && a.objects.len() == detections.len())
        .map(|a| &a.objects[..]);
    for (i, d) in detections.iter().enumerate() {
        let rect = d.bbox.to_pixel_rect(frame_w, frame_h);
        let mut meta = gst_video::VideoRegionOfInterestMeta::add(buffer, &d.label, rect);
        meta.set_id(i as i32);
        meta.add_param(
            gst::Structure::builder(DETECTION_PARAM)
                .field("model", &*d.model)
                .field("label", &*d.label)
                .field("class-id", d.class_id)
                .field("confidence", d.confidence as f64)
                .field("object-id", d.object_id)
                .field("x0", d.bbox.x0 as f64)
                .field("y0", d.bbox.y0 as f64)
                .field("x1", d.bbox.x1 as f64)
                .field("y1", d.bbox.y1 as f64)
                .build(),
        );
        if let Some(m) = &d.mask {
            meta.add_param(mask_structure(m));
        }
        if let Some(t) = tracks.iter().find(|t| d.object_id >= 0 && t.id == d.object_id) {
            meta.add_param(track_structure(t));
        }
        if let Some(o) = objects.and_then(|o| o.get(i)) {
            meta.add_param(o.to_structure());
        }
        for r in &d.secondary {
            if !r.keypoints.is_empty() {
                let doubles =
                    |f: fn(&Keypoint) -> f32| gst::Array::new(r.keypoints.iter().map(|k| f(k) as f64));
                meta.add_param(
                    gst::Structure::builder(LANDMARKS_PARAM)
                        .field("model", &*r.model)
                        .field(
                            "names",
                            gst::Array::new(r.keypoints.iter().map(|k| k.name.to_string())),
                        )
                        .field("x", doubles(|k| k.x))
                        .field("y", doubles(|k| k.y))
                        .field("score", doubles(|k| k.score))
                        .build(),
                );
            }
            if let Some(a) = &r.attribute {
                meta.add_param(
                    gst::Structure::builder(ATTRIBUTE_PARAM)
                        .field("model", &*r.model)
                        .field("label", &*a.label)
                        .field("class-id", a.class_id)
                        .field("score", a.score as f64)
                        .build(),
                );
            }
        }
    }
}

/// Reads the secondary results back from an ROI meta, one per model (for applications and
/// tests).
pub fn read_secondary(meta: &gst_video::VideoRegionOfInterestMeta) -> Vec<ObjectResult> {
    fn entry(out: &mut Vec<ObjectResult>, model: &str) -> usize {
        match out.iter().position(|r| &*r.model == model) {
            Some(i) => i,
            None => {
                out.push(ObjectResult {
                    model: Arc::from(model),
                    keypoints: Vec::new(),
                    attribute: None,
                });
                out.len() - 1
            }
        }
    }
    let mut out: Vec<ObjectResult> = Vec::new();
    for s in meta.params() {
        let Ok(model) = s.get::<String>("model") else {
            continue;
        };
        if s.name() == LANDMARKS_PARAM {
            let doubles = |f: &str| -> Vec<f64> {
                s.get::<gst::Array>(f)
                    .map(|a| a.iter().filter_map(|v| v.get::<f64>().ok()).collect())
                    .unwrap_or_default()
            };
            let names: Vec<String> = s
                .get::<gst::Array>("names")
                .map(|a| a.iter().filter_map(|v| v.get::<String>().ok()).collect())
                .unwrap_or_default();
            let (x, y, score) = (doubles("x"), doubles("y"), doubles("score"));
            let i = entry(&mut out, &model);
            out[i].keypoints = (0..names.len().min(x.len()).min(y.len()))
                .map(|k| Keypoint {
                    name: Arc::from(names[k].as_str()),
                    x: x[k] as f32,
                    y: y[k] as f32,
                    score: score.get(k).copied().unwrap_or(1.0) as f32,
                })
                .collect();
        } else if s.name() == ATTRIBUTE_PARAM {
            let (Ok(label), Ok(class_id), Ok(score)) = (
                s.get::<String>("label"),
                s.get::<u32>("class-id"),
                s.get::<f64>("score"),
            ) else {
                continue;
            };
            let i = entry(&mut out, &model);
            out[i].attribute = Some(Attribute {
                class_id,
                label: Arc::from(label.as_str()),
                score: score as f32,
            });
        }
    }
    out
}

fn mask_structure(m: &FrameMask) -> gst::Structure {
    gst::Structure::builder(MASK_PARAM)
        .field("x", m.x)
        .field("y", m.y)
        .field("width", m.width)
        .field("height", m.height)
        .field("data", glib::Bytes::from(&m.data[..]))
        .build()
}

fn track_structure(t: &TrackInfo) -> gst::Structure {
    let mut s = gst::Structure::builder(TRACK_PARAM)
        .field("object-id", t.id)
        .build();
    if let Some(first) = t.first_seen {
        s.set("first-seen", first.nseconds());
    }
    if let Some(last) = t.last_seen {
        s.set("last-seen", last.nseconds());
    }
    s
}

/// Reads a detection's track back from an ROI meta (for applications and tests); `None`
/// for untracked detections. `lost` is always false: an ended track has no detection.
pub fn read_track(meta: &gst_video::VideoRegionOfInterestMeta) -> Option<TrackInfo> {
    let s = meta.param(TRACK_PARAM)?;
    let time = |k: &str| s.get::<u64>(k).ok().map(gst::ClockTime::from_nseconds);
    Some(TrackInfo {
        id: s.get("object-id").ok()?,
        first_seen: time("first-seen"),
        last_seen: time("last-seen"),
        lost: false,
    })
}

/// Reads a mask back from an ROI meta (for applications and tests).
pub fn read_mask(meta: &gst_video::VideoRegionOfInterestMeta) -> Option<FrameMask> {
    let s = meta.param(MASK_PARAM)?;
    let data: glib::Bytes = s.get("data").ok()?;
    let m = FrameMask {
        x: s.get("x").ok()?,
        y: s.get("y").ok()?,
        width: s.get("width").ok()?,
        height: s.get("height").ok()?,
        data: data.to_vec(),
        device: None,
    };
    (m.data.len() == (m.width * m.height) as usize).then_some(m)
}

/// Attaches trtanalytics' zone and line summary of a frame of `camera` (trtmux sink pad
/// index), also when the frame has no detection; nothing for cameras without rules.
pub fn attach_analytics_frame(buffer: &mut gst::BufferRef, camera: u32, analytics: &FrameAnalytics) {
    if let Some(s) = FrameSummary::of(camera, analytics) {
        s.attach(buffer);
    }
}

/// Name of the GstCustomMeta carrying a frame's raw output tensors (parser `raw`).
///
/// Its structure (named `trtvision-tensors`) has one field per tensor, named
/// `<model>/<tensor>`, holding a structure `tensor` with `dtype` (string: f32, f16, u8, i32,
/// i64), `shape` (array of uint64, batch dimension 1) and `data` (GBytes, native endian,
/// row-major). Python: `buf.get_custom_meta("TrtVisionTensorMeta").get_structure()`.
pub const TENSOR_META: &str = "TrtVisionTensorMeta";

/// Registers [`TENSOR_META`] (once per process).
pub fn register_tensor_meta() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| gst::meta::CustomMeta::register(TENSOR_META, &[]));
}

/// Attaches the frame's raw tensors and dense maps with host values as one [`TENSOR_META`]
/// (maps left in GPU memory are not copied here: trtinfer `download-dense` brings them to
/// the host). A dense map is
/// a field `<model>/<tensor>` like a raw tensor (its row, shape `[1, C, h, w]`, f32), whose
/// structure also has `kind` = "dense" and the placement of the frame in the model input:
/// `scale-x`, `scale-y`, `pad-x`, `pad-y` (double; model pixel = frame pixel * scale +
/// pad) and `model-width`, `model-height` (uint; the map covers the whole model input).
pub fn attach_tensors(
    buffer: &mut gst::BufferRef,
    tensors: &[(std::sync::Arc<str>, crate::tensor::Tensor)],
    dense: &[DenseMap],
) {
    let tensors: Vec<_> = tensors.iter().filter(|(_, t)| t.host_bytes().is_some()).collect();
    let dense: Vec<_> = dense.iter().filter_map(|d| Some((d, d.values()?))).collect();
    if tensors.is_empty() && dense.is_empty() {
        return;
    }
    register_tensor_meta();
    let Ok(mut meta) = gst::meta::CustomMeta::add(buffer, TENSOR_META) else {
        return;
    };
    let s = meta.mut_structure();
    s.set_name("trtvision-tensors");
    for (model, t) in tensors {
        let shape = gst::Array::new(t.shape.iter().map(|&d| d as u64));
        let bytes = glib::Bytes::from(t.host_bytes().unwrap_or_default());
        s.set(
            format!("{model}/{}", t.name).as_str(),
            gst::Structure::builder("tensor")
                .field("dtype", t.dtype.name())
                .field("shape", shape)
                .field("data", bytes)
                .build(),
        );
    }
    for (d, values) in dense {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_ne_bytes()).collect();
        let t = &d.transform;
        s.set(
            format!("{}/{}", d.model, d.tensor.name).as_str(),
            gst::Structure::builder("tensor")
                .field("kind", "dense")
                .field("dtype", "f32")
                .field(
                    "shape",
                    gst::Array::new([1u64, d.channels as u64, d.height as u64, d.width as u64]),
                )
                .field("data", glib::Bytes::from_owned(bytes))
                .field("scale-x", t.scale_x as f64)
                .field("scale-y", t.scale_y as f64)
                .field("pad-x", t.pad_x as f64)
                .field("pad-y", t.pad_y as f64)
                .field("model-width", t.model_w)
                .field("model-height", t.model_h)
                .build(),
        );
    }
}
