//! RGB ↔ YUV conversion, BT.601 limited ("TV") range, for every frame size.
//!
//! GStreamer's `videoconvert` picks BT.601 for SD and BT.709 for HD by default; we use
//! BT.601 for all sizes so that the CPU path, the GPU kernels and the tests agree on one
//! set of numbers whatever the resolution. Y is in `[16, 235]`, U/V in `[16, 240]`.
//!
//! Two forms are provided and both are normative (the GPU kernels reuse these constants):
//!
//! Integer (8-bit fixed point, used when writing frames and by [`yuv_to_rgb`]):
//! ```text
//! Y = ((  66 R + 129 G +  25 B + 128) >> 8) + 16
//! U = (( -38 R -  74 G + 112 B + 128) >> 8) + 128
//! V = (( 112 R -  94 G -  18 B + 128) >> 8) + 128
//!
//! C = Y - 16, D = U - 128, E = V - 128
//! R = clamp((298 C         + 409 E + 128) >> 8, 0, 255)
//! G = clamp((298 C - 100 D - 208 E + 128) >> 8, 0, 255)
//! B = clamp((298 C + 516 D         + 128) >> 8, 0, 255)
//! ```
//! (`>>` is an arithmetic shift, i.e. floor division by 256.)
//!
//! Float (used by bilinear sampling, which interpolates Y, U, V first and converts once):
//! ```text
//! R = 1.164383 (Y-16)                     + 1.596027 (V-128)
//! G = 1.164383 (Y-16) - 0.391762 (U-128) - 0.812968 (V-128)
//! B = 1.164383 (Y-16) + 2.017232 (U-128)
//! ```
//! clamped to `[0, 255]`. The two forms differ by at most 2 levels.

/// Integer RGB → Y coefficients `[r, g, b]` (scaled by 256, offset 16).
pub const INT_Y: [i32; 3] = [66, 129, 25];
/// Integer RGB → U coefficients `[r, g, b]` (scaled by 256, offset 128).
pub const INT_U: [i32; 3] = [-38, -74, 112];
/// Integer RGB → V coefficients `[r, g, b]` (scaled by 256, offset 128).
pub const INT_V: [i32; 3] = [112, -94, -18];
/// Integer YUV → RGB coefficients (scaled by 256): `[y, r_v, g_u, g_v, b_u]`, with the
/// G terms subtracted.
pub const INT_INV: [i32; 5] = [298, 409, 100, 208, 516];

/// Float YUV → RGB luma gain applied to `Y - 16`.
pub const F_Y: f32 = 1.164_383;
/// Float gain of `V - 128` into R.
pub const F_RV: f32 = 1.596_027;
/// Float gain of `U - 128` into G (subtracted).
pub const F_GU: f32 = 0.391_762;
/// Float gain of `V - 128` into G (subtracted).
pub const F_GV: f32 = 0.812_968;
/// Float gain of `U - 128` into B.
pub const F_BU: f32 = 2.017_232;

/// Luma of an RGB colour (integer BT.601 limited range).
#[inline(always)]
pub fn rgb_to_y(r: u8, g: u8, b: u8) -> u8 {
    let (r, g, b) = (r as i32, g as i32, b as i32);
    (((INT_Y[0] * r + INT_Y[1] * g + INT_Y[2] * b + 128) >> 8) + 16) as u8
}

/// Chroma `(U, V)` of an RGB colour (integer BT.601 limited range). Accepts the sum of
/// `n` pixels' components (`n` = 1..=4) so 4:2:0 writers can average before converting.
#[inline(always)]
pub fn rgb_sum_to_uv(r: u32, g: u32, b: u32, n: u32) -> (u8, u8) {
    // Average with rounding, then convert; conversion is linear so this equals the
    // mean chroma up to rounding.
    let half = n / 2;
    let (r, g, b) = (
        ((r + half) / n) as i32,
        ((g + half) / n) as i32,
        ((b + half) / n) as i32,
    );
    let u = ((INT_U[0] * r + INT_U[1] * g + INT_U[2] * b + 128) >> 8) + 128;
    let v = ((INT_V[0] * r + INT_V[1] * g + INT_V[2] * b + 128) >> 8) + 128;
    (u as u8, v as u8)
}

/// Full `(Y, U, V)` of an RGB colour.
#[inline]
pub fn rgb_to_yuv(rgb: [u8; 3]) -> [u8; 3] {
    let y = rgb_to_y(rgb[0], rgb[1], rgb[2]);
    let (u, v) = rgb_sum_to_uv(rgb[0] as u32, rgb[1] as u32, rgb[2] as u32, 1);
    [y, u, v]
}

/// RGB of a YUV sample (integer BT.601 limited range).
#[inline(always)]
pub fn yuv_to_rgb(y: u8, u: u8, v: u8) -> [u8; 3] {
    let c = INT_INV[0] * (y as i32 - 16);
    let d = u as i32 - 128;
    let e = v as i32 - 128;
    let r = (c + INT_INV[1] * e + 128) >> 8;
    let g = (c - INT_INV[2] * d - INT_INV[3] * e + 128) >> 8;
    let b = (c + INT_INV[4] * d + 128) >> 8;
    [clamp_u8(r), clamp_u8(g), clamp_u8(b)]
}

/// RGB in `[0, 255]` of a (possibly interpolated) YUV sample, float form.
#[inline(always)]
pub fn yuv_to_rgb_f32(y: f32, u: f32, v: f32) -> [f32; 3] {
    let c = F_Y * (y - 16.0);
    let d = u - 128.0;
    let e = v - 128.0;
    [
        (c + F_RV * e).clamp(0.0, 255.0),
        (c - F_GU * d - F_GV * e).clamp(0.0, 255.0),
        (c + F_BU * d).clamp(0.0, 255.0),
    ]
}

#[inline(always)]
fn clamp_u8(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primaries_and_greys() {
        assert_eq!(rgb_to_yuv([0, 0, 0]), [16, 128, 128]);
        assert_eq!(rgb_to_yuv([255, 255, 255]), [235, 128, 128]);
        // Red: exact BT.601 is (81.5, 90.3, 240); the integer form rounds Y up.
        assert_eq!(rgb_to_yuv([255, 0, 0]), [82, 90, 240]);
    }

    #[test]
    fn roundtrip_within_two_levels() {
        for r in (0..=255).step_by(15) {
            for g in (0..=255).step_by(15) {
                for b in (0..=255).step_by(15) {
                    let [y, u, v] = rgb_to_yuv([r as u8, g as u8, b as u8]);
                    let back = yuv_to_rgb(y, u, v);
                    let backf = yuv_to_rgb_f32(y as f32, u as f32, v as f32);
                    for (i, want) in [r, g, b].into_iter().enumerate() {
                        assert!((back[i] as i32 - want).abs() <= 3, "{r},{g},{b} -> {back:?}");
                        assert!((backf[i] - back[i] as f32).abs() <= 2.0);
                    }
                }
            }
        }
    }
}
