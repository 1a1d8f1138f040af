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

/// The dense output of `outputs` (`names.dense`, default the first output) and its row
/// layout `(channels, height, width)`, checked against `frames` rows; host or device.
pub fn dense_output<'a>(
    names: &TensorNames,
    outputs: &'a [Tensor],
    frames: usize,
) -> Result<(&'a Tensor, (usize, usize, usize)), ParseError> {
    let name = names.dense.as_deref().unwrap_or("dense");
    let t = find_output(outputs, name, names.dense.is_some(), Some(0), "dense")?;
    let expected = || format!("[{frames}, channels, height, width] or [{frames}, height, width]");
    let (b, c, h, w) = match *t.shape.as_slice() {
        [b, c, h, w] => (b, c, h, w),
        [b, h, w] => (b, 1, h, w),
        _ => return Err(shape_err(t, expected())),
    };
    if b != frames || c == 0 || h == 0 || w == 0 {
        return Err(shape_err(t, expected()));
    }
    if !matches!(t.dtype, DType::F32 | DType::F16) {
        return Err(ParseError::DType {
            tensor: t.name.clone(),
            dtype: t.dtype.name(),
        });
    }
    Ok((t, (c, h, w)))
}

/// One [`DenseMap`] per frame (`transforms.len()` rows) from a host output.
pub fn parse_dense(
    model: &Arc<str>,
    names: &TensorNames,
    outputs: &[Tensor],
    transforms: &[LetterboxTransform],
) -> Result<Vec<DenseMap>, ParseError> {
    let (t, layout) = dense_output(names, outputs, transforms.len())?;
    let values = f32_values(t)?;
    let tensor = if t.dtype == DType::F32 && t.as_f32().is_some() {
        t.clone()
    } else {
        Tensor::from_f32(t.name.clone(), t.shape.clone(), &values)
    };
    Ok(transforms
        .iter()
        .enumerate()
        .map(|(row, tr)| DenseMap::host(model.clone(), tensor.clone(), row, layout, *tr))
        .collect())
}
