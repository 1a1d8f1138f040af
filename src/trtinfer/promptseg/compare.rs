//! Comparison of the detections of two runs of the same batch (two routes, or two rounds of
//! one route): bit-for-bit equality, and equality within a tolerance.
//!
//! Routes run the models with different batch sizes (route a: encoder batch 1, decoder
//! batch K; route c: encoder batch F, decoder batch F). GPU libraries pick their kernels
//! per shape (cuBLAS GEMM tiling and split-K, cuDNN convolution and reduction algorithms),
//! so the same row summed in another order may differ in the last bits of an f32: a mask
//! logit next to the threshold flips a pixel, a score tie flips the order. On the CPU the
//! routes are bit-identical. The tolerance comparison matches detections per frame and
//! class greedily by box IoU and reports the worst matched pair.

use std::collections::BTreeMap;

use crate::results::Detection;

/// What two runs may differ by and still count as the same result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// Lowest box IoU of a matched pair (frame pixels).
    pub box_iou_min: f64,
    /// Largest absolute score difference of a matched pair.
    pub score_abs_max: f64,
    /// Lowest mask IoU of a matched pair (frame pixels; a mask on one side only is 0).
    pub mask_iou_min: f64,
}

impl Default for Tolerance {
    /// Box IoU ≥ 0.99 (a 100 px box may move by half a pixel), score difference ≤ 1e-3
    /// (far below any threshold a user sets by hand) and mask IoU ≥ 0.98 (2 % of the
    /// pixels of a mask, the ones next to the threshold, may flip).
    fn default() -> Self {
        Self {
            box_iou_min: 0.99,
            score_abs_max: 1e-3,
            mask_iou_min: 0.98,
        }
    }
}

/// The outcome of comparing `other` with `reference`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    /// Every detection identical bit for bit (scores and boxes by their f32 bits, masks by
    /// rectangle and pixels; device addresses of masks are not compared).
    pub equal_bitwise: bool,
    /// Same number of detections in every frame and class.
    pub counts_equal: bool,
    /// Detection pairs matched.
    pub matched: usize,
    /// Detections of either side left without a partner.
    pub unmatched: usize,
    /// Worst box IoU over the matched pairs (1 when none were matched).
    pub box_iou: f64,
    /// Largest absolute score difference over the matched pairs.
    pub score_abs: f64,
    /// Worst mask IoU over the matched pairs (1 when none were matched).
    pub mask_iou: f64,
}

impl Comparison {
    /// Whether the two runs agree within `t`: same counts, nothing unmatched, and the
    /// worst matched pair inside every bound.
    pub fn within(&self, t: &Tolerance) -> bool {
        self.counts_equal
            && self.unmatched == 0
            && self.box_iou >= t.box_iou_min
            && self.score_abs <= t.score_abs_max
            && self.mask_iou >= t.mask_iou_min
    }
}

/// Whether two detections are identical bit for bit (see [`Comparison::equal_bitwise`]).
pub fn same_bits(a: &Detection, b: &Detection) -> bool {
    let boxes = |d: &Detection| [d.bbox.x0, d.bbox.y0, d.bbox.x1, d.bbox.y1].map(f32::to_bits);
    let masks = match (&a.mask, &b.mask) {
        (None, None) => true,
        (Some(x), Some(y)) => x.same_bits(y),
        _ => false,
    };
    a.model == b.model
        && a.class_id == b.class_id
        && a.label == b.label
        && a.confidence.to_bits() == b.confidence.to_bits()
        && boxes(a) == boxes(b)
        && a.object_id == b.object_id
        && a.query == b.query
        && a.mask_source == b.mask_source
        && a.secondary == b.secondary
        && masks
}

/// Mask IoU of a matched pair: 1 without masks, 0 with a mask on one side only.
fn mask_iou(a: &Detection, b: &Detection) -> f64 {
    match (&a.mask, &b.mask) {
        (None, None) => 1.0,
        (Some(x), Some(y)) => x.iou(y),
        _ => 0.0,
    }
}

/// Compares the detections of one batch, `[frame][detection]`, of two runs.
pub fn compare(reference: &[Vec<Detection>], other: &[Vec<Detection>]) -> Comparison {
    let mut c = Comparison {
        equal_bitwise: reference.len() == other.len(),
        counts_equal: reference.len() == other.len(),
        matched: 0,
        unmatched: 0,
        box_iou: 1.0,
        score_abs: 0.0,
        mask_iou: 1.0,
    };
    let empty = Vec::new();
    for f in 0..reference.len().max(other.len()) {
        let (r, o) = (reference.get(f).unwrap_or(&empty), other.get(f).unwrap_or(&empty));
        c.equal_bitwise &= r.len() == o.len() && r.iter().zip(o).all(|(a, b)| same_bits(a, b));
        let mut classes: BTreeMap<u32, (Vec<&Detection>, Vec<&Detection>)> = BTreeMap::new();
        for d in r {
            classes.entry(d.class_id).or_default().0.push(d);
        }
        for d in o {
            classes.entry(d.class_id).or_default().1.push(d);
        }
        for (rs, os) in classes.values() {
            c.counts_equal &= rs.len() == os.len();
            // Greedy by box IoU: best overlapping pair first.
            let mut pairs: Vec<(f32, usize, usize)> = Vec::with_capacity(rs.len() * os.len());
            for (i, a) in rs.iter().enumerate() {
                for (j, b) in os.iter().enumerate() {
                    let iou = a.bbox.iou(&b.bbox);
                    if iou > 0.0 {
                        pairs.push((iou, i, j));
                    }
                }
            }
            pairs.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));
            let (mut used_r, mut used_o) = (vec![false; rs.len()], vec![false; os.len()]);
            let mut matched = 0;
            for (iou, i, j) in pairs {
                if used_r[i] || used_o[j] {
                    continue;
                }
                (used_r[i], used_o[j]) = (true, true);
                matched += 1;
                let (a, b) = (rs[i], os[j]);
                c.box_iou = c.box_iou.min(iou as f64);
                c.score_abs = c.score_abs.max((a.confidence as f64 - b.confidence as f64).abs());
                c.mask_iou = c.mask_iou.min(mask_iou(a, b));
            }
            c.matched += matched;
            c.unmatched += rs.len() + os.len() - 2 * matched;
        }
    }
    c
}
