//! Event recording of trtcamsrc: files written from the camera's compressed history by the
//! `record` action signal are decoded back (duration ≈ before + after within a GOP, first
//! frame a keyframe, timestamps from 0), overlapping requests extend one file, and a camera
//! whose RTSP server goes away mid-recording still leaves a finalised, playable file —
//! never a pipeline ERROR.

mod common;

use common::serve::Serve;
use common::within;
use gst::prelude::*;
use gst_rtsp_server::prelude::*;
use gsttrtvision::recording::{RecordingEvent, RecordingState};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Frames per second and keyframe interval of the test streams (GOP of 0.5 s).
const FPS: u64 = 30;
const GOP: u64 = 15;
const GOP_S: f64 = GOP as f64 / FPS as f64;

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("trtvision-recording-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A `seconds` long H.264 MP4 camera file (GOP of `GOP` frames).
fn camera_file(dir: &Path, seconds: u64) -> PathBuf {
    let path = dir.join("camera.mp4");
    let p = common::parse(&format!(
        "videotestsrc num-buffers={} pattern=ball ! video/x-raw,width=320,height=240,framerate={FPS}/1 \
         ! x264enc key-int-max={GOP} speed-preset=ultrafast bitrate=400 ! h264parse ! mp4mux \
         ! filesink location={}",
        seconds * FPS,
        path.display()
    ));
    common::run_to_end(&p, gst::ClockTime::from_seconds(60)).expect("camera file written");
    path
}

type Events = Arc<Mutex<Vec<RecordingEvent>>>;

/// `trtcamsrc name=cam <props> ! fakesink`, its recording events and its first frame.
fn camera(uri: &str, props: &str) -> (gst::Pipeline, Events, Arc<Mutex<Option<Instant>>>) {
    let p = common::parse(&format!(
        "trtcamsrc name=cam camera-id=cam uri={uri} {props} ! fakesink name=sink sync=false async=false"
    ));
    let events: Events = Arc::default();
    let streaming: Arc<Mutex<Option<Instant>>> = Arc::default();
    let (e, st) = (events.clone(), streaming.clone());
    p.bus().unwrap().set_sync_handler(move |_, msg| {
        if let gst::MessageView::Element(m) = msg.view() {
            if let Some(s) = m.structure() {
                if let Some(ev) = RecordingEvent::from_structure(s) {
                    e.lock().unwrap().push(ev);
                } else if s.name() == "trtcamsrc-status"
                    && s.get::<String>("state").is_ok_and(|v| v == "streaming")
                {
                    st.lock().unwrap().get_or_insert_with(Instant::now);
                }
            }
        }
        gst::BusSyncReply::Pass
    });
    (p, events, streaming)
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn no_error(p: &gst::Pipeline) {
    if let Some(msg) = p.bus().unwrap().pop_filtered(&[gst::MessageType::Error]) {
        if let gst::MessageView::Error(e) = msg.view() {
            panic!("pipeline error: {} {:?}", e.error(), e.debug());
        }
    }
}

/// What a recorded file decodes to.
#[derive(Debug)]
struct Decoded {
    frames: usize,
    first_pts: gst::ClockTime,
    /// End of the last frame minus the first PTS.
    duration: f64,
    first_is_keyframe: bool,
    pts_monotonic: bool,
}

/// Decodes `path` (MP4 or Matroska) with a software decoder.
fn decode(path: &Path) -> Decoded {
    let p = common::parse(&format!(
        "filesrc location={} ! parsebin name=parse ! avdec_h264 ! appsink name=out sync=false",
        path.display()
    ));
    let first_key: Arc<Mutex<Option<bool>>> = Arc::default();
    let fk = first_key.clone();
    let parse = p.by_name("parse").unwrap();
    parse.connect_pad_added(move |_, pad| {
        let fk = fk.clone();
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(b) = info.buffer() {
                fk.lock()
                    .unwrap()
                    .get_or_insert(!b.flags().contains(gst::BufferFlags::DELTA_UNIT));
            }
            gst::PadProbeReturn::Ok
        });
    });
    let frames = common::collect(&p, "out");
    common::run_to_end(&p, gst::ClockTime::from_seconds(60))
        .unwrap_or_else(|e| panic!("{} does not decode: {e}", path.display()));
    let frames = frames.lock().unwrap();
    assert!(!frames.is_empty(), "{} has no frame", path.display());
    let pts: Vec<gst::ClockTime> = frames.iter().map(|b| b.pts().unwrap()).collect();
    let last = frames.last().unwrap();
    let end = last.pts().unwrap()
        + last
            .duration()
            .unwrap_or(gst::ClockTime::from_nseconds(1_000_000_000 / FPS));
    let first_is_keyframe = first_key.lock().unwrap().unwrap_or(false);
    Decoded {
        frames: frames.len(),
        first_pts: pts[0],
        duration: (end - pts[0]).seconds_f64(),
        first_is_keyframe,
        pts_monotonic: pts.windows(2).all(|w| w[0] < w[1]),
    }
}

fn finished(events: &Events) -> Vec<RecordingEvent> {
    events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.state != RecordingState::Started)
        .cloned()
        .collect()
}

#[test]
fn signal_records_before_and_after_the_event() {
    common::init();
    within(90, "signal recording", || {
        let dir = temp_dir("signal");
        let file = camera_file(&dir, 12);
        let out = dir.join("out");
        let (p, events, streaming) = camera(
            &format!("file://{}", file.display()),
            &format!(
                "record-buffer=4 record-dir={} record-file-prefix=ev-",
                out.display()
            ),
        );
        p.set_state(gst::State::Playing).unwrap();
        wait_for("first frame", 20, || streaming.lock().unwrap().is_some());
        std::thread::sleep(Duration::from_secs(4));
        let cam = p.by_name("cam").unwrap();
        let location = cam.emit_by_name::<String>("record", &[&2.0f64, &2.0f64]);
        assert!(!location.is_empty(), "record returned no file");
        assert!(location.starts_with(&out.display().to_string()), "{location}");
        assert!(
            Path::new(&location)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("ev-cam-"),
            "{location}"
        );
        wait_for("recording finished", 15, || !finished(&events).is_empty());
        no_error(&p);
        p.set_state(gst::State::Null).unwrap();

        let ev = events.lock().unwrap().clone();
        assert_eq!(ev[0].state, RecordingState::Started, "{ev:?}");
        assert_eq!(ev[0].trigger, "signal");
        assert_eq!(ev[0].camera_id, "cam");
        let end = &finished(&events)[0];
        assert_eq!(end.state, RecordingState::Finished, "{end:?}");
        assert_eq!(end.location, location);
        assert!(end.reason.is_none(), "{end:?}");
        assert!(end.end_time.is_some());
        let d = decode(Path::new(&location));
        assert!(d.first_is_keyframe, "{d:?}");
        assert_eq!(d.first_pts, gst::ClockTime::ZERO, "{d:?}");
        assert!(d.pts_monotonic, "{d:?}");
        // [event - 2 s, event + 2 s], started on the keyframe at or before event - 2 s.
        assert!(
            d.duration >= 4.0 - 0.1 && d.duration <= 4.0 + GOP_S + 0.1,
            "duration {} s, expected 4 s within a GOP ({d:?})",
            d.duration
        );
        let reported = end.duration_ns as f64 / 1e9;
        assert!(
            (reported - d.duration).abs() < 0.1,
            "reported {reported} s, file {d:?}"
        );
        println!("signal recording: {d:?}");
    });
}

#[test]
fn overlapping_requests_extend_one_file() {
    common::init();
    within(90, "extended recording", || {
        let dir = temp_dir("extend");
        let file = camera_file(&dir, 12);
        let (p, events, streaming) = camera(
            &format!("file://{}", file.display()),
            &format!(
                "record-buffer=3 record-dir={} record-container=mkv",
                dir.display()
            ),
        );
        p.set_state(gst::State::Playing).unwrap();
        wait_for("first frame", 20, || streaming.lock().unwrap().is_some());
        std::thread::sleep(Duration::from_secs(3));
        let cam = p.by_name("cam").unwrap();
        let first = cam.emit_by_name::<String>("record", &[&1.0f64, &2.0f64]);
        std::thread::sleep(Duration::from_secs(1));
        // Negative: the element's record-before / record-after.
        cam.set_property("record-after", 3.0f64);
        let second = cam.emit_by_name::<String>("record-by", &[&"rule:test", &-1.0f64, &-1.0f64]);
        assert_eq!(first, second, "a second request while recording extends the file");
        assert!(first.ends_with(".mkv"), "{first}");
        wait_for("recording finished", 15, || !finished(&events).is_empty());
        no_error(&p);
        p.set_state(gst::State::Null).unwrap();
        let starts = events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.state == RecordingState::Started)
            .count();
        assert_eq!(starts, 1, "{:?}", events.lock().unwrap());
        let d = decode(Path::new(&first));
        assert!(d.first_is_keyframe && d.pts_monotonic, "{d:?}");
        // 1 s before the first request, 1 s between them, 3 s after the second.
        assert!(
            d.duration >= 5.0 - 0.2 && d.duration <= 5.0 + GOP_S + 0.2,
            "duration {} s, expected 5 s within a GOP ({d:?})",
            d.duration
        );
    });
}

#[test]
fn record_without_history_fails_with_a_message() {
    common::init();
    let dir = temp_dir("off");
    let (p, events, _) = camera(
        "file:///nonexistent/camera.mp4",
        &format!("record-dir={}", dir.display()),
    );
    p.set_state(gst::State::Paused).unwrap();
    let cam = p.by_name("cam").unwrap();
    assert_eq!(cam.emit_by_name::<String>("record", &[&1.0f64, &1.0f64]), "");
    let ev = events.lock().unwrap().clone();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0].state, RecordingState::Failed);
    assert!(
        ev[0].reason.as_deref().unwrap().contains("record-buffer"),
        "{ev:?}"
    );
    no_error(&p);
    p.set_state(gst::State::Null).unwrap();
}

/// One RTSP camera served from this process on 127.0.0.1 (H.264, GOP of `GOP` frames).
struct RtspCamera {
    server: gst_rtsp_server::RTSPServer,
    source: Option<gst::glib::Source>,
    ctx: gst::glib::MainContext,
    port: u16,
}

impl RtspCamera {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let ctx = gst::glib::MainContext::new();
        let c = ctx.clone();
        std::thread::spawn(move || {
            let l = gst::glib::MainLoop::new(Some(&c), false);
            c.with_thread_default(|| l.run()).unwrap();
        });
        let server = gst_rtsp_server::RTSPServer::new();
        server.set_address("127.0.0.1");
        server.set_service(&port.to_string());
        let factory = gst_rtsp_server::RTSPMediaFactory::new();
        factory.set_launch(&format!(
            "( videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate={FPS}/1 \
             ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={GOP} bitrate=300 ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
        ));
        factory.set_shared(true);
        server.mount_points().unwrap().add_factory("/cam", factory);
        let id = server.attach(Some(&ctx)).expect("the RTSP server listens");
        let source = ctx.find_source_by_id(&id);
        Self {
            server,
            source,
            ctx,
            port,
        }
    }

    fn uri(&self) -> String {
        format!("rtsp://127.0.0.1:{}/cam", self.port)
    }

    /// The server goes away: it stops listening and drops its clients.
    fn kill(&mut self) {
        let (server, source) = (self.server.clone(), self.source.take());
        let (tx, rx) = std::sync::mpsc::channel();
        self.ctx.invoke(move || {
            if let Some(s) = source {
                s.destroy();
            }
            server.client_filter(Some(&mut |_, _| gst_rtsp_server::RTSPFilterResult::Remove));
            let _ = tx.send(());
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("server context answers");
    }
}

#[test]
fn camera_killed_mid_recording_leaves_a_playable_file() {
    common::init();
    within(120, "recording across a camera drop", || {
        let dir = temp_dir("killed");
        let mut server = RtspCamera::start();
        let (p, events, streaming) = camera(
            &server.uri(),
            &format!(
                "latency=200 stall-timeout=1500 reconnect-interval=500 record-buffer=3 record-dir={}",
                dir.display()
            ),
        );
        p.set_state(gst::State::Playing).unwrap();
        wait_for("first frame", 30, || streaming.lock().unwrap().is_some());
        std::thread::sleep(Duration::from_secs(3));
        let cam = p.by_name("cam").unwrap();
        let location = cam.emit_by_name::<String>("record", &[&2.0f64, &30.0f64]);
        assert!(!location.is_empty());
        std::thread::sleep(Duration::from_secs(2));
        server.kill();
        wait_for("recording ended by the drop", 30, || {
            !finished(&events).is_empty()
        });
        no_error(&p);
        p.set_state(gst::State::Null).unwrap();
        let end = &finished(&events)[0];
        assert_eq!(end.state, RecordingState::Finished, "{end:?}");
        assert!(
            end.reason.as_deref().is_some_and(|r| r.contains("dropped")),
            "{end:?}"
        );
        let d = decode(Path::new(&location));
        assert!(d.first_is_keyframe && d.pts_monotonic, "{d:?}");
        assert_eq!(d.first_pts, gst::ClockTime::ZERO, "{d:?}");
        // 2 s before the request and about 2 s until the server went away.
        assert!(
            d.duration >= 3.0 && d.duration < 30.0,
            "duration {} s ({d:?})",
            d.duration
        );
        println!("recording across a drop: {d:?}, reason {:?}", end.reason);
    });
}

/// A `seconds` long H.264 MP4 of the synthetic scene (shapes the test model detects).
fn scene_file(dir: &Path, seconds: u64) -> PathBuf {
    let path = dir.join("scene.mp4");
    let p = common::parse(&format!(
        "trtscenesrc camera=0 num-buffers={} ! video/x-raw,format=NV12,width=320,height=240,framerate={FPS}/1 \
         ! videoconvert ! x264enc key-int-max={GOP} speed-preset=ultrafast bitrate=600 ! h264parse ! mp4mux \
         ! filesink location={}",
        seconds * FPS,
        path.display()
    ));
    common::run_to_end(&p, gst::ClockTime::from_seconds(60)).expect("scene file written");
    path
}

/// Parses `payloads` as JSON messages, each valid against the message schema.
fn valid_messages<'a>(payloads: impl IntoIterator<Item = &'a [u8]>) -> Vec<serde_json::Value> {
    let schema: serde_json::Value = serde_json::from_str(gsttrtvision::messages::SCHEMA).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    payloads
        .into_iter()
        .map(|p| {
            let m: serde_json::Value = serde_json::from_slice(p).expect("a message is JSON");
            if let Err(e) = validator.validate(&m) {
                panic!("message does not match the schema: {e}\n{m}");
            }
            m
        })
        .collect()
}

/// The messages of a JSON lines file, each valid against the schema.
fn messages_file(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    valid_messages(text.lines().map(str::as_bytes))
}

/// (trigger, state) of recording event messages.
fn triggers_and_states(events: &[serde_json::Value]) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|e| e["event"]["type"] == "recording")
        .map(|e| {
            (
                e["event"]["trigger"].as_str().unwrap().to_owned(),
                e["event"]["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn serve_records_by_rule_and_by_rest_call_and_publishes_the_events() {
    common::init();
    within(180, "serve recordings", || {
        let dir = temp_dir("serve");
        let file = scene_file(&dir, 14);
        let config = dir.join("serve.toml");
        std::fs::write(
            &config,
            format!(
                "[[camera]]\nid = \"door\"\nuri = \"file://{}\"\n\
                 [[model]]\nconfig = \"{}\"\n\
                 [output]\nevents = \"ev\"\nevent-buffer = 4\nmessages = \"ev/events.jsonl\"\n\
                 [[recording.rules]]\nname = \"shape\"\nmin-confidence = 0.3\nbefore = 1\nafter = 2\ncooldown = 600\n",
                file.display(),
                common::cfg("shapes-yolo.toml")
            ),
        )
        .unwrap();
        let serve = Serve::start(&config);
        let deadline = Instant::now() + Duration::from_secs(60);
        while serve.camera("door")["recordings"].as_u64() != Some(1) {
            assert!(
                Instant::now() < deadline,
                "the rule's recording did not finish: {}",
                serve.camera("door")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let (status, body) = serve.call("POST", "/cameras/door/record", Some(r#"{"before":1,"after":2}"#));
        assert_eq!(status, 202, "{body}");
        let api_file = body["file"].as_str().expect("file in the answer").to_owned();
        assert_eq!(serve.camera("door")["recording"], api_file.as_str());
        assert_eq!(serve.call("POST", "/cameras/nope/record", None).0, 404);
        let deadline = Instant::now() + Duration::from_secs(30);
        while serve.camera("door")["recordings"].as_u64() != Some(2) {
            assert!(
                Instant::now() < deadline,
                "the API's recording did not finish: {}",
                serve.camera("door")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        assert!(serve.camera("door")["recording"].is_null());
        drop(serve);

        let events = messages_file(&dir.join("ev/events.jsonl"));
        let summary = triggers_and_states(&events);
        assert_eq!(summary.len(), events.len(), "only recording events: {events:?}");
        let pairs = |t: &str| {
            [
                (t.to_owned(), "started".to_owned()),
                (t.to_owned(), "finished".to_owned()),
            ]
        };
        assert_eq!(summary[..2], pairs("rule:shape"), "{summary:?}");
        assert_eq!(summary[2..], pairs("api"), "{summary:?}");
        let keys: std::collections::HashSet<_> = events.iter().map(|e| e["key"].as_str().unwrap()).collect();
        assert_eq!(keys.len(), events.len(), "each event has its own key");
        let rule_file = events[1]["event"]["location"].as_str().unwrap().to_owned();
        assert_eq!(events[3]["event"]["location"], api_file.as_str());
        for (f, expected) in [(&rule_file, 3.0), (&api_file, 3.0)] {
            let d = decode(Path::new(f));
            assert!(
                d.first_is_keyframe && d.pts_monotonic && d.first_pts == gst::ClockTime::ZERO,
                "{f}: {d:?}"
            );
            // The rule fires on the first detections, when less than `before` may be kept.
            assert!(
                d.duration >= expected - 1.1 && d.duration <= expected + GOP_S + 0.2,
                "{f}: {} s ({d:?})",
                d.duration
            );
        }
    });
}

/// A `trtvision-serve` config with camera `door` reading `file` (trtcamsrc) through the
/// shapes model, event recordings in `ev/`, and `output` added to its `[output]` section.
fn door_config(dir: &Path, file: &Path, camera: &str, output: &str) -> PathBuf {
    let config = dir.join("serve.toml");
    std::fs::write(
        &config,
        format!(
            "[[camera]]\nid = \"door\"\nuri = \"file://{}\"\n{camera}\n\
             [[model]]\nconfig = \"{}\"\n\
             [output]\nevents = \"ev\"\nevent-buffer = 4\n{output}\n",
            file.display(),
            common::cfg("shapes-yolo.toml")
        ),
    )
    .unwrap();
    config
}

/// Starts an API recording of `door` (1 s before, 120 s after) once it streams; its file.
fn record_door(serve: &Serve) -> String {
    serve.wait_camera("door", "first frames", 60, |c| {
        c["frames"].as_u64().unwrap_or(0) >= 30
    });
    let (status, body) = serve.call(
        "POST",
        "/cameras/door/record",
        Some(r#"{"before":1,"after":120}"#),
    );
    assert_eq!(status, 202, "{body}");
    body["file"].as_str().expect("file in the answer").to_owned()
}

/// SIGTERM while an event recording runs: the file is finalised (it plays, from a keyframe)
/// and its `finished` event is in `[output] messages` and on `[output] broker` (mosquitto)
/// before the process exits; the broker also got every frame's detections. Every message
/// is valid against the schema.
#[test]
fn serve_sigterm_finalises_recordings_and_the_broker_gets_detections_and_events() {
    common::init();
    within(180, "serve SIGTERM with a running recording", || {
        let dir = temp_dir("sigterm");
        let Some(broker) = common::mqtt::Mosquitto::start(&dir.join("mqtt")) else {
            return;
        };
        let received = broker.subscribe("serve");
        let file = scene_file(&dir, 40);
        let output = format!(
            "messages = \"ev/events.jsonl\"\nbroker = \"{}\"",
            broker.uri("serve")
        );
        let mut serve = Serve::start(&door_config(&dir, &file, "", &output));
        let recording = record_door(&serve);
        std::thread::sleep(Duration::from_secs(3));
        assert_eq!(serve.camera("door")["recording"], recording.as_str());
        let status = serve.signal(libc::SIGTERM);
        assert!(status.success(), "trtvision-serve exited with {status:?}");

        let events = messages_file(&dir.join("ev/events.jsonl"));
        let pairs = [
            ("api".to_owned(), "started".to_owned()),
            ("api".to_owned(), "finished".to_owned()),
        ];
        assert_eq!(triggers_and_states(&events), pairs, "{events:?}");
        let end = &events[1]["event"];
        assert_eq!(end["location"], recording.as_str());
        assert!(
            end["reason"].as_str().is_some_and(|r| r.contains("ended")),
            "{end}"
        );
        let d = decode(Path::new(&recording));
        assert!(
            d.first_is_keyframe && d.pts_monotonic && d.first_pts == gst::ClockTime::ZERO,
            "{d:?}"
        );
        // 1 s before the request and 3 s after it, cut at SIGTERM (not 120 s).
        assert!(d.duration >= 3.5 && d.duration < 30.0, "{d:?}");

        // Acknowledged before exit: on the subscriber within moments.
        let deadline = Instant::now() + Duration::from_secs(10);
        let messages = loop {
            let got = received.lock().unwrap().clone();
            let messages = valid_messages(got.iter().map(Vec::as_slice));
            if triggers_and_states(&messages).len() >= 2 || Instant::now() > deadline {
                break messages;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(triggers_and_states(&messages), pairs);
        let keys = |m: &[serde_json::Value]| -> Vec<String> {
            m.iter()
                .filter(|e| e["event"]["type"] == "recording")
                .map(|e| e["key"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(
            keys(&messages),
            keys(&events),
            "the same events in the file and on the broker"
        );
        let frames: Vec<&serde_json::Value> = messages.iter().filter(|m| m["kind"] == "frame").collect();
        let detections: usize = frames
            .iter()
            .filter_map(|m| m["detections"].as_array())
            .map(Vec::len)
            .sum();
        assert!(
            frames.len() >= 60 && detections >= frames.len(),
            "{} frame messages with {detections} detections",
            frames.len()
        );
        println!(
            "SIGTERM: {d:?}, reason {}; broker: {} frame messages, {detections} detections",
            end["reason"],
            frames.len()
        );
    });
}

/// `kill -9` of `trtvision-serve` while it writes an event recording (trtcamsrc's writer)
/// and a continuous recording (`record = true`, encoded by the service): both MP4 files are
/// fragmented, so both still play up to their last complete fragment.
#[test]
fn recordings_cut_by_kill_9_still_play() {
    common::init();
    within(180, "recordings cut by SIGKILL", || {
        let dir = temp_dir("sigkill");
        let file = scene_file(&dir, 40);
        let config = door_config(&dir, &file, "record = true", "recordings = \"rec\"");
        let mut serve = Serve::start(&config);
        let recording = record_door(&serve);
        std::thread::sleep(Duration::from_secs(5));
        let status = serve.signal(libc::SIGKILL);
        assert!(!status.success(), "{status:?}");
        drop(serve);

        let d = decode(Path::new(&recording));
        assert!(d.first_is_keyframe && d.pts_monotonic, "{d:?}");
        // 1 s before the request and 5 s (wall clock; less stream time on a loaded machine)
        // after it, less the fragment being written at the kill: more than the history the
        // file started with.
        assert!(d.frames >= 2 * FPS as usize, "event recording: {d:?}");
        let continuous: Vec<PathBuf> = std::fs::read_dir(dir.join("rec"))
            .expect("recordings directory")
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "mp4"))
            .collect();
        assert_eq!(continuous.len(), 1, "{continuous:?}");
        let c = decode(&continuous[0]);
        assert!(c.pts_monotonic, "{c:?}");
        // The camera streamed at least 6 s before the kill (at the analytics' pace, which
        // may be below the camera's 30 frames/s on a small machine): more than the first of
        // the 1 s fragments plays.
        assert!(
            c.frames >= FPS as usize && c.duration >= 1.5,
            "continuous recording: {c:?}"
        );
        println!("after kill -9: event recording {d:?}; continuous recording {c:?}");
    });
}
