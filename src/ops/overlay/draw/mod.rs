//! CPU drawing in place on any supported frame: the CPU twin of the overlay element.
//!
//! Everything is clipped to the frame: boxes partly or fully outside, huge or NaN
//! coordinates and 1x1 frames are fine. Colours are RGB; for NV12/I420 a colour is
//! converted to the frame's YUV (its matrix and range) once per call ([`Paint`]) and
//! blended in YUV, which equals blending in RGB up to rounding.
//!
//! 4:2:0 chroma rule: an operation writes luma for exactly the pixels it covers and
//! chroma for every 2x2 block that contains at least one covered pixel, each block
//! once per operation. So a 1-pixel line also tints the chroma of its block neighbour,
//! as with any 4:2:0 drawing.

pub mod colormap;

use crate::geometry::BoxF;
use crate::ops::overlay::font;
use crate::results::{DenseMap, FrameMask};
use crate::video::{Paint, PixelsMut, VideoError};
use gst_video::VideoFrameRef;

/// Frame type all drawing functions work on: a writable mapped frame.
pub type FrameMut<'a> = VideoFrameRef<&'a mut gst::BufferRef>;

/// Per-class overlay colours (RGB), 20 distinct hues and brightnesses.
pub const PALETTE: [[u8; 3]; 20] = [
    [255, 56, 56],
    [255, 157, 151],
    [255, 112, 31],
    [255, 178, 29],
    [207, 210, 49],
    [72, 249, 10],
    [146, 204, 23],
    [61, 219, 134],
    [26, 147, 52],
    [0, 212, 187],
    [44, 153, 168],
    [0, 194, 255],
    [52, 69, 147],
    [100, 115, 255],
    [0, 24, 236],
    [132, 56, 255],
    [82, 0, 133],
    [203, 56, 255],
    [255, 149, 200],
    [255, 55, 199],
];

/// Overlay colour of a class: [`PALETTE`] entry `class_id % 20`.
pub fn class_color(class_id: u32) -> [u8; 3] {
    PALETTE[class_id as usize % PALETTE.len()]
}

/// Pixel rectangle `[x0, x1) x [y0, y1)` already clipped to the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rect {
    x0: u32,
    y0: u32,
    x1: u32,
    y1: u32,
}

impl Rect {
    /// Clips signed pixel bounds to a `w x h` frame; `None` when nothing is left.
    fn clip(x0: i64, y0: i64, x1: i64, y1: i64, w: u32, h: u32) -> Option<Rect> {
        let cx = |v: i64| v.clamp(0, w as i64) as u32;
        let cy = |v: i64| v.clamp(0, h as i64) as u32;
        let r = Rect {
            x0: cx(x0),
            y0: cy(y0),
            x1: cx(x1),
            y1: cy(y1),
        };
        (r.x0 < r.x1 && r.y0 < r.y1).then_some(r)
    }
}

/// A float box rounded to whole pixels as signed bounds (NaN → empty, huge → clamped).
pub(crate) fn round_box(b: &BoxF) -> (i64, i64, i64, i64) {
    // `as` saturates for out-of-range floats and maps NaN to 0.
    let r = |v: f32| v.round() as i64;
    let (x0, y0, x1, y1) = (r(b.x0), r(b.y0), r(b.x1), r(b.y1));
    if [b.x0, b.y0, b.x1, b.y1].iter().any(|v| v.is_nan()) {
        return (0, 0, 0, 0);
    }
    (x0, y0, x1, y1)
}

/// The four bands `[x0, y0, x1, y1]` (unclipped pixel bounds) of the outline of `rect`
/// drawn `line_width` pixels inwards: top, bottom, left, right. `None` for empty boxes
/// and line width 0. Bands never exceed half the box, so thick lines on small boxes
/// fill it.
pub(crate) fn outline_bands(rect: &BoxF, line_width: u32) -> Option<[[i64; 4]; 4]> {
    let (x0, y0, x1, y1) = round_box(rect);
    if x0 >= x1 || y0 >= y1 || line_width == 0 {
        return None;
    }
    let lw = line_width as i64;
    let lx = lw.min((x1 - x0 + 1) / 2);
    let ly = lw.min((y1 - y0 + 1) / 2);
    Some([
        [x0, y0, x1, y0 + ly],
        [x0, y1 - ly, x1, y1],
        [x0, y0 + ly, x0 + lx, y1 - ly],
        [x1 - lx, y0 + ly, x1, y1 - ly],
    ])
}

/// Left edge and character of each glyph of `text` drawn from `(x, y)` at scale `s`
/// that can show on a `fw x fh` frame (nothing when the line is above or below it).
pub(crate) fn visible_glyphs(
    x: i64,
    y: i64,
    text: &str,
    s: i64,
    fw: i64,
    fh: i64,
) -> impl Iterator<Item = (i64, char)> + '_ {
    let visible_rows = y < fh && y + font::GLYPH_H as i64 * s > 0;
    text.chars()
        .enumerate()
        .take_while(move |_| visible_rows)
        .map(move |(i, c)| (x + i as i64 * font::ADVANCE as i64 * s, c))
        // The rest of the string is right of the frame.
        .take_while(move |&(gx, _)| gx < fw)
        .filter(move |&(gx, _)| gx + font::GLYPH_W as i64 * s > 0)
}

/// Alpha in `[0, 1]` to 0..=255 (NaN → 0).
pub(crate) fn alpha_u8(alpha: f32) -> u8 {
    (alpha.clamp(0.0, 1.0) * 255.0).round() as u8
}

/// Drawing surface over a mapped frame; the free functions wrap it for one-off calls,
/// an overlay drawing many objects keeps one per frame.
pub struct Canvas<'a> {
    px: PixelsMut<'a>,
}

impl<'a> Canvas<'a> {
    /// Canvas over a writable mapped frame of a supported format.
    pub fn new(frame: &'a mut VideoFrameRef<&mut gst::BufferRef>) -> Result<Self, VideoError> {
        Ok(Self {
            px: PixelsMut::new(frame)?,
        })
    }

    /// Canvas over already resolved pixels.
    pub fn from_pixels(px: PixelsMut<'a>) -> Self {
        Self { px }
    }

    /// `color` prepared for this frame's colour space (no conversion per span).
    fn paint(&self, color: [u8; 3]) -> Paint {
        Paint::for_colors(color, self.px.colors())
    }

    fn fill(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, paint: &Paint, alpha: u8) {
        if let Some(r) = Rect::clip(x0, y0, x1, y1, self.px.width(), self.px.height()) {
            self.px.blend_rect(r.x0, r.y0, r.x1, r.y1, paint, alpha);
        }
    }

    /// Outline of `rect` (frame pixels, rounded), `line_width` pixels drawn inwards,
    /// opaque `color`. Line width 0 draws nothing.
    pub fn rect_outline(&mut self, rect: &BoxF, color: [u8; 3], line_width: u32) {
        let p = self.paint(color);
        for [x0, y0, x1, y1] in outline_bands(rect, line_width).into_iter().flatten() {
            self.fill(x0, y0, x1, y1, &p, 255);
        }
    }

    /// Fills `rect` (frame pixels, rounded) with `color` at `alpha` in `[0, 1]`.
    pub fn fill_rect_blend(&mut self, rect: &BoxF, color: [u8; 3], alpha: f32) {
        let (x0, y0, x1, y1) = round_box(rect);
        self.fill(x0, y0, x1, y1, &self.paint(color), alpha_u8(alpha));
    }

    /// Draws `text` with its top-left corner at `(x, y)` (may be negative) in the
    /// built-in font at integer `scale` (0 is treated as 1), opaque `color`, optionally
    /// on an opaque `background` box of [`font::text_width`] x `font::GLYPH_H * scale`.
    pub fn text(
        &mut self,
        x: i32,
        y: i32,
        text: &str,
        color: [u8; 3],
        scale: u32,
        background: Option<[u8; 3]>,
    ) {
        let s = scale.max(1) as i64;
        let (x, y) = (x as i64, y as i64);
        let cell_h = font::GLYPH_H as i64 * s;
        if let Some(bg) = background {
            let w = font::text_width(text, scale.max(1)) as i64;
            self.fill(x, y, x + w, y + cell_h, &self.paint(bg), 255);
        }
        let p = self.paint(color);
        let (fw, fh) = (self.px.width() as i64, self.px.height() as i64);
        for (gx, c) in visible_glyphs(x, y, text, s, fw, fh) {
            for (row, bits) in font::glyph(c).iter().enumerate() {
                let py = y + row as i64 * s;
                // One fill per horizontal run of set bits.
                let mut col = 0;
                while col < 8 {
                    if bits & (0x80 >> col) == 0 {
                        col += 1;
                        continue;
                    }
                    let start = col;
                    while col < 8 && bits & (0x80 >> col) != 0 {
                        col += 1;
                    }
                    let (ax, bx) = (gx + start as i64 * s, gx + col as i64 * s);
                    self.fill(ax, py, bx, py + s, &p, 255);
                }
            }
        }
    }

    /// Blends `color` at `alpha` in `[0, 1]` over the pixels where `mask` is ≥ 128.
    pub fn mask(&mut self, mask: &FrameMask, color: [u8; 3], alpha: f32) {
        let p = self.paint(color);
        let a = alpha_u8(alpha);
        let (mw, mh) = (mask.width as usize, mask.height as usize);
        if mw == 0 || mh == 0 || mask.data.len() < mw * mh {
            return;
        }
        let inside = |c: usize, r: usize| mask.data[r * mw + c] >= 128;
        // Luma / RGB: one span per run of set mask pixels.
        for r in 0..mh {
            let fy = mask.y as u64 + r as u64;
            if fy >= self.px.height() as u64 {
                break;
            }
            for (a0, a1) in runs(mw, |c| inside(c, r)) {
                let x0 = (mask.x as u64 + a0 as u64).min(u32::MAX as u64) as u32;
                let x1 = (mask.x as u64 + a1 as u64).min(u32::MAX as u64) as u32;
                self.px.blend_span(fy as u32, x0, x1, &p, a);
            }
        }
        if !self.px.layout().is_yuv420() {
            return;
        }
        // Chroma: each 2x2 block holding at least one set pixel, once.
        let (fx0, fy0) = (mask.x as u64, mask.y as u64);
        let (bx0, by0) = (fx0 / 2, fy0 / 2);
        let (bx1, by1) = ((fx0 + mw as u64).div_ceil(2), (fy0 + mh as u64).div_ceil(2));
        let block_h = self.px.height().div_ceil(2) as u64;
        let block_w = self.px.width().div_ceil(2) as u64;
        for by in by0..by1.min(block_h) {
            let touched = |bx: usize| {
                let bx = bx0 + bx as u64;
                (2 * by..2 * by + 2).any(|fy| {
                    (2 * bx..2 * bx + 2).any(|fx| {
                        fx >= fx0
                            && fy >= fy0
                            && fx < fx0 + mw as u64
                            && fy < fy0 + mh as u64
                            && inside((fx - fx0) as usize, (fy - fy0) as usize)
                    })
                })
            };
            let n = (bx1.min(block_w).saturating_sub(bx0)) as usize;
            for (a0, a1) in runs(n, touched) {
                let (c0, c1) = (bx0 + a0 as u64, bx0 + a1 as u64);
                self.px.blend_chroma_span(by as u32, c0 as u32, c1 as u32, &p, a);
            }
        }
    }
}

impl Canvas<'_> {
    /// Blends channel 0 of a dense map over the frame pixels it covers: each pixel takes
    /// the nearest map value, coloured by `lut` (256 entries) on the range `[lo, hi]`, at
    /// `alpha` in `[0, 1]`. For 4:2:0 frames each chroma block takes the value at its
    /// top-left pixel. `cols` is scratch (reused between frames).
    pub fn dense(
        &mut self,
        map: &DenseMap,
        lut: &[Paint],
        range: (f32, f32),
        alpha: f32,
        cols: &mut Vec<u32>,
    ) {
        if let Some(values) = map.channel(0) {
            self.dense_values(map, values, lut, range, alpha, cols);
        }
    }

    /// [`Canvas::dense`] with channel 0 of `map` given as `values` (`height x width`, e.g.
    /// copied from GPU memory).
    pub fn dense_values(
        &mut self,
        map: &DenseMap,
        values: &[f32],
        lut: &[Paint],
        (lo, hi): (f32, f32),
        alpha: f32,
        cols: &mut Vec<u32>,
    ) {
        if lut.len() < 256 || values.len() < map.width * map.height {
            return;
        }
        let a = alpha_u8(alpha);
        let (w, h) = (self.px.width(), self.px.height());
        // Map column of every frame column (u32::MAX outside the map).
        cols.clear();
        cols.extend((0..w).map(|x| map.map_column(x as f32 + 0.5).map_or(u32::MAX, |u| u as u32)));
        let row_of = |y: u32| map.map_row(y as f32 + 0.5);
        let index = |v: usize, x: u32| -> Option<u8> {
            let u = *cols.get(x as usize)?;
            (u != u32::MAX).then(|| colormap::lut_index(values[v * map.width + u as usize], lo, hi))
        };
        for y in 0..h {
            let Some(v) = row_of(y) else { continue };
            let mut x = 0;
            while x < w {
                let Some(k) = index(v, x) else {
                    x += 1;
                    continue;
                };
                let start = x;
                while x < w && index(v, x) == Some(k) {
                    x += 1;
                }
                self.px.blend_span(y, start, x, &lut[k as usize], a);
            }
        }
        if !self.px.layout().is_yuv420() {
            return;
        }
        let (bw, bh) = (w.div_ceil(2), h.div_ceil(2));
        for by in 0..bh {
            let Some(v) = row_of(2 * by) else { continue };
            let mut bx = 0;
            while bx < bw {
                let Some(k) = index(v, 2 * bx) else {
                    bx += 1;
                    continue;
                };
                let start = bx;
                while bx < bw && index(v, 2 * bx) == Some(k) {
                    bx += 1;
                }
                self.px.blend_chroma_span(by, start, bx, &lut[k as usize], a);
            }
        }
    }

    /// A filled square of side `2 * radius + 1` centred on frame pixel `(x, y)`, opaque
    /// `color`, with a one-pixel black border (keypoints).
    pub fn point(&mut self, x: f32, y: f32, radius: u32, color: [u8; 3]) {
        if let Some([border, inner]) = point_squares(x, y, radius) {
            self.fill(
                border[0],
                border[1],
                border[2],
                border[3],
                &self.paint([0, 0, 0]),
                255,
            );
            self.fill(inner[0], inner[1], inner[2], inner[3], &self.paint(color), 255);
        }
    }

    /// Fills `[x0, x1) x [y0, y1)` (clipped to the frame) with opaque `color`.
    pub fn fill_opaque(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, color: [u8; 3]) {
        self.fill(x0, y0, x1, y1, &self.paint(color), 255);
    }
}

/// The two squares `[x0, y0, x1, y1]` of a keypoint marker at `(x, y)`: a black border
/// one pixel wider than the `radius` square in the keypoint's colour drawn over it;
/// `None` for a non-finite point.
pub fn point_squares(x: f32, y: f32, radius: u32) -> Option<[[i64; 4]; 2]> {
    if !(x.is_finite() && y.is_finite()) {
        return None;
    }
    let (cx, cy, r) = (x.floor() as i64, y.floor() as i64, radius as i64);
    Some([
        [cx - r - 1, cy - r - 1, cx + r + 2, cy + r + 2],
        [cx - r, cy - r, cx + r + 1, cy + r + 1],
    ])
}

/// Maximal runs `[a, b)` of indices in `0..n` where `set` holds.
fn runs(n: usize, set: impl Fn(usize) -> bool) -> impl Iterator<Item = (usize, usize)> {
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < n && !set(i) {
            i += 1;
        }
        if i >= n {
            return None;
        }
        let a = i;
        while i < n && set(i) {
            i += 1;
        }
        Some((a, i))
    })
}

/// Draws the outline of `rect` on `frame` (see [`Canvas::rect_outline`]).
pub fn draw_rect_outline(
    frame: &mut FrameMut<'_>,
    rect: &BoxF,
    color: [u8; 3],
    line_width: u32,
) -> Result<(), VideoError> {
    Canvas::new(frame)?.rect_outline(rect, color, line_width);
    Ok(())
}

/// Blends a filled `rect` on `frame` (see [`Canvas::fill_rect_blend`]).
pub fn fill_rect_blend(
    frame: &mut FrameMut<'_>,
    rect: &BoxF,
    color: [u8; 3],
    alpha: f32,
) -> Result<(), VideoError> {
    Canvas::new(frame)?.fill_rect_blend(rect, color, alpha);
    Ok(())
}

/// Draws `text` on `frame` (see [`Canvas::text`]).
pub fn draw_text(
    frame: &mut FrameMut<'_>,
    x: i32,
    y: i32,
    text: &str,
    color: [u8; 3],
    scale: u32,
    background: Option<[u8; 3]>,
) -> Result<(), VideoError> {
    Canvas::new(frame)?.text(x, y, text, color, scale, background);
    Ok(())
}

/// Blends `mask` on `frame` (see [`Canvas::mask`]).
pub fn blend_mask(
    frame: &mut FrameMut<'_>,
    mask: &FrameMask,
    color: [u8; 3],
    alpha: f32,
) -> Result<(), VideoError> {
    Canvas::new(frame)?.mask(mask, color, alpha);
    Ok(())
}

#[cfg(test)]
mod tests;
