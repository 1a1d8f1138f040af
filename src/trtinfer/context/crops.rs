//! Secondary inference on objects (`operate-on=objects`): crops of the detections of
//! earlier models, inferred in chunks and attached to their objects.

use super::*;

impl InferContext {
    /// Object mode: crops of the selected detections, inferred in chunks of `max-batch`.
    pub(super) fn infer_objects(&mut self, batch: &mut Batch) -> Result<(), InferError> {
        let Some(mut stage) = self.crops.take() else {
            return Ok(());
        };
        let res = self.run_crops(&mut stage, batch);
        self.crops = Some(stage);
        res
    }

    fn run_crops(&mut self, stage: &mut CropStage, batch: &mut Batch) -> Result<(), InferError> {
        if let Some(wanted) = &stage.filter.model {
            if !batch.models.iter().any(|m| **m == **wanted) {
                return Err(InferError::NoPrimary {
                    wanted: wanted.clone(),
                    model: self.model.to_string(),
                    ran: if batch.models.is_empty() {
                        "none".into()
                    } else {
                        batch.models.iter().map(|m| &**m).collect::<Vec<_>>().join(", ")
                    },
                });
            }
        }
        let n = stage.select(
            &self.model,
            batch.slots.iter().map(|s| s.results.detections.as_slice()),
        );
        if n == 0 {
            return Ok(());
        }
        stage.place(|o| {
            let slot = &batch.slots[o.slot];
            (
                slot.results.detections[o.detection].bbox,
                (slot.info.width(), slot.info.height()),
            )
        });
        #[cfg(feature = "cuda")]
        if self.backend.name() != BackendKind::OnnxRuntimeCpu.name() {
            let mut maps = Vec::new();
            if let Some(frames) = stage.gpu.frames(&stage.objects, &batch.slots, &mut maps) {
                match self.crops_on_gpu(stage, &frames) {
                    Ok(results) => {
                        drop(maps);
                        Self::attach_secondary(stage, batch, results);
                        return Ok(());
                    }
                    // The CUDA preprocessing failed (logged by the element on the next
                    // batch through `gpu_disabled`): CPU crops from now on.
                    Err(InferError::Config(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        // Map the frames that have crops (CUDA frames are read through their system-memory
        // mapping).
        let mut mapped: Vec<Option<gst_video::VideoFrameRef<&gst::BufferRef>>> =
            batch.slots.iter().map(|_| None).collect();
        for o in &stage.objects {
            if mapped[o.slot].is_some() {
                continue;
            }
            let slot = &batch.slots[o.slot];
            let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(slot.buffer.as_ref(), &slot.info)
                .map_err(|e| InferError::Frame {
                    frame: slot.frame_number,
                    pad: slot.pad_index(),
                    reason: e.to_string(),
                })?;
            mapped[o.slot] = Some(frame);
        }
        let mut readers = Vec::with_capacity(mapped.len());
        for (i, f) in mapped.iter().enumerate() {
            readers.push(match f {
                None => None,
                Some(f) => Some(FrameReader::new(f).map_err(|e| InferError::Frame {
                    frame: batch.slots[i].frame_number,
                    pad: batch.slots[i].pad_index(),
                    reason: e.to_string(),
                })?),
            });
        }
        let mut results = Vec::with_capacity(n);
        for range in chunks(n, self.config.max_batch) {
            let Some(tensor) = stage.fill(&self.input_name, &readers, range.clone()) else {
                continue;
            };
            results.extend(self.infer_crops(&tensor, &stage.transforms[range])?);
        }
        drop(readers);
        drop(mapped);
        Self::attach_secondary(stage, batch, results);
        Ok(())
    }

    /// Infers one chunk of crops and parses its outputs.
    fn infer_crops(
        &mut self,
        tensor: &Tensor,
        transforms: &[crate::geometry::LetterboxTransform],
    ) -> Result<Vec<crate::results::ObjectResult>, InferError> {
        let outputs = self.backend.infer(&[InputRef {
            name: &self.input_name,
            tensor,
        }])?;
        parsers::landmarks::parse_landmarks(&self.params, &outputs, transforms).map_err(|e| {
            InferError::Parse {
                model: self.model.to_string(),
                parser: self.parser.name(),
                reason: e.to_string(),
            }
        })
    }

    /// GPU crops: one kernel launch and one inference per chunk. A failure of the CUDA
    /// preprocessing is `InferError::Config` (the caller falls back to the CPU).
    #[cfg(feature = "cuda")]
    fn crops_on_gpu(
        &mut self,
        stage: &mut CropStage,
        frames: &[crate::cuda::CudaFrame],
    ) -> Result<Vec<crate::results::ObjectResult>, InferError> {
        let n = frames.len();
        let chunk = self.config.max_batch.max(1);
        let mut results = Vec::with_capacity(n);
        for range in chunks(n, chunk) {
            let tensor = stage
                .gpu
                .run(
                    &stage.pre,
                    chunk,
                    &self.input_name,
                    &frames[range.clone()],
                    &stage.transforms[range.clone()],
                )
                .map_err(InferError::Config)?;
            results.extend(self.infer_crops(&tensor, &stage.transforms[range])?);
        }
        Ok(results)
    }

    fn attach_secondary(stage: &CropStage, batch: &mut Batch, results: Vec<crate::results::ObjectResult>) {
        for (o, r) in stage.objects.iter().zip(results) {
            if let Some(d) = batch.slots[o.slot].results.detections.get_mut(o.detection) {
                d.secondary.push(r);
            }
        }
    }
}
