//! Dense-map summary (depth, segmentation logits): the per-frame summary of a dense
//! output, computed on the GPU ([`cuda::DenseSummarizer`]) when the map stays in device
//! memory.

#[cfg(feature = "cuda")]
pub mod cuda;
