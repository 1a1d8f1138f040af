//! Finding and loading the ONNX Runtime shared library; the process-wide environment.

use super::*;

/// Environment variable naming the ONNX Runtime shared library explicitly.
pub const ORT_DYLIB_ENV: &str = "ORT_DYLIB_PATH";

/// The process-wide ort environment, created on first use.
pub(super) static ENVIRONMENT: OnceLock<Environment> = OnceLock::new();
/// Serialises creation attempts so that a failed attempt can be retried later.
pub(super) static ENV_INIT: Mutex<()> = Mutex::new(());

/// Site-packages style directories where a `onnxruntime` wheel may be installed.
pub(super) fn python_site_dirs() -> Vec<PathBuf> {
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
pub(super) fn find_in_site_dirs(dirs: &[PathBuf]) -> Option<PathBuf> {
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
pub(super) fn resolve_library_with(explicit: Option<std::ffi::OsString>) -> Result<PathBuf, String> {
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
pub(super) fn environment(lib: &Path, kind: BackendKind) -> Result<Environment, BackendError> {
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
pub(super) fn load_environment(lib: &Path, kind: BackendKind) -> Result<Environment, BackendError> {
    if !lib.is_file() {
        return Err(unavailable(
            kind,
            format!(
                "the ONNX Runtime library {} does not exist; run `pip install onnxruntime` or set {ORT_DYLIB_ENV}",
                lib.display()
            ),
        ));
    }
    super::logging::install_tracing();
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
            let env = builder
                .with_name("gst-trtvision")
                .with_telemetry(false)
                .with_logger(super::logging::logger())
                .build()
                .map_err(|e| unavailable(kind, format!("cannot create the ONNX Runtime environment: {e}")))?;
            super::logging::sync_level(&env);
            Ok(env)
        },
        |msg| {
            unavailable(
                kind,
                format!("loading ONNX Runtime from {} failed: {msg}", lib.display()),
            )
        },
    )
}
