//! Drawing of trtanalytics results ([`FrameAnalytics`]): zone outlines with a label of
//! their counts (red while a zone is at or above its occupancy threshold), directed lines
//! with an arrow towards their forward side and their crossing totals.
//!
//! Everything is opaque filled rectangles and text of the [`Painter`], so the CUDA overlay
//! draws it from the same command list, byte for byte as the CPU.

use super::{font, OverlayStyle, Painter};
use crate::analytics::FrameAnalytics;
use std::fmt::Write;

/// Zone outline and label background.
pub const ZONE_COLOR: [u8; 3] = [0, 200, 255];
/// A zone at or above its occupancy threshold.
pub const ALARM_COLOR: [u8; 3] = [255, 32, 32];
/// Lines, their arrows and label background.
pub const LINE_COLOR: [u8; 3] = [255, 220, 0];
const TEXT_COLOR: [u8; 3] = [0, 0, 0];
/// Length of a line's direction arrow in pixels.
const ARROW: f32 = 24.0;

/// Width of zone outlines and lines: the box outline width, at least 2.
fn stroke(style: &OverlayStyle) -> i64 {
    style.line_width.max(2) as i64
}

/// A straight segment `width` pixels thick, as runs of filled rectangles (one per row of a
/// steep segment, one per column of a flat one).
pub(super) fn segment(p: &mut impl Painter, a: (f32, f32), b: (f32, f32), width: i64, color: [u8; 3]) {
    if !(a.0.is_finite() && a.1.is_finite() && b.0.is_finite() && b.1.is_finite()) {
        return;
    }
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let flat = dx.abs() >= dy.abs();
    // Step along the major axis; along the minor axis the run is `width` thick.
    let (a0, a1, m0, m1) = if flat {
        (a.0, b.0, a.1, b.1)
    } else {
        (a.1, b.1, a.0, b.0)
    };
    let (s, e, ms, me) = if a0 <= a1 {
        (a0, a1, m0, m1)
    } else {
        (a1, a0, m1, m0)
    };
    let (s, e) = (s.round() as i64, e.round() as i64);
    // Frames are at most a few thousand pixels; far-away endpoints are clamped.
    let (s, e) = (s.max(-1), e.min(1 << 16));
    let minor_at = |t: i64| {
        if e == s {
            ms
        } else {
            ms + (me - ms) * ((t - s) as f32 / (e - s) as f32)
        }
    };
    // Pixels t of [from, to] at minor position m, thickened by `width` both ways.
    let half = width / 2;
    let mut run = |from: i64, to: i64, m: i64| {
        let (j0, j1, n0, n1) = (from - half, to - half + width, m - half, m - half + width);
        if flat {
            p.fill(j0, n0, j1, n1, color);
        } else {
            p.fill(n0, j0, n1, j1, color);
        }
    };
    let (mut run_start, mut run_m) = (s, minor_at(s).round() as i64);
    for t in s + 1..=e {
        let m = minor_at(t).round() as i64;
        if m != run_m {
            run(run_start, t - 1, run_m);
            (run_start, run_m) = (t, m);
        }
    }
    run(run_start, e.max(s), run_m);
}

/// Draws the zones, lines and counts of one frame, under its detections.
pub(super) fn paint_analytics(
    p: &mut impl Painter,
    a: &FrameAnalytics,
    style: &OverlayStyle,
    text: &mut String,
) {
    let Some(rules) = &a.rules else {
        return;
    };
    let width = stroke(style);
    let scale = style.text_scale.max(1);
    for (zi, zone) in rules.zones.iter().enumerate() {
        let state = a.zone_states.get(zi).copied().unwrap_or_default();
        let color = if state.alarm { ALARM_COLOR } else { ZONE_COLOR };
        let n = zone.polygon.len();
        for i in 0..n {
            let (u, v) = (zone.polygon[i], zone.polygon[(i + 1) % n]);
            segment(p, (u[0], u[1]), (v[0], v[1]), width, color);
        }
        text.clear();
        let _ = write!(text, "{} {}", zone.name, state.total);
        for c in a.zones.iter().filter(|c| c.zone == zone.name) {
            let _ = write!(text, " {} {}", c.label, c.count);
        }
        // Top-left vertex (smallest y, then x), inside the zone just below it.
        if let Some(v) = zone
            .polygon
            .iter()
            .min_by(|a, b| a[1].total_cmp(&b[1]).then(a[0].total_cmp(&b[0])))
        {
            p.text(
                v[0] as i32 + width as i32,
                v[1] as i32 + width as i32,
                text,
                TEXT_COLOR,
                scale,
                Some(color),
            );
        }
    }
    for (li, line) in rules.lines.iter().enumerate() {
        let (from, to) = ((line.from[0], line.from[1]), (line.to[0], line.to[1]));
        segment(p, from, to, width, LINE_COLOR);
        // Arrow from the middle towards the forward (right-hand) side.
        let (dx, dy) = (to.0 - from.0, to.1 - from.1);
        let len = (dx * dx + dy * dy).sqrt();
        if len > 0.0 {
            let (nx, ny) = (-dy / len, dx / len);
            let mid = ((from.0 + to.0) / 2.0, (from.1 + to.1) / 2.0);
            let tip = (mid.0 + nx * ARROW, mid.1 + ny * ARROW);
            segment(p, mid, tip, width, LINE_COLOR);
            let head = ARROW / 3.0;
            for side in [-1.0f32, 1.0] {
                let back = (
                    tip.0 - nx * head + side * ny * head,
                    tip.1 - ny * head - side * nx * head,
                );
                segment(p, tip, back, width, LINE_COLOR);
            }
        }
        let (fwd, bwd) = a.line_totals.get(li).copied().unwrap_or_default();
        text.clear();
        let _ = write!(text, "{} fwd {fwd} bwd {bwd}", line.name);
        let h = (font::GLYPH_H * scale) as f32;
        // Beside the line's end point.
        p.text(
            to.0 as i32 + width as i32,
            (to.1 - h).max(0.0) as i32,
            text,
            TEXT_COLOR,
            scale,
            Some(LINE_COLOR),
        );
    }
}

#[cfg(test)]
mod tests;
