//! The prompt-segmentation engine as trtinfer runs it: batch input lookup, route, interval
//! reuse and results attached to the frames.

use std::collections::HashMap;

use super::{PromptSegEngine, PromptSegError, PromptSegOptions, Route};
use crate::batch::Batch;
use crate::config::promptseg::PromptSegConfig;
use crate::results::Detection;
use crate::trtinfer::InferSettings;

/// A prompt-segmentation config loaded for one trtinfer element.
pub struct PromptSegContext {
    pub engine: PromptSegEngine,
    pub route: Route,
    interval: u32,
    keep_input: bool,
    batches: u64,
    /// Detections of the last inferred batch per source pad, reused while `interval`
    /// skips batches.
    reuse: HashMap<u32, Vec<Detection>>,
}

impl PromptSegContext {
    /// Loads `s.model` (a prompt-segmentation TOML) with the element's overrides.
    pub fn open(s: &InferSettings) -> Result<Self, PromptSegError> {
        let path = s
            .model
            .as_ref()
            .ok_or_else(|| PromptSegError::Config("the 'model' property is not set".into()))?;
        let mut config =
            PromptSegConfig::from_file(path).map_err(|e| PromptSegError::Config(e.to_string()))?;
        if let Some(n) = &s.model_name {
            config.name = n.clone();
        }
        if let Some(v) = s.conf_threshold {
            config.score_threshold = v;
        }
        let engine = PromptSegEngine::open(
            config,
            &PromptSegOptions {
                kind: s.backend,
                device_id: s.device_id,
                fp16: s.fp16,
                engine_cache_dir: s.engine_cache_dir.clone(),
                threads: s.threads,
                max_batch: s.max_batch,
                route: s.route,
                decoder_buffers: s.decoder_buffers.unwrap_or(2),
                exact_arena: false,
                log_target: s.log_target.clone(),
                pools: s.pools.clone(),
            },
        )?;
        Ok(Self {
            engine,
            route: s.route,
            interval: s.interval,
            keep_input: s.keep_input,
            batches: 0,
            reuse: HashMap::new(),
        })
    }

    /// Runs (or, between `interval` batches, reuses) the batch and attaches the results.
    pub fn process(&mut self, batch: &mut Batch) -> Result<(), PromptSegError> {
        let run = self.interval == 0 || self.batches.is_multiple_of(self.interval as u64 + 1);
        self.batches += 1;
        if !run {
            for slot in batch.slots.iter_mut() {
                if let Some(d) = self.reuse.get(&slot.pad_index()) {
                    slot.results.detections.extend(d.iter().cloned());
                }
            }
            if !self.keep_input {
                batch.release_input(&self.engine.model);
            }
            return Ok(());
        }
        let model = self.engine.model.clone();
        let input = batch.input_for(&model).ok_or_else(|| {
            PromptSegError::Config(format!(
                "no input tensor was prepared for model '{model}': put trtpreprocess (config-file or model-name={model}) before trtinfer"
            ))
        })?;
        #[cfg(feature = "cuda")]
        if let Some(lease) = crate::cuda::device_lease(&input.tensor) {
            lease
                .wait()
                .map_err(|e| PromptSegError::Config(format!("waiting for the input tensor: {e}")))?;
        }
        let (tensor, transforms, slots) = (
            input.tensor.clone(),
            input.transforms.clone(),
            input.slots.clone(),
        );
        let detections = self.engine.run(self.route, &tensor, &transforms)?;
        self.reuse.clear();
        for (row, dets) in detections.into_iter().enumerate() {
            let Some(slot) = slots.get(row).and_then(|&i| batch.slots.get_mut(i)) else {
                continue;
            };
            if self.interval > 0 {
                self.reuse.insert(slot.pad_index(), dets.clone());
            }
            slot.results.detections.extend(dets);
        }
        if !self.keep_input {
            batch.release_input(&model);
        }
        Ok(())
    }
}
