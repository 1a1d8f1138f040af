//! Colour maps for dense outputs (depth, heat maps): a value in `[lo, hi]` becomes one of
//! 256 colours, prepared once per map as [`Paint`]s so drawing converts no colour per pixel.

use crate::video::Paint;
use gst::glib;

/// How dense values are coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, glib::Enum)]
#[enum_type(name = "GstTrtColormap")]
pub enum Colormap {
    /// Dense maps are not drawn (default).
    #[default]
    #[enum_value(name = "Dense maps are not drawn", nick = "none")]
    None,
    /// Google's Turbo (dark blue → cyan → green → yellow → red → dark red), its published
    /// polynomial approximation.
    #[enum_value(name = "Turbo: dark blue, cyan, green, yellow, red, dark red", nick = "turbo")]
    Turbo,
    /// The classic Jet (blue → cyan → yellow → red).
    #[enum_value(name = "Jet: blue, cyan, yellow, red", nick = "jet")]
    Jet,
    /// Black → white.
    #[enum_value(name = "Gray: black to white", nick = "gray")]
    Gray,
}

impl Colormap {
    /// Parses `none`, `turbo`, `jet` or `gray`/`grey`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "none" | "" => Self::None,
            "turbo" => Self::Turbo,
            "jet" => Self::Jet,
            "gray" | "grey" => Self::Gray,
            _ => return None,
        })
    }

    /// Name used by properties.
    pub const fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Turbo => "turbo",
            Self::Jet => "jet",
            Self::Gray => "gray",
        }
    }

    /// Colour of `t` in `[0, 1]` (clamped; NaN = 0).
    pub fn rgb(self, t: f32) -> [u8; 3] {
        let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) } as f64;
        let c = match self {
            Self::None | Self::Gray => [t, t, t],
            Self::Jet => {
                let f = |x: f64| (1.5 - (4.0 * t - x).abs()).clamp(0.0, 1.0);
                [f(3.0), f(2.0), f(1.0)]
            }
            Self::Turbo => {
                let p = |k: [f64; 6]| {
                    (k[0] + t * (k[1] + t * (k[2] + t * (k[3] + t * (k[4] + t * k[5]))))).clamp(0.0, 1.0)
                };
                [
                    p([
                        0.13572138,
                        4.61539260,
                        -42.66032258,
                        132.13108234,
                        -152.94239396,
                        59.28637943,
                    ]),
                    p([
                        0.09140261,
                        2.19418839,
                        4.84296658,
                        -14.18503333,
                        4.27729857,
                        2.82956604,
                    ]),
                    p([
                        0.10667330,
                        12.64194608,
                        -60.58204836,
                        110.36276771,
                        -89.90310912,
                        27.34824973,
                    ]),
                ]
            }
        };
        c.map(|v| (v * 255.0).round() as u8)
    }

    /// The 256 colours of the map, index `k` for `t = k / 255`.
    pub fn lut(self) -> Vec<Paint> {
        (0..256).map(|k| Paint::new(self.rgb(k as f32 / 255.0))).collect()
    }
}

/// Index into a [`Colormap::lut`] of `value` on the range `[lo, hi]`.
#[inline]
pub fn lut_index(value: f32, lo: f32, hi: f32) -> u8 {
    if !value.is_finite() {
        return 0;
    }
    let span = hi - lo;
    let t = if span > 0.0 { (value - lo) / span } else { 0.0 };
    (t.clamp(0.0, 1.0) * 255.0).round() as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_and_names() {
        assert_eq!(Colormap::Gray.rgb(0.0), [0, 0, 0]);
        assert_eq!(Colormap::Gray.rgb(1.0), [255, 255, 255]);
        assert_eq!(Colormap::Jet.rgb(0.0), [0, 0, 128]);
        assert_eq!(Colormap::Jet.rgb(1.0), [128, 0, 0]);
        // Turbo: dark at both ends, blue low, green in the middle, red high.
        assert_eq!(Colormap::Turbo.rgb(0.0), [35, 23, 27]);
        assert_eq!(Colormap::Turbo.rgb(0.1), [73, 88, 221]);
        assert_eq!(Colormap::Turbo.rgb(0.5), [150, 250, 80]);
        assert_eq!(Colormap::Turbo.rgb(0.8), [244, 92, 23]);
        for c in [Colormap::None, Colormap::Turbo, Colormap::Jet, Colormap::Gray] {
            assert_eq!(Colormap::parse(c.name()), Some(c));
        }
        assert_eq!(lut_index(5.0, 0.0, 10.0), 128);
        assert_eq!(lut_index(f32::NAN, 0.0, 10.0), 0);
        assert_eq!(lut_index(20.0, 0.0, 10.0), 255);
    }
}
