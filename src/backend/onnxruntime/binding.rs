//! Raw I/O binding through the ONNX Runtime C API.

use super::*;

/// Whether a raw ORT API call succeeded; a failure status is released.
pub(super) fn api_ok(status: ort::sys::OrtStatusPtr) -> Result<(), ()> {
    if status.0.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null status returned by the API is ours to release.
    unsafe { (ort::api().ReleaseStatus)(status.0) };
    Err(())
}

/// `spec`'s shape with the dynamic (batch) dimension at `batch`.
#[cfg(feature = "cuda")]
pub(super) fn full_shape(spec: &TensorSpec, batch: usize) -> Vec<usize> {
    spec.shape.iter().map(|d| d.unwrap_or(batch)).collect()
}

/// The ONNX Runtime element type our `dtype` stands for without conversion.
#[cfg(feature = "cuda")]
pub(super) fn native_elem(dtype: DType) -> TensorElementType {
    match dtype {
        DType::F32 => TensorElementType::Float32,
        DType::F16 => TensorElementType::Float16,
        DType::U8 => TensorElementType::Uint8,
        DType::I32 => TensorElementType::Int32,
        DType::I64 => TensorElementType::Int64,
    }
}

/// Binds `value` as input (`input` true) or output `name` through the C API:
/// `IoBinding::bind_input` copies values that borrow their memory (ours do: the
/// preprocessed tensor, the output sets), which is the copy binding exists to avoid.
pub(super) fn bind_raw(
    binding: &mut ort::session::IoBinding,
    name: &str,
    value: &SessionInputValue<'_>,
    input: bool,
) -> Result<(), BackendError> {
    let cname = std::ffi::CString::new(name.as_bytes())
        .map_err(|_| BackendError::Runtime(format!("tensor name '{name}' holds a NUL byte")))?;
    let api = ort::api();
    let f = if input { api.BindInput } else { api.BindOutput };
    // SAFETY: live binding and value pointers, NUL-terminated name; the caller keeps the
    // value alive until the binding is cleared.
    let status = unsafe {
        f(
            ort::AsPointer::ptr_mut(binding),
            cname.as_ptr(),
            ort::AsPointer::ptr(&**value),
        )
    };
    api_ok(status).map_err(|()| {
        BackendError::Runtime(format!(
            "cannot bind {} '{name}'",
            if input { "input" } else { "output" }
        ))
    })
}

/// Binds every output in `outputs` to CUDA memory of `device_id` that ONNX Runtime
/// allocates at each run.
pub(super) fn bind_outputs_to_device(
    binding: &mut ort::session::IoBinding,
    outputs: &[TensorSpec],
    device_id: i32,
) -> Result<(), BackendError> {
    binding.clear_outputs();
    let info = cuda_memory_info(device_id)
        .map_err(|e| BackendError::Runtime(format!("no CUDA memory info: {e}")))?;
    for o in outputs {
        binding
            .bind_output_to_device(o.name.as_str(), &info)
            .map_err(|e| {
                BackendError::Runtime(format!("cannot bind output '{}' to CUDA memory: {e}", o.name))
            })?;
    }
    Ok(())
}

/// Replaces the bound inputs of `binding` with `values`.
pub(super) fn bind_inputs(
    binding: &mut ort::session::IoBinding,
    values: &[(Cow<'_, str>, SessionInputValue<'_>)],
) -> Result<(), BackendError> {
    binding.clear_inputs();
    for (name, value) in values {
        bind_raw(binding, name, value, true)?;
    }
    Ok(())
}
