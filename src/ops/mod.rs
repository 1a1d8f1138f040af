//! Operations on frames and tensors, one folder each, with the CPU implementation, the
//! CUDA runner (feature `cuda`) and the rules both follow side by side. Elements
//! (`src/trt*/`) call these; the CUDA runners build on [`crate::cuda`] (driver, context,
//! GstCudaMemory interop, NVRTC), never the reverse. Kernel sources are under `kernels/`.

pub mod dense;
pub mod maskselect;
pub mod mosaic;
pub mod overlay;
pub mod preprocess;
pub mod yolo;
