//! Which memory layout each supported format has, decided once per frame.

use super::VideoError;
use gst_video::VideoFormat;

/// Memory layout of a supported format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One plane, `bpp` bytes per pixel, byte offsets of R, G, B inside a pixel and of
    /// the alpha or padding byte if any; `padding` is true for the `x` formats, whose
    /// fourth byte is written as 255.
    Packed {
        bpp: usize,
        r: usize,
        g: usize,
        b: usize,
        a: Option<usize>,
        padding: bool,
    },
    /// Y plane + interleaved UV plane at half resolution in both axes.
    Nv12,
    /// Y, U, V planes, chroma at half resolution in both axes.
    I420,
}

impl Layout {
    /// Layout of `format`, or [`VideoError::Unsupported`].
    pub fn of(format: VideoFormat) -> Result<Layout, VideoError> {
        let packed = |bpp, r, g, b, a, padding| Layout::Packed {
            bpp,
            r,
            g,
            b,
            a,
            padding,
        };
        Ok(match format {
            VideoFormat::Nv12 => Layout::Nv12,
            VideoFormat::I420 => Layout::I420,
            VideoFormat::Rgb => packed(3, 0, 1, 2, None, false),
            VideoFormat::Bgr => packed(3, 2, 1, 0, None, false),
            VideoFormat::Rgba => packed(4, 0, 1, 2, Some(3), false),
            VideoFormat::Rgbx => packed(4, 0, 1, 2, Some(3), true),
            VideoFormat::Bgra => packed(4, 2, 1, 0, Some(3), false),
            VideoFormat::Bgrx => packed(4, 2, 1, 0, Some(3), true),
            other => return Err(VideoError::Unsupported(other)),
        })
    }

    /// Whether chroma is subsampled 2x2 (NV12, I420).
    pub fn is_yuv420(self) -> bool {
        !matches!(self, Layout::Packed { .. })
    }
}

/// Formats every trtvision CPU path can read and write, most preferred first.
pub fn supported_formats() -> &'static [VideoFormat] {
    &[
        VideoFormat::Rgba,
        VideoFormat::Nv12,
        VideoFormat::I420,
        VideoFormat::Rgb,
        VideoFormat::Bgr,
        VideoFormat::Bgra,
        VideoFormat::Rgbx,
        VideoFormat::Bgrx,
    ]
}

/// `video/x-raw` caps in system memory with any of [`supported_formats`], any size and
/// any framerate.
pub fn system_caps() -> gst::Caps {
    gst_video::VideoCapsBuilder::new()
        .format_list(supported_formats().iter().copied())
        .build()
}

/// Size in pixels of the 4:2:0 chroma planes for a `width x height` frame.
#[inline]
pub(crate) fn chroma_size(width: u32, height: u32) -> (usize, usize) {
    (width.div_ceil(2) as usize, height.div_ceil(2) as usize)
}

/// Checks that a plane of `len` bytes holds `rows` rows of `row_bytes` at `stride`.
pub(crate) fn check_plane(
    len: usize,
    stride: usize,
    rows: usize,
    row_bytes: usize,
) -> Result<(), VideoError> {
    let needed = if rows == 0 {
        0
    } else {
        (rows - 1) * stride + row_bytes
    };
    if len < needed || (rows > 1 && stride < row_bytes) {
        return Err(VideoError::TooSmall {
            needed: needed.max(rows * row_bytes),
            actual: len,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_list_all_formats() {
        gst::init().unwrap();
        let caps = system_caps();
        for f in supported_formats() {
            let one = gst_video::VideoCapsBuilder::new()
                .format(*f)
                .width(64)
                .height(48)
                .framerate(gst::Fraction::new(30, 1))
                .build();
            assert!(one.is_subset(&caps), "{f:?}");
            assert!(Layout::of(*f).is_ok());
        }
        assert!(Layout::of(VideoFormat::Yuy2).is_err());
    }
}
