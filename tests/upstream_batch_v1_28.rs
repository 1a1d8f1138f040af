//! Upstream's analytics batches (GStreamer >= 1.28 builds, cargo feature `v1_28`):
//! gst-plugins-rs' `analyticscombiner` batches go through our chain, trtmux's batches go
//! into `analyticssplitter`, and the results travel on the frames of the batch as
//! `GstAnalyticsRelationMeta`, equal to what trtdemux attaches in our own chain.
//!
//! The upstream elements come from gst-plugins-rs' analytics plugin, which
//! `scripts/gstreamer-1.28.sh ensure` builds into the 1.28 lane; a missing plugin fails the
//! tests (they cannot check anything without it).
#![cfg(feature = "v1_28")]

mod common;

use common::groundtruth::CAMERAS;
use gst::prelude::*;
use gsttrtvision::trtdemux::analytics::{self, AnalyticsObject};
use std::sync::{Arc, Mutex};

const FRAMES: u32 = 6;
/// One frame at 30 frames/s: the combiner's batches then hold one frame per stream.
const BATCH_DURATION_NS: u64 = 33_333_333;

use common::{cfg_with_model as cfg, full_chain};

fn require_upstream() {
    common::init();
    for e in ["analyticscombiner", "analyticssplitter"] {
        assert!(
            gst::ElementFactory::find(e).is_some(),
            "{e} (gst-plugins-rs analytics plugin) is on GST_PLUGIN_PATH: run scripts/gstreamer-1.28.sh ensure"
        );
    }
}

/// One output frame: PTS and what its relation meta says (objects with their related
/// entries, and every tracking entry with its times: both paths carry trttracker's track
/// times).
#[derive(Debug, Clone, PartialEq)]
struct Frame {
    pts: Option<gst::ClockTime>,
    objects: Vec<AnalyticsObject>,
    tracks: Vec<analytics::AnalyticsTrack>,
}

fn frame_of(b: &gst::BufferRef) -> Frame {
    Frame {
        pts: b.pts(),
        objects: analytics::read(b),
        tracks: analytics::read_tracks(b),
    }
}

/// Runs `head name=m ! chain ! tail name=d` with the cameras on `m.sink_%u` and an appsink
/// on each `src(i)` of `d`; returns each camera's frames in arrival order.
fn run(
    head: &str,
    chain: &str,
    tail: &str,
    src: impl Fn(usize) -> String,
    cams: &[(&str, u32, u32)],
) -> Vec<Vec<Frame>> {
    let mut desc = format!("{head} name=m ! {chain} ! {tail} name=d");
    for (i, (fmt, w, h)) in cams.iter().enumerate() {
        desc += &format!(
            " trtscenesrc camera={i} num-buffers={FRAMES} ! video/x-raw,format={fmt},width={w},height={h},framerate=30/1 ! m.sink_{i} \
              d.{} ! queue ! appsink name=out{i} sync=false",
            src(i)
        );
    }
    let p = common::parse(&desc);
    let outs: Vec<_> = (0..cams.len())
        .map(|i| common::collect(&p, &format!("out{i}")))
        .collect();
    common::run_to_end(&p, gst::ClockTime::from_seconds(180)).expect("pipeline runs to EOS");
    outs.iter()
        .map(|o| o.lock().unwrap().iter().map(|b| frame_of(b)).collect())
        .collect()
}

/// Our own chain: trtmux → chain → trtdemux with GstAnalytics output.
fn reference(chain: &str, cams: &[(&str, u32, u32)]) -> Vec<Vec<Frame>> {
    run(
        &format!("trtmux batch-size={}", cams.len()),
        chain,
        "trtdemux meta=analytics",
        |i| format!("src_{i}"),
        cams,
    )
}

fn check_equal(got: &[Vec<Frame>], want: &[Vec<Frame>]) -> usize {
    assert_eq!(got.len(), want.len());
    let mut objects = 0;
    for (cam, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.len(), FRAMES as usize, "camera {cam}: every frame arrives");
        assert_eq!(
            w.len(),
            FRAMES as usize,
            "camera {cam}: every frame of the reference"
        );
        for (k, (gf, wf)) in g.iter().zip(w).enumerate() {
            assert_eq!(gf.pts, wf.pts, "camera {cam} frame {k}: same frame, in order");
            assert_eq!(gf.objects, wf.objects, "camera {cam} frame {k}: same results");
            assert_eq!(gf.tracks, wf.tracks, "camera {cam} frame {k}: same tracks");
            objects += gf.objects.len();
        }
    }
    objects
}

#[test]
fn combiner_batches_through_our_chain_into_the_splitter() {
    require_upstream();
    let cams = &CAMERAS[..4];
    let chain = full_chain();
    let want = reference(&chain, cams);
    let got = run(
        &format!("analyticscombiner batch-duration={BATCH_DURATION_NS}"),
        &chain,
        "analyticssplitter",
        |i| format!("src_0_{i}"),
        cams,
    );
    let objects = check_equal(&got, &want);
    println!("{objects} objects on {} frames", cams.len() * FRAMES as usize);
    assert!(
        objects >= cams.len() * FRAMES as usize,
        "the scene has objects in every frame"
    );
}

#[test]
fn trtmux_analytics_batches_into_the_splitter() {
    require_upstream();
    let cams = &CAMERAS[..3];
    let det = cfg("shapes-yolo.toml");
    let chain = format!("trtpreprocess config-file={det} ! trtinfer model={det}");
    let want = reference(&chain, cams);
    let got = run(
        &format!("trtmux batch-size={} batch-meta=analytics", cams.len()),
        &chain,
        "analyticssplitter",
        |i| format!("src_0_{i}"),
        cams,
    );
    let objects = check_equal(&got, &want);
    assert!(objects > 0, "the detector finds objects ({objects})");
}

#[test]
fn trtmux_analytics_batches_without_our_elements() {
    // trtmux straight into the splitter: every frame of every stream, unchanged, in order.
    require_upstream();
    let cams = &CAMERAS[..2];
    let got = run(
        &format!("trtmux batch-size={} batch-meta=analytics", cams.len()),
        "identity",
        "analyticssplitter",
        |i| format!("src_0_{i}"),
        cams,
    );
    for (cam, frames) in got.iter().enumerate() {
        let pts: Vec<_> = frames.iter().map(|f| f.pts.unwrap().nseconds()).collect();
        let want: Vec<_> = (0..FRAMES as u64).map(|k| k * 1_000_000_000 / 30).collect();
        assert_eq!(pts, want, "camera {cam}");
        assert!(frames.iter().all(|f| f.objects.is_empty()));
    }
}

/// The results on the frames of each batch as trtdemux's sink pad sees them (the last
/// element between trtmux and trtdemux has run), per camera.
#[test]
fn elements_between_trtmux_and_trtdemux_see_analytics_on_the_batch() {
    common::init();
    let cams = &CAMERAS[..4];
    let chain = full_chain();
    let mut desc = format!(
        "trtmux name=m batch-size={} batch-meta=both ! {chain} ! trtdemux name=d meta=analytics",
        cams.len()
    );
    for (i, (fmt, w, h)) in cams.iter().enumerate() {
        desc += &format!(
            " trtscenesrc camera={i} num-buffers={FRAMES} ! video/x-raw,format={fmt},width={w},height={h},framerate=30/1 ! m.sink_{i} \
              d.src_{i} ! queue ! appsink name=out{i} sync=false"
        );
    }
    let p = common::parse(&desc);
    let on_batch: Arc<Mutex<Vec<Vec<Frame>>>> = Arc::new(Mutex::new(vec![Vec::new(); cams.len()]));
    let seen = on_batch.clone();
    let demux = p.by_name("d").unwrap();
    demux
        .static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let Some(b) = info.buffer() else {
                return gst::PadProbeReturn::Ok;
            };
            let meta = b
                .meta::<gst_analytics::AnalyticsBatchMeta>()
                .expect("batch-meta=both: every batch carries a GstAnalyticsBatchMeta");
            let mut seen = seen.lock().unwrap();
            for (s, stream) in meta.streams().iter().enumerate() {
                for o in stream.objects() {
                    if let Some(frame) = o.downcast_ref::<gst::Buffer>() {
                        seen[s].push(frame_of(frame));
                    }
                }
            }
            gst::PadProbeReturn::Ok
        });
    let outs: Vec<_> = (0..cams.len())
        .map(|i| common::collect(&p, &format!("out{i}")))
        .collect();
    common::run_to_end(&p, gst::ClockTime::from_seconds(180)).expect("pipeline runs to EOS");
    let demuxed: Vec<Vec<Frame>> = outs
        .iter()
        .map(|o| o.lock().unwrap().iter().map(|b| frame_of(b)).collect())
        .collect();
    let on_batch = on_batch.lock().unwrap();
    let objects = check_equal(&on_batch, &demuxed);
    assert!(
        objects >= cams.len() * FRAMES as usize,
        "the scene has objects in every frame"
    );
    // The batch carries each track's first-seen time, not the frame's own PTS.
    let spanning = on_batch
        .iter()
        .flatten()
        .flat_map(|f| &f.tracks)
        .filter(|t| t.detected && t.first_seen < t.last_seen)
        .count();
    assert!(
        spanning > 0,
        "tracked objects on the batch keep their first-seen time"
    );
}

#[test]
fn batch_meta_property() {
    common::init();
    let m = gst::ElementFactory::make("trtmux").build().unwrap();
    assert_eq!(common::enum_nick(&m, "batch-meta"), "trtvision");
    m.set_property_from_str("batch-meta", "analytics");
    assert_eq!(common::enum_nick(&m, "batch-meta"), "analytics");
}
