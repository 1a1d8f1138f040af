use super::*;

fn libnvinfer_present() -> bool {
    ["libnvinfer.so.11", "libnvinfer.so.10", "libnvinfer.so"]
        .iter()
        .any(|name| {
            let c = CString::new(*name).unwrap();
            // SAFETY: dlopen with a valid C string; the handle is closed right away.
            unsafe {
                let h = libc::dlopen(c.as_ptr(), libc::RTLD_LAZY | libc::RTLD_LOCAL);
                if !h.is_null() {
                    libc::dlclose(h);
                }
                !h.is_null()
            }
        })
}

#[test]
fn missing_library_is_unavailable() {
    if libnvinfer_present() {
        eprintln!("libnvinfer is installed: skipping the missing-library test");
        return;
    }
    let dir = std::env::temp_dir().join(format!("trtvision-trt-open-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = dir.join("model.onnx");
    std::fs::write(&model, b"not really onnx").unwrap();
    let opts = BackendOptions {
        kind: crate::backend::BackendKind::TensorRt,
        model_path: model,
        max_batch: 4,
        engine_cache_dir: Some(dir.join("cache")),
        ..BackendOptions::default()
    };
    for _ in 0..2 {
        // Twice: a failed load must not poison the next attempt.
        match TrtBackend::open(&opts) {
            Err(BackendError::Unavailable { backend, reason }) => {
                assert_eq!(backend, "tensorrt");
                assert!(reason.contains("libnvinfer.so."), "{reason}");
                assert!(reason.contains("LD_LIBRARY_PATH"), "{reason}");
            }
            Err(other) => panic!("expected Unavailable, got {other}"),
            Ok(_) => panic!("opened without libnvinfer"),
        }
    }
    assert!(
        !dir.join("cache").exists(),
        "nothing written when TensorRT is missing"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn shim_reports_header_version() {
    // SAFETY: plain getter.
    let v = unsafe { ffi::trts_header_version() };
    assert!(v >= 100000, "TensorRT headers older than 10: {v}");
    assert_eq!(ffi::version_string(101601), "10.16.1");
    assert_eq!(ffi::version_string(110100), "11.1.0");
}

#[test]
fn shim_calls_fail_cleanly_before_load() {
    if libnvinfer_present() {
        return; // another test may have loaded the driver
    }
    // CUDA calls before a successful load return an error status, never crash.
    let mut p = 0u64;
    // SAFETY: out-pointer to a local.
    let err = check(unsafe { ffi::trts_cuda_malloc(&mut p, 16) }).unwrap_err();
    assert_eq!(err.status, Status::Unavailable);
    assert!(err.message.contains("not loaded"), "{}", err.message);
    assert!(device_info(0).is_err());
}

#[test]
fn model_kinds() {
    assert!(matches!(
        model_kind(Path::new("a/yolo.ONNX")),
        Ok(ModelKind::Onnx)
    ));
    assert!(matches!(
        model_kind(Path::new("yolo.plan")),
        Ok(ModelKind::Engine)
    ));
    assert!(matches!(
        model_kind(Path::new("yolo.engine")),
        Ok(ModelKind::Engine)
    ));
    assert!(matches!(
        model_kind(Path::new("yolo.pt")),
        Err(BackendError::ModelInvalid { .. })
    ));
}
