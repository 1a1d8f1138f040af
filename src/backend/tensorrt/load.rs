//! Finding the engine to run: a serialized engine file, or an ONNX model built into one
//! (or found in the engine cache), and the I/O tensors the engine declares.

use super::*;

pub(super) enum ModelKind {
    Onnx,
    Engine,
}

pub(super) fn model_kind(path: &Path) -> Result<ModelKind, BackendError> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "onnx" => Ok(ModelKind::Onnx),
        "engine" | "plan" | "trt" => Ok(ModelKind::Engine),
        _ => Err(BackendError::ModelInvalid {
            path: path.display().to_string(),
            reason: "the tensorrt backend takes an ONNX model (.onnx) or a serialized TensorRT engine \
                     (.engine, .plan, .trt)"
                .into(),
        }),
    }
}

pub(super) fn discover_io(engine: &Engine) -> Result<(Vec<IoTensor>, Vec<IoTensor>), String> {
    // SAFETY: valid engine.
    let n = unsafe { ffi::trts_engine_num_io(engine.0) };
    let mut inputs = Vec::new();
    let mut outputs = Vec::new();
    for i in 0..n {
        let mut info = ffi::IoInfo::default();
        // SAFETY: valid engine; out-pointer to a local.
        check(unsafe { ffi::trts_engine_io_info(engine.0, i, &mut info) }).map_err(|e| e.message)?;
        // SAFETY: the name is owned by the engine and NUL-terminated.
        let name = unsafe { CStr::from_ptr(info.name) }
            .to_string_lossy()
            .into_owned();
        if info.on_host != 0 {
            return Err(format!(
                "tensor '{name}' is a shape tensor that TensorRT keeps in host memory; such models are not \
                 supported"
            ));
        }
        let nb = info.nb_dims.clamp(0, ffi::MAX_DIMS as i32) as usize;
        let t = IoTensor::new(
            &name,
            info.dtype,
            info.linear != 0,
            &info.dims[..nb],
            &info.min_dims[..nb],
            &info.max_dims[..nb],
        )?;
        if info.is_input != 0 {
            inputs.push(t);
        } else {
            outputs.push(t);
        }
    }
    Ok((inputs, outputs))
}

/// Deserializes a user-provided engine file.
pub(super) fn load_engine_file(
    runtime: &Runtime,
    model: &Path,
    gpu: &GpuInfo,
    trt_version: &str,
) -> Result<Engine, BackendError> {
    let plan = std::fs::read(model).map_err(|e| BackendError::ModelUnreadable {
        path: model.display().to_string(),
        reason: e.to_string(),
    })?;
    runtime.deserialize(&plan).map_err(|e| match e.status {
        Status::Deserialize => BackendError::ModelInvalid {
            path: model.display().to_string(),
            reason: format!(
                "TensorRT {trt_version} on {} (sm_{}{}) cannot load this engine: {}. A serialized engine only runs \
                 on the GPU model and TensorRT version that built it: rebuild it on this machine, or give the \
                 ONNX model and an engine cache directory so the plugin builds and caches a matching engine (cache \
                 key: model hash, GPU, compute capability, TensorRT version, precision, max batch)",
                gpu.name, gpu.cc.0, gpu.cc.1, e.message
            ),
        },
        _ => runtime_error(e),
    })
}

/// Loads the cached engine for an ONNX model, or builds (and caches) one.
pub(super) fn load_or_build(
    runtime: &Runtime,
    opts: &BackendOptions,
    trt: &TrtOptions,
    gpu: &GpuInfo,
    trt_version: &str,
) -> Result<Engine, BackendError> {
    let model = opts.model_path.as_path();
    let unreadable = |path: &Path, e: std::io::Error| BackendError::ModelUnreadable {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let model_sha256 = cache::hash_file(model).map_err(|e| unreadable(model, e))?;
    let calib = match (&trt.int8_calibration_cache, trt.precision) {
        (Some(p), Precision::Int8) => Some(std::fs::read(p).map_err(|e| unreadable(p, e))?),
        _ => None,
    };
    let key = CacheKey {
        model_sha256,
        gpu_name: gpu.name.clone(),
        compute_capability: gpu.cc,
        tensorrt_version: trt_version.to_string(),
        precision: trt.precision,
        max_batch: opts.max_batch.max(1),
        workspace_bytes: trt.workspace_bytes,
        calibration_sha256: calib.as_deref().map(sha256::sha256_hex),
    };
    let cache = opts.engine_cache_dir.as_ref().map(EngineCache::new);
    match &cache {
        Some(cache) if !trt.rebuild => {
            if let CacheLookup::Hit(path) = cache.lookup(model, &key) {
                match std::fs::read(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|plan| runtime.deserialize(&plan).map_err(|e| e.message))
                {
                    Ok(engine) => {
                        crate::backend_log!(
                            info,
                            CAT,
                            opts.log_target,
                            "using cached engine {} (key {})",
                            path.display(),
                            key.canonical()
                        );
                        return Ok(engine);
                    }
                    Err(e) => {
                        crate::backend_log!(
                            warning,
                            CAT,
                            opts.log_target,
                            "cached engine {} (key {}) cannot be loaded, rebuilding it: {}",
                            path.display(),
                            key.canonical(),
                            e
                        );
                        EngineCache::evict(&path);
                    }
                }
            }
        }
        Some(_) => crate::backend_log!(
            info,
            CAT,
            opts.log_target,
            "rebuild requested: ignoring any cached engine"
        ),
        None => crate::backend_log!(
            info,
            CAT,
            opts.log_target,
            "no engine cache directory: the engine is built on every start"
        ),
    }

    // SAFETY: plain loader call.
    check(unsafe { ffi::trts_load_onnx_parser() }).map_err(|e| unavailable(e.message))?;
    let timing = cache.as_ref().and_then(|c| c.read_timing_cache(&key));
    let cpath = path_cstring(model)?;
    let params = ffi::BuildParams {
        onnx_path: cpath.as_ptr(),
        precision: trt.precision.to_ffi(),
        max_batch: key.max_batch as i64,
        workspace_bytes: trt.workspace_bytes,
        timing_cache: timing.as_deref().map_or(std::ptr::null(), |t| t.as_ptr().cast()),
        timing_cache_len: timing.as_deref().map_or(0, <[u8]>::len),
        calib_cache: calib.as_deref().map_or(std::ptr::null(), |c| c.as_ptr().cast()),
        calib_cache_len: calib.as_deref().map_or(0, <[u8]>::len),
    };
    crate::backend_log!(
        info,
        CAT,
        opts.log_target,
        "building a TensorRT engine from {} ({}, max batch {}); this can take minutes",
        model.display(),
        trt.precision.name(),
        key.max_batch
    );
    let (mut plan_raw, mut timing_raw) = (std::ptr::null_mut(), std::ptr::null_mut());
    // SAFETY: params and the strings/byte ranges it points to outlive the call; out-pointers
    // are locals whose blobs are owned right after.
    let built = check(unsafe { ffi::trts_build_onnx(runtime.0, &params, &mut plan_raw, &mut timing_raw) });
    let plan = ffi::Blob::from_raw(plan_raw);
    let timing_out = ffi::Blob::from_raw(timing_raw);
    built.map_err(|e| {
        let path = model.display().to_string();
        match e.status {
            Status::Unavailable => unavailable(e.message),
            Status::InvalidModel | Status::Shape | Status::Precision => BackendError::ModelInvalid {
                path,
                reason: e.message,
            },
            Status::Deserialize | Status::Runtime => BackendError::Runtime(e.message),
        }
    })?;
    if let Some(cache) = &cache {
        if !timing_out.as_slice().is_empty() {
            if let Err(e) = cache.write_timing_cache(&key, timing_out.as_slice()) {
                crate::backend_log!(
                    warning,
                    CAT,
                    opts.log_target,
                    "cannot write the timing cache in {}: {}",
                    cache.dir().display(),
                    e
                );
            }
        }
        match cache.store(model, &key, plan.as_slice()) {
            Ok(p) => crate::backend_log!(
                info,
                CAT,
                opts.log_target,
                "cached engine {} (key {})",
                p.display(),
                key.canonical()
            ),
            Err(e) => crate::backend_log!(
                warning,
                CAT,
                opts.log_target,
                "cannot store the engine in {}: {}",
                cache.dir().display(),
                e
            ),
        }
    }
    runtime.deserialize(plan.as_slice()).map_err(|e| {
        BackendError::Runtime(format!(
            "TensorRT cannot load the engine it just built: {}",
            e.message
        ))
    })
}

pub(super) fn path_cstring(path: &Path) -> Result<CString, BackendError> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes()).map_err(|_| BackendError::ModelUnreadable {
        path: path.display().to_string(),
        reason: "the path contains a NUL byte".into(),
    })
}
