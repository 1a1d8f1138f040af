//! ONNX Runtime backend through the `ort` crate (CPU, CUDA and TensorRT execution
//! providers).
//!
//! The ONNX Runtime shared library is loaded at run time (never at build time) from, in
//! this order:
//! 1. the `ORT_DYLIB_PATH` environment variable, when set;
//! 2. an installed `onnxruntime` Python wheel (`onnxruntime/capi/libonnxruntime.so*`) in
//!    the usual site-packages directories (system, user, `$VIRTUAL_ENV`, pyenv).
//!
//! The ort environment is created once per process and shared by every session. All
//! calls into `ort` that could panic are wrapped in [`std::panic::catch_unwind`] so that no
//! panic can cross into GStreamer: they become [`BackendError`]s.
//!
//! Host inputs are handed to ONNX Runtime as borrowed views over the tensor bytes (no
//! copy when the bytes are suitably aligned, which pooled buffers are in practice).
//! Device inputs ([`TensorStorage::Device`]) are handed over as CUDA-located values over
//! the raw device pointer (CUDA and TensorRT providers only); the producer must have
//! finished writing them (stream synchronised) before [`InferenceBackend::infer`] is
//! called. Outputs are host tensors from a bounded pool per output (at most
//! `BackendOptions::output_pool_size` batches held downstream; a call waits up to
//! `pool_timeout` for one to come back, a flush or stop of the element ends the wait), or
//! device tensors with `outputs_on_device` (GPU providers). `fixed_batch` and `cuda_graph` load the model with a fixed batch and replay
//! it from CUDA graphs (see the `fixed_batch` and `graphs` modules).

use std::borrow::Cow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;
use ort::ep::{self, ExecutionProvider};
use ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, Shape, TensorElementType, TensorRef, TensorRefMut, ValueType};

use super::{BackendError, BackendKind, BackendOptions, InferenceBackend, InputRef, TensorSpec};
use crate::tensor::{DType, HostTensorPool, PooledBytes, Tensor, TensorStorage};

mod binding;
mod fixed_batch;
#[cfg(feature = "cuda")]
mod graphs;
mod library;
mod logging;
mod run;
mod session;
mod values;

use binding::*;
use library::*;
pub use library::{resolve_library_path, ORT_DYLIB_ENV};
use values::*;

static CAT: std::sync::LazyLock<gst::DebugCategory> = std::sync::LazyLock::new(|| {
    gst::DebugCategory::new(
        "trtvision-ort",
        gst::DebugColorFlags::empty(),
        Some("trtvision ONNX Runtime backend"),
    )
});

/// A model loaded in ONNX Runtime, ready to run batches.
pub struct OrtBackend {
    session: Session,
    kind: BackendKind,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    /// Largest accepted batch: the fixed batch dimension of the model, or the TensorRT
    /// profile maximum; `None` when unlimited.
    max_batch: Option<usize>,
    /// Host buffers for zero-padded inputs, recycled across batches.
    pool: HostTensorPool,
    /// Host buffers for the outputs: at most `output-pool-size` of each held downstream.
    host_outputs: super::HostOutputs,
    /// The session's log id, mapped to the element while the backend lives.
    _log_id: Option<logging::SessionLogId>,
    model_path: String,
    /// The element whose log lines these are (read by the CUDA paths' lines).
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    log_target: crate::backend::LogTarget,
    device_id: i32,
    /// I/O binding that leaves every output in CUDA memory (ONNX Runtime's device arena,
    /// reused across runs), when the outputs were asked for on the device.
    binding: Option<ort::session::IoBinding>,
    /// Device buffers made by [`InferenceBackend::upload`], owned by the tensors handed out.
    #[cfg(feature = "cuda")]
    upload_ctx: Option<crate::cuda::DeviceContext>,
    /// The batch dimension fixed at load (see [`fixed_batch`]).
    fixed: Option<Fixed>,
    /// What was asked for and could not be done, for the element to report once.
    warning: Option<String>,
    /// The thread every call runs on when CUDA graphs are on (see [`graphs`]).
    #[cfg(feature = "cuda")]
    worker: Option<std::sync::Arc<graphs::Worker>>,
}

/// The inputs of one run in the model's order with their byte lengths, and the batch.
type CheckedInputs<'t> = (Vec<(&'t Tensor, usize)>, usize);

/// State of a session whose batch dimension was fixed at load.
struct Fixed {
    plan: fixed_batch::BatchPlan,
    /// Per output: its first dimension is the batch (rows dropped after a padded run).
    batch_outputs: Vec<bool>,
    /// How full the batches are, for the one warning about padding.
    fill: fixed_batch::BatchFill,
    /// Staging buffers for device inputs without room for the padding rows.
    #[cfg(feature = "cuda")]
    staging: Option<graphs::Staging>,
    /// The captured CUDA graphs, their stream, input buffers and output sets.
    #[cfg(feature = "cuda")]
    graphs: Option<graphs::GraphRuns>,
}

impl std::fmt::Debug for OrtBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrtBackend")
            .field("kind", &self.kind)
            .field("model", &self.model_path)
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .field("max_batch", &self.max_batch)
            .finish_non_exhaustive()
    }
}

fn unavailable(kind: BackendKind, reason: impl Into<String>) -> BackendError {
    BackendError::Unavailable {
        backend: kind.name().to_string(),
        reason: reason.into(),
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// Runs `f`, turning a panic into `on_panic(message)`.
fn guarded<T>(
    f: impl FnOnce() -> Result<T, BackendError>,
    on_panic: impl FnOnce(String) -> BackendError,
) -> Result<T, BackendError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => Err(on_panic(panic_message(p.as_ref()))),
    }
}

impl InferenceBackend for OrtBackend {
    fn name(&self) -> &'static str {
        self.kind.name()
    }

    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    fn max_batch(&self) -> Option<usize> {
        self.max_batch
    }

    fn hold_chunks(&mut self, chunks: usize) {
        self.host_outputs.hold_chunks(chunks);
        #[cfg(feature = "cuda")]
        if let Some(graphs) = self.fixed.as_ref().and_then(|f| f.graphs.as_ref()) {
            graphs.hold_chunks(chunks);
        }
    }

    fn infer(&mut self, inputs: &[InputRef<'_>]) -> Result<Vec<Tensor>, BackendError> {
        // With CUDA graphs, every call is made on the thread that captured them.
        #[cfg(feature = "cuda")]
        if let Some(worker) = self.worker.clone() {
            return worker.call(|| self.run(inputs)).unwrap_or_else(|| {
                Err(BackendError::Runtime(
                    "ONNX Runtime panicked on the inference thread".into(),
                ))
            });
        }
        guarded(
            || self.run(inputs),
            |msg| BackendError::Runtime(format!("ONNX Runtime panicked: {msg}")),
        )
    }

    fn take_warning(&mut self) -> Option<String> {
        self.warning.take()
    }

    fn outputs_on_device(&self) -> bool {
        self.binding.is_some()
    }

    fn upload(&mut self, t: &Tensor) -> Result<Tensor, BackendError> {
        if self.kind == BackendKind::OnnxRuntimeCpu {
            return Ok(t.clone());
        }
        let Some(bytes) = t.host_bytes() else {
            return Ok(t.clone());
        };
        #[cfg(feature = "cuda")]
        {
            let rt =
                |e: crate::cuda::CudaError| BackendError::Runtime(format!("uploading '{}': {e}", t.name));
            if self.upload_ctx.is_none() {
                self.upload_ctx = Some(crate::cuda::DeviceContext::primary(self.device_id).map_err(rt)?);
            }
            let ctx = self.upload_ctx.as_ref().expect("set above");
            let buf = crate::cuda::DeviceBuffer::new(ctx, bytes.len().max(1)).map_err(rt)?;
            buf.copy_from_host(bytes).map_err(rt)?;
            Ok(t.with_storage(TensorStorage::device(buf.ptr(), bytes.len(), buf)))
        }
        #[cfg(not(feature = "cuda"))]
        {
            // ONNX Runtime copies host inputs itself; without the cuda feature there is no
            // device allocator here, so the tensor stays where it is.
            let _ = bytes;
            Ok(t.clone())
        }
    }
}

#[cfg(test)]
mod tests;
