//! Every kernel file of the crate, for the NVRTC compile test (`cargo test --release
//! --features cuda --lib kernels`): each runner under [`crate::ops`] declares its
//! [`KernelSource`]; this list keeps them and `kernels/` in step.

use crate::cuda::KernelSource;

/// Every kernel file of the crate (name under `kernels/` and source).
pub const KERNEL_FILES: &[KernelSource] = &[
    super::preprocess::cuda::KERNEL,
    super::overlay::cuda::KERNEL,
    super::yolo::cuda::KERNEL,
    super::maskselect::cuda::KERNEL,
    super::dense::cuda::KERNEL,
    super::mosaic::cuda::KERNEL,
];

/// PTX text of `source` compiled for sm_90 by NVRTC alone (no driver, no GPU), for the
/// runners' compile tests; `None` (reported as skipped) where libnvrtc cannot be loaded.
#[cfg(test)]
pub(crate) fn sm90_ptx_for_test(source: &str, file: &str) -> Option<String> {
    use crate::cuda::nvrtc::{compile, nvrtc_arch, require_nvrtc};
    if require_nvrtc().is_err() {
        crate::skip::skip(
            crate::skip::REQUIRE_NVRTC,
            "NVRTC (libnvrtc.so.13) is not on the library path",
        );
        return None;
    }
    let arch = crate::cuda::guard("nvrtc", || nvrtc_arch((9, 0))).unwrap();
    assert_eq!(arch, "compute_90");
    let ptx = crate::cuda::guard("nvrtc", || compile(source, file, &arch)).unwrap();
    Some(String::from_utf8_lossy(&ptx[..ptx.len() - 1]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cuda::nvrtc::{
        compile, expand_includes, nvrtc_arch, require_nvrtc, COMMON_HEADER, COMMON_INCLUDE,
    };

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
        let mut listed: Vec<String> = KERNEL_FILES.iter().map(|k| k.file.to_string()).collect();
        listed.sort();
        assert_eq!(on_disk, listed, "kernels/ and KERNEL_FILES differ");
        for KernelSource { file: name, source } in KERNEL_FILES {
            let text = std::fs::read_to_string(dir.join(name)).unwrap();
            assert_eq!(&text, source, "{name} is not the embedded source");
        }
        let header = std::fs::read_to_string(dir.join("common.cuh")).unwrap();
        assert_eq!(header, COMMON_HEADER, "common.cuh is not the embedded header");
        for name in ["preprocess.cu", "tiler.cu"] {
            let source = KERNEL_FILES.iter().find(|k| k.file == name).unwrap().source;
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
        for KernelSource { file: name, source } in KERNEL_FILES {
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
