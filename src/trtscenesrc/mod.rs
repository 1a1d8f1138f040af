//! `trtscenesrc`: live or non-live source of the synthetic multi-camera scene
//! ([`crate::scene`]), in any format of [`crate::video::supported_formats`]. Frame `n`
//! has buffer offset `n` and PTS `n * frame duration`, so ground truth for a buffer is
//! `scene_objects(camera, offset, width, height)`.
//!
//! Caps: any size, any positive framerate, a format of the supported list; what
//! downstream leaves open is fixated to 640x480, 30/1, RGBA. NV12/I420 are BT.601
//! limited range and say so with `colorimetry=bt601`. With `is-live=true` basesrc waits
//! on the clock for every buffer and, as for `videotestsrc`, shifts the PTS by the running
//! time of the first buffer; the offset stays the frame index. Non-live, the source is
//! seekable (a seek jumps to the first frame at or after the seek time).
//!
//! ```text
//! gst-launch-1.0 trtscenesrc camera=3 num-buffers=30 ! video/x-raw,format=NV12,width=1920,height=1080 ! fakesink
//! ```

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    /// The `trtscenesrc` element.
    pub struct SceneSrc(ObjectSubclass<imp::SceneSrc>)
        @extends gst_base::PushSrc, gst_base::BaseSrc, gst::Element, gst::Object;
}

/// Registers `trtscenesrc` with `plugin`.
pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "trtscenesrc",
        gst::Rank::NONE,
        SceneSrc::static_type(),
    )
}

#[cfg(test)]
mod tests;
