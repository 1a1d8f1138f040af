//! Dense outputs (`parser = "dense"`): one map per frame, e.g. depth.
//!
//! The output `[B, C, h, w]` (or `[B, h, w]`) covers the whole model input, letterbox
//! padding included; each frame keeps its row by reference together with its
//! [`LetterboxTransform`], so consumers map frame pixels into the map
//! ([`DenseMap::map_pixel`]). f32 outputs are shared without copying; f16 outputs are
//! converted to f32 once per batch.

use std::sync::Arc;

use super::{f32_values, find_output, shape_err, ParseError, TensorNames};
use crate::geometry::LetterboxTransform;
use crate::results::DenseMap;
use crate::tensor::{DType, Tensor};

/// One [`DenseMap`] per frame (`transforms.len()` rows).
pub fn parse_dense(
    model: &Arc<str>,
    names: &TensorNames,
    outputs: &[Tensor],
    transforms: &[LetterboxTransform],
) -> Result<Vec<DenseMap>, ParseError> {
    let name = names.dense.as_deref().unwrap_or("dense");
    let t = find_output(outputs, name, names.dense.is_some(), Some(0), "dense")?;
    let expected = || {
        format!(
            "[{}, channels, height, width] or [{}, height, width]",
            transforms.len(),
            transforms.len()
        )
    };
    let (b, c, h, w) = match *t.shape.as_slice() {
        [b, c, h, w] => (b, c, h, w),
        [b, h, w] => (b, 1, h, w),
        _ => return Err(shape_err(t, expected())),
    };
    if b != transforms.len() || c == 0 || h == 0 || w == 0 {
        return Err(shape_err(t, expected()));
    }
    let values = f32_values(t)?;
    let tensor = if t.dtype == DType::F32 && t.as_f32().is_some() {
        t.clone()
    } else {
        Tensor::from_f32(t.name.clone(), t.shape.clone(), &values)
    };
    Ok(transforms
        .iter()
        .enumerate()
        .map(|(row, tr)| DenseMap {
            model: model.clone(),
            tensor: tensor.clone(),
            row,
            channels: c,
            height: h,
            width: w,
            transform: *tr,
        })
        .collect())
}
