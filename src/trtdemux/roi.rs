//! How per-frame results are written as `GstVideoRegionOfInterestMeta` (documented in
//! README.md, "Metadata").
//!
//! One ROI meta per detection: `roi_type` = label, rectangle = box in frame pixels
//! (rounded outwards, clamped), `id` = index of the detection in the frame (0, 1, …, so
//! applications can look ROIs up by id). Parameters:
//! - `detection`: `model` (string), `label` (string), `class-id` (uint), `confidence`
//!   (double), `object-id` (int64, -1 untracked), `x0`,`y0`,`x1`,`y1` (double, exact box);
//! - `trtvision-mask` (only with a mask): `x`,`y`,`width`,`height` (uint, frame pixels of
//!   the mask's top-left corner and size) and `data` (GBytes, `width*height` bytes,
//!   row-major, 0 = background, 255 = object).

use crate::results::{Detection, FrameMask};
use gst::glib;

/// Name of the ROI parameter structure with the detection fields.
pub const DETECTION_PARAM: &str = "detection";
/// Name of the ROI parameter structure with the mask.
pub const MASK_PARAM: &str = "trtvision-mask";

/// Adds one ROI meta per detection to `buffer`.
pub fn attach(buffer: &mut gst::BufferRef, detections: &[Detection], frame_w: u32, frame_h: u32) {
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
    }
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

/// Attaches the frame's raw tensors as one [`TENSOR_META`].
pub fn attach_tensors(buffer: &mut gst::BufferRef, tensors: &[(std::sync::Arc<str>, crate::tensor::Tensor)]) {
    let tensors: Vec<_> = tensors.iter().filter(|(_, t)| t.host_bytes().is_some()).collect();
    if tensors.is_empty() {
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
}
