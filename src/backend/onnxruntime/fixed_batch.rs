//! Fixed batch and CUDA graphs for ONNX Runtime sessions.
//!
//! **Fixed batch** (`BackendOptions::fixed_batch`): the session is loaded with the model's
//! batch dimension (the symbolic first dimension its inputs share) overridden to
//! `max_batch`. ONNX Runtime then folds the model's shape computations into constants at
//! load time, so that a run only launches the layers' kernels: with the CUDA provider, no
//! integer shape kernels, no small host-to-device copies of their parameters from pinned
//! buffers and no host callback per run to release those buffers. A smaller batch is
//! padded to `max_batch` rows: a device input is read past its rows when the buffer behind
//! it has room (trtpreprocess's pool buffers do), else copied into a staging buffer; a
//! host input is copied into a zero-padded buffer. The padding rows are computed and
//! dropped: the outputs whose first dimension is the batch come back with the real rows.
//!
//! **CUDA graphs** (`BackendOptions::cuda_graph`, CUDA provider, outputs on the device):
//! see the `graphs` module beside this one (cargo feature `cuda`).

use crate::backend::TensorSpec;

/// One model input as ONNX Runtime declares it: dimensions (`-1` = dynamic) and their
/// symbolic names (empty when unnamed).
#[derive(Debug, Clone)]
pub struct DeclaredInput {
    pub name: String,
    pub dims: Vec<i64>,
    pub symbols: Vec<String>,
}

/// How a model's batch dimension is fixed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchPlan {
    /// Name of the symbolic batch dimension to override; `None` when the inputs declare
    /// a fixed batch already.
    pub symbol: Option<String>,
    /// The fixed batch.
    pub batch: usize,
    /// Per input: its first dimension is the batch (padded for smaller batches).
    pub batch_inputs: Vec<bool>,
}

/// The plan for fixing the batch of a model with `inputs` at `max_batch`, or why it
/// cannot be fixed. Every input whose first dimension is dynamic must name it with the
/// same symbol, and no other dimension of an input may be dynamic (the session would not
/// be static). A model whose inputs have a fixed first dimension keeps it.
pub fn plan(inputs: &[DeclaredInput], max_batch: usize) -> Result<BatchPlan, String> {
    if inputs.is_empty() {
        return Err("the model has no inputs".into());
    }
    let mut symbol: Option<&str> = None;
    let mut fixed: Option<i64> = None;
    let mut batch_inputs = Vec::with_capacity(inputs.len());
    for input in inputs {
        if let Some(pos) = input.dims.iter().skip(1).position(|&d| d < 0) {
            return Err(format!(
                "input '{}' has a dynamic dimension {} besides the batch",
                input.name,
                pos + 1
            ));
        }
        match input.dims.first() {
            None => {
                batch_inputs.push(false);
            }
            Some(&d) if d < 0 => {
                let name = input.symbols.first().map(String::as_str).unwrap_or("");
                if name.is_empty() {
                    return Err(format!(
                        "the batch dimension of input '{}' has no name, so ONNX Runtime cannot override it",
                        input.name
                    ));
                }
                match symbol {
                    Some(s) if s != name => {
                        return Err(format!(
                            "inputs disagree on the batch dimension: '{s}' and '{name}' (input '{}')",
                            input.name
                        ))
                    }
                    _ => symbol = Some(name),
                }
                batch_inputs.push(true);
            }
            Some(&d) => {
                fixed = Some(fixed.map_or(d, |f: i64| f.min(d)));
                batch_inputs.push(false);
            }
        }
    }
    match (symbol, fixed) {
        (Some(s), _) => Ok(BatchPlan {
            symbol: Some(s.to_string()),
            batch: max_batch.max(1),
            batch_inputs,
        }),
        (None, Some(b)) => Ok(BatchPlan {
            symbol: None,
            batch: usize::try_from(b.max(1)).unwrap_or(1),
            // A model with a fixed batch takes exactly that many rows: nothing is padded.
            batch_inputs: vec![false; inputs.len()],
        }),
        (None, None) => Err("no input has a batch dimension".into()),
    }
}

/// Per output: whether its declared first dimension is dynamic (the batch, after the
/// override), i.e. whether its rows are sliced back to the real batch.
pub fn batch_outputs(outputs: &[TensorSpec], plan: &BatchPlan) -> Vec<bool> {
    outputs
        .iter()
        .map(|o| plan.symbol.is_some() && matches!(o.shape.first(), Some(None)))
        .collect()
}

/// Batches looked at before deciding whether padding wastes too much.
pub const FILL_WINDOW: u64 = 256;
/// Batches left out first: while the sources of a pipeline start (one camera after the
/// other, a file being opened), batches are partial for a moment that says nothing about
/// the steady state.
pub const FILL_STARTUP: u64 = 256;

/// How full the batches of a fixed-batch session are: once, after [`FILL_STARTUP`]
/// batches left out and [`FILL_WINDOW`] counted, whether they held less than three
/// quarters of the fixed batch on average (the rest was padding, computed for nothing).
#[derive(Debug, Default)]
pub struct BatchFill {
    seen: u64,
    batches: u64,
    rows: u64,
}

impl BatchFill {
    /// Counts a batch of `rows` at fixed batch `batch`; returns the mean rows per batch the
    /// one time the window closes with batches mostly padded.
    pub fn record(&mut self, rows: usize, batch: usize) -> Option<f64> {
        self.seen = self.seen.saturating_add(1);
        if self.seen <= FILL_STARTUP || self.batches >= FILL_WINDOW {
            return None;
        }
        self.batches += 1;
        self.rows += rows as u64;
        let full = self.batches * batch as u64;
        (self.batches == FILL_WINDOW && 4 * self.rows < 3 * full)
            .then(|| self.rows as f64 / self.batches as f64)
    }
}

/// `shape` with its first dimension replaced by `rows`.
pub fn with_rows(shape: &[usize], rows: usize) -> Vec<usize> {
    let mut s = shape.to_vec();
    if let Some(first) = s.first_mut() {
        *first = rows;
    }
    s
}

/// Bytes of the first `rows` rows of a tensor of `shape` with `elem` bytes per element.
pub fn row_bytes(shape: &[usize], rows: usize, elem: usize) -> Option<usize> {
    shape
        .iter()
        .skip(1)
        .try_fold(rows.checked_mul(elem)?, |acc, &d| acc.checked_mul(d))
}

/// Copies the rows in `bytes` to the start of `out` and zeroes the padding rows after them.
pub fn pad_host(bytes: &[u8], out: &mut [u8]) {
    let n = bytes.len().min(out.len());
    out[..n].copy_from_slice(&bytes[..n]);
    out[n..].fill(0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::DType;

    fn input(name: &str, dims: &[i64], symbols: &[&str]) -> DeclaredInput {
        DeclaredInput {
            name: name.into(),
            dims: dims.to_vec(),
            symbols: symbols.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn named_batch_is_fixed() {
        let p = plan(&[input("images", &[-1, 3, 640, 640], &["batch", "", "", ""])], 8).unwrap();
        assert_eq!(p.symbol.as_deref(), Some("batch"));
        assert_eq!(p.batch, 8);
        assert_eq!(p.batch_inputs, vec![true]);
        // Several inputs sharing the symbol (encoder features + prompts).
        let p = plan(
            &[
                input("fpn_0", &[-1, 256, 128, 128], &["F", "", "", ""]),
                input("prompt_mask", &[-1, 4], &["F", ""]),
            ],
            4,
        )
        .unwrap();
        assert_eq!((p.symbol.as_deref(), p.batch), (Some("F"), 4));
        assert_eq!(p.batch_inputs, vec![true, true]);
    }

    #[test]
    fn fixed_models_keep_their_batch() {
        let p = plan(&[input("images", &[4, 3, 64, 64], &["", "", "", ""])], 8).unwrap();
        assert_eq!((p.symbol, p.batch, p.batch_inputs), (None, 4, vec![false]));
    }

    #[test]
    fn unfixable_models_say_why() {
        let e = plan(&[input("x", &[-1, 3], &["", ""])], 8).unwrap_err();
        assert!(e.contains("no name"), "{e}");
        let e = plan(&[input("x", &[-1, -1, 3], &["b", "t", ""])], 8).unwrap_err();
        assert!(e.contains("dynamic dimension 1"), "{e}");
        let e = plan(
            &[input("a", &[-1, 3], &["b", ""]), input("c", &[-1, 3], &["n", ""])],
            8,
        )
        .unwrap_err();
        assert!(e.contains("disagree"), "{e}");
        assert!(plan(&[], 8).is_err());
    }

    #[test]
    fn outputs_with_the_batch_are_sliced() {
        let spec = |shape: Vec<Option<usize>>| TensorSpec {
            name: "o".into(),
            dtype: DType::F32,
            shape,
        };
        let p = plan(&[input("x", &[-1, 3], &["batch", ""])], 8).unwrap();
        let outs = [spec(vec![None, Some(40), Some(8400)]), spec(vec![Some(1)])];
        assert_eq!(batch_outputs(&outs, &p), vec![true, false]);
        let fixed = plan(&[input("x", &[8, 3], &["", ""])], 8).unwrap();
        assert_eq!(batch_outputs(&outs, &fixed), vec![false, false]);
    }

    #[test]
    fn padding_is_reported_once_when_batches_are_mostly_empty() {
        let mut f = BatchFill::default();
        // Start-up batches (sources still joining) are not judged, however empty.
        for _ in 0..FILL_STARTUP {
            assert_eq!(f.record(1, 8), None);
        }
        for _ in 0..FILL_WINDOW - 1 {
            assert_eq!(f.record(5, 8), None);
        }
        assert_eq!(f.record(5, 8), Some(5.0));
        assert_eq!(f.record(5, 8), None);
        // Full enough (7 of 8 on average, the last batch short): nothing to say, also
        // after nearly empty start-up batches.
        let mut f = BatchFill::default();
        for _ in 0..FILL_STARTUP {
            assert_eq!(f.record(1, 8), None);
        }
        for i in 0..FILL_WINDOW {
            assert_eq!(f.record(if i % 2 == 0 { 8 } else { 6 }, 8), None);
        }
    }

    #[test]
    fn rows_and_padding() {
        assert_eq!(with_rows(&[8, 3, 2], 5), vec![5, 3, 2]);
        assert_eq!(row_bytes(&[8, 3, 2], 5, 4), Some(120));
        assert_eq!(row_bytes(&[8, usize::MAX, 2], 5, 4), None);
        let mut out = [9u8; 8];
        pad_host(&[1, 2, 3, 4], &mut out);
        assert_eq!(out, [1, 2, 3, 4, 0, 0, 0, 0]);
    }
}
