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
//! called. Outputs are host tensors, or device tensors with `outputs_on_device` (GPU
//! providers). `fixed_batch` and `cuda_graph` load the model with a fixed batch and replay
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

mod fixed_batch;
#[cfg(feature = "cuda")]
mod graphs;

/// Environment variable naming the ONNX Runtime shared library explicitly.
pub const ORT_DYLIB_ENV: &str = "ORT_DYLIB_PATH";

/// The process-wide ort environment, created on first use.
static ENVIRONMENT: OnceLock<Environment> = OnceLock::new();
static CAT: std::sync::LazyLock<gst::DebugCategory> = std::sync::LazyLock::new(|| {
    gst::DebugCategory::new(
        "trtvision-ort",
        gst::DebugColorFlags::empty(),
        Some("trtvision ONNX Runtime backend"),
    )
});
/// Serialises creation attempts so that a failed attempt can be retried later.
static ENV_INIT: Mutex<()> = Mutex::new(());

/// A model loaded in ONNX Runtime, ready to run batches.
pub struct OrtBackend {
    session: Session,
    kind: BackendKind,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    /// Largest accepted batch: the fixed batch dimension of the model, or the TensorRT
    /// profile maximum; `None` when unlimited.
    max_batch: Option<usize>,
    /// Host buffers for the outputs (and zero-padded inputs), recycled across batches.
    pool: HostTensorPool,
    model_path: String,
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

/// Site-packages style directories where a `onnxruntime` wheel may be installed.
fn python_site_dirs() -> Vec<PathBuf> {
    let mut patterns: Vec<PathBuf> = vec![PathBuf::from("/usr/local/lib"), PathBuf::from("/usr/lib")];
    if let Some(home) = std::env::var_os("HOME") {
        patterns.push(Path::new(&home).join(".local/lib"));
    }
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        patterns.push(Path::new(&venv).join("lib"));
    }
    let mut dirs = vec![PathBuf::from("/usr/lib/python3/dist-packages")];
    // `<lib>/python3*/site-packages` and `dist-packages`.
    let mut lib_dirs = patterns;
    // pyenv: `<root>/versions/*/lib`.
    let pyenv_roots: Vec<PathBuf> = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .into_iter()
        .chain(std::env::var_os("HOME").map(|h| Path::new(&h).join(".pyenv")))
        .chain(std::iter::once(PathBuf::from("/root/.pyenv")))
        .collect();
    for root in pyenv_roots {
        if let Ok(rd) = std::fs::read_dir(root.join("versions")) {
            let mut versions: Vec<PathBuf> = rd.flatten().map(|e| e.path().join("lib")).collect();
            versions.sort();
            versions.reverse();
            lib_dirs.extend(versions);
        }
    }
    for lib in lib_dirs {
        let Ok(rd) = std::fs::read_dir(&lib) else { continue };
        let mut pys: Vec<PathBuf> = rd
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
            .map(|e| e.path())
            .collect();
        pys.sort();
        pys.reverse();
        for py in pys {
            dirs.push(py.join("site-packages"));
            dirs.push(py.join("dist-packages"));
        }
    }
    dirs
}

/// Finds `onnxruntime/capi/libonnxruntime.so*` under one of `dirs`.
fn find_in_site_dirs(dirs: &[PathBuf]) -> Option<PathBuf> {
    for dir in dirs {
        let capi = dir.join("onnxruntime").join("capi");
        let Ok(rd) = std::fs::read_dir(&capi) else {
            continue;
        };
        let mut libs: Vec<PathBuf> = rd
            .flatten()
            .filter(|e| {
                let n = e.file_name();
                let n = n.to_string_lossy();
                n.starts_with("libonnxruntime.so") || n.starts_with("libonnxruntime.dylib")
            })
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        // Prefer the most specific (versioned) name.
        libs.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
        if let Some(lib) = libs.into_iter().next() {
            return Some(lib);
        }
    }
    None
}

/// Resolves the ONNX Runtime library from an explicit override (the value of
/// `ORT_DYLIB_PATH`) or the Python site-packages search.
fn resolve_library_with(explicit: Option<std::ffi::OsString>) -> Result<PathBuf, String> {
    if let Some(p) = explicit.filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        return Err(format!(
            "{ORT_DYLIB_ENV} is set to {}, which is not a file; point it at libonnxruntime.so \
             (for example the one in the onnxruntime Python wheel, onnxruntime/capi/) or unset it",
            p.display()
        ));
    }
    find_in_site_dirs(&python_site_dirs()).ok_or_else(|| {
        format!(
            "the ONNX Runtime library was not found; run `pip install onnxruntime` \
             (or onnxruntime-gpu for CUDA/TensorRT) or set {ORT_DYLIB_ENV} to the path of libonnxruntime.so"
        )
    })
}

/// Path of the ONNX Runtime shared library this process would load: `ORT_DYLIB_PATH` if
/// set, else the library of an installed `onnxruntime` Python wheel.
pub fn resolve_library_path() -> Result<PathBuf, BackendError> {
    resolve_library_with(std::env::var_os(ORT_DYLIB_ENV))
        .map_err(|reason| unavailable(BackendKind::OnnxRuntimeCpu, reason))
}

/// The process-wide ort environment, loading ONNX Runtime from `lib` on first use.
/// Later calls return the existing environment whatever `lib` is (a process can load
/// only one ONNX Runtime).
fn environment(lib: &Path, kind: BackendKind) -> Result<Environment, BackendError> {
    if let Some(env) = ENVIRONMENT.get() {
        return Ok(env.clone());
    }
    let _guard = ENV_INIT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(env) = ENVIRONMENT.get() {
        return Ok(env.clone());
    }
    let env = load_environment(lib, kind)?;
    let _ = ENVIRONMENT.set(env.clone());
    Ok(ENVIRONMENT.get().cloned().unwrap_or(env))
}

/// Loads ONNX Runtime from `lib` and creates an environment (no caching).
fn load_environment(lib: &Path, kind: BackendKind) -> Result<Environment, BackendError> {
    if !lib.is_file() {
        return Err(unavailable(
            kind,
            format!(
                "the ONNX Runtime library {} does not exist; run `pip install onnxruntime` or set {ORT_DYLIB_ENV}",
                lib.display()
            ),
        ));
    }
    guarded(
        || {
            let builder = ort::init_from(lib).map_err(|e| {
                unavailable(
                    kind,
                    format!(
                        "cannot load ONNX Runtime from {}: {e}; run `pip install onnxruntime` or set {ORT_DYLIB_ENV}",
                        lib.display()
                    ),
                )
            })?;
            builder
                .with_name("gst-trtvision")
                .with_telemetry(false)
                .build()
                .map_err(|e| unavailable(kind, format!("cannot create the ONNX Runtime environment: {e}")))
        },
        |msg| {
            unavailable(
                kind,
                format!("loading ONNX Runtime from {} failed: {msg}", lib.display()),
            )
        },
    )
}

/// Our dtype for an ONNX Runtime element type, converting the few types we widen or narrow
/// at output time (`bool` → u8 with true = 255, `f64`/`bf16` → f32, small ints → i32,
/// `u32`/`u64` → i64, saturating).
fn map_dtype(ty: TensorElementType) -> Option<DType> {
    Some(match ty {
        TensorElementType::Float32 | TensorElementType::Float64 | TensorElementType::Bfloat16 => DType::F32,
        TensorElementType::Float16 => DType::F16,
        TensorElementType::Uint8 | TensorElementType::Bool => DType::U8,
        TensorElementType::Int8
        | TensorElementType::Int16
        | TensorElementType::Uint16
        | TensorElementType::Int32 => DType::I32,
        TensorElementType::Int64 | TensorElementType::Uint32 | TensorElementType::Uint64 => DType::I64,
        _ => return None,
    })
}

fn spec_from_outlet(name: &str, ty: &ValueType, what: &str, path: &str) -> Result<TensorSpec, BackendError> {
    match ty {
        ValueType::Tensor { ty: elem, shape, .. } => {
            let dtype = map_dtype(*elem).ok_or_else(|| BackendError::ModelInvalid {
                path: path.to_string(),
                reason: format!(
                    "{what} '{name}' has element type {elem:?}, which this plugin does not support"
                ),
            })?;
            let shape = shape
                .iter()
                .map(|&d| if d < 0 { None } else { usize::try_from(d).ok() })
                .collect();
            Ok(TensorSpec {
                name: name.to_string(),
                dtype,
                shape,
            })
        }
        other => Err(BackendError::ModelInvalid {
            path: path.to_string(),
            reason: format!("{what} '{name}' is a {other}, not a tensor"),
        }),
    }
}

fn describe_shape(dtype: DType, shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("{} [{}]", dtype.name(), dims.join(", "))
}

/// Checked element count of a concrete shape.
fn checked_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// Reinterprets bytes as `T` without copying when aligned; `None` when misaligned.
fn typed_view<T: Copy>(bytes: &[u8]) -> Option<&[T]> {
    // SAFETY: only used with plain-old-data element types (f32, f16, u8, i32, i64) for
    // which every bit pattern is valid; `align_to` yields only the aligned middle part.
    let (pre, mid, post) = unsafe { bytes.align_to::<T>() };
    (pre.is_empty() && post.is_empty()).then_some(mid)
}

/// Decodes little/native-endian bytes to `Vec<T>` (the copying fallback).
fn copy_typed<T, const N: usize>(bytes: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
    bytes
        .chunks_exact(N)
        .map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            f(a)
        })
        .collect()
}

/// An input value borrowing host bytes when possible.
fn host_value<'a>(dtype: DType, shape: &[usize], bytes: &'a [u8]) -> ort::Result<SessionInputValue<'a>> {
    let shape: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    macro_rules! view_or_copy {
        ($t:ty, $n:literal, $conv:expr) => {
            match typed_view::<$t>(bytes) {
                Some(v) => SessionInputValue::from(TensorRef::from_array_view((shape, v))?),
                None => SessionInputValue::from(ort::value::Tensor::from_array((
                    shape,
                    copy_typed::<$t, $n>(bytes, $conv),
                ))?),
            }
        };
    }
    Ok(match dtype {
        DType::F32 => view_or_copy!(f32, 4, f32::from_ne_bytes),
        DType::F16 => view_or_copy!(half::f16, 2, half::f16::from_ne_bytes),
        DType::I32 => view_or_copy!(i32, 4, i32::from_ne_bytes),
        DType::I64 => view_or_copy!(i64, 8, i64::from_ne_bytes),
        DType::U8 => SessionInputValue::from(TensorRef::from_array_view((shape, bytes))?),
    })
}

/// An input value over raw CUDA device memory.
///
/// # Safety
/// `ptr` must point to at least `shape * dtype.size()` bytes of device memory on
/// `device_id` that stays alive (and unmodified) while the value is used.
unsafe fn device_value<'a>(
    dtype: DType,
    shape: &[usize],
    ptr: u64,
    device_id: i32,
) -> ort::Result<SessionInputValue<'a>> {
    let info = cuda_memory_info(device_id)?;
    let shape = Shape::new(shape.iter().map(|&d| d as i64));
    let data = ptr as usize as *mut ort::sys::c_void;
    // SAFETY: forwarded to the caller.
    Ok(unsafe {
        match dtype {
            DType::F32 => SessionInputValue::from(TensorRefMut::<f32>::from_raw(info, data, shape)?),
            DType::F16 => SessionInputValue::from(TensorRefMut::<half::f16>::from_raw(info, data, shape)?),
            DType::U8 => SessionInputValue::from(TensorRefMut::<u8>::from_raw(info, data, shape)?),
            DType::I32 => SessionInputValue::from(TensorRefMut::<i32>::from_raw(info, data, shape)?),
            DType::I64 => SessionInputValue::from(TensorRefMut::<i64>::from_raw(info, data, shape)?),
        }
    })
}

/// Memory info of CUDA device memory on `device_id`.
fn cuda_memory_info(device_id: i32) -> ort::Result<MemoryInfo<'static>> {
    MemoryInfo::new(
        AllocationDevice::CUDA,
        device_id,
        AllocatorType::Device,
        MemoryType::Default,
    )
}

/// Whether a raw ORT API call succeeded; a failure status is released.
fn api_ok(status: ort::sys::OrtStatusPtr) -> Result<(), ()> {
    if status.0.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null status returned by the API is ours to release.
    unsafe { (ort::api().ReleaseStatus)(status.0) };
    Err(())
}

/// ORT element type, our element type, shape, element count and byte length of one ORT
/// output tensor.
fn output_layout(
    name: &str,
    value: &DynValue,
) -> Result<(TensorElementType, DType, Vec<usize>, usize, usize), BackendError> {
    let (elem, dims) = match value.dtype() {
        ValueType::Tensor { ty, shape, .. } => (*ty, shape.clone()),
        other => {
            return Err(BackendError::Runtime(format!(
                "output '{name}' is a {other}, not a tensor"
            )))
        }
    };
    let shape: Vec<usize> = dims
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<_, _>>()
        .map_err(|_| BackendError::Runtime(format!("output '{name}' has a negative dimension: {dims}")))?;
    let dtype = map_dtype(elem).ok_or_else(|| {
        BackendError::Runtime(format!("output '{name}' has unsupported element type {elem:?}"))
    })?;
    let count = checked_count(&shape)
        .ok_or_else(|| BackendError::Runtime(format!("output '{name}' shape {dims} overflows")))?;
    let nbytes = count
        .checked_mul(dtype.size())
        .ok_or_else(|| BackendError::Runtime(format!("output '{name}' shape {dims} overflows")))?;
    Ok((elem, dtype, shape, count, nbytes))
}

/// Wraps one ORT output that lives in device memory as a device tensor; the ORT value
/// (memory of ONNX Runtime's CUDA arena) lives as long as the tensor.
fn output_on_device(name: &str, value: DynValue) -> Result<Tensor, BackendError> {
    let (_, dtype, shape, _, len) = output_layout(name, &value)?;
    let mut ptr: *mut std::ffi::c_void = std::ptr::null_mut();
    // SAFETY: `value` is a live tensor value; the call writes its data pointer.
    let status =
        unsafe { (ort::api().GetTensorMutableData)(ort::AsPointer::ptr(&value).cast_mut(), &mut ptr) };
    api_ok(status)
        .map_err(|()| BackendError::Runtime(format!("cannot read the address of output '{name}'")))?;
    if ptr.is_null() && len > 0 {
        return Err(BackendError::Runtime(format!("output '{name}' has no data")));
    }
    Ok(Tensor {
        name: name.to_string(),
        dtype,
        shape,
        storage: TensorStorage::Device {
            ptr: ptr as usize as u64,
            len,
            keepalive: std::sync::Arc::new(value),
        },
    })
}

/// The CUDA execution provider as `opts` ask for it.
fn cuda_provider(opts: &BackendOptions) -> ep::CUDA {
    let cuda = ep::CUDA::default().with_device_id(opts.device_id);
    if opts.exact_arena {
        cuda.with_arena_extend_strategy(ep::ArenaExtendStrategy::SameAsRequested)
    } else {
        cuda
    }
}

/// Copies one ORT output into a pooled host tensor; `rows`: only the first rows (of a
/// padded run).
fn output_to_host(
    pool: &HostTensorPool,
    name: &str,
    value: &DynValue,
    rows: Option<usize>,
) -> Result<Tensor, BackendError> {
    let (elem, dtype, shape, count, nbytes) = output_layout(name, value)?;
    // A padded run: the first `rows` rows only (the copy below stops at the end of `out`).
    let (shape, nbytes) = match rows.filter(|&r| shape.first().is_some_and(|&b| r < b)) {
        Some(r) => (
            fixed_batch::with_rows(&shape, r),
            fixed_batch::row_bytes(&shape, r, dtype.size()).unwrap_or(nbytes),
        ),
        None => (shape, nbytes),
    };
    let dims = crate::parsers::fmt_shape(&shape);
    let rt = |e: ort::Error| BackendError::Runtime(format!("reading output '{name}': {e}"));
    let mut bytes = pool.acquire(nbytes);
    let out = bytes.as_mut_slice();
    macro_rules! copy_as {
        ($src:ty, $conv:expr) => {{
            let (_, data) = value.try_extract_tensor::<$src>().map_err(rt)?;
            if data.len() != count {
                return Err(BackendError::Runtime(format!(
                    "output '{name}' holds {} values for shape {dims}",
                    data.len()
                )));
            }
            let size = dtype.size();
            for (dst, v) in out.chunks_exact_mut(size).zip(data.iter()) {
                let conv = $conv;
                dst.copy_from_slice(&conv(*v));
            }
        }};
    }
    match elem {
        TensorElementType::Float32 => copy_as!(f32, |v: f32| v.to_ne_bytes()),
        TensorElementType::Float64 => copy_as!(f64, |v: f64| (v as f32).to_ne_bytes()),
        TensorElementType::Bfloat16 => copy_as!(half::bf16, |v: half::bf16| v.to_f32().to_ne_bytes()),
        TensorElementType::Float16 => copy_as!(half::f16, |v: half::f16| v.to_ne_bytes()),
        TensorElementType::Uint8 => copy_as!(u8, |v: u8| [v]),
        TensorElementType::Bool => copy_as!(bool, |v: bool| [u8::from(v) * 255]),
        TensorElementType::Int8 => copy_as!(i8, |v: i8| i32::from(v).to_ne_bytes()),
        TensorElementType::Int16 => copy_as!(i16, |v: i16| i32::from(v).to_ne_bytes()),
        TensorElementType::Uint16 => copy_as!(u16, |v: u16| i32::from(v).to_ne_bytes()),
        TensorElementType::Int32 => copy_as!(i32, |v: i32| v.to_ne_bytes()),
        TensorElementType::Int64 => copy_as!(i64, |v: i64| v.to_ne_bytes()),
        TensorElementType::Uint32 => copy_as!(u32, |v: u32| i64::from(v).to_ne_bytes()),
        TensorElementType::Uint64 => copy_as!(u64, |v: u64| (v.min(i64::MAX as u64) as i64).to_ne_bytes()),
        _ => {
            return Err(BackendError::Runtime(format!(
                "output '{name}' has unsupported element type {elem:?}"
            )))
        }
    }
    Ok(Tensor::host(name, dtype, shape, bytes))
}

/// TensorRT profile shape string `name:d0xd1x...,name2:...` with `batch` in dim 0, or
/// `None` when an input has a dynamic dimension other than the batch dimension.
fn trt_profile(inputs: &[TensorSpec], batch: usize) -> Option<String> {
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

fn ort_err<R>(e: ort::Error<R>) -> String {
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

    fn base_builder(env: &Environment, opts: &BackendOptions) -> Result<SessionBuilder, BackendError> {
        let kind = opts.kind;
        let mut b = Session::builder(env).map_err(|e| unavailable(kind, ort_err(e)))?;
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

    fn commit(mut b: SessionBuilder, opts: &BackendOptions) -> Result<Session, BackendError> {
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

    fn specs(session: &Session, path: &str) -> Result<(Vec<TensorSpec>, Vec<TensorSpec>), BackendError> {
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
    fn probe(env: &Environment, opts: &BackendOptions) -> Result<Session, BackendError> {
        let probe = Self::base_builder(env, opts)?
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
    fn declared_inputs(session: &Session) -> Vec<fixed_batch::DeclaredInput> {
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
    fn with_provider(
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
    fn fixed_plan(
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

    fn open_in(env: &Environment, opts: &BackendOptions) -> Result<Self, BackendError> {
        let kind = opts.kind;
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
            let mut builder = Self::base_builder(env, opts)?;
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
                Ok(backend) => return Ok(backend),
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
        Self::assemble(opts, session, trt_max, plan, warning)
    }

    /// The backend around a committed `session`.
    fn assemble(
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
        Ok(Self {
            session,
            kind,
            inputs,
            outputs,
            max_batch,
            pool: HostTensorPool::new(),
            model_path: path,
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
    fn open_with_graphs(
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
        let started = worker
            .call(|| backend.start_graphs(&ctx, stream.clone()))
            .unwrap_or_else(|| Err("the inference thread failed while capturing".into()));
        if let Err(e) = started {
            drop(backend);
            drop(stream);
            return Err(e);
        }
        backend.worker = Some(worker);
        Ok(backend)
    }

    fn require_provider<E: ExecutionProvider>(kind: BackendKind, what: &str) -> Result<(), BackendError> {
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

    /// The given tensors in the order of the model's inputs, checked against the specs,
    /// with their byte lengths, and the batch (rows of the inputs whose first dimension is
    /// dynamic; 1 when none is).
    fn check_inputs<'t>(&self, inputs: &[InputRef<'t>]) -> Result<CheckedInputs<'t>, BackendError> {
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

    fn run(&mut self, inputs: &[InputRef<'_>]) -> Result<Vec<Tensor>, BackendError> {
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
            result.push(output_to_host(&self.pool, &spec.name, value, kept[i])?);
        }
        Ok(result)
    }

    /// Rows of output `i` to keep after a padded run (`keep`), when its first dimension is
    /// the batch.
    fn rows_kept(&self, i: usize, keep: Option<usize>) -> Option<usize> {
        let f = self.fixed.as_ref()?;
        keep.filter(|_| f.batch_outputs.get(i).copied().unwrap_or(false))
    }

    /// Address of device input `i` padded to `full` bytes: the tensor's own when the buffer
    /// behind it has room, else a staging copy (the rest zero).
    fn padded_device_input(
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
    fn start_graphs(
        &mut self,
        ctx: &crate::cuda::DeviceContext,
        stream: std::sync::Arc<crate::cuda::Stream>,
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
        let mut graphs = graphs::GraphRuns::new(ctx, stream, inputs)?;
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
        let fixed = self.fixed.as_mut().ok_or("no fixed batch")?;
        fixed.graphs = Some(graphs);
        gst::info!(
            CAT,
            "{}: batch fixed at {batch}, {} CUDA graphs captured",
            self.model_path,
            graphs::GRAPH_SETS
        );
        Ok(())
    }

    /// Binds the staging inputs of `graphs` (at the fixed batch) and the buffers of `set`
    /// (all outputs; `None`: ONNX Runtime allocates them) to `binding`. The returned values
    /// must stay alive as long as the binding holds them.
    #[cfg(feature = "cuda")]
    fn bind_graph_io(
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
    fn run_graph(
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
    fn run_graph_with(
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
        let lease = graphs.acquire_set().map_err(|e| rt(e.to_string()))?;
        // A kept set runs on its own binding, bound once at start; a set made for this run
        // (all kept ones in use) on a binding made for it too.
        let transient = match lease.index {
            Some(_) => None,
            None => {
                let mut b = self.session.create_binding().map_err(|e| rt(e.to_string()))?;
                let bound = self.bind_graph_io(&mut b, graphs, Some(&lease.set))?;
                Some((b, bound))
            }
        };
        let binding = match (&transient, lease.index) {
            (Some((b, _)), _) => b,
            (None, Some(k)) => graphs.binding(k),
            (None, None) => unreachable!("a set of its own has a binding made above"),
        };
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
            gst::warning!(CAT, "CUDA graph {} failed ({why}): graphs off", lease.graph);
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
        // The binding goes before the values it holds.
        if let Some((b, bound)) = transient {
            drop(b);
            drop(bound);
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
                    ptr: lease.set.ptr(i),
                    len: l.bytes,
                    keepalive: lease.set.clone(),
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

/// `spec`'s shape with the dynamic (batch) dimension at `batch`.
#[cfg(feature = "cuda")]
fn full_shape(spec: &TensorSpec, batch: usize) -> Vec<usize> {
    spec.shape.iter().map(|d| d.unwrap_or(batch)).collect()
}

/// The ONNX Runtime element type our `dtype` stands for without conversion.
#[cfg(feature = "cuda")]
fn native_elem(dtype: DType) -> TensorElementType {
    match dtype {
        DType::F32 => TensorElementType::Float32,
        DType::F16 => TensorElementType::Float16,
        DType::U8 => TensorElementType::Uint8,
        DType::I32 => TensorElementType::Int32,
        DType::I64 => TensorElementType::Int64,
    }
}

/// Binds `value` as input (`input` true) or output `name` through the C API:
/// `IoBinding::bind_input` copies values that borrow their memory (ours do: the
/// preprocessed tensor, the output sets), which is the copy binding exists to avoid.
fn bind_raw(
    binding: &mut ort::session::IoBinding,
    name: &str,
    value: &SessionInputValue<'_>,
    input: bool,
) -> Result<(), BackendError> {
    let cname = std::ffi::CString::new(name.as_bytes())
        .map_err(|_| BackendError::Runtime(format!("tensor name '{name}' holds a NUL byte")))?;
    let api = ort::api();
    let f = if input { api.BindInput } else { api.BindOutput };
    // SAFETY: live binding and value pointers, NUL-terminated name; the caller keeps the
    // value alive until the binding is cleared.
    let status = unsafe {
        f(
            ort::AsPointer::ptr_mut(binding),
            cname.as_ptr(),
            ort::AsPointer::ptr(&**value),
        )
    };
    api_ok(status).map_err(|()| {
        BackendError::Runtime(format!(
            "cannot bind {} '{name}'",
            if input { "input" } else { "output" }
        ))
    })
}

/// Binds every output in `outputs` to CUDA memory of `device_id` that ONNX Runtime
/// allocates at each run.
fn bind_outputs_to_device(
    binding: &mut ort::session::IoBinding,
    outputs: &[TensorSpec],
    device_id: i32,
) -> Result<(), BackendError> {
    binding.clear_outputs();
    let info = cuda_memory_info(device_id)
        .map_err(|e| BackendError::Runtime(format!("no CUDA memory info: {e}")))?;
    for o in outputs {
        binding
            .bind_output_to_device(o.name.as_str(), &info)
            .map_err(|e| {
                BackendError::Runtime(format!("cannot bind output '{}' to CUDA memory: {e}", o.name))
            })?;
    }
    Ok(())
}

/// Replaces the bound inputs of `binding` with `values`.
fn bind_inputs(
    binding: &mut ort::session::IoBinding,
    values: &[(Cow<'_, str>, SessionInputValue<'_>)],
) -> Result<(), BackendError> {
    binding.clear_inputs();
    for (name, value) in values {
        bind_raw(binding, name, value, true)?;
    }
    Ok(())
}

/// A device tensor cut to its first `rows` rows (same address).
fn keep_device_rows(t: Tensor, rows: usize) -> Tensor {
    let Tensor {
        name,
        dtype,
        shape,
        storage,
    } = t;
    let len = fixed_batch::row_bytes(&shape, rows, dtype.size());
    let storage = match (storage, len) {
        (TensorStorage::Device { ptr, keepalive, .. }, Some(len)) => {
            TensorStorage::Device { ptr, len, keepalive }
        }
        (other, _) => other,
    };
    Tensor {
        name,
        dtype,
        shape: fixed_batch::with_rows(&shape, rows),
        storage,
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
mod tests {
    use super::*;
    use crate::tensor::PooledBytes;
    use std::sync::Arc;

    /// `y = x + [1, 2, 3]` (f32 [batch, 3]) and `s = Shape(x)` (i64 [2]), opset 13.
    /// Generated once with the `onnx` Python package.
    const ADD_MODEL: &[u8] = &[
        8, 8, 18, 0, 58, 126, 10, 14, 10, 1, 120, 10, 1, 99, 18, 1, 121, 34, 3, 65, 100, 100, 10, 13, 10, 1,
        120, 18, 1, 115, 34, 5, 83, 104, 97, 112, 101, 18, 1, 116, 42, 21, 8, 3, 16, 1, 34, 12, 0, 0, 128,
        63, 0, 0, 0, 64, 0, 0, 64, 64, 66, 1, 99, 90, 24, 10, 1, 120, 18, 19, 10, 17, 8, 1, 18, 13, 10, 7,
        18, 5, 98, 97, 116, 99, 104, 10, 2, 8, 3, 98, 24, 10, 1, 121, 18, 19, 10, 17, 8, 1, 18, 13, 10, 7,
        18, 5, 98, 97, 116, 99, 104, 10, 2, 8, 3, 98, 15, 10, 1, 115, 18, 10, 10, 8, 8, 7, 18, 4, 10, 2, 8,
        2, 66, 4, 10, 0, 16, 13,
    ];

    /// `h2 = h + h` (f16 [n, 2]), opset 13.
    const ADD16_MODEL: &[u8] = &[
        8, 8, 18, 0, 58, 65, 10, 15, 10, 1, 104, 10, 1, 104, 18, 2, 104, 50, 34, 3, 65, 100, 100, 18, 1, 116,
        90, 20, 10, 1, 104, 18, 15, 10, 13, 8, 10, 18, 9, 10, 3, 18, 1, 110, 10, 2, 8, 2, 98, 21, 10, 2, 104,
        50, 18, 15, 10, 13, 8, 10, 18, 9, 10, 3, 18, 1, 110, 10, 2, 8, 2, 66, 4, 10, 0, 16, 13,
    ];

    /// A unique scratch file holding `bytes`.
    fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("trtvision-ort-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn cpu_opts(path: PathBuf) -> BackendOptions {
        BackendOptions {
            kind: BackendKind::OnnxRuntimeCpu,
            model_path: path,
            max_batch: 8,
            threads: 1,
            ..Default::default()
        }
    }

    /// Whether ONNX Runtime can be found here; tests that need it skip otherwise.
    fn have_ort() -> bool {
        crate::skip::have_ort()
    }

    /// The add model on the CPU provider with its batch fixed at 4.
    fn fixed_add_model(file: &str) -> OrtBackend {
        OrtBackend::open(&BackendOptions {
            max_batch: 4,
            fixed_batch: true,
            ..cpu_opts(temp_file(file, ADD_MODEL))
        })
        .unwrap()
    }

    /// One inference of the single-input test models (input `x`).
    fn infer_x(b: &mut OrtBackend, x: &Tensor) -> Result<Vec<Tensor>, BackendError> {
        b.infer(&[InputRef { name: "x", tensor: x }])
    }

    /// The values of a host i64 tensor.
    fn i64_values(t: &Tensor) -> Vec<i64> {
        t.host_bytes()
            .unwrap()
            .chunks_exact(8)
            .map(|c| i64::from_ne_bytes(c.try_into().unwrap()))
            .collect()
    }

    #[test]
    fn missing_file_is_unreadable() {
        let err = OrtBackend::open(&cpu_opts("/nonexistent/dir/model.onnx".into())).unwrap_err();
        assert!(matches!(err, BackendError::ModelUnreadable { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/dir/model.onnx"));
    }

    #[test]
    fn directory_is_unreadable() {
        let err = OrtBackend::open(&cpu_opts(std::env::temp_dir())).unwrap_err();
        assert!(matches!(err, BackendError::ModelUnreadable { .. }), "{err}");
    }

    #[test]
    fn garbage_is_invalid() {
        if !have_ort() {
            return;
        }
        let p = temp_file(
            "garbage.onnx",
            b"this is not a protobuf \x00\x01\x02\xff\xfe garbage",
        );
        let err = OrtBackend::open(&cpu_opts(p)).unwrap_err();
        assert!(matches!(err, BackendError::ModelInvalid { .. }), "{err}");
        eprintln!("{err}");
    }

    #[test]
    fn cuda_on_cpu_only_wheel_is_unavailable() {
        if !have_ort() {
            return;
        }
        let p = temp_file("add_cuda.onnx", ADD_MODEL);
        let mut opts = cpu_opts(p);
        opts.kind = BackendKind::OnnxRuntimeCuda;
        match OrtBackend::open(&opts) {
            Err(err @ BackendError::Unavailable { .. }) => {
                eprintln!("{err}");
                assert!(err.to_string().contains("onnxruntime-cuda"));
            }
            Err(other) => panic!("expected Unavailable, got {other}"),
            // A GPU build of ONNX Runtime on a machine with CUDA: also fine.
            Ok(b) => assert_eq!(b.name(), "onnxruntime-cuda"),
        }
        let mut opts = opts.clone();
        opts.kind = BackendKind::OnnxRuntimeTensorRt;
        opts.engine_cache_dir = Some(std::env::temp_dir().join("trtvision-ort-cache"));
        if let Err(err) = OrtBackend::open(&opts) {
            assert!(matches!(err, BackendError::Unavailable { .. }), "{err}");
        }
    }

    #[test]
    fn bad_dylib_override_is_unavailable() {
        let err = resolve_library_with(Some("/nonexistent/libonnxruntime.so".into())).unwrap_err();
        assert!(
            err.contains(ORT_DYLIB_ENV) && err.contains("/nonexistent/libonnxruntime.so"),
            "{err}"
        );
        let err = load_environment(
            Path::new("/nonexistent/libonnxruntime.so"),
            BackendKind::OnnxRuntimeCpu,
        )
        .unwrap_err();
        assert!(matches!(err, BackendError::Unavailable { .. }), "{err}");
        assert!(err.to_string().contains("pip install onnxruntime"), "{err}");
    }

    /// Runs `test` (an ignored test of this module) in a fresh process with `ORT_DYLIB_PATH`
    /// set to `dylib`, so that ONNX Runtime is not yet loaded there.
    fn run_child(test: &str, dylib: &Path) {
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(exe)
            .args([
                "--exact",
                &format!("backend::onnxruntime::tests::{test}"),
                "--ignored",
                "--nocapture",
            ])
            .env(ORT_DYLIB_ENV, dylib)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "child failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("1 passed"), "child test did not run: {stdout}");
    }

    #[test]
    fn open_with_missing_dylib_env_is_unavailable() {
        run_child(
            "child_open_unavailable",
            Path::new("/nonexistent/libonnxruntime.so.1"),
        );
    }

    #[test]
    fn open_with_garbage_dylib_env_is_unavailable() {
        let lib = temp_file("libonnxruntime.so.garbage", b"not an ELF file");
        run_child("child_open_unavailable", &lib);
    }

    #[test]
    #[ignore = "run by open_with_*_dylib_env_is_unavailable in a child process"]
    fn child_open_unavailable() {
        let p = temp_file("add_child.onnx", ADD_MODEL);
        let err = OrtBackend::open(&cpu_opts(p)).unwrap_err();
        eprintln!("{err}");
        assert!(matches!(err, BackendError::Unavailable { .. }), "{err}");
        assert!(err.to_string().contains(ORT_DYLIB_ENV), "{err}");
    }

    fn f32_tensor(name: &str, shape: Vec<usize>, v: &[f32]) -> Tensor {
        Tensor::from_f32(name, shape, v)
    }

    #[test]
    fn add_model_runs_with_dynamic_batch() {
        if !have_ort() {
            return;
        }
        let p = temp_file("add.onnx", ADD_MODEL);
        let mut b = OrtBackend::open(&cpu_opts(p)).unwrap();
        assert_eq!(b.name(), "onnxruntime-cpu");
        assert_eq!(
            b.inputs(),
            &[TensorSpec {
                name: "x".into(),
                dtype: DType::F32,
                shape: vec![None, Some(3)]
            }]
        );
        assert_eq!(b.outputs().len(), 2);
        assert_eq!(b.outputs()[0].describe(), "y f32 [dyn, 3]");
        assert_eq!(b.outputs()[1].describe(), "s i64 [2]");
        assert_eq!(b.max_batch(), None);
        for batch in [1usize, 4] {
            let vals: Vec<f32> = (0..batch * 3).map(|i| i as f32).collect();
            let x = f32_tensor("x", vec![batch, 3], &vals);
            let out = infer_x(&mut b, &x).unwrap();
            assert_eq!(out.len(), 2);
            assert_eq!(out[0].name, "y");
            assert_eq!(out[0].shape, vec![batch, 3]);
            let y = out[0].to_f32().unwrap();
            for (i, v) in y.iter().enumerate() {
                assert_eq!(*v, i as f32 + [1.0, 2.0, 3.0][i % 3]);
            }
            assert_eq!(out[1].dtype, DType::I64);
            let s = i64_values(&out[1]);
            assert_eq!(s, vec![batch as i64, 3]);
        }
    }

    #[test]
    fn fixed_batch_pads_smaller_batches_and_cuts_the_outputs() {
        if !have_ort() {
            return;
        }
        let mut b = fixed_add_model("add-fixed.onnx");
        assert_eq!(b.take_warning(), None);
        // Callers still see the model's dynamic batch, limited to the fixed one.
        assert_eq!(b.inputs()[0].describe(), "x f32 [dyn, 3]");
        assert_eq!(b.outputs()[0].describe(), "y f32 [dyn, 3]");
        assert_eq!(b.max_batch(), Some(4));
        for batch in [1usize, 3, 4] {
            let vals: Vec<f32> = (0..batch * 3).map(|i| i as f32 * 0.5).collect();
            let x = f32_tensor("x", vec![batch, 3], &vals);
            let out = infer_x(&mut b, &x).unwrap();
            assert_eq!(out[0].shape, vec![batch, 3]);
            let y = out[0].to_f32().unwrap();
            assert_eq!(y.len(), batch * 3);
            for (i, v) in y.iter().enumerate() {
                assert_eq!(*v, i as f32 * 0.5 + [1.0, 2.0, 3.0][i % 3]);
            }
            // An output without the batch dimension describes the run as it happened: the
            // session saw the fixed batch.
            let s = i64_values(&out[1]);
            assert_eq!(s, vec![4, 3]);
        }
        let x = f32_tensor("x", vec![5, 3], &[0.0; 15]);
        let err = infer_x(&mut b, &x).unwrap_err();
        assert!(
            matches!(err, BackendError::BatchTooLarge { got: 5, max: 4 }),
            "{err}"
        );
        // The same results as the dynamic session.
        let mut dynamic = OrtBackend::open(&cpu_opts(temp_file("add-dyn.onnx", ADD_MODEL))).unwrap();
        let x = f32_tensor("x", vec![2, 3], &[1.5, -2.0, 0.25, 7.0, 8.0, -9.5]);
        let a = infer_x(&mut b, &x).unwrap();
        let d = infer_x(&mut dynamic, &x).unwrap();
        assert_eq!(a[0].to_f32().unwrap(), d[0].to_f32().unwrap());
    }

    #[test]
    fn mostly_padded_batches_warn_once() {
        if !have_ort() {
            return;
        }
        let mut b = fixed_add_model("add-padded.onnx");
        let x = f32_tensor("x", vec![1, 3], &[0.0; 3]);
        for _ in 0..fixed_batch::FILL_WINDOW {
            infer_x(&mut b, &x).unwrap();
        }
        let w = b.take_warning().expect("a warning");
        assert!(
            w.contains("1.0 rows on average but its batch is fixed at 4"),
            "{w}"
        );
        for _ in 0..2 * fixed_batch::FILL_WINDOW {
            infer_x(&mut b, &x).unwrap();
        }
        assert_eq!(b.take_warning(), None);
    }

    #[test]
    fn cuda_graph_on_the_cpu_provider_warns_and_runs() {
        if !have_ort() {
            return;
        }
        // cuda_graph is a GPU option: the CPU provider runs as usual and says so once.
        let p = temp_file("add-graph.onnx", ADD_MODEL);
        let mut b = OrtBackend::open(&BackendOptions {
            cuda_graph: true,
            ..cpu_opts(p)
        })
        .unwrap();
        assert_eq!(b.max_batch(), None);
        let w = b.take_warning().expect("a warning");
        assert!(w.contains("onnxruntime-cpu runs without"), "{w}");
        assert_eq!(b.take_warning(), None);
        let x = f32_tensor("x", vec![2, 3], &[0.0; 6]);
        assert_eq!(infer_x(&mut b, &x).unwrap()[0].shape, vec![2, 3]);
    }

    #[test]
    fn misaligned_input_is_copied() {
        if !have_ort() {
            return;
        }
        let p = temp_file("add_misaligned.onnx", ADD_MODEL);
        let mut b = OrtBackend::open(&cpu_opts(p)).unwrap();
        // Bytes starting at an odd address cannot be borrowed as f32: the copy path runs.
        let mut raw = [0u8; 16];
        let off = if (raw.as_ptr() as usize + 1).is_multiple_of(4) {
            2
        } else {
            1
        };
        for (i, v) in [5.0f32, 6.0, 7.0].iter().enumerate() {
            raw[off + i * 4..off + 4 + i * 4].copy_from_slice(&v.to_ne_bytes());
        }
        let misaligned = &raw[off..off + 12];
        assert_ne!(misaligned.as_ptr() as usize % 4, 0);
        let v = host_value(DType::F32, &[1, 3], misaligned).unwrap();
        assert!(matches!(v, SessionInputValue::Owned(_)));
        let outputs = b.session.run(vec![(Cow::Borrowed("x"), v)]).unwrap();
        let y = output_to_host(&b.pool, "y", outputs.get("y").unwrap(), None).unwrap();
        assert_eq!(y.to_f32().unwrap(), vec![6.0, 8.0, 10.0]);
        drop(outputs);
        // Aligned bytes are borrowed, not copied.
        let aligned = misaligned.to_vec();
        let v = host_value(DType::F32, &[1, 3], &aligned).unwrap();
        assert!(matches!(v, SessionInputValue::View(_)));
    }

    #[test]
    fn f16_model_runs() {
        if !have_ort() {
            return;
        }
        let p = temp_file("add16.onnx", ADD16_MODEL);
        let mut b = OrtBackend::open(&cpu_opts(p)).unwrap();
        assert_eq!(b.inputs()[0].describe(), "h f16 [dyn, 2]");
        let vals = [0.5f32, -1.25, 3.0, 100.0];
        let mut bytes = Vec::new();
        for v in vals {
            bytes.extend_from_slice(&half::f16::from_f32(v).to_ne_bytes());
        }
        let h = Tensor::host("h", DType::F16, vec![2, 2], PooledBytes::detached(bytes));
        let out = b
            .infer(&[InputRef {
                name: "h",
                tensor: &h,
            }])
            .unwrap();
        assert_eq!(out[0].dtype, DType::F16);
        assert_eq!(out[0].shape, vec![2, 2]);
        assert_eq!(out[0].to_f32().unwrap(), vec![1.0, -2.5, 6.0, 200.0]);
    }

    #[test]
    fn shape_and_dtype_mismatch() {
        if !have_ort() {
            return;
        }
        let p = temp_file("add_mismatch.onnx", ADD_MODEL);
        let mut b = OrtBackend::open(&cpu_opts(p)).unwrap();
        let x = f32_tensor("x", vec![2, 4], &[0.0; 8]);
        let err = b
            .infer(&[InputRef {
                name: "x",
                tensor: &x,
            }])
            .unwrap_err();
        assert!(matches!(err, BackendError::ShapeMismatch(_)), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("f32 [2, 4]") && msg.contains("x f32 [dyn, 3]"),
            "{msg}"
        );

        let x16 = Tensor::host("x", DType::F16, vec![1, 3], PooledBytes::detached(vec![0; 6]));
        let err = b
            .infer(&[InputRef {
                name: "x",
                tensor: &x16,
            }])
            .unwrap_err();
        assert!(matches!(err, BackendError::ShapeMismatch(_)), "{err}");

        let x = f32_tensor("x", vec![1, 3], &[0.0; 3]);
        let err = b
            .infer(&[InputRef {
                name: "other",
                tensor: &x,
            }])
            .unwrap_err();
        assert!(err.to_string().contains("'x'"), "{err}");
        let err = b.infer(&[]).unwrap_err();
        assert!(matches!(err, BackendError::ShapeMismatch(_)), "{err}");

        // Byte length inconsistent with the shape (hand-built tensor).
        let bad = Tensor {
            name: "x".into(),
            dtype: DType::F32,
            shape: vec![2, 3],
            storage: TensorStorage::Host(Arc::new(PooledBytes::detached(vec![0; 12]))),
        };
        let err = b
            .infer(&[InputRef {
                name: "x",
                tensor: &bad,
            }])
            .unwrap_err();
        assert!(matches!(err, BackendError::ShapeMismatch(_)), "{err}");

        // Device input on the CPU backend.
        let dev = Tensor {
            name: "x".into(),
            dtype: DType::F32,
            shape: vec![1, 3],
            storage: TensorStorage::Device {
                ptr: 0x1000,
                len: 12,
                keepalive: Arc::new(()),
            },
        };
        let err = b
            .infer(&[InputRef {
                name: "x",
                tensor: &dev,
            }])
            .unwrap_err();
        assert!(matches!(err, BackendError::Runtime(_)), "{err}");
        // Still usable afterwards.
        let x = f32_tensor("x", vec![1, 3], &[0.0; 3]);
        assert!(b
            .infer(&[InputRef {
                name: "x",
                tensor: &x
            }])
            .is_ok());
    }

    #[test]
    fn trt_profile_strings() {
        let specs = vec![
            TensorSpec {
                name: "images".into(),
                dtype: DType::F32,
                shape: vec![None, Some(3), Some(640), Some(640)],
            },
            TensorSpec {
                name: "aux".into(),
                dtype: DType::F32,
                shape: vec![None, Some(2)],
            },
        ];
        assert_eq!(trt_profile(&specs, 1).unwrap(), "images:1x3x640x640,aux:1x2");
        assert_eq!(trt_profile(&specs, 16).unwrap(), "images:16x3x640x640,aux:16x2");
        let dynamic = vec![TensorSpec {
            name: "i".into(),
            dtype: DType::F32,
            shape: vec![None, None],
        }];
        assert!(trt_profile(&dynamic, 4).is_none());
    }

    #[test]
    fn site_dir_search() {
        let root = std::env::temp_dir().join(format!("trtvision-site-{}", std::process::id()));
        let capi = root.join("onnxruntime/capi");
        std::fs::create_dir_all(&capi).unwrap();
        assert!(find_in_site_dirs(std::slice::from_ref(&root)).is_none());
        std::fs::write(capi.join("libonnxruntime.so.1.31.1"), b"x").unwrap();
        assert_eq!(
            find_in_site_dirs(&[PathBuf::from("/nonexistent"), root.clone()]).unwrap(),
            capi.join("libonnxruntime.so.1.31.1")
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    /// Models written by `engines/generate_models.py` (skipped when absent).
    #[test]
    fn generated_models_open_and_run() {
        if !have_ort() {
            return;
        }
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("engines/models");
        let Ok(rd) = std::fs::read_dir(&dir) else {
            crate::skip::skip(crate::skip::REQUIRE_ORT, &format!("no {}", dir.display()));
            return;
        };
        let mut models: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
            .collect();
        models.sort();
        if models.is_empty() {
            crate::skip::skip(
                crate::skip::REQUIRE_ORT,
                &format!("no .onnx in {} (run engines/generate_models.py)", dir.display()),
            );
        }
        for m in models {
            let mut b =
                OrtBackend::open(&cpu_opts(m.clone())).unwrap_or_else(|e| panic!("{}: {e}", m.display()));
            let specs: Vec<String> = b.inputs().iter().map(|s| s.describe()).collect();
            let outs: Vec<String> = b.outputs().iter().map(|s| s.describe()).collect();
            eprintln!("{}: inputs {specs:?} outputs {outs:?}", m.display());
            let tensors: Vec<Tensor> = b
                .inputs()
                .iter()
                .map(|s| {
                    let shape: Vec<usize> = s
                        .shape
                        .iter()
                        .enumerate()
                        .map(|(i, d)| d.unwrap_or(if i == 0 { 2 } else { 32 }))
                        .collect();
                    let n: usize = shape.iter().product::<usize>() * s.dtype.size();
                    Tensor::host(s.name.clone(), s.dtype, shape, PooledBytes::detached(vec![0; n]))
                })
                .collect();
            let refs: Vec<InputRef<'_>> = tensors
                .iter()
                .map(|t| InputRef {
                    name: &t.name,
                    tensor: t,
                })
                .collect();
            let out = b.infer(&refs).unwrap_or_else(|e| panic!("{}: {e}", m.display()));
            assert_eq!(out.len(), b.outputs().len());
            for (o, s) in out.iter().zip(b.outputs()) {
                assert!(
                    s.accepts(&o.shape),
                    "{}: {:?} vs {}",
                    m.display(),
                    o.shape,
                    s.describe()
                );
            }
        }
    }
}
