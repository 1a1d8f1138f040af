//! Secondary outputs on object crops (`parser = "landmarks"`).
//!
//! Row `i` of every output belongs to crop `i`, taken from a frame with the placement
//! `crops[i]` (a [`LetterboxTransform`] whose padding is the negated crop origin). Outputs:
//! - `keypoints [n, K, 2]` or `[n, K, 3]`: `x, y` normalised to the crop (0..1 across its
//!   width and height), optional score; mapped to frame pixels through the crop's transform;
//! - `attributes [n, C]`: scores per attribute class; the best one is kept when it reaches
//!   `conf_threshold`, labelled from the model's labels.
//!
//! Either output may be absent (not both); an explicitly named one must exist.

use super::{f32_values, fmt_shape, missing, shape_err, ParseError, ParseParams};
use crate::geometry::LetterboxTransform;
use crate::results::{Attribute, Keypoint, ObjectResult};
use crate::tensor::Tensor;
use std::sync::Arc;

fn optional<'a>(outputs: &'a [Tensor], name: &str, explicit: bool) -> Result<Option<&'a Tensor>, ParseError> {
    match outputs.iter().find(|t| t.name == name) {
        Some(t) => Ok(Some(t)),
        None if explicit => Err(missing(outputs, name, "landmarks")),
        None => Ok(None),
    }
}

/// One [`ObjectResult`] per crop (`crops.len()` rows).
pub fn parse_landmarks(
    params: &ParseParams,
    outputs: &[Tensor],
    crops: &[LetterboxTransform],
) -> Result<Vec<ObjectResult>, ParseError> {
    let names = &params.tensor_names;
    let kp = optional(outputs, names.keypoints_name(), names.keypoints.is_some())?;
    let attr = optional(outputs, names.attributes_name(), names.attributes.is_some())?;
    if kp.is_none() && attr.is_none() {
        return Err(missing(outputs, names.keypoints_name(), "landmarks"));
    }
    let n = crops.len();
    let kp = match kp {
        None => None,
        Some(t) => match t.shape.as_slice() {
            &[b, k, d] if b == n && (d == 2 || d == 3) => Some((f32_values(t)?, k, d)),
            _ => return Err(shape_err(t, format!("[{n}, keypoints, 2 or 3]"))),
        },
    };
    let attr = match attr {
        None => None,
        Some(t) => match t.shape.as_slice() {
            &[b, c] if b == n && c > 0 => Some((f32_values(t)?, c)),
            _ => {
                return Err(ParseError::Shape {
                    tensor: t.name.clone(),
                    expected: format!("[{n}, classes]"),
                    actual: fmt_shape(&t.shape),
                })
            }
        },
    };
    let mut out = Vec::with_capacity(n);
    for (i, tr) in crops.iter().enumerate() {
        let mut keypoints = Vec::new();
        if let Some((values, k, d)) = &kp {
            keypoints.reserve(*k);
            for j in 0..*k {
                let p = &values[(i * k + j) * d..][..*d];
                let (mx, my) = (p[0] * tr.model_w as f32, p[1] * tr.model_h as f32);
                let (fx, fy) = tr.to_frame(mx, my);
                if !(fx.is_finite() && fy.is_finite()) {
                    continue;
                }
                keypoints.push(Keypoint {
                    name: keypoint_name(params, j),
                    x: fx,
                    y: fy,
                    score: if *d == 3 { p[2] } else { 1.0 },
                });
            }
        }
        let attribute = attr.as_ref().and_then(|(values, c)| {
            let row = &values[i * c..][..*c];
            let (best, score) = row.iter().enumerate().filter(|(_, v)| v.is_finite()).fold(
                None::<(usize, f32)>,
                |acc, (j, &v)| match acc {
                    Some((_, s)) if s >= v => acc,
                    _ => Some((j, v)),
                },
            )?;
            (score >= params.conf_threshold).then(|| Attribute {
                class_id: best as u32,
                label: params.label(best as u32),
                score,
            })
        });
        out.push(ObjectResult {
            model: params.model.clone(),
            keypoints,
            attribute,
        });
    }
    Ok(out)
}

fn keypoint_name(params: &ParseParams, j: usize) -> Arc<str> {
    match params.keypoint_names.get(j) {
        Some(n) => n.clone(),
        None => Arc::from(j.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::BoxF;

    #[test]
    fn keypoints_map_to_frame_pixels_and_best_attribute_is_kept() {
        // Crop (100, 50)-(164, 82) of a 640x480 frame stretched to 64x64.
        let tr = LetterboxTransform::crop(640, 480, &BoxF::new(100.0, 50.0, 164.0, 82.0), 64, 64, false);
        let kp = Tensor::from_f32("keypoints", vec![1, 2, 2], &[0.5, 0.5, 0.0, 1.0]);
        let attrs = Tensor::from_f32("attributes", vec![1, 3], &[0.1, 0.7, 0.2]);
        let mut params = ParseParams {
            conf_threshold: 0.5,
            keypoint_names: Arc::from(vec![Arc::from("centre")]),
            ..Default::default()
        };
        let r = parse_landmarks(&params, &[kp.clone(), attrs.clone()], &[tr]).unwrap();
        let k = &r[0].keypoints;
        assert_eq!((k[0].x, k[0].y, &*k[0].name), (132.0, 66.0, "centre"));
        assert_eq!((k[1].x, k[1].y, &*k[1].name), (100.0, 82.0, "1"));
        let a = r[0].attribute.as_ref().unwrap();
        assert_eq!((a.class_id, a.score), (1, 0.7));
        params.conf_threshold = 0.8;
        assert!(parse_landmarks(&params, &[kp, attrs], &[tr]).unwrap()[0]
            .attribute
            .is_none());
    }

    #[test]
    fn shapes_and_missing_outputs_are_errors() {
        let tr = LetterboxTransform::stretch(64, 64, 64, 64);
        let params = ParseParams::default();
        let other = Tensor::from_f32("other", vec![1, 2], &[0.0, 0.0]);
        assert!(matches!(
            parse_landmarks(&params, &[other], &[tr]),
            Err(ParseError::MissingTensor { .. })
        ));
        let bad = Tensor::from_f32("keypoints", vec![2, 2, 4], &[0.0; 16]);
        assert!(matches!(
            parse_landmarks(&params, &[bad], &[tr]),
            Err(ParseError::Shape { .. })
        ));
    }
}
