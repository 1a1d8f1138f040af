//! Mask selection shared by the CPU path and the GPU kernels' host side: which
//! detections keep a mask, and how a model-space mask is cropped and resized to its box in
//! frame pixels. [`batch::BatchMaskSelect`] is the operation on a batch that trtmaskselect
//! calls (it picks the CPU or the GPU path per model output).

pub mod batch;
#[cfg(feature = "cuda")]
pub mod cuda;

use crate::batch::MaskTensor;
use crate::geometry::LetterboxTransform;
use crate::results::{Detection, FrameMask, MaskSource};

/// What trtmaskselect keeps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MaskSelection {
    /// Minimum detection confidence for a mask.
    pub min_confidence: f32,
    /// At most this many masks per frame and class (0 = no limit).
    pub top_k: usize,
    /// Mask probability above which a pixel is part of the object.
    pub mask_threshold: f32,
}

impl Default for MaskSelection {
    fn default() -> Self {
        Self {
            min_confidence: 0.5,
            top_k: 0,
            mask_threshold: 0.5,
        }
    }
}

/// Indices of the detections that get a mask: confidence ≥ `min_confidence`, pending mask
/// source, and within the top-K of their class.
pub fn select(detections: &[Detection], sel: &MaskSelection, out: &mut Vec<usize>) {
    out.clear();
    out.extend(
        detections
            .iter()
            .enumerate()
            .filter(|(_, d)| d.mask_source.is_some() && d.confidence >= sel.min_confidence)
            .map(|(i, _)| i),
    );
    if sel.top_k == 0 {
        return;
    }
    out.sort_by(|&a, &b| {
        let (da, db) = (&detections[a], &detections[b]);
        da.class_id
            .cmp(&db.class_id)
            .then(db.confidence.total_cmp(&da.confidence))
    });
    let mut kept = 0;
    let mut class = None;
    out.retain(|&i| {
        let c = detections[i].class_id;
        if class != Some(c) {
            class = Some(c);
            kept = 0;
        }
        kept += 1;
        kept <= sel.top_k
    });
    out.sort_unstable();
}

/// Mask values of one tensor row laid out as `[channels, h, w]`.
struct MaskPlanes<'a> {
    data: &'a [f32],
    h: usize,
    w: usize,
}

impl MaskPlanes<'_> {
    /// Bilinear sample of channel `c` at mask coordinates `(u, v)` (pixel centres at .5).
    fn sample(&self, c: usize, u: f32, v: f32) -> f32 {
        let plane = &self.data[c * self.h * self.w..(c + 1) * self.h * self.w];
        let x = (u - 0.5).clamp(0.0, (self.w - 1) as f32);
        let y = (v - 0.5).clamp(0.0, (self.h - 1) as f32);
        let (x0, y0) = (x.floor() as usize, y.floor() as usize);
        let (x1, y1) = ((x0 + 1).min(self.w - 1), (y0 + 1).min(self.h - 1));
        let (fx, fy) = (x - x0 as f32, y - y0 as f32);
        let top = plane[y0 * self.w + x0] * (1.0 - fx) + plane[y0 * self.w + x1] * fx;
        let bottom = plane[y1 * self.w + x0] * (1.0 - fx) + plane[y1 * self.w + x1] * fx;
        top * (1.0 - fy) + bottom * fy
    }
}

/// Computes the frame-space mask of `det` from row `row` of the model's mask tensor.
/// Returns `None` when the tensor does not fit the detection (wrong rank, query out of
/// range, coefficient count mismatch) or the box is empty.
pub fn frame_mask(
    det: &Detection,
    masks: &MaskTensor,
    values: &[f32],
    row: usize,
    transform: &LetterboxTransform,
    mask_threshold: f32,
) -> Option<FrameMask> {
    let shape = &masks.tensor().shape;
    if shape.len() != 4 || row >= shape[0] || shape[2] == 0 || shape[3] == 0 {
        return None;
    }
    let (channels, h, w) = (shape[1], shape[2], shape[3]);
    // Checked: the shape need not match `values` (a mismatch gives `None`).
    let row_len = channels.checked_mul(h)?.checked_mul(w)?;
    let start = row.checked_mul(row_len)?;
    let planes = MaskPlanes {
        data: values.get(start..start.checked_add(row_len)?)?,
        h,
        w,
    };
    // Logit threshold equivalent to the probability threshold.
    let t = mask_threshold.clamp(1e-6, 1.0 - 1e-6);
    let logit_threshold = (t / (1.0 - t)).ln();
    let source = det.mask_source.as_ref()?;
    match (masks, source) {
        (MaskTensor::Dense(_), MaskSource::Dense { query }) if (*query as usize) < channels => {}
        (MaskTensor::Prototypes(_), MaskSource::Prototype { coefficients })
            if coefficients.len() == channels => {}
        _ => return None,
    }

    let (x, y, mw, mh) = det.bbox.to_pixel_rect(transform.frame_w, transform.frame_h);
    if mw == 0 || mh == 0 {
        return None;
    }
    let sx = w as f32 / transform.model_w as f32;
    let sy = h as f32 / transform.model_h as f32;
    let mut data = vec![0u8; (mw * mh) as usize];
    for j in 0..mh {
        for i in 0..mw {
            let (mx, my) = transform.to_model((x + i) as f32 + 0.5, (y + j) as f32 + 0.5);
            let (u, v) = (mx * sx, my * sy);
            let logit = match source {
                MaskSource::Dense { query } => planes.sample(*query as usize, u, v),
                MaskSource::Prototype { coefficients } => coefficients
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| **c != 0.0)
                    .map(|(k, c)| c * planes.sample(k, u, v))
                    .sum(),
                // Coefficients on the device: computed by the GPU mask selection only.
                MaskSource::OutputColumn => return None,
            };
            if logit > logit_threshold {
                data[(j * mw + i) as usize] = 255;
            }
        }
    }
    Some(FrameMask {
        x,
        y,
        width: mw,
        height: mh,
        data,
        device: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::BoxF;
    use crate::tensor::Tensor;
    use std::sync::Arc;

    fn det(class_id: u32, confidence: f32, bbox: BoxF, source: MaskSource) -> Detection {
        Detection {
            mask_source: Some(source),
            ..Detection::new(Arc::from("m"), class_id, Arc::from("x"), confidence, bbox)
        }
    }

    #[test]
    fn select_threshold_and_top_k() {
        let b = BoxF::new(0.0, 0.0, 4.0, 4.0);
        let q = MaskSource::Dense { query: 0 };
        let dets = vec![
            det(0, 0.9, b, q.clone()),
            det(0, 0.8, b, q.clone()),
            det(0, 0.3, b, q.clone()),
            det(1, 0.7, b, q.clone()),
        ];
        let mut out = Vec::new();
        select(
            &dets,
            &MaskSelection {
                top_k: 1,
                ..Default::default()
            },
            &mut out,
        );
        assert_eq!(out, vec![0, 3]);
        select(&dets, &MaskSelection::default(), &mut out);
        assert_eq!(out, vec![0, 1, 3]);
    }

    #[test]
    fn dense_mask_maps_through_letterbox() {
        // 2:1 frame into a 64x64 model: scale 0.5, pad_y 16. Mask 16x16 covers the model.
        let t = LetterboxTransform::letterbox(128, 64, 64, 64);
        let (h, w) = (16usize, 16usize);
        let mut vals = vec![-5.0f32; 2 * h * w];
        // Query 1: model x in [16, 48), y in [24, 40) → mask cells x 4..12, y 6..10.
        for y in 6..10 {
            for x in 4..12 {
                vals[h * w + y * w + x] = 5.0;
            }
        }
        let tensor = Tensor::from_f32("masks", vec![1, 2, h, w], &vals);
        let masks = MaskTensor::Dense(tensor);
        // Same region in frame pixels: x [32, 96), y [16, 48).
        let d = det(
            0,
            0.9,
            BoxF::new(24.0, 8.0, 104.0, 56.0),
            MaskSource::Dense { query: 1 },
        );
        let m = frame_mask(&d, &masks, &vals, 0, &t, 0.5).unwrap();
        assert_eq!((m.x, m.y, m.width, m.height), (24, 8, 80, 48));
        assert!(m.contains(64, 32));
        assert!(!m.contains(26, 10));
        let area = m.area() as i64;
        assert!((area - 64 * 32).abs() < 64 * 32 / 10, "area {area}");
    }

    /// Regression (found while writing the cargo-fuzz `parsers` target, whose mask tensors
    /// may have shapes that do not match their values): `channels * h * w` or
    /// `row * row_len` past `usize::MAX` overflowed instead of returning `None`.
    #[test]
    fn shape_overflow_is_none() {
        let t = LetterboxTransform::stretch(32, 32, 32, 32);
        let vals = vec![3.0f32; 8];
        let b = BoxF::new(0.0, 0.0, 8.0, 8.0);
        let dense = det(0, 0.9, b, MaskSource::Dense { query: 0 });
        for (shape, row) in [
            (vec![1, 1 << 32, 1 << 32, 1], 0),
            (vec![1, 1, usize::MAX, 2], 0),
            (vec![3, 1, 1 << 32, 1 << 31], 2),
            (vec![usize::MAX, 1, 1, 1], usize::MAX - 1),
        ] {
            let mut tensor = Tensor::from_f32("masks", vec![8], &vals);
            tensor.shape = shape;
            let masks = MaskTensor::Dense(tensor);
            assert!(frame_mask(&dense, &masks, &vals, row, &t, 0.5).is_none());
        }
    }

    #[test]
    fn prototype_mask_and_bad_inputs() {
        let t = LetterboxTransform::stretch(32, 32, 32, 32);
        let vals = vec![3.0f32; 2 * 8 * 8];
        let tensor = Tensor::from_f32("protos", vec![1, 2, 8, 8], &vals);
        let masks = MaskTensor::Prototypes(tensor);
        let good = det(
            0,
            0.9,
            BoxF::new(0.0, 0.0, 8.0, 8.0),
            MaskSource::Prototype {
                coefficients: vec![1.0, 0.0],
            },
        );
        assert_eq!(frame_mask(&good, &masks, &vals, 0, &t, 0.5).unwrap().area(), 64);
        let wrong = det(
            0,
            0.9,
            BoxF::new(0.0, 0.0, 8.0, 8.0),
            MaskSource::Prototype {
                coefficients: vec![1.0],
            },
        );
        assert!(frame_mask(&wrong, &masks, &vals, 0, &t, 0.5).is_none());
        assert!(frame_mask(&good, &masks, &vals, 3, &t, 0.5).is_none());
        let dense_q = det(
            0,
            0.9,
            BoxF::new(0.0, 0.0, 8.0, 8.0),
            MaskSource::Dense { query: 0 },
        );
        assert!(frame_mask(&dense_q, &masks, &vals, 0, &t, 0.5).is_none());
    }
}
