//! Operations on frames and tensors, one folder each, with the CPU implementation, the
//! CUDA runner (feature `cuda`) and the rules both follow side by side. Elements
//! (`src/trt*/`) call these; the CUDA runners build on [`crate::cuda`] (driver, context,
//! GstCudaMemory interop, NVRTC), never the reverse. Kernel sources are under `kernels/`.

pub mod decode;
pub mod dense;
#[cfg(feature = "cuda")]
pub(crate) mod device_tensor;
#[cfg(feature = "cuda")]
pub mod kernels;
pub mod maskselect;
pub mod mosaic;
pub mod overlay;
pub mod preprocess;
pub mod yolo;
