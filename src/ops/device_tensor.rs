//! Device tensors as kernel arguments: their address and element type, checked, for the
//! kernel runners that read model outputs in device memory.

use crate::cuda::CudaError;
use crate::tensor::{DType, Tensor, TensorStorage};

/// Device address of a device tensor, or an error naming it.
pub(crate) fn device_ptr(t: &Tensor) -> Result<u64, CudaError> {
    match &t.storage {
        TensorStorage::Device { ptr, len, .. } if *len >= t.len_bytes() => Ok(*ptr),
        TensorStorage::Device { len, .. } => Err(CudaError::InvalidInput(format!(
            "device tensor '{}' holds {len} bytes, its shape needs {}",
            t.name,
            t.len_bytes()
        ))),
        TensorStorage::Host(_) => Err(CudaError::InvalidInput(format!(
            "tensor '{}' is in host memory",
            t.name
        ))),
    }
}

/// The kernels' `*_f16` flag for `t`: 0 for f32, 1 for f16, an error otherwise.
pub(crate) fn f16_flag(t: &Tensor) -> Result<i32, CudaError> {
    match t.dtype {
        DType::F32 => Ok(0),
        DType::F16 => Ok(1),
        other => Err(CudaError::InvalidInput(format!(
            "tensor '{}' is {}, only f32 and f16 outputs are decoded on the GPU",
            t.name,
            other.name()
        ))),
    }
}
