//! The calls of one batch in each route, and the decoder loop (outputs double- or
//! single-buffered).

use super::{
    config_err, stage_err, PromptSegEngine, PromptSegError, PromptTensors, RoundStats, Route, RowTarget,
    Selected, Selector,
};
use crate::backend::{InferenceBackend, InputRef};
use crate::geometry::LetterboxTransform;
use crate::results::Detection;
use crate::tensor::{HostTensorPool, Tensor, TensorStorage};

/// One decoder call: named inputs and where each output row goes.
type Call = (Vec<(String, Tensor)>, Vec<RowTarget>);

/// Row `row` of `t` repeated `times` times along dimension 0. Host tensors are copied
/// into a pooled buffer; device tensors would need a device copy, which routes a and b
/// cannot do in this build (route c never repeats).
fn repeat_row(pool: &HostTensorPool, t: &Tensor, row: usize, times: usize) -> Result<Tensor, PromptSegError> {
    let rows = t.shape.first().copied().unwrap_or(0);
    let Some(bytes) = t.host_bytes() else {
        return Err(config_err(format!(
            "routes a and b repeat the encoder output '{}' per class, which needs it in host memory; use route c when the encoder keeps its outputs on the device",
            t.name
        )));
    };
    if row >= rows {
        return Err(config_err(format!(
            "encoder output '{}' has {rows} rows, row {row} was asked",
            t.name
        )));
    }
    let len = bytes.len() / rows;
    let mut out = pool.acquire(len * times);
    for chunk in out.as_mut_slice().chunks_exact_mut(len) {
        chunk.copy_from_slice(&bytes[row * len..(row + 1) * len]);
    }
    let mut shape = t.shape.clone();
    shape[0] = times;
    Ok(Tensor::host(t.name.clone(), t.dtype, shape, out))
}

/// Row `row` of `t` as a batch of one: a view for device tensors, a pooled copy on the host.
fn row_of(pool: &HostTensorPool, t: &Tensor, row: usize) -> Result<Tensor, PromptSegError> {
    let rows = t.shape.first().copied().unwrap_or(0);
    if row >= rows {
        return Err(config_err(format!(
            "input tensor has {rows} rows, row {row} was asked"
        )));
    }
    let mut shape = t.shape.clone();
    shape[0] = 1;
    let len = t.len_bytes() / rows;
    Ok(match &t.storage {
        TensorStorage::Device { ptr, keepalive, .. } => Tensor {
            name: t.name.clone(),
            dtype: t.dtype,
            shape,
            storage: TensorStorage::Device {
                ptr: ptr + (row * len) as u64,
                len,
                keepalive: keepalive.clone(),
            },
        },
        TensorStorage::Host(b) => {
            let mut out = pool.acquire(len);
            out.as_mut_slice()
                .copy_from_slice(&b.as_slice()[row * len..(row + 1) * len]);
            Tensor::host(t.name.clone(), t.dtype, shape, out)
        }
    })
}

/// Bytes of every output: what the hand-written baseline copied to the host each call.
/// The backend has already delivered them to host memory; device outputs would need a
/// download this build does not do.
fn all_outputs_to_host(outs: &[Tensor]) -> Result<u64, PromptSegError> {
    let mut bytes = 0;
    for t in outs {
        if t.host_bytes().is_none() {
            return Err(config_err(format!(
                "decoder output '{}' is in device memory; the seed route reads every output on the host",
                t.name
            )));
        }
        bytes += t.len_bytes() as u64;
    }
    Ok(bytes)
}

/// What the decoder loop of one batch measured.
#[derive(Debug, Default)]
struct Decoded {
    /// Bytes that crossed (or would cross) device -> host.
    d2h: u64,
    /// Bytes of all outputs of the largest call.
    output_set: u64,
}

/// Runs `calls` decoder calls. With `buffers` = 2 the outputs of call k are selected on a
/// worker thread while the decoder computes call k+1 (two output sets alive at most); with
/// 1 the selection of call k finishes and its outputs are released before call k+1.
#[allow(clippy::too_many_arguments)]
fn decode_pipelined(
    decoder: &mut dyn InferenceBackend,
    selector: &Selector,
    transforms: &[LetterboxTransform],
    seed: bool,
    buffers: usize,
    calls: usize,
    mut next: impl FnMut(usize) -> Result<Call, PromptSegError>,
    mut absorb: impl FnMut(Selected),
) -> Result<Decoded, PromptSegError> {
    std::thread::scope(|scope| {
        let mut done = Decoded::default();
        let mut pending: Option<std::thread::ScopedJoinHandle<'_, Result<Selected, String>>> = None;
        let mut finish = |sel: Result<Selected, String>, done: &mut Decoded| {
            let sel = sel.map_err(PromptSegError::Select)?;
            if !seed {
                done.d2h += sel.d2h_bytes;
            }
            absorb(sel);
            Ok::<(), PromptSegError>(())
        };
        let join = |h: std::thread::ScopedJoinHandle<'_, Result<Selected, String>>| {
            h.join()
                .map_err(|_| PromptSegError::Select("the selection thread panicked".into()))
        };
        for k in 0..calls {
            let (inputs, targets) = next(k)?;
            let refs: Vec<InputRef<'_>> = inputs
                .iter()
                .map(|(name, tensor)| InputRef { name, tensor })
                .collect();
            let outs = decoder.infer(&refs).map_err(stage_err("decoder"))?;
            drop(refs);
            drop(inputs);
            let set: u64 = outs.iter().map(|t| t.len_bytes() as u64).sum();
            done.output_set = done.output_set.max(set);
            if seed {
                done.d2h += all_outputs_to_host(&outs)?;
            }
            if buffers < 2 {
                let sel = selector.select(&outs, &targets, transforms);
                drop(outs);
                finish(sel, &mut done)?;
                continue;
            }
            if let Some(h) = pending.take() {
                finish(join(h)?, &mut done)?;
            }
            pending = Some(scope.spawn(move || selector.select(&outs, &targets, transforms)));
        }
        if let Some(h) = pending.take() {
            finish(join(h)?, &mut done)?;
        }
        Ok(done)
    })
}

impl PromptSegEngine {
    /// Runs one batch: `input` is the encoder input `[F, 3, H, W]` made by trtpreprocess,
    /// `transforms[f]` how frame f was placed in it. Returns the detections of each frame,
    /// classes in config order, best first within a class.
    pub fn run(
        &mut self,
        route: Route,
        input: &Tensor,
        transforms: &[LetterboxTransform],
    ) -> Result<Vec<Vec<Detection>>, PromptSegError> {
        let frames = input.shape.first().copied().unwrap_or(0);
        if frames != transforms.len() {
            return Err(config_err(format!(
                "the input tensor has {frames} rows but {} frame transforms",
                transforms.len()
            )));
        }
        if frames > self.max_batch {
            return Err(config_err(format!(
                "batch of {frames} frames exceeds max-batch {} of model '{}'",
                self.max_batch, self.model
            )));
        }
        self.last = RoundStats::default();
        let classes = self.config.classes.len();
        let mut per: Vec<Vec<Vec<Detection>>> = vec![vec![Vec::new(); classes]; frames];
        if frames > 0 {
            match route {
                Route::C | Route::Seed => self.run_c(route == Route::Seed, input, transforms, &mut per)?,
                Route::B => self.run_ab(false, input, transforms, &mut per)?,
                Route::A => self.run_ab(true, input, transforms, &mut per)?,
            }
        }
        let out: Vec<Vec<Detection>> = per
            .into_iter()
            .map(|c| c.into_iter().flatten().collect())
            .collect();
        self.last.detections = out.iter().map(|d| d.len() as u64).sum();
        self.total.add(&self.last);
        Ok(out)
    }

    fn encode(&mut self, input: &Tensor) -> Result<Vec<Tensor>, PromptSegError> {
        self.last.encoder_calls += 1;
        self.encoder
            .infer(&[InputRef {
                name: &self.input_name,
                tensor: input,
            }])
            .map_err(stage_err("encoder"))
    }

    /// Route c (and the seed baseline): encoder batch F, decoder per class with batch F.
    fn run_c(
        &mut self,
        seed: bool,
        input: &Tensor,
        transforms: &[LetterboxTransform],
        per: &mut [Vec<Vec<Detection>>],
    ) -> Result<(), PromptSegError> {
        let frames = transforms.len();
        let classes = self.config.classes.len();
        let fpn = self.encode(input)?;
        let prompts: Vec<PromptTensors> = if seed {
            self.replicated_prompts(frames)?
        } else {
            if !self.replicated.contains_key(&frames) {
                let v = self.replicated_prompts(frames)?;
                self.replicated.insert(frames, v);
            }
            self.replicated[&frames].clone()
        };
        let links: Vec<(String, Tensor)> = self
            .links
            .iter()
            .map(|(name, i)| (name.clone(), fpn[*i].clone()))
            .collect();
        let (pf, pm) = (
            self.config.prompt_features.clone(),
            self.config.prompt_mask.clone(),
        );
        let done = decode_pipelined(
            self.decoder.as_mut(),
            &self.selector,
            transforms,
            seed,
            self.decoder_buffers,
            classes,
            |c| {
                let targets = (0..frames).map(|f| (f, c));
                Ok(call(links.clone(), (&pf, &pm), &prompts[c], targets))
            },
            |sel| absorb(per, sel),
        )?;
        self.last.decoder_calls += classes as u64;
        self.last.d2h_bytes += done.d2h;
        self.last.decoder_output_bytes = done.output_set;
        Ok(())
    }

    /// Routes a and b: per frame, the decoder with batch K (classes), fed by that frame's
    /// features repeated K times and the stacked prompts; the encoder runs once with batch
    /// F (route b) or per frame with batch 1 (route a, inside the decoder loop so that the
    /// selection of frame f overlaps the calls of frame f+1).
    fn run_ab(
        &mut self,
        per_frame: bool,
        input: &Tensor,
        transforms: &[LetterboxTransform],
        per: &mut [Vec<Vec<Detection>>],
    ) -> Result<(), PromptSegError> {
        let frames = transforms.len();
        let shared = if per_frame {
            None
        } else {
            Some(self.encode(input)?)
        };
        let Self {
            encoder,
            decoder,
            selector,
            pool,
            links,
            stacked,
            config,
            input_name,
            decoder_buffers,
            ..
        } = self;
        let classes = config.classes.len();
        let mut encoder_calls = 0u64;
        let done = decode_pipelined(
            decoder.as_mut(),
            selector,
            transforms,
            false,
            *decoder_buffers,
            frames,
            |f| {
                let own;
                let (fpn, row) = match &shared {
                    Some(v) => (v.as_slice(), f),
                    None => {
                        let one = row_of(pool, input, f)?;
                        own = encoder
                            .infer(&[InputRef {
                                name: input_name,
                                tensor: &one,
                            }])
                            .map_err(stage_err("encoder"))?;
                        encoder_calls += 1;
                        (own.as_slice(), 0)
                    }
                };
                let mut features = Vec::with_capacity(links.len() + 2);
                for (name, i) in links.iter() {
                    features.push((name.clone(), repeat_row(pool, &fpn[*i], row, classes)?));
                }
                let names = (&config.prompt_features, &config.prompt_mask);
                Ok(call(features, names, stacked, (0..classes).map(|c| (f, c))))
            },
            |sel| absorb(per, sel),
        )?;
        self.last.encoder_calls += encoder_calls;
        self.last.decoder_calls += frames as u64;
        self.last.d2h_bytes += done.d2h;
        self.last.decoder_output_bytes = done.output_set;
        Ok(())
    }
}

/// A decoder call: the feature inputs plus the prompt inputs, rows in order going to
/// `(frame, class)` of `targets`.
fn call(
    mut inputs: Vec<(String, Tensor)>,
    (features, mask): (&String, &Option<String>),
    prompt: &PromptTensors,
    targets: impl Iterator<Item = (usize, usize)>,
) -> Call {
    inputs.push((features.clone(), prompt.features.clone()));
    if let (Some(n), Some(m)) = (mask, &prompt.mask) {
        inputs.push((n.clone(), m.clone()));
    }
    let targets = targets
        .enumerate()
        .map(|(row, (frame, class))| RowTarget { row, frame, class })
        .collect();
    (inputs, targets)
}

fn absorb(per: &mut [Vec<Vec<Detection>>], sel: Selected) {
    for (frame, class, dets) in sel.rows {
        if let Some(slot) = per.get_mut(frame).and_then(|f| f.get_mut(class)) {
            *slot = dets;
        }
    }
}
