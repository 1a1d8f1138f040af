//! Synthetic multi-camera scene with exact ground truth.
//!
//! Every frame is a pure function of `(camera, frame, width, height)`: a flat grey
//! background and 2–4 coloured shapes, at most one per class. Each class moves in its
//! own lane (the frame is cut into 4 parallel lanes, horizontal or vertical per camera),
//! so objects never overlap; they bounce linearly along and across their lane, stay
//! fully inside the frame and measure 10–22 % of `min(width, height)` per side.
//!
//! Shapes are rasterised with a pixel-centre test, one row span at a time; the
//! rendering, the masks and the boxes all come from the same spans, so the ground truth
//! agrees with the pixels exactly.

pub mod camera;
mod motion;
mod raster;

use crate::geometry::BoxF;
use crate::results::{Detection, FrameMask};

pub use raster::Shape;

/// Background colour, RGB.
pub const BACKGROUND: [u8; 3] = [60, 60, 60];

/// Colour of each class, RGB, indexed by class id.
pub const CLASS_COLORS: [[u8; 3]; 4] = [[220, 40, 40], [40, 200, 60], [40, 60, 220], [230, 210, 40]];

/// Label of each class, indexed by class id.
pub const CLASS_LABELS: [&str; 4] = ["red", "green", "blue", "yellow"];

/// Frames smaller than this (pixels, shorter side) get no objects: shapes would not fit
/// the lanes.
pub const MIN_SCENE_SIZE: u32 = 16;

/// One object of a frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SceneObject {
    /// Class id, index into [`CLASS_COLORS`] / [`CLASS_LABELS`].
    pub class_id: u32,
    /// Shape drawn.
    pub shape: Shape,
    /// Tight box of the object's pixels, frame pixels, max exclusive.
    pub bbox: BoxF,
    /// Integer rectangle the shape is inscribed in (frame pixels, max exclusive); the
    /// pixels are those whose centre lies inside the shape. Contains `bbox`.
    pub extent: BoxF,
}

/// Objects of frame `frame` of camera `camera` at `width x height`, in class order.
/// Empty when the shorter side is below [`MIN_SCENE_SIZE`].
pub fn scene_objects(camera: u32, frame: u64, width: u32, height: u32) -> Vec<SceneObject> {
    motion::placements(camera, frame, width, height)
        .into_iter()
        .filter_map(|p| {
            let bbox = raster::tight_box(p.shape, &p.extent, width, height)?;
            Some(SceneObject {
                class_id: p.class_id,
                shape: p.shape,
                bbox,
                extent: p.extent,
            })
        })
        .collect()
}

/// Exact pixel mask of `obj`, cropped to its `bbox` (255 inside, 0 outside).
pub fn object_mask(obj: &SceneObject, width: u32, height: u32) -> FrameMask {
    let (x, y, w, h) = obj.bbox.to_pixel_rect(width, height);
    let mut data = vec![0u8; (w * h) as usize];
    for row in 0..h {
        if let Some((a, b)) = raster::row_span(obj.shape, &obj.extent, y + row, width) {
            let (a, b) = (a.max(x), b.min(x + w));
            if a < b {
                let base = (row * w) as usize;
                data[base + (a - x) as usize..base + (b - x) as usize].fill(255);
            }
        }
    }
    FrameMask {
        x,
        y,
        width: w,
        height: h,
        data,
        device: None,
    }
}

/// Renders the frame as tightly packed RGBA (`width * height * 4` bytes, alpha 255).
///
/// Panics if `out` is shorter than `width * height * 4`.
pub fn render_rgba(camera: u32, frame: u64, width: u32, height: u32, out: &mut [u8]) {
    let (w, h) = (width as usize, height as usize);
    assert!(out.len() >= w * h * 4, "render_rgba: output buffer too small");
    let out = &mut out[..w * h * 4];
    let bg = [BACKGROUND[0], BACKGROUND[1], BACKGROUND[2], 255];
    for px in out.chunks_exact_mut(4) {
        px.copy_from_slice(&bg);
    }
    for obj in scene_objects(camera, frame, width, height) {
        let c = CLASS_COLORS[obj.class_id as usize];
        let rgba = [c[0], c[1], c[2], 255];
        let (_, y0, _, bh) = obj.bbox.to_pixel_rect(width, height);
        for y in y0..y0 + bh {
            if let Some((a, b)) = raster::row_span(obj.shape, &obj.extent, y, width) {
                let row = &mut out[y as usize * w * 4..][..w * 4];
                for px in row[a as usize * 4..b as usize * 4].chunks_exact_mut(4) {
                    px.copy_from_slice(&rgba);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;

/// Ground-truth detections of frame `frame` of camera `camera` (class, label, box and
/// exact mask of every object, confidence 1, untracked), e.g. to exercise the overlay.
pub fn scene_detections(camera: u32, frame: u64, width: u32, height: u32) -> Vec<Detection> {
    let model: std::sync::Arc<str> = std::sync::Arc::from("scene");
    scene_objects(camera, frame, width, height)
        .iter()
        .enumerate()
        .map(|(i, o)| Detection {
            model: model.clone(),
            class_id: o.class_id,
            label: std::sync::Arc::from(CLASS_LABELS[o.class_id as usize % CLASS_LABELS.len()]),
            confidence: 1.0,
            bbox: o.bbox,
            object_id: -1,
            query: i as u32,
            mask_source: None,
            mask: Some(object_mask(o, width, height)),
            secondary: Vec::new(),
        })
        .collect()
}
