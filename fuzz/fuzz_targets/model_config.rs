//! Arbitrary bytes → (lossy) UTF-8 → `ModelConfig::from_toml_str`: must return `Ok` or
//! `Err`, never panic. Run twice per input:
//!
//! * against `/nonexistent-base` (every relative model path is missing, so this mostly
//!   exercises the TOML layer and the `[model]` checks);
//! * against a fixture directory holding empty `models/*.onnx`, `*.engine` and a labels
//!   file under the names the seeds use, so that mutated seeds get past the file-existence
//!   checks into the `[input]` / `[output]` validation.
//!
//! A successful result must satisfy the ranges documented on `ModelConfig`.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use gsttrtvision::config::{ModelConfig, MAX_BATCH_LIMIT, MAX_DETECTIONS_LIMIT};
use libfuzzer_sys::fuzz_target;

fn fixture() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("trtvision-fuzz-config-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("models")).unwrap();
        for f in [
            "models/shapes-yolo.onnx",
            "models/shapes-yolo-seg.onnx",
            "models/shapes-detr.onnx",
            "models/m.onnx",
            "m.onnx",
            "e.engine",
            "models/e.engine",
        ] {
            std::fs::write(dir.join(f), b"").unwrap();
        }
        std::fs::write(dir.join("shapes.txt"), "red\ngreen\nblue\nyellow\n").unwrap();
        std::fs::write(dir.join("labels.txt"), "# c\n a \r\n\nb\n").unwrap();
        dir
    })
}

fn check(cfg: &ModelConfig) {
    let p = &cfg.preprocess;
    assert!(p.validate().is_ok(), "{p:?}");
    assert!((1..=MAX_BATCH_LIMIT).contains(&cfg.max_batch));
    assert!(cfg.max_detections <= MAX_DETECTIONS_LIMIT);
    assert!(
        (0.0..=1.0).contains(&cfg.conf_threshold),
        "{}",
        cfg.conf_threshold
    );
    assert!((0.0..=1.0).contains(&cfg.nms_iou), "{}", cfg.nms_iou);
    assert!(cfg.model_path().is_absolute());
    assert!(cfg.parser.is_some());
    let pp = cfg.parse_params();
    assert_eq!(pp.labels.len(), cfg.labels.len());
}

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    if let Ok(cfg) = ModelConfig::from_toml_str(&s, "/nonexistent-base") {
        check(&cfg);
    }
    if let Ok(cfg) = ModelConfig::from_toml_str(&s, fixture()) {
        check(&cfg);
    }
});
