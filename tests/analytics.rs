//! `trtanalytics` against the synthetic scene's exact trajectories: per-frame zone counts
//! (by mask area fraction, and by box anchor point without masks), zone entries/exits and
//! directed line crossings equal what the ground truth says, computed here independently
//! (pixel counting and coordinate comparisons, not the element's polygon code). Also: a
//! line rule without track ids is an error naming trttracker, and a bad reload keeps the
//! previous configuration with a warning.

mod common;

use gst::prelude::*;
use gsttrtvision::messages::{Direction, Event};
use gsttrtvision::scene;
use std::collections::{BTreeMap, BTreeSet};

const W: u32 = 320;
const H: u32 = 240;
const CAMS: u32 = 4;
const FRAMES: u64 = 900;

fn config() -> String {
    let mut s = String::from("min-mask-fraction = 0.5\nanchor = \"bottom-centre\"\n");
    for c in 0..CAMS {
        s += &format!(
            "[[camera]]\nid = {c}\n\
             [[camera.zone]]\nname = \"left\"\npolygon = [[0, 0], [{hw}, 0], [{hw}, {H}], [0, {H}]]\n\
             [[camera.line]]\nname = \"vertical\"\nfrom = [{hw}, 0]\nto = [{hw}, {H}]\n\
             [[camera.line]]\nname = \"horizontal\"\nfrom = [0, {hh}]\nto = [{W}, {hh}]\n",
            hw = W / 2,
            hh = H / 2
        );
    }
    s
}

fn info() -> gst_video::VideoInfo {
    gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgba, W, H)
        .fps(gst::Fraction::new(30, 1))
        .build()
        .unwrap()
}

/// Ground-truth detections of a frame, tracked (id = class: one object per class and
/// camera), with or without their exact masks.
fn detections(camera: u32, frame: u64, masks: bool) -> Vec<gsttrtvision::results::Detection> {
    scene::scene_detections(camera, frame, W, H)
        .into_iter()
        .map(|mut d| {
            d.object_id = d.class_id as i64;
            if !masks {
                d.mask = None;
            }
            d
        })
        .collect()
}

/// Runs every frame of every camera through trtanalytics; per (camera, frame) its results.
fn run(masks: bool) -> BTreeMap<(u32, u64), gsttrtvision::analytics::FrameAnalytics> {
    // One file per mode: the two ground-truth tests run in parallel, and trtanalytics
    // reloads a config file whose modification time changes.
    let path = common::temp_path(
        "analytics-gt",
        if masks {
            "zones-masks.toml"
        } else {
            "zones-boxes.toml"
        },
    );
    std::fs::write(&path, config()).unwrap();
    let mut h = common::harness(
        "trtanalytics",
        &[("config-file", &path.display().to_string())],
        None,
    );
    h.set_src_caps(gsttrtvision::batch::batch_caps());
    let mut out = BTreeMap::new();
    for f in 0..FRAMES {
        let slots = (0..CAMS)
            .map(|c| {
                let mut s = common::frame_slot(c, info(), gst::Buffer::new(), None);
                s.frame_number = f;
                s.pts = Some(gst::ClockTime::from_nseconds(f * 1_000_000_000 / 30));
                s.results.detections = detections(c, f, masks);
                s
            })
            .collect();
        let b = h
            .push_and_pull(common::batch_buffer(CAMS as usize, slots))
            .expect("batch passes");
        let meta = b.meta::<gsttrtvision::batch::BatchMeta>().unwrap();
        for s in &meta.batch().slots {
            let a = s.results.analytics.as_ref().expect("analytics attached");
            out.insert((s.pad_index(), s.frame_number), (**a).clone());
        }
    }
    out
}

/// Whether a ground-truth object is in the left half: by its exact mask pixels (pixel
/// centre x + 0.5 < W / 2, at least half of them) or by its box's bottom-centre point
/// (left and top edges inside, right and bottom outside).
fn in_left(o: &scene::SceneObject, masks: bool) -> bool {
    if masks {
        let m = scene::object_mask(o, W, H);
        let (mut inside, mut area) = (0u64, 0u64);
        for (i, &v) in m.data.iter().enumerate() {
            if v >= 128 {
                area += 1;
                inside += ((m.x + (i as u32 % m.width)) < W / 2) as u64;
            }
        }
        2 * inside >= area
    } else {
        let (ax, ay) = ((o.bbox.x0 + o.bbox.x1) / 2.0, o.bbox.y1);
        ax >= 0.0 && ax < (W / 2) as f32 && ay >= 0.0 && ay < H as f32
    }
}

/// The lines (in configuration order) that the bottom-centre anchor of `o` crossed since
/// its track's last frame in `last`, which is updated.
fn crossed_lines(
    last: &mut BTreeMap<u32, (f32, f32)>,
    o: &scene::SceneObject,
) -> Vec<(&'static str, Direction)> {
    let p = ((o.bbox.x0 + o.bbox.x1) / 2.0, o.bbox.y1);
    let mut out = Vec::new();
    if let Some(q) = last.insert(o.class_id, p) {
        let (hw, hh) = ((W / 2) as f32, (H / 2) as f32);
        // Vertical line pointing down: its right-hand side is x <= W/2.
        if (q.0 > hw) != (p.0 > hw) {
            let dir = if p.0 <= hw {
                Direction::Forward
            } else {
                Direction::Backward
            };
            out.push(("vertical", dir));
        }
        // Horizontal line pointing right: its right-hand side is y >= H/2.
        if (q.1 >= hh) != (p.1 >= hh) {
            let dir = if p.1 >= hh {
                Direction::Forward
            } else {
                Direction::Backward
            };
            out.push(("horizontal", dir));
        }
    }
    out
}

fn check(masks: bool) {
    let got = run(masks);
    let (mut crossings, mut entries, mut counted) = (0, 0, 0);
    for c in 0..CAMS {
        // Last anchor of each class (track) and whether it was in the zone.
        let mut last: BTreeMap<u32, (f32, f32)> = BTreeMap::new();
        let mut inside: BTreeSet<u32> = BTreeSet::new();
        for f in 0..FRAMES {
            let objs = scene::scene_objects(c, f, W, H);
            let a = &got[&(c, f)];
            // Zone counts per class.
            let mut want: BTreeMap<u32, u32> = BTreeMap::new();
            let mut now_inside = BTreeSet::new();
            for o in &objs {
                if in_left(o, masks) {
                    *want.entry(o.class_id).or_default() += 1;
                    now_inside.insert(o.class_id);
                }
            }
            let have: BTreeMap<u32, u32> = a
                .zones
                .iter()
                .filter(|z| z.zone == "left")
                .map(|z| (z.class_id, z.count))
                .collect();
            assert_eq!(have, want, "camera {c} frame {f}: zone counts");
            counted += want.values().sum::<u32>();
            // Entries and exits.
            let want_entries: BTreeSet<u32> = now_inside.difference(&inside).copied().collect();
            let want_exits: BTreeSet<u32> = inside.difference(&now_inside).copied().collect();
            let have_entries: BTreeSet<u32> = a
                .events
                .iter()
                .filter_map(|e| match e {
                    Event::ZoneEntry { object, .. } => Some(object.class_id),
                    _ => None,
                })
                .collect();
            let have_exits: BTreeSet<u32> = a
                .events
                .iter()
                .filter_map(|e| match e {
                    Event::ZoneExit { object, .. } => Some(object.class_id),
                    _ => None,
                })
                .collect();
            assert_eq!(
                (have_entries, have_exits),
                (want_entries.clone(), want_exits),
                "camera {c} frame {f}: entries/exits"
            );
            entries += want_entries.len();
            inside = now_inside;
            // Line crossings of the bottom-centre anchor since the track's last frame.
            let mut want_x: BTreeSet<(String, u32, Direction)> = BTreeSet::new();
            for o in &objs {
                for (line, dir) in crossed_lines(&mut last, o) {
                    want_x.insert((line.into(), o.class_id, dir));
                }
            }
            let have_x: BTreeSet<(String, u32, Direction)> = a
                .events
                .iter()
                .filter_map(|e| match e {
                    Event::LineCrossing {
                        line,
                        object,
                        direction,
                    } => Some((line.clone(), object.class_id, *direction)),
                    _ => None,
                })
                .collect();
            assert_eq!(have_x, want_x, "camera {c} frame {f}: line crossings");
            crossings += want_x.len();
        }
    }
    eprintln!(
        "masks={masks}: {counted} zone memberships, {entries} entries, {crossings} line crossings checked"
    );
    assert!(
        crossings >= 8 && entries >= 8 && counted > 1000,
        "the scene exercises the rules"
    );
}

#[test]
fn zone_counts_and_line_crossings_match_ground_truth_by_mask() {
    common::init();
    check(true);
}

#[test]
fn zone_counts_and_line_crossings_match_ground_truth_by_box_point() {
    common::init();
    check(false);
}

#[test]
fn line_rule_without_tracker_is_an_error_naming_trttracker() {
    common::init();
    let path = common::temp_path("analytics-notrack", "zones.toml");
    std::fs::write(&path, config()).unwrap();
    let p = common::parse(&format!(
        "appsrc name=src caps=application/x-trtvision-batch format=time ! trtanalytics config-file={} ! fakesink",
        path.display()
    ));
    let src = p.by_name("src").unwrap().downcast::<gst_app::AppSrc>().unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let mut s = common::frame_slot(0, info(), gst::Buffer::new(), None);
    s.results.detections = scene::scene_detections(0, 0, W, H);
    let _ = src.push_buffer(common::batch_buffer(1, vec![s]));
    let msg = p
        .bus()
        .unwrap()
        .timed_pop_filtered(gst::ClockTime::from_seconds(10), &[gst::MessageType::Error])
        .expect("an error");
    p.set_state(gst::State::Null).unwrap();
    let gst::MessageView::Error(e) = msg.view() else {
        unreachable!()
    };
    let text = e.error().to_string();
    assert!(text.contains("trttracker") && text.contains("vertical"), "{text}");
}

#[test]
fn bad_reload_keeps_the_previous_config_with_a_warning() {
    common::init();
    let path = common::temp_path("analytics-reload", "zones.toml");
    std::fs::write(&path, config()).unwrap();
    let bad = common::temp_path("analytics-reload", "bad.toml");
    std::fs::write(
        &bad,
        "[[camera]]\nid = 0\n[[camera.zone]]\nname = \"z\"\npolygon = [[0, 0], [1, 1]]\n",
    )
    .unwrap();
    let p = common::parse(&format!(
        "appsrc name=src caps=application/x-trtvision-batch format=time ! trtanalytics name=a config-file={} ! appsink name=out sync=false",
        path.display()
    ));
    let out = common::collect(&p, "out");
    let src = p.by_name("src").unwrap().downcast::<gst_app::AppSrc>().unwrap();
    p.set_state(gst::State::Playing).unwrap();
    p.by_name("a")
        .unwrap()
        .set_property("config-file", bad.display().to_string());
    let msg = p
        .bus()
        .unwrap()
        .timed_pop_filtered(gst::ClockTime::from_seconds(10), &[gst::MessageType::Warning])
        .expect("a warning");
    if let gst::MessageView::Warning(w) = msg.view() {
        let text = w.error().to_string();
        assert!(text.contains("bad.toml") && text.contains("at least 3"), "{text}");
    }
    // The old zones still count.
    let mut s = common::frame_slot(0, info(), gst::Buffer::new(), None);
    s.results.detections = detections(0, 0, true);
    src.push_buffer(common::batch_buffer(1, vec![s])).unwrap();
    src.end_of_stream().unwrap();
    p.bus()
        .unwrap()
        .timed_pop_filtered(gst::ClockTime::from_seconds(10), &[gst::MessageType::Eos])
        .expect("EOS");
    p.set_state(gst::State::Null).unwrap();
    let bufs = out.lock().unwrap();
    let a = bufs[0]
        .meta::<gsttrtvision::batch::BatchMeta>()
        .unwrap()
        .batch()
        .slots[0]
        .results
        .analytics
        .clone()
        .unwrap();
    let want = scene::scene_objects(0, 0, W, H)
        .iter()
        .filter(|o| in_left(o, true))
        .count() as u32;
    assert_eq!(a.zones.iter().map(|z| z.count).sum::<u32>(), want);
}

/// trtanalytics then trtoverlay on scene frames: the zone outline, its label, the line and
/// its arrow are drawn where the configuration puts them (`draw-analytics`, on by
/// default), and nothing of them with `draw-analytics=false`.
#[test]
fn trtoverlay_draws_zones_lines_and_counts() {
    use gsttrtvision::ops::overlay::analytics::{LINE_COLOR, ZONE_COLOR};
    let path = common::temp_path("analytics-draw", "zones.toml");
    std::fs::write(&path, config()).unwrap();
    let draw = |on: bool| {
        common::init();
        let mut h = gst_check::Harness::new_parse(&format!(
            "trtanalytics config-file={} ! trtoverlay draw-analytics={on}",
            path.display()
        ));
        h.set_src_caps(gsttrtvision::batch::batch_caps());
        let mut last = None;
        for f in 0..30u64 {
            let mut frame = gst::Buffer::with_size(info().size()).unwrap();
            frame.get_mut().unwrap().map_writable().unwrap().fill(0);
            let mut s = common::frame_slot(0, info(), frame, None);
            s.frame_number = f;
            s.pts = Some(gst::ClockTime::from_nseconds(f * 1_000_000_000 / 30));
            // Tracked objects for the counts; the last frame has none, so nothing covers
            // the pixels checked below.
            if f < 29 {
                s.results.detections = detections(0, f, false);
            }
            let b = h
                .push_and_pull(common::batch_buffer(1, vec![s]))
                .expect("batch passes");
            last = Some(b);
        }
        let b = last.unwrap();
        let meta = b.meta::<gsttrtvision::batch::BatchMeta>().unwrap();
        let slot = &meta.batch().slots[0];
        let m = slot.buffer.map_readable().unwrap();
        let px = |x: u32, y: u32| {
            let i = ((y * W + x) * 4) as usize;
            [m[i], m[i + 1], m[i + 2]]
        };
        // Zone "left" = [0, W/2] x [0, H]: left edge at x 0, bottom edge at y H - 1; the
        // vertical line at x = W/2 points down (forward = leftwards: the arrow at y = H/2
        // reaches x = W/2 - 24); the horizontal line at y = H/2.
        (
            px(0, 60),
            px(80, H - 1),
            px(W / 2, 30),
            px(W / 2 - 12, H / 2),
            px(W / 2 + 12, H / 2 + 30),
            px(240, H / 2),
            px(3, 3),
        )
    };
    let (left, bottom, vertical, arrow, beside, horizontal, label) = draw(true);
    assert_eq!(left, ZONE_COLOR, "zone left edge");
    assert_eq!(bottom, ZONE_COLOR, "zone bottom edge");
    assert_eq!(vertical, LINE_COLOR, "vertical line");
    assert_eq!(arrow, LINE_COLOR, "arrow towards the forward side");
    assert_eq!(beside, [0, 0, 0], "nothing on the backward side");
    assert_eq!(horizontal, LINE_COLOR, "horizontal line");
    assert!(
        label == ZONE_COLOR || label == [0, 0, 0],
        "zone label in the corner: {label:?}"
    );
    let off = draw(false);
    assert_eq!(
        off,
        ([0; 3], [0; 3], [0; 3], [0; 3], [0; 3], [0; 3], [0; 3]),
        "draw-analytics=false draws nothing of it"
    );
}

/// Frames of camera 0 that carry no detection in the trtdemux test.
fn empty_frame(camera: u32, f: u64) -> bool {
    camera == 0 && f % 10 == 5
}

/// trtanalytics then trtdemux on the synthetic scene (box points, track id = class, 2
/// cameras, every tenth frame of camera 0 without detections): each detection's ROI meta
/// carries the zones it is in (with the dwell time since its entry) and the lines it
/// crossed on that frame with their direction, and every frame, also one without detection,
/// carries the zone and line summary, all equal to the ground truth computed here from the
/// scene's trajectories.
#[test]
fn per_detection_and_per_frame_results_after_trtdemux() {
    use gsttrtvision::analytics::meta::{
        ClassCount, FrameSummary, LineCounts, ZoneSummary, FRAME_META, FRAME_STRUCTURE, OBJECT_PARAM,
    };
    use gsttrtvision::analytics::{ObjectAnalytics, ObjectInZone};
    const CAMERAS: u32 = 2;
    const N: u64 = 300;
    common::init();
    let path = common::temp_path("analytics-demux", "zones.toml");
    let config = config().replace(
        &format!("[0, {H}]]\n"),
        &format!("[0, {H}]]\noccupancy-threshold = 2\n"),
    );
    assert!(config.contains("occupancy-threshold"));
    std::fs::write(&path, config).unwrap();
    let mut desc = format!(
        "appsrc name=src caps=application/x-trtvision-batch format=time ! trtanalytics config-file={} ! trtdemux name=d",
        path.display()
    );
    for c in 0..CAMERAS {
        desc += &format!(" d.src_{c} ! queue ! appsink name=out{c} sync=false");
    }
    let p = common::parse(&desc);
    let outs: Vec<_> = (0..CAMERAS)
        .map(|c| common::collect(&p, &format!("out{c}")))
        .collect();
    let src = p.by_name("src").unwrap().downcast::<gst_app::AppSrc>().unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let pts = |f: u64| gst::ClockTime::from_nseconds(f * 1_000_000_000 / 30);
    let sources: Vec<_> = (0..CAMERAS)
        .map(|c| {
            std::sync::Arc::new(gsttrtvision::batch::SourceStream {
                pad_index: c,
                stream_id: None,
                caps: info().to_caps().unwrap(),
                segment: gst::FormattedSegment::new(),
            })
        })
        .collect();
    for f in 0..N {
        let slots = (0..CAMERAS)
            .map(|c| {
                let mut frame = gst::Buffer::new();
                frame.get_mut().unwrap().set_pts(pts(f));
                let mut s = common::frame_slot(c, info(), frame, None);
                s.source = sources[c as usize].clone();
                s.frame_number = f;
                s.pts = Some(pts(f));
                if !empty_frame(c, f) {
                    s.results.detections = detections(c, f, false);
                }
                s
            })
            .collect();
        src.push_buffer(common::batch_buffer(CAMERAS as usize, slots))
            .unwrap();
    }
    src.end_of_stream().unwrap();
    common::run_to_end(&p, gst::ClockTime::from_seconds(120)).expect("runs to the end");

    let (mut memberships, mut crossed, mut alarms, mut empty) = (0, 0, 0, 0);
    for c in 0..CAMERAS {
        let bufs = outs[c as usize].lock().unwrap();
        assert_eq!(bufs.len() as u64, N, "camera {c}: every frame comes out");
        let mut last: BTreeMap<u32, (f32, f32)> = BTreeMap::new();
        let mut entered: BTreeMap<u32, u64> = BTreeMap::new();
        let mut totals = [(0u64, 0u64); 2];
        for (f, buf) in (0..N).zip(bufs.iter()) {
            assert_eq!(buf.pts(), Some(pts(f)), "camera {c}: frames in order");
            let objs = if empty_frame(c, f) {
                empty += 1;
                Vec::new()
            } else {
                scene::scene_objects(c, f, W, H)
            };
            // Expected per object (by track id = class), and per zone class.
            let mut want_objects: BTreeMap<i64, ObjectAnalytics> = BTreeMap::new();
            let mut want_classes: BTreeMap<u32, u32> = BTreeMap::new();
            let mut frame_counts = [(0u32, 0u32); 2];
            let inside: BTreeSet<u32> = objs
                .iter()
                .filter(|o| in_left(o, false))
                .map(|o| o.class_id)
                .collect();
            entered.retain(|class, _| inside.contains(class));
            for o in &objs {
                let mut want = ObjectAnalytics::default();
                if inside.contains(&o.class_id) {
                    let since = *entered.entry(o.class_id).or_insert(f);
                    want.zones.push(ObjectInZone {
                        zone: "left".into(),
                        dwell_s: Some((pts(f) - pts(since)).nseconds() as f64 / 1e9),
                    });
                    *want_classes.entry(o.class_id).or_default() += 1;
                    memberships += 1;
                }
                for (line, dir) in crossed_lines(&mut last, o) {
                    let li = usize::from(line == "horizontal");
                    let (n, t) = (&mut frame_counts[li], &mut totals[li]);
                    if dir == Direction::Forward {
                        n.0 += 1;
                        t.0 += 1;
                    } else {
                        n.1 += 1;
                        t.1 += 1;
                    }
                    want.crossings.push((line.to_string(), dir));
                    crossed += 1;
                }
                want_objects.insert(o.class_id as i64, want);
            }
            // Per detection, on its ROI meta.
            let mut have_objects = BTreeMap::new();
            for roi in buf.iter_meta::<gst_video::VideoRegionOfInterestMeta>() {
                let id: i64 = roi.param("detection").unwrap().get("object-id").unwrap();
                assert!(
                    roi.param(OBJECT_PARAM).is_some(),
                    "camera {c} frame {f}: no {OBJECT_PARAM}"
                );
                let a = ObjectAnalytics::from_roi(&roi)
                    .unwrap_or_else(|| panic!("camera {c} frame {f}: {OBJECT_PARAM} malformed"));
                have_objects.insert(id, a);
            }
            assert_eq!(
                have_objects, want_objects,
                "camera {c} frame {f}: per-detection analytics"
            );
            // Per frame: the custom meta with the documented structure name.
            let meta = gst::meta::CustomMeta::from_buffer(buf, FRAME_META)
                .unwrap_or_else(|_| panic!("camera {c} frame {f}: no {FRAME_META}"));
            assert_eq!(meta.structure().name(), FRAME_STRUCTURE);
            let total: u32 = want_classes.values().sum();
            alarms += u32::from(total >= 2);
            let want = FrameSummary {
                camera: c,
                zones: vec![ZoneSummary {
                    name: "left".into(),
                    total,
                    occupancy_threshold: Some(2),
                    over_threshold: total >= 2,
                    classes: want_classes
                        .iter()
                        .map(|(&class_id, &count)| ClassCount {
                            label: scene::CLASS_LABELS[class_id as usize].into(),
                            class_id,
                            count,
                        })
                        .collect(),
                }],
                lines: ["vertical", "horizontal"]
                    .iter()
                    .zip(frame_counts.iter().zip(&totals))
                    .map(|(name, (n, t))| {
                        (
                            name.to_string(),
                            LineCounts {
                                forward: n.0,
                                backward: n.1,
                                forward_total: t.0,
                                backward_total: t.1,
                            },
                        )
                    })
                    .collect(),
            };
            assert_eq!(
                FrameSummary::from_buffer(buf).as_ref(),
                Some(&want),
                "camera {c} frame {f}: frame summary"
            );
        }
    }
    eprintln!("{memberships} zone memberships, {crossed} crossings, {alarms} frames over threshold, {empty} frames without detection checked");
    assert!(
        memberships > 100 && crossed >= 4 && alarms > 0 && empty == N / 10,
        "the scene exercises the rules"
    );
}
