//! Greedy non-maximum suppression, class-aware or class-agnostic.
//!
//! Candidates are visited in descending score order; a candidate is kept unless a box
//! already kept (of the same class, for the class-aware variant) overlaps it with an IoU
//! strictly greater than the threshold. The cost is `O(k log k + k * kept)` for `k`
//! candidates, so a large number of candidates with a small `max_keep` stays cheap.

use crate::geometry::BoxF;

/// One detection candidate before suppression.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Box used for the overlap test (model pixels in the parsers).
    pub bbox: BoxF,
    /// Confidence in `0..=1` (any finite value works; higher wins).
    pub score: f32,
    /// Class index.
    pub class_id: u32,
    /// Anchor / query index in the model output.
    pub index: u32,
}

/// Sorts `cands` by descending score (ties: ascending index, so results are
/// deterministic) and writes the positions, in `cands`, of the kept candidates into
/// `keep` (cleared first), best first.
///
/// * `iou_threshold`: a candidate overlapping a kept box with IoU `>` this is dropped;
///   `>= 1` (or NaN) disables suppression.
/// * `class_aware`: only boxes of the same class suppress each other.
/// * `max_keep`: at most this many are kept; `0` means no limit.
///
/// Candidates with a non-finite score are never kept.
pub fn nms(
    cands: &mut [Candidate],
    iou_threshold: f32,
    class_aware: bool,
    max_keep: usize,
    keep: &mut Vec<usize>,
) {
    keep.clear();
    cands.sort_unstable_by(|a, b| b.score.total_cmp(&a.score).then(a.index.cmp(&b.index)));
    let limit = if max_keep == 0 { usize::MAX } else { max_keep };
    for (i, c) in cands.iter().enumerate() {
        if keep.len() >= limit {
            break;
        }
        if !c.score.is_finite() {
            continue;
        }
        let suppressed = keep.iter().any(|&k| {
            let kept = &cands[k];
            (!class_aware || kept.class_id == c.class_id) && kept.bbox.iou(&c.bbox) > iou_threshold
        });
        if !suppressed {
            keep.push(i);
        }
    }
}

/// Class-aware NMS over parallel slices; returns the kept indices into the slices, best
/// first. Slices of different lengths are truncated to the shortest.
pub fn nms_indices(
    boxes: &[BoxF],
    scores: &[f32],
    classes: &[u32],
    iou_threshold: f32,
    max_keep: usize,
) -> Vec<usize> {
    let mut cands: Vec<Candidate> = boxes
        .iter()
        .zip(scores)
        .zip(classes)
        .enumerate()
        .filter_map(|(i, ((b, s), c))| {
            Some(Candidate {
                bbox: *b,
                score: *s,
                class_id: *c,
                index: u32::try_from(i).ok()?,
            })
        })
        .collect();
    let mut keep = Vec::new();
    nms(&mut cands, iou_threshold, true, max_keep, &mut keep);
    keep.into_iter().map(|k| cands[k].index as usize).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(x0: f32, score: f32, class_id: u32, index: u32) -> Candidate {
        Candidate {
            bbox: BoxF::new(x0, 0.0, x0 + 10.0, 10.0),
            score,
            class_id,
            index,
        }
    }

    #[test]
    fn same_class_suppressed_other_class_kept() {
        let mut v = vec![
            c(0.0, 0.8, 0, 0),
            c(1.0, 0.9, 0, 1),
            c(0.5, 0.7, 1, 2),
            c(50.0, 0.6, 0, 3),
        ];
        let mut keep = Vec::new();
        nms(&mut v, 0.5, true, 0, &mut keep);
        let kept: Vec<u32> = keep.iter().map(|&k| v[k].index).collect();
        assert_eq!(kept, vec![1, 2, 3]);
        // Class-agnostic: the class-1 box is suppressed too.
        nms(&mut v, 0.5, false, 0, &mut keep);
        let kept: Vec<u32> = keep.iter().map(|&k| v[k].index).collect();
        assert_eq!(kept, vec![1, 3]);
    }

    #[test]
    fn max_keep_and_nan() {
        let mut v = vec![
            c(0.0, f32::NAN, 0, 0),
            c(100.0, 0.5, 0, 1),
            c(200.0, 0.6, 0, 2),
            c(300.0, f32::INFINITY, 0, 3),
        ];
        let mut keep = Vec::new();
        nms(&mut v, 0.5, true, 1, &mut keep);
        assert_eq!(keep.len(), 1);
        assert_eq!(v[keep[0]].index, 2);
        nms(&mut v, f32::NAN, true, 0, &mut keep);
        assert_eq!(keep.len(), 2);
    }

    #[test]
    fn threshold_is_strict() {
        // IoU of these two is exactly 1/3.
        let a = BoxF::new(0.0, 0.0, 10.0, 10.0);
        let b = BoxF::new(5.0, 0.0, 15.0, 10.0);
        let iou = a.iou(&b);
        let kept = nms_indices(&[a, b], &[0.9, 0.8], &[0, 0], iou, 0);
        assert_eq!(kept, vec![0, 1]);
        let kept = nms_indices(&[a, b], &[0.9, 0.8], &[0, 0], iou - 1e-3, 0);
        assert_eq!(kept, vec![0]);
        assert!(nms_indices(&[], &[], &[], 0.5, 0).is_empty());
    }
}
