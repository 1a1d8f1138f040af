//! Tracker logic on hand-made boxes.

use super::*;

fn det(class_id: u32, confidence: f32, b: BoxF) -> Detection {
    Detection::new(Arc::from("m"), class_id, Arc::from("obj"), confidence, b)
}

fn sq(x: f32, y: f32, side: f32) -> BoxF {
    BoxF::new(x, y, x + side, y + side)
}

fn ids(dets: &[Detection]) -> Vec<i64> {
    dets.iter().map(|d| d.object_id).collect()
}

#[test]
fn crossing_objects_keep_their_ids_through_a_mutual_occlusion() {
    // A moves right, B moves left on nearly the same row and they cross at frame 25 (IoU
    // 0.6 there). Just before, B is hidden behind A (not detected) for 5 frames and
    // comes back already overlapping A.
    let mut tr = Tracker::default();
    let a = |t: u64| sq(20.0 + 6.0 * t as f32, 100.0, 40.0);
    let b = |t: u64| sq(320.0 - 6.0 * t as f32, 110.0, 40.0);
    let (mut id_a, mut id_b) = (None, None);
    let mut max_overlap = 0.0f32;
    for t in 0..60u64 {
        max_overlap = max_overlap.max(a(t).iou(&b(t)));
        let hidden = (19..24).contains(&t);
        let mut dets = vec![det(0, 0.9, a(t))];
        if !hidden {
            dets.push(det(0, 0.9, b(t)));
        }
        tr.update(0, t, &mut dets);
        let got_a = dets[0].object_id;
        assert!(got_a > 0, "frame {t}: A untracked");
        assert_eq!(*id_a.get_or_insert(got_a), got_a, "frame {t}: A switched id");
        if !hidden {
            let got_b = dets[1].object_id;
            assert_eq!(*id_b.get_or_insert(got_b), got_b, "frame {t}: B switched id");
        }
    }
    assert!(max_overlap >= 0.59, "the boxes really overlap ({max_overlap})");
    assert_ne!(id_a, id_b);
    assert_eq!(tr.source(0).unwrap().ids_assigned(), 2);
}

#[test]
fn missed_detections_are_bridged_within_max_age_and_not_beyond() {
    let cfg = TrackerConfig {
        max_age: 10,
        ..Default::default()
    };
    let mut tr = Tracker::new(cfg);
    let pos = |t: u64| sq(10.0 + 3.0 * t as f32, 50.0 + 1.0 * t as f32, 30.0);
    let mut frame = 0u64;
    let mut run = |tr: &mut Tracker, frames: u64, visible: bool| -> Vec<i64> {
        let mut out = Vec::new();
        for _ in 0..frames {
            let mut dets = if visible {
                vec![det(1, 0.8, pos(frame))]
            } else {
                vec![]
            };
            tr.update(7, frame, &mut dets);
            out.extend(ids(&dets));
            frame += 1;
        }
        out
    };
    let first = run(&mut tr, 10, true);
    assert!(first.iter().all(|&i| i == 1), "{first:?}");
    // A gap of exactly max-age frames: the prediction carries the track over.
    assert!(run(&mut tr, 10, false).is_empty());
    let after = run(&mut tr, 5, true);
    assert!(after.iter().all(|&i| i == 1), "bridged: {after:?}");
    // One frame more than max-age: the track is gone, the object gets a new id once it
    // has min-hits (3) matches again.
    run(&mut tr, 11, false);
    assert_eq!(tr.source(7).unwrap().tracks().len(), 0);
    let again = run(&mut tr, 5, true);
    assert_eq!(again, vec![-1, -1, 2, 2, 2]);
}

#[test]
fn ids_need_min_hits_except_on_the_first_frame_and_false_positives_use_no_id() {
    let mut tr = Tracker::default();
    let obj = sq(0.0, 0.0, 20.0);
    // Frame 0: present from the start, confirmed at once.
    let mut d = vec![det(0, 0.9, obj)];
    tr.update(0, 0, &mut d);
    assert_eq!(ids(&d), vec![1]);
    // Frame 1: a one-frame false positive.
    let mut d = vec![det(0, 0.9, obj), det(2, 0.7, sq(200.0, 200.0, 20.0))];
    tr.update(0, 1, &mut d);
    assert_eq!(ids(&d), vec![1, -1]);
    // Frames 2..: a new object appears; its id comes on its third frame and is 2.
    let mut seen = Vec::new();
    for t in 2..7u64 {
        let mut d = vec![det(0, 0.9, obj), det(3, 0.9, sq(100.0, 0.0, 20.0))];
        tr.update(0, t, &mut d);
        assert_eq!(d[0].object_id, 1);
        seen.push(d[1].object_id);
    }
    assert_eq!(seen, vec![-1, -1, 2, 2, 2]);
    assert_eq!(tr.confirmed_tracks(), 2);
}

#[test]
fn matching_is_class_consistent() {
    let mut tr = Tracker::default();
    let b = sq(50.0, 50.0, 40.0);
    let mut d = vec![det(0, 0.9, b)];
    tr.update(0, 0, &mut d);
    assert_eq!(d[0].object_id, 1);
    // Same place, other class: never the class-0 track.
    for t in 1..4u64 {
        let mut d = vec![det(1, 0.9, b)];
        tr.update(0, t, &mut d);
        assert_ne!(d[0].object_id, 1);
    }
    // Same class id from another model is another class too.
    let mut d = vec![det(0, 0.9, b)];
    d[0].model = Arc::from("other");
    tr.update(0, 4, &mut d);
    assert_eq!(d[0].object_id, -1);
}

#[test]
fn low_confidence_detections_continue_tracks_but_never_start_them() {
    let mut tr = Tracker::default();
    let b = |t: u64| sq(10.0 + 2.0 * t as f32, 10.0, 30.0);
    for t in 0..3u64 {
        let mut d = vec![det(0, 0.9, b(t))];
        tr.update(0, t, &mut d);
        assert_eq!(d[0].object_id, 1);
    }
    // Confidence drops under high-threshold (partial occlusion): same id; a lone
    // low-confidence detection elsewhere stays untracked; one under low-threshold too.
    for t in 3..10u64 {
        let mut d = vec![
            det(0, 0.3, b(t)),
            det(1, 0.3, sq(300.0, 300.0, 30.0)),
            det(2, 0.05, sq(200.0, 10.0, 30.0)),
        ];
        tr.update(0, t, &mut d);
        assert_eq!(ids(&d), vec![1, -1, -1], "frame {t}");
    }
    assert_eq!(tr.source(0).unwrap().tracks().len(), 1);
}

#[test]
fn sources_are_independent_and_restart_when_frame_numbers_go_back() {
    let mut tr = Tracker::default();
    for t in 0..3u64 {
        for src in [0u32, 5] {
            let mut d = vec![
                det(0, 0.9, sq(10.0, 10.0, 20.0)),
                det(1, 0.9, sq(100.0, 10.0, 20.0)),
            ];
            tr.update(src, t, &mut d);
            assert_eq!(ids(&d), vec![1, 2]);
        }
    }
    // Source 5 restarts from frame 0: fresh tracks, ids from 1 again.
    let mut d = vec![det(1, 0.9, sq(100.0, 10.0, 20.0))];
    tr.update(5, 0, &mut d);
    assert_eq!(ids(&d), vec![1]);
    tr.remove_source(0);
    assert!(tr.source(0).is_none());
    assert_eq!(tr.confirmed_tracks(), 1);
}

#[test]
fn invalid_boxes_are_ignored() {
    let mut tr = Tracker::default();
    let mut d = vec![
        det(0, 0.9, BoxF::new(f32::NAN, 0.0, 10.0, 10.0)),
        det(0, 0.9, BoxF::new(5.0, 5.0, 5.0, 9.0)),
        det(0, f32::NAN, sq(0.0, 0.0, 10.0)),
        det(0, 0.9, sq(30.0, 30.0, 10.0)),
    ];
    tr.update(0, 0, &mut d);
    assert_eq!(ids(&d), vec![-1, -1, -1, 1]);
}

#[test]
fn steady_state_reuses_its_buffers() {
    let mut tr = Tracker::default();
    let boxes = |t: u64| -> Vec<Detection> {
        (0..6)
            .map(|k| det(k % 3, 0.9, sq(20.0 + 60.0 * k as f32 + t as f32, 40.0, 30.0)))
            .collect()
    };
    let mut dets = boxes(0);
    for t in 0..2u64 {
        let b = boxes(t);
        for (d, n) in dets.iter_mut().zip(b) {
            d.bbox = n.bbox;
        }
        tr.update(0, t, &mut dets);
    }
    let caps = |tr: &Tracker| {
        let s = &tr.scratch;
        (
            tr.sources[&0].tracks.capacity(),
            s.rows.capacity(),
            s.high.capacity(),
            s.det_matched.capacity(),
        )
    };
    let before = caps(&tr);
    for t in 2..50u64 {
        let b = boxes(t);
        for (d, n) in dets.iter_mut().zip(b) {
            d.bbox = n.bbox;
        }
        tr.update(0, t, &mut dets);
        assert_eq!(ids(&dets), vec![1, 2, 3, 4, 5, 6]);
    }
    assert_eq!(caps(&tr), before);
}

#[test]
fn track_infos_keep_the_first_seen_time_and_mark_the_end_of_a_track() {
    // An object appears on frame 2 (PTS 40 ms per frame), is confirmed on its third
    // frame (min-hits 3), disappears after frame 9 and is dropped after max-age frames.
    let cfg = TrackerConfig {
        max_age: 3,
        min_hits: 3,
        ..Default::default()
    };
    let mut tr = Tracker::new(cfg);
    let pts = |t: u64| Some(gst::ClockTime::from_mseconds(40 * t));
    let mut infos = Vec::new();
    let mut seen = Vec::new();
    for t in 0..16u64 {
        let mut dets = Vec::new();
        if (2..10).contains(&t) {
            dets.push(det(0, 0.9, sq(10.0 + 2.0 * t as f32, 50.0, 30.0)));
        }
        tr.update_frame(3, t, pts(t), &mut dets, &mut infos);
        seen.push((t, dets.first().map(|d| d.object_id), infos.clone()));
    }
    for (t, id, infos) in &seen {
        let t = *t;
        match t {
            // Before the object, and tentative (frames 2, 3): no confirmed track.
            0..=3 => assert!(infos.is_empty(), "frame {t}: {infos:?}"),
            // Matched: first seen stays frame 2's PTS, last seen is this frame's.
            4..=9 => {
                assert_eq!(*id, Some(1), "frame {t}");
                assert_eq!(
                    infos.as_slice(),
                    &[TrackInfo {
                        id: 1,
                        first_seen: pts(2),
                        last_seen: pts(t),
                        lost: false
                    }],
                    "frame {t}"
                );
            }
            // Coasting for max-age frames: last seen stays frame 9's.
            10..=12 => assert_eq!(
                infos.as_slice(),
                &[TrackInfo {
                    id: 1,
                    first_seen: pts(2),
                    last_seen: pts(9),
                    lost: false
                }],
                "frame {t}"
            ),
            // One frame more: the track ends, listed once as lost.
            13 => assert_eq!(
                infos.as_slice(),
                &[TrackInfo {
                    id: 1,
                    first_seen: pts(2),
                    last_seen: pts(9),
                    lost: true
                }],
                "frame {t}"
            ),
            _ => assert!(infos.is_empty(), "frame {t}: {infos:?}"),
        }
    }
}
