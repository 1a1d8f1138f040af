//! Device input and output (cargo feature `cuda`): tensors moved to and from GPU memory.

use super::*;

#[cfg(feature = "cuda")]
pub(crate) fn to_device(t: &Tensor, device_id: i32) -> Result<Tensor, String> {
    use gsttrtvision::cuda::{DeviceBuffer, DeviceContext};
    use gsttrtvision::tensor::TensorStorage;
    let ctx = DeviceContext::primary(device_id).map_err(|e| e.to_string())?;
    let bytes = t.host_bytes().ok_or("the input is not in host memory")?;
    let buf = DeviceBuffer::new(&ctx, bytes.len()).map_err(|e| e.to_string())?;
    buf.copy_from_host(bytes).map_err(|e| e.to_string())?;
    Ok(t.with_storage(TensorStorage::device(buf.ptr(), buf.len(), buf)))
}

/// A host copy of a device tensor (host tensors are cloned).
#[cfg(feature = "cuda")]
pub(crate) fn to_host(t: &Tensor, device_id: i32) -> Result<Tensor, String> {
    use gsttrtvision::cuda::{copy_device_to_host, DeviceContext};
    use gsttrtvision::tensor::TensorStorage;
    let TensorStorage::Device { ptr, len, .. } = &t.storage else {
        return Ok(t.clone());
    };
    let ctx = DeviceContext::primary(device_id).map_err(|e| e.to_string())?;
    let mut bytes = vec![0u8; t.len_bytes()];
    copy_device_to_host(&ctx, *ptr, *len, &mut bytes).map_err(|e| e.to_string())?;
    let bytes = gsttrtvision::tensor::PooledBytes::detached(bytes);
    Ok(t.with_storage(TensorStorage::Host(std::sync::Arc::new(bytes))))
}

#[cfg(not(feature = "cuda"))]
pub(crate) fn to_host(_t: &Tensor, _device_id: i32) -> Result<Tensor, String> {
    Err("this binary was built without the cargo feature `cuda` (device memory needs it)".into())
}

#[cfg(not(feature = "cuda"))]
pub(crate) fn to_device(_t: &Tensor, _device_id: i32) -> Result<Tensor, String> {
    Err("this binary was built without the cargo feature `cuda` (device memory needs it)".into())
}

// ---------------------------------------------------------------------------------------

pub(crate) struct CudaRun {
    pub(crate) timing: Timing,
    pub(crate) parity: Result<Vec<Diff>, String>,
    pub(crate) vram: Value,
    pub(crate) h2d_measured: Option<f64>,
    pub(crate) d2h_measured: Option<f64>,
    pub(crate) pcie_samples: usize,
    pub(crate) device_input: Value,
    pub(crate) device_input_pass: bool,
}
