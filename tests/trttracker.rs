//! `trttracker` end to end on the synthetic scene: 4 cameras of different sizes →
//! trtmux → trtpreprocess → trtinfer → trttracker → trtoverlay → trtdemux, the ids read
//! back from the ROI meta (`detection` field `object-id`) and checked against the scene's
//! ground truth: one id per object for as long as it stays visible, a new id when it comes
//! back after more than `max-age` frames away, ids unique per source, and the overlay
//! labels carrying ` #id`.

mod common;

use gst::prelude::*;
use gsttrtvision::geometry::BoxF;
use gsttrtvision::ops::overlay::draw::{class_color, Canvas};
use gsttrtvision::scene;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

/// (camera index, format, width, height).
const CAMERAS: [(u32, &str, u32, u32); 4] = [
    (0, "NV12", 640, 480),
    (1, "I420", 1280, 720),
    (2, "RGBA", 320, 240),
    (3, "NV12", 480, 640),
];
const FRAMES: u64 = 150;
const MAX_AGE: u32 = 30;
const MIN_HITS: u32 = 3;

/// One detection read back from the ROI meta.
#[derive(Debug, Clone)]
struct Roi {
    class_id: u32,
    object_id: i64,
    bbox: BoxF,
    /// The `trtvision-track` parameter (tracked detections only).
    track: Option<gsttrtvision::results::TrackInfo>,
}

struct Seen {
    camera: u32,
    frame: u64,
    pts: Option<gst::ClockTime>,
    rois: Vec<Roi>,
    /// Bytes of the frame that change when its overlay (boxes, then labels with ` #id`)
    /// is drawn again: with the right ids (nothing should change) and with wrong ones.
    redraw_changes: (usize, usize),
    /// Whether some label with an id lies fully inside the frame.
    id_visible: bool,
}

/// Draws boxes and labels (`label 93% #id`) the way trtoverlay does with its default
/// style (line width 2, text scale 2) over a copy of `buf`, with every id shifted by
/// `id_shift`; returns how many bytes changed.
fn redraw(
    buf: &gst::Buffer,
    info: &gst_video::VideoInfo,
    rois: &[(Roi, String, f32)],
    id_shift: i64,
) -> usize {
    let before = buf.map_readable().expect("readable").to_vec();
    let mut copy = buf.copy_deep().expect("copyable");
    {
        let copy = copy.make_mut();
        let mut frame = gst_video::VideoFrameRef::from_buffer_ref_writable(copy, info).expect("mappable");
        let mut canvas = Canvas::new(&mut frame).expect("drawable format");
        let mut text = String::new();
        for (roi, label, confidence) in rois {
            let color = class_color(roi.class_id);
            canvas.rect_outline(&roi.bbox, color, 2);
            text.clear();
            text += &format!("{label} {:.0}%", confidence * 100.0);
            if roi.object_id >= 0 {
                text += &format!(" #{}", roi.object_id + id_shift);
            }
            let h = (gsttrtvision::ops::overlay::font::GLYPH_H * 2) as f32;
            let y = if roi.bbox.y0 >= h {
                roi.bbox.y0 - h
            } else {
                roi.bbox.y0
            };
            canvas.text(
                roi.bbox.x0 as i32,
                y as i32,
                &text,
                [255, 255, 255],
                2,
                Some(color),
            );
        }
    }
    let after = copy.map_readable().expect("readable");
    before.iter().zip(after.iter()).filter(|(a, b)| a != b).count()
}

fn run(tracker_props: &str) -> (Vec<Seen>, u32) {
    common::init();
    let cfg = common::engines_dir().join("shapes-yolo.toml");
    let mut desc = format!(
        "trtmux name=m batch-size={n} ! trtpreprocess config-file={cfg} ! trtinfer model={cfg} \
         ! trttracker name=t {tracker_props} ! trtoverlay ! trtdemux name=d",
        n = CAMERAS.len(),
        cfg = cfg.display()
    );
    for (i, (cam, fmt, w, h)) in CAMERAS.iter().enumerate() {
        desc += &format!(
            " trtscenesrc camera={cam} num-buffers={FRAMES} ! video/x-raw,format={fmt},width={w},height={h},framerate=30/1 \
              ! m.sink_{i} d.src_{i} ! queue ! appsink name=out{i} sync=false"
        );
    }
    let p = common::parse(&desc);
    let tracker = p.by_name("t").expect("tracker");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let max_tracks = Arc::new(Mutex::new(0u32));
    for (i, &(camera, ..)) in CAMERAS.iter().enumerate() {
        let sink = p
            .by_name(&format!("out{i}"))
            .unwrap()
            .downcast::<gst_app::AppSink>()
            .unwrap();
        let (seen, max_tracks, tracker) = (seen.clone(), max_tracks.clone(), tracker.clone());
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let buf = sample.buffer_owned().unwrap();
                    let info = gst_video::VideoInfo::from_caps(sample.caps().unwrap()).unwrap();
                    let rois: Vec<(Roi, String, f32)> = buf
                        .iter_meta::<gst_video::VideoRegionOfInterestMeta>()
                        .map(|roi| {
                            let d = roi.param("detection").expect("detection param");
                            let f = |k: &str| d.get::<f64>(k).unwrap() as f32;
                            (
                                Roi {
                                    class_id: d.get::<u32>("class-id").unwrap(),
                                    object_id: d.get::<i64>("object-id").unwrap(),
                                    bbox: BoxF::new(f("x0"), f("y0"), f("x1"), f("y1")),
                                    track: gsttrtvision::trtdemux::roi::read_track(&roi),
                                },
                                d.get::<String>("label").unwrap(),
                                f("confidence"),
                            )
                        })
                        .collect();
                    let id_visible = rois.iter().any(|(r, label, conf)| {
                        let full = format!("{label} {:.0}% #{}", conf * 100.0, r.object_id);
                        r.object_id >= 0
                            && r.bbox.x0.max(0.0) as u32
                                + gsttrtvision::ops::overlay::font::text_width(&full, 2)
                                <= info.width()
                    });
                    let redraw_changes = (redraw(&buf, &info, &rois, 0), redraw(&buf, &info, &rois, 1));
                    let t: u32 = tracker.property("tracks");
                    let mut m = max_tracks.lock().unwrap();
                    *m = (*m).max(t);
                    seen.lock().unwrap().push(Seen {
                        camera,
                        frame: buf.offset(),
                        pts: buf.pts(),
                        rois: rois.into_iter().map(|r| r.0).collect(),
                        redraw_changes,
                        id_visible,
                    });
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
    }
    common::run_to_end(&p, gst::ClockTime::from_seconds(300)).expect("pipeline runs to EOS");
    let out = std::mem::take(&mut *seen.lock().unwrap());
    let max = *max_tracks.lock().unwrap();
    (out, max)
}

/// A stretch of consecutive frames in which one object (camera, class) is visible, with
/// the ids it got there.
struct Run {
    start: u64,
    /// Frames the object was away before this run; `None` for its first appearance.
    gap: Option<u64>,
    ids: Vec<i64>,
}

/// What [`check_ids`] found.
#[derive(Debug, Default)]
struct Stats {
    /// Visible stretches of ground-truth objects (an object leaving and coming back makes
    /// two).
    objects: usize,
    /// Ids handed out, all cameras together.
    ids: usize,
    /// Id changes within a visible stretch.
    switches: usize,
    /// Frames away of each object that came back.
    gaps: Vec<u64>,
    /// Comebacks that got a new id / kept their id (only possible within max-age).
    new_ids: usize,
    bridged: usize,
}

/// Checks the ids of every ground-truth object against the tracker's rules: matched to
/// the scene by class (one object per class and camera), one id per visible stretch from
/// the frame it is due on (at once on the source's first frame, else on the min-hits-th
/// frame of the stretch, -1 before), a new id after more than `max_age` frames away, ids
/// unique per source and numbered 1, 2, … without holes.
fn check_ids(seen: &[Seen], max_age: u32, min_hits: u32) -> Stats {
    assert_eq!(
        seen.len(),
        CAMERAS.len() * FRAMES as usize,
        "every frame comes out"
    );
    // Per (camera, class): the id on every frame, None while the object is away.
    let mut by_object: BTreeMap<(u32, u32), Vec<Option<i64>>> = BTreeMap::new();
    for s in seen {
        let &(_, _, w, h) = CAMERAS.iter().find(|c| c.0 == s.camera).unwrap();
        let truth = scene::scene_objects(s.camera, s.frame, w, h);
        assert_eq!(
            s.rois.len(),
            truth.len(),
            "camera {} frame {}: {:?}",
            s.camera,
            s.frame,
            s.rois
        );
        for class in 0..scene::CLASS_LABELS.len() as u32 {
            let ids = by_object
                .entry((s.camera, class))
                .or_insert_with(|| vec![None; FRAMES as usize]);
            if let Some(obj) = truth.iter().find(|o| o.class_id == class) {
                let roi =
                    s.rois.iter().find(|r| r.class_id == class).unwrap_or_else(|| {
                        panic!("camera {} frame {}: class {class} missed", s.camera, s.frame)
                    });
                assert!(
                    roi.bbox.iou(&obj.bbox) > 0.8,
                    "camera {} frame {}",
                    s.camera,
                    s.frame
                );
                ids[s.frame as usize] = Some(roi.object_id);
            }
        }
    }

    let mut stats = Stats::default();
    for (camera, _, _, _) in CAMERAS {
        let mut all_ids = Vec::new();
        for class in 0..scene::CLASS_LABELS.len() as u32 {
            let mut runs: Vec<Run> = Vec::new();
            let mut last_end: Option<u64> = None;
            for (f, id) in by_object[&(camera, class)].iter().enumerate() {
                let f = f as u64;
                match (id, runs.last_mut()) {
                    (Some(id), Some(r)) if last_end == Some(f) => r.ids.push(*id),
                    (Some(id), _) => runs.push(Run {
                        start: f,
                        gap: last_end.map(|e| f - e),
                        ids: vec![*id],
                    }),
                    (None, _) => continue,
                }
                last_end = Some(f + 1);
            }
            let mut prev_id = None;
            for r in &runs {
                stats.objects += 1;
                let what = format!("camera {camera} class {class} frames {}..", r.start);
                // Visible on the source's first frame: id at once. Appearing later or back
                // after a gap: either the coasting track picks it up again at once (only
                // possible within max-age) or a new track gets its id on its min-hits-th
                // frame.
                let kept =
                    r.gap.is_some_and(|g| g <= max_age as u64) && r.ids[0] >= 1 && Some(r.ids[0]) == prev_id;
                let delay = if r.start == 0 || kept {
                    0
                } else {
                    min_hits as usize - 1
                };
                let id = *r.ids.get(delay).unwrap_or(&-1);
                let unconfirmed = &r.ids[..delay.min(r.ids.len())];
                assert!(unconfirmed.iter().all(|&i| i == -1), "{what}: {:?}", r.ids);
                if r.ids.len() > delay {
                    assert!(id >= 1, "{what}: {:?}", r.ids);
                    // One id for the whole stretch: every change is a switch.
                    stats.switches += r.ids[delay..].windows(2).filter(|w| w[0] != w[1]).count();
                    if !kept {
                        all_ids.push(id);
                    }
                }
                if let Some(g) = r.gap {
                    stats.gaps.push(g);
                    if kept {
                        stats.bridged += 1;
                    } else {
                        assert!(
                            g <= max_age as u64 || Some(id) != prev_id,
                            "{what}: away {g} frames"
                        );
                        stats.new_ids += 1;
                    }
                }
                prev_id = Some(id);
            }
        }
        // Ids are unique within the source and numbered 1, 2, … without holes (the
        // detector has no false positives here, so no id is wasted).
        let unique: HashSet<i64> = all_ids.iter().copied().collect();
        assert_eq!(
            unique.len(),
            all_ids.len(),
            "camera {camera}: an id was reused: {all_ids:?}"
        );
        let mut sorted = all_ids.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            (1..=all_ids.len() as i64).collect::<Vec<_>>(),
            "camera {camera}"
        );
        stats.ids += all_ids.len();
    }
    stats
}

#[test]
fn ids_follow_scene_objects_across_four_cameras() {
    let (seen, max_tracks) = run("");
    let stats = check_ids(&seen, MAX_AGE, MIN_HITS);
    let mut overlay_sensitive = 0;
    for s in &seen {
        // The overlay drew every label with its " #id": drawing it again changes nothing,
        // drawing it with other ids would (so the check sees the ids).
        assert_eq!(
            s.redraw_changes.0, 0,
            "camera {} frame {}: overlay differs from boxes + labels with ids",
            s.camera, s.frame
        );
        if s.id_visible {
            assert!(s.redraw_changes.1 > 0, "camera {} frame {}", s.camera, s.frame);
            overlay_sensitive += 1;
        }
    }
    eprintln!(
        "defaults: {stats:?} over {} cameras x {FRAMES} frames; overlay ids checked on {overlay_sensitive} \
         frames; up to {max_tracks} confirmed tracks",
        CAMERAS.len()
    );
    assert_eq!(stats.switches, 0, "ID switches");
    // Every class that blinks is away 30–60 frames (a third of its 90–180-frame cycle).
    assert!(
        stats.gaps.iter().all(|&g| (30..=60).contains(&g)),
        "{:?}",
        stats.gaps
    );
    assert!(
        stats.new_ids >= 3,
        "the scene must make objects leave and come back"
    );
    assert!(stats.objects >= 4 * CAMERAS.len());
    assert!(overlay_sensitive > FRAMES as usize);
    assert!(
        max_tracks >= 8,
        "the tracks property reports live tracks ({max_tracks})"
    );
    check_track_params(&seen);
}

/// The `trtvision-track` ROI parameter: on every tracked detection and only there, with the
/// detection's id, last seen = this frame, and a first seen that stays the same for the id,
/// lies at or before the id's first frame, and (min-hits 3) strictly before it for tracks
/// born after the source's first frame.
fn check_track_params(seen: &[Seen]) {
    use std::collections::HashMap;
    // (camera, id) -> (first seen, PTS of the first frame carrying the id)
    let mut ids: HashMap<(u32, i64), (gst::ClockTime, gst::ClockTime)> = HashMap::new();
    let mut checked = 0;
    let mut order: Vec<&Seen> = seen.iter().collect();
    order.sort_by_key(|s| (s.camera, s.frame));
    for s in order {
        let pts = s.pts.expect("frames have a PTS");
        for r in &s.rois {
            if r.object_id < 0 {
                assert!(
                    r.track.is_none(),
                    "camera {} frame {}: untracked with a track",
                    s.camera,
                    s.frame
                );
                continue;
            }
            let t = r.track.unwrap_or_else(|| {
                panic!(
                    "camera {} frame {}: id {} without trtvision-track",
                    s.camera, s.frame, r.object_id
                )
            });
            assert_eq!(t.id, r.object_id);
            assert_eq!(
                t.last_seen,
                Some(pts),
                "camera {} frame {}: last seen is this frame",
                s.camera,
                s.frame
            );
            let first = t.first_seen.expect("first seen");
            assert!(first <= pts);
            let entry = ids.entry((s.camera, r.object_id)).or_insert((first, pts));
            assert_eq!(
                entry.0, first,
                "camera {} id {}: first seen changed",
                s.camera, r.object_id
            );
            checked += 1;
        }
    }
    let born_later = ids
        .values()
        .filter(|(_, appeared)| *appeared > gst::ClockTime::ZERO)
        .count();
    let before = ids.values().filter(|(first, appeared)| first < appeared).count();
    eprintln!("trtvision-track on {checked} detections, {} ids; {before} of {born_later} born after the first frame were first seen before their id appeared", ids.len());
    assert!(checked > 0 && born_later > 0);
    assert_eq!(
        before, born_later,
        "min-hits 3: every later track is born before its id shows"
    );
}

#[test]
fn properties_change_when_ids_come() {
    // min-hits=1: every object has an id from its first frame, comebacks included;
    // max-age=0: nothing is bridged, every comeback is a new object.
    let (seen, _) = run("min-hits=1 max-age=0 iou-threshold=0.2");
    let stats = check_ids(&seen, 0, 1);
    assert!(seen.iter().all(|s| s.rois.iter().all(|r| r.object_id >= 1)));
    assert_eq!(stats.switches, 0);
    assert_eq!(stats.bridged, 0);
    assert!(stats.new_ids >= 3);
    assert_eq!(stats.ids, stats.objects);
}

#[test]
fn properties_have_documented_defaults() {
    common::init();
    let t = gst::ElementFactory::make("trttracker").build().unwrap();
    assert_eq!(t.property::<f32>("iou-threshold"), 0.3);
    assert_eq!(t.property::<f32>("high-threshold"), 0.5);
    assert_eq!(t.property::<f32>("low-threshold"), 0.1);
    assert_eq!(t.property::<u32>("max-age"), MAX_AGE);
    assert_eq!(t.property::<u32>("min-hits"), MIN_HITS);
    assert_eq!(t.property::<u32>("tracks"), 0);
}
