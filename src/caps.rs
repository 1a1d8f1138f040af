//! Caps of the video frames our elements accept and produce.

use crate::batch::CUDA_MEMORY_FEATURE;

/// Raw video formats every element handles (CPU and GPU paths).
pub const FRAME_FORMATS: [gst_video::VideoFormat; 8] = [
    gst_video::VideoFormat::Nv12,
    gst_video::VideoFormat::I420,
    gst_video::VideoFormat::Rgba,
    gst_video::VideoFormat::Bgra,
    gst_video::VideoFormat::Rgbx,
    gst_video::VideoFormat::Bgrx,
    gst_video::VideoFormat::Rgb,
    gst_video::VideoFormat::Bgr,
];

/// `video/x-raw` in any supported format, size and rate.
pub fn frame_caps() -> gst::Caps {
    gst_video::VideoCapsBuilder::new()
        .format_list(FRAME_FORMATS)
        .build()
}

/// Frame caps in CUDA memory first, then system memory.
pub fn frame_caps_any_memory() -> gst::Caps {
    let mut caps = gst_video::VideoCapsBuilder::new()
        .features([CUDA_MEMORY_FEATURE])
        .format_list(FRAME_FORMATS)
        .build();
    caps.merge(frame_caps());
    caps
}
