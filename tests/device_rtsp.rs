//! RTSP cameras on the GPU machine: N cameras served by gst-rtsp-server in this process
//! (camera-like H.264 clips looped in real time, or live x264 test patterns without clips),
//! received by N trtcamsrc (NVDEC: nvh264dec into CUDA memory) → trtmux → trtdemux →
//! appsinks, while the first quarter of the cameras get a fault every few seconds (server
//! stopped 5 s and restarted, garbage instead of H.264 for 3 s). The other cameras must keep
//! the clips' frame rate and lose no frame.
//!
//! Environment: TRTVISION_RTSP_CAMERAS (default 4), TRTVISION_RTSP_SECONDS (measured window,
//! default 20), TRTVISION_RTSP_CONTENT (directory of cam<i>.mp4 from
//! scripts/make-camera-content.sh; camera i serves file i % files; default: live 640x480
//! x264 test patterns), TRTVISION_RTSP_FAULT_EVERY (seconds, default 10), OUT (where the
//! bench record goes, when set), TRTVISION_RTSP_CPU=1 (software decoding allowed: the
//! harness on a machine without a GPU). scripts/device/rtsp-cameras.sh runs it with 32 cameras.

mod common;
mod rtspcam;

use gst::prelude::*;
use gsttrtvision::skip;
use rtspcam::{Clip, Content, Format, Served};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Frames per camera, holes and when the camera was last affected by a fault.
struct Counts {
    counting: bool,
    frames: Vec<u64>,
    lost: Vec<u64>,
    last: Vec<Option<rtspcam::Out>>,
    cuda: Vec<bool>,
}

#[test]
#[ignore = "GPU: NVDEC through trtcamsrc; run on the GPU machine (scripts/device/run-tests.sh, scripts/device/rtsp-cameras.sh)"]
fn device_rtsp_cameras() {
    common::init();
    // TRTVISION_RTSP_CPU=1 runs the same harness with software decoding (a check of the
    // harness on a machine without a GPU; the CUDA-memory check is then left out).
    let software = std::env::var("TRTVISION_RTSP_CPU").is_ok_and(|v| v == "1");
    if gst::ElementFactory::find("nvh264dec").is_none() && !software {
        // run-tests.sh sets TRTV_REQUIRE_CUDA=1 on the GPU machine: there this fails.
        skip::skip(
            "TRTV_REQUIRE_CUDA",
            "no nvh264dec (GStreamer nvcodec with an NVIDIA driver) here",
        );
        return;
    }
    let n = env_u64("TRTVISION_RTSP_CAMERAS", 4) as usize;
    let window = Duration::from_secs(env_u64("TRTVISION_RTSP_SECONDS", 20));
    let fault_every = Duration::from_secs(env_u64("TRTVISION_RTSP_FAULT_EVERY", 10).max(6));
    let clips: Vec<Arc<Clip>> = match std::env::var("TRTVISION_RTSP_CONTENT") {
        Ok(dir) => {
            let mut files: Vec<_> = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{dir}: {e}"))
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    let name = p.file_name().and_then(|f| f.to_str()).unwrap_or("");
                    // Links made for more cameras than clips (cameras.sh) are not clips of their own.
                    name.starts_with("cam")
                        && name.ends_with(".mp4")
                        && !name.contains("h265")
                        && !p.is_symlink()
                })
                .collect();
            files.sort();
            assert!(!files.is_empty(), "no cam*.mp4 in {dir}");
            files
                .iter()
                .map(|f| Arc::new(Clip::load(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()))))
                .collect()
        }
        Err(_) => Vec::new(),
    };
    let content = |i: usize| match clips.get(i % clips.len().max(1)) {
        Some(c) => Content::Clip(c.clone()),
        None => Content::Pattern(Format::new(640, 480, 30)),
    };
    let fps = match content(0) {
        Content::Clip(c) => c.fps,
        Content::Pattern(f) => f.fps,
    };
    let (width, height) = match content(0) {
        Content::Clip(c) => (c.width, c.height),
        Content::Pattern(f) => (f.width, f.height),
    };
    let started = Instant::now();
    let mut served: Vec<Served> = (0..n)
        .map(|i| Served::with_content(content(i), i as u32 + 1))
        .collect();
    println!("{n} RTSP servers up in {:.1} s", started.elapsed().as_secs_f64());
    let uris: Vec<String> = served.iter().map(Served::uri).collect();
    let faulty = (n / 4).max(1).min(n - 1);
    let counts = Arc::new(Mutex::new(Counts {
        counting: false,
        frames: vec![0; n],
        lost: vec![0; n],
        last: vec![None; n],
        cuda: vec![false; n],
    }));
    let c = counts.clone();
    let period = gst::ClockTime::SECOND / fps as u64;
    let props =
        "protocols=tcp latency=500 stall-timeout=3000 reconnect-interval=200 max-reconnect-interval=1000";
    let (p, statuses) = rtspcam::pipeline(&uris, props, props, move |i, out| {
        let mut c = c.lock().unwrap();
        if c.counting {
            c.frames[i] += 1;
            if let Some(prev) = &c.last[i] {
                let missing = rtspcam::missing_between(prev, &out, period);
                c.lost[i] += missing;
            }
        }
        c.last[i] = Some(out);
    });
    // Which memory the cameras' frames arrive in (NVDEC decodes into CUDA memory).
    for i in 0..n {
        let sink = p.by_name(&format!("out{i}")).unwrap();
        let c = counts.clone();
        sink.static_pad("sink")
            .unwrap()
            .add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
                if let Some(gst::PadProbeData::Event(e)) = &info.data {
                    if let gst::EventView::Caps(caps) = e.view() {
                        let cuda = caps
                            .caps()
                            .features(0)
                            .is_some_and(|f| f.contains(gsttrtvision::batch::CUDA_MEMORY_FEATURE));
                        c.lock().unwrap().cuda[i] = cuda;
                    }
                }
                gst::PadProbeReturn::Ok
            });
    }
    p.set_state(gst::State::Playing).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while counts.lock().unwrap().last.iter().any(Option::is_none) {
        assert!(
            Instant::now() < deadline,
            "not every camera streams within 60 s: {:?}",
            statuses.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "{n} cameras streaming {:.1} s after start",
        started.elapsed().as_secs_f64()
    );
    // Let the jitter buffers settle, then count.
    std::thread::sleep(Duration::from_secs(2));
    {
        let mut c = counts.lock().unwrap();
        c.counting = true;
        c.last.iter_mut().for_each(|l| *l = None);
    }
    let t0 = Instant::now();
    let cpu0 = rtspcam::cpu_seconds();
    let mut k = 0;
    let mut faults = Vec::new();
    let mut next_fault = t0 + Duration::from_secs(2);
    while t0.elapsed() < window {
        if Instant::now() >= next_fault && t0.elapsed() + Duration::from_secs(6) < window {
            let cam = k % faulty;
            let at = t0.elapsed().as_secs_f64();
            if k % 2 == 0 {
                served[cam].stop();
                std::thread::sleep(Duration::from_secs(5));
                served[cam].restart();
                faults.push(format!("{at:.0}s cam{cam} server stopped 5 s"));
            } else {
                served[cam].faults.garble.store(true, Ordering::Relaxed);
                std::thread::sleep(Duration::from_secs(3));
                served[cam].faults.garble.store(false, Ordering::Relaxed);
                faults.push(format!("{at:.0}s cam{cam} garbage 3 s"));
            }
            k += 1;
            next_fault += fault_every;
        }
        std::thread::sleep(Duration::from_millis(100));
        rtspcam::no_error(&p);
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = rtspcam::cpu_seconds() - cpu0;
    let c = counts.lock().unwrap();
    let healthy: Vec<usize> = (faulty..n).collect();
    let rates: Vec<f64> = healthy.iter().map(|&i| c.frames[i] as f64 / wall).collect();
    let min = rates.iter().copied().fold(f64::INFINITY, f64::min);
    let mean = rates.iter().sum::<f64>() / rates.len() as f64;
    let lost: u64 = healthy.iter().map(|&i| c.lost[i]).sum();
    let cuda = c.cuda.iter().all(|&x| x);
    let reconnects = rtspcam::reconnects(&statuses, n);
    drop(c);
    p.set_state(gst::State::Null).unwrap();
    drop(served);
    let device = device_name();
    let prefix = if device.contains("H100") {
        "h100"
    } else if device.starts_with("cpu") {
        "cpu"
    } else {
        "gpu"
    };
    let record = serde_json::json!({
        "device": device,
        "date": rtspcam::date(),
        "commit": option_env!("TRTVISION_COMMIT").unwrap_or("see .device-build/COMMIT"),
        "what": "rtsp-cameras",
        "pipeline": format!("{n} x trtcamsrc uri=rtsp://127.0.0.1:PORT/cam {props} ! trtmux batched-push-timeout=40000 ! trtdemux ! {n} x (queue ! appsink sync=false)"),
        "command": format!("TRTVISION_RTSP_CAMERAS={n} TRTVISION_RTSP_SECONDS={} device_rtsp --ignored --exact device_rtsp_cameras", window.as_secs()),
        "cameras": n, "width": width, "height": height, "batch_size": n,
        "model": "none", "backend": "none",
        "content": if clips.is_empty() { "live videotestsrc 640x480 30 fps x264enc (CPU)".to_string() } else { format!("{} camera-like clips (scripts/make-camera-content.sh) looped in real time by appsrc", clips.len()) },
        "nvdec_cuda_memory": cuda,
        "duration_s": wall,
        "fps_per_camera": mean,
        "fps_per_camera_min": min,
        "fps_total": rates.iter().sum::<f64>(),
        "cpu_cores": cpu / wall,
        "healthy_cameras": healthy.len(),
        "faulted_cameras": faulty,
        "faults": faults,
        "frames_lost_healthy": lost,
        "reconnects_per_camera": reconnects,
        "cameras_realtime": if min >= fps as f64 - 0.5 { healthy.len() } else { 0 },
    });
    println!("{{\"bench\":{record}}}");
    if let Ok(dir) = std::env::var("OUT") {
        let path = std::path::Path::new(&dir).join(format!(
            "{prefix}-rtsp-cameras-{}-{n}cam.json",
            rtspcam::date().replace('-', "")
        ));
        let _ = std::fs::write(&path, serde_json::to_string_pretty(&record).unwrap() + "\n");
        println!("record: {}", path.display());
    }
    println!(
        "{} healthy cameras: {mean:.2} frames/s mean, {min:.2} min (content {fps}/s); {lost} frames lost; {} faults; reconnects {reconnects:?}",
        healthy.len(),
        faults.len()
    );
    assert!(
        cuda || software,
        "a camera's frames are not in CUDA memory (NVDEC not used)"
    );
    assert_eq!(lost, 0, "healthy cameras lost frames");
    assert!(
        min >= fps as f64 - 0.5,
        "a healthy camera fell below real time: {min:.2} frames/s"
    );
    for &i in &healthy {
        assert_eq!(reconnects[i], 0, "healthy camera {i} reconnected");
    }
}

fn device_name() -> String {
    std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name", "--format=csv,noheader"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_else(rtspcam::cpu_device)
}
