//! RGB ↔ YUV conversion with each stream's own colour matrix and range.
//!
//! A stream's caps say how its YUV was made (`colorimetry`: BT.601, BT.709 or BT.2020,
//! limited "TV" or full "PC" range); caps without it get GStreamer's defaults for the frame
//! size (`GstVideoInfo` fills them in: BT.601 limited up to 576 lines, BT.709 limited
//! above). [`YuvCoefficients::for_info`] turns that into the numbers below, and the
//! CPU code and every GPU kernel take them from there, so both convert every stream alike.
//!
//! With `Kr`, `Kb` the matrix's luma weights (`Kg = 1 - Kr - Kb`), `Yo`/`Ys` the luma
//! offset and scale (16/219 limited, 0/255 full) and `Cs` the chroma scale (224 limited,
//! 255 full; chroma is centred on 128 in both):
//!
//! Integer form (8-bit fixed point, used when writing frames and by
//! [`YuvCoefficients::yuv_to_rgb`]; each coefficient is the float one × 256, rounded):
//! ```text
//! Y = ((yr R + yg G + yb B + 128) >> 8) + Yo
//! U = ((ur R + ug G + ub B + 128) >> 8) + 128
//! V = ((vr R + vg G + vb B + 128) >> 8) + 128
//!
//! C = Y - Yo, D = U - 128, E = V - 128
//! R = clamp((iy C          + irv E + 128) >> 8, 0, 255)
//! G = clamp((iy C - igu D - igv E + 128) >> 8, 0, 255)
//! B = clamp((iy C + ibu D          + 128) >> 8, 0, 255)
//! ```
//! (`>>` is an arithmetic shift, i.e. floor division by 256.) For BT.601 limited range
//! these are the classic `66 129 25 / -38 -74 112 / 112 -94 -18` and `298 409 100 208 516`.
//!
//! Float form (used by bilinear sampling, which interpolates Y, U, V first and converts
//! once):
//! ```text
//! R = fy (Y - Yo)                 + frv (V - 128)
//! G = fy (Y - Yo) - fgu (U - 128) - fgv (V - 128)
//! B = fy (Y - Yo) + fbu (U - 128)
//! ```
//! clamped to `[0, 255]`, with `fy = 255/Ys`, `frv = 2(1-Kr)·255/Cs`,
//! `fgu = 2(1-Kb)Kb/Kg·255/Cs`, `fgv = 2(1-Kr)Kr/Kg·255/Cs`, `fbu = 2(1-Kb)·255/Cs`.
//! The two forms differ by at most 2 levels.

use gst_video::{VideoColorMatrix, VideoColorRange, VideoInfo};

/// The YUV matrices the elements convert with (those of `GstVideoColorMatrix` that
/// cameras and files use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum YuvMatrix {
    /// ITU-R BT.601 (SD video, JPEG).
    Bt601,
    /// ITU-R BT.709 (HD video).
    Bt709,
    /// ITU-R BT.2020 non-constant luminance (UHD video).
    Bt2020,
}

impl YuvMatrix {
    /// Luma weights `(Kr, Kb)`.
    pub const fn weights(self) -> (f64, f64) {
        match self {
            YuvMatrix::Bt601 => (0.299, 0.114),
            YuvMatrix::Bt709 => (0.2126, 0.0722),
            YuvMatrix::Bt2020 => (0.2627, 0.0593),
        }
    }

    /// GStreamer's default matrix for a YUV frame of `height` lines (what
    /// `gst_video_info_set_format` picks when caps carry no colorimetry).
    pub fn default_for_height(height: u32) -> Self {
        if height > 576 {
            YuvMatrix::Bt709
        } else {
            YuvMatrix::Bt601
        }
    }
}

/// Every number needed to convert one stream's YUV to RGB and back (see the module
/// documentation for the formulas). Cheap to copy; GPU kernels receive the float inverse
/// and the integer forward coefficients of each frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct YuvCoefficients {
    /// The matrix these numbers were made for.
    pub matrix: YuvMatrix,
    /// Full range (`Y` in `[0, 255]`) instead of limited (`[16, 235]`).
    pub full_range: bool,
    /// Luma offset `Yo` (16 or 0).
    pub y_offset: i32,
    /// Integer RGB → Y coefficients `[r, g, b]` (× 256).
    pub int_y: [i32; 3],
    /// Integer RGB → U coefficients `[r, g, b]` (× 256).
    pub int_u: [i32; 3],
    /// Integer RGB → V coefficients `[r, g, b]` (× 256).
    pub int_v: [i32; 3],
    /// Integer YUV → RGB coefficients `[y, r_v, g_u, g_v, b_u]` (× 256), G terms
    /// subtracted.
    pub int_inv: [i32; 5],
    /// Float YUV → RGB coefficients `[fy, frv, fgu, fgv, fbu]`, G terms subtracted.
    pub f_inv: [f32; 5],
}

impl Default for YuvCoefficients {
    fn default() -> Self {
        Self::BT601_LIMITED
    }
}

const fn fixed(v: f64) -> i32 {
    let s = v * 256.0;
    if s >= 0.0 {
        (s + 0.5) as i32
    } else {
        -((-s + 0.5) as i32)
    }
}

impl YuvCoefficients {
    /// BT.601 limited range: what an SD camera sends, and the conversion of the synthetic
    /// scenes when their caps ask for nothing else.
    pub const BT601_LIMITED: Self = Self::new(YuvMatrix::Bt601, false);

    /// Coefficients of `matrix` in limited or full range.
    pub const fn new(matrix: YuvMatrix, full_range: bool) -> Self {
        let (kr, kb) = matrix.weights();
        let kg = 1.0 - kr - kb;
        let (y_offset, ys, cs) = if full_range {
            (0, 255.0, 255.0)
        } else {
            (16, 219.0, 224.0)
        };
        let fy = ys / 255.0;
        let fc = cs / 255.0;
        let cb = 2.0 * (1.0 - kb);
        let cr = 2.0 * (1.0 - kr);
        let (u_r, u_b) = (fixed(-fc * kr / cb), fixed(fc * 0.5));
        let (v_r, v_b) = (fixed(fc * 0.5), fixed(-fc * kb / cr));
        let inv = [
            255.0 / ys,
            cr * 255.0 / cs,
            cb * kb / kg * 255.0 / cs,
            cr * kr / kg * 255.0 / cs,
            cb * 255.0 / cs,
        ];
        Self {
            matrix,
            full_range,
            y_offset,
            // Green takes the rounding so that greys stay exact: the luma coefficients sum
            // to the luma scale and the chroma ones to zero.
            int_y: [
                fixed(fy * kr),
                fixed(fy) - fixed(fy * kr) - fixed(fy * kb),
                fixed(fy * kb),
            ],
            int_u: [u_r, -u_r - u_b, u_b],
            int_v: [v_r, -v_r - v_b, v_b],
            int_inv: [
                fixed(inv[0]),
                fixed(inv[1]),
                fixed(inv[2]),
                fixed(inv[3]),
                fixed(inv[4]),
            ],
            f_inv: [
                inv[0] as f32,
                inv[1] as f32,
                inv[2] as f32,
                inv[3] as f32,
                inv[4] as f32,
            ],
        }
    }

    /// What caps without colorimetry mean for a frame of `height` lines: GStreamer's
    /// default matrix for that size, limited range.
    pub fn size_default(height: u32) -> Self {
        Self::new(YuvMatrix::default_for_height(height), false)
    }

    /// The coefficients of a stream: its caps' matrix and range, GStreamer's default for
    /// the frame size where the caps leave them unknown (and for matrices no camera uses,
    /// such as RGB or SMPTE 240M, which are read as the size's default).
    pub fn for_info(info: &VideoInfo) -> Self {
        let c = info.colorimetry();
        let matrix = match c.matrix() {
            VideoColorMatrix::Bt601 => YuvMatrix::Bt601,
            VideoColorMatrix::Bt709 => YuvMatrix::Bt709,
            VideoColorMatrix::Bt2020 => YuvMatrix::Bt2020,
            _ => YuvMatrix::default_for_height(info.height()),
        };
        let full_range = matches!(c.range(), VideoColorRange::Range0_255);
        Self::new(matrix, full_range)
    }

    /// The colour space these coefficients convert to and from: matrix and full range.
    pub fn space(&self) -> (YuvMatrix, bool) {
        (self.matrix, self.full_range)
    }

    /// Luma of an RGB colour.
    #[inline(always)]
    pub fn rgb_to_y(&self, r: u8, g: u8, b: u8) -> u8 {
        let (r, g, b) = (r as i32, g as i32, b as i32);
        let c = &self.int_y;
        clamp_u8(((c[0] * r + c[1] * g + c[2] * b + 128) >> 8) + self.y_offset)
    }

    /// Chroma `(U, V)` of an RGB colour. Accepts the sum of `n` pixels' components
    /// (`n` = 1..=4) so 4:2:0 writers can average before converting.
    #[inline(always)]
    pub fn rgb_sum_to_uv(&self, r: u32, g: u32, b: u32, n: u32) -> (u8, u8) {
        // Average with rounding, then convert; conversion is linear so this equals the
        // mean chroma up to rounding.
        let half = n / 2;
        let (r, g, b) = (
            ((r + half) / n) as i32,
            ((g + half) / n) as i32,
            ((b + half) / n) as i32,
        );
        let (cu, cv) = (&self.int_u, &self.int_v);
        let u = ((cu[0] * r + cu[1] * g + cu[2] * b + 128) >> 8) + 128;
        let v = ((cv[0] * r + cv[1] * g + cv[2] * b + 128) >> 8) + 128;
        (clamp_u8(u), clamp_u8(v))
    }

    /// Full `(Y, U, V)` of an RGB colour.
    #[inline]
    pub fn rgb_to_yuv(&self, rgb: [u8; 3]) -> [u8; 3] {
        let y = self.rgb_to_y(rgb[0], rgb[1], rgb[2]);
        let (u, v) = self.rgb_sum_to_uv(rgb[0] as u32, rgb[1] as u32, rgb[2] as u32, 1);
        [y, u, v]
    }

    /// RGB of a YUV sample (integer form).
    #[inline(always)]
    pub fn yuv_to_rgb(&self, y: u8, u: u8, v: u8) -> [u8; 3] {
        let k = &self.int_inv;
        let c = k[0] * (y as i32 - self.y_offset);
        let d = u as i32 - 128;
        let e = v as i32 - 128;
        let r = (c + k[1] * e + 128) >> 8;
        let g = (c - k[2] * d - k[3] * e + 128) >> 8;
        let b = (c + k[4] * d + 128) >> 8;
        [clamp_u8(r), clamp_u8(g), clamp_u8(b)]
    }

    /// RGB in `[0, 255]` of a (possibly interpolated) YUV sample, float form.
    #[inline(always)]
    pub fn yuv_to_rgb_f32(&self, y: f32, u: f32, v: f32) -> [f32; 3] {
        let k = &self.f_inv;
        let c = k[0] * (y - self.y_offset as f32);
        let d = u - 128.0;
        let e = v - 128.0;
        [
            (c + k[1] * e).clamp(0.0, 255.0),
            (c - k[2] * d - k[3] * e).clamp(0.0, 255.0),
            (c + k[4] * d).clamp(0.0, 255.0),
        ]
    }
}

#[inline(always)]
fn clamp_u8(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [YuvCoefficients; 6] = [
        YuvCoefficients::new(YuvMatrix::Bt601, false),
        YuvCoefficients::new(YuvMatrix::Bt601, true),
        YuvCoefficients::new(YuvMatrix::Bt709, false),
        YuvCoefficients::new(YuvMatrix::Bt709, true),
        YuvCoefficients::new(YuvMatrix::Bt2020, false),
        YuvCoefficients::new(YuvMatrix::Bt2020, true),
    ];

    #[test]
    fn bt601_limited_is_the_classic_fixed_point() {
        let c = YuvCoefficients::BT601_LIMITED;
        assert_eq!(c.int_y, [66, 129, 25]);
        assert_eq!(c.int_u, [-38, -74, 112]);
        assert_eq!(c.int_v, [112, -94, -18]);
        assert_eq!(c.int_inv, [298, 409, 100, 208, 516]);
        assert_eq!(c.rgb_to_yuv([0, 0, 0]), [16, 128, 128]);
        assert_eq!(c.rgb_to_yuv([255, 255, 255]), [235, 128, 128]);
        // Red: exact BT.601 is (81.5, 90.3, 240); the integer form rounds Y up.
        assert_eq!(c.rgb_to_yuv([255, 0, 0]), [82, 90, 240]);
    }

    #[test]
    fn greys_and_ranges() {
        for c in ALL {
            let (black, white) = if c.full_range { (0, 255) } else { (16, 235) };
            assert_eq!(c.rgb_to_yuv([0, 0, 0]), [black, 128, 128], "{c:?}");
            assert_eq!(c.rgb_to_yuv([255, 255, 255]), [white, 128, 128], "{c:?}");
            assert_eq!(c.yuv_to_rgb(black, 128, 128), [0, 0, 0]);
            assert_eq!(c.yuv_to_rgb(white, 128, 128), [255, 255, 255]);
        }
    }

    /// The exact (real-valued) conversion, from the standards' definitions.
    fn exact_yuv(m: YuvMatrix, full: bool, rgb: [f64; 3]) -> [f64; 3] {
        let (kr, kb) = m.weights();
        let [r, g, b] = rgb.map(|v| v / 255.0);
        let y = kr * r + (1.0 - kr - kb) * g + kb * b;
        let (pb, pr) = ((b - y) / (2.0 * (1.0 - kb)), (r - y) / (2.0 * (1.0 - kr)));
        if full {
            [255.0 * y, 128.0 + 255.0 * pb, 128.0 + 255.0 * pr]
        } else {
            [16.0 + 219.0 * y, 128.0 + 224.0 * pb, 128.0 + 224.0 * pr]
        }
    }

    #[test]
    fn integer_form_within_one_level_of_the_standard() {
        for c in ALL {
            for rgb in [
                [255, 0, 0],
                [0, 255, 0],
                [0, 0, 255],
                [200, 120, 40],
                [13, 77, 250],
                [128, 128, 128],
            ] {
                let want = exact_yuv(c.matrix, c.full_range, rgb.map(f64::from));
                let got = c.rgb_to_yuv(rgb);
                for k in 0..3 {
                    let w = want[k].clamp(0.0, 255.0);
                    assert!(
                        (got[k] as f64 - w).abs() <= 1.0,
                        "{:?} {rgb:?}: {got:?} vs {want:?}",
                        c.space()
                    );
                }
                let back = c.yuv_to_rgb_f32(want[0] as f32, want[1] as f32, want[2] as f32);
                for k in 0..3 {
                    assert!(
                        (back[k] - rgb[k] as f32).abs() < 0.01,
                        "{:?} {rgb:?}: {back:?}",
                        c.space()
                    );
                }
            }
        }
        // BT.709 limited red: Y = 16 + 219 * 0.2126 = 62.6, U = 102.3, V = 240.
        assert_eq!(
            YuvCoefficients::new(YuvMatrix::Bt709, false).rgb_to_yuv([255, 0, 0]),
            [63, 102, 240]
        );
    }

    #[test]
    fn roundtrip_within_three_levels() {
        for c in ALL {
            for r in (0..=255).step_by(15) {
                for g in (0..=255).step_by(15) {
                    for b in (0..=255).step_by(15) {
                        let [y, u, v] = c.rgb_to_yuv([r as u8, g as u8, b as u8]);
                        let back = c.yuv_to_rgb(y, u, v);
                        let backf = c.yuv_to_rgb_f32(y as f32, u as f32, v as f32);
                        for (i, want) in [r, g, b].into_iter().enumerate() {
                            assert!(
                                (back[i] as i32 - want).abs() <= 3,
                                "{c:?} {r},{g},{b} -> {back:?}"
                            );
                            assert!((backf[i] - back[i] as f32).abs() <= 2.0);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn caps_choose_the_coefficients() {
        let caps = |s: &str| {
            gst::init().unwrap();
            VideoInfo::from_caps(&s.parse::<gst::Caps>().unwrap()).unwrap()
        };
        let sd = caps("video/x-raw,format=NV12,width=640,height=480,framerate=30/1");
        assert_eq!(YuvCoefficients::for_info(&sd), YuvCoefficients::BT601_LIMITED);
        let hd = caps("video/x-raw,format=NV12,width=1920,height=1080,framerate=30/1");
        assert_eq!(
            YuvCoefficients::for_info(&hd),
            YuvCoefficients::new(YuvMatrix::Bt709, false)
        );
        let uhd = caps("video/x-raw,format=NV12,width=3840,height=2160,framerate=30/1");
        let matrix = YuvMatrix::default_for_height(2160);
        assert_eq!(
            YuvCoefficients::for_info(&uhd),
            YuvCoefficients::new(matrix, false)
        );
        let hdr = caps("video/x-raw,format=NV12,width=3840,height=2160,colorimetry=bt2020");
        assert_eq!(
            YuvCoefficients::for_info(&hdr),
            YuvCoefficients::new(YuvMatrix::Bt2020, false)
        );
        // Full-range BT.601, as JPEG decoders announce it.
        let jpeg = caps("video/x-raw,format=I420,width=1920,height=1080,colorimetry=(string)1:4:0:0");
        assert_eq!(
            YuvCoefficients::for_info(&jpeg),
            YuvCoefficients::new(YuvMatrix::Bt601, true)
        );
        let sd709 = caps("video/x-raw,format=NV12,width=640,height=480,colorimetry=bt709");
        assert_eq!(
            YuvCoefficients::for_info(&sd709),
            YuvCoefficients::new(YuvMatrix::Bt709, false)
        );
    }
}
