//! Prompt-conditioned segmentation (SAM3-style): an image encoder run once per batch of
//! frames and a decoder run once per class prompt, its feature inputs bound directly to the
//! encoder's output tensors. Independent of GStreamer, so the benchmark drives it too.
//!
//! Routes (the order of the calls; results are identical on the CPU, equal within
//! [`compare::Tolerance`] on a GPU, where each route's batch sizes pick their own kernels:
//! see [`compare`]):
//! * `c` (default): encoder with batch F, then per class the decoder with batch F, prompts
//!   replicated xF once (at open for max-batch) and reused by every batch;
//! * `b`: encoder with batch F, then per frame the decoder with batch K (classes);
//! * `a`: per frame the encoder with batch 1 and the decoder with batch K;
//! * `seed`: route c as it was written by hand: every prompt rebuilt and uploaded each
//!   batch and every decoder output (all masks) taken to host memory (benchmark baseline).
//!
//! Decoder outputs are double-buffered by default ([`PromptSegOptions::decoder_buffers`] =
//! 2): the selection of call k runs on a worker thread while the decoder computes call k+1,
//! so two output sets are alive at once. With 1 the selection of call k finishes and its
//! outputs are released before call k+1 starts (one output set less in memory, no overlap).

pub mod compare;
mod context;
mod open;
mod route;
mod select;

pub use context::PromptSegContext;
pub use select::{OutputIndex, RowTarget, Selected, Selector};

use gst::glib;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::backend::{BackendError, BackendKind, InferenceBackend};
use crate::config::promptseg::{Prompt, PromptSegConfig};
use crate::tensor::{DType, HostTensorPool, PooledBytes, Tensor};

/// Order of the encoder and decoder calls of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash, glib::Enum)]
#[enum_type(name = "GstTrtRoute")]
pub enum Route {
    /// Per frame: encoder batch 1, decoder batch K classes.
    #[enum_value(name = "Per frame, the encoder then the decoder with all classes", nick = "a")]
    A,
    /// Encoder batch F, then per frame the decoder with batch K classes.
    #[enum_value(
        name = "The encoder once, then the decoder per frame with all classes",
        nick = "b"
    )]
    B,
    /// Encoder batch F, then per class the decoder with batch F (default).
    #[default]
    #[enum_value(
        name = "The encoder once, then the decoder per class with all frames",
        nick = "c"
    )]
    C,
    /// Route C with prompts uploaded and all decoder outputs taken to the host every
    /// batch (the hand-written baseline, for benchmarks).
    #[enum_value(
        name = "Route c with prompts uploaded and every decoder output copied to the host each batch (benchmark baseline)",
        nick = "seed"
    )]
    Seed,
}

impl Route {
    /// Parses `a`, `b`, `c` or `seed` (any case).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "a" => Self::A,
            "b" => Self::B,
            "c" => Self::C,
            "seed" => Self::Seed,
            _ => return None,
        })
    }
    pub const fn name(self) -> &'static str {
        match self {
            Self::A => "a",
            Self::B => "b",
            Self::C => "c",
            Self::Seed => "seed",
        }
    }
}

/// How the two models are opened.
#[derive(Debug, Clone)]
pub struct PromptSegOptions {
    /// Backend; `None` = the config's, else onnxruntime-cpu.
    pub kind: Option<BackendKind>,
    pub device_id: i32,
    pub fp16: bool,
    pub engine_cache_dir: Option<PathBuf>,
    pub threads: usize,
    /// Overrides the config's max-batch.
    pub max_batch: Option<usize>,
    /// The route that will run: routes c and seed keep the encoder outputs where the
    /// backend computed them (device memory on GPU backends that support it); routes a and
    /// b repeat their rows per class and take them in host memory.
    pub route: Route,
    /// Decoder output sets alive at once: 2 (default) overlaps the selection of a decoder
    /// call with the next call; 1 finishes each selection before the next call.
    pub decoder_buffers: usize,
    /// GPU backends: grow the device memory arena by exactly what is requested instead of
    /// in doubling steps (what a tensor costs then shows in the VRAM used).
    pub exact_arena: bool,
    /// The element: the encoder's and decoder's log lines name it.
    pub log_target: crate::backend::LogTarget,
    /// The element's pools: the backends' bounded output pools join it (flush/stop wake).
    pub pools: std::sync::Arc<crate::tensor::pool::PoolSet>,
}

impl Default for PromptSegOptions {
    fn default() -> Self {
        Self {
            kind: None,
            device_id: 0,
            fp16: false,
            engine_cache_dir: None,
            threads: 0,
            max_batch: None,
            route: Route::default(),
            decoder_buffers: 2,
            exact_arena: false,
            log_target: Default::default(),
            pools: Default::default(),
        }
    }
}

/// A failure with a sentence for the user.
#[derive(Debug, thiserror::Error)]
pub enum PromptSegError {
    #[error("{0}")]
    Config(String),
    #[error("{stage}: {source}")]
    Backend {
        stage: &'static str,
        #[source]
        source: BackendError,
    },
    #[error("selecting the decoder's queries failed: {0}")]
    Select(String),
}

impl PromptSegError {
    /// A wait for output tensors cut short by a flush or stop: no failure to report.
    pub fn is_flushing(&self) -> bool {
        matches!(
            self,
            PromptSegError::Backend {
                source: BackendError::Flushing,
                ..
            }
        )
    }
}

fn config_err(s: impl Into<String>) -> PromptSegError {
    PromptSegError::Config(s.into())
}

/// Counters of the last batch and since open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoundStats {
    pub encoder_calls: u64,
    pub decoder_calls: u64,
    /// Bytes that cross device -> host: for routes a/b/c what a device-side selection
    /// copies back (boxes, logits, presence, kept masks); for `seed` every output byte.
    pub d2h_bytes: u64,
    /// Prompt bytes uploaded.
    pub h2d_prompt_bytes: u64,
    pub detections: u64,
    /// Bytes of all outputs of the largest decoder call (one output set; double
    /// buffering keeps two alive).
    pub decoder_output_bytes: u64,
}

impl RoundStats {
    fn add(&mut self, o: &RoundStats) {
        self.encoder_calls += o.encoder_calls;
        self.decoder_calls += o.decoder_calls;
        self.d2h_bytes += o.d2h_bytes;
        self.h2d_prompt_bytes += o.h2d_prompt_bytes;
        self.detections += o.detections;
        self.decoder_output_bytes = self.decoder_output_bytes.max(o.decoder_output_bytes);
    }
}

/// Prompt inputs of one decoder call.
#[derive(Debug, Clone)]
struct PromptTensors {
    features: Tensor,
    mask: Option<Tensor>,
}

/// Both models loaded, checked against each other and against the config.
pub struct PromptSegEngine {
    pub config: PromptSegConfig,
    pub model: Arc<str>,
    encoder: Box<dyn InferenceBackend>,
    decoder: Box<dyn InferenceBackend>,
    input_name: String,
    /// Decoder input name and the index of the encoder output that feeds it.
    links: Vec<(String, usize)>,
    selector: Selector,
    feature_dtype: DType,
    mask_dtype: Option<DType>,
    /// Tokens per prompt as the decoder takes them (classes with fewer are padded).
    tokens: usize,
    max_batch: usize,
    /// Decoder output sets alive at once (1 or 2).
    decoder_buffers: usize,
    /// Route c: per batch size, each class's prompt replicated that many times (made and
    /// uploaded once: at open for max-batch, on the first batch of another size).
    replicated: HashMap<usize, Vec<PromptTensors>>,
    /// Routes a/b: all class prompts stacked `[K, P, D]` (made and uploaded at open).
    stacked: PromptTensors,
    pool: HostTensorPool,
    last: RoundStats,
    total: RoundStats,
}

fn stage_err(stage: &'static str) -> impl Fn(BackendError) -> PromptSegError {
    move |source| PromptSegError::Backend { stage, source }
}

impl PromptSegEngine {
    /// Each class's prompt replicated for a batch of `frames`, uploaded.
    fn replicated_prompts(&mut self, frames: usize) -> Result<Vec<PromptTensors>, PromptSegError> {
        (0..self.config.classes.len())
            .map(|c| {
                let t = self.prompt_tensors(&[c], frames)?;
                self.upload(t)
            })
            .collect()
    }

    /// Name of the backend in use.
    pub fn backend_name(&self) -> &'static str {
        self.decoder.name()
    }

    /// Decoder output sets alive at once (1 or 2).
    pub fn decoder_buffers(&self) -> usize {
        self.decoder_buffers
    }

    /// Largest batch of frames.
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Counters of the last batch.
    pub fn last_round(&self) -> RoundStats {
        self.last
    }

    /// Counters since open.
    pub fn totals(&self) -> RoundStats {
        self.total
    }

    /// Host prompt tensors for `classes`, each class's prompt repeated `repeat` times in a
    /// row: `[classes * repeat, P, D]` and `[classes * repeat, P]`.
    fn prompt_tensors(&self, classes: &[usize], repeat: usize) -> Result<PromptTensors, PromptSegError> {
        let (p, rows) = (self.tokens, classes.len() * repeat);
        let d = self.config.classes.first().map_or(0, |c| c.prompt.dim);
        let mut feats = Vec::with_capacity(rows * p * d);
        let mut mask = Vec::with_capacity(rows * p);
        for &c in classes {
            let pr: &Prompt = &self.config.classes[c].prompt;
            for _ in 0..repeat {
                feats.extend_from_slice(&pr.features);
                feats.resize(feats.len() + (p - pr.tokens) * d, 0.0);
                mask.extend_from_slice(&pr.mask);
                mask.resize(mask.len() + (p - pr.tokens), 0.0);
            }
        }
        let features = encode(
            &self.config.prompt_features,
            self.feature_dtype,
            vec![rows, p, d],
            &feats,
        )?;
        let mask = match (&self.config.prompt_mask, self.mask_dtype) {
            (Some(n), Some(dt)) => Some(encode(n, dt, vec![rows, p], &mask)?),
            _ => None,
        };
        Ok(PromptTensors { features, mask })
    }

    fn upload(&mut self, t: PromptTensors) -> Result<PromptTensors, PromptSegError> {
        let up = stage_err("uploading the prompts");
        let bytes = t.features.len_bytes() + t.mask.as_ref().map_or(0, |m| m.len_bytes());
        self.last.h2d_prompt_bytes += bytes as u64;
        Ok(PromptTensors {
            features: self.decoder.upload(&t.features).map_err(&up)?,
            mask: match &t.mask {
                Some(m) => Some(self.decoder.upload(m).map_err(&up)?),
                None => None,
            },
        })
    }
}

/// A host tensor of `values` converted to `dtype`.
fn encode(name: &str, dtype: DType, shape: Vec<usize>, values: &[f32]) -> Result<Tensor, PromptSegError> {
    let bytes: Vec<u8> = match dtype {
        DType::F32 => values.iter().flat_map(|v| v.to_ne_bytes()).collect(),
        DType::F16 => values
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_ne_bytes())
            .collect(),
        DType::I32 => values.iter().flat_map(|v| (*v as i32).to_ne_bytes()).collect(),
        DType::I64 => values.iter().flat_map(|v| (*v as i64).to_ne_bytes()).collect(),
        DType::U8 => values.iter().map(|v| (*v != 0.0) as u8).collect(),
    };
    Ok(Tensor::host(name, dtype, shape, PooledBytes::detached(bytes)))
}

#[cfg(test)]
mod tests;
