//! Rasterisation of the scene shapes as one horizontal span per row.
//!
//! A pixel `(px, py)` belongs to a shape when its centre `(px + 0.5, py + 0.5)` lies
//! inside it (boundary included). Render, masks and boxes all call [`row_span`], so they
//! cannot disagree.

use crate::geometry::BoxF;

/// Shape of a scene object, inscribed in its integer extent rectangle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shape {
    /// The whole extent.
    Rectangle,
    /// The ellipse inscribed in the extent.
    Ellipse,
    /// Isosceles triangle: apex at the top centre, base along the bottom edge.
    Triangle,
}

impl Shape {
    /// All shapes, for seeding.
    pub const ALL: [Shape; 3] = [Shape::Rectangle, Shape::Ellipse, Shape::Triangle];
}

/// Pixels `[a, b)` of row `py` covered by `shape` inscribed in `extent`, clipped to the
/// extent and to `[0, frame_w)`; `None` when the row is empty.
pub(crate) fn row_span(shape: Shape, extent: &BoxF, py: u32, frame_w: u32) -> Option<(u32, u32)> {
    let (x0, y0, x1, y1) = (
        extent.x0 as f64,
        extent.y0 as f64,
        extent.x1 as f64,
        extent.y1 as f64,
    );
    let yc = py as f64 + 0.5;
    if yc < y0 || yc > y1 {
        return None;
    }
    let cx = (x0 + x1) / 2.0;
    let half = match shape {
        Shape::Rectangle => return clip(x0, x1, x0, x1, frame_w),
        Shape::Ellipse => {
            let dy = (yc - (y0 + y1) / 2.0) / ((y1 - y0) / 2.0);
            let s = 1.0 - dy * dy;
            if s < 0.0 {
                return None;
            }
            (x1 - x0) / 2.0 * s.sqrt()
        }
        Shape::Triangle => (yc - y0) / (y1 - y0) * (x1 - x0) / 2.0,
    };
    // Pixel px is in when |px + 0.5 - cx| <= half.
    let a = (cx - half - 0.5).ceil();
    let b = (cx + half - 0.5).floor() + 1.0;
    clip(a, b, x0, x1, frame_w)
}

fn clip(a: f64, b: f64, x0: f64, x1: f64, frame_w: u32) -> Option<(u32, u32)> {
    let a = a.max(x0).max(0.0);
    let b = b.min(x1).min(frame_w as f64);
    (a < b).then_some((a as u32, b as u32))
}

/// Tight box of the pixels of `shape` inscribed in `extent` inside a `frame_w x frame_h`
/// frame; `None` when no pixel is covered.
pub(crate) fn tight_box(shape: Shape, extent: &BoxF, frame_w: u32, frame_h: u32) -> Option<BoxF> {
    let r0 = extent.y0.max(0.0) as u32;
    let r1 = (extent.y1.max(0.0).ceil() as u32).min(frame_h);
    let mut acc: Option<(u32, u32, u32, u32)> = None;
    for y in r0..r1 {
        if let Some((a, b)) = row_span(shape, extent, y, frame_w) {
            acc = Some(match acc {
                None => (a, y, b, y + 1),
                Some((ax, ay, bx, _)) => (ax.min(a), ay, bx.max(b), y + 1),
            });
        }
    }
    acc.map(|(x0, y0, x1, y1)| BoxF::new(x0 as f32, y0 as f32, x1 as f32, y1 as f32))
}
