//! Run-time compilation of the kernel files under `kernels/` with NVRTC (PTX for the
//! device's architecture, cached per file and architecture for the process). Only
//! libnvrtc is used here, never the driver: this compiles on machines without a GPU.

use std::sync::{Arc, Mutex};

use super::CudaError;

/// `kernels/common.cuh`: helpers shared by kernel files that `#include "common.cuh"`.
pub const COMMON_HEADER: &str = include_str!("../../kernels/common.cuh");
pub(crate) const COMMON_INCLUDE: &str = "#include \"common.cuh\"";

/// `source` with common.cuh's text in place of its include line: NVRTC compiles from
/// memory here, without a file system to find the header on.
pub(crate) fn expand_includes(source: &str) -> std::borrow::Cow<'_, str> {
    if source.contains(COMMON_INCLUDE) {
        std::borrow::Cow::Owned(source.replacen(COMMON_INCLUDE, COMMON_HEADER, 1))
    } else {
        std::borrow::Cow::Borrowed(source)
    }
}

/// Compiled PTX per kernel file and architecture, shared by the whole process.
type PtxCache = Vec<((String, String), Arc<Vec<u8>>)>;
static PTX_CACHE: Mutex<PtxCache> = Mutex::new(Vec::new());

/// The `compute_XX` architecture NVRTC should target for compute capability `cc`: the
/// highest one NVRTC supports that does not exceed the device's.
pub(crate) fn nvrtc_arch(cc: (i32, i32)) -> Result<String, CudaError> {
    use cudarc::nvrtc::sys as nv;
    let want = cc.0 * 10 + cc.1;
    let mut n = 0;
    // SAFETY: out-pointer to a local (NVRTC presence checked by the caller).
    unsafe { nv::nvrtcGetNumSupportedArchs(&mut n) }
        .result()
        .map_err(|e| CudaError::Nvrtc(format!("nvrtcGetNumSupportedArchs failed: {e:?}")))?;
    let mut archs = vec![0i32; n.max(0) as usize];
    if !archs.is_empty() {
        // SAFETY: the buffer holds the number of entries NVRTC reported.
        unsafe { nv::nvrtcGetSupportedArchs(archs.as_mut_ptr()) }
            .result()
            .map_err(|e| CudaError::Nvrtc(format!("nvrtcGetSupportedArchs failed: {e:?}")))?;
    }
    let best = archs
        .iter()
        .copied()
        .filter(|&a| a <= want)
        .max()
        .ok_or_else(|| {
            CudaError::Nvrtc(format!(
                "this NVRTC supports architectures {archs:?}, none at or below the device's {}.{}",
                cc.0, cc.1
            ))
        })?;
    Ok(format!("compute_{best}"))
}

/// Whether libnvrtc can be loaded, as an error with the fix when it cannot.
pub(crate) fn require_nvrtc() -> Result<(), CudaError> {
    // SAFETY: only probes for the library file.
    if unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        Ok(())
    } else {
        Err(CudaError::Unavailable(
            "NVRTC (libnvrtc.so.13 of CUDA 13) was not found: add the CUDA toolkit's lib64 \
             directory (e.g. /usr/local/cuda/lib64) to LD_LIBRARY_PATH"
                .into(),
        ))
    }
}

/// Compiles kernel file `file` (`source`) for `arch` (cached); returns the
/// NUL-terminated PTX.
pub(crate) fn compile(source: &str, file: &str, arch: &str) -> Result<Arc<Vec<u8>>, CudaError> {
    let key = (file.to_string(), arch.to_string());
    if let Ok(cache) = PTX_CACHE.lock() {
        if let Some((_, ptx)) = cache.iter().find(|(k, _)| *k == key) {
            return Ok(ptx.clone());
        }
    }
    let opts = cudarc::nvrtc::CompileOptions {
        // No FMA contraction and IEEE division/sqrt: every f32 operation rounds as in
        // the CPU code (see preprocess.cu).
        fmad: Some(false),
        prec_div: Some(true),
        prec_sqrt: Some(true),
        ftz: Some(false),
        options: vec![format!("--gpu-architecture={arch}")],
        name: Some(file.into()),
        ..Default::default()
    };
    let ptx = cudarc::nvrtc::compile_ptx_with_opts(expand_includes(source), opts).map_err(|e| match e {
        cudarc::nvrtc::CompileError::CompileError { nvrtc, options, log } => CudaError::Nvrtc(format!(
            "compiling kernels/{file} with {options:?} failed ({nvrtc:?}): {}",
            log.to_string_lossy()
        )),
        other => CudaError::Nvrtc(format!("NVRTC failed on kernels/{file}: {other:?}")),
    })?;
    let mut image = ptx
        .as_bytes()
        .ok_or_else(|| CudaError::Nvrtc("NVRTC returned no PTX image".into()))?
        .to_vec();
    if image.last() != Some(&0) {
        image.push(0);
    }
    let image = Arc::new(image);
    if let Ok(mut cache) = PTX_CACHE.lock() {
        // Another thread may have compiled the same file meanwhile: keep one image.
        if let Some((_, ptx)) = cache.iter().find(|(k, _)| *k == key) {
            return Ok(ptx.clone());
        }
        cache.push((key, image.clone()));
    }
    Ok(image)
}
