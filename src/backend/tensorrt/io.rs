//! Engine I/O tensors: type mapping, batch layout and per-call input checks (pure Rust).

use std::ffi::CString;

use crate::backend::{BackendError, InputRef, TensorSpec};
use crate::tensor::{DType, Tensor, TensorStorage};

/// `nvinfer1::DataType` values.
mod trt_type {
    pub const FLOAT: i32 = 0;
    pub const HALF: i32 = 1;
    pub const INT8: i32 = 2;
    pub const INT32: i32 = 3;
    pub const BOOL: i32 = 4;
    pub const UINT8: i32 = 5;
    pub const FP8: i32 = 6;
    pub const BF16: i32 = 7;
    pub const INT64: i32 = 8;
    pub const INT4: i32 = 9;
    pub const FP4: i32 = 10;
    pub const E8M0: i32 = 11;
}

/// TensorRT name of a `nvinfer1::DataType`.
pub(crate) fn trt_dtype_name(code: i32) -> &'static str {
    match code {
        trt_type::FLOAT => "FLOAT",
        trt_type::HALF => "HALF",
        trt_type::INT8 => "INT8",
        trt_type::INT32 => "INT32",
        trt_type::BOOL => "BOOL",
        trt_type::UINT8 => "UINT8",
        trt_type::FP8 => "FP8",
        trt_type::BF16 => "BF16",
        trt_type::INT64 => "INT64",
        trt_type::INT4 => "INT4",
        trt_type::FP4 => "FP4",
        trt_type::E8M0 => "E8M0",
        _ => "unknown",
    }
}

/// The plugin's element type for a TensorRT I/O type (`BOOL` is exchanged as `u8`).
pub(crate) fn dtype_from_trt(code: i32) -> Option<DType> {
    Some(match code {
        trt_type::FLOAT => DType::F32,
        trt_type::HALF => DType::F16,
        trt_type::UINT8 | trt_type::BOOL => DType::U8,
        trt_type::INT32 => DType::I32,
        trt_type::INT64 => DType::I64,
        _ => return None,
    })
}

/// One engine I/O tensor.
#[derive(Debug, Clone)]
pub(crate) struct IoTensor {
    /// Spec reported by the backend (`-1` dimensions are `None`).
    pub spec: TensorSpec,
    /// Name for the shim.
    pub cname: CString,
    /// Engine dimensions (`-1` = dynamic).
    pub dims: Vec<i64>,
    /// Inputs: optimisation profile 0 minimum (equals `dims` when static).
    pub min: Vec<i64>,
    /// Inputs: optimisation profile 0 maximum (equals `dims` when static).
    pub max: Vec<i64>,
}

impl IoTensor {
    /// Builds the description from engine data; `Err` says why the tensor is unusable.
    pub(crate) fn new(
        name: &str,
        dtype: i32,
        linear: bool,
        dims: &[i64],
        min: &[i64],
        max: &[i64],
    ) -> Result<Self, String> {
        let dt = dtype_from_trt(dtype).ok_or_else(|| {
            format!(
                "tensor '{name}' has TensorRT type {} which trtvision does not exchange; export the model with \
                 f32, f16, u8, i32 or i64 inputs and outputs",
                trt_dtype_name(dtype)
            )
        })?;
        if !linear {
            return Err(format!(
                "tensor '{name}' uses a vectorized TensorRT format; build the engine with linear (default) I/O formats"
            ));
        }
        let cname = CString::new(name).map_err(|_| format!("tensor name {name:?} contains a NUL byte"))?;
        Ok(IoTensor {
            spec: TensorSpec {
                name: name.to_string(),
                dtype: dt,
                shape: dims.iter().map(|&d| usize::try_from(d).ok()).collect(),
            },
            cname,
            dims: dims.to_vec(),
            min: min.to_vec(),
            max: max.to_vec(),
        })
    }
}

/// How the engine treats the batch (dimension 0 of every input).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchLayout {
    /// Dimension 0 is dynamic in every input (optimisation profile); otherwise fixed and
    /// smaller batches are padded up to it.
    pub dynamic: bool,
    /// Largest batch the engine accepts.
    pub engine_max: usize,
}

/// Batch layout of an engine from its inputs.
pub(crate) fn batch_layout(inputs: &[IoTensor]) -> Result<BatchLayout, String> {
    if inputs.is_empty() {
        return Err("the engine has no inputs".into());
    }
    let mut dynamic = None;
    let mut engine_max = usize::MAX;
    for t in inputs {
        let Some(&d0) = t.dims.first() else {
            return Err(format!(
                "input '{}' is a scalar; inputs need a leading batch dimension",
                t.spec.name
            ));
        };
        let is_dyn = d0 < 0;
        if *dynamic.get_or_insert(is_dyn) != is_dyn {
            return Err("inputs mix a dynamic and a fixed batch dimension".into());
        }
        let max = if is_dyn {
            t.max.first().copied().unwrap_or(-1)
        } else {
            d0
        };
        if max < 1 {
            return Err(format!(
                "input '{}' has no optimisation profile for its dynamic batch dimension",
                t.spec.name
            ));
        }
        engine_max = engine_max.min(max as usize);
    }
    Ok(BatchLayout {
        dynamic: dynamic.unwrap_or(false),
        engine_max,
    })
}

/// Checks one call's inputs against the engine inputs. Returns the batch size and the
/// tensors in engine input order.
pub(crate) fn match_inputs<'a>(
    engine_inputs: &[IoTensor],
    given: &[InputRef<'a>],
    max_batch: usize,
) -> Result<(usize, Vec<&'a Tensor>), BackendError> {
    let names = || {
        engine_inputs
            .iter()
            .map(|t| t.spec.describe())
            .collect::<Vec<_>>()
            .join("; ")
    };
    for g in given {
        if !engine_inputs.iter().any(|t| t.spec.name == g.name) {
            return Err(BackendError::ShapeMismatch(format!(
                "the engine has no input '{}' (it expects: {})",
                g.name,
                names()
            )));
        }
    }
    let mut ordered = Vec::with_capacity(engine_inputs.len());
    let mut batch = None;
    for t in engine_inputs {
        let mut found = given.iter().filter(|g| g.name == t.spec.name);
        let tensor = found.next().map(|g| g.tensor).ok_or_else(|| {
            BackendError::ShapeMismatch(format!("engine input {} was not given", t.spec.describe()))
        })?;
        if found.next().is_some() {
            return Err(BackendError::ShapeMismatch(format!(
                "input '{}' was given twice",
                t.spec.name
            )));
        }
        let b = check_input(t, tensor)?;
        if b == 0 {
            return Err(BackendError::ShapeMismatch(format!(
                "input '{}' has an empty batch",
                t.spec.name
            )));
        }
        match batch {
            None => batch = Some(b),
            Some(prev) if prev != b => {
                return Err(BackendError::ShapeMismatch(format!(
                    "inputs disagree on the batch size ({prev} vs {b} for '{}')",
                    t.spec.name
                )))
            }
            Some(_) => {}
        }
        ordered.push(tensor);
    }
    let batch = batch.unwrap_or(0);
    if batch > max_batch {
        return Err(BackendError::BatchTooLarge {
            got: batch,
            max: max_batch,
        });
    }
    Ok((batch, ordered))
}

/// Checks one input tensor (type, rank, fixed and profile-bounded dimensions, storage
/// size); returns its batch (dimension 0). A fixed batch dimension accepts any smaller
/// batch (padded by the backend).
fn check_input(t: &IoTensor, tensor: &Tensor) -> Result<usize, BackendError> {
    let mismatch = |why: String| {
        BackendError::ShapeMismatch(format!(
            "input '{}' {} {:?}: {why}; the engine expects {}",
            t.spec.name,
            tensor.dtype.name(),
            tensor.shape,
            t.spec.describe()
        ))
    };
    if tensor.dtype != t.spec.dtype {
        return Err(mismatch(format!(
            "element type {} instead of {}",
            tensor.dtype.name(),
            t.spec.dtype.name()
        )));
    }
    if tensor.shape.len() != t.dims.len() {
        return Err(mismatch(format!(
            "rank {} instead of {}",
            tensor.shape.len(),
            t.dims.len()
        )));
    }
    for (i, (&got, &want)) in tensor.shape.iter().zip(&t.dims).enumerate().skip(1) {
        if want >= 0 && got as i64 != want {
            return Err(mismatch(format!("dimension {i} is {got}, not {want}")));
        }
        if want < 0 {
            let (lo, hi) = (
                t.min.get(i).copied().unwrap_or(0),
                t.max.get(i).copied().unwrap_or(i64::MAX),
            );
            if (got as i64) < lo || (got as i64) > hi {
                return Err(mismatch(format!(
                    "dimension {i} is {got}, outside the engine profile {lo}..={hi}"
                )));
            }
        }
    }
    let expected = tensor.len_bytes();
    match &tensor.storage {
        TensorStorage::Host(b) if b.as_slice().len() != expected => {
            return Err(mismatch(format!(
                "{} bytes of data for {expected} expected",
                b.as_slice().len()
            )));
        }
        TensorStorage::Device { len, .. } if *len < expected => {
            return Err(mismatch(format!(
                "device buffer of {len} bytes for {expected} expected"
            )));
        }
        _ => {}
    }
    Ok(tensor.shape.first().copied().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::PooledBytes;
    use std::sync::Arc;

    fn images(dims: &[i64], max: &[i64]) -> IoTensor {
        IoTensor::new("images", 0, true, dims, &[1, 3, 640, 640], max).unwrap()
    }

    fn host(name: &str, dtype: DType, shape: Vec<usize>) -> Tensor {
        let len = shape.iter().product::<usize>() * dtype.size();
        Tensor::host(name, dtype, shape, PooledBytes::detached(vec![0; len]))
    }

    #[test]
    fn type_mapping() {
        assert_eq!(dtype_from_trt(0), Some(DType::F32));
        assert_eq!(dtype_from_trt(1), Some(DType::F16));
        assert_eq!(dtype_from_trt(4), Some(DType::U8));
        assert_eq!(dtype_from_trt(8), Some(DType::I64));
        assert_eq!(dtype_from_trt(7), None);
        let err = IoTensor::new("x", 7, true, &[1], &[1], &[1]).unwrap_err();
        assert!(err.contains("BF16"), "{err}");
        assert!(IoTensor::new("x", 0, false, &[1], &[1], &[1])
            .unwrap_err()
            .contains("vectorized"));
        let t = IoTensor::new("boxes", 0, true, &[-1, 8400, 4], &[], &[]).unwrap();
        assert_eq!(t.spec.shape, vec![None, Some(8400), Some(4)]);
    }

    #[test]
    fn layouts() {
        let dynamic = images(&[-1, 3, 640, 640], &[16, 3, 640, 640]);
        assert_eq!(
            batch_layout(std::slice::from_ref(&dynamic)).unwrap(),
            BatchLayout {
                dynamic: true,
                engine_max: 16
            }
        );
        let fixed = images(&[8, 3, 640, 640], &[8, 3, 640, 640]);
        assert_eq!(
            batch_layout(std::slice::from_ref(&fixed)).unwrap(),
            BatchLayout {
                dynamic: false,
                engine_max: 8
            }
        );
        assert!(batch_layout(&[dynamic, fixed]).unwrap_err().contains("mix"));
        assert!(batch_layout(&[]).is_err());
        let no_profile = images(&[-1, 3, 640, 640], &[-1, 3, 640, 640]);
        assert!(batch_layout(&[no_profile]).unwrap_err().contains("profile"));
    }

    #[test]
    fn input_checks() {
        let engine = vec![images(&[-1, 3, 640, 640], &[8, 3, 640, 640])];
        let ok = host("images", DType::F32, vec![4, 3, 640, 640]);
        let (batch, order) = match_inputs(
            &engine,
            &[InputRef {
                name: "images",
                tensor: &ok,
            }],
            8,
        )
        .unwrap();
        assert_eq!(batch, 4);
        assert_eq!(order.len(), 1);

        let big = host("images", DType::F32, vec![9, 3, 640, 640]);
        let err = match_inputs(
            &engine,
            &[InputRef {
                name: "images",
                tensor: &big,
            }],
            8,
        )
        .unwrap_err();
        assert!(
            matches!(err, BackendError::BatchTooLarge { got: 9, max: 8 }),
            "{err}"
        );

        let small = host("images", DType::F32, vec![2, 3, 320, 320]);
        let err = match_inputs(
            &engine,
            &[InputRef {
                name: "images",
                tensor: &small,
            }],
            8,
        )
        .unwrap_err();
        assert!(
            matches!(err, BackendError::ShapeMismatch(ref m) if m.contains("dimension 2 is 320, not 640")),
            "{err}"
        );

        let half = host("images", DType::F16, vec![2, 3, 640, 640]);
        let err = match_inputs(
            &engine,
            &[InputRef {
                name: "images",
                tensor: &half,
            }],
            8,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("element type f16 instead of f32"),
            "{err}"
        );

        let err = match_inputs(
            &engine,
            &[InputRef {
                name: "input",
                tensor: &ok,
            }],
            8,
        )
        .unwrap_err();
        assert!(err.to_string().contains("no input 'input'"), "{err}");
        let err = match_inputs(&engine, &[], 8).unwrap_err();
        assert!(err.to_string().contains("was not given"), "{err}");

        let short = Tensor {
            storage: TensorStorage::Device {
                ptr: 0x1000,
                len: 16,
                keepalive: Arc::new(()),
            },
            ..ok.clone()
        };
        let err = match_inputs(
            &engine,
            &[InputRef {
                name: "images",
                tensor: &short,
            }],
            8,
        )
        .unwrap_err();
        assert!(err.to_string().contains("device buffer of 16 bytes"), "{err}");
    }

    #[test]
    fn profile_bounds_and_batch_agreement() {
        let engine = vec![
            IoTensor::new(
                "images",
                0,
                true,
                &[-1, 3, -1, -1],
                &[1, 3, 320, 320],
                &[8, 3, 1280, 1280],
            )
            .unwrap(),
            IoTensor::new("scale", 0, true, &[-1, 2], &[1, 2], &[8, 2]).unwrap(),
        ];
        let img = host("images", DType::F32, vec![2, 3, 480, 640]);
        let scale = host("scale", DType::F32, vec![2, 2]);
        let given = [
            InputRef {
                name: "scale",
                tensor: &scale,
            },
            InputRef {
                name: "images",
                tensor: &img,
            },
        ];
        let (b, order) = match_inputs(&engine, &given, 8).unwrap();
        assert_eq!(b, 2);
        assert_eq!(order[0].name, "images", "engine order, not call order");

        let tiny = host("images", DType::F32, vec![2, 3, 160, 640]);
        let err = match_inputs(
            &engine,
            &[
                InputRef {
                    name: "scale",
                    tensor: &scale,
                },
                InputRef {
                    name: "images",
                    tensor: &tiny,
                },
            ],
            8,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("outside the engine profile 320..=1280"),
            "{err}"
        );

        let scale3 = host("scale", DType::F32, vec![3, 2]);
        let err = match_inputs(
            &engine,
            &[
                InputRef {
                    name: "scale",
                    tensor: &scale3,
                },
                InputRef {
                    name: "images",
                    tensor: &img,
                },
            ],
            8,
        )
        .unwrap_err();
        assert!(err.to_string().contains("disagree"), "{err}");
    }

    #[test]
    fn fixed_batch_accepts_smaller_batches() {
        let engine = vec![images(&[4, 3, 640, 640], &[4, 3, 640, 640])];
        let two = host("images", DType::F32, vec![2, 3, 640, 640]);
        assert_eq!(
            match_inputs(
                &engine,
                &[InputRef {
                    name: "images",
                    tensor: &two
                }],
                4
            )
            .unwrap()
            .0,
            2
        );
        let five = host("images", DType::F32, vec![5, 3, 640, 640]);
        assert!(matches!(
            match_inputs(
                &engine,
                &[InputRef {
                    name: "images",
                    tensor: &five
                }],
                4
            ),
            Err(BackendError::BatchTooLarge { got: 5, max: 4 })
        ));
    }
}
