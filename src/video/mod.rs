//! CPU pixel access for the raw video formats the trtvision elements accept.
//!
//! Supported: NV12, I420 (4:2:0, BT.601 limited range, see [`color`]) and the 8-bit
//! packed RGB family RGB, BGR, RGBA, BGRA, RGBx, BGRx. Strides always come from the
//! mapped frame; 4:2:0 chroma planes are `ceil(w/2) x ceil(h/2)` so odd sizes work.
//!
//! - [`FrameReader`]: RGB at a pixel, whole rows, and bilinear row sampling (the
//!   preprocessing hot path; the format is matched once per row, not per pixel).
//! - [`write_rgba`]: convert a tightly packed RGBA image into a mapped frame.
//! - [`PixelsMut`]: span/block blending used by the CPU overlay ([`crate::ops::overlay::draw`]).

pub mod color;
mod layout;
mod reader;
mod writer;

pub use layout::{supported_formats, system_caps, Layout};
pub use reader::{BilinearTap, FrameReader};
pub use writer::{write_rgba, Paint, PixelsMut};

use gst_video::VideoFormat;

/// Errors of the pixel access helpers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VideoError {
    /// The frame's format is not one of [`supported_formats`].
    #[error("unsupported video format {0:?}")]
    Unsupported(VideoFormat),
    /// A source image or mapped plane is smaller than the frame geometry requires.
    #[error("buffer too small: need {needed} bytes, have {actual}")]
    TooSmall { needed: usize, actual: usize },
}

#[cfg(test)]
mod tests;
