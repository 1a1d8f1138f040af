//! YOLOv8 / YOLO11 decoders (detection and segmentation).
//!
//! Layout: `output0 [B, 4 + C (+ P), N]`, channel-major: for anchor `a`, rows 0..4 are
//! `cx, cy, w, h` in model-input pixels, the next `C` rows are class probabilities (already
//! sigmoid-activated by the export), and for segmentation the last `P` rows are the mask
//! coefficients that combine the prototypes `output1 [B, P, h, w]`.

#[cfg(feature = "cuda")]
pub mod cuda;

use crate::geometry::LetterboxTransform;
use crate::parsers::{
    f32_values, find_output, finish_frame, model_box, shape_err, to_frame_box, ParseError, ParseParams,
    ParseScratch, ParserKind,
};
use crate::results::{Detection, MaskSource};
use crate::tensor::Tensor;

/// Decodes a YOLO batch; `seg` selects the segmentation layout.
pub(crate) fn parse_yolo(
    scratch: &mut ParseScratch,
    params: &ParseParams,
    outputs: &[Tensor],
    transforms: &[LetterboxTransform],
    seg: bool,
) -> Result<Vec<Vec<Detection>>, ParseError> {
    let kind = if seg {
        ParserKind::YoloSeg
    } else {
        ParserKind::Yolo
    };
    let parser = kind.name();
    let names = &params.tensor_names;
    let out0 = find_output(
        outputs,
        names.boxes_for(kind),
        names.boxes.is_some(),
        Some(0),
        parser,
    )?;
    let batch = transforms.len();
    let expected0 = if seg {
        format!("[{batch}, 4 + classes + prototypes, anchors]")
    } else {
        format!("[{batch}, 4 + classes, anchors]")
    };
    let &[b0, channels, n] = out0.shape.as_slice() else {
        return Err(shape_err(out0, expected0));
    };
    if b0 != batch {
        return Err(shape_err(out0, expected0));
    }
    let protos_count = if seg {
        let protos = find_output(
            outputs,
            names.protos_name(),
            names.protos.is_some(),
            Some(1),
            parser,
        )?;
        if std::ptr::eq(protos, out0) {
            return Err(crate::parsers::missing(outputs, names.protos_name(), parser));
        }
        match protos.shape.as_slice() {
            &[pb, p, _, _] if pb == batch && p > 0 => p,
            _ => return Err(shape_err(protos, format!("[{batch}, prototypes, height, width]"))),
        }
    } else {
        0
    };
    let classes = match 4usize
        .checked_add(protos_count)
        .and_then(|fixed| channels.checked_sub(fixed))
    {
        Some(c) if c >= 1 => c,
        _ => {
            let want = if seg {
                format!("[{batch}, 4 + classes + {protos_count}, anchors] with at least one class")
            } else {
                format!("[{batch}, 4 + classes, anchors] with at least one class")
            };
            return Err(shape_err(out0, want));
        }
    };
    // Validates dtype and byte length, so `batch * channels * n` fits in memory.
    let data = f32_values(out0)?;
    // Cannot overflow for a non-empty batch (the byte length was validated), but an empty
    // batch `[0, channels, n]` holds 0 bytes whatever its other dimensions.
    let Some(row_len) = channels.checked_mul(n) else {
        return Err(shape_err(out0, expected0));
    };
    if n == 0 {
        // No anchors, no detections; `[B, channels, 0]` holds 0 bytes whatever `channels`,
        // so the per-class scan below could run for billions of classes.
        return Ok(vec![Vec::new(); batch]);
    }
    let mut frames = Vec::with_capacity(batch);
    for (bi, tr) in transforms.iter().enumerate() {
        let Some(row) = data.get(bi * row_len..(bi + 1) * row_len) else {
            return Err(shape_err(out0, expected0));
        };
        // Best class per anchor, channel by channel (contiguous reads).
        scratch.best_score.clear();
        scratch.best_score.resize(n, f32::NEG_INFINITY);
        scratch.best_class.clear();
        scratch.best_class.resize(n, 0);
        for ci in 0..classes {
            let Ok(class_id) = u32::try_from(ci) else { break };
            let chan = &row[(4 + ci) * n..(5 + ci) * n];
            for ((best, cls), &s) in scratch
                .best_score
                .iter_mut()
                .zip(scratch.best_class.iter_mut())
                .zip(chan)
            {
                if s.is_finite() && s > *best {
                    *best = s;
                    *cls = class_id;
                }
            }
        }
        scratch.clear_frame();
        for a in 0..n {
            let score = scratch.best_score[a];
            if !(score.is_finite() && score >= params.conf_threshold) {
                continue;
            }
            let Ok(anchor) = u32::try_from(a) else { break };
            let Some(mb) = model_box(row[a], row[n + a], row[2 * n + a], row[3 * n + a]) else {
                continue;
            };
            let Some(fb) = to_frame_box(tr, &mb) else { continue };
            let class_id = scratch.best_class[a];
            scratch.push(mb, fb, score, class_id, anchor);
        }
        let coeff_base = (4 + classes) * n;
        let dets = finish_frame(scratch, params, |anchor| {
            if !seg {
                return None;
            }
            let a = anchor as usize;
            let coefficients = (0..protos_count)
                .map(|k| {
                    row.get(coeff_base + k * n + a)
                        .copied()
                        .filter(|v| v.is_finite())
                        .unwrap_or(0.0)
                })
                .collect();
            Some(MaskSource::Prototype { coefficients })
        });
        frames.push(dets);
    }
    Ok(frames)
}

/// One YOLO candidate found on the GPU (model-input pixels), laid out as the record the
/// `kernels/yolo.cu` compaction kernel writes.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct YoloCandidate {
    pub cx: f32,
    pub cy: f32,
    pub w: f32,
    pub h: f32,
    /// Best class score (≥ the confidence threshold).
    pub score: f32,
    pub class_id: u32,
    pub anchor: u32,
    /// Batch row.
    pub frame: u32,
}

/// Finishes a batch from candidates compacted on the GPU (sorted by frame, then anchor):
/// the same boxes, NMS and order as [`parse_yolo`] on the full output. Segmentation
/// detections get [`MaskSource::OutputColumn`]: their coefficients stay in the device
/// output, at column `query`.
pub fn finish_candidates(
    scratch: &mut ParseScratch,
    params: &ParseParams,
    candidates: &[YoloCandidate],
    transforms: &[LetterboxTransform],
    seg: bool,
) -> Vec<Vec<Detection>> {
    let mut frames = Vec::with_capacity(transforms.len());
    let mut rest = candidates;
    for (bi, tr) in transforms.iter().enumerate() {
        let n = rest.iter().take_while(|c| c.frame as usize == bi).count();
        let (mine, tail) = rest.split_at(n);
        rest = tail;
        scratch.clear_frame();
        for c in mine {
            if !(c.score.is_finite() && c.score >= params.conf_threshold) {
                continue;
            }
            let Some(mb) = model_box(c.cx, c.cy, c.w, c.h) else {
                continue;
            };
            let Some(fb) = to_frame_box(tr, &mb) else { continue };
            scratch.push(mb, fb, c.score, c.class_id, c.anchor);
        }
        frames.push(finish_frame(scratch, params, |_| {
            seg.then_some(MaskSource::OutputColumn)
        }));
    }
    frames
}
