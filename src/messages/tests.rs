use super::*;
use crate::geometry::BoxF;
use crate::results::FrameMask;
use std::sync::Arc;

fn detection(track: i64) -> Detection {
    let mut d = Detection::new(
        Arc::from("m"),
        2,
        Arc::from("blue"),
        0.75,
        BoxF::new(10.0, 20.0, 30.0, 60.0),
    );
    d.object_id = track;
    d
}

#[test]
fn keys_are_deterministic_and_distinct() {
    let at = FrameRef {
        camera: 3,
        frame: 17,
        pts_ns: Some(1),
        running_time_ns: Some(1),
    };
    let ev = Event::RecordingStarted {
        location: "a.mp4".into(),
    };
    let a = frame_messages(
        "p",
        MessageKind::Both,
        &at,
        (64, 48),
        &[],
        &[],
        &[ev.clone(), ev.clone()],
    );
    let b = frame_messages("p", MessageKind::Both, &at, (64, 48), &[], &[], &[ev.clone(), ev]);
    let keys: Vec<_> = a.iter().map(|m| m.header().key.clone()).collect();
    assert_eq!(keys, ["p/3/17/frame/0", "p/3/17/event/0", "p/3/17/event/1"]);
    assert_eq!(keys, b.iter().map(|m| m.header().key.clone()).collect::<Vec<_>>());
}

#[test]
fn message_kind_selects_messages() {
    let at = FrameRef {
        camera: 0,
        frame: 0,
        pts_ns: None,
        running_time_ns: None,
    };
    let ev = [Event::RecordingStarted { location: "x".into() }];
    let only = |k| frame_messages("p", k, &at, (1, 1), &[], &[], &ev);
    assert!(matches!(only(MessageKind::Frame)[..], [Message::Frame(_)]));
    assert!(matches!(only(MessageKind::Event)[..], [Message::Event(_)]));
    assert_eq!(only(MessageKind::Both).len(), 2);
}

#[test]
fn frame_message_round_trips_and_maps_track_ids() {
    let at = FrameRef {
        camera: 1,
        frame: 2,
        pts_ns: Some(66_666_666),
        running_time_ns: Some(66_666_666),
    };
    let mut tracked = detection(7);
    tracked.mask = Some(FrameMask {
        x: 10,
        y: 20,
        width: 2,
        height: 2,
        data: vec![255, 0, 0, 255],
        device: None,
    });
    let msgs = frame_messages(
        "p",
        MessageKind::Frame,
        &at,
        (64, 48),
        &[tracked, detection(-1)],
        &[],
        &[],
    );
    let e = encode(&msgs[0]);
    let v: serde_json::Value = serde_json::from_slice(&e.payload).unwrap();
    assert_eq!(v["kind"], "frame");
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["detections"][0]["track_id"], 7);
    assert!(v["detections"][1]["track_id"].is_null());
    assert_eq!(
        v["detections"][0]["bbox"],
        serde_json::json!([10.0, 20.0, 20.0, 40.0])
    );
    assert_eq!(v["detections"][0]["mask"]["area"], 2);
    assert_eq!(
        v["detections"][0]["mask"]["centroid"],
        serde_json::json!([11.0, 21.0])
    );
    let back: Message = serde_json::from_slice(&e.payload).unwrap();
    assert_eq!(back, msgs[0]);
}

#[test]
fn event_messages_are_tagged() {
    let at = FrameRef {
        camera: 0,
        frame: 5,
        pts_ns: None,
        running_time_ns: None,
    };
    let ev = Event::LineCrossing {
        line: "gate".into(),
        object: EventObject {
            track_id: 4,
            label: "red".into(),
            class_id: 0,
        },
        direction: Direction::Backward,
    };
    let msgs = frame_messages("p", MessageKind::Event, &at, (1, 1), &[], &[], &[ev]);
    let v: serde_json::Value = serde_json::from_slice(&encode(&msgs[0]).payload).unwrap();
    assert_eq!(v["kind"], "event");
    assert_eq!(v["event"]["type"], "line_crossing");
    assert_eq!(v["event"]["direction"], "backward");
    assert_eq!(v["key"], "p/0/5/event/0");
}

#[test]
fn wall_clock_is_rfc3339_utc() {
    let w = wall_clock_now();
    assert!(
        w.ends_with('Z') && w.len() == "2026-12-07T11:00:00.000Z".len(),
        "{w}"
    );
}

#[test]
fn schema_is_valid_json() {
    let v: serde_json::Value = serde_json::from_str(SCHEMA).unwrap();
    assert_eq!(v["properties"]["schema_version"]["const"], SCHEMA_VERSION);
}

#[test]
fn recording_events_follow_the_schema_and_have_their_own_keys() {
    use crate::recording::{RecordingEvent, RecordingState};
    let schema: serde_json::Value = serde_json::from_str(SCHEMA).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let mut e = RecordingEvent {
        id: 4,
        camera_id: "door".into(),
        state: RecordingState::Started,
        location: "/rec/door-20261207T140000.000Z.mp4".into(),
        trigger: "rule:person".into(),
        start_time: "2026-12-07T14:00:00.000Z".into(),
        end_time: None,
        duration_ns: 0,
        reason: None,
    };
    let started = recording_message("serve", 2, 90, &e);
    e.state = RecordingState::Finished;
    e.end_time = Some("2026-12-07T14:00:10.000Z".into());
    e.duration_ns = 10_000_000_000;
    let finished = recording_message("serve", 2, 390, &e);
    for m in [&started, &finished] {
        let v: serde_json::Value = serde_json::from_slice(&encode(m).payload).unwrap();
        assert!(validator.is_valid(&v), "{v}");
        assert_eq!(v["event"]["type"], "recording");
        let back: Message = serde_json::from_value(v).unwrap();
        assert_eq!(&back, m);
    }
    assert_eq!(started.header().key, "serve/2/90/event/8");
    assert_eq!(finished.header().key, "serve/2/390/event/9");
    let mut bad: serde_json::Value = serde_json::from_slice(&encode(&finished).payload).unwrap();
    bad["event"]["state"] = "paused".into();
    assert!(!validator.is_valid(&bad));
}
