use super::select::{OutputIndex, RowTarget, Selector};
use super::Route;
use crate::config::promptseg::BoxFormat;
use crate::geometry::LetterboxTransform;
use crate::tensor::Tensor;
use std::sync::Arc;

fn logit(p: f32) -> f32 {
    (p / (1.0 - p)).ln()
}

fn selector(format: BoxFormat, top_k: usize) -> Selector {
    Selector {
        device_id: 0,
        model: Arc::from("m"),
        classes: vec![(7, Arc::from("cat")), (9, Arc::from("dog"))],
        outputs: OutputIndex {
            boxes: 0,
            logits: 1,
            presence: Some(2),
            masks: 3,
        },
        box_format: format,
        score_threshold: 0.5,
        mask_threshold: 0.5,
        top_k,
        #[cfg(feature = "cuda")]
        gpu: Default::default(),
    }
}

/// Two rows, three queries, 8x8 masks. Row 0: presence 0.9, queries 0.95 / 0.4 / 0.8;
/// row 1: presence 0.1 (nothing passes).
fn outputs(boxes: [[f32; 4]; 3]) -> Vec<Tensor> {
    let (rows, q, m) = (2usize, 3usize, 8usize);
    let b: Vec<f32> = (0..rows).flat_map(|_| boxes.iter().flatten().copied()).collect();
    let l: Vec<f32> = (0..rows)
        .flat_map(|_| [logit(0.95), logit(0.4), logit(0.8)])
        .collect();
    let p = [logit(0.9), logit(0.1)];
    let mut masks = vec![-5.0f32; rows * q * m * m];
    // Row 0, query 0: the left half of the input.
    for y in 0..m {
        for x in 0..m / 2 {
            masks[y * m + x] = 5.0;
        }
    }
    vec![
        Tensor::from_f32("pred_boxes", vec![rows, q, 4], &b),
        Tensor::from_f32("pred_logits", vec![rows, q], &l),
        Tensor::from_f32("presence_logits", vec![rows, 1], &p),
        Tensor::from_f32("pred_masks", vec![rows, q, m, m], &masks),
    ]
}

#[test]
fn scores_threshold_top_k_and_boxes() {
    // 200x100 frame letterboxed into 64x64: scale 0.32, pad_y 16.
    let t = [LetterboxTransform::letterbox(200, 100, 64, 64); 2];
    let outs = outputs([
        [0.25, 0.5, 0.5, 0.5],
        [0.5, 0.5, 0.2, 0.2],
        [0.75, 0.5, 0.25, 0.25],
    ]);
    let targets = [
        RowTarget {
            row: 0,
            frame: 1,
            class: 1,
        },
        RowTarget {
            row: 1,
            frame: 0,
            class: 0,
        },
    ];
    let sel = selector(BoxFormat::CxCyWh, 0)
        .select(&outs, &targets, &t)
        .unwrap();
    let (frame, class, dets) = &sel.rows[0];
    assert_eq!((*frame, *class), (1, 1));
    // 0.9 * 0.95 and 0.9 * 0.8 pass; 0.9 * 0.4 does not; best first.
    assert_eq!(dets.iter().map(|d| d.query).collect::<Vec<_>>(), vec![0, 2]);
    assert!((dets[0].confidence - 0.855).abs() < 1e-4);
    assert_eq!((dets[0].class_id, &*dets[0].label), (9, "dog"));
    // Query 0: model box x 0..32, y 16..48 -> frame x 0..100, y 0..100.
    let b = dets[0].bbox;
    assert!(
        b.x0.abs() < 1e-3 && (b.x1 - 100.0).abs() < 1e-3 && b.y0.abs() < 1e-3 && (b.y1 - 100.0).abs() < 1e-3
    );
    let m = dets[0].mask.as_ref().expect("mask");
    assert_eq!((m.width, m.height), (100, 100));
    assert!(m.area() > 9000, "the left half of the input is the whole box");
    assert!(dets[0].mask_source.is_none());
    assert!(sel.rows[1].2.is_empty(), "presence 0.1 keeps nothing");
    // d2h: boxes + logits + presence of both rows, 2 kept masks of 8x8 f32.
    assert_eq!(sel.d2h_bytes, (2 * 3 * 4 + 2 * 3 + 2) * 4 + 2 * 64 * 4);

    let top1 = selector(BoxFormat::CxCyWh, 1)
        .select(&outs, &targets, &t)
        .unwrap();
    assert_eq!(top1.rows[0].2.len(), 1);
    assert_eq!(top1.d2h_bytes, (2 * 3 * 4 + 2 * 3 + 2) * 4 + 64 * 4);

    let xyxy = outputs([[0.0, 0.25, 0.5, 0.75], [0.0; 4], [0.0; 4]]);
    let sel = selector(BoxFormat::XyXy, 0).select(&xyxy, &targets, &t).unwrap();
    let dets = &sel.rows[0].2;
    assert_eq!(dets.len(), 1, "empty boxes are dropped");
    assert!((dets[0].bbox.x1 - 100.0).abs() < 1e-3);
}

#[test]
fn wrong_output_shapes_are_errors() {
    let t = [LetterboxTransform::stretch(64, 64, 64, 64); 2];
    let target = [RowTarget {
        row: 0,
        frame: 0,
        class: 0,
    }];
    let mut outs = outputs([[0.5; 4]; 3]);
    outs[3] = Tensor::from_f32("pred_masks", vec![2, 2, 8, 8], &[0.0; 256]);
    let e = selector(BoxFormat::CxCyWh, 0)
        .select(&outs, &target, &t)
        .unwrap_err();
    assert!(e.contains("expected [2, 3, h, w]"), "{e}");
    let mut outs = outputs([[0.5; 4]; 3]);
    outs[2] = Tensor::from_f32("presence_logits", vec![2, 2], &[0.0; 4]);
    let e = selector(BoxFormat::CxCyWh, 0)
        .select(&outs, &target, &t)
        .unwrap_err();
    assert!(e.contains("presence"), "{e}");
    let far = [RowTarget {
        row: 5,
        frame: 0,
        class: 0,
    }];
    let e = selector(BoxFormat::CxCyWh, 0)
        .select(&outputs([[0.5; 4]; 3]), &far, &t)
        .unwrap_err();
    assert!(e.contains("row 5"), "{e}");
}

#[test]
fn route_names() {
    for r in [Route::A, Route::B, Route::C, Route::Seed] {
        assert_eq!(Route::parse(r.name()), Some(r));
    }
    assert_eq!(Route::parse("C"), Some(Route::C));
    assert_eq!(Route::parse("d"), None);
}

#[test]
fn device_outputs_without_cuda_are_an_error() {
    let t = [LetterboxTransform::stretch(64, 64, 64, 64); 2];
    let target = [RowTarget {
        row: 0,
        frame: 0,
        class: 0,
    }];
    let mut outs = outputs([[0.5, 0.5, 0.25, 0.25]; 3]);
    let len = outs[3].len_bytes();
    outs[3].storage = crate::tensor::TensorStorage::Device {
        ptr: 0,
        len,
        keepalive: Arc::new(()),
    };
    #[cfg(feature = "cuda")]
    if crate::cuda::probe().is_ok() {
        return; // a GPU would be asked to read address 0: this test is for machines without one
    }
    let e = selector(BoxFormat::CxCyWh, 0)
        .select(&outs, &target, &t)
        .unwrap_err();
    #[cfg(not(feature = "cuda"))]
    {
        assert!(e.contains("cargo feature cuda"), "{e}");
        assert!(e.contains("pred_masks"), "{e}");
    }
    #[cfg(feature = "cuda")]
    assert!(e.contains("CUDA is not available"), "{e}");
}
