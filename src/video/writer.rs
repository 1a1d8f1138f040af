//! Writing into any supported frame: whole-image RGBA conversion and span blending.
//!
//! 4:2:0 chroma rule: when converting an image, each chroma sample is the conversion (with
//! the frame's colour matrix and range, [`super::color`]) of the mean RGB of the in-frame pixels of its 2x2 block (1, 2 or 4 pixels
//! at odd edges). When blending, callers say which chroma blocks they touch
//! ([`PixelsMut::blend_chroma_span`]) so each sample is blended exactly once per
//! operation.

use super::color::{YuvCoefficients, YuvMatrix};
use super::layout::{check_plane, chroma_size, Layout};
use super::VideoError;
use gst_video::prelude::*;
use gst_video::{VideoFormat, VideoFrameRef};

/// A colour prepared for drawing: RGB plus its YUV in one colour space, converted once.
/// Drawn into a frame of another colour space, it is converted again for that frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paint {
    /// Colour in RGB.
    pub rgb: [u8; 3],
    /// The same colour as `[Y, U, V]` in `space`.
    pub yuv: [u8; 3],
    /// Matrix and full range (`true`) of `yuv`.
    pub space: (YuvMatrix, bool),
}

impl Paint {
    /// Prepares `rgb` for frames in BT.601 limited range.
    pub fn new(rgb: [u8; 3]) -> Self {
        Self::for_colors(rgb, &YuvCoefficients::BT601_LIMITED)
    }

    /// Prepares `rgb` for frames converted with `colors`.
    pub fn for_colors(rgb: [u8; 3], colors: &YuvCoefficients) -> Self {
        Self {
            rgb,
            yuv: colors.rgb_to_yuv(rgb),
            space: colors.space(),
        }
    }

    /// `[Y, U, V]` of this colour in a frame converted with `colors`.
    #[inline]
    pub fn yuv_in(&self, colors: &YuvCoefficients) -> [u8; 3] {
        if self.space == colors.space() {
            self.yuv
        } else {
            colors.rgb_to_yuv(self.rgb)
        }
    }
}

/// Writable pixel access to a mapped frame of a supported format.
#[derive(Debug)]
pub struct PixelsMut<'a> {
    width: u32,
    height: u32,
    layout: Layout,
    planes: [&'a mut [u8]; 3],
    strides: [usize; 3],
    colors: YuvCoefficients,
}

impl<'a> PixelsMut<'a> {
    /// Writable access to a mapped frame reference; YUV is written with the frame's own
    /// colorimetry.
    pub fn new(frame: &'a mut VideoFrameRef<&mut gst::BufferRef>) -> Result<Self, VideoError> {
        let (format, width, height) = (frame.format(), frame.width(), frame.height());
        let colors = YuvCoefficients::for_info(frame.info());
        let s = frame.plane_stride();
        let strides: Vec<usize> = s.iter().map(|&v| v.max(0) as usize).collect();
        let [p0, p1, p2, _] = frame.planes_data_mut();
        Ok(Self::from_planes(format, width, height, [p0, p1, p2], &strides)?.with_colors(colors))
    }

    /// Writable access to raw planes (GStreamer plane order; unused planes may be empty)
    /// with their strides in bytes. YUV is written with GStreamer's default for the frame
    /// size in limited range (what caps without colorimetry mean); [`Self::with_colors`]
    /// sets another.
    pub fn from_planes(
        format: VideoFormat,
        width: u32,
        height: u32,
        planes: [&'a mut [u8]; 3],
        strides: &[usize],
    ) -> Result<Self, VideoError> {
        let layout = Layout::of(format)?;
        let (w, h) = (width as usize, height as usize);
        let (cw, ch) = chroma_size(width, height);
        let mut st = [0usize; 3];
        for (o, s) in st.iter_mut().zip(strides) {
            *o = *s;
        }
        let need: &[(usize, usize)] = match layout {
            Layout::Packed { bpp, .. } => &[(h, w * bpp)],
            Layout::Nv12 => &[(h, w), (ch, cw * 2)],
            Layout::I420 => &[(h, w), (ch, cw), (ch, cw)],
        };
        for (i, &(rows, row_bytes)) in need.iter().enumerate() {
            check_plane(planes[i].len(), st[i], rows, row_bytes)?;
        }
        Ok(Self {
            width,
            height,
            layout,
            planes,
            strides: st,
            colors: YuvCoefficients::size_default(height),
        })
    }

    /// The same access writing YUV with `colors`.
    pub fn with_colors(self, colors: YuvCoefficients) -> Self {
        Self { colors, ..self }
    }

    /// The coefficients YUV is written with.
    pub fn colors(&self) -> &YuvCoefficients {
        &self.colors
    }

    /// Frame width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Frame height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Memory layout of the frame.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Replaces the whole frame with a tightly packed `width * height * 4` RGBA image
    /// (alpha copied for RGBA/BGRA, 255 written for RGBx/BGRx, dropped otherwise).
    pub fn write_rgba(&mut self, rgba: &[u8]) -> Result<(), VideoError> {
        let (w, h) = (self.width as usize, self.height as usize);
        if rgba.len() < w * h * 4 {
            return Err(VideoError::TooSmall {
                needed: w * h * 4,
                actual: rgba.len(),
            });
        }
        let src_row = |y: usize| &rgba[y * w * 4..(y + 1) * w * 4];
        match self.layout {
            Layout::Packed {
                bpp,
                r,
                g,
                b,
                a,
                padding,
            } => {
                for y in 0..h {
                    let dst = &mut self.planes[0][y * self.strides[0]..][..w * bpp];
                    write_packed_row(src_row(y), dst, bpp, [r, g, b], a, padding);
                }
            }
            Layout::Nv12 | Layout::I420 => {
                for y in 0..h {
                    let dst = &mut self.planes[0][y * self.strides[0]..][..w];
                    for (d, s) in dst.iter_mut().zip(src_row(y).chunks_exact(4)) {
                        *d = self.colors.rgb_to_y(s[0], s[1], s[2]);
                    }
                }
                let (cw, ch) = chroma_size(self.width, self.height);
                for cy in 0..ch {
                    let top = src_row(2 * cy);
                    let bottom = (2 * cy + 1 < h).then(|| src_row(2 * cy + 1));
                    for cx in 0..cw {
                        let (mut sr, mut sg, mut sb, mut n) = (0u32, 0u32, 0u32, 0u32);
                        for row in [Some(top), bottom].into_iter().flatten() {
                            for x in [2 * cx, 2 * cx + 1] {
                                if x < w {
                                    let p = &row[x * 4..x * 4 + 3];
                                    sr += p[0] as u32;
                                    sg += p[1] as u32;
                                    sb += p[2] as u32;
                                    n += 1;
                                }
                            }
                        }
                        let (u, v) = self.colors.rgb_sum_to_uv(sr, sg, sb, n);
                        self.set_chroma(cx, cy, u, v);
                    }
                }
            }
        }
        Ok(())
    }

    #[inline]
    fn set_chroma(&mut self, cx: usize, cy: usize, u: u8, v: u8) {
        match self.layout {
            Layout::Nv12 => {
                let i = cy * self.strides[1] + cx * 2;
                self.planes[1][i] = u;
                self.planes[1][i + 1] = v;
            }
            Layout::I420 => {
                self.planes[1][cy * self.strides[1] + cx] = u;
                self.planes[2][cy * self.strides[2] + cx] = v;
            }
            Layout::Packed { .. } => {}
        }
    }

    /// Blends `paint` with `alpha` (0 = keep, 255 = replace) over pixels `x0..x1` of row
    /// `y`, clipped to the frame: RGB for packed formats (alpha byte untouched), luma only
    /// for 4:2:0 (pair with [`Self::blend_chroma_span`]).
    pub fn blend_span(&mut self, y: u32, x0: u32, x1: u32, paint: &Paint, alpha: u8) {
        if y >= self.height {
            return;
        }
        let x1 = x1.min(self.width) as usize;
        let x0 = x0 as usize;
        if x0 >= x1 {
            return;
        }
        let y = y as usize;
        match self.layout {
            Layout::Packed { bpp, r, g, b, .. } => {
                let row = &mut self.planes[0][y * self.strides[0]..][..x1 * bpp];
                for px in row[x0 * bpp..].chunks_exact_mut(bpp) {
                    for (off, c) in [(r, paint.rgb[0]), (g, paint.rgb[1]), (b, paint.rgb[2])] {
                        px[off] = blend(px[off], c, alpha);
                    }
                }
            }
            Layout::Nv12 | Layout::I420 => {
                let luma = paint.yuv_in(&self.colors)[0];
                let row = &mut self.planes[0][y * self.strides[0]..][..x1];
                for px in &mut row[x0..] {
                    *px = blend(*px, luma, alpha);
                }
            }
        }
    }

    /// Blends the chroma of 2x2 blocks `cx0..cx1` of block row `cy` (block `(cx, cy)`
    /// covers pixels `2cx..2cx+2 x 2cy..2cy+2`), clipped. No-op for packed formats.
    pub fn blend_chroma_span(&mut self, cy: u32, cx0: u32, cx1: u32, paint: &Paint, alpha: u8) {
        let (cw, ch) = chroma_size(self.width, self.height);
        let (cy, cx0, cx1) = (cy as usize, cx0 as usize, (cx1 as usize).min(cw));
        if cy >= ch || cx0 >= cx1 {
            return;
        }
        let [_, u, v] = paint.yuv_in(&self.colors);
        match self.layout {
            Layout::Nv12 => {
                let row = &mut self.planes[1][cy * self.strides[1]..][..cx1 * 2];
                for px in row[cx0 * 2..].chunks_exact_mut(2) {
                    px[0] = blend(px[0], u, alpha);
                    px[1] = blend(px[1], v, alpha);
                }
            }
            Layout::I420 => {
                let (pu, rest) = self.planes.split_at_mut(2);
                let urow = &mut pu[1][cy * self.strides[1]..][..cx1];
                let vrow = &mut rest[0][cy * self.strides[2]..][..cx1];
                for (pu, pv) in urow[cx0..].iter_mut().zip(&mut vrow[cx0..]) {
                    *pu = blend(*pu, u, alpha);
                    *pv = blend(*pv, v, alpha);
                }
            }
            Layout::Packed { .. } => {}
        }
    }

    /// Blends the rectangle `[x0, x1) x [y0, y1)` (pixels, clipped): every pixel, and for
    /// 4:2:0 every chroma block the rectangle touches, once.
    pub fn blend_rect(&mut self, x0: u32, y0: u32, x1: u32, y1: u32, paint: &Paint, alpha: u8) {
        let (x1, y1) = (x1.min(self.width), y1.min(self.height));
        if x0 >= x1 || y0 >= y1 {
            return;
        }
        for y in y0..y1 {
            self.blend_span(y, x0, x1, paint, alpha);
        }
        if self.layout.is_yuv420() {
            for cy in y0 / 2..y1.div_ceil(2) {
                self.blend_chroma_span(cy, x0 / 2, x1.div_ceil(2), paint, alpha);
            }
        }
    }
}

/// Converts a tightly packed RGBA image into `frame` (see [`PixelsMut::write_rgba`]).
pub fn write_rgba(frame: &mut VideoFrameRef<&mut gst::BufferRef>, rgba: &[u8]) -> Result<(), VideoError> {
    PixelsMut::new(frame)?.write_rgba(rgba)
}

/// `old * (1 - a) + new * a` with `a = alpha / 255`, rounded.
#[inline(always)]
fn blend(old: u8, new: u8, alpha: u8) -> u8 {
    let a = alpha as u32;
    ((new as u32 * a + old as u32 * (255 - a) + 127) / 255) as u8
}

#[inline]
fn write_packed_row(
    src: &[u8],
    dst: &mut [u8],
    bpp: usize,
    rgb: [usize; 3],
    a: Option<usize>,
    padding: bool,
) {
    if bpp == 4 && rgb == [0, 1, 2] && !padding {
        // RGBA: same byte order as the source, a plain copy.
        dst.copy_from_slice(src);
        return;
    }
    for (d, s) in dst.chunks_exact_mut(bpp).zip(src.chunks_exact(4)) {
        d[rgb[0]] = s[0];
        d[rgb[1]] = s[1];
        d[rgb[2]] = s[2];
        if let Some(a) = a {
            d[a] = if padding { 255 } else { s[3] };
        }
    }
}
