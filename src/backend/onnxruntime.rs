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
//! called. Outputs are always returned as host tensors.

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
use crate::tensor::{DType, HostTensorPool, Tensor, TensorStorage};

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
    /// Host buffers for the outputs, recycled across batches.
    pool: HostTensorPool,
    model_path: String,
    device_id: i32,
    /// I/O binding that leaves every output in CUDA memory (ONNX Runtime's device arena,
    /// reused across runs), when the outputs were asked for on the device.
    binding: Option<ort::session::IoBinding>,
    /// Device buffers made by [`InferenceBackend::upload`], owned by the tensors handed out.
    #[cfg(feature = "cuda")]
    upload_ctx: Option<crate::cuda::DeviceContext>,
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

/// Copies one ORT output into a pooled host tensor.
fn output_to_host(pool: &HostTensorPool, name: &str, value: &DynValue) -> Result<Tensor, BackendError> {
    let (elem, dtype, shape, count, nbytes) = output_layout(name, value)?;
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

    fn open_in(env: &Environment, opts: &BackendOptions) -> Result<Self, BackendError> {
        let kind = opts.kind;
        let path = opts.model_path.display().to_string();
        let mut builder = Self::base_builder(env, opts)?;
        let mut trt_max = None;
        match kind {
            BackendKind::OnnxRuntimeCpu | BackendKind::TensorRt => {}
            BackendKind::OnnxRuntimeCuda => {
                Self::require_provider::<ep::CUDA>(kind, "CUDA")?;
                let cuda = cuda_provider(opts).build().error_on_failure();
                builder = builder.with_execution_providers([cuda]).map_err(|e| {
                    unavailable(
                        kind,
                        format!("the CUDA execution provider cannot be registered: {e}"),
                    )
                })?;
            }
            BackendKind::OnnxRuntimeTensorRt => {
                Self::require_provider::<ep::TensorRT>(kind, "TensorRT")?;
                // Probe the input layout with a light CPU session to build the profiles.
                let probe = Self::base_builder(env, opts)?
                    .with_optimization_level(GraphOptimizationLevel::Disable)
                    .unwrap_or_else(|e| e.recover());
                let probe = Self::commit(
                    probe,
                    &BackendOptions {
                        kind: BackendKind::OnnxRuntimeCpu,
                        ..opts.clone()
                    },
                )?;
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
                builder = builder
                    .with_execution_providers([trt.build().error_on_failure(), cuda])
                    .map_err(|e| {
                        unavailable(
                            kind,
                            format!("the TensorRT execution provider cannot be registered: {e}"),
                        )
                    })?;
            }
        }
        let session = Self::commit(builder, opts)?;
        let (inputs, outputs) = Self::specs(&session, &path)?;
        let fixed_batch = inputs.first().and_then(|s| s.shape.first().copied().flatten());
        let max_batch = fixed_batch.or(trt_max);
        let binding = if opts.outputs_on_device && kind != BackendKind::OnnxRuntimeCpu {
            let mut b = session
                .create_binding()
                .map_err(|e| unavailable(kind, format!("cannot create an I/O binding: {e}")))?;
            let info = cuda_memory_info(opts.device_id)
                .map_err(|e| unavailable(kind, format!("no CUDA memory info: {e}")))?;
            for o in &outputs {
                b.bind_output_to_device(o.name.as_str(), &info).map_err(|e| {
                    unavailable(
                        kind,
                        format!("cannot bind output '{}' to CUDA memory: {e}", o.name),
                    )
                })?;
            }
            Some(b)
        } else {
            None
        };
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
        })
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

    fn run(&mut self, inputs: &[InputRef<'_>]) -> Result<Vec<Tensor>, BackendError> {
        if inputs.len() != self.inputs.len() {
            let want: Vec<&str> = self.inputs.iter().map(|s| s.name.as_str()).collect();
            return Err(BackendError::ShapeMismatch(format!(
                "the model takes {} input(s) ({}), {} were given",
                want.len(),
                want.join(", "),
                inputs.len()
            )));
        }
        let mut values: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = Vec::with_capacity(inputs.len());
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
            if let Some(prev) = batch {
                if prev != b && spec.shape.first() == Some(&None) {
                    return Err(BackendError::ShapeMismatch(format!(
                        "input '{}' has batch {b} but another input has batch {prev}",
                        spec.name
                    )));
                }
            }
            batch = Some(b);
            let nbytes = checked_count(&t.shape)
                .and_then(|c| c.checked_mul(t.dtype.size()))
                .ok_or_else(|| {
                    BackendError::ShapeMismatch(format!("input '{}' shape overflows", spec.name))
                })?;
            let value = match &t.storage {
                TensorStorage::Host(bytes) => {
                    let bytes = bytes.as_slice();
                    if bytes.len() != nbytes {
                        return Err(BackendError::ShapeMismatch(format!(
                            "input '{}' holds {} bytes but {} needs {nbytes}",
                            spec.name,
                            bytes.len(),
                            describe_shape(t.dtype, &t.shape)
                        )));
                    }
                    host_value(t.dtype, &t.shape, bytes).map_err(|e| {
                        BackendError::Runtime(format!("cannot wrap input '{}': {e}", spec.name))
                    })?
                }
                TensorStorage::Device { ptr, len, .. } => {
                    if self.kind == BackendKind::OnnxRuntimeCpu {
                        return Err(BackendError::Runtime(format!(
                            "input '{}' is in GPU memory but the backend is onnxruntime-cpu; device inputs \
                             require the onnxruntime-cuda or onnxruntime-tensorrt backend",
                            spec.name
                        )));
                    }
                    if *len < nbytes || *ptr == 0 {
                        return Err(BackendError::ShapeMismatch(format!(
                            "device input '{}' holds {len} bytes but {} needs {nbytes}",
                            spec.name,
                            describe_shape(t.dtype, &t.shape)
                        )));
                    }
                    // SAFETY: the tensor (and its keepalive) outlives this call; the length
                    // was checked above.
                    unsafe { device_value(t.dtype, &t.shape, *ptr, self.device_id) }.map_err(|e| {
                        BackendError::Runtime(format!("cannot wrap device input '{}': {e}", spec.name))
                    })?
                }
            };
            values.push((Cow::Borrowed(spec.name.as_str()), value));
        }
        if let Some(binding) = self.binding.as_mut() {
            // Outputs are bound afresh every run: after a run the binding holds that run's
            // output values and would write the next results into them (still in use
            // downstream, and of the wrong shape when the batch size changes).
            binding.clear_outputs();
            let info = cuda_memory_info(self.device_id)
                .map_err(|e| BackendError::Runtime(format!("no CUDA memory info: {e}")))?;
            for o in &self.outputs {
                binding
                    .bind_output_to_device(o.name.as_str(), &info)
                    .map_err(|e| {
                        BackendError::Runtime(format!("cannot bind output '{}' to CUDA memory: {e}", o.name))
                    })?;
            }
            binding.clear_inputs();
            for (name, value) in &values {
                // Bound through the C API: `IoBinding::bind_input` copies values that borrow
                // their memory (ours do: the preprocessed tensor), which is the copy this
                // binding exists to avoid. `values` outlives the run below.
                let cname = std::ffi::CString::new(name.as_bytes())
                    .map_err(|_| BackendError::Runtime(format!("input name '{name}' holds a NUL byte")))?;
                // SAFETY: live binding and value pointers, NUL-terminated name.
                let status = unsafe {
                    (ort::api().BindInput)(
                        ort::AsPointer::ptr_mut(binding),
                        cname.as_ptr(),
                        ort::AsPointer::ptr(&**value),
                    )
                };
                api_ok(status).map_err(|()| BackendError::Runtime(format!("cannot bind input '{name}'")))?;
            }
            gst::trace!(CAT, "run with I/O binding, {} inputs", values.len());
            let mut outputs = self
                .session
                .run_binding(binding)
                .map_err(|e| BackendError::Runtime(e.message().to_string()))?;
            gst::trace!(CAT, "run with I/O binding done");
            let mut result = Vec::with_capacity(self.outputs.len());
            for spec in &self.outputs {
                let value = outputs.remove(&spec.name).ok_or_else(|| {
                    BackendError::Runtime(format!("ONNX Runtime returned no output '{}'", spec.name))
                })?;
                result.push(output_on_device(&spec.name, value)?);
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
        for spec in &self.outputs {
            let value = outputs.get(&spec.name).ok_or_else(|| {
                BackendError::Runtime(format!("ONNX Runtime returned no output '{}'", spec.name))
            })?;
            result.push(output_to_host(&self.pool, &spec.name, value)?);
        }
        Ok(result)
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
        guarded(
            || self.run(inputs),
            |msg| BackendError::Runtime(format!("ONNX Runtime panicked: {msg}")),
        )
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
        match resolve_library_path() {
            Ok(_) => true,
            Err(e) => {
                eprintln!("skipping: {e}");
                false
            }
        }
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
            let out = b
                .infer(&[InputRef {
                    name: "x",
                    tensor: &x,
                }])
                .unwrap();
            assert_eq!(out.len(), 2);
            assert_eq!(out[0].name, "y");
            assert_eq!(out[0].shape, vec![batch, 3]);
            let y = out[0].to_f32().unwrap();
            for (i, v) in y.iter().enumerate() {
                assert_eq!(*v, i as f32 + [1.0, 2.0, 3.0][i % 3]);
            }
            assert_eq!(out[1].dtype, DType::I64);
            let s: Vec<i64> = out[1]
                .host_bytes()
                .unwrap()
                .chunks_exact(8)
                .map(|c| i64::from_ne_bytes(c.try_into().unwrap()))
                .collect();
            assert_eq!(s, vec![batch as i64, 3]);
        }
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
        let y = output_to_host(&b.pool, "y", outputs.get("y").unwrap()).unwrap();
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
            eprintln!("skipping: no {}", dir.display());
            return;
        };
        let mut models: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
            .collect();
        models.sort();
        if models.is_empty() {
            eprintln!(
                "skipping: no .onnx in {} (run engines/generate_models.py)",
                dir.display()
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
