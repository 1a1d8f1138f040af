//! Starting pipelines whose cameras are files behind demuxers.
//!
//! A demuxer has no source pads until it has read the stream header, so GstBin sorts it like
//! a sink and may start it before the parser/decoder it will feed. On a short header the
//! demuxer then pushes into an element that is not started yet, gets FLUSHING, and its task
//! stops without an error: that camera never delivers a frame and a non-live trtmux waits
//! for it. Starting file readers and demuxers only once everything else runs avoids it.

use gst::prelude::*;

/// Factories that are started last.
const STARTED_LAST: [&str; 6] = [
    "filesrc",
    "parsebin",
    "qtdemux",
    "matroskademux",
    "decodebin",
    "decodebin3",
];

/// Sets `pipeline` to PLAYING with file readers and demuxers started after everything else.
pub fn play_sources_last(pipeline: &gst::Pipeline) -> Result<(), gst::StateChangeError> {
    let late: Vec<gst::Element> = pipeline
        .iterate_elements()
        .into_iter()
        .flatten()
        .filter(|e| {
            e.factory()
                .is_some_and(|f| STARTED_LAST.contains(&f.name().as_str()))
        })
        .collect();
    for e in &late {
        e.set_locked_state(true);
    }
    let res = pipeline.set_state(gst::State::Playing);
    // Demuxers before readers, so each reader pushes into a running element.
    let mut ordered: Vec<&gst::Element> = late.iter().filter(|e| !is_reader(e)).collect();
    ordered.extend(late.iter().filter(|e| is_reader(e)));
    let mut ok = res.is_ok();
    for e in ordered {
        e.set_locked_state(false);
        ok &= e.sync_state_with_parent().is_ok();
    }
    if ok {
        Ok(())
    } else {
        Err(gst::StateChangeError)
    }
}

fn is_reader(e: &gst::Element) -> bool {
    e.factory().is_some_and(|f| f.name() == "filesrc")
}
