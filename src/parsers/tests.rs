use super::*;
use crate::tensor::{PooledBytes, TensorStorage};

fn params(labels: &[&str]) -> ParseParams {
    ParseParams {
        model: Arc::from("m"),
        labels: labels
            .iter()
            .map(|l| Arc::from(*l))
            .collect::<Vec<Arc<str>>>()
            .into(),
        ..Default::default()
    }
}

/// Builds a channel-major YOLO output `[B, ch, n]` from per-anchor rows `(b, a) -> [ch]`.
fn yolo_tensor(name: &str, b: usize, ch: usize, n: usize, anchors: &[(usize, usize, Vec<f32>)]) -> Tensor {
    let mut v = vec![0.0f32; b * ch * n];
    for (bi, a, vals) in anchors {
        assert_eq!(vals.len(), ch);
        for (c, x) in vals.iter().enumerate() {
            v[bi * ch * n + c * n + a] = *x;
        }
    }
    Tensor::from_f32(name, vec![b, ch, n], &v)
}

fn f16_tensor(name: &str, shape: Vec<usize>, vals: &[f32]) -> Tensor {
    let mut bytes = Vec::new();
    for v in vals {
        bytes.extend_from_slice(&half::f16::from_f32(*v).to_ne_bytes());
    }
    Tensor::host(name, DType::F16, shape, PooledBytes::detached(bytes))
}

fn approx(a: BoxF, b: BoxF) -> bool {
    (a.x0 - b.x0).abs() < 1e-3
        && (a.y0 - b.y0).abs() < 1e-3
        && (a.x1 - b.x1).abs() < 1e-3
        && (a.y1 - b.y1).abs() < 1e-3
}

#[test]
fn parser_kind_names() {
    for k in ParserKind::ALL {
        assert_eq!(ParserKind::parse(k.name()), Some(k));
        assert_eq!(k.name().parse::<ParserKind>().unwrap(), k);
    }
    assert_eq!(ParserKind::parse("YOLO_SEG"), Some(ParserKind::YoloSeg));
    assert!(ParserKind::parse("ssd").is_none());
    assert!("ssd".parse::<ParserKind>().unwrap_err().contains("yolo-seg"));
}

#[test]
fn yolo_exact_letterbox_mapping() {
    // 1280x720 frame into 640x640: scale 0.5, pad_y 140.
    let tr = LetterboxTransform::letterbox(1280, 720, 640, 640);
    assert_eq!((tr.scale_x, tr.pad_x, tr.pad_y), (0.5, 0.0, 140.0));
    // Frame box (100,100)-(300,200) -> model (50,190)-(150,240): cx 100, cy 215, w 100, h 50.
    let out = yolo_tensor(
        "output0",
        1,
        6,
        4,
        &[
            (0, 0, vec![100.0, 215.0, 100.0, 50.0, 0.1, 0.9]),
            (0, 1, vec![300.0, 300.0, 20.0, 20.0, 0.2, 0.1]), // below threshold
            (0, 2, vec![300.0, 300.0, 20.0, 20.0, f32::NAN, f32::INFINITY]), // non-finite scores
            (0, 3, vec![f32::NAN, 300.0, 20.0, 20.0, 0.8, 0.0]), // NaN box
        ],
    );
    let dets = parse(ParserKind::Yolo, &params(&["a", "b"]), &[out], &[tr]).unwrap();
    assert_eq!(dets.len(), 1);
    assert_eq!(dets[0].len(), 1);
    let d = &dets[0][0];
    assert!(
        approx(d.bbox, BoxF::new(100.0, 100.0, 300.0, 200.0)),
        "{:?}",
        d.bbox
    );
    assert_eq!(d.class_id, 1);
    assert_eq!(&*d.label, "b");
    assert_eq!(&*d.model, "m");
    assert_eq!(d.confidence, 0.9);
    assert_eq!(d.object_id, -1);
    assert_eq!(d.query, 0);
    assert!(d.mask_source.is_none() && d.mask.is_none());
}

#[test]
fn yolo_batch_rows_use_their_transform_and_unlabelled_classes_are_numbered() {
    let t0 = LetterboxTransform::letterbox(640, 640, 640, 640);
    let t1 = LetterboxTransform::stretch(1280, 1280, 640, 640);
    let out = yolo_tensor(
        "output0",
        2,
        7,
        2,
        &[
            (0, 1, vec![100.0, 100.0, 20.0, 20.0, 0.0, 0.0, 0.5]),
            (1, 0, vec![100.0, 100.0, 20.0, 20.0, 0.7, 0.0, 0.0]),
        ],
    );
    let dets = parse(ParserKind::Yolo, &params(&["zero"]), &[out], &[t0, t1]).unwrap();
    assert_eq!(dets.len(), 2);
    assert_eq!(dets[0].len(), 1);
    assert!(approx(dets[0][0].bbox, BoxF::new(90.0, 90.0, 110.0, 110.0)));
    assert_eq!(&*dets[0][0].label, "2");
    assert_eq!(dets[0][0].query, 1);
    assert!(approx(dets[1][0].bbox, BoxF::new(180.0, 180.0, 220.0, 220.0)));
    assert_eq!(&*dets[1][0].label, "zero");
}

#[test]
fn yolo_class_aware_nms() {
    let tr = LetterboxTransform::letterbox(640, 640, 640, 640);
    let out = yolo_tensor(
        "output0",
        1,
        6,
        4,
        &[
            (0, 0, vec![100.0, 100.0, 50.0, 50.0, 0.9, 0.0]),
            (0, 1, vec![102.0, 100.0, 50.0, 50.0, 0.8, 0.0]), // same class, overlapping: suppressed
            (0, 2, vec![101.0, 100.0, 50.0, 50.0, 0.0, 0.7]), // other class, overlapping: kept
            (0, 3, vec![400.0, 400.0, 50.0, 50.0, 0.6, 0.0]), // same class, far: kept
        ],
    );
    let p = params(&["a", "b"]);
    let dets = parse(ParserKind::Yolo, &p, std::slice::from_ref(&out), &[tr]).unwrap();
    let got: Vec<(u32, u32)> = dets[0].iter().map(|d| (d.query, d.class_id)).collect();
    assert_eq!(got, vec![(0, 0), (2, 1), (3, 0)]);
    // Sorted by confidence, limited by max_detections.
    let p2 = ParseParams {
        max_detections: 2,
        ..p.clone()
    };
    let dets = parse(ParserKind::Yolo, &p2, std::slice::from_ref(&out), &[tr]).unwrap();
    assert_eq!(dets[0].len(), 2);
    // nms_iou 1.0 disables suppression.
    let p3 = ParseParams { nms_iou: 1.0, ..p };
    let dets = parse(ParserKind::Yolo, &p3, &[out], &[tr]).unwrap();
    assert_eq!(dets[0].len(), 4);
}

#[test]
fn yolo_skips_boxes_outside_the_frame_and_degenerate_boxes() {
    let tr = LetterboxTransform::letterbox(1280, 720, 640, 640);
    let out = yolo_tensor(
        "output0",
        1,
        5,
        4,
        &[
            (0, 0, vec![320.0, 50.0, 40.0, 40.0, 0.9]), // entirely in the top padding
            (0, 1, vec![320.0, 320.0, 0.0, 40.0, 0.9]), // zero width
            (0, 2, vec![320.0, 320.0, -5.0, 40.0, 0.9]), // negative width
            (0, 3, vec![320.0, 320.0, 1e30, 1e30, 0.9]), // huge: clamped to the frame
        ],
    );
    let dets = parse(ParserKind::Yolo, &params(&[]), &[out], &[tr]).unwrap();
    assert_eq!(dets[0].len(), 1);
    assert_eq!(dets[0][0].query, 3);
    assert!(approx(dets[0][0].bbox, BoxF::new(0.0, 0.0, 1280.0, 720.0)));
}

#[test]
fn yolo_f16_path() {
    let tr = LetterboxTransform::letterbox(640, 640, 640, 640);
    // [1, 5, 2] channel-major.
    let vals = [
        100.0, 300.0, // cx
        100.0, 300.0, // cy
        20.0, 40.0, // w
        20.0, 40.0, // h
        0.5, 0.125, // class 0
    ];
    let out = f16_tensor("output0", vec![1, 5, 2], &vals);
    let dets = parse(ParserKind::Yolo, &params(&["x"]), &[out], &[tr]).unwrap();
    assert_eq!(dets[0].len(), 1);
    assert!(approx(dets[0][0].bbox, BoxF::new(90.0, 90.0, 110.0, 110.0)));
    assert_eq!(dets[0][0].confidence, 0.5);
}

#[test]
fn yolo_seg_coefficients() {
    let tr = LetterboxTransform::letterbox(640, 640, 640, 640);
    // 2 classes, 3 prototypes: channels 4 + 2 + 3 = 9.
    let out0 = yolo_tensor(
        "output0",
        1,
        9,
        3,
        &[
            (0, 0, vec![100.0, 100.0, 20.0, 20.0, 0.0, 0.8, 0.5, -1.0, 2.0]),
            (0, 2, vec![300.0, 300.0, 20.0, 20.0, 0.6, 0.0, f32::NAN, 3.0, 4.0]),
        ],
    );
    let protos = Tensor::from_f32("output1", vec![1, 3, 4, 4], &[0.0; 48]);
    let dets = parse(
        ParserKind::YoloSeg,
        &params(&[]),
        &[out0.clone(), protos.clone()],
        &[tr],
    )
    .unwrap();
    assert_eq!(dets[0].len(), 2);
    assert_eq!(dets[0][0].class_id, 1);
    assert_eq!(
        dets[0][0].mask_source,
        Some(MaskSource::Prototype {
            coefficients: vec![0.5, -1.0, 2.0]
        })
    );
    // Non-finite coefficients become 0.
    assert_eq!(
        dets[0][1].mask_source,
        Some(MaskSource::Prototype {
            coefficients: vec![0.0, 3.0, 4.0]
        })
    );
    // Outputs found by name in any order.
    let dets2 = parse(
        ParserKind::YoloSeg,
        &params(&[]),
        &[protos.clone(), out0.clone()],
        &[tr],
    )
    .unwrap();
    assert_eq!(dets, dets2);
    // Protos channel count inconsistent with output0 (needs >= 1 class).
    let protos9 = Tensor::from_f32("output1", vec![1, 6, 1, 1], &[0.0; 6]);
    let err = parse(ParserKind::YoloSeg, &params(&[]), &[out0.clone(), protos9], &[tr]).unwrap_err();
    assert!(
        matches!(err, ParseError::Shape { ref tensor, .. } if tensor == "output0"),
        "{err}"
    );
    // Missing protos.
    let err = parse(ParserKind::YoloSeg, &params(&[]), &[out0], &[tr]).unwrap_err();
    assert!(matches!(err, ParseError::MissingTensor { .. }), "{err}");
    assert!(err.to_string().contains("output1"), "{err}");
}

#[test]
fn detr_softmax_and_masks() {
    let tr = LetterboxTransform::letterbox(1280, 720, 640, 640);
    // 3 queries, 2 classes + no-object.
    let boxes = Tensor::from_f32(
        "boxes",
        vec![1, 3, 4],
        &[
            100.0 / 640.0,
            215.0 / 640.0,
            100.0 / 640.0,
            50.0 / 640.0, // -> frame (100,100)-(300,200)
            0.5,
            0.5,
            0.1,
            0.1, //
            0.5,
            0.5,
            0.1,
            0.1,
        ],
    );
    let logits = Tensor::from_f32(
        "logits",
        vec![1, 3, 3],
        &[
            0.0,
            5.0,
            0.0, // class 1
            0.0,
            0.0,
            9.0, // no object
            f32::NAN,
            0.0,
            0.0, // skipped
        ],
    );
    let masks = Tensor::from_f32("masks", vec![1, 3, 2, 2], &[0.0; 12]);
    let p = params(&["a", "b"]);
    let dets = parse(
        ParserKind::Detr,
        &p,
        &[boxes.clone(), logits.clone(), masks],
        &[tr],
    )
    .unwrap();
    assert_eq!(dets[0].len(), 1);
    let d = &dets[0][0];
    let e5 = 5.0f32.exp();
    assert!((d.confidence - e5 / (e5 + 2.0)).abs() < 1e-6);
    assert_eq!(d.class_id, 1);
    assert_eq!(&*d.label, "b");
    assert_eq!(d.query, 0);
    assert!(
        approx(d.bbox, BoxF::new(100.0, 100.0, 300.0, 200.0)),
        "{:?}",
        d.bbox
    );
    assert_eq!(d.mask_source, Some(MaskSource::Dense { query: 0 }));
    // Without masks: no mask source.
    let dets = parse(ParserKind::Detr, &p, &[boxes.clone(), logits.clone()], &[tr]).unwrap();
    assert_eq!(dets[0][0].mask_source, None);
    // Explicitly named masks must exist.
    let mut p2 = p.clone();
    p2.tensor_names.masks = Some("pred_masks".into());
    let err = parse(ParserKind::Detr, &p2, &[boxes.clone(), logits.clone()], &[tr]).unwrap_err();
    assert!(err.to_string().contains("pred_masks"), "{err}");
    // Mask with the wrong query count.
    let bad_masks = Tensor::from_f32("masks", vec![1, 2, 2, 2], &[0.0; 8]);
    let err = parse(ParserKind::Detr, &p, &[boxes, logits, bad_masks], &[tr]).unwrap_err();
    assert!(
        matches!(err, ParseError::Shape { ref tensor, .. } if tensor == "masks"),
        "{err}"
    );
}

#[test]
fn detr_sigmoid_and_custom_names() {
    let tr = LetterboxTransform::letterbox(640, 640, 640, 640);
    let boxes = Tensor::from_f32(
        "pred_boxes",
        vec![1, 2, 4],
        &[0.5, 0.5, 0.25, 0.25, 0.5, 0.5, 0.25, 0.25],
    );
    let logits = Tensor::from_f32("pred_logits", vec![1, 2, 2], &[-3.0, 2.0, -5.0, -4.0]);
    let mut p = params(&["a", "b"]);
    p.detr_sigmoid = true;
    p.tensor_names = TensorNames {
        boxes: Some("pred_boxes".into()),
        logits: Some("pred_logits".into()),
        ..Default::default()
    };
    // Reversed order: names, not positions, are used.
    let dets = parse(ParserKind::Detr, &p, &[logits, boxes], &[tr]).unwrap();
    assert_eq!(dets[0].len(), 1);
    assert_eq!(dets[0][0].class_id, 1);
    assert!((dets[0][0].confidence - 1.0 / (1.0 + (-2.0f32).exp())).abs() < 1e-6);
    assert!(approx(dets[0][0].bbox, BoxF::new(240.0, 240.0, 400.0, 400.0)));
}

#[test]
fn shape_errors_are_descriptive() {
    let tr = LetterboxTransform::letterbox(640, 640, 640, 640);
    let p = params(&[]);
    // Wrong rank.
    let t = Tensor::from_f32("output0", vec![6, 4], &[0.0; 24]);
    let err = parse(ParserKind::Yolo, &p, &[t], &[tr]).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("output0") && msg.contains("[6, 4]") && msg.contains("[1, 4 + classes, anchors]"),
        "{msg}"
    );
    // Batch mismatch.
    let t = Tensor::from_f32("output0", vec![2, 6, 1], &[0.0; 12]);
    assert!(matches!(
        parse(ParserKind::Yolo, &p, &[t], &[tr]),
        Err(ParseError::Shape { .. })
    ));
    // No class channel.
    let t = Tensor::from_f32("output0", vec![1, 4, 1], &[0.0; 4]);
    assert!(matches!(
        parse(ParserKind::Yolo, &p, &[t], &[tr]),
        Err(ParseError::Shape { .. })
    ));
    // Missing tensor: no outputs at all.
    let err = parse(ParserKind::Yolo, &p, &[], &[tr]).unwrap_err();
    assert!(matches!(err, ParseError::MissingTensor { .. }));
    // Explicit name that does not exist: no positional fallback.
    let mut p2 = p.clone();
    p2.tensor_names.boxes = Some("preds".into());
    let t = Tensor::from_f32("output0", vec![1, 5, 1], &[0.0; 5]);
    let err = parse(ParserKind::Yolo, &p2, std::slice::from_ref(&t), &[tr]).unwrap_err();
    assert!(
        err.to_string().contains("'preds'") && err.to_string().contains("output0 [1, 5, 1]"),
        "{err}"
    );
    // Default name missing: positional fallback.
    let renamed = Tensor {
        name: "predictions".into(),
        ..t
    };
    assert!(parse(ParserKind::Yolo, &p, &[renamed], &[tr]).is_ok());
    // Wrong dtype.
    let t = Tensor::host(
        "output0",
        DType::I64,
        vec![1, 5, 1],
        PooledBytes::detached(vec![0; 40]),
    );
    let err = parse(ParserKind::Yolo, &p, &[t], &[tr]).unwrap_err();
    assert!(matches!(err, ParseError::DType { .. }), "{err}");
    // Bytes inconsistent with the shape.
    let t = Tensor {
        name: "output0".into(),
        dtype: DType::F32,
        shape: vec![1, 5, 1000],
        storage: TensorStorage::Host(Arc::new(PooledBytes::detached(vec![0; 20]))),
    };
    let err = parse(ParserKind::Yolo, &p, &[t], &[tr]).unwrap_err();
    assert!(matches!(err, ParseError::ByteLength { .. }), "{err}");
    // Overflowing shape.
    let t = Tensor {
        name: "output0".into(),
        dtype: DType::F32,
        shape: vec![1, usize::MAX, usize::MAX],
        storage: TensorStorage::Host(Arc::new(PooledBytes::detached(vec![0; 20]))),
    };
    assert!(parse(ParserKind::Yolo, &p, &[t], &[tr]).is_err());
    // Device tensor.
    let t = Tensor {
        name: "output0".into(),
        dtype: DType::F32,
        shape: vec![1, 5, 1],
        storage: TensorStorage::Device {
            ptr: 1,
            len: 20,
            keepalive: Arc::new(()),
        },
    };
    assert!(matches!(
        parse(ParserKind::Yolo, &p, &[t], &[tr]),
        Err(ParseError::NotOnHost { .. })
    ));
    // DETR: logits with one column in softmax mode.
    let boxes = Tensor::from_f32("boxes", vec![1, 2, 4], &[0.5; 8]);
    let logits = Tensor::from_f32("logits", vec![1, 2, 1], &[0.0; 2]);
    let err = parse(ParserKind::Detr, &p, &[boxes.clone(), logits], &[tr]).unwrap_err();
    assert!(err.to_string().contains("logits"), "{err}");
    // DETR: the same tensor cannot be boxes and logits.
    let err = parse(ParserKind::Detr, &p, &[boxes], &[tr]).unwrap_err();
    assert!(matches!(err, ParseError::MissingTensor { .. }), "{err}");
}

/// An empty f32 host tensor (0 bytes) with an arbitrary, possibly huge, shape.
fn empty_tensor(name: &str, shape: Vec<usize>) -> Tensor {
    Tensor {
        name: name.into(),
        dtype: DType::F32,
        shape,
        storage: TensorStorage::Host(Arc::new(PooledBytes::detached(Vec::new()))),
    }
}

/// Regression (cargo fuzz, target `parsers`): a prototype tensor whose prototype count is
/// near `usize::MAX` (0 elements, e.g. `[1, usize::MAX, 0, 0]`) overflowed `4 + protos`.
#[test]
fn yolo_seg_huge_prototype_count_is_a_shape_error() {
    let tr = LetterboxTransform::letterbox(640, 640, 640, 640);
    for p in [usize::MAX, usize::MAX - 3, usize::MAX - 4] {
        let out0 = Tensor::from_f32("output0", vec![1, 6, 1], &[0.0; 6]);
        let protos = empty_tensor("output1", vec![1, p, 0, 0]);
        let e = parse(ParserKind::YoloSeg, &params(&[]), &[out0, protos], &[tr]).unwrap_err();
        assert!(matches!(e, ParseError::Shape { .. }), "{e}");
    }
    // Empty batch: nothing is validated against bytes, the dimensions may be anything.
    let out0 = empty_tensor("output0", vec![0, usize::MAX, usize::MAX]);
    let protos = empty_tensor("output1", vec![0, usize::MAX, usize::MAX, usize::MAX]);
    let _ = parse(ParserKind::YoloSeg, &params(&[]), &[out0, protos], &[]);
}

/// Regression (cargo fuzz, target `parsers`): with an empty batch, `[0, channels, anchors]`
/// holds 0 bytes whatever its other dimensions, and `channels * anchors` overflowed.
#[test]
fn yolo_empty_batch_with_huge_dimensions() {
    let out0 = empty_tensor("output0", vec![0, usize::MAX, usize::MAX]);
    let e = parse(ParserKind::Yolo, &params(&[]), &[out0], &[]).unwrap_err();
    assert!(matches!(e, ParseError::Shape { .. }), "{e}");
}

/// Regression (cargo fuzz, target `parsers`, a hang): `[1, 2^40, 0]` (no anchors, 0 bytes)
/// made the per-class scan loop 2^32 times over empty channels.
#[test]
fn yolo_zero_anchors_with_huge_class_count_returns_at_once() {
    let tr = LetterboxTransform::letterbox(720, 720, 720, 720);
    for ch in [1usize << 40, usize::MAX] {
        let out0 = empty_tensor("output0", vec![1, ch, 0]);
        let start = std::time::Instant::now();
        let frames = parse(ParserKind::Yolo, &params(&[]), &[out0], &[tr]).unwrap();
        assert_eq!(frames.len(), 1);
        assert!(frames[0].is_empty());
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
        let out0 = empty_tensor("output0", vec![1, ch, 0]);
        let protos = empty_tensor("output1", vec![1, 2, 4, 4]);
        let frames = parse(ParserKind::YoloSeg, &params(&[]), &[out0, protos], &[tr]).unwrap();
        assert_eq!(frames, vec![Vec::new()]);
    }
}

#[test]
fn raw_and_empty_batches() {
    let tr = LetterboxTransform::letterbox(640, 640, 640, 640);
    let dets = parse(ParserKind::Raw, &params(&[]), &[], &[tr, tr]).unwrap();
    assert_eq!(dets.len(), 2);
    assert!(dets.iter().all(Vec::is_empty));
    let t = Tensor::from_f32("output0", vec![0, 6, 10], &[]);
    assert_eq!(parse(ParserKind::Yolo, &params(&[]), &[t], &[]).unwrap().len(), 0);
}

#[test]
fn scratch_reuse_gives_same_results() {
    let tr = LetterboxTransform::letterbox(640, 640, 640, 640);
    let out = yolo_tensor(
        "output0",
        1,
        5,
        3,
        &[
            (0, 0, vec![100.0, 100.0, 20.0, 20.0, 0.9]),
            (0, 2, vec![300.0, 100.0, 20.0, 20.0, 0.8]),
        ],
    );
    let mut scratch = ParseScratch::default();
    let a = parse_with(
        &mut scratch,
        ParserKind::Yolo,
        &params(&[]),
        std::slice::from_ref(&out),
        &[tr],
    )
    .unwrap();
    let b = parse_with(&mut scratch, ParserKind::Yolo, &params(&[]), &[out], &[tr]).unwrap();
    assert_eq!(a, b);
    assert_eq!(a[0].len(), 2);
}

/// Deterministic pseudo-random tensors of arbitrary shapes, dtypes and contents: the
/// parsers must return `Ok` or `Err`, never panic.
#[test]
fn fuzz_like_never_panics() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let specials = [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        0.0,
        -0.0,
        1e38,
        -1e38,
        0.5,
        0.9,
        100.0,
        f32::MIN_POSITIVE,
    ];
    let dtypes = [DType::F32, DType::F16, DType::U8, DType::I32, DType::I64];
    for iter in 0..3000 {
        let nout = (next() % 4) as usize;
        let batch = (next() % 3) as usize;
        let mut outputs = Vec::new();
        for oi in 0..nout {
            let rank = (next() % 5) as usize;
            let mut shape: Vec<usize> = (0..rank).map(|_| (next() % 12) as usize).collect();
            if rank > 0 && next() % 2 == 0 {
                shape[0] = batch;
            }
            if next() % 50 == 0 && rank > 1 {
                shape[1] = usize::MAX / 2;
            }
            let dtype = dtypes[(next() % dtypes.len() as u64) as usize];
            let count = checked_count(&shape).unwrap_or(0).min(4096);
            let mut nbytes = count * dtype.size();
            if next() % 10 == 0 {
                nbytes = (next() % 64) as usize;
            }
            let mut bytes = vec![0u8; nbytes];
            if dtype == DType::F32 {
                for c in bytes.chunks_exact_mut(4) {
                    let v = if next() % 3 == 0 {
                        specials[(next() % specials.len() as u64) as usize]
                    } else {
                        (next() % 1000) as f32 - 200.0
                    };
                    c.copy_from_slice(&v.to_ne_bytes());
                }
            } else {
                for b in bytes.iter_mut() {
                    *b = next() as u8;
                }
            }
            let names = ["output0", "output1", "boxes", "logits", "masks", "x"];
            let name = names[(next() as usize + oi) % names.len()];
            let storage = TensorStorage::Host(Arc::new(PooledBytes::detached(bytes)));
            outputs.push(Tensor {
                name: name.into(),
                dtype,
                shape,
                storage,
            });
        }
        let transforms: Vec<LetterboxTransform> = (0..batch)
            .map(|_| match next() % 4 {
                0 => LetterboxTransform::letterbox(1920, 1080, 640, 640),
                1 => LetterboxTransform::stretch(0, 0, 640, 640),
                2 => LetterboxTransform {
                    scale_x: f32::NAN,
                    scale_y: 0.0,
                    pad_x: f32::INFINITY,
                    pad_y: -1.0,
                    frame_w: 0,
                    frame_h: u32::MAX,
                    model_w: 0,
                    model_h: u32::MAX,
                },
                _ => LetterboxTransform::letterbox(640, 480, 320, 320),
            })
            .collect();
        let mut p = params(&["a"]);
        p.conf_threshold = [0.25, 0.0, f32::NAN, -1.0][iter % 4];
        p.nms_iou = [0.45, f32::NAN, 0.0, 2.0][(iter / 4) % 4];
        p.max_detections = [100, 0, 1][iter % 3];
        p.detr_sigmoid = iter % 2 == 0;
        for kind in ParserKind::ALL {
            if let Ok(frames) = parse(kind, &p, &outputs, &transforms) {
                assert_eq!(frames.len(), transforms.len());
                for d in frames.iter().flatten() {
                    assert!(d.confidence.is_finite());
                    assert!(d.bbox.x1 > d.bbox.x0 && d.bbox.y1 > d.bbox.y0);
                }
            }
        }
    }
}

/// End to end with the generated "shapes" models (skipped when absent or when ONNX
/// Runtime is not installed): a red rectangle on gray, letterboxed 1280x720 -> 640x640.
#[cfg(feature = "onnxruntime")]
#[test]
fn generated_models_detect_the_red_rectangle() {
    use crate::backend::onnxruntime::OrtBackend;
    use crate::backend::{BackendOptions, InferenceBackend, InputRef};
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("engines/models");
    if !crate::skip::have_ort() {
        return;
    }
    // Frame 1280x720, red rect (200,100)-(400,300) -> model: /2, +140 on y.
    let tr = LetterboxTransform::letterbox(1280, 720, 640, 640);
    let (s, plane) = (640usize, 640usize * 640);
    let mut img = vec![114.0f32 / 255.0; 3 * plane];
    for y in 140..500 {
        for x in 0..640 {
            let red = (100..200).contains(&x) && (190..290).contains(&y);
            let rgb = if red {
                [220.0, 40.0, 40.0]
            } else {
                [60.0, 60.0, 60.0]
            };
            for c in 0..3 {
                img[c * plane + y * s + x] = rgb[c] / 255.0;
            }
        }
    }
    let images = Tensor::from_f32("images", vec![1, 3, 640, 640], &img);
    let p = params(&["red", "green", "blue", "yellow"]);
    for (file, kind) in [
        ("shapes-yolo.onnx", ParserKind::Yolo),
        ("shapes-yolo-seg.onnx", ParserKind::YoloSeg),
        ("shapes-detr.onnx", ParserKind::Detr),
    ] {
        let path = dir.join(file);
        if !crate::skip::have_model(&path) {
            continue;
        }
        let mut b = OrtBackend::open(&BackendOptions {
            model_path: path,
            max_batch: 4,
            ..Default::default()
        })
        .unwrap();
        let outs = b
            .infer(&[InputRef {
                name: "images",
                tensor: &images,
            }])
            .unwrap();
        let dets = parse(kind, &p, &outs, &[tr]).unwrap();
        assert_eq!(dets[0].len(), 1, "{file}: {:?}", dets[0]);
        let d = &dets[0][0];
        assert_eq!(&*d.label, "red", "{file}");
        assert!(
            approx(d.bbox, BoxF::new(200.0, 100.0, 400.0, 300.0)),
            "{file}: {:?}",
            d.bbox
        );
        assert!(d.confidence > 0.5, "{file}: {}", d.confidence);
        match kind {
            ParserKind::YoloSeg => assert!(
                matches!(&d.mask_source, Some(MaskSource::Prototype { coefficients }) if coefficients.len() == 32)
            ),
            ParserKind::Detr => assert_eq!(d.mask_source, Some(MaskSource::Dense { query: 0 })),
            _ => assert!(d.mask_source.is_none()),
        }
    }
}

#[test]
fn dense_outputs_are_checked_and_shared_per_frame() {
    use crate::geometry::LetterboxTransform;
    let tr = [
        LetterboxTransform::letterbox(64, 48, 8, 8),
        LetterboxTransform::letterbox(48, 64, 8, 8),
    ];
    let names = TensorNames::default();
    let model: Arc<str> = Arc::from("depth");
    let vals: Vec<f32> = (0..2 * 8 * 8).map(|i| i as f32 / 4.0).collect();
    // [B, h, w] f16: converted to f32 once, one map per frame on its own row.
    let t = f16_tensor("depth", vec![2, 8, 8], &vals);
    let maps = dense::parse_dense(&model, &names, std::slice::from_ref(&t), &tr).unwrap();
    assert_eq!(maps.len(), 2);
    assert_eq!((maps[1].row, maps[1].channels, maps[1].height), (1, 1, 8));
    assert_eq!(maps[1].channel(0).unwrap(), &vals[64..]);
    assert!(maps[1].device.is_none() && maps[1].summary.is_none());
    // Frame 0 is 64x48 letterboxed into 8x8: rows 1..7 cover it.
    let (lo, mean, hi) = maps[0].stats().unwrap();
    assert_eq!((lo, hi), (2.0, 13.75));
    assert!((mean - 7.875).abs() < 1e-6);
    // A producer's summary takes precedence over the host computation.
    let mut m = maps[0].clone();
    m.summary = Some((1.0, 2.0, 3.0));
    assert_eq!(m.stats(), Some((1.0, 2.0, 3.0)));
    assert_eq!(m.host_stats(), maps[0].stats());
    // Wrong batch, rank or element type; device tensors are not readable here but their
    // layout is.
    let err = dense::parse_dense(&model, &names, std::slice::from_ref(&t), &tr[..1]).unwrap_err();
    assert!(matches!(err, ParseError::Shape { .. }), "{err}");
    let flat = Tensor::from_f32("depth", vec![128], &vals);
    assert!(matches!(
        dense::parse_dense(&model, &names, &[flat], &tr),
        Err(ParseError::Shape { .. })
    ));
    let ints = Tensor::host(
        "depth",
        DType::I32,
        vec![2, 8, 8],
        PooledBytes::detached(vec![0; 512]),
    );
    assert!(matches!(
        dense::dense_output(&names, std::slice::from_ref(&ints), 2),
        Err(ParseError::DType { .. })
    ));
    let dev = Tensor {
        storage: TensorStorage::Device {
            ptr: 0x1000,
            len: 256,
            keepalive: Arc::new(()),
        },
        ..t
    };
    let (found, layout) = dense::dense_output(&names, std::slice::from_ref(&dev), 2).unwrap();
    assert_eq!((found.name.as_str(), layout), ("depth", (1, 8, 8)));
    assert!(matches!(
        dense::parse_dense(&model, &names, &[dev], &tr),
        Err(ParseError::NotOnHost { .. })
    ));
}
