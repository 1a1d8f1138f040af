//! GstAnalytics output of trtdemux (GStreamer >= 1.28 builds, cargo feature `v1_28`): the
//! relation meta of every frame carries the same results as the ROI metas, and upstream's
//! `objectdetectionoverlay` (analyticsoverlay plugin) draws what it reads from it.
#![cfg(feature = "v1_28")]

mod common;

use common::groundtruth::CAMERAS;
use gst::prelude::*;
use gst_video::prelude::*;
use gsttrtvision::trtdemux::{analytics, roi};

/// `cameras` → trtmux → `chain` → trtdemux `demux` → per camera `tail` → appsink.
fn run(
    cameras: &[(&str, u32, u32)],
    frames: u32,
    chain: &str,
    demux: &str,
    tail: &str,
) -> Vec<common::Demuxed> {
    common::run_demuxed(chain, demux, tail, cameras, frames).expect("pipeline runs to EOS")
}

use common::{cfg_with_model as cfg, full_chain};

/// The ROI metas of a frame in detection order, as the analytics reader reports them.
fn from_roi(b: &gst::BufferRef) -> Vec<analytics::AnalyticsObject> {
    let mut rois: Vec<_> = b.iter_meta::<gst_video::VideoRegionOfInterestMeta>().collect();
    rois.sort_by_key(|r| r.id());
    rois.iter()
        .map(|r| {
            let d = r.param(roi::DETECTION_PARAM).expect("detection param");
            let (x, y, w, h) = r.rect();
            let object_id = d.get::<i64>("object-id").unwrap();
            analytics::AnalyticsObject {
                label: d.get::<String>("label").unwrap(),
                confidence: d.get::<f64>("confidence").unwrap() as f32,
                rect: (x as i32, y as i32, w as i32, h as i32),
                track: (object_id >= 0).then_some((
                    object_id as u64,
                    gst::ClockTime::ZERO,
                    gst::ClockTime::ZERO,
                )),
                classes: roi::read_secondary(r)
                    .into_iter()
                    .filter_map(|s| s.attribute.map(|a| (a.label.to_string(), a.score)))
                    .collect(),
                mask: roi::read_mask(r),
            }
        })
        .collect()
}

#[test]
fn analytics_entries_equal_roi_results_on_eight_cameras() {
    let frames = 6;
    let outs = run(&CAMERAS, frames, &full_chain(), "", "");
    assert_eq!(
        outs.len(),
        CAMERAS.len() * frames as usize,
        "every frame of every camera"
    );
    let (mut objects, mut tracked, mut masks, mut classes) = (0, 0, 0, 0);
    for o in &outs {
        let mut got = analytics::read(&o.buffer);
        let want = from_roi(&o.buffer);
        assert_eq!(
            got.len(),
            want.len(),
            "camera {} frame {}: {} analytics objects for {} ROIs",
            o.camera,
            o.buffer.offset(),
            got.len(),
            want.len()
        );
        // Track times are the stream's PTS: first <= last <= this frame's PTS.
        let pts = o.buffer.pts().unwrap();
        for g in &mut got {
            if let Some((_, first, last)) = &mut g.track {
                assert!(
                    *first <= *last && *last == pts,
                    "track times {first} {last} at {pts}"
                );
                (*first, *last) = (gst::ClockTime::ZERO, gst::ClockTime::ZERO);
            }
        }
        assert_eq!(got, want, "camera {} frame {}", o.camera, o.buffer.offset());
        assert!(o.info.width() > 0);
        objects += got.len();
        tracked += got.iter().filter(|g| g.track.is_some()).count();
        masks += got.iter().filter(|g| g.mask.is_some()).count();
        classes += got.iter().map(|g| g.classes.len()).sum::<usize>();
    }
    println!("{objects} objects: {tracked} tracked, {masks} masks, {classes} classifications");
    assert!(
        objects >= outs.len(),
        "the scene has objects in every frame ({objects})"
    );
    assert!(
        tracked * 10 >= objects * 9,
        "trttracker gives (nearly) every object an id: {tracked} of {objects}"
    );
    assert_eq!(masks, objects, "trtmaskselect gives every object a mask");
    assert_eq!(classes, objects, "the secondary model classifies every object");
}

#[test]
fn meta_property_chooses_what_is_attached() {
    let cams = &CAMERAS[..2];
    let chain = full_chain();
    for (meta, roi_expected, analytics_expected) in [
        ("roi", true, false),
        ("analytics", false, true),
        ("both", true, true),
    ] {
        let outs = run(cams, 2, &chain, &format!("meta={meta}"), "");
        assert_eq!(outs.len(), 4);
        for o in &outs {
            let rois = o
                .buffer
                .iter_meta::<gst_video::VideoRegionOfInterestMeta>()
                .count();
            let rel = o.buffer.meta::<gst_analytics::AnalyticsRelationMeta>().is_some();
            assert_eq!((rois > 0, rel), (roi_expected, analytics_expected), "meta={meta}");
        }
    }
    let d = gst::ElementFactory::make("trtdemux").build().unwrap();
    assert_eq!(
        d.property_value("meta")
            .get::<gsttrtvision::trtdemux::TrtDemuxMeta>()
            .unwrap(),
        gsttrtvision::trtdemux::TrtDemuxMeta::Both
    );
}

/// Outline colour for upstream's overlay (ARGB), one the synthetic scene never shows.
const COLOUR: u32 = 0xFF12EB34;

fn is_colour(px: &[u8]) -> bool {
    // BGRA in memory.
    let want = [COLOUR as u8, (COLOUR >> 8) as u8, (COLOUR >> 16) as u8];
    px[..3].iter().zip(want).all(|(a, b)| a.abs_diff(b) <= 2)
}

/// Runs the chain into upstream's objectdetectionoverlay (filled boxes, no labels); returns
/// per frame (objects read from the frame's analytics meta, pixels inside them drawn,
/// pixels of them, pixels drawn outside every box).
fn overlay_run(meta: &str) -> Vec<(usize, usize, usize, usize)> {
    common::init();
    assert!(
        gst::ElementFactory::find("objectdetectionoverlay").is_some(),
        "GStreamer's analyticsoverlay plugin (gstreamer1.0-plugins-bad) is installed"
    );
    let cams = [("BGRA", 640, 480), ("BGRA", 800, 600)];
    let det = cfg("shapes-yolo.toml");
    let outs = run(
        &cams,
        4,
        &format!("trtpreprocess config-file={det} ! trtinfer model={det}"),
        &format!("meta={meta}"),
        &format!(
            "objectdetectionoverlay filled-box=true draw-labels=false draw-tracking-labels=false \
             object-detection-outline-color={COLOUR} !"
        ),
    );
    assert_eq!(outs.len(), 8);
    outs.iter()
        .map(|o| {
            let objs = if meta == "roi" {
                from_roi(&o.buffer)
            } else {
                analytics::read(&o.buffer)
            };
            let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(&o.buffer, &o.info).unwrap();
            let (data, stride) = (frame.plane_data(0).unwrap(), frame.plane_stride()[0] as usize);
            let inside = |x: i32, y: i32, grow: i32| {
                objs.iter().any(|g| {
                    let (rx, ry, rw, rh) = g.rect;
                    x >= rx - grow && x < rx + rw + grow && y >= ry - grow && y < ry + rh + grow
                })
            };
            let (mut drawn_in, mut total_in, mut drawn_out) = (0, 0, 0);
            for y in 0..o.info.height() as i32 {
                for x in 0..o.info.width() as i32 {
                    let off = y as usize * stride + x as usize * 4;
                    let c = is_colour(&data[off..off + 4]);
                    if inside(x, y, -2) {
                        total_in += 1;
                        drawn_in += c as usize;
                    } else if !inside(x, y, 3) {
                        drawn_out += c as usize;
                    }
                }
            }
            (objs.len(), drawn_in, total_in, drawn_out)
        })
        .collect()
}

#[test]
fn upstream_objectdetectionoverlay_draws_our_detections() {
    let drawn = overlay_run("analytics");
    let objects: usize = drawn.iter().map(|d| d.0).sum();
    assert!(objects >= drawn.len(), "objects in every frame: {drawn:?}");
    for (n, drawn_in, total_in, drawn_out) in &drawn {
        assert!(*n > 0 && *total_in > 0);
        assert!(
            *drawn_in as f64 >= 0.95 * *total_in as f64,
            "the overlay fills our boxes: {drawn_in} of {total_in} pixels"
        );
        assert_eq!(*drawn_out, 0, "nothing drawn away from our boxes");
    }
    // Without the analytics meta the overlay has nothing to read: nothing drawn.
    for (n, drawn_in, _, drawn_out) in overlay_run("roi") {
        assert!(n > 0);
        assert_eq!(
            (drawn_in, drawn_out),
            (0, 0),
            "ROI metas alone draw nothing upstream"
        );
    }
}

/// Objects tracked over many frames of one camera: each tracking entry keeps the PTS of
/// the frame its track started on (the first frame with its id: trttracker min-hits=1)
/// while last seen advances with every frame it is detected on; entries of coasting or
/// ended tracks (no object-detection entry related) keep their last detection's PTS.
#[test]
fn tracking_entries_keep_first_seen_while_last_seen_advances() {
    let frames = 20;
    let det = cfg("shapes-yolo.toml");
    let mut outs = run(
        &CAMERAS[..1],
        frames,
        &format!("trtpreprocess config-file={det} ! trtinfer model={det} ! trttracker min-hits=1"),
        "meta=analytics",
        "",
    );
    assert_eq!(outs.len(), frames as usize, "every frame");
    outs.sort_by_key(|o| o.buffer.pts());
    let mut first_frame = std::collections::HashMap::new();
    let (mut longest, mut entries) = (gst::ClockTime::ZERO, 0);
    for o in &outs {
        let pts = o.buffer.pts().expect("trtscenesrc frames have a PTS");
        let objects = analytics::read(&o.buffer);
        let tracks = analytics::read_tracks(&o.buffer);
        assert_eq!(
            tracks.iter().filter(|t| t.detected).count(),
            objects.iter().filter(|g| g.track.is_some()).count(),
            "at {pts}: one tracking entry per tracked object"
        );
        for t in tracks {
            entries += 1;
            if t.detected {
                let first = *first_frame.entry(t.id).or_insert(pts);
                assert_eq!(
                    (t.first_seen, t.last_seen, t.lost),
                    (first, pts, false),
                    "track {} at {pts}",
                    t.id
                );
                longest = longest.max(pts - first);
            } else {
                assert_eq!(
                    first_frame.get(&t.id),
                    Some(&t.first_seen),
                    "track {} at {pts}: a coasting track was detected before",
                    t.id
                );
                assert!(
                    t.first_seen <= t.last_seen && t.last_seen < pts,
                    "track {} at {pts}: coasting since {}",
                    t.id,
                    t.last_seen
                );
            }
        }
    }
    println!(
        "{entries} tracking entries, {} tracks, longest {longest}",
        first_frame.len()
    );
    let span = outs.last().unwrap().buffer.pts().unwrap() - outs[0].buffer.pts().unwrap();
    assert!(
        longest * 2 >= span,
        "an object is tracked over at least half of the {frames} frames (longest {longest} of {span})"
    );
}
