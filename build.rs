//! Build script.
//!
//! Always: sets `COMMIT_ID` (short git hash, or `unknown`), `BUILD_REL_DATE` and
//! `TRTVISION_ORIGIN` for the plugin's registration (`gst-inspect-1.0 trtvision`):
//! - `BUILD_REL_DATE` (YYYY-MM-DD): `SOURCE_DATE_EPOCH` when set (reproducible builds), else
//!   the date of the commit built (`git log -1 --format=%cs`), else the day of the build;
//! - `TRTVISION_ORIGIN`: `$TRTVISION_ORIGIN` at build time (a packager's URL), else a
//!   sentence saying the plugin was built from a source tree (the project has no public URL).
//!
//! The commit and its date are read when this script runs (first build, or a change of
//! build.rs or of the variables above); a new commit alone does not rebuild the plugin, so a
//! clean build (CI, packages, scripts/device/build.sh) is what carries exact values.
//!
//! With cargo feature `tensorrt` it compiles the C++ shim in `shim/tensorrt/` (the native
//! TensorRT backend) with the `cc` crate. The shim is compiled against NVIDIA's TensorRT
//! headers only; libnvinfer, libnvonnxparser and libcuda are `dlopen`ed at run time, so
//! nothing of TensorRT or CUDA is needed at link time.
//!
//! Header search (first directory holding `NvInfer.h` wins):
//! 1. `$TENSORRT_DIR/include`, then `$TENSORRT_DIR` itself;
//! 2. `/usr/include/x86_64-linux-gnu` (Debian/Ubuntu packages), `/usr/local/tensorrt/include`,
//!    `/usr/include`.
//!
//! TensorRT's headers `#include <cuda_runtime_api.h>` but only use its `cudaStream_t` and
//! `cudaEvent_t` typedefs. When no CUDA toolkit header is found (`$CUDA_PATH/include`,
//! `$CUDA_HOME/include`, `/usr/local/cuda/include`, next to the TensorRT headers, or
//! `/usr/include`), a stub `cuda_runtime_api.h` declaring exactly those two typedefs, with the
//! same definitions as the real header, is generated in `$OUT_DIR/cuda-stub` and put on the
//! include path.

use std::env;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=COMMIT_ID={commit}");
    println!("cargo:rustc-env=BUILD_REL_DATE={}", release_date());
    println!("cargo:rerun-if-env-changed=TRTVISION_ORIGIN");
    let origin = env::var("TRTVISION_ORIGIN")
        .ok()
        .filter(|o| !o.trim().is_empty())
        .unwrap_or_else(|| "built from a gst-trtvision source tree".into());
    println!("cargo:rustc-env=TRTVISION_ORIGIN={origin}");

    if env::var_os("CARGO_FEATURE_TENSORRT").is_some() {
        build_tensorrt_shim();
    }
}

/// The release date of what is built, YYYY-MM-DD (see the file's comment for the order).
fn release_date() -> String {
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    if let Some(secs) = env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok())
    {
        return civil_date(secs);
    }
    let git_date = std::process::Command::new("git")
        .args(["log", "-1", "--format=%cs"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|d| d.len() == 10);
    if let Some(d) = git_date {
        return d;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    civil_date(now)
}

/// Seconds since the Unix epoch as a UTC date, YYYY-MM-DD (Howard Hinnant's days-to-civil).
fn civil_date(secs: i64) -> String {
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

const SHIM_DIR: &str = "shim/tensorrt";
const SHIM_SOURCES: &[&str] = &[
    "errors.cpp",
    "common.cpp",
    "cuda.cpp",
    "engine.cpp",
    "builder.cpp",
];

fn build_tensorrt_shim() {
    for var in ["TENSORRT_DIR", "CUDA_PATH", "CUDA_HOME"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed={SHIM_DIR}");

    let trt_include = find_tensorrt_include();
    let major = tensorrt_major(&trt_include);
    if let Some(major) = major {
        if major < 10 {
            panic!(
                "TensorRT headers in {} are version {major}; the `tensorrt` feature needs TensorRT 10 or \
                 newer headers. Point TENSORRT_DIR at a TensorRT 10/11 installation.",
                trt_include.display()
            );
        }
    }
    let cuda_include = find_cuda_include(&trt_include).unwrap_or_else(write_cuda_stub);

    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++17")
        .include(SHIM_DIR)
        // TensorRT's and CUDA's headers are system headers: their own warnings are not ours.
        .flag("-isystem")
        .flag(trt_include.to_str().expect("TensorRT include path is not UTF-8"))
        .flag("-isystem")
        .flag(cuda_include.to_str().expect("CUDA include path is not UTF-8"))
        .warnings(true)
        .extra_warnings(true)
        .flag("-fvisibility=hidden");
    for src in SHIM_SOURCES {
        let path = Path::new(SHIM_DIR).join(src);
        println!("cargo:rerun-if-changed={}", path.display());
        build.file(path);
    }
    for header in ["trts.h", "status.h", "internal.h"] {
        println!("cargo:rerun-if-changed={SHIM_DIR}/{header}");
    }
    build.compile("trtvision_trt_shim");
    // dlopen/dlsym live in libc on glibc >= 2.34 but in libdl before.
    println!("cargo:rustc-link-lib=dl");
}

fn has_nvinfer(dir: &Path) -> bool {
    dir.join("NvInfer.h").is_file()
}

fn find_tensorrt_include() -> PathBuf {
    let mut tried = Vec::new();
    if let Some(root) = env::var_os("TENSORRT_DIR") {
        let root = PathBuf::from(root);
        for dir in [root.join("include"), root.clone()] {
            if has_nvinfer(&dir) {
                return dir;
            }
            tried.push(dir);
        }
    }
    for dir in [
        "/usr/include/x86_64-linux-gnu",
        "/usr/local/tensorrt/include",
        "/usr/include",
    ] {
        let dir = PathBuf::from(dir);
        if has_nvinfer(&dir) {
            return dir;
        }
        tried.push(dir);
    }
    let tried: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
    panic!(
        "feature `tensorrt`: TensorRT headers (NvInfer.h) not found; looked in: {}. Set TENSORRT_DIR to a \
         TensorRT 10/11 installation (or to a checkout of github.com/NVIDIA/TensorRT: its include/ holds \
         the public headers). libnvinfer itself is not needed to build, only at run time.",
        tried.join(", ")
    );
}

/// Major version from NvInferVersion.h (`TRT_MAJOR_ENTERPRISE` or `NV_TENSORRT_MAJOR`).
fn tensorrt_major(include: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(include.join("NvInferVersion.h")).ok()?;
    for name in ["TRT_MAJOR_ENTERPRISE", "NV_TENSORRT_MAJOR"] {
        for line in text.lines() {
            let mut words = line.split_whitespace();
            if words.next() == Some("#define") && words.next() == Some(name) {
                if let Some(Ok(v)) = words.next().map(str::parse::<u32>) {
                    return Some(v);
                }
            }
        }
    }
    None
}

fn find_cuda_include(trt_include: &Path) -> Option<PathBuf> {
    let mut candidates = Vec::new();
    for var in ["CUDA_PATH", "CUDA_HOME"] {
        if let Some(root) = env::var_os(var) {
            candidates.push(PathBuf::from(root).join("include"));
        }
    }
    candidates.push(PathBuf::from("/usr/local/cuda/include"));
    candidates.push(trt_include.to_path_buf());
    candidates.push(PathBuf::from("/usr/include"));
    candidates
        .into_iter()
        .find(|dir| dir.join("cuda_runtime_api.h").is_file() && dir.join("driver_types.h").is_file())
}

/// Writes `$OUT_DIR/cuda-stub/cuda_runtime_api.h` with the only CUDA types TensorRT's
/// headers need. The typedefs are identical to CUDA's (`driver_types.h`), so the ABI of
/// every TensorRT call taking a stream or event is unchanged.
fn write_cuda_stub() -> PathBuf {
    let dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo")).join("cuda-stub");
    std::fs::create_dir_all(&dir).expect("cannot create the CUDA stub header directory in OUT_DIR");
    let header = "\
/* Generated by gst-trtvision build.rs: minimal stand-in for CUDA's cuda_runtime_api.h.
 * TensorRT's public headers only need these opaque handle types; the definitions match
 * CUDA's driver_types.h. The shim calls the CUDA driver API through dlopen(libcuda.so.1). */
#ifndef GST_TRTVISION_CUDA_RUNTIME_API_STUB_H
#define GST_TRTVISION_CUDA_RUNTIME_API_STUB_H
typedef struct CUstream_st* cudaStream_t;
typedef struct CUevent_st* cudaEvent_t;
#endif
";
    let path = dir.join("cuda_runtime_api.h");
    if std::fs::read_to_string(&path).ok().as_deref() != Some(header) {
        std::fs::write(&path, header).expect("cannot write the CUDA stub header in OUT_DIR");
    }
    dir
}
