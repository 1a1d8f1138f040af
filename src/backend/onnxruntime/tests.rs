use super::session::trt_profile;
use super::*;
use crate::tensor::PooledBytes;
use std::sync::Arc;

/// `y = x + [1, 2, 3]` (f32 [batch, 3]) and `s = Shape(x)` (i64 [2]), opset 13.
/// Generated once with the `onnx` Python package.
const ADD_MODEL: &[u8] = &[
    8, 8, 18, 0, 58, 126, 10, 14, 10, 1, 120, 10, 1, 99, 18, 1, 121, 34, 3, 65, 100, 100, 10, 13, 10, 1, 120,
    18, 1, 115, 34, 5, 83, 104, 97, 112, 101, 18, 1, 116, 42, 21, 8, 3, 16, 1, 34, 12, 0, 0, 128, 63, 0, 0,
    0, 64, 0, 0, 64, 64, 66, 1, 99, 90, 24, 10, 1, 120, 18, 19, 10, 17, 8, 1, 18, 13, 10, 7, 18, 5, 98, 97,
    116, 99, 104, 10, 2, 8, 3, 98, 24, 10, 1, 121, 18, 19, 10, 17, 8, 1, 18, 13, 10, 7, 18, 5, 98, 97, 116,
    99, 104, 10, 2, 8, 3, 98, 15, 10, 1, 115, 18, 10, 10, 8, 8, 7, 18, 4, 10, 2, 8, 2, 66, 4, 10, 0, 16, 13,
];

/// `h2 = h + h` (f16 [n, 2]), opset 13.
const ADD16_MODEL: &[u8] = &[
    8, 8, 18, 0, 58, 65, 10, 15, 10, 1, 104, 10, 1, 104, 18, 2, 104, 50, 34, 3, 65, 100, 100, 18, 1, 116, 90,
    20, 10, 1, 104, 18, 15, 10, 13, 8, 10, 18, 9, 10, 3, 18, 1, 110, 10, 2, 8, 2, 98, 21, 10, 2, 104, 50, 18,
    15, 10, 13, 8, 10, 18, 9, 10, 3, 18, 1, 110, 10, 2, 8, 2, 66, 4, 10, 0, 16, 13,
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
    for _ in 0..fixed_batch::FILL_STARTUP + fixed_batch::FILL_WINDOW {
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
    let y = output_to_host(&b.host_outputs, 0, "y", outputs.get("y").unwrap(), None).unwrap();
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
        let mut b = OrtBackend::open(&cpu_opts(m.clone())).unwrap_or_else(|e| panic!("{}: {e}", m.display()));
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
