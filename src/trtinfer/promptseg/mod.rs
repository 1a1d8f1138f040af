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
mod route;
mod select;

pub use context::PromptSegContext;
pub use select::{OutputIndex, RowTarget, Selected, Selector};

use gst::glib;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::backend::{self, BackendError, BackendKind, BackendOptions, InferenceBackend, TensorSpec};
use crate::config::promptseg::{Prompt, PromptSegConfig};
use crate::config::ModelFile;
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

fn list(specs: &[TensorSpec]) -> String {
    specs.iter().map(|s| s.describe()).collect::<Vec<_>>().join(", ")
}

fn find<'a>(
    specs: &'a [TensorSpec],
    name: &str,
    what: &str,
    model: &str,
) -> Result<&'a TensorSpec, PromptSegError> {
    specs.iter().find(|s| s.name == name).ok_or_else(|| {
        config_err(format!(
            "{what} '{name}' does not exist in {model} (it has: {})",
            list(specs)
        ))
    })
}

/// Whether an encoder output can feed a decoder input: same dtype and rank, fixed
/// non-batch dimensions equal.
fn fits(out: &TensorSpec, inp: &TensorSpec) -> bool {
    out.dtype == inp.dtype
        && out.shape.len() == inp.shape.len()
        && out
            .shape
            .iter()
            .zip(&inp.shape)
            .skip(1)
            .all(|(a, b)| a.is_none() || b.is_none() || a == b)
}

impl PromptSegEngine {
    /// Opens encoder and decoder and checks every link, prompt and output.
    pub fn open(config: PromptSegConfig, o: &PromptSegOptions) -> Result<Self, PromptSegError> {
        let kind = o.kind.or(config.backend).unwrap_or_default();
        if matches!(config.encoder, ModelFile::Engine(_)) && kind != BackendKind::TensorRt {
            return Err(config_err(format!(
                "{} is a TensorRT engine: use backend=tensorrt",
                config.encoder.path().display()
            )));
        }
        let max_batch = o.max_batch.unwrap_or(config.max_batch);
        if !(1..=2).contains(&o.decoder_buffers) {
            return Err(config_err(format!(
                "decoder-buffers must be 1 or 2, got {}",
                o.decoder_buffers
            )));
        }
        let classes = config.classes.len();
        let opts = |path: &std::path::Path, batch: usize, on_device: bool| BackendOptions {
            kind,
            model_path: path.to_path_buf(),
            max_batch: batch,
            device_id: o.device_id,
            fp16: o.fp16,
            engine_cache_dir: o.engine_cache_dir.clone(),
            threads: o.threads,
            outputs_on_device: on_device,
            exact_arena: o.exact_arena,
            fixed_batch: false,
            cuda_graph: false,
            cuda_provider: Default::default(),
        };
        // Routes c and seed feed the encoder outputs to the decoder as they are, so they stay
        // where the backend computed them; routes a and b repeat rows of them per class on
        // the host (what they cost is part of the comparison).
        let encoder = backend::open(&opts(
            config.encoder.path(),
            max_batch,
            matches!(o.route, Route::C | Route::Seed),
        ))
        .map_err(stage_err("encoder"))?;
        // Decoder outputs stay on the device too, except in the seed route (which takes
        // them all to the host): selection copies back only what it keeps.
        let decoder = backend::open(&opts(
            config.decoder.path(),
            max_batch.max(classes),
            o.route != Route::Seed,
        ))
        .map_err(stage_err("decoder"))?;
        let enc_name = config.encoder.path().display().to_string();
        let dec_name = config.decoder.path().display().to_string();

        // Encoder input: what trtpreprocess makes.
        let inputs = encoder.inputs();
        let input = match &config.input_name {
            Some(n) => find(inputs, n, "encoder input", &enc_name)?,
            None => inputs
                .first()
                .ok_or_else(|| config_err("the encoder has no inputs"))?,
        };
        config
            .preprocess
            .check_model_input(input)
            .map_err(|e| config_err(format!("encoder {e}; fix [input] in the config")))?;
        let input_name = input.name.clone();

        // Links encoder output -> decoder input.
        let (enc_out, dec_in) = (encoder.outputs(), decoder.inputs());
        let prompt_inputs: Vec<&str> = std::iter::once(config.prompt_features.as_str())
            .chain(config.prompt_mask.as_deref())
            .collect();
        let pairs: Vec<(String, String)> = if config.features.is_empty() {
            dec_in
                .iter()
                .filter(|i| !prompt_inputs.contains(&i.name.as_str()))
                .map(|i| (i.name.clone(), i.name.clone()))
                .collect()
        } else {
            config.features.clone()
        };
        let mut links = Vec::new();
        for (din, eout) in &pairs {
            let d = find(dec_in, din, "decoder input", &dec_name)?;
            let Some(e) = enc_out.iter().position(|s| &s.name == eout) else {
                return Err(config_err(format!(
                    "encoder output '{eout}' (feeding decoder input '{din}') does not exist in {enc_name} (it has: {}); name the links in [decoder.features]",
                    list(enc_out)
                )));
            };
            if !fits(&enc_out[e], d) {
                return Err(config_err(format!(
                    "encoder output {} does not fit decoder input {}: the encoder and decoder do not belong together",
                    enc_out[e].describe(),
                    d.describe()
                )));
            }
            links.push((din.clone(), e));
        }
        if let Some(unfed) = dec_in
            .iter()
            .find(|i| !prompt_inputs.contains(&i.name.as_str()) && !links.iter().any(|(n, _)| n == &i.name))
        {
            return Err(config_err(format!(
                "decoder input {} is fed by nothing: link it to an encoder output in [decoder.features] or name it as prompt-features / prompt-mask",
                unfed.describe()
            )));
        }

        // Prompt inputs.
        let pf = find(
            dec_in,
            &config.prompt_features,
            "prompt-features input",
            &dec_name,
        )?;
        let dim = config.classes[0].prompt.dim;
        let (want_p, want_d) = match pf.shape.as_slice() {
            [_, p, d] => (*p, *d),
            _ => {
                return Err(config_err(format!(
                    "decoder prompt-features input {} must be [batch, tokens, features]",
                    pf.describe()
                )))
            }
        };
        if !matches!(pf.dtype, DType::F32 | DType::F16) {
            return Err(config_err(format!(
                "decoder prompt-features input {} must be f32 or f16",
                pf.describe()
            )));
        }
        if let Some(d) = want_d.filter(|d| *d != dim) {
            let c = &config.classes[0];
            return Err(config_err(format!(
                "prompt file {} of class '{}' has {dim} features per token, the decoder input {} takes {d}",
                c.features_path.display(),
                c.label,
                pf.describe()
            )));
        }
        let longest = config.classes.iter().map(|c| c.prompt.tokens).max().unwrap_or(1);
        let tokens = want_p.unwrap_or(longest);
        let mask_spec = match &config.prompt_mask {
            Some(n) => {
                let m = find(dec_in, n, "prompt-mask input", &dec_name)?;
                if m.shape.len() != 2 {
                    return Err(config_err(format!(
                        "decoder prompt-mask input {} must be [batch, tokens]",
                        m.describe()
                    )));
                }
                Some(m.dtype)
            }
            None => None,
        };
        for c in &config.classes {
            let padded = c.prompt.tokens < tokens;
            if c.prompt.tokens > tokens || (padded && mask_spec.is_none()) {
                return Err(config_err(format!(
                    "prompt file {} of class '{}' has {} tokens, the decoder input {} takes {tokens}{}",
                    c.features_path.display(),
                    c.label,
                    c.prompt.tokens,
                    pf.describe(),
                    if padded {
                        " (padding needs a prompt-mask input)"
                    } else {
                        ""
                    }
                )));
            }
        }

        // Outputs.
        let outs = decoder.outputs();
        let idx = |name: &str, what: &str| {
            outs.iter().position(|s| s.name == name).ok_or_else(|| {
                config_err(format!(
                    "decoder output {what} '{name}' does not exist in {dec_name} (it has: {})",
                    list(outs)
                ))
            })
        };
        let out_index = OutputIndex {
            boxes: idx(&config.outputs.boxes, "boxes")?,
            logits: idx(&config.outputs.logits, "logits")?,
            presence: match &config.outputs.presence {
                Some(p) => Some(idx(p, "presence")?),
                None => None,
            },
            masks: idx(&config.outputs.masks, "masks")?,
        };
        for (i, rank, what) in [(out_index.boxes, 3, "boxes"), (out_index.masks, 4, "masks")] {
            if outs[i].shape.len() != rank {
                return Err(config_err(format!(
                    "decoder output {what} {} must have {rank} dimensions",
                    outs[i].describe()
                )));
            }
        }

        let model: Arc<str> = Arc::from(config.name.as_str());
        let selector = Selector {
            device_id: o.device_id,
            model: model.clone(),
            classes: config
                .classes
                .iter()
                .map(|c| (c.id, Arc::from(c.label.as_str())))
                .collect(),
            outputs: out_index,
            box_format: config.box_format,
            score_threshold: config.score_threshold,
            mask_threshold: config.mask_threshold,
            top_k: config.top_k,
            #[cfg(feature = "cuda")]
            gpu: Default::default(),
        };
        let mut engine = Self {
            feature_dtype: pf.dtype,
            mask_dtype: mask_spec,
            tokens,
            max_batch,
            decoder_buffers: o.decoder_buffers,
            model,
            encoder,
            decoder,
            input_name,
            links,
            selector,
            replicated: HashMap::new(),
            stacked: PromptTensors {
                features: Tensor::from_f32("unset", vec![0], &[]),
                mask: None,
            },
            pool: HostTensorPool::new(),
            last: RoundStats::default(),
            total: RoundStats::default(),
            config,
        };
        let all: Vec<usize> = (0..classes).collect();
        let stacked = engine.prompt_tensors(&all, 1)?;
        engine.stacked = engine.upload(stacked)?;
        if o.route != Route::Seed {
            let full = engine.replicated_prompts(max_batch)?;
            engine.replicated.insert(max_batch, full);
        }
        Ok(engine)
    }

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
