//! Reading RGB out of any supported frame.
//!
//! The format is resolved once when the reader is built; every row operation matches it
//! once and then runs a loop monomorphised for that layout, so there is no per-pixel
//! dispatch on the hot path.
//!
//! 4:2:0 chroma is taken from the sample of the 2x2 block holding the pixel
//! (`(x/2, y/2)`, nearest / replicated), which is what [`super::write_rgba`] produces.

use super::color::YuvCoefficients;
use super::layout::{check_plane, chroma_size, Layout};
use super::VideoError;
use gst_video::prelude::*;
use gst_video::{VideoFormat, VideoFrame, VideoFrameRef};

/// Read-only RGB view of a mapped frame of a supported format.
#[derive(Debug, Clone, Copy)]
pub struct FrameReader<'a> {
    width: u32,
    height: u32,
    planes: Planes<'a>,
    colors: YuvCoefficients,
}

/// One axis of a bilinear sample: the two neighbouring source indices and the weight of
/// the second one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BilinearTap {
    /// First source index (pixels).
    pub i0: u32,
    /// Second source index, `min(i0 + 1, size - 1)`.
    pub i1: u32,
    /// Weight of `i1` in `[0, 1)`; `i0` gets `1 - w1`.
    pub w1: f32,
}

impl BilinearTap {
    /// Tap for continuous source coordinate `coord` (pixel `i`'s centre is at `i`, so an
    /// output pixel `d` of a resize by `scale` maps to `(d + 0.5) / scale - 0.5`),
    /// clamped to `[0, size - 1]` (edge replication). `size` must be ≥ 1.
    #[inline]
    pub fn new(coord: f32, size: u32) -> Self {
        let max = size.saturating_sub(1) as f32;
        let c = if coord.is_nan() {
            0.0
        } else {
            coord.clamp(0.0, max)
        };
        let i0 = c.floor() as u32;
        let i1 = (i0 + 1).min(size.saturating_sub(1));
        Self {
            i0,
            i1,
            w1: c - i0 as f32,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Planes<'a> {
    Packed(Packed<'a>),
    Nv12(Nv12<'a>),
    I420(I420<'a>),
}

/// A layout that yields three channels per pixel: RGB for packed formats, YUV for 4:2:0
/// (converted after interpolation).
trait Source: Copy {
    const YUV: bool;
    fn fetch(&self, x: usize, y: usize) -> [u8; 3];
}

#[derive(Debug, Clone, Copy)]
struct Packed<'a> {
    data: &'a [u8],
    stride: usize,
    bpp: usize,
    r: usize,
    g: usize,
    b: usize,
}

impl Source for Packed<'_> {
    const YUV: bool = false;
    #[inline(always)]
    fn fetch(&self, x: usize, y: usize) -> [u8; 3] {
        let p = &self.data[y * self.stride + x * self.bpp..][..self.bpp];
        [p[self.r], p[self.g], p[self.b]]
    }
}

#[derive(Debug, Clone, Copy)]
struct Nv12<'a> {
    y: &'a [u8],
    ys: usize,
    uv: &'a [u8],
    uvs: usize,
}

impl Source for Nv12<'_> {
    const YUV: bool = true;
    #[inline(always)]
    fn fetch(&self, x: usize, y: usize) -> [u8; 3] {
        let c = (y >> 1) * self.uvs + (x >> 1) * 2;
        [self.y[y * self.ys + x], self.uv[c], self.uv[c + 1]]
    }
}

#[derive(Debug, Clone, Copy)]
struct I420<'a> {
    y: &'a [u8],
    ys: usize,
    u: &'a [u8],
    us: usize,
    v: &'a [u8],
    vs: usize,
}

impl Source for I420<'_> {
    const YUV: bool = true;
    #[inline(always)]
    fn fetch(&self, x: usize, y: usize) -> [u8; 3] {
        let (cx, cy) = (x >> 1, y >> 1);
        [
            self.y[y * self.ys + x],
            self.u[cy * self.us + cx],
            self.v[cy * self.vs + cx],
        ]
    }
}

impl<'a> FrameReader<'a> {
    /// Reader over a mapped frame reference (e.g. from `VideoFrameRef::from_buffer_ref_readable`).
    /// YUV frames convert with the frame's own colorimetry.
    pub fn new(frame: &'a VideoFrameRef<&gst::BufferRef>) -> Result<Self, VideoError> {
        let planes = frame.planes_data();
        Ok(Self::from_planes(
            frame.format(),
            frame.width(),
            frame.height(),
            &planes[..frame.n_planes() as usize],
            &strides(frame.plane_stride()),
        )?
        .with_colors(YuvCoefficients::for_info(frame.info())))
    }

    /// Reader over an owned mapped frame.
    pub fn from_frame<T>(frame: &'a VideoFrame<T>) -> Result<Self, VideoError> {
        let planes = frame.planes_data();
        Ok(Self::from_planes(
            frame.format(),
            frame.width(),
            frame.height(),
            &planes[..frame.n_planes() as usize],
            &strides(frame.plane_stride()),
        )?
        .with_colors(YuvCoefficients::for_info(frame.info())))
    }

    /// Reader over raw planes (in GStreamer plane order) with their strides in bytes.
    /// YUV converts with GStreamer's default for the frame size in limited range (what
    /// caps without colorimetry mean); [`Self::with_colors`] sets another.
    pub fn from_planes(
        format: VideoFormat,
        width: u32,
        height: u32,
        planes: &[&'a [u8]],
        strides: &[usize],
    ) -> Result<Self, VideoError> {
        let layout = Layout::of(format)?;
        let (w, h) = (width as usize, height as usize);
        let (cw, ch) = chroma_size(width, height);
        let plane = |i: usize, rows: usize, row_bytes: usize| -> Result<(&'a [u8], usize), VideoError> {
            let (Some(&data), Some(&stride)) = (planes.get(i), strides.get(i)) else {
                return Err(VideoError::TooSmall {
                    needed: rows * row_bytes,
                    actual: 0,
                });
            };
            check_plane(data.len(), stride, rows, row_bytes)?;
            Ok((data, stride))
        };
        let planes = match layout {
            Layout::Packed { bpp, r, g, b, .. } => {
                let (data, stride) = plane(0, h, w * bpp)?;
                Planes::Packed(Packed {
                    data,
                    stride,
                    bpp,
                    r,
                    g,
                    b,
                })
            }
            Layout::Nv12 => {
                let (y, ys) = plane(0, h, w)?;
                let (uv, uvs) = plane(1, ch, cw * 2)?;
                Planes::Nv12(Nv12 { y, ys, uv, uvs })
            }
            Layout::I420 => {
                let (y, ys) = plane(0, h, w)?;
                let (u, us) = plane(1, ch, cw)?;
                let (v, vs) = plane(2, ch, cw)?;
                Planes::I420(I420 { y, ys, u, us, v, vs })
            }
        };
        Ok(Self {
            width,
            height,
            planes,
            colors: YuvCoefficients::size_default(height),
        })
    }

    /// The same reader converting YUV with `colors`.
    pub fn with_colors(self, colors: YuvCoefficients) -> Self {
        Self { colors, ..self }
    }

    /// The coefficients YUV is converted with.
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

    /// RGB of pixel `(x, y)`; panics if outside the frame. For single pixels only: use
    /// the row functions for bulk work.
    pub fn rgb_at(&self, x: u32, y: u32) -> [u8; 3] {
        assert!(x < self.width && y < self.height, "pixel outside frame");
        let (x, y) = (x as usize, y as usize);
        match self.planes {
            Planes::Packed(p) => p.fetch(x, y),
            Planes::Nv12(p) => to_rgb::<Nv12>(p.fetch(x, y), &self.colors),
            Planes::I420(p) => to_rgb::<I420>(p.fetch(x, y), &self.colors),
        }
    }

    /// RGB of row `y` into `out[..min(out.len(), width)]`; panics if `y >= height`.
    pub fn read_rgb_row(&self, y: u32, out: &mut [[u8; 3]]) {
        assert!(y < self.height, "row outside frame");
        let n = out.len().min(self.width as usize);
        match self.planes {
            Planes::Packed(p) => row_u8(p, y as usize, &self.colors, &mut out[..n]),
            Planes::Nv12(p) => row_u8(p, y as usize, &self.colors, &mut out[..n]),
            Planes::I420(p) => row_u8(p, y as usize, &self.colors, &mut out[..n]),
        }
    }

    /// Bilinear RGB samples (float, `[0, 255]`) for one output row: vertical tap `ty`,
    /// one horizontal tap per output pixel in `xs` (`out.len()` must be ≥ `xs.len()`).
    ///
    /// Packed formats interpolate RGB. 4:2:0 formats interpolate Y, U, V at the same
    /// four taps (chroma of each tap's 2x2 block) and convert once with the float
    /// formula of [`super::color`] and the reader's coefficients; this equals interpolating the RGB image except
    /// where a channel clips. Taps must lie inside the frame (use [`BilinearTap::new`]).
    pub fn sample_row_bilinear(&self, ty: BilinearTap, xs: &[BilinearTap], out: &mut [[f32; 3]]) {
        match self.planes {
            Planes::Packed(p) => row_bilinear(p, ty, xs, &self.colors, out),
            Planes::Nv12(p) => row_bilinear(p, ty, xs, &self.colors, out),
            Planes::I420(p) => row_bilinear(p, ty, xs, &self.colors, out),
        }
    }
}

fn strides(s: &[i32]) -> [usize; 4] {
    let mut out = [0usize; 4];
    for (o, &v) in out.iter_mut().zip(s) {
        *o = v.max(0) as usize;
    }
    out
}

#[inline(always)]
fn to_rgb<S: Source>(c: [u8; 3], colors: &YuvCoefficients) -> [u8; 3] {
    if S::YUV {
        colors.yuv_to_rgb(c[0], c[1], c[2])
    } else {
        c
    }
}

fn row_u8<S: Source>(src: S, y: usize, colors: &YuvCoefficients, out: &mut [[u8; 3]]) {
    for (x, o) in out.iter_mut().enumerate() {
        *o = to_rgb::<S>(src.fetch(x, y), colors);
    }
}

fn row_bilinear<S: Source>(
    src: S,
    ty: BilinearTap,
    xs: &[BilinearTap],
    colors: &YuvCoefficients,
    out: &mut [[f32; 3]],
) {
    let (y0, y1) = (ty.i0 as usize, ty.i1 as usize);
    let wy1 = ty.w1;
    let wy0 = 1.0 - wy1;
    for (t, o) in xs.iter().zip(out.iter_mut()) {
        let (x0, x1) = (t.i0 as usize, t.i1 as usize);
        let wx1 = t.w1;
        let wx0 = 1.0 - wx1;
        let (a, b, c, d) = (
            src.fetch(x0, y0),
            src.fetch(x1, y0),
            src.fetch(x0, y1),
            src.fetch(x1, y1),
        );
        let mut v = [0f32; 3];
        for k in 0..3 {
            let top = a[k] as f32 * wx0 + b[k] as f32 * wx1;
            let bottom = c[k] as f32 * wx0 + d[k] as f32 * wx1;
            v[k] = top * wy0 + bottom * wy1;
        }
        *o = if S::YUV {
            colors.yuv_to_rgb_f32(v[0], v[1], v[2])
        } else {
            v
        };
    }
}
