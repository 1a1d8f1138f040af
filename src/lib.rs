//! gst-trtvision: GStreamer elements for batched, multi-camera video analytics.
//!
//! `trtmux` batches frames of many sources by reference, `trtpreprocess` turns a batch
//! into one model input tensor, `trtinfer` runs one inference call per batch through a
//! backend (ONNX Runtime, TensorRT) and parses the outputs, `trtmaskselect` keeps only the
//! masks of active detections, `trtoverlay` draws results in place, and `trtdemux` /
//! `trttiler` turn batches back into per-source frames (with standard
//! `GstVideoRegionOfInterestMeta`) or a mosaic.

use gst::glib;

pub mod analytics;
pub mod backend;
pub mod batch;
pub mod broker;
pub mod caps;
pub mod config;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod geometry;
pub mod gpu_element;
pub mod launch;
pub mod live;
pub mod messages;
pub mod ops;
pub mod parsers;
pub mod recording;
pub mod results;
pub mod scene;
pub mod serve;
#[doc(hidden)]
pub mod skip;
pub mod tensor;
pub mod tracking;
pub mod transform;
pub mod trtanalytics;
pub mod trtcamsrc;
pub mod trtdemux;
pub mod trtinfer;
pub mod trtjsonexport;
pub mod trtmaskselect;
pub mod trtmsgbroker;
pub mod trtmux;
pub mod trtoverlay;
pub mod trtpreprocess;
pub mod trtrecordrule;
pub mod trtscenesrc;
pub mod trttiler;
pub mod trttracker;
pub mod video;

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    trtmux::register(plugin)?;
    trtcamsrc::register(plugin)?;
    trtdemux::register(plugin)?;
    trtmaskselect::register(plugin)?;
    trtjsonexport::register(plugin)?;
    trtinfer::register(plugin)?;
    trtpreprocess::register(plugin)?;
    trtscenesrc::register(plugin)?;
    trtoverlay::register(plugin)?;
    trttiler::register(plugin)?;
    trttracker::register(plugin)?;
    trtanalytics::register(plugin)?;
    trtmsgbroker::register(plugin)?;
    trtrecordrule::register(plugin)?;
    Ok(())
}

gst::plugin_define!(
    trtvision,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    "MPL",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    env!("TRTVISION_ORIGIN"),
    env!("BUILD_REL_DATE")
);
