//! Run-time compilation of the kernel files under `kernels/` with NVRTC (PTX for the
//! device's architecture, cached per file and architecture for the process). Only
//! libnvrtc is used here, never the driver: this compiles on machines without a GPU.

use std::sync::{Arc, Mutex};

use super::CudaError;

/// Every kernel file of the crate: name under `kernels/` and its source.
pub const KERNEL_FILES: &[(&str, &str)] = &[
    ("preprocess.cu", crate::ops::preprocess::cuda::KERNEL_SOURCE),
    ("overlay.cu", crate::ops::overlay::cuda::KERNEL_SOURCE),
    ("yolo.cu", crate::ops::yolo::cuda::YOLO_SOURCE),
    ("maskselect.cu", crate::ops::maskselect::cuda::MASK_SOURCE),
    ("dense.cu", crate::ops::dense::cuda::DENSE_SOURCE),
    ("tiler.cu", crate::ops::mosaic::cuda::KERNEL_SOURCE),
];

/// `kernels/common.cuh`: helpers shared by kernel files that `#include "common.cuh"`.
pub const COMMON_HEADER: &str = include_str!("../../kernels/common.cuh");
const COMMON_INCLUDE: &str = "#include \"common.cuh\"";

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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `.cu` file under `kernels/` is listed in [`KERNEL_FILES`] with the same
    /// text, and compiles to PTX for sm_90 with NVRTC alone (no driver, no GPU) where
    /// libnvrtc can be loaded (e.g. `LD_LIBRARY_PATH=/path/to/nvrtc`); skipped elsewhere.
    #[test]
    fn nvrtc_compiles_every_file_in_kernels() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".cu"))
            .collect();
        on_disk.sort();
        let mut listed: Vec<String> = KERNEL_FILES.iter().map(|(n, _)| n.to_string()).collect();
        listed.sort();
        assert_eq!(on_disk, listed, "kernels/ and KERNEL_FILES differ");
        for (name, source) in KERNEL_FILES {
            let text = std::fs::read_to_string(dir.join(name)).unwrap();
            assert_eq!(&text, source, "{name} is not the embedded source");
        }
        let header = std::fs::read_to_string(dir.join("common.cuh")).unwrap();
        assert_eq!(header, COMMON_HEADER, "common.cuh is not the embedded header");
        for name in ["preprocess.cu", "tiler.cu"] {
            let (_, source) = KERNEL_FILES.iter().find(|(n, _)| *n == name).unwrap();
            let expanded = expand_includes(source);
            assert!(
                expanded.contains("void yuv_to_rgb(") && !expanded.contains(COMMON_INCLUDE),
                "{name}: common.cuh is put in place"
            );
        }
        assert!(matches!(expand_includes("int x;"), std::borrow::Cow::Borrowed(_)));
        if require_nvrtc().is_err() {
            crate::skip::skip(
                crate::skip::REQUIRE_NVRTC,
                "NVRTC (libnvrtc.so.13) is not on the library path",
            );
            return;
        }
        let arch = crate::cuda::guard("nvrtc", || nvrtc_arch((9, 0))).unwrap();
        assert_eq!(arch, "compute_90");
        for (name, source) in KERNEL_FILES {
            let ptx = match crate::cuda::guard("nvrtc", || compile(source, name, &arch)) {
                Ok(p) => p,
                Err(e) => panic!("{e}"),
            };
            let text = String::from_utf8_lossy(&ptx[..ptx.len() - 1]);
            assert!(text.contains(".target sm_90"), "{name}");
            let entries = text.matches(".entry ").count();
            assert!(entries >= 1, "{name} has no kernel entry");
            assert!(!text.contains(".local"), "{name}: no local memory expected");
            eprintln!(
                "kernels/{name}: {} bytes of PTX, {entries} entry point(s)",
                ptx.len()
            );
        }
    }
}
