//! Query selection of one decoder call: which queries are active (presence x logit score
//! above the threshold, top-K per frame and class), their boxes mapped back to frame pixels
//! and their masks cropped and resized to those boxes. Only the selected masks are read.
//!
//! Decoder outputs in host memory are read in place. Outputs kept in device memory (GPU
//! backends with `outputs_on_device`, cargo feature `cuda`) are read by copying to the host
//! exactly what [`Selected::d2h_bytes`] counts: boxes, logits and presence, and one mask
//! plane per kept query. A selection kernel will replace this step and copy back the
//! frame-space masks only.

use std::sync::Arc;

use crate::batch::MaskTensor;
use crate::config::promptseg::BoxFormat;
use crate::geometry::{BoxF, LetterboxTransform};
use crate::ops::maskselect;
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
    /// CUDA device of outputs kept in device memory.
    pub device_id: i32,
    pub model: Arc<str>,
    /// Per class index: id and label.
    pub classes: Vec<(u32, Arc<str>)>,
    pub outputs: OutputIndex,
    pub box_format: BoxFormat,
    pub score_threshold: f32,
    pub mask_threshold: f32,
    pub top_k: usize,
    /// Mask kernel for decoder outputs kept in device memory (created on first use).
    #[cfg(feature = "cuda")]
    pub gpu: Arc<std::sync::Mutex<Option<crate::ops::maskselect::cuda::MaskSelector>>>,
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

/// `len` bytes at byte `offset` of a device tensor, copied to the host.
#[cfg(feature = "cuda")]
fn download(t: &Tensor, device_id: i32, offset: usize, len: usize) -> Result<Vec<u8>, String> {
    let crate::tensor::TensorStorage::Device { ptr, len: total, .. } = &t.storage else {
        return Err(format!("'{}' is not a device tensor", t.name));
    };
    if offset.checked_add(len).is_none_or(|end| end > *total) {
        return Err(format!(
            "'{}': {len} bytes at {offset} are past its {total} bytes",
            t.name
        ));
    }
    let ctx = crate::cuda::DeviceContext::primary(device_id)
        .map_err(|e| format!("reading '{}' from CUDA device {device_id}: {e}", t.name))?;
    let mut out = vec![0u8; len];
    crate::cuda::copy_device_to_host(&ctx, ptr + offset as u64, total - offset, &mut out)
        .map_err(|e| format!("copying '{}' to the host: {e}", t.name))?;
    Ok(out)
}

#[cfg(not(feature = "cuda"))]
fn download(t: &Tensor, _device_id: i32, _offset: usize, _len: usize) -> Result<Vec<u8>, String> {
    Err(format!(
        "decoder output '{}' is in device memory, but this build has no CUDA support (cargo feature cuda)",
        t.name
    ))
}

/// f32 values of host-order f32/f16 bytes.
fn f32_from_bytes(dtype: crate::tensor::DType, bytes: &[u8]) -> Option<Vec<f32>> {
    match dtype {
        crate::tensor::DType::F32 => Some(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        crate::tensor::DType::F16 => Some(
            bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_ne_bytes([c[0], c[1]]).to_f32())
                .collect(),
        ),
        _ => None,
    }
}

/// The f32 values of output `what`: borrowed from host memory, or the whole tensor copied
/// from the device (small outputs only).
fn values<'a>(t: &'a Tensor, what: &str, device_id: i32) -> Result<std::borrow::Cow<'a, [f32]>, String> {
    let not_float = || {
        format!(
            "decoder output {what} ('{}') is {}, not a float tensor",
            t.name,
            t.dtype.name()
        )
    };
    if t.host_bytes().is_some() {
        return t.f32_values().ok_or_else(not_float);
    }
    let bytes = download(t, device_id, 0, t.len_bytes())?;
    f32_from_bytes(t.dtype, &bytes)
        .map(std::borrow::Cow::Owned)
        .ok_or_else(not_float)
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
        let dev = self.device_id;
        let boxes = values(&outs[self.outputs.boxes], "boxes", dev)?;
        let logits = values(&outs[self.outputs.logits], "logits", dev)?;
        let presence = match self.outputs.presence {
            Some(i) => Some(values(&outs[i], "presence", dev)?),
            None => None,
        };
        let mask_tensor = &outs[self.outputs.masks];
        // Host masks are read in place; device masks one kept plane at a time.
        let host_masks = match mask_tensor.host_bytes() {
            Some(_) => Some(values(mask_tensor, "masks", dev)?),
            None => None,
        };
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
        // Device masks: (row in `out.rows`, detection, decoder row, transform), computed
        // by one kernel launch after the loop.
        let mut pending: Vec<(usize, usize, usize, LetterboxTransform)> = Vec::new();
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
                    secondary: Vec::new(),
                };
                match &host_masks {
                    Some(v) => {
                        det.mask =
                            maskselect::frame_mask(&det, &dense, v, t.row, transform, self.mask_threshold);
                        out.d2h_bytes += mask_bytes;
                        det.mask_source = None;
                    }
                    None => pending.push((out.rows.len(), dets.len(), t.row, *transform)),
                }
                dets.push(det);
            }
            out.rows.push((t.frame, t.class, dets));
        }
        if !pending.is_empty() {
            self.device_masks(mask_tensor, &pending, &mut out)?;
        }
        Ok(out)
    }

    /// Masks of the kept queries of decoder outputs in device memory: one kernel launch
    /// for all of them, only the frame-space masks come to the host.
    #[cfg(feature = "cuda")]
    fn device_masks(
        &self,
        mask_tensor: &Tensor,
        pending: &[(usize, usize, usize, LetterboxTransform)],
        out: &mut Selected,
    ) -> Result<(), String> {
        use crate::ops::maskselect::cuda::{MaskPlanes, MaskRequest, MaskSelector};
        let mut requests = Vec::with_capacity(pending.len());
        for &(r, d, row, transform) in pending {
            let det = &out.rows[r].2[d];
            requests.push(MaskRequest {
                planes: MaskPlanes::Dense {
                    masks: mask_tensor,
                    query: det.query as usize,
                },
                row,
                rect: det.bbox.to_pixel_rect(transform.frame_w, transform.frame_h),
                transform,
                mask_threshold: self.mask_threshold,
            });
        }
        let mut gpu = self
            .gpu
            .lock()
            .map_err(|_| "mask selector lock poisoned".to_string())?;
        if gpu.is_none() {
            let ctx = crate::cuda::DeviceContext::primary(self.device_id)
                .map_err(|e| format!("mask selection on CUDA device {}: {e}", self.device_id))?;
            *gpu = Some(MaskSelector::new(&ctx).map_err(|e| e.to_string())?);
        }
        let selector = gpu.as_mut().expect("created above");
        let mut offsets = Vec::with_capacity(requests.len() + 1);
        let masks = selector
            .run(&requests, true, &mut offsets)
            .map_err(|e| format!("mask selection on the GPU: {e}"))?;
        for (k, (&(r, d, _, _), req)) in pending.iter().zip(&requests).enumerate() {
            let range = masks.offsets[k]..masks.offsets[k + 1];
            let (x, y, width, height) = req.rect;
            let det = &mut out.rows[r].2[d];
            det.mask_source = None;
            if range.is_empty() {
                continue;
            }
            out.d2h_bytes += range.len() as u64;
            det.mask = Some(crate::results::FrameMask {
                x,
                y,
                width,
                height,
                data: masks.host[range.clone()].to_vec(),
                device: Some(crate::results::DeviceMask {
                    ptr: masks.arena.ptr() + range.start as u64,
                    ready_event: 0,
                    keepalive: masks.arena.clone(),
                }),
            });
        }
        Ok(())
    }

    #[cfg(not(feature = "cuda"))]
    fn device_masks(
        &self,
        mask_tensor: &Tensor,
        _pending: &[(usize, usize, usize, LetterboxTransform)],
        _out: &mut Selected,
    ) -> Result<(), String> {
        Err(format!(
            "decoder output '{}' is in device memory, but this build has no CUDA support (cargo feature cuda)",
            mask_tensor.name
        ))
    }
}
