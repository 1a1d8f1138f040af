//! Soak of 8 live RTSP cameras (gst-rtsp-server on 127.0.0.1, 320x240 at 15 frames/s)
//! through trtcamsrc → trtmux → trtdemux with a fault every 30 s, rotating over the cameras
//! and over three kinds: the camera's server stopped for 5 s and restarted, garbage instead
//! of H.264 for 3 s, the server stopped for 1 s and back at another resolution. Samples RSS,
//! threads and file descriptors every 10 s and writes a bench record (`what: rtsp-soak`):
//! RSS slope, FD/thread deltas, frames lost on the cameras not under a fault, recovery times.
//!
//! The cameras' servers run in a child process (this test binary again, with
//! `TRTVISION_SOAK_SERVERS` set), driven through its stdin: the process measured holds only
//! the pipeline, as a deployment's would. The servers' own resources are sampled as well.
//!
//! `TRTVISION_SOAK_S` sets the duration (default 1800 s); runs of 600 s or more write
//! bench/results/cpu-rtsp-soak-<date>.json, shorter ones a file in the temp directory.
//! `scripts/rtsp-soak.sh [SECONDS]` runs it.
// The bench record is one `serde_json::json!` literal.
#![recursion_limit = "256"]

mod common;
mod rtspcam;

use gst::prelude::*;
use rtspcam::{Content, Format, Out, Served};
use std::io::{BufRead, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CAMERAS: usize = 8;
const FPS: u32 = 15;
const FORMATS: [Format; 2] = [Format::new(320, 240, FPS), Format::new(160, 120, FPS)];
const FAULT_EVERY: Duration = Duration::from_secs(30);
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// A camera counts as affected by its fault from the fault's start until this long after
/// its end (reconnect, first keyframe).
const RECOVERY: Duration = Duration::from_secs(15);
/// Samples taken before this are not part of the drift figures (start-up allocations).
const WARM_UP: Duration = Duration::from_secs(60);
/// Runs at least this long write their record to bench/results.
const RECORDED: Duration = Duration::from_secs(600);

#[derive(Clone, Copy, Debug)]
enum Fault {
    Restart,
    Garbage,
    Resize,
}

impl Fault {
    fn of(k: usize) -> Self {
        [Self::Restart, Self::Garbage, Self::Resize][k % 3]
    }

    fn length(self) -> Duration {
        match self {
            Self::Restart => Duration::from_secs(5),
            Self::Garbage => Duration::from_secs(3),
            Self::Resize => Duration::from_secs(1),
        }
    }
}

/// GStreamer's leaks tracer (`GST_TRACERS=leaks`), when active: the net count of objects
/// (GstObjects and mini objects) created and not yet freed, per type, between checkpoints.
struct LiveObjects {
    tracer: gst::Tracer,
    net: std::collections::BTreeMap<String, i64>,
}

impl LiveObjects {
    /// Starts tracking, if the leaks tracer is active.
    fn start() -> Option<Self> {
        let tracer = gst::active_tracers()
            .into_iter()
            .find(|t| t.type_().name() == "GstLeaksTracer")?;
        tracer.emit_by_name::<()>("activity-start-tracking", &[]);
        Some(Self {
            tracer,
            net: Default::default(),
        })
    }

    /// Adds what was created and freed since the last checkpoint; the net count of all types.
    fn checkpoint(&mut self) -> i64 {
        let cp = self
            .tracer
            .emit_by_name::<gst::Structure>("activity-get-checkpoint", &[]);
        for (field, sign) in [("objects-created-list", 1), ("objects-removed-list", -1)] {
            let Ok(list) = cp.get::<gst::List>(field) else {
                continue;
            };
            for item in list.iter() {
                if let Ok(name) = item.get::<gst::Structure>().map(|s| s.get::<String>("type-name")) {
                    *self.net.entry(name.unwrap_or_default()).or_default() += sign;
                }
            }
        }
        self.net.values().sum()
    }

    /// Types whose net count is not zero, most first.
    fn growing(&self) -> Vec<(String, i64)> {
        let mut v: Vec<(String, i64)> = self
            .net
            .iter()
            .filter(|(_, n)| **n != 0)
            .map(|(t, n)| (t.clone(), *n))
            .collect();
        v.sort_by_key(|(_, n)| -n.abs());
        v
    }
}

/// Set in the servers' process.
const SERVERS_ENV: &str = "TRTVISION_SOAK_SERVERS";
/// Prefix of the servers' process's answers on its stdout (libtest prints there too).
const ANSWER: &str = "soak-servers:";

/// The servers' process: serves the cameras and applies the commands read from stdin, one a
/// line (`stop N`, `restart N`, `resize N`, `garble N on|off`), answering each with
/// `soak-servers: done`; ends when stdin closes.
fn serve_cameras() {
    common::init();
    let mut formats = [FORMATS[0]; CAMERAS];
    let mut served: Vec<Served> = (0..CAMERAS)
        .map(|i| Served::new(formats[i], i as u32 + 1))
        .collect();
    for s in &served {
        println!("{ANSWER} uri {}", s.uri());
    }
    println!("{ANSWER} ready");
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        let cam: Option<usize> = words.get(1).and_then(|c| c.parse().ok()).filter(|c| *c < CAMERAS);
        let answer = match (words.first().copied(), cam, words.get(2).copied()) {
            (Some("stop"), Some(c), None) => {
                served[c].stop();
                "done"
            }
            (Some("restart"), Some(c), None) => {
                served[c].restart();
                "done"
            }
            (Some("resize"), Some(c), None) => {
                formats[c] = if formats[c].width == FORMATS[0].width {
                    FORMATS[1]
                } else {
                    FORMATS[0]
                };
                served[c].restart_with(Content::Pattern(formats[c]));
                "done"
            }
            (Some("garble"), Some(c), Some(on @ ("on" | "off"))) => {
                served[c].faults.garble.store(on == "on", Ordering::Relaxed);
                "done"
            }
            _ => "unknown command",
        };
        println!("{ANSWER} {answer}");
    }
}

/// The cameras' servers in a child process.
struct Servers {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: std::io::BufReader<ChildStdout>,
    uris: Vec<String>,
}

impl Servers {
    fn start() -> Self {
        let exe = std::env::current_exe().expect("the test binary's path");
        let mut child = Command::new(exe)
            .args([
                "rtsp_soak",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(SERVERS_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the servers' process starts");
        let stdin = child.stdin.take();
        let stdout = std::io::BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut s = Self {
            child,
            stdin,
            stdout,
            uris: Vec::new(),
        };
        loop {
            let answer = s.answer();
            if let Some(uri) = answer.strip_prefix("uri ") {
                s.uris.push(uri.to_string());
            } else {
                assert_eq!(answer, "ready", "the servers' process announces its cameras");
                break;
            }
        }
        assert_eq!(s.uris.len(), CAMERAS, "one URI per camera");
        s
    }

    /// The next answer of the servers' process.
    fn answer(&mut self) -> String {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self
                .stdout
                .read_line(&mut line)
                .expect("reading the servers' process");
            assert!(n > 0, "the servers' process ended");
            // libtest's "test rtsp_soak ... " may precede the first answer on its line.
            if let Some(at) = line.find(ANSWER) {
                return line[at + ANSWER.len()..].trim().to_string();
            }
        }
    }

    fn command(&mut self, command: &str) {
        let stdin = self.stdin.as_mut().expect("servers' stdin open");
        writeln!(stdin, "{command}").expect("writing to the servers' process");
        stdin.flush().expect("writing to the servers' process");
        assert_eq!(self.answer(), "done", "servers' process: {command}");
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Closes the servers' stdin and waits (at most 20 s) for the process to end.
    fn end(mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    assert!(status.success(), "the servers' process ended with {status}");
                    return;
                }
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!("the servers' process did not end within 20 s of its stdin closing");
                }
            }
        }
    }
}

/// Per-camera frame accounting, updated by the appsinks' streaming threads.
#[derive(Default)]
struct Track {
    counting: bool,
    last: Vec<Option<Out>>,
    frames: Vec<u64>,
    /// Until when a camera counts as under a fault (None: healthy).
    affected_until: Vec<Option<Instant>>,
    /// Set when a camera's fault ends; the first frame after it gives a recovery time.
    back_at: Vec<Option<Instant>>,
    recovery_s: Vec<f64>,
    lost_healthy: Vec<u64>,
    lost_faulted: Vec<u64>,
    /// (camera, seconds since start, frames missing) of holes on healthy cameras.
    healthy_gaps: Vec<(usize, f64, u64)>,
    start: Option<Instant>,
}

impl Track {
    fn frame(&mut self, cam: usize, out: Out) {
        if !self.counting {
            self.last[cam] = Some(out);
            return;
        }
        self.frames[cam] += 1;
        if let Some(back) = self.back_at[cam].take() {
            self.recovery_s
                .push(out.at.saturating_duration_since(back).as_secs_f64());
        }
        if let Some(prev) = &self.last[cam] {
            let missing = rtspcam::missing_between(prev, &out, gst::ClockTime::SECOND / FPS as u64);
            if missing > 0 {
                let affected = self.affected_until[cam].is_some_and(|u| out.at < u);
                if affected {
                    self.lost_faulted[cam] += missing;
                } else {
                    self.lost_healthy[cam] += missing;
                    let t = self.start.map_or(0.0, |s| out.at.duration_since(s).as_secs_f64());
                    self.healthy_gaps.push((cam, t, missing));
                }
            }
        }
        self.last[cam] = Some(out);
    }
}

/// One resource sample: seconds since the start, RSS (MiB), threads, file descriptors of the
/// pipeline's process, then the same three of the servers' process, then the pipeline's
/// process's heap in use and heap held (MiB, [`rtspcam::heap`]).
type Sample = (f64, f64, u64, u64, f64, u64, u64, f64, f64);

/// Least-squares slope of y over x.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (sx, sy) = points.iter().fold((0.0, 0.0), |a, p| (a.0 + p.0, a.1 + p.1));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = points.iter().fold((0.0, 0.0), |a, p| {
        (a.0 + (p.0 - mx) * (p.1 - my), a.1 + (p.0 - mx).powi(2))
    });
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}

#[test]
#[ignore = "soak: runs TRTVISION_SOAK_S seconds (default 1800); scripts/rtsp-soak.sh"]
fn rtsp_soak() {
    if std::env::var_os(SERVERS_ENV).is_some() {
        serve_cameras();
        return;
    }
    let duration = Duration::from_secs(
        std::env::var("TRTVISION_SOAK_S")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1800),
    );
    // The allocator as trtvision-serve sets it, unless TRTVISION_SOAK_GLIBC_DEFAULTS is set.
    let allocator = if std::env::var_os("TRTVISION_SOAK_GLIBC_DEFAULTS").is_some() {
        "glibc defaults".to_string()
    } else {
        match gsttrtvision::live::fix_mmap_threshold() {
            Some(t) => format!("glibc, mmap threshold fixed at {t} bytes (gsttrtvision::live::fix_mmap_threshold, as trtvision-serve)"),
            None => "glibc, mmap threshold not changed".to_string(),
        }
    };
    common::init();
    // The code measured is the checkout's at the start (the run takes half an hour).
    let commit = rtspcam::commit();
    let mut servers = Servers::start();
    let uris = servers.uris.clone();
    let servers_pid = servers.pid();
    let track = Arc::new(Mutex::new(Track {
        last: vec![None; CAMERAS],
        frames: vec![0; CAMERAS],
        affected_until: vec![None; CAMERAS],
        back_at: vec![None; CAMERAS],
        lost_healthy: vec![0; CAMERAS],
        lost_faulted: vec![0; CAMERAS],
        ..Default::default()
    }));
    let props = "protocols=tcp stall-timeout=3000 reconnect-interval=200 max-reconnect-interval=1000";
    let t = track.clone();
    let (p, statuses) = rtspcam::pipeline(&uris, props, props, move |i, out| t.lock().unwrap().frame(i, out));
    let bus = p.bus().unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while track.lock().unwrap().last.iter().any(Option::is_none) {
        assert!(Instant::now() < deadline, "every camera streams within 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    let start = Instant::now();
    {
        let mut t = track.lock().unwrap();
        t.counting = true;
        t.start = Some(start);
    }
    let cpu0 = rtspcam::cpu_seconds();
    let mut live = LiveObjects::start();
    // TRTVISION_SOAK_MALLOC_TRIM=1: glibc's malloc_trim(0) after every sample (is the growth
    // memory the allocator keeps free?).
    let trim = std::env::var_os("TRTVISION_SOAK_MALLOC_TRIM").is_some();
    let mut live_series: Vec<(f64, i64)> = Vec::new();
    let mut samples: Vec<Sample> = Vec::new();
    let mut sample = |samples: &mut Vec<Sample>| {
        let (rss, threads, fds) = rtspcam::resources();
        let (s_rss, s_threads, s_fds) = rtspcam::resources_of(&servers_pid);
        let (in_use, held) = rtspcam::heap();
        let t = start.elapsed().as_secs_f64();
        println!(
            "soak t={t:.0}s rss={rss:.1}MiB threads={threads} fds={fds} \
             heap: in use {in_use:.1}MiB, held {held:.1}MiB \
             servers: rss={s_rss:.1}MiB threads={s_threads} fds={s_fds}"
        );
        samples.push((t, rss, threads, fds, s_rss, s_threads, s_fds, in_use, held));
        if trim {
            // SAFETY: malloc_trim only returns free memory of the allocator to the system.
            let at = Instant::now();
            unsafe { libc::malloc_trim(0) };
            let (after, _, _) = rtspcam::resources();
            println!(
                "soak t={t:.0}s malloc_trim(0) in {:.1} ms: rss {rss:.1} -> {after:.1} MiB",
                at.elapsed().as_secs_f64() * 1000.0
            );
        }
        if let Some(l) = live.as_mut() {
            let n = l.checkpoint();
            println!("soak t={t:.0}s live objects created since the start and not freed: {n}");
            live_series.push((t, n));
        }
    };
    sample(&mut samples);
    let mut next_sample = start + SAMPLE_EVERY;
    let mut next_fault = start + FAULT_EVERY;
    let mut pending: Option<(Instant, usize, Fault)> = None;
    let mut faults_done: Vec<String> = Vec::new();
    let mut k = 0;
    let end = start + duration;
    while Instant::now() < end || pending.is_some() {
        std::thread::sleep(Duration::from_millis(50));
        if let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
            if let gst::MessageView::Error(e) = msg.view() {
                panic!(
                    "pipeline error at {:?}: {} {:?}",
                    start.elapsed(),
                    e.error(),
                    e.debug()
                );
            }
        }
        let now = Instant::now();
        if now >= next_sample {
            sample(&mut samples);
            next_sample += SAMPLE_EVERY;
        }
        if let Some((until, cam, fault)) = pending {
            if now >= until {
                servers.command(&match fault {
                    Fault::Restart => format!("restart {cam}"),
                    Fault::Garbage => format!("garble {cam} off"),
                    Fault::Resize => format!("resize {cam}"),
                });
                let mut t = track.lock().unwrap();
                let back = Instant::now();
                t.affected_until[cam] = Some(back + RECOVERY);
                t.back_at[cam] = Some(back);
                pending = None;
            }
        } else if now >= next_fault && now < end {
            let (cam, fault) = (k % CAMERAS, Fault::of(k));
            track.lock().unwrap().affected_until[cam] = Some(now + Duration::from_secs(3600));
            servers.command(&match fault {
                Fault::Restart | Fault::Resize => format!("stop {cam}"),
                Fault::Garbage => format!("garble {cam} on"),
            });
            faults_done.push(format!(
                "{:.0}s cam{cam} {fault:?}",
                now.duration_since(start).as_secs_f64()
            ));
            println!("soak fault {}", faults_done.last().unwrap());
            pending = Some((Instant::now() + fault.length(), cam, fault));
            next_fault += FAULT_EVERY;
            k += 1;
        }
    }
    // Every camera streams at the end: frames of each during the last seconds.
    let before: Vec<u64> = track.lock().unwrap().frames.clone();
    let settle = Instant::now() + RECOVERY;
    loop {
        let now_frames = track.lock().unwrap().frames.clone();
        if now_frames.iter().zip(&before).all(|(a, b)| a > b) {
            break;
        }
        assert!(
            Instant::now() < settle,
            "a camera delivers no frame at the end: {before:?} -> {now_frames:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    sample(&mut samples);
    let wall = start.elapsed().as_secs_f64();
    let cpu = rtspcam::cpu_seconds() - cpu0;
    rtspcam::no_error(&p);
    p.set_state(gst::State::Null).unwrap();
    servers.end();

    // With GST_TRACERS=leaks: objects created since the start of counting and not freed.
    let live_objects = live.as_ref().map(|l| {
        serde_json::json!({
            "tracer": "leaks (activity checkpoints at every sample)",
            "net_series": live_series.iter().map(|(t, n)| serde_json::json!([t, n])).collect::<Vec<_>>(),
            "net_by_type_at_end": l.growing().into_iter().take(30).map(|(t, n)| serde_json::json!([t, n])).collect::<Vec<_>>(),
        })
    });
    let t = track.lock().unwrap();
    let steady: Vec<&Sample> = samples.iter().filter(|s| s.0 >= WARM_UP.as_secs_f64()).collect();
    let rss_points: Vec<(f64, f64)> = steady.iter().map(|s| (s.0 / 60.0, s.1)).collect();
    let delta = |f: &dyn Fn(&Sample) -> u64| -> serde_json::Value {
        let v: Vec<u64> = steady.iter().map(|s| f(s)).collect();
        serde_json::json!({
            "first": v.first(), "last": v.last(),
            "min": v.iter().min(), "max": v.iter().max(),
            "delta": v.last().zip(v.first()).map(|(l, f)| *l as i64 - *f as i64),
        })
    };
    let mut rss: Vec<f64> = steady.iter().map(|s| s.1).collect();
    rss.sort_by(f64::total_cmp);
    let servers_rss: Vec<(f64, f64)> = steady.iter().map(|s| (s.0 / 60.0, s.4)).collect();
    let heap_in_use: Vec<(f64, f64)> = steady.iter().map(|s| (s.0 / 60.0, s.7)).collect();
    let heap_held: Vec<(f64, f64)> = steady.iter().map(|s| (s.0 / 60.0, s.8)).collect();
    // glibc's heap: what is allocated and not freed (a leak grows it) and what the allocator
    // holds from the system.
    let heap = serde_json::json!({
        "in_use_first": heap_in_use.first().map(|p| p.1),
        "in_use_last": heap_in_use.last().map(|p| p.1),
        "in_use_drift_mib_per_min": slope(&heap_in_use),
        "held_first": heap_held.first().map(|p| p.1),
        "held_last": heap_held.last().map(|p| p.1),
        "held_drift_mib_per_min": slope(&heap_held),
    });
    let frames: u64 = t.frames.iter().sum();
    let reconnects = rtspcam::reconnects(&statuses, CAMERAS);
    let mut recovery = t.recovery_s.clone();
    recovery.sort_by(f64::total_cmp);
    let pct = |v: &[f64], q: f64| v.get(((v.len() as f64 - 1.0) * q).round() as usize).copied();
    let date = rtspcam::date();
    // The environment that changes what is measured.
    let env_shown: String = [
        "MALLOC_ARENA_MAX",
        "MALLOC_MMAP_THRESHOLD_",
        "GST_TRACERS",
        "TRTVISION_SOAK_MALLOC_TRIM",
        "TRTVISION_SOAK_GLIBC_DEFAULTS",
    ]
    .iter()
    .filter_map(|k| std::env::var(k).ok().map(|v| format!("{k}='{v}' ")))
    .collect();
    let sample_rows: Vec<serde_json::Value> = samples
        .iter()
        .map(|s| serde_json::json!([s.0, s.1, s.2, s.3, s.4, s.5, s.6, s.7, s.8]))
        .collect();
    // The cameras' servers (gst-rtsp-server, x264enc), rebuilt at every server fault, run in
    // their own process: not part of the pipeline's figures.
    let servers_process = serde_json::json!({
        "rss_mib_first": servers_rss.first().map(|p| p.1),
        "rss_mib_last": servers_rss.last().map(|p| p.1),
        "drift_mib_per_min": slope(&servers_rss),
        "fds": delta(&|s| s.6),
        "threads": delta(&|s| s.5),
    });
    let record = serde_json::json!({
        "device": rtspcam::cpu_device(),
        "date": date,
        "commit": commit,
        "what": "rtsp-soak",
        "pipeline": format!("8 x trtcamsrc uri=rtsp://127.0.0.1:PORT/cam latency=300 {props} ! trtmux batched-push-timeout=40000 ! trtdemux ! 8 x (queue ! appsink sync=false)"),
        "command": format!("{}TRTVISION_SOAK_S={} cargo test --release --test rtsp_soak -- --ignored --nocapture", env_shown, duration.as_secs()),
        "cameras": CAMERAS, "width": FORMATS[0].width, "height": FORMATS[0].height, "batch_size": CAMERAS,
        "model": "none", "backend": "none",
        "content": format!("gst-rtsp-server on 127.0.0.1 in a separate process, one server per camera: videotestsrc is-live pattern=ball {FPS} fps ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={} bitrate={} ! rtph264pay (RTP over RTSP/TCP); resolution faults alternate 320x240 and 160x120", FPS / 2, 320 * 240 * FPS / 1920),
        "duration_s": wall,
        "frames": frames,
        "fps_total": frames as f64 / wall,
        "fps_per_camera": frames as f64 / wall / CAMERAS as f64,
        "latency_ms": null,
        "cpu_cores": cpu / wall,
        "rss_mib": {
            "steady": pct(&rss, 0.5), "peak": rss.last(),
            "drift_mib_per_min": slope(&rss_points),
            // Whether the growth levels off: the slope over the second half of the run.
            "drift_mib_per_min_second_half": slope(&rss_points[rss_points.len() / 2..]),
            "warm_up_s": WARM_UP.as_secs(),
        },
        "vram_mib": null, "h2d_bytes_per_frame": null, "d2h_bytes_per_frame": null,
        "reference": null, "ratio": null,
        "fds": delta(&|s| s.3),
        "threads": delta(&|s| s.2),
        "servers_process": servers_process,
        "heap_mib": heap,
        "allocator": allocator,
        "live_objects": live_objects,
        "fault_every_s": FAULT_EVERY.as_secs(),
        "faults": ["camera server stopped 5 s and restarted", "garbage instead of H.264 for 3 s", "camera server stopped 1 s, back at the other resolution (320x240 <-> 160x120)"],
        "faults_injected": faults_done,
        "recovery_s": {"n": recovery.len(), "p50": pct(&recovery, 0.5), "max": recovery.last()},
        "frames_lost_healthy": t.lost_healthy.iter().sum::<u64>(),
        "frames_lost_healthy_per_camera": t.lost_healthy,
        "healthy_gaps": t.healthy_gaps.iter().map(|(c, s, n)| serde_json::json!({"camera": c, "at_s": s, "frames": n})).collect::<Vec<_>>(),
        "frames_lost_faulted": t.lost_faulted.iter().sum::<u64>(),
        "frames_per_camera": t.frames,
        "reconnects_per_camera": reconnects,
        "samples": sample_rows,
        "samples_columns": ["t_s", "rss_mib", "threads", "fds", "servers_rss_mib", "servers_threads", "servers_fds", "heap_in_use_mib", "heap_held_mib"],
        "healthy_definition": format!("a camera is healthy outside [fault start, fault end + {} s]", RECOVERY.as_secs()),
    });
    let text = serde_json::to_string_pretty(&record).unwrap() + "\n";
    let path = if duration >= RECORDED {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/results");
        std::fs::create_dir_all(&dir).unwrap();
        // Runs under another allocator setting or with the leaks tracer keep their own file.
        let mut tag = std::env::var("MALLOC_ARENA_MAX")
            .map(|v| format!("malloc-arena-{v}-"))
            .unwrap_or_default();
        if live.is_some() {
            tag += "leaks-tracer-";
        }
        if trim {
            tag += "malloc-trim-";
        }
        if std::env::var_os("TRTVISION_SOAK_GLIBC_DEFAULTS").is_some() {
            tag += "glibc-defaults-";
        }
        dir.join(format!("cpu-rtsp-soak-{tag}{}.json", date.replace('-', "")))
    } else {
        common::temp_path("rtsp-soak", "cpu-rtsp-soak.json")
    };
    std::fs::write(&path, &text).unwrap();
    println!("{}\n{text}", path.display());
}
