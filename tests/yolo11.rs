//! The YOLO11n / YOLO11n-seg architecture models (random weights, written by
//! `engines/generate_models.py --yolo11`): their configs load, the ONNX Runtime backend sees
//! the ultralytics export layout, batch 2 gives the right shapes and values that follow from
//! the Detect head's decoding, and a pipeline runs through trtinfer.

mod common;

use gsttrtvision::backend::{self, BackendKind, BackendOptions, InferenceBackend, InputRef, TensorSpec};
use gsttrtvision::batch::{BatchMeta, MaskTensor};
use gsttrtvision::config::ModelConfig;
use gsttrtvision::tensor::{DType, Tensor};

const SIZE: usize = 640;
const ANCHORS: usize = 8400;
const CLASSES: usize = 80;
const MASKS: usize = 32;
const REG_MAX: f32 = 16.0;

fn open(model: &str) -> Box<dyn InferenceBackend> {
    let opts = BackendOptions {
        kind: BackendKind::OnnxRuntimeCpu,
        model_path: common::model(model),
        max_batch: 16,
        ..Default::default()
    };
    backend::open(&opts).unwrap_or_else(|e| panic!("{model} does not open: {e}"))
}

fn spec(name: &str, shape: &[Option<usize>]) -> TensorSpec {
    TensorSpec {
        name: name.into(),
        dtype: DType::F32,
        shape: shape.to_vec(),
    }
}

/// `n` images of deterministic pseudo-random pixels in [0, 1).
fn images(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    (0..n * 3 * SIZE * SIZE)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect()
}

fn run(b: &mut dyn InferenceBackend, n: usize, pixels: &[f32]) -> Vec<Tensor> {
    let input = Tensor::from_f32("images", vec![n, 3, SIZE, SIZE], pixels);
    b.infer(&[InputRef {
        name: "images",
        tensor: &input,
    }])
    .expect("inference runs")
}

/// Anchor centre (model pixels) and stride of every anchor, in the Detect head's order.
fn anchors() -> Vec<(f32, f32, f32)> {
    let mut out = Vec::with_capacity(ANCHORS);
    for stride in [8usize, 16, 32] {
        let n = SIZE / stride;
        for y in 0..n {
            for x in 0..n {
                let s = stride as f32;
                out.push(((x as f32 + 0.5) * s, (y as f32 + 0.5) * s, s));
            }
        }
    }
    out
}

/// Checks `output0` of a batch: finite, class scores are sigmoids, boxes are what the DFL
/// decoding can produce (ltrb distances in 0..15 grid cells around the anchor).
fn check_predictions(v: &[f32], batch: usize, rows: usize) {
    assert_eq!(v.len(), batch * rows * ANCHORS);
    assert!(v.iter().all(|x| x.is_finite()), "non-finite output0 values");
    let anchors = anchors();
    for img in v.chunks_exact(rows * ANCHORS) {
        let row = |r: usize| &img[r * ANCHORS..(r + 1) * ANCHORS];
        for (a, &(ax, ay, s)) in anchors.iter().enumerate() {
            let (cx, cy, w, h) = (row(0)[a], row(1)[a], row(2)[a], row(3)[a]);
            let reach = (REG_MAX - 1.0) * s;
            assert!((0.0..=2.0 * reach + 1e-3).contains(&w), "anchor {a}: width {w}");
            assert!((0.0..=2.0 * reach + 1e-3).contains(&h), "anchor {a}: height {h}");
            assert!(
                (cx - ax).abs() <= reach / 2.0 + 1e-3,
                "anchor {a}: cx {cx} vs {ax}"
            );
            assert!(
                (cy - ay).abs() <= reach / 2.0 + 1e-3,
                "anchor {a}: cy {cy} vs {ay}"
            );
        }
        for r in 4..4 + CLASSES {
            assert!(
                row(r).iter().all(|&p| p > 0.0 && p < 1.0),
                "class row {r} is not a sigmoid"
            );
        }
    }
}

fn check_model(model: &str, seg: bool) {
    let mut b = open(model);
    let rows = 4 + CLASSES + if seg { MASKS } else { 0 };
    assert_eq!(
        b.inputs(),
        &[spec("images", &[None, Some(3), Some(SIZE), Some(SIZE)])]
    );
    let mut want = vec![spec("output0", &[None, Some(rows), Some(ANCHORS)])];
    if seg {
        want.push(spec(
            "output1",
            &[None, Some(MASKS), Some(SIZE / 4), Some(SIZE / 4)],
        ));
    }
    assert_eq!(b.outputs(), want.as_slice());

    let pixels = images(2, 7);
    let out = run(b.as_mut(), 2, &pixels);
    assert_eq!(out.len(), want.len());
    assert_eq!(out[0].shape, vec![2, rows, ANCHORS]);
    let preds = out[0].to_f32().expect("host f32 output0");
    check_predictions(&preds, 2, rows);
    if seg {
        assert_eq!(out[1].shape, vec![2, MASKS, SIZE / 4, SIZE / 4]);
        let protos = out[1].to_f32().expect("host f32 output1");
        assert!(protos.iter().all(|x| x.is_finite()), "non-finite prototypes");
    }
    // The two images differ, and image 0 gives the same predictions alone as in the batch.
    let per_image = rows * ANCHORS;
    assert_ne!(preds[..per_image], preds[per_image..]);
    let single = run(b.as_mut(), 1, &pixels[..3 * SIZE * SIZE]);
    let single = single[0].to_f32().expect("host f32 output0");
    for (i, (x, y)) in single.iter().zip(&preds[..per_image]).enumerate() {
        assert!(
            (x - y).abs() <= 1e-3 * (1.0 + x.abs()),
            "value {i}: batch 1 {x}, batch 2 {y}"
        );
    }
}

#[test]
fn configs_load_with_coco_labels() {
    for (file, parser) in [("yolo11n.toml", "yolo"), ("yolo11n-seg.toml", "yolo-seg")] {
        let cfg = ModelConfig::from_file(common::engines_dir().join(file))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(cfg.labels.len(), CLASSES, "{file}");
        assert_eq!(cfg.labels[0], "person");
        assert_eq!(cfg.labels[79], "toothbrush");
        assert_eq!(cfg.parser.map(|p| p.name()), Some(parser), "{file}");
        assert_eq!((cfg.preprocess.width, cfg.preprocess.height), (640, 640));
    }
}

#[test]
fn yolo11n_detect_layout_and_batch_2() {
    common::init();
    check_model("yolo11n.onnx", false);
}

#[test]
fn yolo11n_seg_layout_and_batch_2() {
    common::init();
    check_model("yolo11n-seg.onnx", true);
}

#[test]
fn yolo11n_seg_runs_through_trtinfer() {
    common::init();
    let c = common::cfg("yolo11n-seg.toml");
    let p = common::parse(&format!(
        "trtmux name=m batch-size=2 ! trtpreprocess config-file={c} ! trtinfer model={c} keep-input=true \
         ! appsink name=out sync=false \
         trtscenesrc camera=0 num-buffers=2 ! video/x-raw,format=NV12,width=640,height=480 ! m.sink_0 \
         trtscenesrc camera=1 num-buffers=2 ! video/x-raw,format=I420,width=1280,height=720 ! m.sink_1"
    ));
    let out = common::collect(&p, "out");
    common::run_to_end(&p, gst::ClockTime::from_seconds(120)).expect("pipeline runs");
    let out = out.lock().unwrap();
    assert_eq!(out.len(), 2, "two batches of two frames");
    for buf in out.iter() {
        let batch = buf.meta::<BatchMeta>().expect("batch meta").batch().clone();
        assert_eq!(batch.slots.len(), 2);
        // keep-input=true: the input stays on the batch for this check.
        assert_eq!(batch.inputs[0].tensor.shape, vec![2, 3, SIZE, SIZE]);
        let outputs = batch
            .outputs
            .iter()
            .find(|o| &*o.model == "yolo11n-seg")
            .expect("mask tensors");
        match &outputs.masks {
            MaskTensor::Prototypes(t) => assert_eq!(t.shape, vec![2, MASKS, SIZE / 4, SIZE / 4]),
            other => panic!("expected prototypes, got {other:?}"),
        }
    }
}
