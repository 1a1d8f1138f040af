//! [`CudaFrame`]: where the pixels of one frame lie in device memory.

use crate::video::color::YuvCoefficients;
use gst_video::VideoFormat;

use super::CudaError;

/// Memory layout class of a format the CUDA kernel reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameLayout {
    /// One plane, `bpp` bytes per pixel, byte offsets of R, G, B.
    Packed {
        bpp: usize,
        r: usize,
        g: usize,
        b: usize,
    },
    /// Y plane + interleaved UV plane, both halved in each axis (rounded up).
    Nv12,
    /// Y, U, V planes, chroma halved in each axis (rounded up).
    I420,
}

impl FrameLayout {
    /// Layout of `format`, or `None` when the kernel cannot read it.
    pub(crate) fn of(format: VideoFormat) -> Option<Self> {
        let packed = |bpp, r, g, b| FrameLayout::Packed { bpp, r, g, b };
        Some(match format {
            VideoFormat::Nv12 => FrameLayout::Nv12,
            VideoFormat::I420 => FrameLayout::I420,
            VideoFormat::Rgb => packed(3, 0, 1, 2),
            VideoFormat::Bgr => packed(3, 2, 1, 0),
            VideoFormat::Rgba | VideoFormat::Rgbx => packed(4, 0, 1, 2),
            VideoFormat::Bgra | VideoFormat::Bgrx => packed(4, 2, 1, 0),
            _ => return None,
        })
    }

    /// Number of planes.
    pub(crate) fn n_planes(self) -> usize {
        match self {
            FrameLayout::Packed { .. } => 1,
            FrameLayout::Nv12 => 2,
            FrameLayout::I420 => 3,
        }
    }

    /// Bytes of one row of plane `i` holding pixels and rows in that plane, for a frame
    /// of `w x h`.
    pub(crate) fn plane_geometry(self, i: usize, w: usize, h: usize) -> (usize, usize) {
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        match (self, i) {
            (FrameLayout::Packed { bpp, .. }, _) => (w * bpp, h),
            (_, 0) => (w, h),
            (FrameLayout::Nv12, _) => (cw * 2, ch),
            (FrameLayout::I420, _) => (cw, ch),
        }
    }
}

/// How a kernel addresses a frame's pixels, with the numbering the kernels share
/// (`KIND_*` / `OUT_*` in the `.cu` files): 0 packed (byte access), 1 packed with 4 bytes
/// a pixel and a 4-byte aligned plane and stride (word access), 2 NV12, 3 I420; for packed
/// formats the bytes a pixel and the byte offsets of R, G and B.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KernelLayout {
    pub(crate) kind: i32,
    pub(crate) bpp: i32,
    pub(crate) r: i32,
    pub(crate) g: i32,
    pub(crate) b: i32,
}

/// Formats the CUDA preprocessing kernel reads (same set as the CPU path).
pub const CUDA_FORMATS: &[VideoFormat] = &[
    VideoFormat::Nv12,
    VideoFormat::I420,
    VideoFormat::Rgba,
    VideoFormat::Bgra,
    VideoFormat::Rgbx,
    VideoFormat::Bgrx,
    VideoFormat::Rgb,
    VideoFormat::Bgr,
];

/// How the kernels read a frame (`KIND_*` in preprocess.cu and tiler.cu): 3 or 4 bytes per
/// pixel read byte by byte, 4 bytes per pixel read as one word (plane and stride 4-byte
/// aligned), NV12, I420.
pub(crate) const KIND_PACKED: i32 = 0;
pub(crate) const KIND_PACKED4: i32 = 1;
pub(crate) const KIND_NV12: i32 = 2;
pub(crate) const KIND_I420: i32 = 3;

/// One frame in device memory: format, size, and per plane its device address and
/// stride. Optionally owns a reference to the GstBuffer holding the memory, which the
/// preprocessor keeps until the output tensor is dropped.
#[derive(Debug, Clone)]
pub struct CudaFrame {
    pub(crate) format: VideoFormat,
    pub(crate) layout: FrameLayout,
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) planes: [u64; 3],
    pub(crate) strides: [usize; 3],
    /// How its YUV converts to RGB (the stream's colorimetry).
    pub(crate) colors: YuvCoefficients,
    pub(crate) keepalive: Option<gst::Buffer>,
}

impl CudaFrame {
    /// A frame from raw device planes (GStreamer plane order: NV12 = Y, UV; I420 = Y, U,
    /// V; packed formats = one plane) with their strides in bytes.
    ///
    /// Checks the format, the size, the plane count, that no address is null and that each
    /// stride holds a row; the memory itself cannot be checked.
    ///
    /// # Safety
    /// Each plane must be device memory accessible from the CUDA context of the
    /// preprocessor that reads the frame, holding `rows` rows of `stride` bytes (the last
    /// row only needs the row's pixels), and must stay allocated and unchanged until the
    /// output tensor's event has completed ([`super::DeviceTensorLease::wait`]).
    pub unsafe fn from_raw(
        format: VideoFormat,
        width: u32,
        height: u32,
        planes: &[u64],
        strides: &[usize],
    ) -> Result<Self, CudaError> {
        let layout = FrameLayout::of(format).ok_or(CudaError::UnsupportedFormat(format))?;
        if width == 0 || height == 0 || width > i32::MAX as u32 / 4 || height > i32::MAX as u32 / 4 {
            return Err(CudaError::InvalidInput(format!(
                "invalid frame size {width}x{height}"
            )));
        }
        let n = layout.n_planes();
        if planes.len() < n || strides.len() < n {
            return Err(CudaError::InvalidInput(format!(
                "{format:?} needs {n} planes and strides, got {} and {}",
                planes.len(),
                strides.len()
            )));
        }
        let mut p = [0u64; 3];
        let mut s = [0usize; 3];
        for i in 0..n {
            let (row, _) = layout.plane_geometry(i, width as usize, height as usize);
            if planes[i] == 0 {
                return Err(CudaError::InvalidInput(format!(
                    "plane {i} of a {format:?} frame is null"
                )));
            }
            if strides[i] < row || strides[i] > i32::MAX as usize {
                return Err(CudaError::InvalidInput(format!(
                    "stride {} of plane {i} cannot hold a {format:?} row of {row} bytes",
                    strides[i]
                )));
            }
            p[i] = planes[i];
            s[i] = strides[i];
        }
        Ok(Self {
            format,
            layout,
            width,
            height,
            planes: p,
            strides: s,
            colors: YuvCoefficients::size_default(height),
            keepalive: None,
        })
    }

    /// The same frame converting its YUV with `colors` (by default GStreamer's default for
    /// the frame size in limited range, what caps without colorimetry mean).
    pub fn with_colors(mut self, colors: YuvCoefficients) -> Self {
        self.colors = colors;
        self
    }

    /// The kernels' float YUV → RGB parameters of this frame: `[luma offset, fy, frv, fgu,
    /// fgv, fbu]` ([`crate::video::color`]).
    pub(crate) fn kernel_colors(&self) -> [f32; 6] {
        let k = &self.colors.f_inv;
        [self.colors.y_offset as f32, k[0], k[1], k[2], k[3], k[4]]
    }

    /// The same frame, also keeping `buffer` alive for as long as the preprocessor needs
    /// the pixels (until the output tensor is dropped).
    pub fn with_keepalive(mut self, buffer: gst::Buffer) -> Self {
        self.keepalive = Some(buffer);
        self
    }

    /// How a kernel addresses the pixels (see [`KernelLayout`]).
    pub(crate) fn kernel_layout(&self) -> KernelLayout {
        let (kind, bpp, r, g, b) = match self.layout {
            FrameLayout::Packed { bpp, r, g, b } => {
                let words = bpp == 4 && self.planes[0].is_multiple_of(4) && self.strides[0].is_multiple_of(4);
                (if words { KIND_PACKED4 } else { KIND_PACKED }, bpp, r, g, b)
            }
            FrameLayout::Nv12 => (KIND_NV12, 1, 0, 0, 0),
            FrameLayout::I420 => (KIND_I420, 1, 0, 0, 0),
        };
        KernelLayout {
            kind,
            bpp: bpp as i32,
            r: r as i32,
            g: g as i32,
            b: b as i32,
        }
    }

    /// Strides as the kernels take them (checked ≤ `i32::MAX` by [`CudaFrame::from_raw`]).
    pub(crate) fn kernel_strides(&self) -> [i32; 3] {
        self.strides.map(|s| s as i32)
    }

    /// Video format.
    pub fn format(&self) -> VideoFormat {
        self.format
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Device address of plane `i` (0 for planes the format does not have).
    pub fn plane(&self, i: usize) -> u64 {
        self.planes.get(i).copied().unwrap_or(0)
    }

    /// Stride in bytes of plane `i` (0 for planes the format does not have).
    pub fn stride(&self, i: usize) -> usize {
        self.strides.get(i).copied().unwrap_or(0)
    }

    /// Number of planes of the format.
    pub fn n_planes(&self) -> usize {
        self.layout.n_planes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_raw_validates() {
        // SAFETY: the frames are never read.
        unsafe {
            let f = CudaFrame::from_raw(VideoFormat::Nv12, 641, 479, &[0x1000, 0x9000], &[704, 704]).unwrap();
            assert_eq!((f.n_planes(), f.plane(1), f.stride(2)), (2, 0x9000, 0));
            assert!(matches!(
                CudaFrame::from_raw(VideoFormat::Yuy2, 4, 4, &[1], &[8]),
                Err(CudaError::UnsupportedFormat(_))
            ));
            assert!(CudaFrame::from_raw(VideoFormat::Rgba, 4, 4, &[1], &[15]).is_err());
            assert!(CudaFrame::from_raw(VideoFormat::I420, 5, 5, &[1, 2], &[5, 3]).is_err());
            assert!(CudaFrame::from_raw(VideoFormat::I420, 5, 5, &[1, 2, 3], &[5, 3, 3]).is_ok());
            assert!(CudaFrame::from_raw(VideoFormat::Rgb, 0, 5, &[1], &[5]).is_err());
            assert!(CudaFrame::from_raw(VideoFormat::Rgb, 2, 2, &[0], &[6]).is_err());
        }
        assert_eq!(FrameLayout::Nv12.plane_geometry(1, 641, 479), (642, 240));
        // SAFETY: never read.
        let (bgrx, rgb, i420) = unsafe {
            (
                CudaFrame::from_raw(VideoFormat::Bgrx, 4, 4, &[0x1000], &[16]).unwrap(),
                CudaFrame::from_raw(VideoFormat::Rgb, 4, 4, &[0x1000], &[12]).unwrap(),
                CudaFrame::from_raw(VideoFormat::I420, 5, 5, &[1, 2, 3], &[5, 3, 3]).unwrap(),
            )
        };
        let l = bgrx.kernel_layout();
        assert_eq!((l.kind, l.bpp, l.r, l.g, l.b), (1, 4, 2, 1, 0));
        let l = rgb.kernel_layout();
        assert_eq!((l.kind, l.bpp, l.r), (0, 3, 0));
        assert_eq!(i420.kernel_layout().kind, 3);
        assert_eq!(i420.kernel_strides(), [5, 3, 3]);
        assert_eq!(FrameLayout::I420.plane_geometry(2, 641, 479), (321, 240));
    }
}
