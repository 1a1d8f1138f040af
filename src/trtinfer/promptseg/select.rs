//! Query selection of one decoder call: which queries are active (presence x logit score
//! above the threshold, top-K per frame and class), their boxes mapped back to frame pixels
//! and their masks cropped and resized to those boxes. Only the selected masks are read.
//!
//! This is the host side; with decoder outputs in device memory a selection kernel will
//! take its place and copy back only the kept boxes and masks (what [`Selected::d2h_bytes`]
//! counts already).

use std::sync::Arc;

use crate::batch::MaskTensor;
use crate::config::promptseg::BoxFormat;
use crate::geometry::{BoxF, LetterboxTransform};
use crate::masks;
use crate::results::{Detection, MaskSource};
use crate::tensor::Tensor;

/// Where one row of a decoder call goes: frame index in the batch and class index in the
/// config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowTarget {
    pub row: usize,
    pub frame: usize,
    pub class: usize,
}

/// Positions of the decoder outputs in the backend's output list.
#[derive(Debug, Clone, Copy)]
pub struct OutputIndex {
    pub boxes: usize,
    pub logits: usize,
    pub presence: Option<usize>,
    pub masks: usize,
}

/// Everything selection needs, shared by all calls of an engine.
#[derive(Debug, Clone)]
pub struct Selector {
    pub model: Arc<str>,
    /// Per class index: id and label.
    pub classes: Vec<(u32, Arc<str>)>,
    pub outputs: OutputIndex,
    pub box_format: BoxFormat,
    pub score_threshold: f32,
    pub mask_threshold: f32,
    pub top_k: usize,
}

/// Detections of one decoder call.
#[derive(Debug, Default)]
pub struct Selected {
    /// `(frame, class, detections best first)` per row of the call.
    pub rows: Vec<(usize, usize, Vec<Detection>)>,
    /// Bytes a device-side selection would copy to the host: boxes, logits and presence of
    /// every row, masks of the kept queries only.
    pub d2h_bytes: u64,
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// The f32 values of output `what`, or an error naming it.
fn values<'a>(t: &'a Tensor, what: &str) -> Result<std::borrow::Cow<'a, [f32]>, String> {
    t.f32_values().ok_or_else(|| {
        format!(
            "decoder output {what} ('{}', {}) is not a host float tensor",
            t.name,
            t.dtype.name()
        )
    })
}

impl Selector {
    /// Checks the output shapes of a call of `rows` rows; returns `(queries, mask_h, mask_w)`.
    fn shapes(&self, outs: &[Tensor], rows: usize) -> Result<(usize, usize, usize), String> {
        let get = |i: usize, what: &str| {
            outs.get(i)
                .ok_or_else(|| format!("the decoder returned no {what} output"))
        };
        let boxes = get(self.outputs.boxes, "boxes")?;
        let logits = get(self.outputs.logits, "logits")?;
        let masks = get(self.outputs.masks, "masks")?;
        let q = match boxes.shape.as_slice() {
            [b, q, 4] if *b == rows => *q,
            s => {
                return Err(format!(
                    "decoder output boxes '{}' has shape {s:?}, expected [{rows}, Q, 4]",
                    boxes.name
                ))
            }
        };
        match logits.shape.as_slice() {
            [b, lq] | [b, lq, 1] if *b == rows && *lq == q => {}
            s => {
                return Err(format!(
                    "decoder output logits '{}' has shape {s:?}, expected [{rows}, {q}]",
                    logits.name
                ))
            }
        }
        if let Some(p) = self.outputs.presence {
            let presence = get(p, "presence")?;
            match presence.shape.as_slice() {
                [b] | [b, 1] if *b == rows => {}
                s => {
                    return Err(format!(
                        "decoder output presence '{}' has shape {s:?}, expected [{rows}, 1]",
                        presence.name
                    ))
                }
            }
        }
        match masks.shape.as_slice() {
            [b, mq, h, w] if *b == rows && *mq == q && *h > 0 && *w > 0 => Ok((q, *h, *w)),
            s => Err(format!(
                "decoder output masks '{}' has shape {s:?}, expected [{rows}, {q}, h, w]",
                masks.name
            )),
        }
    }

    /// Selects the active queries of every row of one call's outputs.
    pub fn select(
        &self,
        outs: &[Tensor],
        targets: &[RowTarget],
        transforms: &[LetterboxTransform],
    ) -> Result<Selected, String> {
        let rows = outs
            .get(self.outputs.boxes)
            .and_then(|t| t.shape.first().copied())
            .unwrap_or(0);
        let (q, mh, mw) = self.shapes(outs, rows)?;
        let boxes = values(&outs[self.outputs.boxes], "boxes")?;
        let logits = values(&outs[self.outputs.logits], "logits")?;
        let presence = match self.outputs.presence {
            Some(i) => Some(values(&outs[i], "presence")?),
            None => None,
        };
        let mask_tensor = &outs[self.outputs.masks];
        let mask_values = values(mask_tensor, "masks")?;
        let dense = MaskTensor::Dense(mask_tensor.clone());
        let mask_bytes = (mh * mw * mask_tensor.dtype.size()) as u64;
        let small: usize = [
            Some(self.outputs.boxes),
            Some(self.outputs.logits),
            self.outputs.presence,
        ]
        .into_iter()
        .flatten()
        .map(|i| outs[i].len_bytes())
        .sum();
        let mut out = Selected {
            rows: Vec::with_capacity(targets.len()),
            d2h_bytes: small as u64,
        };
        let mut order: Vec<(usize, f32)> = Vec::with_capacity(q);
        for t in targets {
            let transform = transforms
                .get(t.frame)
                .ok_or_else(|| format!("no letterbox transform for frame {}", t.frame))?;
            if t.row >= rows {
                return Err(format!(
                    "row {} is past the {rows} rows of the decoder outputs",
                    t.row
                ));
            }
            let (class_id, label) = self.classes[t.class].clone();
            let p = presence.as_ref().map_or(1.0, |p| sigmoid(p[t.row]));
            order.clear();
            order.extend(
                (0..q)
                    .map(|i| (i, p * sigmoid(logits[t.row * q + i])))
                    .filter(|(_, s)| *s >= self.score_threshold && s.is_finite()),
            );
            order.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            if self.top_k > 0 {
                order.truncate(self.top_k);
            }
            let mut dets = Vec::with_capacity(order.len());
            for &(query, score) in &order {
                let b = &boxes[(t.row * q + query) * 4..][..4];
                let (mw_, mh_) = (transform.model_w as f32, transform.model_h as f32);
                let model_box = match self.box_format {
                    BoxFormat::CxCyWh => BoxF::from_cxcywh(b[0] * mw_, b[1] * mh_, b[2] * mw_, b[3] * mh_),
                    BoxFormat::XyXy => BoxF::new(b[0] * mw_, b[1] * mh_, b[2] * mw_, b[3] * mh_),
                };
                let bbox = transform.box_to_frame(&model_box);
                let area = bbox.area();
                if area.is_nan() || area <= 0.0 {
                    continue;
                }
                let mut det = Detection {
                    model: self.model.clone(),
                    class_id,
                    label: label.clone(),
                    confidence: score,
                    bbox,
                    object_id: -1,
                    query: query as u32,
                    mask_source: Some(MaskSource::Dense { query: query as u32 }),
                    mask: None,
                };
                det.mask =
                    masks::frame_mask(&det, &dense, &mask_values, t.row, transform, self.mask_threshold);
                det.mask_source = None;
                out.d2h_bytes += mask_bytes;
                dets.push(det);
            }
            out.rows.push((t.frame, t.class, dets));
        }
        Ok(out)
    }
}
