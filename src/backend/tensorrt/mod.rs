//! Native TensorRT backend (cargo feature `tensorrt`).
//!
//! # Architecture
//!
//! A small C++ shim (`shim/tensorrt/*.cpp`, C API in `trts.h`) is compiled by `build.rs`
//! against NVIDIA's public TensorRT headers (`TENSORRT_DIR`). It is **not linked** against
//! TensorRT or CUDA: at run time it `dlopen`s `libnvinfer.so.<major>`,
//! `libnvonnxparser.so.<major>` (only to build from ONNX) and `libcuda.so.1`, and resolves
//! the factory functions (`createInferRuntime_INTERNAL`, `createInferBuilder_INTERNAL`,
//! `createNvOnnxParser_INTERNAL`, `getInferLibVersion`) and the CUDA driver API with
//! `dlsym`. A missing library gives [`BackendError::Unavailable`] naming the library and
//! `LD_LIBRARY_PATH`; no C++ exception crosses into Rust and nothing panics.
//!
//! The shim's TensorRT major version is fixed at build time (`NV_TENSORRT_MAJOR`): a
//! plugin built against TensorRT 11 headers needs `libnvinfer.so.11` (and 10 → 10).
//!
//! # Models
//!
//! - `.engine` / `.plan` / `.trt`: a serialized engine, deserialized as is.
//! - `.onnx`: built with one optimisation profile (batch min 1, opt = max = `max_batch`,
//!   other dimensions from the ONNX), the precision of [`TrtOptions::precision`], the
//!   workspace limit and a timing cache, then stored in `engine_cache_dir` under a key of
//!   model hash + GPU name + compute capability + TensorRT version + precision + max batch
//!   (see [`EngineCache`]) and reused on the next start. A stale or unloadable cached engine
//!   is rebuilt. Without `engine_cache_dir` the engine is built on every start.
//! - TensorRT 10 builds FP16/INT8 with builder flags; TensorRT 11 is strongly typed only,
//!   so FP16 needs an FP16 ONNX (`engines/convert_fp16.py`) and INT8 a Q/DQ ONNX.
//!
//! # Execution
//!
//! Inputs and outputs are discovered from the engine. Each call sets the real input shapes,
//! binds device inputs zero-copy (host inputs: one async H2D copy into a pooled device
//! buffer), runs `enqueueV3` on the backend's stream and waits on one event. Outputs:
//! - host (default): downloaded into pinned host buffers and returned as host tensors;
//! - device ([`BackendOptions::outputs_on_device`], for GPU post-processing): returned as
//!   device tensors pointing at the set's output buffers, nothing copied. The tensors hold
//!   the set (keepalive): a set still held downstream is skipped, and another set is
//!   allocated when all are held (up to the bound below).
//!
//! Device output (and pinned) buffers are allocated at open for the max batch, in two sets,
//! so the buffers a batch is read back from are never the ones the next batch is written
//! to; while downstream holds device outputs more sets are made, up to
//! `BackendOptions::output_pool_size` (default [`DEFAULT_OUTPUT_POOL_SIZE`]) times the chunks
//! of the largest batch ([`InferenceBackend::hold_chunks`]), then a call waits (bounded by
//! `BackendOptions::pool_timeout`) for a set to come back ([`OutputSets`]); a flush or stop
//! of the element ends the wait ([`BackendError::Flushing`]). Host outputs are copied into
//! buffers of a bounded pool per output ([`HostOutputs`], same bound and timeout).
//! Optional CUDA-graph replay (`cuda-graph=true`). One warm-up run at open. [`InferenceBackend::upload`] copies constant inputs (prompts) to the device once.
//!
//! Device inputs ([`TensorStorage::Device`]) must hold complete data when `infer` is called
//! (their producer has synchronized its stream).
//!
//! Extra options: see [`options`] (`GST_TRTVISION_TENSORRT` environment variable).

mod cache;
mod cuda;
mod ffi;
mod io;
mod load;
pub mod options;
mod runtime;
mod sha256;

use std::collections::HashMap;
use std::ffi::{c_char, CStr, CString};
use std::path::Path;
use std::sync::{Arc, LazyLock};

pub use cache::{CacheKey, CacheLookup, CacheMeta, EngineCache};
pub use options::{Precision, TrtOptions, OPTIONS_ENV};

use crate::backend::output_sets::{self, OutputSets, SetTake};
#[cfg(doc)]
use crate::backend::DEFAULT_OUTPUT_POOL_SIZE;
use crate::backend::{BackendError, BackendOptions, HostOutputs, InferenceBackend, InputRef, TensorSpec};
use crate::tensor::{Tensor, TensorStorage};

use cuda::{DeviceBuffer, Event, GraphExec, PinnedBuffer, Stream};
use ffi::{check, ShimError, Status};
use io::{BatchLayout, IoTensor};
use load::{discover_io, load_engine_file, load_or_build, model_kind, ModelKind};
use runtime::{device_info, load_libraries, DeviceHold, Engine, GpuInfo, LogScope, Runtime};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "trtvision-tensorrt",
        gst::DebugColorFlags::empty(),
        Some("trtvision native TensorRT backend"),
    )
});

const BACKEND: &str = "tensorrt";

/// Alignment TensorRT requires of I/O device addresses.
const DEVICE_ALIGN: u64 = 256;

/// What a wait for a buffer set that timed out names.
const SETS_HELD: &str = "TensorRT output buffer sets held by device output tensors";

/// Distinct (buffer set, input shapes) CUDA graphs kept before the set is cleared.
const MAX_GRAPHS: usize = 64;

fn unavailable(reason: impl Into<String>) -> BackendError {
    BackendError::Unavailable {
        backend: BACKEND.into(),
        reason: reason.into(),
    }
}

fn runtime_error(e: ShimError) -> BackendError {
    BackendError::Runtime(e.message)
}

/// One set of I/O buffers, sized for the max batch.
struct BufferSet {
    inputs: Vec<DeviceBuffer>,
    /// Shared with the device output tensors handed out (free again when unique).
    outputs: Arc<DeviceHold>,
    /// Download targets (host outputs only).
    host: Vec<PinnedBuffer>,
    done: Event,
}

impl BufferSet {
    fn new(
        input_bytes: &[usize],
        output_bytes: &[usize],
        host_outputs: bool,
        runtime: &Arc<Runtime>,
        stream: &Stream,
    ) -> Result<Self, ShimError> {
        let set = BufferSet {
            inputs: input_bytes
                .iter()
                .map(|&n| DeviceBuffer::new(n))
                .collect::<Result<_, _>>()?,
            outputs: Arc::new(DeviceHold::new(output_bytes, runtime)?),
            host: if host_outputs {
                output_bytes
                    .iter()
                    .map(|&n| PinnedBuffer::new(n))
                    .collect::<Result<_, _>>()?
            } else {
                Vec::new()
            },
            done: Event::new()?,
        };
        for b in &set.inputs {
            b.zero_async(stream)?;
        }
        Ok(set)
    }
}

/// A buffer set in use: by the call that runs on it, then by the device output tensors it
/// hands out (their keepalive). The set goes back to the pool when the last one drops.
struct SetLease {
    index: usize,
    _outputs: Arc<DeviceHold>,
    _lease: output_sets::SetLease,
}

/// Native TensorRT inference backend. See the [module documentation](self).
pub struct TrtBackend {
    // Field order is drop order: CUDA objects, then the engine, then the runtime (which
    // releases the CUDA context). `Drop` makes the context current first.
    graphs: HashMap<Vec<i64>, GraphExec>,
    sets: Vec<BufferSet>,
    stream: Stream,
    engine: Engine,
    runtime: Arc<Runtime>,
    inputs: Vec<IoTensor>,
    outputs: Vec<IoTensor>,
    input_specs: Vec<TensorSpec>,
    output_specs: Vec<TensorSpec>,
    layout: BatchLayout,
    max_batch: usize,
    /// Indices into `sets` free for the next call; at most the bound out at once.
    free_sets: OutputSets,
    log_target: crate::backend::LogTarget,
    bound_shapes: Vec<Vec<i64>>,
    cuda_graph: bool,
    host_outputs: HostOutputs,
    outputs_on_device: bool,
    input_bytes: Vec<usize>,
    output_bytes: Vec<usize>,
}

// SAFETY: the raw TensorRT/CUDA handles are owned exclusively by this value and are only
// used through `&mut self` (or in `Drop`), i.e. by one thread at a time; TensorRT execution
// contexts and CUDA streams may be used from any thread as long as calls do not overlap, and
// every call makes the backend's CUDA context current on the calling thread first.
unsafe impl Send for TrtBackend {}

impl TrtBackend {
    /// Opens `opts.model_path` with the TensorRT options from [`TrtOptions::resolve`]
    /// (shared options plus the `GST_TRTVISION_TENSORRT` environment variable).
    pub fn open(opts: &BackendOptions) -> Result<TrtBackend, BackendError> {
        let env = std::env::var(OPTIONS_ENV).ok();
        let trt = TrtOptions::resolve(opts, env.as_deref())?;
        Self::open_with(opts, &trt)
    }

    /// Opens `opts.model_path` with explicit TensorRT options.
    pub fn open_with(opts: &BackendOptions, trt: &TrtOptions) -> Result<TrtBackend, BackendError> {
        let _log = LogScope::enter(&opts.log_target);
        let lib_version = load_libraries()?;
        let model = opts.model_path.as_path();
        std::fs::metadata(model).map_err(|e| BackendError::ModelUnreadable {
            path: model.display().to_string(),
            reason: e.to_string(),
        })?;
        let kind = model_kind(model)?;
        let gpu = device_info(opts.device_id).map_err(|e| unavailable(e.message))?;
        let runtime = Runtime::create(opts.device_id).map_err(|e| match e.status {
            Status::Unavailable => unavailable(e.message),
            _ => runtime_error(e),
        })?;
        let trt_version = ffi::version_string(lib_version);
        // SAFETY: plain getter.
        let header_version = unsafe { ffi::trts_header_version() };
        if lib_version < header_version {
            crate::backend_log!(
                warning,
                CAT,
                opts.log_target,
                "libnvinfer {} is older than the TensorRT {} headers this plugin was built with",
                trt_version,
                ffi::version_string(header_version)
            );
        }
        crate::backend_log!(
            info,
            CAT,
            opts.log_target,
            "TensorRT {} on CUDA device {} ({}, sm_{}{}), model {}",
            trt_version,
            opts.device_id,
            gpu.name,
            gpu.cc.0,
            gpu.cc.1,
            model.display()
        );
        let engine = match kind {
            ModelKind::Engine => load_engine_file(&runtime, model, &gpu, &trt_version)?,
            ModelKind::Onnx => load_or_build(&runtime, opts, trt, &gpu, &trt_version)?,
        };
        Self::from_engine(Arc::new(runtime), engine, opts, trt)
    }

    fn from_engine(
        runtime: Arc<Runtime>,
        mut engine: Engine,
        opts: &BackendOptions,
        trt: &TrtOptions,
    ) -> Result<Self, BackendError> {
        let path = opts.model_path.display().to_string();
        let invalid = |reason: String| BackendError::ModelInvalid {
            path: path.clone(),
            reason,
        };
        let (inputs, outputs) = discover_io(&engine).map_err(&invalid)?;
        if outputs.is_empty() {
            return Err(invalid("the engine has no outputs".into()));
        }
        let layout = io::batch_layout(&inputs).map_err(&invalid)?;
        let max_batch = match opts.max_batch {
            0 => layout.engine_max,
            m if m > layout.engine_max => {
                return Err(BackendError::BatchTooLarge {
                    got: m,
                    max: layout.engine_max,
                })
            }
            m => m,
        };
        let alloc_batch = if layout.dynamic {
            max_batch
        } else {
            layout.engine_max
        };

        // Bind the largest shapes to size every buffer.
        let mut bound_shapes = Vec::with_capacity(inputs.len());
        let mut input_bytes = Vec::with_capacity(inputs.len());
        for t in &inputs {
            let mut shape: Vec<i64> = t
                .dims
                .iter()
                .zip(&t.max)
                .map(|(&d, &m)| if d < 0 { m } else { d })
                .collect();
            shape[0] = alloc_batch as i64;
            engine.set_input_shape(t, &shape)?;
            input_bytes.push(byte_len(&shape, t));
            bound_shapes.push(shape);
        }
        let mut output_bytes = Vec::with_capacity(outputs.len());
        for t in &outputs {
            let shape = engine.shape(t).map_err(runtime_error)?;
            if shape.iter().any(|&d| d < 0) {
                return Err(invalid(format!(
                    "output '{}' has a data-dependent shape {:?}, which this backend does not support",
                    t.spec.name, shape
                )));
            }
            output_bytes.push(byte_len(&shape, t));
        }

        let stream = Stream::new().map_err(runtime_error)?;
        let host_outputs = !opts.outputs_on_device;
        let set_limit = opts.output_limit();
        let mut sets = Vec::with_capacity(set_limit);
        for _ in 0..set_limit.min(2) {
            sets.push(
                BufferSet::new(&input_bytes, &output_bytes, host_outputs, &runtime, &stream)
                    .map_err(runtime_error)?,
            );
        }

        // Warm-up at full batch on set 0 (first-run kernels, lazy allocations).
        for (t, buf) in inputs.iter().zip(&sets[0].inputs) {
            engine.set_address(t, buf.ptr())?;
        }
        for (t, buf) in outputs.iter().zip(&sets[0].outputs.buffers) {
            engine.set_address(t, buf.ptr())?;
        }
        for _ in 0..trt.warmup_runs {
            engine.enqueue(&stream).map_err(runtime_error)?;
        }
        stream
            .sync()
            .map_err(|e| BackendError::Runtime(format!("warm-up inference failed: {e}")))?;

        let describe = |v: &[IoTensor]| v.iter().map(|t| t.spec.describe()).collect::<Vec<_>>().join("; ");
        crate::backend_log!(
            info,
            CAT,
            opts.log_target,
            "engine ready: inputs [{}], outputs [{}] on the {}, batch {} (engine max {}, {}), cuda graphs {}",
            describe(&inputs),
            describe(&outputs),
            if host_outputs { "host" } else { "device" },
            max_batch,
            layout.engine_max,
            if layout.dynamic {
                "dynamic"
            } else {
                "fixed, smaller batches padded"
            },
            if trt.cuda_graph { "on" } else { "off" }
        );

        let free_sets = OutputSets::new(opts, SETS_HELD, sets.len());
        Ok(TrtBackend {
            graphs: HashMap::new(),
            sets,
            stream,
            engine,
            runtime,
            input_specs: inputs.iter().map(|t| t.spec.clone()).collect(),
            output_specs: outputs.iter().map(|t| t.spec.clone()).collect(),
            host_outputs: HostOutputs::new(outputs.len(), opts),
            inputs,
            outputs,
            layout,
            max_batch,
            free_sets,
            log_target: opts.log_target.clone(),
            bound_shapes,
            cuda_graph: trt.cuda_graph,
            outputs_on_device: !host_outputs,
            input_bytes,
            output_bytes,
        })
    }

    /// The buffer set of the next call: a free one, else a new one while fewer than the
    /// bound exist, else waits (bounded) for one held downstream to come back.
    fn acquire_set(&mut self) -> Result<SetLease, BackendError> {
        let lease = match self.free_sets.take()? {
            SetTake::Idle(lease) => lease,
            SetTake::New(new) => {
                // Dropping `new` on an allocation failure gives the permission back.
                let set = BufferSet::new(
                    &self.input_bytes,
                    &self.output_bytes,
                    !self.outputs_on_device,
                    &self.runtime,
                    &self.stream,
                )
                .map_err(runtime_error)?;
                self.sets.push(set);
                crate::backend_log!(
                    debug,
                    CAT,
                    self.log_target,
                    "{} buffer sets (device outputs held downstream)",
                    self.sets.len()
                );
                new.made(self.sets.len() - 1)
            }
        };
        let index = lease.index();
        Ok(SetLease {
            index,
            _outputs: self.sets[index].outputs.clone(),
            _lease: lease,
        })
    }

    /// Runs the bound work: replays a captured CUDA graph when enabled, else `enqueueV3`.
    fn run(&mut self, graph_key: Vec<i64>) -> Result<(), BackendError> {
        if !self.cuda_graph {
            return self.engine.enqueue(&self.stream).map_err(runtime_error);
        }
        if let Some(graph) = self.graphs.get(&graph_key) {
            return graph.launch(&self.stream).map_err(runtime_error);
        }
        // First time for these shapes and buffers: a plain enqueue (which also lets
        // TensorRT apply the new shapes), then capture the same work for the next calls.
        self.engine.enqueue(&self.stream).map_err(runtime_error)?;
        let engine = &mut self.engine;
        let stream = &self.stream;
        match GraphExec::capture(stream, || engine.enqueue(stream)) {
            Ok(Ok(graph)) => {
                if self.graphs.len() >= MAX_GRAPHS {
                    self.graphs.clear();
                }
                self.graphs.insert(graph_key, graph);
            }
            Ok(Err(e)) | Err(e) => {
                crate::backend_log!(
                    warning,
                    CAT,
                    self.log_target,
                    "CUDA graph capture failed, running without graphs: {}",
                    e
                );
                self.cuda_graph = false;
                self.graphs.clear();
            }
        }
        Ok(())
    }
}

fn byte_len(shape: &[i64], t: &IoTensor) -> usize {
    shape.iter().map(|&d| d.max(0) as usize).product::<usize>() * t.spec.dtype.size()
}

impl InferenceBackend for TrtBackend {
    fn name(&self) -> &'static str {
        BACKEND
    }

    fn inputs(&self) -> &[TensorSpec] {
        &self.input_specs
    }

    fn outputs(&self) -> &[TensorSpec] {
        &self.output_specs
    }

    fn max_batch(&self) -> Option<usize> {
        Some(self.max_batch)
    }

    fn outputs_on_device(&self) -> bool {
        self.outputs_on_device
    }

    fn upload(&mut self, t: &Tensor) -> Result<Tensor, BackendError> {
        let Some(bytes) = t.host_bytes() else {
            return Ok(t.clone());
        };
        self.runtime.make_current().map_err(runtime_error)?;
        let hold = DeviceHold::new(&[bytes.len().max(1)], &self.runtime).map_err(runtime_error)?;
        let buf = &hold.buffers[0];
        buf.upload_async(bytes, &self.stream).map_err(runtime_error)?;
        // `bytes` must stay readable until the copy is done.
        self.stream.sync().map_err(runtime_error)?;
        let ptr = buf.ptr();
        Ok(t.with_storage(TensorStorage::device(ptr, bytes.len(), hold)))
    }

    fn hold_chunks(&mut self, chunks: usize) {
        self.host_outputs.hold_chunks(chunks);
        self.free_sets.hold_chunks(chunks);
    }

    fn infer(&mut self, inputs: &[InputRef<'_>]) -> Result<Vec<Tensor>, BackendError> {
        let _log = LogScope::enter(&self.log_target);
        let (batch, tensors) = io::match_inputs(&self.inputs, inputs, self.max_batch)?;
        self.runtime.make_current().map_err(runtime_error)?;
        let run_batch = if self.layout.dynamic {
            batch
        } else {
            self.layout.engine_max
        };
        let lease = self.acquire_set()?;
        let set_idx = lease.index;

        // Inputs: real shapes, zero-copy device pointers or one upload into the pooled buffer.
        let mut graph_key = vec![set_idx as i64];
        for (i, tensor) in tensors.iter().enumerate() {
            let t = &self.inputs[i];
            let mut shape: Vec<i64> = tensor.shape.iter().map(|&d| d as i64).collect();
            shape[0] = run_batch as i64;
            if self.bound_shapes[i] != shape {
                self.engine.set_input_shape(t, &shape)?;
                self.bound_shapes[i] = shape.clone();
            }
            graph_key.extend_from_slice(&shape);
            let buf = &self.sets[set_idx].inputs[i];
            let len = tensor.len_bytes();
            if len > buf.len() {
                return Err(BackendError::ShapeMismatch(format!(
                    "input '{}' {:?} is larger than the engine's largest shape",
                    t.spec.name, tensor.shape
                )));
            }
            let addr = match &tensor.storage {
                // Zero copy: TensorRT needs 256-byte aligned addresses and a full batch.
                TensorStorage::Device { ptr, .. }
                    if !self.cuda_graph && run_batch == batch && ptr % DEVICE_ALIGN == 0 =>
                {
                    *ptr
                }
                TensorStorage::Device { ptr, .. } => {
                    buf.copy_from_device_async(*ptr, len, &self.stream)
                        .map_err(runtime_error)?;
                    buf.ptr()
                }
                TensorStorage::Host(bytes) => {
                    buf.upload_async(bytes.as_slice(), &self.stream)
                        .map_err(runtime_error)?;
                    buf.ptr()
                }
            };
            self.engine.set_address(t, addr)?;
        }

        // Outputs of this buffer set.
        let mut out_shapes = Vec::with_capacity(self.outputs.len());
        for (j, t) in self.outputs.iter().enumerate() {
            let shape = self.engine.shape(t).map_err(runtime_error)?;
            let bytes = byte_len(&shape, t);
            if shape.iter().any(|&d| d < 0) || bytes > self.sets[set_idx].outputs.buffers[j].len() {
                return Err(BackendError::Runtime(format!(
                    "output '{}' has shape {:?}, which does not fit the buffers sized at open",
                    t.spec.name, shape
                )));
            }
            self.engine
                .set_address(t, self.sets[set_idx].outputs.buffers[j].ptr())?;
            out_shapes.push((shape, bytes));
        }

        self.run(graph_key)?;

        // Host outputs: one download per output; either way one event wait per batch.
        let set = &mut self.sets[set_idx];
        if !self.outputs_on_device {
            for ((host, dev), (_, bytes)) in set.host.iter_mut().zip(&set.outputs.buffers).zip(&out_shapes) {
                host.download_async(dev.ptr(), *bytes, &self.stream)
                    .map_err(runtime_error)?;
            }
        }
        set.done.record(&self.stream).map_err(runtime_error)?;
        set.done.sync().map_err(runtime_error)?;

        // Device outputs keep the set until their last clone drops; host outputs are copied
        // out below and the set is free again when this call returns.
        let keepalive: Arc<dyn std::any::Any + Send + Sync> = Arc::new(lease);
        let mut result = Vec::with_capacity(self.outputs.len());
        for (j, (t, (shape, bytes))) in self.outputs.iter().zip(out_shapes).enumerate() {
            let mut shape: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
            let mut len = bytes;
            // Fixed-batch engine run on a padded batch: return only the real rows.
            if run_batch != batch && shape.first() == Some(&run_batch) {
                len = bytes / run_batch * batch;
                shape[0] = batch;
            }
            if self.outputs_on_device {
                result.push(Tensor {
                    name: t.spec.name.clone(),
                    dtype: t.spec.dtype,
                    shape,
                    storage: TensorStorage::Device {
                        ptr: set.outputs.buffers[j].ptr(),
                        len,
                        keepalive: keepalive.clone(),
                    },
                });
            } else {
                let mut out = self.host_outputs.acquire(j, len, &t.spec.name)?;
                out.as_mut_slice().copy_from_slice(set.host[j].bytes(len));
                result.push(Tensor::host(t.spec.name.clone(), t.spec.dtype, shape, out));
            }
        }
        Ok(result)
    }
}

impl Drop for TrtBackend {
    fn drop(&mut self) {
        // Fields are dropped after this: make the context current and let pending work end.
        if self.runtime.make_current().is_ok() {
            let _ = self.stream.sync();
        }
    }
}

#[cfg(test)]
mod tests;
