//! Dense-map summary (depth, segmentation logits): the per-frame minimum, mean and maximum
//! of channel 0 over the map pixels that cover the frame ([`DenseMap::stats`]), computed on
//! the CPU from host values ([`DenseMap::host_stats`], here) or on the GPU
//! ([`cuda::DenseSummarizer`], the same rules) when the map stays in device memory.

use crate::results::DenseMap;

#[cfg(feature = "cuda")]
pub mod cuda;

/// The CPU summary and the region both summaries cover.
impl DenseMap {
    /// [`DenseMap::stats`] computed from the host values.
    pub fn host_stats(&self) -> Option<(f32, f32, f32)> {
        let values = self.channel(0)?;
        let (sx, sy, content) = self.content_region();
        let (mut min, mut max, mut sum, mut n) = (f32::INFINITY, f32::NEG_INFINITY, 0f64, 0usize);
        for (v, row) in values.chunks_exact(self.width.max(1)).enumerate() {
            let my = (v as f32 + 0.5) / sy;
            if my < content.y0 || my >= content.y1 {
                continue;
            }
            for (u, &x) in row.iter().enumerate() {
                let mx = (u as f32 + 0.5) / sx;
                if mx < content.x0 || mx >= content.x1 || !x.is_finite() {
                    continue;
                }
                min = min.min(x);
                max = max.max(x);
                sum += x as f64;
                n += 1;
            }
        }
        (n > 0).then(|| (min, (sum / n as f64) as f32, max))
    }

    /// Map pixels per model pixel horizontally and vertically, and the part of the model
    /// input the frame covers: map pixel `(u, v)` covers the frame when its centre
    /// `((u + 0.5) / sx, (v + 0.5) / sy)` lies in the rectangle (what [`DenseMap::stats`]
    /// summarises; the GPU reduction receives the same three values).
    pub fn content_region(&self) -> (f32, f32, crate::geometry::BoxF) {
        let sx = self.width as f32 / self.transform.model_w as f32;
        let sy = self.height as f32 / self.transform.model_h as f32;
        (sx, sy, self.transform.content_rect())
    }
}
