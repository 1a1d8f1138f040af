//! DETR-style decoder: a fixed set of queries, each with one box and class logits.
//!
//! * `boxes [B, Q, 4]`: `cx, cy, w, h` normalised to the model input (0..1), multiplied by
//!   the transform's `model_w` / `model_h`.
//! * `logits [B, Q, C + 1]`: softmax over all columns, the last column (no object) is
//!   dropped; or, with [`ParseParams::detr_sigmoid`], `[B, Q, C]` with an independent
//!   sigmoid per class (RT-DETR style).
//! * optional `masks [B, Q, h, w]`: per-query mask logits; kept detections get
//!   [`MaskSource::Dense`] with their query index.

use super::{
    f32_values, find_output, finish_frame, model_box, shape_err, to_frame_box, ParseError, ParseParams,
    ParseScratch, ParserKind,
};
use crate::geometry::LetterboxTransform;
use crate::results::{Detection, MaskSource};
use crate::tensor::Tensor;

/// Best class and its probability for one query's logits, or `None` when a logit is not
/// finite (softmax) or no class has a finite logit (sigmoid).
fn best_class(logits: &[f32], sigmoid: bool) -> Option<(usize, f32)> {
    if sigmoid {
        let (ci, &l) = logits
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .max_by(|a, b| a.1.total_cmp(b.1))?;
        return Some((ci, 1.0 / (1.0 + (-l).exp())));
    }
    if logits.len() < 2 || logits.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = logits.iter().map(|&v| (v - max).exp()).sum();
    let classes = &logits[..logits.len() - 1];
    let (ci, &l) = classes.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1))?;
    let p = (l - max).exp() / sum;
    p.is_finite().then_some((ci, p))
}

/// Decodes a DETR batch.
pub(crate) fn parse_detr(
    scratch: &mut ParseScratch,
    params: &ParseParams,
    outputs: &[Tensor],
    transforms: &[LetterboxTransform],
) -> Result<Vec<Vec<Detection>>, ParseError> {
    let parser = ParserKind::Detr.name();
    let names = &params.tensor_names;
    let batch = transforms.len();
    let boxes = find_output(
        outputs,
        names.boxes_for(ParserKind::Detr),
        names.boxes.is_some(),
        Some(0),
        parser,
    )?;
    let logits = find_output(
        outputs,
        names.logits_name(),
        names.logits.is_some(),
        Some(1),
        parser,
    )?;
    if std::ptr::eq(boxes, logits) {
        return Err(super::missing(outputs, names.logits_name(), parser));
    }
    let queries = match boxes.shape.as_slice() {
        &[b, q, 4] if b == batch => q,
        _ => return Err(shape_err(boxes, format!("[{batch}, queries, 4]"))),
    };
    let min_k = if params.detr_sigmoid { 1 } else { 2 };
    let k = match logits.shape.as_slice() {
        &[b, q, k] if b == batch && q == queries && k >= min_k => k,
        _ => {
            let want = if params.detr_sigmoid {
                format!("[{batch}, {queries}, classes]")
            } else {
                format!("[{batch}, {queries}, classes + 1] with at least one class")
            };
            return Err(shape_err(logits, want));
        }
    };
    // Optional dense masks.
    let masks = match outputs.iter().find(|t| t.name == names.masks_name()) {
        Some(m) => Some(m),
        None if names.masks.is_some() => return Err(super::missing(outputs, names.masks_name(), parser)),
        None => outputs
            .get(2)
            .filter(|m| m.shape.len() == 4 && !std::ptr::eq(*m, boxes) && !std::ptr::eq(*m, logits)),
    };
    if let Some(m) = masks {
        if !matches!(m.shape.as_slice(), &[b, q, _, _] if b == batch && q == queries) {
            return Err(shape_err(m, format!("[{batch}, {queries}, height, width]")));
        }
    }
    let bdata = f32_values(boxes)?;
    let ldata = f32_values(logits)?;
    let mut frames = Vec::with_capacity(batch);
    for (bi, tr) in transforms.iter().enumerate() {
        scratch.clear_frame();
        let (mw, mh) = (tr.model_w as f32, tr.model_h as f32);
        for q in 0..queries {
            let row = bi * queries + q;
            let (Some(l), Some(bx)) = (
                ldata.get(row * k..(row + 1) * k),
                bdata.get(row * 4..(row + 1) * 4),
            ) else {
                continue;
            };
            let Some((ci, p)) = best_class(l, params.detr_sigmoid) else {
                continue;
            };
            let confident = p >= params.conf_threshold;
            if !confident {
                continue;
            }
            let (Ok(class_id), Ok(query)) = (u32::try_from(ci), u32::try_from(q)) else {
                continue;
            };
            let Some(mb) = model_box(bx[0] * mw, bx[1] * mh, bx[2] * mw, bx[3] * mh) else {
                continue;
            };
            let Some(fb) = to_frame_box(tr, &mb) else { continue };
            scratch.push(mb, fb, p, class_id, query);
        }
        let has_masks = masks.is_some();
        frames.push(finish_frame(scratch, params, |query| {
            has_masks.then_some(MaskSource::Dense { query })
        }));
    }
    Ok(frames)
}
