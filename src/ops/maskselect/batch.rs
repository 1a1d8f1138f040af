//! [`BatchMaskSelect`]: the mask-selection operation on a whole batch, the one thing
//! trtmaskselect calls. Model outputs whose mask tensors stayed in GPU memory are handled
//! by the kernel ([`super::cuda::MaskSelector`], one launch for every kept detection of the
//! batch, feature `cuda`); host mask tensors by the CPU code of [`super`]. Either way the
//! mask tensors are released from the batch afterwards.

use std::sync::Arc;

use crate::batch::{Batch, BatchOutputs, MaskTensor};

use super::{frame_mask, select, MaskSelection};

/// What one batch produced and kept, for the element's counters and messages.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct MaskBatchStats {
    /// Bytes of the models' mask tensors.
    pub produced: u64,
    /// Bytes of the masks kept in the metadata (or in device memory).
    pub kept: u64,
    /// Models whose mask tensor is neither in GPU memory nor a host float tensor (no masks
    /// were computed for them).
    pub unreadable: Vec<Arc<str>>,
}

/// Why the masks of a batch could not be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MaskSelectError {
    /// The GPU path failed (kernel, context, memory).
    #[error("Masks could not be computed on the GPU: {0}")]
    Gpu(String),
    /// Mask tensors in GPU memory reached a build without CUDA.
    #[error("Masks are in GPU memory but this build has no CUDA support (cargo feature 'cuda')")]
    NoCuda,
}

/// The mask-selection operation (see the module docs); reused from batch to batch.
#[derive(Debug, Default)]
pub struct BatchMaskSelect {
    selected: Vec<usize>,
    /// Mask kernel for model outputs that stayed on the GPU (created on first use).
    #[cfg(feature = "cuda")]
    gpu: Option<super::cuda::MaskSelector>,
}

impl BatchMaskSelect {
    /// Computes the masks of the detections of `batch` that `sel` keeps, in frame pixels
    /// inside their boxes, and takes the model mask tensors out of the batch. `download`:
    /// masks computed on the GPU are copied to the host too (else they stay in device
    /// memory for trtoverlay's GPU path only).
    pub fn run(
        &mut self,
        batch: &mut Batch,
        sel: &MaskSelection,
        download: bool,
    ) -> Result<MaskBatchStats, MaskSelectError> {
        let outputs: Vec<BatchOutputs> = std::mem::take(&mut batch.outputs);
        let mut stats = MaskBatchStats::default();
        let (device, outputs): (Vec<BatchOutputs>, Vec<BatchOutputs>) = outputs
            .into_iter()
            .partition(|o| matches!(o.masks, MaskTensor::DevicePrototypes { .. }));
        if !device.is_empty() {
            let (p, k) = self.run_device(batch, &device, sel, download)?;
            stats.produced += p;
            stats.kept += k;
        }
        let selected = &mut self.selected;
        for out in &outputs {
            stats.produced += out.masks.tensor().len_bytes() as u64;
            let tensor = out.masks.tensor();
            let Some(values) = tensor.f32_values() else {
                stats.unreadable.push(out.model.clone());
                continue;
            };
            let values = &*values;
            for (slot_idx, slot) in batch.slots.iter_mut().enumerate() {
                let Some(row) = out.row_of(slot_idx) else { continue };
                let Some(transform) = out.transforms.get(row) else {
                    continue;
                };
                let dets = &mut slot.results.detections;
                select(dets, sel, selected);
                for &i in selected.iter() {
                    if dets[i].model != out.model {
                        continue;
                    }
                    dets[i].mask =
                        frame_mask(&dets[i], &out.masks, values, row, transform, sel.mask_threshold);
                    if let Some(m) = &dets[i].mask {
                        stats.kept += m.data.len() as u64;
                    }
                }
                for d in dets.iter_mut().filter(|d| d.model == out.model) {
                    d.mask_source = None;
                }
            }
        }
        Ok(stats)
    }

    /// Masks of outputs that stayed on the GPU: one kernel launch for every kept detection
    /// of the batch; only the kept masks come to the host. Returns (produced, kept) bytes.
    #[cfg(feature = "cuda")]
    fn run_device(
        &mut self,
        batch: &mut Batch,
        outputs: &[BatchOutputs],
        sel: &MaskSelection,
        download: bool,
    ) -> Result<(u64, u64), MaskSelectError> {
        use super::cuda::{MaskPlanes, MaskRequest, MaskSelector};
        use crate::results::{DeviceMask, FrameMask, MaskSource};
        let fail = |e: crate::cuda::CudaError| MaskSelectError::Gpu(e.to_string());
        let selected = &mut self.selected;
        let mut produced = 0u64;
        let mut requests = Vec::new();
        let mut targets = Vec::new();
        for out in outputs {
            let MaskTensor::DevicePrototypes {
                protos,
                coefficients,
                first,
            } = &out.masks
            else {
                continue;
            };
            produced += protos.len_bytes() as u64;
            for (slot_idx, slot) in batch.slots.iter().enumerate() {
                let Some(row) = out.row_of(slot_idx) else { continue };
                let Some(transform) = out.transforms.get(row) else {
                    continue;
                };
                let dets = &slot.results.detections;
                select(dets, sel, selected);
                for &i in selected.iter() {
                    let d = &dets[i];
                    if d.model != out.model || d.mask_source != Some(MaskSource::OutputColumn) {
                        continue;
                    }
                    let rect = d.bbox.to_pixel_rect(transform.frame_w, transform.frame_h);
                    if rect.2 == 0 || rect.3 == 0 {
                        continue;
                    }
                    requests.push(MaskRequest {
                        planes: MaskPlanes::Prototypes {
                            protos,
                            coefficients,
                            first: *first,
                            anchor: d.query as usize,
                        },
                        row,
                        rect,
                        transform: *transform,
                        mask_threshold: sel.mask_threshold,
                    });
                    targets.push((slot_idx, i, rect));
                }
            }
        }
        let mut kept = 0u64;
        if !requests.is_empty() {
            if self.gpu.is_none() {
                let ptr = match &requests[0].planes {
                    MaskPlanes::Prototypes { protos, .. } => protos,
                    MaskPlanes::Dense { masks, .. } => masks,
                };
                let ptr = match &ptr.storage {
                    crate::tensor::TensorStorage::Device { ptr, .. } => *ptr,
                    crate::tensor::TensorStorage::Host(_) => 0,
                };
                let ctx = crate::cuda::device_of_pointer(ptr)
                    .and_then(crate::cuda::DeviceContext::primary)
                    .map_err(fail)?;
                self.gpu = Some(MaskSelector::new(&ctx).map_err(fail)?);
            }
            let selector = self.gpu.as_mut().expect("created above");
            let mut offsets = Vec::with_capacity(requests.len() + 1);
            let masks = selector.run(&requests, download, &mut offsets).map_err(fail)?;
            for (k, &(slot_idx, i, (x, y, width, height))) in targets.iter().enumerate() {
                let range = masks.offsets[k]..masks.offsets[k + 1];
                let data = if download {
                    masks.host[range.clone()].to_vec()
                } else {
                    Vec::new()
                };
                kept += range.len() as u64;
                let device = DeviceMask {
                    ptr: masks.arena.ptr() + range.start as u64,
                    // Complete: the selector waited for its kernel.
                    ready_event: 0,
                    keepalive: masks.arena.clone(),
                };
                batch.slots[slot_idx].results.detections[i].mask = Some(FrameMask {
                    x,
                    y,
                    width,
                    height,
                    data,
                    device: Some(device),
                });
            }
        }
        for slot in batch.slots.iter_mut() {
            for d in slot.results.detections.iter_mut() {
                if outputs.iter().any(|o| o.model == d.model) {
                    d.mask_source = None;
                }
            }
        }
        Ok((produced, kept))
    }

    #[cfg(not(feature = "cuda"))]
    fn run_device(
        &mut self,
        _batch: &mut Batch,
        _outputs: &[BatchOutputs],
        _sel: &MaskSelection,
        _download: bool,
    ) -> Result<(u64, u64), MaskSelectError> {
        Err(MaskSelectError::NoCuda)
    }
}
