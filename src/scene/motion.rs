//! Where each class is on a given frame: per-camera parameters drawn from a hash of the
//! camera index (no global state, no RNG streams), then closed-form motion.
//!
//! Lanes: the axis across the lanes is cut into 4 equal integer lanes; class `c` lives
//! in lane `perm[c]`. Because an object's side is at most 22 % of `min(w, h)` and a lane
//! is at least 25 % of it, every object fits its lane and objects never overlap.
//! Motion is a triangle wave (linear with bounce) along the lane and, slower, across it.

use super::raster::Shape;
use crate::geometry::BoxF;

/// Where one object goes on one frame.
pub(crate) struct Placement {
    pub class_id: u32,
    pub shape: Shape,
    /// Integer rectangle, fully inside the frame.
    pub extent: BoxF,
}

/// Smallest and largest side of an object, as a fraction of `min(width, height)`.
const SIZE_RANGE: (f64, f64) = (0.10, 0.22);
/// Speed along the lane in travel ranges per frame (one crossing takes 80–250 frames).
const SPEED_ALONG: (f64, f64) = (0.004, 0.0125);
/// Speed across the lane, travel ranges per frame.
const SPEED_ACROSS: (f64, f64) = (0.002, 0.006);
/// Period of the absence cycle of a blinking class, frames; it is absent a third of it.
const BLINK_PERIOD: (f64, f64) = (90.0, 180.0);

/// SplitMix64 finaliser: a good 64-bit mix of `(camera, class, salt)`.
fn hash(camera: u32, class: u32, salt: u32) -> u64 {
    let mut z =
        ((camera as u64) << 32 | (class as u64) << 8 | salt as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Uniform in `[lo, hi)` from the hash.
fn uniform(camera: u32, class: u32, salt: u32, (lo, hi): (f64, f64)) -> f64 {
    let u = (hash(camera, class, salt) >> 11) as f64 / (1u64 << 53) as f64;
    lo + (hi - lo) * u
}

/// Triangle wave in `[0, 1]`: position of a point bouncing between 0 and 1.
fn bounce(t: f64) -> f64 {
    let t = t.rem_euclid(2.0);
    if t > 1.0 {
        2.0 - t
    } else {
        t
    }
}

/// Permutation of the 4 lanes for a camera (Fisher–Yates driven by the hash).
fn lane_permutation(camera: u32) -> [u32; 4] {
    let mut p = [0, 1, 2, 3];
    for i in (1..4).rev() {
        let j = (hash(camera, 9, i as u32) % (i as u64 + 1)) as usize;
        p.swap(i, j);
    }
    p
}

/// Whether `class` is visible on `frame`. Each camera has one blinking class, and odd
/// cameras a second one with another period, so 2–4 classes are always visible.
fn visible(camera: u32, class: u32, frame: u64) -> bool {
    let first = (hash(camera, 10, 0) % 4) as u32;
    let second = (first + 1 + (hash(camera, 10, 1) % 3) as u32) % 4;
    let blinks = class == first || (camera % 2 == 1 && class == second);
    if !blinks {
        return true;
    }
    let period = uniform(camera, class, 11, BLINK_PERIOD).round() as u64;
    let phase = hash(camera, class, 12) % period;
    (frame + phase) % period >= period / 3
}

/// Placements of the visible objects of a frame, in class order.
pub(crate) fn placements(camera: u32, frame: u64, width: u32, height: u32) -> Vec<Placement> {
    let min_side = width.min(height);
    if min_side < super::MIN_SCENE_SIZE {
        return Vec::new();
    }
    // Lanes horizontal (objects move left/right) or vertical, per camera.
    let vertical_lanes = hash(camera, 8, 0) & 1 == 1;
    let (along_len, across_len) = if vertical_lanes {
        (height, width)
    } else {
        (width, height)
    };
    let perm = lane_permutation(camera);
    let t = frame as f64;
    let mut out = Vec::with_capacity(4);
    for class in 0..4u32 {
        if !visible(camera, class, frame) {
            continue;
        }
        let shape = Shape::ALL[(hash(camera, class, 1) % 3) as usize];
        let side = |salt| (uniform(camera, class, salt, SIZE_RANGE) * min_side as f64).round();
        let (sw, sh) = (side(2).max(2.0) as u32, side(3).max(2.0) as u32);
        let (s_along, s_across) = if vertical_lanes { (sh, sw) } else { (sw, sh) };
        let lane = perm[class as usize];
        let l0 = lane * across_len / 4;
        let l1 = (lane + 1) * across_len / 4;
        if s_across > l1 - l0 || s_along > along_len {
            continue;
        }
        let va = uniform(camera, class, 4, SPEED_ALONG);
        let vc = uniform(camera, class, 5, SPEED_ACROSS);
        let pa = uniform(camera, class, 6, (0.0, 2.0));
        let pc = uniform(camera, class, 7, (0.0, 2.0));
        let along = (bounce(pa + va * t) * (along_len - s_along) as f64).floor() as u32;
        let across = l0 + (bounce(pc + vc * t) * (l1 - l0 - s_across) as f64).floor() as u32;
        let (x, y, w, h) = if vertical_lanes {
            (across, along, s_across, s_along)
        } else {
            (along, across, s_along, s_across)
        };
        out.push(Placement {
            class_id: class,
            shape,
            extent: BoxF::new(x as f32, y as f32, (x + w) as f32, (y + h) as f32),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounce_is_a_triangle_wave() {
        assert_eq!(bounce(0.25), 0.25);
        assert_eq!(bounce(1.5), 0.5);
        assert_eq!(bounce(2.25), 0.25);
        assert_eq!(bounce(-0.5), 0.5);
    }

    #[test]
    fn permutations_are_permutations() {
        for cam in 0..32 {
            let mut p = lane_permutation(cam);
            p.sort();
            assert_eq!(p, [0, 1, 2, 3]);
        }
    }
}
