//! Conversions between our tensors and ONNX Runtime values: element types, host views,
//! device values, outputs copied to host or kept on the device.

use super::*;

/// Our dtype for an ONNX Runtime element type, converting the few types we widen or narrow
/// at output time (`bool` → u8 with true = 255, `f64`/`bf16` → f32, small ints → i32,
/// `u32`/`u64` → i64, saturating).
pub(super) fn map_dtype(ty: TensorElementType) -> Option<DType> {
    Some(match ty {
        TensorElementType::Float32 | TensorElementType::Float64 | TensorElementType::Bfloat16 => DType::F32,
        TensorElementType::Float16 => DType::F16,
        TensorElementType::Uint8 | TensorElementType::Bool => DType::U8,
        TensorElementType::Int8
        | TensorElementType::Int16
        | TensorElementType::Uint16
        | TensorElementType::Int32 => DType::I32,
        TensorElementType::Int64 | TensorElementType::Uint32 | TensorElementType::Uint64 => DType::I64,
        _ => return None,
    })
}

pub(super) fn spec_from_outlet(
    name: &str,
    ty: &ValueType,
    what: &str,
    path: &str,
) -> Result<TensorSpec, BackendError> {
    match ty {
        ValueType::Tensor { ty: elem, shape, .. } => {
            let dtype = map_dtype(*elem).ok_or_else(|| BackendError::ModelInvalid {
                path: path.to_string(),
                reason: format!(
                    "{what} '{name}' has element type {elem:?}, which this plugin does not support"
                ),
            })?;
            let shape = shape
                .iter()
                .map(|&d| if d < 0 { None } else { usize::try_from(d).ok() })
                .collect();
            Ok(TensorSpec {
                name: name.to_string(),
                dtype,
                shape,
            })
        }
        other => Err(BackendError::ModelInvalid {
            path: path.to_string(),
            reason: format!("{what} '{name}' is a {other}, not a tensor"),
        }),
    }
}

pub(super) fn describe_shape(dtype: DType, shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("{} [{}]", dtype.name(), dims.join(", "))
}

/// Checked element count of a concrete shape.
pub(super) fn checked_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// Reinterprets bytes as `T` without copying when aligned; `None` when misaligned.
pub(super) fn typed_view<T: Copy>(bytes: &[u8]) -> Option<&[T]> {
    // SAFETY: only used with plain-old-data element types (f32, f16, u8, i32, i64) for
    // which every bit pattern is valid; `align_to` yields only the aligned middle part.
    let (pre, mid, post) = unsafe { bytes.align_to::<T>() };
    (pre.is_empty() && post.is_empty()).then_some(mid)
}

/// Decodes little/native-endian bytes to `Vec<T>` (the copying fallback).
pub(super) fn copy_typed<T, const N: usize>(bytes: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
    bytes
        .chunks_exact(N)
        .map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            f(a)
        })
        .collect()
}

/// An input value borrowing host bytes when possible.
pub(super) fn host_value<'a>(
    dtype: DType,
    shape: &[usize],
    bytes: &'a [u8],
) -> ort::Result<SessionInputValue<'a>> {
    let shape: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    macro_rules! view_or_copy {
        ($t:ty, $n:literal, $conv:expr) => {
            match typed_view::<$t>(bytes) {
                Some(v) => SessionInputValue::from(TensorRef::from_array_view((shape, v))?),
                None => SessionInputValue::from(ort::value::Tensor::from_array((
                    shape,
                    copy_typed::<$t, $n>(bytes, $conv),
                ))?),
            }
        };
    }
    Ok(match dtype {
        DType::F32 => view_or_copy!(f32, 4, f32::from_ne_bytes),
        DType::F16 => view_or_copy!(half::f16, 2, half::f16::from_ne_bytes),
        DType::I32 => view_or_copy!(i32, 4, i32::from_ne_bytes),
        DType::I64 => view_or_copy!(i64, 8, i64::from_ne_bytes),
        DType::U8 => SessionInputValue::from(TensorRef::from_array_view((shape, bytes))?),
    })
}

/// An input value over raw CUDA device memory.
///
/// # Safety
/// `ptr` must point to at least `shape * dtype.size()` bytes of device memory on
/// `device_id` that stays alive (and unmodified) while the value is used.
pub(super) unsafe fn device_value<'a>(
    dtype: DType,
    shape: &[usize],
    ptr: u64,
    device_id: i32,
) -> ort::Result<SessionInputValue<'a>> {
    let info = cuda_memory_info(device_id)?;
    let shape = Shape::new(shape.iter().map(|&d| d as i64));
    let data = ptr as usize as *mut ort::sys::c_void;
    // SAFETY: forwarded to the caller.
    Ok(unsafe {
        match dtype {
            DType::F32 => SessionInputValue::from(TensorRefMut::<f32>::from_raw(info, data, shape)?),
            DType::F16 => SessionInputValue::from(TensorRefMut::<half::f16>::from_raw(info, data, shape)?),
            DType::U8 => SessionInputValue::from(TensorRefMut::<u8>::from_raw(info, data, shape)?),
            DType::I32 => SessionInputValue::from(TensorRefMut::<i32>::from_raw(info, data, shape)?),
            DType::I64 => SessionInputValue::from(TensorRefMut::<i64>::from_raw(info, data, shape)?),
        }
    })
}

/// Memory info of CUDA device memory on `device_id`.
pub(super) fn cuda_memory_info(device_id: i32) -> ort::Result<MemoryInfo<'static>> {
    MemoryInfo::new(
        AllocationDevice::CUDA,
        device_id,
        AllocatorType::Device,
        MemoryType::Default,
    )
}

/// Whether a raw ORT API call succeeded; a failure status is released.
pub(super) fn api_ok(status: ort::sys::OrtStatusPtr) -> Result<(), ()> {
    if status.0.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null status returned by the API is ours to release.
    unsafe { (ort::api().ReleaseStatus)(status.0) };
    Err(())
}

/// ORT element type, our element type, shape, element count and byte length of one ORT
/// output tensor.
pub(super) fn output_layout(
    name: &str,
    value: &DynValue,
) -> Result<(TensorElementType, DType, Vec<usize>, usize, usize), BackendError> {
    let (elem, dims) = match value.dtype() {
        ValueType::Tensor { ty, shape, .. } => (*ty, shape.clone()),
        other => {
            return Err(BackendError::Runtime(format!(
                "output '{name}' is a {other}, not a tensor"
            )))
        }
    };
    let shape: Vec<usize> = dims
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<_, _>>()
        .map_err(|_| BackendError::Runtime(format!("output '{name}' has a negative dimension: {dims}")))?;
    let dtype = map_dtype(elem).ok_or_else(|| {
        BackendError::Runtime(format!("output '{name}' has unsupported element type {elem:?}"))
    })?;
    let count = checked_count(&shape)
        .ok_or_else(|| BackendError::Runtime(format!("output '{name}' shape {dims} overflows")))?;
    let nbytes = count
        .checked_mul(dtype.size())
        .ok_or_else(|| BackendError::Runtime(format!("output '{name}' shape {dims} overflows")))?;
    Ok((elem, dtype, shape, count, nbytes))
}

/// Wraps one ORT output that lives in device memory as a device tensor; the ORT value
/// (memory of ONNX Runtime's CUDA arena) lives as long as the tensor.
pub(super) fn output_on_device(name: &str, value: DynValue) -> Result<Tensor, BackendError> {
    let (_, dtype, shape, _, len) = output_layout(name, &value)?;
    let mut ptr: *mut std::ffi::c_void = std::ptr::null_mut();
    // SAFETY: `value` is a live tensor value; the call writes its data pointer.
    let status =
        unsafe { (ort::api().GetTensorMutableData)(ort::AsPointer::ptr(&value).cast_mut(), &mut ptr) };
    api_ok(status)
        .map_err(|()| BackendError::Runtime(format!("cannot read the address of output '{name}'")))?;
    if ptr.is_null() && len > 0 {
        return Err(BackendError::Runtime(format!("output '{name}' has no data")));
    }
    Ok(Tensor {
        name: name.to_string(),
        dtype,
        shape,
        storage: TensorStorage::Device {
            ptr: ptr as usize as u64,
            len,
            keepalive: std::sync::Arc::new(value),
        },
    })
}

/// Copies one ORT output into a pooled host tensor; `rows`: only the first rows (of a
/// padded run).
pub(super) fn output_to_host(
    pool: &crate::backend::HostOutputs,
    index: usize,
    name: &str,
    value: &DynValue,
    rows: Option<usize>,
) -> Result<Tensor, BackendError> {
    let (elem, dtype, shape, count, nbytes) = output_layout(name, value)?;
    // A padded run: the first `rows` rows only (the copy below stops at the end of `out`).
    let (shape, nbytes) = match rows.filter(|&r| shape.first().is_some_and(|&b| r < b)) {
        Some(r) => (
            fixed_batch::with_rows(&shape, r),
            fixed_batch::row_bytes(&shape, r, dtype.size()).unwrap_or(nbytes),
        ),
        None => (shape, nbytes),
    };
    let dims = crate::parsers::fmt_shape(&shape);
    let rt = |e: ort::Error| BackendError::Runtime(format!("reading output '{name}': {e}"));
    let mut bytes = pool.acquire(index, nbytes, name)?;
    let out = bytes.as_mut_slice();
    macro_rules! copy_as {
        ($src:ty, $conv:expr) => {{
            let (_, data) = value.try_extract_tensor::<$src>().map_err(rt)?;
            if data.len() != count {
                return Err(BackendError::Runtime(format!(
                    "output '{name}' holds {} values for shape {dims}",
                    data.len()
                )));
            }
            let size = dtype.size();
            for (dst, v) in out.chunks_exact_mut(size).zip(data.iter()) {
                let conv = $conv;
                dst.copy_from_slice(&conv(*v));
            }
        }};
    }
    match elem {
        TensorElementType::Float32 => copy_as!(f32, |v: f32| v.to_ne_bytes()),
        TensorElementType::Float64 => copy_as!(f64, |v: f64| (v as f32).to_ne_bytes()),
        TensorElementType::Bfloat16 => copy_as!(half::bf16, |v: half::bf16| v.to_f32().to_ne_bytes()),
        TensorElementType::Float16 => copy_as!(half::f16, |v: half::f16| v.to_ne_bytes()),
        TensorElementType::Uint8 => copy_as!(u8, |v: u8| [v]),
        TensorElementType::Bool => copy_as!(bool, |v: bool| [u8::from(v) * 255]),
        TensorElementType::Int8 => copy_as!(i8, |v: i8| i32::from(v).to_ne_bytes()),
        TensorElementType::Int16 => copy_as!(i16, |v: i16| i32::from(v).to_ne_bytes()),
        TensorElementType::Uint16 => copy_as!(u16, |v: u16| i32::from(v).to_ne_bytes()),
        TensorElementType::Int32 => copy_as!(i32, |v: i32| v.to_ne_bytes()),
        TensorElementType::Int64 => copy_as!(i64, |v: i64| v.to_ne_bytes()),
        TensorElementType::Uint32 => copy_as!(u32, |v: u32| i64::from(v).to_ne_bytes()),
        TensorElementType::Uint64 => copy_as!(u64, |v: u64| (v.min(i64::MAX as u64) as i64).to_ne_bytes()),
        _ => {
            return Err(BackendError::Runtime(format!(
                "output '{name}' has unsupported element type {elem:?}"
            )))
        }
    }
    Ok(Tensor::host(name, dtype, shape, bytes))
}

/// A device tensor cut to its first `rows` rows (same address).
pub(super) fn keep_device_rows(t: Tensor, rows: usize) -> Tensor {
    let Tensor {
        name,
        dtype,
        shape,
        storage,
    } = t;
    let len = fixed_batch::row_bytes(&shape, rows, dtype.size());
    let storage = match (storage, len) {
        (TensorStorage::Device { ptr, keepalive, .. }, Some(len)) => {
            TensorStorage::Device { ptr, len, keepalive }
        }
        (other, _) => other,
    };
    Tensor {
        name,
        dtype,
        shape: fixed_batch::with_rows(&shape, rows),
        storage,
    }
}
