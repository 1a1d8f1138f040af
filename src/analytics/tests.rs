use super::*;
use crate::geometry::BoxF;
use crate::results::FrameMask;
use std::sync::Arc;

const CONFIG: &str = r#"
min-mask-fraction = 0.5
[[camera]]
id = 0
[[camera.zone]]
name = "left"
polygon = [[0, 0], [50, 0], [50, 100], [0, 100]]
occupancy-threshold = 2
dwell-threshold-s = 1.0
[[camera.line]]
name = "mid"
from = [50, 0]
to = [50, 100]
"#;

fn det(track: i64, x0: f32, x1: f32) -> Detection {
    let mut d = Detection::new(
        Arc::from("m"),
        0,
        Arc::from("red"),
        1.0,
        BoxF::new(x0, 10.0, x1, 20.0),
    );
    d.object_id = track;
    d
}

#[test]
fn mask_fraction_decides_where_there_is_a_mask() {
    let c = Config::parse(CONFIG).unwrap();
    let zone = &c.cameras[0].zones[0];
    // Box anchor (bottom-centre x = 52) is outside, but 60 % of the mask is inside.
    let mut d = det(1, 40.0, 64.0);
    d.mask = Some(FrameMask {
        x: 40,
        y: 10,
        width: 20,
        height: 1,
        data: [vec![255; 10], vec![0; 4], vec![255; 6]].concat(),
        device: None,
    });
    assert!(geometry::in_zone(&zone.polygon, &d, Anchor::BottomCentre, 0.5));
    assert!(!geometry::in_zone(&zone.polygon, &d, Anchor::BottomCentre, 0.7));
    d.mask = None;
    assert!(!geometry::in_zone(&zone.polygon, &d, Anchor::BottomCentre, 0.5));
    assert!(geometry::in_zone(&zone.polygon, &d, Anchor::TopLeft, 0.5));
}

#[test]
fn entry_dwell_occupancy_exit_and_crossing() {
    let mut a = Analytics::new(Config::parse(CONFIG).unwrap());
    let s = 1_000_000_000u64;
    let f0 = a
        .process(0, 0, &[det(1, 10.0, 20.0), det(2, 20.0, 30.0)], true)
        .unwrap();
    assert_eq!(f0.zones.len(), 1);
    assert_eq!(f0.zones[0].count, 2);
    let kinds: Vec<_> = f0.events.iter().map(std::mem::discriminant).collect();
    assert_eq!(kinds.len(), 3, "two entries and occupancy: {:?}", f0.events);
    assert!(matches!(
        f0.events[2],
        Event::Occupancy {
            above: true,
            count: 2,
            ..
        }
    ));
    assert_eq!(
        f0.zone_states,
        [ZoneState {
            total: 2,
            alarm: true
        }]
    );
    assert_eq!(f0.line_totals, [(0, 0)]);
    let f1 = a
        .process(0, s, &[det(1, 10.0, 20.0), det(2, 20.0, 30.0)], true)
        .unwrap();
    assert_eq!(
        f1.events
            .iter()
            .filter(|e| matches!(e, Event::Dwell { .. }))
            .count(),
        2
    );
    // Track 2 moves right across the line: exit, occupancy below, forward? The line points
    // down, so its right-hand side on screen is the left: moving right is backward.
    let f2 = a
        .process(0, 2 * s, &[det(1, 10.0, 20.0), det(2, 60.0, 70.0)], true)
        .unwrap();
    assert!(f2
        .events
        .iter()
        .any(|e| matches!(e, Event::ZoneExit { dwell_s, .. } if *dwell_s == 2.0)));
    assert!(f2.events.iter().any(|e| matches!(
        e,
        Event::Occupancy {
            above: false,
            count: 1,
            ..
        }
    )));
    assert!(f2
        .events
        .iter()
        .any(|e| matches!(e, Event::LineCrossing { direction: crate::messages::Direction::Backward, object, .. } if object.track_id == 2)));
    assert_eq!(
        f2.zone_states,
        [ZoneState {
            total: 1,
            alarm: false
        }]
    );
    assert_eq!(f2.line_totals, [(0, 1)], "one backward crossing so far");
    let f3 = a
        .process(0, 3 * s, &[det(1, 10.0, 20.0), det(2, 10.0, 20.0)], true)
        .unwrap();
    assert!(f3.events.iter().any(|e| matches!(
        e,
        Event::LineCrossing {
            direction: crate::messages::Direction::Forward,
            ..
        }
    )));
}

#[test]
fn lines_need_tracks() {
    let mut a = Analytics::new(Config::parse(CONFIG).unwrap());
    let e = a.process(0, 0, &[det(-1, 10.0, 20.0)], false).unwrap_err();
    // Behind a tracker, an unconfirmed track is skipped, not an error.
    assert!(a.process(0, 0, &[det(-1, 10.0, 20.0)], true).is_ok());
    assert!(e.to_string().contains("trttracker"), "{e}");
    assert!(
        a.process(1, 0, &[det(-1, 10.0, 20.0)], true)
            .unwrap()
            .events
            .is_empty(),
        "unconfigured camera"
    );
}

#[test]
fn bad_configs_name_the_key() {
    for (text, needle) in [
        ("min-mask-fraction = 2.0", "min-mask-fraction"),
        (
            "[[camera]]\nid = 0\n[[camera.zone]]\nname = \"z\"\npolygon = [[0, 0], [1, 1]]",
            "at least 3",
        ),
        (
            "[[camera]]\nid = 0\n[[camera.line]]\nname = \"l\"\nfrom = [0, 0]\nto = [0, 0]",
            "line 'l'",
        ),
        ("[[camera]]\nid = 0\nzones = 3", "zones"),
        ("anchor = \"left\"", "anchor"),
    ] {
        let e = Config::parse(text).unwrap_err();
        assert!(e.contains(needle), "{text}: {e}");
    }
}

/// Per detection: the zones it is in (with dwell time for tracked objects) and the lines it
/// crossed on this frame; per line: this frame's crossings next to the totals.
#[test]
fn per_object_zones_dwell_and_crossings() {
    use crate::messages::Direction;
    let mut a = Analytics::new(Config::parse(CONFIG).unwrap());
    let s = 1_000_000_000u64;
    let untracked = det(-1, 12.0, 22.0);
    let f0 = a
        .process(
            0,
            0,
            &[det(1, 10.0, 20.0), det(2, 60.0, 70.0), untracked.clone()],
            true,
        )
        .unwrap();
    let zone = |d: Option<f64>| ObjectInZone {
        zone: "left".into(),
        dwell_s: d,
    };
    assert_eq!(
        f0.objects,
        [
            ObjectAnalytics {
                zones: vec![zone(Some(0.0))],
                crossings: vec![],
            },
            ObjectAnalytics::default(),
            ObjectAnalytics {
                zones: vec![zone(None)],
                crossings: vec![],
            },
        ]
    );
    assert_eq!(f0.line_counts, [(0, 0)]);
    // 1.5 s later track 2 moves left across the line (forward) into the zone, track 1 has
    // been inside 1.5 s.
    let f1 = a
        .process(0, s + s / 2, &[det(2, 10.0, 20.0), det(1, 10.0, 20.0)], true)
        .unwrap();
    assert_eq!(
        f1.objects,
        [
            ObjectAnalytics {
                zones: vec![zone(Some(0.0))],
                crossings: vec![("mid".into(), Direction::Forward)],
            },
            ObjectAnalytics {
                zones: vec![zone(Some(1.5))],
                crossings: vec![],
            },
        ]
    );
    assert_eq!(
        (f1.line_counts.clone(), f1.line_totals.clone()),
        (vec![(1, 0)], vec![(1, 0)])
    );
    // No detection: no objects, no crossings on this frame, the totals stay.
    let f2 = a.process(0, 2 * s, &[], true).unwrap();
    assert!(f2.objects.is_empty());
    assert_eq!((f2.line_counts, f2.line_totals), (vec![(0, 0)], vec![(1, 0)]));
    // A camera without rules: nothing per object.
    assert!(a.process(3, 0, &[untracked], true).unwrap().objects.is_empty());
}
