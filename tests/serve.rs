//! `trtvision-serve` as users run it: a child process with synthetic `scene://` cameras and
//! the shapes-yolo model, driven through its HTTP API on 127.0.0.1.

mod common;

use common::serve::Serve;

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const FRAME_NS: u64 = 100_000_000; // 10 frames/s

/// `[[camera]]` tables of `n` scene cameras cam0.. (160x120, 10 frames/s); cam0 is recorded.
fn scene_cameras(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "[[camera]]\nid = \"cam{i}\"\nuri = \"scene://{i}?width=160&height=120&framerate=10\"\nrecord = {}\n",
                i == 0
            )
        })
        .collect()
}

fn write_config(dir: &Path) -> PathBuf {
    write_config_with(
        dir,
        4,
        "[tracker]\nenabled = true\n[output]\nrecordings = \"rec\"\njson = \"detections.jsonl\"\nmosaic = \"mosaic.mp4\"\nmosaic-width = 320\nmosaic-height = 240\nencoder = \"x264\"\n",
    )
}

/// A fresh `dir` with serve.toml: `cameras` scene cameras, the shapes-yolo model, then `rest`.
fn write_config_with(dir: &Path, cameras: usize, rest: &str) -> PathBuf {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let text = format!(
        "{}[[model]]\nconfig = \"{}\"\n{rest}",
        scene_cameras(cameras),
        common::cfg("shapes-yolo.toml")
    );
    let path = dir.join("serve.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Decodes an MP4 file to the end; returns the number of video frames.
fn decode_mp4(path: &Path) -> usize {
    common::init();
    let pipeline = common::parse(&format!(
        "filesrc location={} ! qtdemux ! h264parse ! decodebin ! videoconvert ! appsink name=sink sync=false",
        path.display()
    ));
    let frames = common::collect(&pipeline, "sink");
    if let Err(e) = common::run_to_end(&pipeline, gst::ClockTime::from_seconds(60)) {
        panic!("{} does not decode: {e}", path.display());
    }
    let n = frames.lock().unwrap().len();
    n
}

/// Per source of the JSON lines: (frame number, pts) in order.
fn frames_by_source(jsonl: &Path) -> std::collections::BTreeMap<u64, Vec<(u64, u64)>> {
    let mut out = std::collections::BTreeMap::<u64, Vec<(u64, u64)>>::new();
    for line in std::fs::read_to_string(jsonl).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        out.entry(v["source"].as_u64().unwrap())
            .or_default()
            .push((v["frame"].as_u64().unwrap(), v["pts"].as_u64().unwrap()));
    }
    out
}

#[test]
fn serve_api_runtime_cameras_metrics_and_clean_shutdown() {
    let dir = common::temp_path("serve", "run");
    let config = write_config(&dir);
    let serve = Serve::start(&config);

    serve.wait_for("GET /health 200", Duration::from_secs(60), |s| {
        s.call("GET", "/health", None).0 == 200
    });
    let cams = serve.cameras();
    assert_eq!(cams.len(), 4, "{cams:?}");
    assert_eq!(cams[0]["uri"], "scene://0?width=160&height=120&framerate=10");
    serve.wait_for("frames from every camera", Duration::from_secs(60), |s| {
        s.frames().values().all(|f| *f >= 3)
    });

    // Errors: duplicate id, bad JSON, bad URI, unknown camera, event recording of a scene camera.
    assert_eq!(
        serve
            .call("POST", "/cameras", Some(r#"{"id":"cam1","uri":"scene://9"}"#))
            .0,
        409
    );
    assert_eq!(serve.call("POST", "/cameras", Some("{oops")).0, 400);
    assert_eq!(
        serve
            .call("POST", "/cameras", Some(r#"{"id":"x","uri":"gopher://a"}"#))
            .0,
        400
    );
    assert_eq!(serve.call("DELETE", "/cameras/nope", None).0, 404);
    assert_eq!(
        serve
            .call("POST", "/cameras/cam1/record", Some(r#"{"before":1,"after":1}"#))
            .0,
        409
    );

    // Add a recorded camera, let it run, remove it.
    let (status, body) = serve.call(
        "POST",
        "/cameras",
        Some(r#"{"id":"extra","uri":"scene://7?width=160&height=120&framerate=10","record":true}"#),
    );
    assert_eq!(status, 201, "{body}");
    serve.wait_for("frames of the added camera", Duration::from_secs(60), |s| {
        s.frames().get("extra").is_some_and(|f| *f >= 5)
    });
    let before = serve.frames();
    let (status, body) = serve.call("DELETE", "/cameras/extra", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(serve.cameras().len(), 4);
    serve.wait_for("the other cameras to go on", Duration::from_secs(60), |s| {
        let now = s.frames();
        (0..4).all(|i| now[&format!("cam{i}")] >= before[&format!("cam{i}")] + 3)
    });

    // Metrics parse as Prometheus text and hold the per-camera series.
    let (status, text) = serve.call("GET", "/metrics", None);
    assert_eq!(status, 200);
    let text = text.as_str().expect("the metrics are text");
    let scrape =
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("metrics parse");
    // GPU memory series exactly where NVML can read a GPU (none on a CPU machine).
    let gpus = gsttrtvision::serve::gpu::GpuMemory::open().map_or(0, |g| g.sample().len());
    let gpu_series = |name: &str| scrape.samples.iter().filter(|s| s.metric == name).count();
    assert_eq!(gpu_series("trtvision_gpu_memory_total_bytes"), gpus, "{text}");
    assert_eq!(gpu_series("trtvision_gpu_memory_used_bytes"), gpus, "{text}");
    assert!(gpu_series("trtvision_gpu_process_memory_bytes") <= gpus, "{text}");
    let frames_cam0 = scrape
        .samples
        .iter()
        .find(|s| s.metric == "trtvision_camera_frames_total" && s.labels.get("camera") == Some("cam0"))
        .expect("frames of cam0");
    // prometheus-parse reads the OpenMetrics `_total` sample of a counter as untyped.
    let value = match frames_cam0.value {
        prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
        ref other => panic!("frames of cam0 is {other:?}"),
    };
    assert!(value >= 3.0, "{frames_cam0:?}");
    for series in [
        "trtvision_camera_latency_seconds_count",
        "trtvision_inference_seconds_count",
        "trtvision_batch_fill_ratio_count",
        "trtvision_camera_fps",
    ] {
        assert!(
            scrape.samples.iter().any(|s| s.metric == series),
            "{series} missing in\n{text}"
        );
    }
    assert!(
        !text.contains("camera=\"extra\""),
        "a removed camera's series stay:\n{text}"
    );

    // 100 add/remove cycles: resources stay flat.
    let cycle = |i: usize| {
        let id = format!("c{i}");
        let uri = format!("scene://{}?width=64&height=48&framerate=10", 10 + i % 5);
        let (status, body) = serve.call(
            "POST",
            "/cameras",
            Some(&format!(r#"{{"id":"{id}","uri":"{uri}"}}"#)),
        );
        assert_eq!(status, 201, "{body}");
        let (status, body) = serve.call("DELETE", &format!("/cameras/{id}"), None);
        assert_eq!(status, 200, "{body}");
    };
    // Pads of trtmux and trtdemux, from GET /health.
    let pads = |s: &Serve| -> (u64, u64) {
        let (status, body) = s.call("GET", "/health", None);
        assert_eq!(status, 200, "{body}");
        let n = |k: &str| {
            body["pads"][k]
                .as_u64()
                .unwrap_or_else(|| panic!("no pads.{k} in {body}"))
        };
        (n("trtmux_sink"), n("trtdemux_src"))
    };
    let started = Instant::now();
    for i in 0..20 {
        cycle(i);
    }
    std::thread::sleep(Duration::from_secs(2));
    serve.wait_for(
        "4 trtmux and 4 trtdemux pads after 20 cycles",
        Duration::from_secs(10),
        |s| pads(s) == (4, 4),
    );
    let (rss0, threads0, fds0) = serve.resources();
    for i in 20..100 {
        cycle(i);
    }
    std::thread::sleep(Duration::from_secs(2));
    let (rss1, threads1, fds1) = serve.resources();
    // The removed cameras' pads are gone from trtmux and trtdemux: one each per camera left.
    serve.wait_for("4 trtmux and 4 trtdemux pads", Duration::from_secs(10), |s| {
        pads(s) == (4, 4)
    });
    println!(
        "100 add/remove cycles in {:.1} s; after 20 -> after 100: RSS {rss0} -> {rss1} kB, threads {threads0} -> {threads1}, fds {fds0} -> {fds1}",
        started.elapsed().as_secs_f64()
    );
    assert!(threads1 <= threads0 + 6, "threads grew {threads0} -> {threads1}");
    assert!(fds1 <= fds0 + 8, "file descriptors grew {fds0} -> {fds1}");
    assert!(rss1 <= rss0 + 24 * 1024, "RSS grew {rss0} -> {rss1} kB");
    assert_eq!(serve.cameras().len(), 4);

    let status = serve.terminate();
    assert!(status.success(), "trtvision-serve exited with {status}");

    // No frame of the four cameras was lost: frame numbers and timestamps are contiguous.
    let seen = frames_by_source(&dir.join("detections.jsonl"));
    for source in 0..4u64 {
        let frames = &seen[&source];
        assert!(frames.len() > 10, "source {source}: {} frames", frames.len());
        for (k, w) in frames.windows(2).enumerate() {
            assert_eq!(
                w[1].0,
                w[0].0 + 1,
                "source {source}: frame {} follows {} (entry {k})",
                w[1].0,
                w[0].0
            );
            let step = w[1].1 - w[0].1;
            assert!(
                step.abs_diff(FRAME_NS) < 2_000_000,
                "source {source}: timestamp step {step} ns after frame {}",
                w[0].0
            );
        }
        assert_eq!(frames[0].0, 0);
    }
    // The mosaic and both recordings (cam0 until the end, extra until its removal) play.
    assert!(decode_mp4(&dir.join("mosaic.mp4")) > 10);
    let recordings: Vec<_> = std::fs::read_dir(dir.join("rec"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    for prefix in ["cam0-", "extra-"] {
        let file = recordings
            .iter()
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} recording in {recordings:?}"));
        assert!(decode_mp4(file) >= 5, "{}", file.display());
    }
}

#[test]
fn bad_config_is_refused_with_a_sentence() {
    let dir = common::temp_path("serve", "bad");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        "[[camera]]\nid = \"a\"\nuri = \"scene://0\"\n[[camera]]\nid = \"a\"\nuri = \"scene://1\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_trtvision-serve"))
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("camera id \"a\" appears twice"), "{err}");
}

/// Network cameras go through trtcamsrc: credentials never show, a camera that does not
/// answer does not disturb the others and can be removed.
#[test]
fn trtcamsrc_camera_hides_credentials_and_leaves_the_others_alone() {
    common::init();
    if gst::ElementFactory::find("trtcamsrc").is_none() {
        println!("SKIPPED: the trtcamsrc element is not part of this build");
        return;
    }
    let dir = common::temp_path("serve", "camsrc");
    let config = write_config(&dir);
    let serve = Serve::start(&config);
    serve.wait_for("frames from every camera", Duration::from_secs(60), |s| {
        s.frames().values().all(|f| *f >= 2)
    });
    // Nothing listens on port 9 of 127.0.0.1.
    let (status, body) = serve.call(
        "POST",
        "/cameras",
        Some(r#"{"id":"net","uri":"rtsp://admin:secret@127.0.0.1:9/stream"}"#),
    );
    assert_eq!(status, 201, "{body}");
    let before = serve.frames();
    std::thread::sleep(Duration::from_secs(3));
    let cams = serve.cameras();
    let net = cams.iter().find(|c| c["id"] == "net").expect("net camera listed");
    assert_eq!(net["uri"], "rtsp://127.0.0.1:9/stream");
    assert!(!serve
        .call("GET", "/metrics", None)
        .1
        .to_string()
        .contains("secret"));
    let now = serve.frames();
    assert!(
        (0..4).all(|i| now[&format!("cam{i}")] > before[&format!("cam{i}")]),
        "{before:?} -> {now:?}"
    );
    assert_eq!(serve.call("DELETE", "/cameras/net", None).0, 200);
    assert!(serve.terminate().success());
}

/// An output that fails while the pipeline runs (the JSON export on a full disk) ends the
/// service with exit code 1 and a sentence naming the failure; every element, the camera
/// branches included (one of them recording), reaches NULL before it is dropped: no GLib
/// CRITICAL on stderr. Three runs, since branches may end while the pipeline goes down.
#[test]
fn error_exit_names_the_failure_without_criticals() {
    let dir = common::temp_path("serve", "error-exit");
    let config = write_config_with(
        &dir,
        2,
        "[output]\nrecordings = \"rec\"\njson = \"/dev/full\"\nencoder = \"x264\"\n",
    );
    for run in 0..3 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_trtvision-serve"))
            .arg(&config)
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("trtvision-serve starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut text);
            text
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("run {run}: trtvision-serve did not exit within 60 s of its output failing");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let err = reader.join().unwrap();
        assert_eq!(status.code(), Some(1), "run {run}: {err}");
        assert!(
            err.contains("ERROR from /GstPipeline:trtvision-serve/GstTrtJsonExport:trtjsonexport0: Could not write the JSON export: No space left on device"),
            "run {run}: {err}"
        );
        assert!(!err.contains("CRITICAL"), "run {run}: {err}");
    }
}
