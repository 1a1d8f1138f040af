use std::path::{Path, PathBuf};

use super::*;
use crate::backend::BackendKind;
use crate::parsers::{ParserKind, TensorNames};
use crate::tensor::DType;

/// A scratch directory with `models/m.onnx`, `labels.txt` and `e.engine`.
fn fixture(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("trtvision-config-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("models")).unwrap();
    std::fs::write(dir.join("models/m.onnx"), b"onnx").unwrap();
    std::fs::write(dir.join("e.engine"), b"engine").unwrap();
    std::fs::write(
        dir.join("labels.txt"),
        "# classes\nred\n\n  green  \n#blue\nyellow\n",
    )
    .unwrap();
    dir
}

const FULL: &str = r#"
[model]
name = "shapes-yolo"
onnx = "models/m.onnx"
labels = "labels.txt"
max-batch = 8
backend = "onnxruntime-cpu"
[input]
name = "images"
width = 640
height = 480
dtype = "f16"
resize = "stretch"
pad-value = 0
color = "bgr"
scale = 1
mean = [0.485, 0.456, 0.406]
std = [0.229, 0.224, 0.225]
[output]
parser = "yolo-seg"
conf-threshold = 0.5
nms-iou = 0.6
max-detections = 50
boxes = "out0"
protos = "out1"
logits = "lg"
masks = "mk"
detr-sigmoid = true
"#;

const MINIMAL: &str = r#"
[model]
onnx = "models/m.onnx"
[input]
width = 320
height = 320
[output]
parser = "detr"
"#;

#[test]
fn full_config_from_file() {
    let dir = fixture("full");
    let path = dir.join("cfg.toml");
    std::fs::write(&path, FULL).unwrap();
    let c = ModelConfig::from_file(&path).unwrap();
    assert_eq!(c.name, "shapes-yolo");
    assert_eq!(c.model, ModelFile::Onnx(dir.join("models/m.onnx")));
    assert!(c.model_path().is_absolute());
    assert_eq!(c.labels_path, Some(dir.join("labels.txt")));
    assert_eq!(c.labels, vec!["red", "green", "yellow"]);
    assert_eq!(c.max_batch, 8);
    assert_eq!(c.backend, Some(BackendKind::OnnxRuntimeCpu));
    assert_eq!(c.input_name.as_deref(), Some("images"));
    let p = c.preprocess;
    assert_eq!((p.width, p.height, p.dtype), (640, 480, DType::F16));
    assert_eq!(
        (p.resize, p.pad_value, p.color, p.scale),
        (ResizeMode::Stretch, 0, ColorOrder::Bgr, 1.0)
    );
    assert_eq!(p.mean, [0.485, 0.456, 0.406]);
    assert_eq!(p.std, [0.229, 0.224, 0.225]);
    assert_eq!(c.parser, Some(ParserKind::YoloSeg));
    assert_eq!((c.conf_threshold, c.nms_iou, c.max_detections), (0.5, 0.6, 50));
    assert_eq!(c.tensor_names.boxes.as_deref(), Some("out0"));
    assert_eq!(c.tensor_names.protos.as_deref(), Some("out1"));
    assert_eq!(c.tensor_names.logits.as_deref(), Some("lg"));
    assert_eq!(c.tensor_names.masks.as_deref(), Some("mk"));
    assert!(c.detr_sigmoid);
    assert_eq!(c.source, Some(path));
    let pp = c.parse_params();
    assert_eq!(&*pp.model, "shapes-yolo");
    assert_eq!(pp.labels.len(), 3);
    assert_eq!(&*pp.label(1), "green");
}

#[test]
fn defaults() {
    let dir = fixture("min");
    let c = ModelConfig::from_toml_str(MINIMAL, &dir).unwrap();
    assert_eq!(c.name, "m");
    assert_eq!(c.max_batch, 16);
    assert_eq!(c.backend, None);
    assert_eq!(c.input_name, None);
    assert!(c.labels.is_empty() && c.labels_path.is_none());
    let d = PreprocessConfig::default();
    assert_eq!(
        c.preprocess,
        PreprocessConfig {
            width: 320,
            height: 320,
            ..d
        }
    );
    assert_eq!(
        (d.dtype, d.resize, d.pad_value, d.color),
        (DType::F32, ResizeMode::Letterbox, 114, ColorOrder::Rgb)
    );
    assert_eq!((d.scale, d.mean, d.std), (1.0 / 255.0, [0.0; 3], [1.0; 3]));
    assert_eq!(c.parser, Some(ParserKind::Detr));
    assert_eq!((c.conf_threshold, c.nms_iou, c.max_detections), (0.25, 0.45, 100));
    assert_eq!(c.tensor_names, TensorNames::default());
    assert!(!c.detr_sigmoid);
    // Engine instead of ONNX.
    let e = MINIMAL.replace(
        "onnx = \"models/m.onnx\"",
        "engine = \"e.engine\"\nbackend = \"tensorrt\"",
    );
    let c = ModelConfig::from_toml_str(&e, &dir).unwrap();
    assert_eq!(c.model, ModelFile::Engine(dir.join("e.engine")));
}

fn err_of(toml: &str, dir: &Path) -> String {
    let e = ModelConfig::from_toml_str(toml, dir).unwrap_err();
    e.to_string()
}

#[test]
fn validation_messages() {
    let dir = fixture("bad");
    let cases: Vec<(String, &str)> = vec![
        (
            MINIMAL.replace("[output]\nparser = \"detr\"\n", ""),
            "missing field `output`",
        ),
        (MINIMAL.replace("width = 320\n", ""), "missing field `width`"),
        (
            MINIMAL.replace("parser = \"detr\"", "parser = \"ssd\""),
            "unknown [output] parser 'ssd'",
        ),
        (
            MINIMAL.replace("parser = \"detr\"", "parser = \"yolo\"\ncolour = \"rgb\""),
            "unknown field `colour`",
        ),
        (
            MINIMAL.replace("width = 320", "width = 0"),
            "[input] width must be between 1 and 16384",
        ),
        (
            MINIMAL.replace("height = 320", "height = 16385"),
            "[input] height must be between 1 and 16384",
        ),
        (
            MINIMAL.replace("width = 320", "width = -5"),
            "width must be between",
        ),
        (
            MINIMAL.replace("height = 320", "height = 320\nstd = [1.0, 0.0, 1.0]"),
            "[input] std must hold finite, non-zero",
        ),
        (
            MINIMAL.replace("height = 320", "height = 320\nstd = [1.0, 1.0]"),
            "std must hold 3 numbers",
        ),
        (
            MINIMAL.replace("height = 320", "height = 320\ndtype = \"f64\""),
            "unknown [input] dtype 'f64'",
        ),
        (
            MINIMAL.replace("height = 320", "height = 320\ndtype = \"u8\""),
            "expected f32 or f16",
        ),
        (
            MINIMAL.replace("height = 320", "height = 320\nresize = \"crop\""),
            "unknown [input] resize 'crop'",
        ),
        (
            MINIMAL.replace("height = 320", "height = 320\ncolor = \"yuv\""),
            "unknown [input] color 'yuv'",
        ),
        (
            MINIMAL.replace("height = 320", "height = 320\npad-value = 256"),
            "pad-value must be an integer between 0 and 255",
        ),
        (
            MINIMAL.replace("height = 320", "height = 320\nscale = 0"),
            "scale must be a finite, non-zero",
        ),
        (
            MINIMAL.replace("height = 320", "height = 320\nscale = nan"),
            "scale must be a finite",
        ),
        (
            MINIMAL.replace("parser = \"detr\"", "parser = \"detr\"\nconf-threshold = 1.5"),
            "conf-threshold must be a number between 0 and 1",
        ),
        (
            MINIMAL.replace("parser = \"detr\"", "parser = \"detr\"\nnms-iou = -0.1"),
            "nms-iou must be",
        ),
        (
            MINIMAL.replace("parser = \"detr\"", "parser = \"detr\"\nmax-detections = -1"),
            "max-detections must be an integer",
        ),
        (
            MINIMAL.replace("parser = \"detr\"", "parser = \"detr\"\nboxes = \"\""),
            "[output] boxes must not be empty",
        ),
        (
            MINIMAL.replace("[model]", "[model]\nmax-batch = 0"),
            "max-batch must be an integer between 1 and 4096",
        ),
        (
            MINIMAL.replace("[model]", "[model]\nbackend = \"gpu\""),
            "unknown backend 'gpu'",
        ),
        (
            MINIMAL.replace("[model]", "[model]\nbackend = \"tensorrt\""),
            "backend \"tensorrt\" runs serialized engines",
        ),
        (
            MINIMAL.replace("onnx = \"models/m.onnx\"", "engine = \"e.engine\""),
            "",
        ),
        (
            MINIMAL.replace(
                "onnx = \"models/m.onnx\"",
                "engine = \"e.engine\"\nbackend = \"onnxruntime-cuda\"",
            ),
            "needs backend = \"tensorrt\"",
        ),
        (
            MINIMAL.replace(
                "onnx = \"models/m.onnx\"",
                "onnx = \"models/m.onnx\"\nengine = \"e.engine\"",
            ),
            "either onnx or engine, not both",
        ),
        (
            MINIMAL.replace("onnx = \"models/m.onnx\"", "name = \"x\""),
            "must name the model file",
        ),
        (
            MINIMAL.replace("models/m.onnx", "models/missing.onnx"),
            "the ONNX model file",
        ),
        (
            MINIMAL.replace("[model]", "[model]\nlabels = \"nope.txt\""),
            "the labels file",
        ),
        (MINIMAL.replace("[input]", "[inputs]"), "inputs"),
        ("".to_string(), "missing field `model`"),
        ("[model\nonnx=".to_string(), "not a valid model config"),
        (MINIMAL.replace("width = 320", "width = \"320\""), "invalid type"),
    ];
    for (toml, want) in cases {
        if want.is_empty() {
            assert!(ModelConfig::from_toml_str(&toml, &dir).is_ok(), "{toml}");
            continue;
        }
        let msg = err_of(&toml, &dir);
        assert!(
            msg.contains(want),
            "expected '{want}' in: {msg}\n--- for:\n{toml}"
        );
    }
    // Missing files are named by absolute path.
    let msg = err_of(&MINIMAL.replace("models/m.onnx", "models/missing.onnx"), &dir);
    assert!(
        msg.contains(&dir.join("models/missing.onnx").display().to_string()),
        "{msg}"
    );
}

#[test]
fn file_errors() {
    let e = ModelConfig::from_file("/nonexistent/cfg.toml").unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }));
    assert!(e.to_string().contains("/nonexistent/cfg.toml"), "{e}");
    let dir = fixture("files");
    let e = ModelConfig::from_file(&dir).unwrap_err();
    assert!(e.to_string().contains("not a regular file"), "{e}");
    let bin = dir.join("bin.toml");
    std::fs::write(&bin, [0xffu8, 0xfe, 0x00]).unwrap();
    assert!(ModelConfig::from_file(&bin)
        .unwrap_err()
        .to_string()
        .contains("UTF-8"));
    // Errors from a file name the file.
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, MINIMAL.replace("width = 320", "width = 0")).unwrap();
    assert!(ModelConfig::from_file(&bad)
        .unwrap_err()
        .to_string()
        .starts_with(&bad.display().to_string()));
}

#[test]
fn labels_file() {
    let dir = fixture("labels");
    assert_eq!(
        load_labels(&dir.join("labels.txt")).unwrap(),
        vec!["red", "green", "yellow"]
    );
    assert!(matches!(
        load_labels(&dir.join("none.txt")),
        Err(ConfigError::Read { .. })
    ));
    assert_eq!(parse_labels("a\r\nb c\r\n\r\n"), vec!["a", "b c"]);
}

#[test]
fn for_onnx_defaults() {
    let dir = fixture("bare");
    let c = ModelConfig::for_onnx(dir.join("models/m.onnx")).unwrap();
    assert_eq!(c.name, "m");
    assert_eq!(c.parser, None);
    assert_eq!(c.preprocess, PreprocessConfig::default());
    assert_eq!(c.max_batch, 16);
    let e = ModelConfig::for_onnx(dir.join("models/x.onnx")).unwrap_err();
    assert!(
        e.to_string().contains("x.onnx") && e.to_string().contains("does not exist"),
        "{e}"
    );
}

#[test]
fn preprocess_helpers() {
    let p = PreprocessConfig {
        mean: [0.5, 0.0, 0.0],
        std: [0.5, 1.0, 2.0],
        ..Default::default()
    };
    let a = p.affine();
    let px = 255.0f32;
    for (c, (mul, add)) in a.iter().enumerate() {
        let want = (px * p.scale - p.mean[c]) / p.std[c];
        assert!((px * mul + add - want).abs() < 1e-6);
    }
    let t = p.transform(1280, 720);
    assert_eq!((t.scale_x, t.pad_y), (0.5, 140.0));
    let s = PreprocessConfig {
        resize: ResizeMode::Stretch,
        ..p
    }
    .transform(1280, 720);
    assert_eq!((s.scale_x, s.pad_y), (0.5, 0.0));
    assert!(PreprocessConfig { width: 0, ..p }.validate().is_err());
    assert!(p.validate().is_ok());
    assert_eq!(ResizeMode::parse("STRETCH"), Some(ResizeMode::Stretch));
    assert_eq!(ColorOrder::parse("bgr").map(ColorOrder::name), Some("bgr"));
}

/// Arbitrary text and mutated configs never panic.
#[test]
fn fuzz_like_never_panics() {
    let dir = fixture("fuzz");
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let pieces = [
        "[model]",
        "[input]",
        "[output]",
        "onnx = \"models/m.onnx\"",
        "width = 1e400",
        "width = 9223372036854775807",
        "height = -9223372036854775808",
        "scale = inf",
        "mean = [nan]",
        "std = []",
        "parser = \"yolo\"",
        "labels = \"labels.txt\"",
        "labels = \"/\"",
        "engine = \"\\u0000\"",
        "pad-value = 1e3",
        "=",
        "[[model]]",
        "max-batch = 99999999999",
        "name = \"\"",
        "\u{feff}",
        "dtype = 3",
        "conf-threshold = nan",
    ];
    for _ in 0..2000 {
        let mut s = String::new();
        for _ in 0..(next() % 12) {
            s.push_str(pieces[(next() % pieces.len() as u64) as usize]);
            s.push('\n');
        }
        let _ = ModelConfig::from_toml_str(&s, &dir);
        let mut b: Vec<u8> = FULL.as_bytes().to_vec();
        for _ in 0..(next() % 4) {
            let i = (next() as usize) % b.len();
            b[i] = next() as u8;
        }
        let _ = ModelConfig::from_toml_str(&String::from_utf8_lossy(&b), &dir);
    }
}

/// The configs shipped in `engines/` load (skipped when the models are not generated).
#[test]
fn engines_configs_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("engines");
    for (file, parser) in [
        ("shapes-yolo.toml", ParserKind::Yolo),
        ("shapes-yolo-seg.toml", ParserKind::YoloSeg),
        ("shapes-detr.toml", ParserKind::Detr),
    ] {
        let path = dir.join(file);
        if !crate::skip::have_model(&path) {
            continue;
        }
        match ModelConfig::from_file(&path) {
            Ok(c) => {
                assert_eq!(c.parser, Some(parser));
                assert_eq!(c.labels, vec!["red", "green", "blue", "yellow"]);
                assert_eq!(c.input_name.as_deref(), Some("images"));
                assert_eq!((c.preprocess.width, c.preprocess.height), (640, 640));
            }
            Err(ConfigError::MissingFile { path, .. }) => crate::skip::skip(
                crate::skip::REQUIRE_ORT,
                &format!("{file}: {path} is missing (run engines/generate_models.py)"),
            ),
            Err(e) => panic!("{e}"),
        }
    }
}
