use super::*;
use crate::analytics::{Analytics, Config};
use crate::geometry::BoxF;
use crate::results::Detection;
use std::sync::Arc;

const CONFIG: &str = r#"
[[camera]]
id = 2
[[camera.zone]]
name = "left"
polygon = [[0, 0], [50, 0], [50, 100], [0, 100]]
occupancy-threshold = 2
[[camera.zone]]
name = "everywhere"
polygon = [[0, 0], [200, 0], [200, 100], [0, 100]]
classes = ["blue"]
[[camera.line]]
name = "mid"
from = [50, 0]
to = [50, 100]
"#;

fn det(track: i64, label: &str, class_id: u32, x0: f32) -> Detection {
    let mut d = Detection::new(
        Arc::from("m"),
        class_id,
        Arc::from(label),
        1.0,
        BoxF::new(x0, 10.0, x0 + 10.0, 20.0),
    );
    d.object_id = track;
    d
}

/// Two frames: a red and a blue object in "left", then the blue one crosses "mid".
fn frames() -> (FrameAnalytics, FrameAnalytics) {
    let mut a = Analytics::new(Config::parse(CONFIG).unwrap());
    let f0 = a
        .process(2, 0, &[det(1, "red", 0, 10.0), det(2, "blue", 1, 20.0)], true)
        .unwrap();
    let f1 = a
        .process(
            2,
            500_000_000,
            &[det(1, "red", 0, 10.0), det(2, "blue", 1, 80.0)],
            true,
        )
        .unwrap();
    (f0, f1)
}

#[test]
fn frame_summary_counts_per_zone_and_line() {
    let (f0, f1) = frames();
    let s0 = FrameSummary::of(2, &f0).unwrap();
    let class = |label: &str, class_id, count| ClassCount {
        label: label.into(),
        class_id,
        count,
    };
    assert_eq!(
        s0.zones,
        [
            ZoneSummary {
                name: "left".into(),
                total: 2,
                occupancy_threshold: Some(2),
                over_threshold: true,
                classes: vec![class("red", 0, 1), class("blue", 1, 1)],
            },
            ZoneSummary {
                name: "everywhere".into(),
                total: 1,
                occupancy_threshold: None,
                over_threshold: false,
                classes: vec![class("blue", 1, 1)],
            },
        ]
    );
    assert_eq!(s0.lines, [("mid".to_string(), LineCounts::default())]);
    let s1 = FrameSummary::of(2, &f1).unwrap();
    assert_eq!((s1.zones[0].total, s1.zones[0].over_threshold), (1, false));
    assert_eq!(
        s1.lines,
        [(
            "mid".to_string(),
            LineCounts {
                forward: 0,
                backward: 1,
                forward_total: 0,
                backward_total: 1,
            }
        )]
    );
    assert_eq!(FrameSummary::of(0, &FrameAnalytics::default()), None, "no rules");
}

#[test]
fn structures_round_trip_with_the_documented_fields() {
    gst::init().unwrap();
    let (f0, f1) = frames();
    let s = FrameSummary::of(2, &f1).unwrap();
    let st = s.to_structure();
    assert_eq!(st.name(), FRAME_STRUCTURE);
    assert_eq!(st.get::<u32>("camera").unwrap(), 2);
    let zones = st.get::<gst::Array>("zones").unwrap();
    let left = zones.as_slice()[0].get::<gst::Structure>().unwrap();
    assert_eq!(left.get::<String>("name").unwrap(), "left");
    assert_eq!(left.get::<u32>("occupancy-threshold").unwrap(), 2);
    let everywhere = zones.as_slice()[1].get::<gst::Structure>().unwrap();
    assert!(!everywhere.has_field("occupancy-threshold"));
    let lines = st.get::<gst::Array>("lines").unwrap();
    let mid = lines.as_slice()[0].get::<gst::Structure>().unwrap();
    assert_eq!(mid.get::<u64>("backward-total").unwrap(), 1);
    assert_eq!(FrameSummary::from_structure(&st), Some(s.clone()));
    // Through the string form too (what GST_DEBUG and gst_structure_to_string show).
    let parsed: gst::Structure = st.to_string().parse().unwrap();
    assert_eq!(FrameSummary::from_structure(&parsed), Some(s));

    let blue = &f1.objects[1];
    let o = blue.to_structure();
    assert_eq!(o.name(), OBJECT_PARAM);
    let field = |f: &str| -> Vec<String> {
        o.get::<gst::Array>(f)
            .unwrap()
            .iter()
            .map(|v| v.get::<String>().unwrap())
            .collect()
    };
    assert_eq!(field("zones"), ["everywhere"]);
    assert_eq!(
        (field("lines"), field("directions")),
        (vec!["mid".to_string()], vec!["backward".to_string()])
    );
    assert_eq!(ObjectAnalytics::from_structure(&o).as_ref(), Some(blue));
    let red = &f0.objects[0];
    assert_eq!(
        ObjectAnalytics::from_structure(&red.to_structure()).as_ref(),
        Some(red)
    );
    assert_eq!(
        ObjectAnalytics::from_structure(&gst::Structure::new_empty("detection")),
        None
    );
}

#[test]
fn summary_travels_as_a_custom_meta() {
    gst::init().unwrap();
    let (_, f1) = frames();
    let s = FrameSummary::of(2, &f1).unwrap();
    let mut b = gst::Buffer::new();
    assert_eq!(FrameSummary::from_buffer(&b), None);
    s.attach(b.get_mut().unwrap());
    // A copy of the buffer (what a tee or a writable map makes) keeps it.
    let copy = b.copy();
    assert_eq!(FrameSummary::from_buffer(&copy), Some(s));
}
