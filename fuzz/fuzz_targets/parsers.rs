//! Output parsers fed arbitrary tensors, then the mask code fed their detections.
//!
//! From the fuzzer's bytes (through `arbitrary::Unstructured`) this builds:
//! * a parser kind (yolo, yolo-seg, detr, raw);
//! * 0–4 output tensors: either shaped like the parser expects (batch, classes, anchors,
//!   prototypes, queries, mask size all small and arbitrary, then optionally one dimension
//!   perturbed) or with free shapes of rank 0–5 and dimensions 0–64 (now and then a huge
//!   dimension next to a 0, so the element count stays 0); total elements per tensor are
//!   capped at 2^16. Element types f32 / f16 (sometimes u8 / i32 / i64), values drawn from
//!   special floats (NaN, ±Inf, ±0, subnormals, MAX, …), a 0..1024 grid, or raw bits;
//!   byte lengths usually match the shape, sometimes not; sometimes "device" storage.
//!   Names from the expected set or arbitrary.
//! * 0–4 `LetterboxTransform`s: letterbox / stretch of arbitrary sizes (0 included), or
//!   with every field arbitrary (NaN, Inf, 0, huge).
//! * `ParseParams` with arbitrary thresholds (NaN, negative, > 1), max_detections, labels,
//!   explicit or default tensor names and `detr_sigmoid`.
//!
//! Then `parsers::parse` must return `Ok`/`Err` without panicking, and on `Ok` the
//! documented guarantees must hold (one row per transform, finite boxes inside the frame
//! with positive size, finite confidences ≥ the threshold, at most `max_detections`).
//! For every frame, `masks::select` with an arbitrary `MaskSelection` and
//! `masks::frame_mask` on the selected detections, against the model's own mask tensor
//! (protos / masks output) or an arbitrary one, as Dense or Prototypes, with an arbitrary
//! row and threshold. Mask work is bounded by skipping detections whose pixel rectangle ×
//! channels exceeds a per-input budget (a full-frame mask of a huge frame is legitimately
//! huge; that is not what this target looks for).
#![no_main]

use std::sync::Arc;

use gsttrtvision::batch::MaskTensor;
use gsttrtvision::geometry::LetterboxTransform;
use gsttrtvision::ops::maskselect::{self, MaskSelection};
use gsttrtvision::parsers::{self, ParseParams, ParserKind, TensorNames};
use gsttrtvision::results::MaskSource;
use gsttrtvision::tensor::{DType, PooledBytes, Tensor, TensorStorage};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

/// Most elements of one generated tensor.
const MAX_ELEMS: usize = 1 << 16;
/// Bilinear samples allowed per input in `frame_mask` (pixels × channels).
const MASK_BUDGET: u64 = 1 << 21;

const SPECIAL: [f32; 24] = [
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.5,
    0.25,
    0.45,
    0.999_999,
    f32::NAN,
    f32::INFINITY,
    f32::NEG_INFINITY,
    f32::MAX,
    f32::MIN,
    f32::MIN_POSITIVE,
    1e-45, // smallest subnormal
    f32::EPSILON,
    1e30,
    -1e30,
    320.0,
    640.0,
    16384.0,
    4_294_967_296.0,
    -0.5,
    100.0,
];

const NAMES: [&str; 9] = [
    "output0",
    "output1",
    "boxes",
    "logits",
    "masks",
    "images",
    "",
    "pred_boxes",
    "protos",
];

fn float(u: &mut Unstructured) -> Result<f32> {
    let t: u8 = u.arbitrary()?;
    Ok(match t {
        0..=0x3f => SPECIAL[t as usize % SPECIAL.len()],
        0x40..=0xbf => {
            let v: u16 = u.arbitrary()?;
            let x = v as f32 / 64.0;
            if t & 1 == 1 {
                -x
            } else {
                x
            }
        }
        _ => f32::from_bits(u.arbitrary()?),
    })
}

fn name(u: &mut Unstructured) -> Result<String> {
    Ok(if u.ratio(7, 8)? {
        NAMES[u.choose_index(NAMES.len())?].to_string()
    } else {
        let s: &str = u.arbitrary()?;
        s.chars().take(16).collect()
    })
}

/// A small dimension, now and then a huge one.
fn dim(u: &mut Unstructured) -> Result<usize> {
    Ok(if u.ratio(1, 24)? {
        *u.choose(&[usize::MAX, u32::MAX as usize + 1, 1 << 40, 1 << 31, 65_537])?
    } else {
        u.int_in_range(0..=64)?
    })
}

/// Keeps the element count ≤ MAX_ELEMS: on overflow or excess, zeroes one dimension.
fn cap_shape(u: &mut Unstructured, shape: &mut [usize]) -> Result<()> {
    let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if shape.is_empty() || matches!(count, Some(c) if c <= MAX_ELEMS) {
        return Ok(());
    }
    let i = u.choose_index(shape.len())?;
    shape[i] = 0;
    let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if !matches!(count, Some(c) if c <= MAX_ELEMS) {
        // Another zero cannot overflow: the product is now 0.
        shape.iter_mut().for_each(|d| *d = 0);
    }
    Ok(())
}

fn tensor(u: &mut Unstructured, name: String, mut shape: Vec<usize>) -> Result<Tensor> {
    // Byte length: usually exact for a capped shape; sometimes arbitrary, with the shape
    // left as generated (then possibly huge: shape / bytes mismatch).
    let exact = u.ratio(15, 16)?;
    if exact {
        cap_shape(u, &mut shape)?;
    }
    let dtype = match u.int_in_range(0..=15u8)? {
        0..=8 => DType::F32,
        9..=13 => DType::F16,
        14 => *u.choose(&[DType::U8, DType::I32])?,
        _ => DType::I64,
    };
    let len = if exact {
        shape.iter().product::<usize>() * dtype.size()
    } else {
        u.int_in_range(0..=MAX_ELEMS * 4)?
    };
    let storage = if u.ratio(1, 32)? {
        TensorStorage::Device {
            ptr: u.arbitrary()?,
            len,
            keepalive: Arc::new(()),
        }
    } else {
        let mut bytes = Vec::with_capacity(len);
        if dtype == DType::F16 && len % 2 == 0 {
            while bytes.len() < len {
                let v = if u.ratio(1, 4)? {
                    half::f16::from_bits(u.arbitrary()?)
                } else {
                    half::f16::from_f32(float(u)?)
                };
                bytes.extend_from_slice(&v.to_ne_bytes());
            }
        } else if dtype == DType::F32 && len % 4 == 0 {
            while bytes.len() < len {
                bytes.extend_from_slice(&float(u)?.to_ne_bytes());
            }
        } else {
            while bytes.len() < len {
                bytes.push(u.arbitrary()?);
            }
        }
        TensorStorage::Host(Arc::new(PooledBytes::detached(bytes)))
    };
    Ok(Tensor {
        name,
        dtype,
        shape,
        storage,
    })
}

fn free_shape(u: &mut Unstructured) -> Result<Vec<usize>> {
    let rank = u.int_in_range(0..=5)?;
    (0..rank).map(|_| dim(u)).collect()
}

/// Maybe replaces one dimension (wrong batch, wrong class count, …).
fn perturb(u: &mut Unstructured, mut shape: Vec<usize>) -> Result<Vec<usize>> {
    if !shape.is_empty() && u.ratio(1, 6)? {
        let i = u.choose_index(shape.len())?;
        shape[i] = dim(u)?;
    }
    if u.ratio(1, 32)? {
        shape.push(dim(u)?);
    }
    Ok(shape)
}

/// Outputs for `kind` and a batch of `batch` frames.
fn outputs(u: &mut Unstructured, kind: ParserKind, batch: usize) -> Result<Vec<Tensor>> {
    let mut out = Vec::new();
    if u.ratio(3, 4)? {
        // Shaped like the parser expects.
        let b = if u.ratio(7, 8)? {
            batch
        } else {
            u.int_in_range(0..=5)?
        };
        let small = |u: &mut Unstructured, hi: usize| u.int_in_range(0..=hi);
        match kind {
            ParserKind::Yolo | ParserKind::YoloSeg | ParserKind::Raw => {
                let classes = small(u, 8)?;
                let protos = if kind == ParserKind::YoloSeg {
                    small(u, 6)?
                } else {
                    0
                };
                let anchors = small(u, 300)?;
                let shape = perturb(u, vec![b, 4 + classes + protos, anchors])?;
                out.push(tensor(u, "output0".into(), shape)?);
                if kind == ParserKind::YoloSeg || u.ratio(1, 8)? {
                    let (h, w) = (small(u, 32)?, small(u, 32)?);
                    let shape = perturb(u, vec![b, protos, h, w])?;
                    out.push(tensor(u, "output1".into(), shape)?);
                }
            }
            ParserKind::Detr => {
                let queries = small(u, 100)?;
                let k = small(u, 8)?;
                let shape = perturb(u, vec![b, queries, 4])?;
                out.push(tensor(u, "boxes".into(), shape)?);
                let shape = perturb(u, vec![b, queries, k])?;
                out.push(tensor(u, "logits".into(), shape)?);
                if u.ratio(1, 2)? {
                    let (h, w) = (small(u, 32)?, small(u, 32)?);
                    let shape = perturb(u, vec![b, queries, h, w])?;
                    out.push(tensor(u, "masks".into(), shape)?);
                }
            }
        }
        // Renames, reorders, extras.
        for t in out.iter_mut() {
            if u.ratio(1, 8)? {
                t.name = name(u)?;
            }
        }
        if out.len() > 1 && u.ratio(1, 8)? {
            let (i, j) = (u.choose_index(out.len())?, u.choose_index(out.len())?);
            out.swap(i, j);
        }
        if u.ratio(1, 8)? {
            let n = name(u)?;
            let s = free_shape(u)?;
            out.push(tensor(u, n, s)?);
        }
    } else {
        let n = u.int_in_range(0..=4)?;
        for _ in 0..n {
            let nm = name(u)?;
            let s = free_shape(u)?;
            out.push(tensor(u, nm, s)?);
        }
    }
    Ok(out)
}

fn transform(u: &mut Unstructured) -> Result<LetterboxTransform> {
    let size = |u: &mut Unstructured| -> Result<u32> {
        Ok(if u.ratio(1, 8)? {
            u.arbitrary()?
        } else {
            *u.choose(&[0, 1, 2, 7, 32, 64, 320, 480, 640, 720, 1080, 1280, 1920, 4096])?
        })
    };
    Ok(match u.int_in_range(0..=3u8)? {
        0 | 1 => {
            let (fw, fh, mw, mh) = (size(u)?, size(u)?, size(u)?, size(u)?);
            LetterboxTransform::letterbox(fw, fh, mw, mh)
        }
        2 => {
            let (fw, fh, mw, mh) = (size(u)?, size(u)?, size(u)?, size(u)?);
            LetterboxTransform::stretch(fw, fh, mw, mh)
        }
        _ => LetterboxTransform {
            scale_x: float(u)?,
            scale_y: float(u)?,
            pad_x: float(u)?,
            pad_y: float(u)?,
            frame_w: size(u)?,
            frame_h: size(u)?,
            model_w: size(u)?,
            model_h: size(u)?,
        },
    })
}

fn opt_name(u: &mut Unstructured) -> Result<Option<String>> {
    Ok(if u.ratio(1, 4)? { Some(name(u)?) } else { None })
}

fn params(u: &mut Unstructured) -> Result<ParseParams> {
    let n_labels = u.int_in_range(0..=6)?;
    let labels: Vec<Arc<str>> = (0..n_labels)
        .map(|_| name(u).map(|s| Arc::from(s.as_str())))
        .collect::<Result<_>>()?;
    let conf_threshold = if u.ratio(3, 4)? {
        u.int_in_range(0..=100u8)? as f32 / 100.0
    } else {
        float(u)?
    };
    let nms_iou = if u.ratio(3, 4)? {
        u.int_in_range(0..=100u8)? as f32 / 100.0
    } else {
        float(u)?
    };
    let max_detections = match u.int_in_range(0..=3u8)? {
        0 => 0,
        1 => 100,
        2 => u.int_in_range(1..=10)?,
        _ => u.arbitrary()?,
    };
    Ok(ParseParams {
        model: Arc::from("fuzz"),
        labels: labels.into(),
        conf_threshold,
        nms_iou,
        max_detections,
        tensor_names: TensorNames {
            boxes: opt_name(u)?,
            protos: opt_name(u)?,
            logits: opt_name(u)?,
            masks: opt_name(u)?,
        },
        detr_sigmoid: u.arbitrary()?,
    })
}

/// `TRTVISION_FUZZ_DEBUG=1` prints the generated case (to read a crash artifact).
fn debug() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("TRTVISION_FUZZ_DEBUG").is_some())
}

fn run(u: &mut Unstructured) -> Result<()> {
    let kind = *u.choose(&ParserKind::ALL)?;
    let n_tr = u.int_in_range(0..=4)?;
    let transforms: Vec<LetterboxTransform> = (0..n_tr).map(|_| transform(u)).collect::<Result<_>>()?;
    let params = params(u)?;
    let outputs = outputs(u, kind, transforms.len())?;
    if debug() {
        eprintln!("kind {kind:?}\ntransforms {transforms:?}\nparams {params:?}");
        for t in &outputs {
            let len = match &t.storage {
                TensorStorage::Host(b) => b.as_slice().len(),
                TensorStorage::Device { len, .. } => *len,
            };
            eprintln!("output {:?} {:?} {:?} bytes={len}", t.name, t.dtype, t.shape);
        }
    }

    let Ok(frames) = parsers::parse(kind, &params, &outputs, &transforms) else {
        return Ok(());
    };

    // Documented guarantees.
    assert_eq!(frames.len(), transforms.len());
    for (dets, tr) in frames.iter().zip(&transforms) {
        if params.max_detections > 0 {
            assert!(dets.len() <= params.max_detections);
        }
        for d in dets {
            let b = d.bbox;
            assert!(
                b.x0.is_finite() && b.y0.is_finite() && b.x1.is_finite() && b.y1.is_finite(),
                "{b:?}"
            );
            assert!(b.x1 > b.x0 && b.y1 > b.y0, "{b:?}");
            assert!(b.x0 >= 0.0 && b.y0 >= 0.0, "{b:?}");
            assert!(
                b.x1 <= tr.frame_w as f32 && b.y1 <= tr.frame_h as f32,
                "{b:?} {tr:?}"
            );
            assert!(d.confidence.is_finite(), "{}", d.confidence);
            assert!(d.confidence >= params.conf_threshold, "{}", d.confidence);
            match kind {
                ParserKind::YoloSeg => {
                    assert!(matches!(d.mask_source, Some(MaskSource::Prototype { .. })))
                }
                ParserKind::Detr => {
                    assert!(matches!(d.mask_source, None | Some(MaskSource::Dense { .. })))
                }
                _ => assert!(d.mask_source.is_none()),
            }
        }
    }

    // Masks: the model's own mask output (as trtinfer attaches it) or an arbitrary tensor.
    let own = match kind {
        ParserKind::YoloSeg => outputs
            .iter()
            .find(|t| t.name == params.tensor_names.protos_name())
            .or_else(|| outputs.get(1))
            .cloned()
            .map(MaskTensor::Prototypes),
        ParserKind::Detr => outputs
            .iter()
            .find(|t| t.name == params.tensor_names.masks_name())
            .or_else(|| outputs.get(2))
            .cloned()
            .map(MaskTensor::Dense),
        _ => None,
    };
    let masks_t = match own {
        Some(m) if u.ratio(3, 4)? => m,
        _ => {
            let shape = if u.ratio(1, 2)? {
                let b = u.int_in_range(0..=5)?;
                let c = u.int_in_range(0..=8)?;
                let (h, w) = (u.int_in_range(0..=32)?, u.int_in_range(0..=32)?);
                perturb(u, vec![b, c, h, w])?
            } else {
                free_shape(u)?
            };
            let t = tensor(u, "masks".into(), shape)?;
            if u.arbitrary()? {
                MaskTensor::Dense(t)
            } else {
                MaskTensor::Prototypes(t)
            }
        }
    };
    // Values exactly as trtmaskselect gets them.
    let tensor = masks_t.tensor();
    if debug() {
        eprintln!(
            "mask tensor {:?} {:?} {:?}",
            masks_t.tensor().name,
            tensor.dtype,
            tensor.shape
        );
        eprintln!("detections {frames:?}");
    }
    let Some(values) = tensor.f32_values() else {
        return Ok(());
    };
    let values: &[f32] = &values;
    let sel = MaskSelection {
        min_confidence: if u.ratio(3, 4)? {
            u.int_in_range(0..=100u8)? as f32 / 100.0
        } else {
            float(u)?
        },
        top_k: u.int_in_range(0..=4)?,
        mask_threshold: if u.ratio(3, 4)? {
            u.int_in_range(0..=100u8)? as f32 / 100.0
        } else {
            float(u)?
        },
    };
    let mut budget = MASK_BUDGET;
    let mut selected = Vec::new();
    for (fi, dets) in frames.iter().enumerate() {
        maskselect::select(dets, &sel, &mut selected);
        let mut prev = None;
        for &i in &selected {
            assert!(i < dets.len());
            assert!(prev < Some(i), "select output not sorted/unique");
            prev = Some(i);
            assert!(dets[i].mask_source.is_some() && dets[i].confidence >= sel.min_confidence);
        }
        let row = if u.ratio(7, 8)? {
            fi
        } else {
            u.int_in_range(0..=8)?
        };
        let tr = if u.ratio(7, 8)? {
            transforms[fi]
        } else {
            transform(u)?
        };
        for &i in &selected {
            let d = &dets[i];
            let (_, _, w, h) = d.bbox.to_pixel_rect(tr.frame_w, tr.frame_h);
            let channels = match &d.mask_source {
                Some(MaskSource::Prototype { coefficients }) => coefficients.len().max(1) as u64,
                _ => 1,
            };
            let cost = (w as u64) * (h as u64) * channels;
            if cost > budget {
                continue;
            }
            budget -= cost;
            if let Some(m) = maskselect::frame_mask(d, &masks_t, values, row, &tr, sel.mask_threshold) {
                assert_eq!(m.data.len(), m.width as usize * m.height as usize);
                assert!(m.width > 0 && m.height > 0);
                assert!(m.x as u64 + m.width as u64 <= tr.frame_w as u64);
                assert!(m.y as u64 + m.height as u64 <= tr.frame_h as u64);
                assert!(m.data.iter().all(|&v| v == 0 || v == 255));
            }
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let _ = run(&mut u);
});
