//! Running one batch: input checks, I/O binding, padded runs, CUDA graph replay.

use super::*;

impl OrtBackend {
    /// The given tensors in the order of the model's inputs, checked against the specs,
    /// with their byte lengths, and the batch (rows of the inputs whose first dimension is
    /// dynamic; 1 when none is).
    pub(super) fn check_inputs<'t>(
        &self,
        inputs: &[InputRef<'t>],
    ) -> Result<CheckedInputs<'t>, BackendError> {
        if inputs.len() != self.inputs.len() {
            let want: Vec<&str> = self.inputs.iter().map(|s| s.name.as_str()).collect();
            return Err(BackendError::ShapeMismatch(format!(
                "the model takes {} input(s) ({}), {} were given",
                want.len(),
                want.join(", "),
                inputs.len()
            )));
        }
        let mut checked = Vec::with_capacity(inputs.len());
        let mut batch: Option<usize> = None;
        for spec in &self.inputs {
            let input = inputs.iter().find(|i| i.name == spec.name).ok_or_else(|| {
                BackendError::ShapeMismatch(format!("no tensor was given for model input '{}'", spec.name))
            })?;
            let t = input.tensor;
            if t.dtype != spec.dtype || !spec.accepts(&t.shape) {
                return Err(BackendError::ShapeMismatch(format!(
                    "input '{}' is {} but the model expects {}",
                    spec.name,
                    describe_shape(t.dtype, &t.shape),
                    spec.describe()
                )));
            }
            let b = t.shape.first().copied().unwrap_or(1);
            if let Some(max) = self.max_batch {
                if b > max {
                    return Err(BackendError::BatchTooLarge { got: b, max });
                }
            }
            if spec.shape.first() == Some(&None) {
                if let Some(prev) = batch.filter(|&p| p != b) {
                    return Err(BackendError::ShapeMismatch(format!(
                        "input '{}' has batch {b} but another input has batch {prev}",
                        spec.name
                    )));
                }
                batch = Some(b);
            }
            let nbytes = checked_count(&t.shape)
                .and_then(|c| c.checked_mul(t.dtype.size()))
                .ok_or_else(|| {
                    BackendError::ShapeMismatch(format!("input '{}' shape overflows", spec.name))
                })?;
            match &t.storage {
                TensorStorage::Host(bytes) if bytes.as_slice().len() != nbytes => {
                    return Err(BackendError::ShapeMismatch(format!(
                        "input '{}' holds {} bytes but {} needs {nbytes}",
                        spec.name,
                        bytes.as_slice().len(),
                        describe_shape(t.dtype, &t.shape)
                    )));
                }
                TensorStorage::Host(_) => {}
                TensorStorage::Device { .. } if self.kind == BackendKind::OnnxRuntimeCpu => {
                    return Err(BackendError::Runtime(format!(
                        "input '{}' is in GPU memory but the backend is onnxruntime-cpu; device inputs \
                         require the onnxruntime-cuda or onnxruntime-tensorrt backend",
                        spec.name
                    )));
                }
                TensorStorage::Device { ptr, len, .. } if *len < nbytes || *ptr == 0 => {
                    return Err(BackendError::ShapeMismatch(format!(
                        "device input '{}' holds {len} bytes but {} needs {nbytes}",
                        spec.name,
                        describe_shape(t.dtype, &t.shape)
                    )));
                }
                TensorStorage::Device { .. } => {}
            }
            checked.push((t, nbytes));
        }
        Ok((checked, batch.unwrap_or(1)))
    }

    pub(super) fn run(&mut self, inputs: &[InputRef<'_>]) -> Result<Vec<Tensor>, BackendError> {
        let (checked, rows) = self.check_inputs(inputs)?;
        // With a fixed batch, smaller batches are padded and the outputs cut back to `rows`.
        let fixed_batch = self.fixed.as_ref().map(|f| f.plan.batch);
        let keep = fixed_batch.filter(|&b| rows < b).map(|_| rows);
        if let Some(f) = self.fixed.as_mut() {
            if let Some(mean) = f.fill.record(rows, f.plan.batch) {
                self.warning = Some(format!(
                    "batches of model {} hold {mean:.1} rows on average but its batch is fixed at {}: the padding rows are computed too (set max-batch to trtmux's batch-size)",
                    self.model_path, f.plan.batch
                ));
            }
        }
        // A graph session runs every batch through its output sets (a run in ONNX Runtime's
        // own buffers could capture a graph now, from the streaming thread).
        #[cfg(feature = "cuda")]
        if self.worker.is_some() {
            return self.run_graph(&checked, keep);
        }
        // Padded host inputs (they must outlive the values that borrow them) and the
        // address each device input is read from.
        let mut padded: Vec<Option<PooledBytes>> = Vec::with_capacity(checked.len());
        let mut shapes: Vec<Cow<'_, [usize]>> = Vec::with_capacity(checked.len());
        let mut device_ptrs: Vec<u64> = Vec::with_capacity(checked.len());
        for (i, (t, nbytes)) in checked.iter().enumerate() {
            let name = &self.inputs[i].name;
            let pad_to = match (&self.fixed, keep) {
                (Some(f), Some(_)) if f.plan.batch_inputs[i] => Some(f.plan.batch),
                _ => None,
            };
            let Some(batch) = pad_to else {
                padded.push(None);
                shapes.push(Cow::Borrowed(&t.shape));
                if let TensorStorage::Device { ptr, .. } = &t.storage {
                    device_ptrs.push(*ptr);
                }
                continue;
            };
            let full = fixed_batch::row_bytes(&t.shape, batch, t.dtype.size()).ok_or_else(|| {
                BackendError::ShapeMismatch(format!("input '{name}' shape overflows at batch {batch}"))
            })?;
            shapes.push(Cow::Owned(fixed_batch::with_rows(&t.shape, batch)));
            match &t.storage {
                TensorStorage::Host(bytes) => {
                    let mut out = self.pool.acquire(full);
                    fixed_batch::pad_host(bytes.as_slice(), out.as_mut_slice());
                    padded.push(Some(out));
                }
                TensorStorage::Device { ptr, .. } => {
                    padded.push(None);
                    device_ptrs.push(self.padded_device_input(i, t, *ptr, *nbytes, full)?);
                }
            }
        }
        let mut values: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = Vec::with_capacity(checked.len());
        let mut next_ptr = device_ptrs.iter();
        for (i, (t, _)) in checked.iter().enumerate() {
            let spec = &self.inputs[i];
            let shape = &shapes[i];
            let value = match (&t.storage, &padded[i]) {
                (TensorStorage::Host(_), Some(p)) => host_value(t.dtype, shape, p.as_slice()),
                (TensorStorage::Host(bytes), None) => host_value(t.dtype, shape, bytes.as_slice()),
                (TensorStorage::Device { .. }, _) => {
                    let ptr = *next_ptr.next().expect("one address per device input");
                    // SAFETY: the tensor (and its keepalive) outlives this call; the length
                    // (or the room behind it, or the staging buffer) was checked above.
                    unsafe { device_value(t.dtype, shape, ptr, self.device_id) }
                }
            }
            .map_err(|e| BackendError::Runtime(format!("cannot wrap input '{}': {e}", spec.name)))?;
            values.push((Cow::Borrowed(spec.name.as_str()), value));
        }
        let kept: Vec<Option<usize>> = (0..self.outputs.len()).map(|i| self.rows_kept(i, keep)).collect();
        if let Some(binding) = self.binding.as_mut() {
            // Outputs are bound afresh every run: after a run the binding holds that run's
            // output values and would write the next results into them (still in use
            // downstream, and of the wrong shape when the batch size changes).
            bind_outputs_to_device(binding, &self.outputs, self.device_id)?;
            bind_inputs(binding, &values)?;
            gst::trace!(CAT, "run with I/O binding, {} inputs", values.len());
            let mut outputs = self
                .session
                .run_binding(binding)
                .map_err(|e| BackendError::Runtime(e.message().to_string()))?;
            gst::trace!(CAT, "run with I/O binding done");
            let mut result = Vec::with_capacity(self.outputs.len());
            for (i, spec) in self.outputs.iter().enumerate() {
                let value = outputs.remove(&spec.name).ok_or_else(|| {
                    BackendError::Runtime(format!("ONNX Runtime returned no output '{}'", spec.name))
                })?;
                let t = output_on_device(&spec.name, value)?;
                result.push(match kept[i] {
                    Some(r) => keep_device_rows(t, r),
                    None => t,
                });
            }
            drop(outputs);
            // Inputs may be pooled buffers reused for the next batch: do not keep them bound.
            binding.clear_inputs();
            return Ok(result);
        }
        let outputs = self
            .session
            .run(values)
            .map_err(|e| BackendError::Runtime(e.message().to_string()))?;
        let mut result = Vec::with_capacity(self.outputs.len());
        for (i, spec) in self.outputs.iter().enumerate() {
            let value = outputs.get(&spec.name).ok_or_else(|| {
                BackendError::Runtime(format!("ONNX Runtime returned no output '{}'", spec.name))
            })?;
            result.push(output_to_host(&self.host_outputs, i, &spec.name, value, kept[i])?);
        }
        Ok(result)
    }

    /// Rows of output `i` to keep after a padded run (`keep`), when its first dimension is
    /// the batch.
    pub(super) fn rows_kept(&self, i: usize, keep: Option<usize>) -> Option<usize> {
        let f = self.fixed.as_ref()?;
        keep.filter(|_| f.batch_outputs.get(i).copied().unwrap_or(false))
    }

    /// Address of device input `i` padded to `full` bytes: the tensor's own when the buffer
    /// behind it has room, else a staging copy (the rest zero).
    pub(super) fn padded_device_input(
        &mut self,
        i: usize,
        t: &Tensor,
        ptr: u64,
        nbytes: usize,
        full: usize,
    ) -> Result<u64, BackendError> {
        #[cfg(feature = "cuda")]
        {
            if crate::cuda::device_lease(t).is_some_and(|l| l.capacity() >= full) {
                return Ok(ptr);
            }
            let device_id = self.device_id;
            let fixed = self.fixed.as_mut().expect("only called with a fixed batch");
            if fixed.staging.is_none() {
                let ctx = crate::cuda::DeviceContext::primary(device_id)
                    .map_err(|e| BackendError::Runtime(format!("padding input '{}': {e}", t.name)))?;
                fixed.staging = Some(
                    graphs::Staging::new(&ctx, self.inputs.len())
                        .map_err(|e| BackendError::Runtime(format!("padding input '{}': {e}", t.name)))?,
                );
            }
            let staging = fixed.staging.as_mut().expect("made above");
            // SAFETY: the input was checked to hold `nbytes` bytes and its producer has
            // finished writing it (the caller's contract for device inputs).
            unsafe { staging.fill(i, full, ptr, nbytes) }
                .map_err(|e| BackendError::Runtime(format!("padding input '{}': {e}", t.name)))
        }
        #[cfg(not(feature = "cuda"))]
        {
            let _ = (i, ptr, nbytes, full);
            Err(BackendError::Runtime(format!(
                "device input '{}' has fewer rows than the fixed batch and this build has no CUDA support to pad it",
                t.name
            )))
        }
    }

    /// Captures the graphs (see [`graphs`]): zeroed staging inputs at the fixed batch, one
    /// run without a graph (ONNX Runtime sizes its workspace; the outputs' shapes at the
    /// fixed batch become known), then each output set's graph, on a binding of its own
    /// that stays as it is. Runs on the worker thread that makes every later call.
    #[cfg(feature = "cuda")]
    pub(super) fn start_graphs(
        &mut self,
        ctx: &crate::cuda::DeviceContext,
        stream: std::sync::Arc<crate::cuda::Stream>,
        free: crate::backend::output_sets::OutputSets,
    ) -> Result<(), String> {
        let batch = self
            .fixed
            .as_ref()
            .map(|f| f.plan.batch)
            .ok_or("no fixed batch")?;
        let mut inputs = Vec::with_capacity(self.inputs.len());
        for spec in &self.inputs {
            let bytes = checked_count(&full_shape(spec, batch))
                .and_then(|c| c.checked_mul(spec.dtype.size()))
                .ok_or_else(|| format!("input '{}' shape overflows", spec.name))?;
            let buf = crate::cuda::DeviceBuffer::new(ctx, bytes).map_err(|e| e.to_string())?;
            // SAFETY: no source (zeros only).
            unsafe { buf.fill_from_device(0, 0, &stream) }.map_err(|e| e.to_string())?;
            inputs.push(buf);
        }
        let mut graphs = graphs::GraphRuns::new(ctx, stream, inputs, free)?;
        // Warm-up: the output layouts, from buffers ONNX Runtime allocates.
        let mut warm = self.session.create_binding().map_err(|e| e.to_string())?;
        let bound = self
            .bind_graph_io(&mut warm, &graphs, None)
            .map_err(|e| e.to_string())?;
        let mut outputs = self
            .session
            .run_binding_with_options(&warm, graphs.no_graph())
            .map_err(|e| format!("warm-up run: {}", e.message()))?;
        let mut layouts = Vec::with_capacity(self.outputs.len());
        for spec in &self.outputs {
            let value = outputs
                .remove(&spec.name)
                .ok_or_else(|| format!("no output '{}'", spec.name))?;
            let (elem, dtype, shape, _, bytes) =
                output_layout(&spec.name, &value).map_err(|e| e.to_string())?;
            if native_elem(dtype) != elem {
                return Err(format!(
                    "output '{}' is {elem:?}, which is converted on the host",
                    spec.name
                ));
            }
            layouts.push(graphs::OutputLayout {
                name: spec.name.clone(),
                dtype,
                shape,
                bytes,
            });
        }
        drop(outputs);
        drop(warm);
        drop(bound);
        graphs.make_sets(layouts)?;
        // One graph per set. ONNX Runtime runs an id without a graph until it has seen
        // enough regular runs (two, in the versions we know), captures on the next and
        // replays from then on: three runs each capture every graph here, not later.
        let sets: Vec<_> = graphs.captured_sets().collect();
        let mut bindings = Vec::with_capacity(sets.len());
        for (k, set) in sets.iter().enumerate() {
            let mut binding = self.session.create_binding().map_err(|e| e.to_string())?;
            let bound = self
                .bind_graph_io(&mut binding, &graphs, Some(set))
                .map_err(|e| e.to_string())?;
            for _ in 0..3 {
                let run = self
                    .session
                    .run_binding_with_options(&binding, graphs.options(k as i32 + 1))
                    .map(drop)
                    .map_err(|e| e.message().to_string());
                if let Err(why) = run {
                    let open = graphs.end_broken_capture();
                    return Err(format!(
                        "capturing graph {}: {why}{}",
                        k + 1,
                        if open { " (capture ended)" } else { "" }
                    ));
                }
            }
            bindings.push(graphs::SetBinding::new(binding, bound));
        }
        drop(sets);
        graphs.set_bindings(bindings);
        let captured = graphs.made();
        let fixed = self.fixed.as_mut().ok_or("no fixed batch")?;
        fixed.graphs = Some(graphs);
        crate::backend_log!(
            info,
            CAT,
            self.log_target,
            "{}: batch fixed at {batch}, {} CUDA graphs captured",
            self.model_path,
            captured
        );
        Ok(())
    }

    /// Binds the staging inputs of `graphs` (at the fixed batch) and the buffers of `set`
    /// (all outputs; `None`: ONNX Runtime allocates them) to `binding`. The returned values
    /// must stay alive as long as the binding holds them.
    #[cfg(feature = "cuda")]
    pub(super) fn bind_graph_io(
        &self,
        binding: &mut ort::session::IoBinding,
        graphs: &graphs::GraphRuns,
        set: Option<&graphs::OutputSet>,
    ) -> Result<Vec<SessionInputValue<'static>>, BackendError> {
        let rt = |e: String| BackendError::Runtime(format!("binding the graph buffers: {e}"));
        let batch = self.fixed.as_ref().map_or(1, |f| f.plan.batch);
        let mut values = Vec::with_capacity(self.inputs.len() + self.outputs.len());
        match set {
            Some(set) => {
                binding.clear_outputs();
                for (i, l) in graphs.layouts().iter().enumerate() {
                    // SAFETY: the set's buffer holds `l.bytes`; the caller keeps the set
                    // alive as long as the binding holds it.
                    let v = unsafe { device_value(l.dtype, &l.shape, set.ptr(i), self.device_id) }
                        .map_err(|e| rt(format!("output '{}': {e}", l.name)))?;
                    bind_raw(binding, &l.name, &v, false)?;
                    values.push(v);
                }
            }
            None => bind_outputs_to_device(binding, &self.outputs, self.device_id)?,
        }
        binding.clear_inputs();
        for (i, spec) in self.inputs.iter().enumerate() {
            let shape = full_shape(spec, batch);
            // SAFETY: the staging buffer holds the input at the fixed batch and lives as
            // long as `graphs`.
            let v = unsafe { device_value(spec.dtype, &shape, graphs.input_ptr(i), self.device_id) }
                .map_err(|e| rt(format!("input '{}': {e}", spec.name)))?;
            bind_raw(binding, &spec.name, &v, true)?;
            values.push(v);
        }
        Ok(values)
    }

    /// One batch through the graphs: the inputs copied into the staging buffers on the
    /// session's stream, then the graph of a free output set replayed on that set's own
    /// binding (with every set in use, or graphs off after a failure: a run without a graph
    /// into a set of its own).
    #[cfg(feature = "cuda")]
    pub(super) fn run_graph(
        &mut self,
        checked: &[(&Tensor, usize)],
        keep: Option<usize>,
    ) -> Result<Vec<Tensor>, BackendError> {
        let mut graphs = self
            .fixed
            .as_mut()
            .and_then(|f| f.graphs.take())
            .ok_or_else(|| BackendError::Runtime("CUDA graphs are not set up".into()))?;
        let result = self.run_graph_with(&mut graphs, checked, keep);
        if let Some(f) = self.fixed.as_mut() {
            f.graphs = Some(graphs);
        }
        result
    }

    #[cfg(feature = "cuda")]
    pub(super) fn run_graph_with(
        &mut self,
        graphs: &mut graphs::GraphRuns,
        checked: &[(&Tensor, usize)],
        keep: Option<usize>,
    ) -> Result<Vec<Tensor>, BackendError> {
        let rt = |e: String| BackendError::Runtime(format!("CUDA graph run: {e}"));
        for (i, (t, nbytes)) in checked.iter().enumerate() {
            let (src, device) = match &t.storage {
                TensorStorage::Host(b) => (b.as_slice().as_ptr() as usize as u64, false),
                TensorStorage::Device { ptr, .. } => (*ptr, true),
            };
            // SAFETY: the tensor holds `nbytes` bytes (checked) written by its producer, and
            // outlives the run, whose end synchronises the stream.
            unsafe { graphs.stage_input(i, src, *nbytes, device) }
                .map_err(|e| rt(format!("input '{}': {e}", t.name)))?;
        }
        // A free set runs on its own binding, bound once; a set made now (every one in use
        // and the bound not reached) gets its binding now and is kept for later runs.
        let lease = match graphs.take_set()? {
            graphs::NextSet::Ready(lease) => lease,
            graphs::NextSet::Make(new) => {
                let set = graphs.new_set().map_err(|e| rt(e.to_string()))?;
                let mut b = self.session.create_binding().map_err(|e| rt(e.to_string()))?;
                let bound = self.bind_graph_io(&mut b, graphs, Some(&set))?;
                let lease = graphs.add_set(new, set, graphs::SetBinding::new(b, bound));
                crate::backend_log!(
                    debug,
                    CAT,
                    self.log_target,
                    "{} CUDA-graph output sets (device outputs held downstream)",
                    graphs.made()
                );
                lease
            }
        };
        let binding = graphs.binding(lease.index);
        let mut failed = None;
        let first = self
            .session
            .run_binding_with_options(binding, graphs.options(lease.graph))
            .map(drop)
            .map_err(|e| e.message().to_string());
        if let Err(why) = first {
            if lease.graph == graphs::NO_GRAPH {
                return Err(BackendError::Runtime(why));
            }
            graphs.end_broken_capture();
            crate::backend_log!(
                warning,
                CAT,
                self.log_target,
                "CUDA graph {} failed ({why}): graphs off",
                lease.graph
            );
            self.session
                .run_binding_with_options(binding, graphs.no_graph())
                .map_err(|e| {
                    BackendError::Runtime(format!("{} (after a failed CUDA graph run: {why})", e.message()))
                })?;
            failed = Some(why);
        }
        if failed.is_some() {
            graphs.enabled = false;
        }
        if let Some(why) = failed {
            self.warning = Some(format!(
                "a CUDA graph of model {} failed ({why}): running without graphs",
                self.model_path
            ));
        }
        let mut result = Vec::with_capacity(graphs.layouts().len());
        for (i, l) in graphs.layouts().iter().enumerate() {
            let t = Tensor {
                name: l.name.clone(),
                dtype: l.dtype,
                shape: l.shape.clone(),
                storage: TensorStorage::Device {
                    ptr: lease.hold.set.ptr(i),
                    len: l.bytes,
                    keepalive: lease.hold.clone(),
                },
            };
            result.push(match self.rows_kept(i, keep) {
                Some(r) => keep_device_rows(t, r),
                None => t,
            });
        }
        Ok(result)
    }
}
