//! Polygon membership (pixel centres, even-odd rule) and directed segment crossings.

use super::Anchor;
use crate::results::Detection;

/// x coordinates where the horizontal line at `y` crosses the polygon's edges, sorted
/// (an edge counts for `y` in `[min y, max y)`, so vertices are not counted twice).
fn crossings(poly: &[[f32; 2]], y: f32, out: &mut Vec<f32>) {
    out.clear();
    for (i, a) in poly.iter().enumerate() {
        let b = poly[(i + 1) % poly.len()];
        if (a[1] <= y && y < b[1]) || (b[1] <= y && y < a[1]) {
            out.push(a[0] + (y - a[1]) * (b[0] - a[0]) / (b[1] - a[1]));
        }
    }
    out.sort_by(f32::total_cmp);
}

/// Whether point `(x, y)` is inside the polygon (even-odd rule; a point on the left or top
/// edge is inside, on the right or bottom edge outside).
pub fn contains(poly: &[[f32; 2]], (x, y): (f32, f32)) -> bool {
    let mut xs = Vec::new();
    crossings(poly, y, &mut xs);
    xs.chunks_exact(2).any(|s| s[0] <= x && x < s[1])
}

/// Mask pixels (centres) inside the polygon, and the mask's area; `None` without host mask.
pub fn mask_inside(poly: &[[f32; 2]], d: &Detection) -> Option<(u64, u64)> {
    let m = d.mask.as_ref()?;
    if m.data.is_empty() || m.data.len() != (m.width * m.height) as usize {
        return None;
    }
    let (mut inside, mut area) = (0u64, 0u64);
    let mut xs = Vec::new();
    for (row, bits) in m.data.chunks_exact(m.width as usize).enumerate() {
        let yc = (m.y as usize + row) as f32 + 0.5;
        crossings(poly, yc, &mut xs);
        for (col, &v) in bits.iter().enumerate() {
            if v < 128 {
                continue;
            }
            area += 1;
            let xc = (m.x as usize + col) as f32 + 0.5;
            if xs.chunks_exact(2).any(|s| s[0] <= xc && xc < s[1]) {
                inside += 1;
            }
        }
    }
    Some((inside, area))
}

/// Whether detection `d` counts as inside: by mask fraction when it has a non-empty mask,
/// else by its anchor point.
pub fn in_zone(poly: &[[f32; 2]], d: &Detection, anchor: Anchor, min_fraction: f64) -> bool {
    match mask_inside(poly, d) {
        Some((inside, area)) if area > 0 => inside as f64 >= min_fraction * area as f64,
        _ => contains(poly, anchor.point(&d.bbox)),
    }
}

/// Side of point `p` relative to the directed line `a -> b`: `true` on the right-hand side
/// (on screen, y down) or on the line.
fn right_side(a: [f32; 2], b: [f32; 2], p: (f32, f32)) -> bool {
    let cross = (b[0] - a[0]) as f64 * (p.1 - a[1]) as f64 - (b[1] - a[1]) as f64 * (p.0 - a[0]) as f64;
    cross >= 0.0
}

/// Whether the move `p -> q` crosses segment `a -> b`: `Some(true)` from its left-hand to its
/// right-hand side (forward), `Some(false)` the other way, `None` when it does not cross.
pub fn crossing(a: [f32; 2], b: [f32; 2], p: (f32, f32), q: (f32, f32)) -> Option<bool> {
    let (sp, sq) = (right_side(a, b, p), right_side(a, b, q));
    if sp == sq {
        return None;
    }
    // Where the move meets the line, as a fraction along a -> b.
    let (rx, ry) = ((b[0] - a[0]) as f64, (b[1] - a[1]) as f64);
    let (sx, sy) = ((q.0 - p.0) as f64, (q.1 - p.1) as f64);
    let denom = rx * sy - ry * sx;
    if denom == 0.0 {
        return None;
    }
    let (wx, wy) = ((p.0 - a[0]) as f64, (p.1 - a[1]) as f64);
    let u = (wx * sy - wy * sx) / denom;
    (0.0..=1.0).contains(&u).then_some(sq)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SQUARE: [[f32; 2]; 4] = [[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]];

    #[test]
    fn point_in_polygon() {
        assert!(contains(&SQUARE, (5.0, 5.0)));
        assert!(contains(&SQUARE, (0.0, 0.0)));
        assert!(!contains(&SQUARE, (10.0, 5.0)));
        assert!(!contains(&SQUARE, (-0.1, 5.0)));
        let tri = [[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]];
        assert!(contains(&tri, (2.0, 2.0)));
        assert!(!contains(&tri, (8.0, 8.0)));
    }

    #[test]
    fn crossings_have_a_direction() {
        // Arrow to the right: below it is its right-hand side on screen.
        let (a, b) = ([0.0, 100.0], [100.0, 100.0]);
        assert_eq!(crossing(a, b, (50.0, 90.0), (50.0, 110.0)), Some(true));
        assert_eq!(crossing(a, b, (50.0, 110.0), (50.0, 90.0)), Some(false));
        assert_eq!(
            crossing(a, b, (150.0, 90.0), (150.0, 110.0)),
            None,
            "beyond the segment"
        );
        assert_eq!(crossing(a, b, (50.0, 90.0), (60.0, 95.0)), None);
    }
}
