//! [`PromptSegEngine::open`] in named steps: options, backends, encoder input, feature
//! links, prompt inputs, decoder outputs, then the prompts made once.

use std::collections::HashMap;
use std::sync::Arc;

use super::{
    config_err, stage_err, OutputIndex, PromptSegEngine, PromptSegError, PromptSegOptions, PromptTensors,
    RoundStats, Route, Selector,
};
use crate::backend::{self, BackendKind, BackendOptions, InferenceBackend, TensorSpec};
use crate::config::promptseg::PromptSegConfig;
use crate::config::ModelFile;
use crate::tensor::{DType, HostTensorPool, Tensor};

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

/// What the decoder's prompt inputs take.
struct PromptInputs {
    feature_dtype: DType,
    mask_dtype: Option<DType>,
    /// Tokens per prompt (classes with fewer are padded, through the mask input).
    tokens: usize,
}

impl PromptSegEngine {
    /// Opens encoder and decoder and checks every link, prompt and output.
    pub fn open(config: PromptSegConfig, o: &PromptSegOptions) -> Result<Self, PromptSegError> {
        let (kind, max_batch) = check_options(&config, o)?;
        let (encoder, decoder) = open_backends(&config, o, kind, max_batch)?;
        let enc_name = config.encoder.path().display().to_string();
        let dec_name = config.decoder.path().display().to_string();
        let input_name = encoder_input(&config, encoder.inputs())?;
        let links = feature_links(&config, encoder.outputs(), decoder.inputs(), &enc_name, &dec_name)?;
        let prompts = prompt_inputs(&config, decoder.inputs(), &dec_name)?;
        let outputs = output_index(&config, decoder.outputs(), &dec_name)?;

        let model: Arc<str> = Arc::from(config.name.as_str());
        let selector = Selector {
            device_id: o.device_id,
            model: model.clone(),
            classes: config
                .classes
                .iter()
                .map(|c| (c.id, Arc::from(c.label.as_str())))
                .collect(),
            outputs,
            box_format: config.box_format,
            score_threshold: config.score_threshold,
            mask_threshold: config.mask_threshold,
            top_k: config.top_k,
            #[cfg(feature = "cuda")]
            gpu: Default::default(),
        };
        let mut engine = Self {
            feature_dtype: prompts.feature_dtype,
            mask_dtype: prompts.mask_dtype,
            tokens: prompts.tokens,
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
        engine.make_prompts(o.route)?;
        Ok(engine)
    }

    /// The prompts made and uploaded once: all classes stacked (routes a/b), and for
    /// route c each class replicated for max-batch.
    fn make_prompts(&mut self, route: Route) -> Result<(), PromptSegError> {
        let all: Vec<usize> = (0..self.config.classes.len()).collect();
        let stacked = self.prompt_tensors(&all, 1)?;
        self.stacked = self.upload(stacked)?;
        if route != Route::Seed {
            let full = self.replicated_prompts(self.max_batch)?;
            self.replicated.insert(self.max_batch, full);
        }
        Ok(())
    }
}

/// The backend kind (an engine file needs TensorRT) and the max batch; checks the
/// decoder buffer count.
fn check_options(
    config: &PromptSegConfig,
    o: &PromptSegOptions,
) -> Result<(BackendKind, usize), PromptSegError> {
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
    Ok((kind, max_batch))
}

/// Encoder and decoder.
type Backends = (Box<dyn InferenceBackend>, Box<dyn InferenceBackend>);

/// Opens the encoder (batch max-batch) and the decoder (batch max(max-batch, classes)).
fn open_backends(
    config: &PromptSegConfig,
    o: &PromptSegOptions,
    kind: BackendKind,
    max_batch: usize,
) -> Result<Backends, PromptSegError> {
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
        log_target: o.log_target.clone(),
        pools: o.pools.clone(),
        ..Default::default()
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
    Ok((encoder, decoder))
}

/// The encoder input (what trtpreprocess makes), checked against `[input]`.
fn encoder_input(config: &PromptSegConfig, inputs: &[TensorSpec]) -> Result<String, PromptSegError> {
    let enc_name = config.encoder.path().display().to_string();
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
    Ok(input.name.clone())
}

/// The links encoder output -> decoder input (`[decoder.features]`, else by equal
/// names): each decoder input and the index of the encoder output that feeds it. Every
/// decoder input but the prompt inputs must be fed.
fn feature_links(
    config: &PromptSegConfig,
    enc_out: &[TensorSpec],
    dec_in: &[TensorSpec],
    enc_name: &str,
    dec_name: &str,
) -> Result<Vec<(String, usize)>, PromptSegError> {
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
        let d = find(dec_in, din, "decoder input", dec_name)?;
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
    Ok(links)
}

/// The prompt-features input `[batch, tokens, features]` (f32/f16) and the optional
/// prompt-mask input `[batch, tokens]`, checked against every class's prompt file.
fn prompt_inputs(
    config: &PromptSegConfig,
    dec_in: &[TensorSpec],
    dec_name: &str,
) -> Result<PromptInputs, PromptSegError> {
    let pf = find(dec_in, &config.prompt_features, "prompt-features input", dec_name)?;
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
    let mask_dtype = match &config.prompt_mask {
        Some(n) => {
            let m = find(dec_in, n, "prompt-mask input", dec_name)?;
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
        if c.prompt.tokens > tokens || (padded && mask_dtype.is_none()) {
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
    Ok(PromptInputs {
        feature_dtype: pf.dtype,
        mask_dtype,
        tokens,
    })
}

/// The decoder outputs named in the config: boxes `[B, Q, 4]`, logits, optional
/// presence, masks `[B, Q, h, w]`.
fn output_index(
    config: &PromptSegConfig,
    outs: &[TensorSpec],
    dec_name: &str,
) -> Result<OutputIndex, PromptSegError> {
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
    Ok(out_index)
}
