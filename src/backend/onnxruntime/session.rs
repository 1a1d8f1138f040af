//! Opening a model: session options, execution providers, fixed batch, graphs.

use super::*;

/// The CUDA execution provider as `opts` ask for it.
pub(super) fn cuda_provider(opts: &BackendOptions) -> ep::CUDA {
    let mut cuda = ep::CUDA::default().with_device_id(opts.device_id);
    let c = &opts.cuda_provider;
    if c.prefer_nhwc {
        cuda = cuda.with_prefer_nhwc(true);
    }
    if let Some(search) = c.conv_algo_search {
        cuda = cuda.with_conv_algorithm_search(match search {
            super::super::ConvAlgoSearch::Exhaustive => ep::cuda::ConvAlgorithmSearch::Exhaustive,
            super::super::ConvAlgoSearch::Heuristic => ep::cuda::ConvAlgorithmSearch::Heuristic,
            super::super::ConvAlgoSearch::Default => ep::cuda::ConvAlgorithmSearch::Default,
        });
    }
    if let Some(ws) = c.conv_max_workspace {
        cuda = cuda.with_conv_max_workspace(ws);
    }
    if let Some(tf32) = c.tf32 {
        cuda = cuda.with_tf32(tf32);
    }
    if opts.exact_arena {
        cuda.with_arena_extend_strategy(ep::ArenaExtendStrategy::SameAsRequested)
    } else {
        cuda
    }
}

/// TensorRT profile shape string `name:d0xd1x...,name2:...` with `batch` in dim 0, or
/// `None` when an input has a dynamic dimension other than the batch dimension.
pub(super) fn trt_profile(inputs: &[TensorSpec], batch: usize) -> Option<String> {
    let mut parts = Vec::with_capacity(inputs.len());
    for spec in inputs {
        let mut dims = Vec::with_capacity(spec.shape.len());
        for (i, d) in spec.shape.iter().enumerate() {
            match (i, d) {
                (0, None) => dims.push(batch.to_string()),
                (_, Some(v)) => dims.push(v.to_string()),
                (_, None) => return None,
            }
        }
        parts.push(format!("{}:{}", spec.name, dims.join("x")));
    }
    Some(parts.join(","))
}

pub(super) fn ort_err<R>(e: ort::Error<R>) -> String {
    e.to_string()
}

impl OrtBackend {
    /// Opens `opts.model_path` (an ONNX file) with the execution provider chosen by
    /// `opts.kind`, loading ONNX Runtime from [`resolve_library_path`] on first use.
    ///
    /// Errors: [`BackendError::Unavailable`] when the library or the execution provider
    /// cannot be loaded, [`BackendError::ModelUnreadable`] when the file cannot be read,
    /// [`BackendError::ModelInvalid`] when ONNX Runtime rejects it.
    pub fn open(opts: &BackendOptions) -> Result<Self, BackendError> {
        let lib = match ENVIRONMENT.get() {
            // Already loaded: the library choice is fixed for this process.
            Some(_) => PathBuf::new(),
            None => resolve_library_with(std::env::var_os(ORT_DYLIB_ENV))
                .map_err(|r| unavailable(opts.kind, r))?,
        };
        Self::open_with_library(opts, &lib)
    }

    /// Like [`Self::open`] with an explicit ONNX Runtime library path (used only if ONNX
    /// Runtime is not loaded in this process yet).
    pub fn open_with_library(opts: &BackendOptions, library: &Path) -> Result<Self, BackendError> {
        let kind = opts.kind;
        if !matches!(
            kind,
            BackendKind::OnnxRuntimeCpu | BackendKind::OnnxRuntimeCuda | BackendKind::OnnxRuntimeTensorRt
        ) {
            return Err(unavailable(
                kind,
                "the ONNX Runtime backend cannot run this kind of backend",
            ));
        }
        let path_str = opts.model_path.display().to_string();
        // Readability first, independent of ONNX Runtime.
        match std::fs::metadata(&opts.model_path) {
            Ok(m) if m.is_file() => {}
            Ok(_) => {
                return Err(BackendError::ModelUnreadable {
                    path: path_str,
                    reason: "it is not a regular file".into(),
                })
            }
            Err(e) => {
                return Err(BackendError::ModelUnreadable {
                    path: path_str,
                    reason: e.to_string(),
                })
            }
        }
        if let Err(e) = std::fs::File::open(&opts.model_path) {
            return Err(BackendError::ModelUnreadable {
                path: path_str,
                reason: e.to_string(),
            });
        }
        let env = if ENVIRONMENT.get().is_some() {
            environment(Path::new(""), kind)?
        } else {
            environment(library, kind)?
        };
        guarded(
            || Self::open_in(&env, opts),
            |msg| {
                unavailable(
                    kind,
                    format!("ONNX Runtime panicked while loading the model: {msg}"),
                )
            },
        )
    }

    /// A session builder with the options every session shares; `log_id` names the
    /// session in ONNX Runtime's log lines (see [`logging`]).
    pub(super) fn base_builder(
        env: &Environment,
        opts: &BackendOptions,
        log_id: Option<&str>,
    ) -> Result<SessionBuilder, BackendError> {
        let kind = opts.kind;
        logging::sync_level(env);
        let mut b = Session::builder(env).map_err(|e| unavailable(kind, ort_err(e)))?;
        if let Some(id) = log_id {
            b = b.with_log_id(id).unwrap_or_else(|e| e.recover());
        }
        b = b
            .with_optimization_level(GraphOptimizationLevel::All)
            .unwrap_or_else(|e| e.recover());
        if opts.threads > 0 {
            b = b.with_intra_threads(opts.threads).map_err(|e| {
                BackendError::Runtime(format!("cannot set {} intra-op threads: {e}", opts.threads))
            })?;
        }
        Ok(b)
    }

    pub(super) fn commit(mut b: SessionBuilder, opts: &BackendOptions) -> Result<Session, BackendError> {
        let path = opts.model_path.display().to_string();
        b.commit_from_file(&opts.model_path).map_err(|e| match e.code() {
            ort::ErrorCode::NoSuchFile => BackendError::ModelUnreadable {
                path,
                reason: e.message().to_string(),
            },
            ort::ErrorCode::ExecutionProviderFailure | ort::ErrorCode::EngineError
                if opts.kind != BackendKind::OnnxRuntimeCpu =>
            {
                unavailable(
                    opts.kind,
                    format!("the execution provider failed to load the model: {e}"),
                )
            }
            _ => BackendError::ModelInvalid {
                path,
                reason: e.message().to_string(),
            },
        })
    }

    pub(super) fn specs(
        session: &Session,
        path: &str,
    ) -> Result<(Vec<TensorSpec>, Vec<TensorSpec>), BackendError> {
        let inputs = session
            .inputs()
            .iter()
            .map(|o| spec_from_outlet(o.name(), o.dtype(), "input", path))
            .collect::<Result<Vec<_>, _>>()?;
        let outputs = session
            .outputs()
            .iter()
            .map(|o| spec_from_outlet(o.name(), o.dtype(), "output", path))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((inputs, outputs))
    }

    /// A CPU session of the model with graph optimisations off: how the model declares its
    /// inputs and outputs, without loading it on a GPU.
    pub(super) fn probe(env: &Environment, opts: &BackendOptions) -> Result<Session, BackendError> {
        let probe = Self::base_builder(env, opts, None)?
            .with_optimization_level(GraphOptimizationLevel::Disable)
            .unwrap_or_else(|e| e.recover());
        Self::commit(
            probe,
            &BackendOptions {
                kind: BackendKind::OnnxRuntimeCpu,
                ..opts.clone()
            },
        )
    }

    /// The inputs of `session` with their dimension names.
    pub(super) fn declared_inputs(session: &Session) -> Vec<fixed_batch::DeclaredInput> {
        session
            .inputs()
            .iter()
            .map(|o| {
                let (dims, symbols) = match o.dtype() {
                    ValueType::Tensor {
                        shape,
                        dimension_symbols,
                        ..
                    } => (shape.to_vec(), dimension_symbols.to_vec()),
                    _ => (Vec::new(), Vec::new()),
                };
                fixed_batch::DeclaredInput {
                    name: o.name().to_string(),
                    dims,
                    symbols,
                }
            })
            .collect()
    }

    /// Registers the execution provider of `opts.kind` on `builder`. Returns the TensorRT
    /// profile's batch limit, if one was set.
    /// `graph_stream`: capture graphs, on this stream (CUDA provider).
    pub(super) fn with_provider(
        env: &Environment,
        opts: &BackendOptions,
        builder: SessionBuilder,
        graph_stream: Option<u64>,
    ) -> Result<(SessionBuilder, Option<usize>), BackendError> {
        let kind = opts.kind;
        let path = opts.model_path.display().to_string();
        match kind {
            BackendKind::OnnxRuntimeCpu | BackendKind::TensorRt => Ok((builder, None)),
            BackendKind::OnnxRuntimeCuda => {
                Self::require_provider::<ep::CUDA>(kind, "CUDA")?;
                let mut cuda = cuda_provider(opts);
                if let Some(stream) = graph_stream {
                    // SAFETY: the stream outlives the session (the backend owns both and
                    // drops the session first).
                    cuda =
                        unsafe { cuda.with_compute_stream(stream as usize as *mut ()) }.with_cuda_graph(true);
                }
                let cuda = cuda.build().error_on_failure();
                let builder = builder.with_execution_providers([cuda]).map_err(|e| {
                    unavailable(
                        kind,
                        format!("the CUDA execution provider cannot be registered: {e}"),
                    )
                })?;
                Ok((builder, None))
            }
            BackendKind::OnnxRuntimeTensorRt => {
                Self::require_provider::<ep::TensorRT>(kind, "TensorRT")?;
                // The input layout from a light CPU session, to build the profiles.
                let probe = Self::probe(env, opts)?;
                let (probe_inputs, _) = Self::specs(&probe, &path)?;
                drop(probe);
                let max = opts.max_batch.max(1);
                let mut trt = ep::TensorRT::default()
                    .with_device_id(opts.device_id)
                    .with_fp16(opts.fp16);
                if let Some(dir) = &opts.engine_cache_dir {
                    let dir_s = dir.to_str().filter(|s| !s.contains('\0')).ok_or_else(|| {
                        unavailable(
                            kind,
                            format!("engine cache directory {} is not valid UTF-8", dir.display()),
                        )
                    })?;
                    if let Err(e) = std::fs::create_dir_all(dir) {
                        return Err(unavailable(
                            kind,
                            format!("cannot create the engine cache directory {}: {e}", dir.display()),
                        ));
                    }
                    trt = trt
                        .with_engine_cache(true)
                        .with_engine_cache_path(dir_s)
                        .with_timing_cache(true)
                        .with_timing_cache_path(dir_s);
                }
                let mut trt_max = None;
                let dyn_batch = probe_inputs.iter().any(|s| s.shape.first() == Some(&None));
                if dyn_batch {
                    if let (Some(min), Some(maxs)) =
                        (trt_profile(&probe_inputs, 1), trt_profile(&probe_inputs, max))
                    {
                        if min.contains('\0') {
                            return Err(BackendError::ModelInvalid {
                                path,
                                reason: "an input name contains a NUL byte".into(),
                            });
                        }
                        trt = trt
                            .with_profile_min_shapes(min)
                            .with_profile_opt_shapes(maxs.clone())
                            .with_profile_max_shapes(maxs);
                        trt_max = Some(max);
                    }
                }
                let cuda = cuda_provider(opts).build().error_on_failure();
                let builder = builder
                    .with_execution_providers([trt.build().error_on_failure(), cuda])
                    .map_err(|e| {
                        unavailable(
                            kind,
                            format!("the TensorRT execution provider cannot be registered: {e}"),
                        )
                    })?;
                Ok((builder, trt_max))
            }
        }
    }

    /// How the batch is fixed when `opts` ask for it (ONNX Runtime CPU and CUDA providers;
    /// the TensorRT provider has its profile), with the model's declared (dynamic) specs;
    /// `Err` = why it cannot be, for a warning.
    #[allow(clippy::type_complexity)]
    pub(super) fn fixed_plan(
        env: &Environment,
        opts: &BackendOptions,
    ) -> Result<Option<(fixed_batch::BatchPlan, Vec<TensorSpec>, Vec<TensorSpec>)>, BackendError> {
        let wanted = opts.fixed_batch
            || (opts.cuda_graph && opts.kind == BackendKind::OnnxRuntimeCuda && opts.outputs_on_device);
        if !wanted
            || !matches!(
                opts.kind,
                BackendKind::OnnxRuntimeCpu | BackendKind::OnnxRuntimeCuda
            )
        {
            return Ok(None);
        }
        let path = opts.model_path.display().to_string();
        let probe = Self::probe(env, opts)?;
        let declared = Self::declared_inputs(&probe);
        let (inputs, outputs) = Self::specs(&probe, &path)?;
        drop(probe);
        match fixed_batch::plan(&declared, opts.max_batch) {
            Ok(plan) => Ok(Some((plan, inputs, outputs))),
            Err(why) => Err(BackendError::ShapeMismatch(why)),
        }
    }

    pub(super) fn open_in(env: &Environment, opts: &BackendOptions) -> Result<Self, BackendError> {
        let kind = opts.kind;
        let log_id = logging::SessionLogId::new(&opts.log_target);
        let path = opts.model_path.display().to_string();
        let mut warning = None;
        let plan =
            match Self::fixed_plan(env, opts) {
                Ok(p) => p,
                Err(BackendError::ShapeMismatch(why)) => {
                    warning =
                        Some(format!(
                    "the batch of model {path} cannot be fixed ({why}): it runs with dynamic shapes{}",
                    if opts.cuda_graph { " and without CUDA graphs" } else { "" }
                ));
                    None
                }
                Err(e) => return Err(e),
            };
        let want_graph = opts.cuda_graph
            && kind == BackendKind::OnnxRuntimeCuda
            && opts.outputs_on_device
            && plan.is_some();
        if opts.cuda_graph && kind != BackendKind::OnnxRuntimeCuda {
            warning = Some(format!(
                "cuda-graph applies to the onnxruntime-cuda and tensorrt backends: {} runs without",
                kind.name()
            ));
        } else if opts.cuda_graph && !opts.outputs_on_device {
            warning = Some(format!(
                "CUDA graphs write the outputs of model {path} into GPU buffers, which this model's parser does not read: running without"
            ));
        }
        let build = |stream: Option<u64>| -> Result<(Session, Option<usize>), BackendError> {
            let mut builder = Self::base_builder(env, opts, Some(log_id.as_str()))?;
            if let Some(symbol) = plan.as_ref().and_then(|(p, _, _)| p.symbol.as_deref()) {
                builder = builder
                    .with_dimension_override(symbol, opts.max_batch.max(1) as i64)
                    .map_err(|e| {
                        BackendError::Runtime(format!("cannot fix dimension '{symbol}' of {path}: {e}"))
                    })?;
            }
            let (builder, trt_max) = Self::with_provider(env, opts, builder, stream)?;
            Ok((Self::commit(builder, opts)?, trt_max))
        };
        #[cfg(feature = "cuda")]
        if want_graph {
            match Self::open_with_graphs(opts, &build, plan.clone(), warning.take()) {
                Ok(mut backend) => {
                    backend._log_id = Some(log_id);
                    return Ok(backend);
                }
                Err(e) => {
                    warning = Some(format!(
                        "model {path} cannot run from CUDA graphs ({e}): running without"
                    ))
                }
            }
        }
        #[cfg(not(feature = "cuda"))]
        if want_graph {
            warning = Some("CUDA graphs need the plugin's cuda feature: running without".into());
        }
        let (session, trt_max) = build(None)?;
        let mut backend = Self::assemble(opts, session, trt_max, plan, warning)?;
        backend._log_id = Some(log_id);
        Ok(backend)
    }

    /// The backend around a committed `session`.
    pub(super) fn assemble(
        opts: &BackendOptions,
        session: Session,
        trt_max: Option<usize>,
        plan: Option<(fixed_batch::BatchPlan, Vec<TensorSpec>, Vec<TensorSpec>)>,
        warning: Option<String>,
    ) -> Result<Self, BackendError> {
        let kind = opts.kind;
        let path = opts.model_path.display().to_string();
        let (inputs, outputs) = match &plan {
            // The model's own specs: the batch stays dynamic for callers (smaller batches
            // are padded).
            Some((_, i, o)) => (i.clone(), o.clone()),
            None => Self::specs(&session, &path)?,
        };
        let fixed_batch = inputs.first().and_then(|s| s.shape.first().copied().flatten());
        let max_batch = plan.as_ref().map(|(p, _, _)| p.batch).or(fixed_batch).or(trt_max);
        let binding = if opts.outputs_on_device && kind != BackendKind::OnnxRuntimeCpu {
            let mut b = session
                .create_binding()
                .map_err(|e| unavailable(kind, format!("cannot create an I/O binding: {e}")))?;
            bind_outputs_to_device(&mut b, &outputs, opts.device_id).map_err(|e| match e {
                BackendError::Runtime(why) => unavailable(kind, why),
                other => other,
            })?;
            Some(b)
        } else {
            None
        };
        let fixed = plan.map(|(plan, _, _)| Fixed {
            batch_outputs: fixed_batch::batch_outputs(&outputs, &plan),
            plan,
            fill: fixed_batch::BatchFill::default(),
            #[cfg(feature = "cuda")]
            staging: None,
            #[cfg(feature = "cuda")]
            graphs: None,
        });
        let describe = |v: &[TensorSpec]| v.iter().map(|t| t.describe()).collect::<Vec<_>>().join("; ");
        crate::backend_log!(
            info,
            CAT,
            opts.log_target,
            "{}: model {} loaded, inputs [{}], outputs [{}]",
            kind.name(),
            path,
            describe(&inputs),
            describe(&outputs)
        );
        let host_outputs = super::super::HostOutputs::new(outputs.len(), opts);
        Ok(Self {
            session,
            kind,
            host_outputs,
            _log_id: None,
            inputs,
            outputs,
            max_batch,
            pool: HostTensorPool::new(),
            model_path: path,
            log_target: opts.log_target.clone(),
            device_id: opts.device_id,
            binding,
            #[cfg(feature = "cuda")]
            upload_ctx: None,
            fixed,
            warning,
            #[cfg(feature = "cuda")]
            worker: None,
        })
    }

    /// A CUDA-provider session on a stream of its own, its graphs captured now (see
    /// [`graphs`]), every later call made on the worker thread that captured them.
    #[cfg(feature = "cuda")]
    #[allow(clippy::type_complexity)]
    pub(super) fn open_with_graphs(
        opts: &BackendOptions,
        build: &dyn Fn(Option<u64>) -> Result<(Session, Option<usize>), BackendError>,
        plan: Option<(fixed_batch::BatchPlan, Vec<TensorSpec>, Vec<TensorSpec>)>,
        warning: Option<String>,
    ) -> Result<Self, String> {
        let ctx = crate::cuda::DeviceContext::primary(opts.device_id).map_err(|e| e.to_string())?;
        // Shared with the graphs; this clone outlives the session on every way out.
        let stream = std::sync::Arc::new(crate::cuda::Stream::new(&ctx).map_err(|e| e.to_string())?);
        let (session, trt_max) = build(Some(stream.raw() as usize as u64)).map_err(|e| e.to_string())?;
        let mut backend = Self::assemble(opts, session, trt_max, plan, warning).map_err(|e| e.to_string())?;
        let worker = std::sync::Arc::new(graphs::Worker::new()?);
        let sets = crate::backend::output_sets::OutputSets::new(opts, graphs::SETS_HELD, 0);
        let started = worker
            .call(|| backend.start_graphs(&ctx, stream.clone(), sets))
            .unwrap_or_else(|| Err("the inference thread failed while capturing".into()));
        if let Err(e) = started {
            drop(backend);
            drop(stream);
            return Err(e);
        }
        backend.worker = Some(worker);
        Ok(backend)
    }

    pub(super) fn require_provider<E: ExecutionProvider>(
        kind: BackendKind,
        what: &str,
    ) -> Result<(), BackendError> {
        match E::is_available() {
            Ok(true) => Ok(()),
            Ok(false) => Err(unavailable(
                kind,
                format!(
                    "the loaded ONNX Runtime library was built without the {what} execution provider; \
                     install onnxruntime-gpu (pip install onnxruntime-gpu) and point {ORT_DYLIB_ENV} at its libonnxruntime.so"
                ),
            )),
            Err(e) => Err(unavailable(kind, format!("cannot list ONNX Runtime execution providers: {e}"))),
        }
    }

    /// Path of the loaded model, for logs.
    pub fn model_path(&self) -> &str {
        &self.model_path
    }
}
