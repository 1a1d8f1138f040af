//! Prompt-conditioned segmentation (encoder + per-class decoder) on the CPU: the 8-camera
//! synthetic pipeline checked against the scene's ground truth, identical results in every
//! route and with single- or double-buffered decoder outputs, the tolerance comparison of
//! the benchmark, and clear errors for bad configs.

mod common;

use common::groundtruth::{check_against_ground_truth, run_pipeline, Seen};
use std::sync::Arc;

use gsttrtvision::config::promptseg::PromptSegConfig;
use gsttrtvision::geometry::{BoxF, LetterboxTransform};
use gsttrtvision::results::{Detection, DeviceMask, FrameMask};
use gsttrtvision::tensor::Tensor;
use gsttrtvision::trtinfer::promptseg::compare::{compare, Tolerance};
use gsttrtvision::trtinfer::promptseg::{PromptSegEngine, PromptSegOptions, Route};

const CONFIG: &str = "promptseg-tiny.toml";

fn sorted(mut seen: Vec<Seen>) -> Vec<Seen> {
    seen.sort_by_key(|s| (s.camera, s.frame));
    seen
}

#[test]
fn eight_cameras_boxes_and_masks_per_class_match_ground_truth() {
    common::model("promptseg-tiny-decoder.onnx");
    let frames = 6;
    let seen = run_pipeline(CONFIG, frames, "", "");
    check_against_ground_truth(&seen, frames, true);
    // Every detection carries its class's label and id from the config.
    for s in &seen {
        for d in &s.detections {
            assert!(d.0 < 4 && d.2 > 0.9, "{d:?}");
        }
    }
}

#[test]
fn routes_a_b_c_give_identical_results() {
    common::model("promptseg-tiny-decoder.onnx");
    let frames = 3;
    let c = sorted(run_pipeline(CONFIG, frames, "route=c", ""));
    check_against_ground_truth(&c, frames, true);
    for route in ["a", "b", "c decoder-buffers=1"] {
        let other = sorted(run_pipeline(CONFIG, frames, &format!("route={route}"), ""));
        assert_eq!(other.len(), c.len());
        for (x, y) in other.iter().zip(&c) {
            assert_eq!(x, y, "route {route} differs from route c");
        }
    }
}

fn engines() -> std::path::PathBuf {
    common::engines_dir()
}

fn tiny_text() -> String {
    std::fs::read_to_string(engines().join(CONFIG)).expect("config readable")
}

/// Opens the tiny config with `from` replaced by `to`; returns the error sentence.
fn open_err(from: &str, to: &str) -> String {
    let text = tiny_text();
    assert!(text.contains(from), "fixture text '{from}' not in the config");
    let text = text.replacen(from, to, 1);
    match PromptSegConfig::from_toml_str(&text, engines()) {
        Err(e) => e.to_string(),
        Ok(cfg) => match PromptSegEngine::open(cfg, &PromptSegOptions::default()) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("config with '{to}' was accepted"),
        },
    }
}

#[test]
fn bad_configs_give_clear_errors() {
    common::model("promptseg-tiny-decoder.onnx");
    let cases = [
        (
            "models/promptseg-tiny-decoder.onnx",
            "models/no-such-decoder.onnx",
            "no-such-decoder.onnx does not exist",
        ),
        ("fpn_0 = \"fpn_0\"", "fpn_0 = \"fpn_9\"", "encoder output 'fpn_9'"),
        (
            "fpn_1 = \"fpn_1\"",
            "fpn_7 = \"fpn_1\"",
            "decoder input 'fpn_7' does not exist",
        ),
        (
            "fpn_0 = \"fpn_0\"",
            "fpn_0 = \"fpn_1\"",
            "does not fit decoder input fpn_0",
        ),
        (
            "models/promptseg-tiny-green.features.npy",
            "models/promptseg-bad-width.features.npy",
            "128 features per token",
        ),
        (
            "models/promptseg-tiny-blue.mask.npy",
            "models/promptseg-full-blue.mask.npy",
            "expected [1, 4]",
        ),
        (
            "models/promptseg-tiny-yellow.features.npy",
            "models/promptseg-tiny-encoder.onnx",
            "not a NumPy .npy file",
        ),
        (
            "masks = \"pred_masks\"",
            "masks = \"masks\"",
            "decoder output masks 'masks' does not exist",
        ),
        (
            "prompt-mask = \"prompt_mask\"",
            "",
            "decoder input prompt_mask f32 [dyn, 4] is fed by nothing",
        ),
        (
            "box-format = \"cxcywh\"",
            "box-format = \"xywh\"",
            "unknown [output] box-format 'xywh'",
        ),
        (
            "score-threshold = 0.5",
            "score-threshold = 1.5",
            "score-threshold must be a number between 0 and 1",
        ),
        ("id = 1\n", "id = 0\n", "class id 0 is already used by 'red'"),
        ("width = 512", "width = 640", "does not match the preprocessing"),
        (
            "[decoder.features]",
            "[decoder.features]\nfpn_x = 3",
            "fpn_x must name an encoder output",
        ),
    ];
    for (from, to, want) in cases {
        let e = open_err(from, to);
        assert!(
            e.contains(want),
            "replacing '{from}' by '{to}': error '{e}' lacks '{want}'"
        );
    }
    // Every prompt from another text encoder (128 features per token).
    let mut text = tiny_text();
    for c in ["red", "green", "blue", "yellow"] {
        text = text.replace(
            &format!("promptseg-tiny-{c}.features.npy"),
            "promptseg-bad-width.features.npy",
        );
    }
    let cfg = PromptSegConfig::from_toml_str(&text, engines()).expect("parses");
    let e = PromptSegEngine::open(cfg, &PromptSegOptions::default())
        .err()
        .expect("refused")
        .to_string();
    assert!(
        e.contains("has 128 features per token, the decoder input prompt_features"),
        "{e}"
    );
    // No classes at all.
    let text = tiny_text();
    let cut = text.find("[[classes]]").expect("classes");
    let e = PromptSegConfig::from_toml_str(&text[..cut], engines())
        .unwrap_err()
        .to_string();
    assert!(e.contains("at least one [[classes]]"), "{e}");
}

#[test]
fn bad_config_is_an_element_error() {
    common::init();
    let dir = common::temp_path("promptseg", "");
    let path = dir.join("bad.toml");
    let text = tiny_text()
        .replace("models/", &format!("{}/models/", engines().display()))
        .replacen("fpn_0 = \"fpn_0\"", "fpn_0 = \"fpn_1\"", 1);
    std::fs::write(&path, text).expect("write config");
    let p = common::parse(&format!(
        "trtscenesrc num-buffers=2 ! video/x-raw,format=RGB,width=320,height=240 ! trtmux batch-size=1 ! trtpreprocess config-file={0} ! trtinfer model={0} ! fakesink",
        path.display()
    ));
    let e = common::run_to_end(&p, gst::ClockTime::from_seconds(30)).unwrap_err();
    assert!(e.contains("does not fit decoder input"), "{e}");
}

/// The engine API alone: partial batches reuse nothing wrong, route counters add up and
/// route c never repeats prompts after the first batch of a size.
#[test]
fn engine_counters_and_partial_batches() {
    common::model("promptseg-tiny-decoder.onnx");
    let cfg = PromptSegConfig::from_file(engines().join(CONFIG)).expect("config loads");
    let mut e = PromptSegEngine::open(cfg, &PromptSegOptions::default()).expect("opens");
    let (s, frames) = (512usize, 3usize);
    // Gray frames with one red square in frame 1.
    let mut v = vec![114.0f32 / 255.0; frames * 3 * s * s];
    for y in 100..200 {
        for x in 50..150 {
            let base = s * s * 3;
            v[base + y * s + x] = 220.0 / 255.0;
            v[base + s * s + y * s + x] = 40.0 / 255.0;
            v[base + 2 * s * s + y * s + x] = 40.0 / 255.0;
        }
    }
    let input = Tensor::from_f32("image", vec![frames, 3, s, s], &v);
    let t = vec![LetterboxTransform::stretch(1024, 1024, 512, 512); frames];
    let mut results = Vec::new();
    for (i, route) in [Route::C, Route::C, Route::B, Route::A, Route::Seed]
        .into_iter()
        .enumerate()
    {
        let r = e.run(route, &input, &t).expect("runs");
        let st = e.last_round();
        let (enc, dec) = match route {
            Route::A => (3, 3),
            Route::B => (1, 3),
            _ => (1, 4),
        };
        assert_eq!((st.encoder_calls, st.decoder_calls), (enc, dec), "{route:?}");
        assert_eq!(st.detections, 1, "{route:?}");
        results.push(r);
        // Route c uploads the replicated prompts once per batch size; the seed every time.
        assert_eq!(
            st.h2d_prompt_bytes > 0,
            i == 0 || route == Route::Seed,
            "{route:?}"
        );
        if route == Route::Seed {
            // Every output of every decoder call: masks [3, 8, 256, 256] f32 x 4 classes.
            assert!(st.d2h_bytes >= 4 * 3 * 8 * 256 * 256 * 4, "{}", st.d2h_bytes);
        } else {
            // Boxes/logits/presence plus one kept mask (256 x 256 f32).
            assert!(
                st.d2h_bytes >= 256 * 256 * 4 && st.d2h_bytes < 2 * 256 * 256 * 4,
                "{route:?} {}",
                st.d2h_bytes
            );
        }
    }
    for r in &results[1..] {
        assert_eq!(r, &results[0]);
        assert!(compare(&results[0], r).equal_bitwise);
    }
    let d = &results[0][1][0];
    assert_eq!((d.class_id, &*d.label), (0, "red"));
    assert!(
        (d.bbox.x0 - 100.0).abs() < 1.0 && (d.bbox.y1 - 400.0).abs() < 1.0,
        "{:?}",
        d.bbox
    );
    let area = d.mask.as_ref().expect("mask").area() as i64;
    assert!((area - 200 * 200).abs() < 800, "mask area {area}");
    assert!(results[0][0].is_empty() && results[0][2].is_empty());
    // A batch larger than max-batch is refused with a sentence.
    let big = Tensor::from_f32("image", vec![9, 3, 1, 1], &[0.0; 27]);
    let e9 = e.run(Route::C, &big, &[t[0]; 9]).unwrap_err().to_string();
    assert!(e9.contains("exceeds max-batch 8"), "{e9}");
}

/// A 40 x 30 mask at (100, 200) with `flip` pixels of its first row cleared.
fn mask(flip: usize) -> FrameMask {
    let mut data = vec![255u8; 40 * 30];
    data[..flip].fill(0);
    FrameMask {
        x: 100,
        y: 200,
        width: 40,
        height: 30,
        data,
        device: None,
    }
}

fn det(class: u32, score: f32, x0: f32, flip: usize) -> Detection {
    let mut d = Detection::new(
        Arc::from("m"),
        class,
        Arc::from("c"),
        score,
        BoxF::new(x0, 200.0, x0 + 40.0, 230.0),
    );
    d.mask = Some(mask(flip));
    d
}

/// Two frames: frame 0 with two detections of class 0 and one of class 1, frame 1 empty.
fn batch() -> Vec<Vec<Detection>> {
    vec![
        vec![
            det(0, 0.9, 100.0, 0),
            det(0, 0.8, 300.0, 0),
            det(1, 0.7, 100.0, 0),
        ],
        vec![],
    ]
}

/// A change made to a copy of [`batch`].
type Change = Box<dyn Fn(&mut Vec<Vec<Detection>>)>;

#[test]
fn tolerance_comparison_accepts_last_bit_differences_only() {
    let tol = Tolerance::default();
    let a = batch();

    // Identical, also when the masks' GPU copies live at other addresses.
    let mut b = batch();
    b[0][0].mask.as_mut().expect("mask").device = Some(DeviceMask {
        ptr: 0x1000,
        ready_event: 0,
        keepalive: Arc::new(()),
    });
    let c = compare(&a, &b);
    assert!(c.equal_bitwise && c.within(&tol), "{c:?}");
    assert_eq!(
        (c.matched, c.unmatched, c.box_iou, c.score_abs, c.mask_iou),
        (3, 0, 1.0, 0.0, 1.0)
    );

    // Last-bit differences: score +1 ulp, box 0.1 px, 3 of 1200 mask pixels flipped, and
    // the two class-0 detections in the other order (a score tie resolved differently).
    let mut b = batch();
    b[0][0].confidence = f32::from_bits(b[0][0].confidence.to_bits() + 1);
    b[0][1].bbox.x1 += 0.1;
    b[0][2] = det(1, 0.7, 100.0, 3);
    b[0].swap(0, 1);
    let c = compare(&a, &b);
    assert!(!c.equal_bitwise, "{c:?}");
    assert!(c.within(&tol), "{c:?}");
    assert_eq!((c.matched, c.unmatched), (3, 0));
    assert!(c.score_abs > 0.0 && c.score_abs < 1e-6, "{c:?}");
    assert!(c.box_iou < 1.0 && c.box_iou > 0.99, "{c:?}");
    assert!((c.mask_iou - 1197.0 / 1200.0).abs() < 1e-9, "{c:?}");

    // Beyond the tolerance: each of these must fail.
    let cases: Vec<(&str, Change)> = vec![
        ("score 0.01 off", Box::new(|b| b[0][0].confidence += 0.01)),
        ("box 2 px off", Box::new(|b| b[0][1].bbox.x0 += 2.0)),
        (
            "a tenth of the mask flipped",
            Box::new(|b| b[0][2] = det(1, 0.7, 100.0, 120)),
        ),
        ("mask missing", Box::new(|b| b[0][2].mask = None)),
        (
            "detection missing",
            Box::new(|b| {
                b[0].pop();
            }),
        ),
        ("other class", Box::new(|b| b[0][2].class_id = 2)),
        (
            "extra detection in another frame",
            Box::new(|b| b[1].push(det(0, 0.9, 500.0, 0))),
        ),
        (
            "box elsewhere",
            Box::new(|b| b[0][1].bbox = BoxF::new(900.0, 900.0, 940.0, 930.0)),
        ),
        (
            "frame missing",
            Box::new(|b| {
                b.pop();
                b[0].clear();
            }),
        ),
    ];
    for (what, change) in cases {
        let mut b = batch();
        change(&mut b);
        let c = compare(&a, &b);
        assert!(!c.equal_bitwise && !c.within(&tol), "{what}: {c:?}");
    }
    // The counts of a missing detection and of a box without overlap.
    let mut b = batch();
    b[0].pop();
    let c = compare(&a, &b);
    assert_eq!((c.counts_equal, c.matched, c.unmatched), (false, 2, 1));
    let mut b = batch();
    b[0][1].bbox = BoxF::new(900.0, 900.0, 940.0, 930.0);
    let c = compare(&a, &b);
    assert_eq!((c.counts_equal, c.matched, c.unmatched), (true, 2, 2));
    // A looser tolerance accepts what the default refuses.
    let mut b = batch();
    b[0][0].confidence += 0.01;
    let loose = Tolerance {
        score_abs_max: 0.02,
        ..tol
    };
    assert!(compare(&a, &b).within(&loose));
}

/// Single-buffered decoder outputs (each selection finishes before the next decoder call)
/// give the results of double-buffered ones in every route; the size of one decoder output
/// set is what the output shapes say.
#[test]
fn single_and_double_buffered_decoder_outputs_agree() {
    common::model("promptseg-tiny-decoder.onnx");
    let cfg = PromptSegConfig::from_file(engines().join(CONFIG)).expect("config loads");
    let (s, frames) = (512usize, 3usize);
    // Gray frames, a green square in frame 0 and a blue one in frame 2.
    let mut v = vec![114.0f32 / 255.0; frames * 3 * s * s];
    for (frame, rgb) in [(0usize, [40.0, 200.0, 40.0]), (2, [30.0, 40.0, 220.0])] {
        for y in 150..260 {
            for x in 200..330 {
                for (ch, val) in rgb.iter().enumerate() {
                    v[(frame * 3 + ch) * s * s + y * s + x] = val / 255.0;
                }
            }
        }
    }
    let input = Tensor::from_f32("image", vec![frames, 3, s, s], &v);
    let t = vec![LetterboxTransform::stretch(1280, 720, 512, 512); frames];
    let run = |buffers: usize, route: Route| {
        let mut e = PromptSegEngine::open(
            cfg.clone(),
            &PromptSegOptions {
                decoder_buffers: buffers,
                route,
                ..Default::default()
            },
        )
        .expect("opens");
        assert_eq!(e.decoder_buffers(), buffers);
        let r = e.run(route, &input, &t).expect("runs");
        (r, e.last_round())
    };
    let (double_c, st) = run(2, Route::C);
    assert_eq!(st.detections, 2, "{double_c:?}");
    // Route c: batch 3 rows of boxes [3, 8, 4], logits [3, 8], presence [3, 1] and masks
    // [3, 8, 256, 256], f32.
    assert_eq!(st.decoder_output_bytes, 4 * 3 * (8 * 4 + 8 + 1 + 8 * 256 * 256));
    for route in [Route::C, Route::A, Route::B, Route::Seed] {
        let (single, st1) = run(1, route);
        let c = compare(&double_c, &single);
        assert!(c.equal_bitwise, "route {route:?}: {c:?}");
        assert_eq!(single, double_c, "route {route:?}");
        assert_eq!(st1.detections, 2);
        if route == Route::A || route == Route::B {
            // One frame with the 4 classes per call.
            assert_eq!(st1.decoder_output_bytes, 4 * 4 * (8 * 4 + 8 + 1 + 8 * 256 * 256));
        }
    }
    // Anything but 1 or 2 is refused with a sentence.
    for bad in [0, 3] {
        let e = PromptSegEngine::open(
            cfg.clone(),
            &PromptSegOptions {
                decoder_buffers: bad,
                ..Default::default()
            },
        )
        .err()
        .expect("refused")
        .to_string();
        assert!(e.contains("decoder-buffers must be 1 or 2"), "{e}");
    }
}
