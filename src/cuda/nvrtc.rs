//! Run-time compilation of the kernel files under `kernels/` with NVRTC: once per
//! (file, architecture) per process, the PTX shared by every element that loads it.

use super::CudaError;
use std::sync::{Arc, Mutex};

/// A compiled kernel file: (file name, architecture, NUL-terminated PTX).
type CompiledPtx = (&'static str, String, Arc<Vec<u8>>);

/// Compiled PTX per (kernel file, architecture).
static PTX_CACHE: Mutex<Vec<CompiledPtx>> = Mutex::new(Vec::new());

/// Fails with a clear sentence when libnvrtc cannot be loaded.
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

/// Compiles kernel file `name` (source `source`) for `arch` (cached); returns the
/// NUL-terminated PTX. No FMA contraction and IEEE division/sqrt, so every f32 operation
/// rounds as in the CPU twins of the kernels.
pub(crate) fn compile(name: &'static str, source: &str, arch: &str) -> Result<Arc<Vec<u8>>, CudaError> {
    if let Ok(cache) = PTX_CACHE.lock() {
        if let Some((_, _, ptx)) = cache.iter().find(|(n, a, _)| *n == name && a == arch) {
            return Ok(ptx.clone());
        }
    }
    let opts = cudarc::nvrtc::CompileOptions {
        fmad: Some(false),
        prec_div: Some(true),
        prec_sqrt: Some(true),
        ftz: Some(false),
        options: vec![format!("--gpu-architecture={arch}")],
        name: Some(name.into()),
        ..Default::default()
    };
    let ptx = cudarc::nvrtc::compile_ptx_with_opts(source, opts).map_err(|e| match e {
        cudarc::nvrtc::CompileError::CompileError { nvrtc, options, log } => CudaError::Nvrtc(format!(
            "compiling kernels/{name} with {options:?} failed ({nvrtc:?}): {}",
            log.to_string_lossy()
        )),
        other => CudaError::Nvrtc(format!("NVRTC failed on kernels/{name}: {other:?}")),
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
        // Another thread may have compiled the same file meanwhile: keep the first.
        if let Some((_, _, ptx)) = cache.iter().find(|(n, a, _)| *n == name && a == arch) {
            return Ok(ptx.clone());
        }
        cache.push((name, arch.to_string(), image.clone()));
    }
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kernel file of the crate.
    const KERNEL_FILES: &[(&str, &str)] = &[
        ("preprocess.cu", crate::cuda::KERNEL_SOURCE),
        ("yolo.cu", crate::cuda::postprocess::YOLO_SOURCE),
        ("maskselect.cu", crate::cuda::postprocess::MASK_SOURCE),
    ];

    /// Compiles every kernel file to PTX for sm_90 where libnvrtc can be loaded (no GPU
    /// or libcuda needed): `LD_LIBRARY_PATH=<dir with libnvrtc.so.13> cargo test
    /// --features cuda kernels_compile`. Without NVRTC it says so and checks nothing else.
    #[test]
    fn kernels_compile() {
        if require_nvrtc().is_err() {
            eprintln!(
                "skipping: libnvrtc.so.13 not found (set LD_LIBRARY_PATH to compile-check the kernels)"
            );
            return;
        }
        let arch = nvrtc_arch((9, 0)).expect("NVRTC supports an architecture at or below sm_90");
        for (name, source) in KERNEL_FILES {
            compile(name, source, &arch).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}
