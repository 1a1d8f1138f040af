//! RTSP cameras for the live-camera tests: gst-rtsp-server in this process on 127.0.0.1,
//! one server (and one main-context thread) per camera so that one camera can be stopped,
//! restarted, fed garbage or made lossy without touching the others; and the pipeline
//! `n x trtcamsrc → trtmux → trtdemux → n x appsink` that the tests observe.
//!
//! Faults a camera can be given while it runs:
//! - `garble`: every encoded H.264 access unit is overwritten with pseudo-random bytes
//!   (same size) before it is payloaded: the client receives well-formed RTP carrying garbage.
//! - `loss_percent`: that share of the camera's RTP packets (payload type 96) is dropped at
//!   the server's UDP sink — after the server's RTP session counted them as sent, where the
//!   network begins — chosen by a seeded generator, so a run drops the same packets of the
//!   same stream every time. Only UDP clients (`protocols=udp`) pass through that sink.
#![allow(dead_code)]

use crate::common;
use gst::glib;
use gst::prelude::*;
use gst_rtsp_server::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Faults applied to one camera's stream, switchable while it runs.
#[derive(Default)]
pub struct Faults {
    /// Replace every encoded access unit with garbage.
    pub garble: AtomicBool,
    /// Percentage of RTP packets dropped at the UDP sink (0 = none).
    pub loss_percent: AtomicU32,
    /// RTP packets that reached the UDP sink.
    pub rtp_packets: AtomicU64,
    /// RTP packets of those that were dropped.
    pub rtp_dropped: AtomicU64,
    /// Milliseconds each new media holds its stream back from its first access unit on (a
    /// camera slow to start; 0 = none).
    pub hold_ms: AtomicU32,
}

/// xorshift32: the deterministic generator behind the garbage bytes and the packet loss.
struct XorShift(u32);

impl XorShift {
    fn next(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }
}

/// Frame size and rate of a camera.
#[derive(Clone, Copy, Debug)]
pub struct Format {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
}

impl Format {
    pub const fn new(width: u32, height: u32, fps: u32) -> Self {
        Self { width, height, fps }
    }
}

/// An H.264 clip (access units in decoding order, SPS/PPS with every keyframe) that a
/// camera loops in real time.
pub struct Clip {
    pub aus: Vec<gst::Buffer>,
    pub caps: gst::Caps,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
}

impl Clip {
    /// The H.264 video of the MP4 file `path` (e.g. from scripts/make-camera-content.sh).
    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        let p = gst::parse::launch(&format!(
            "filesrc location=\"{}\" ! qtdemux ! h264parse config-interval=-1 \
             ! video/x-h264,stream-format=byte-stream,alignment=au ! appsink name=s sync=false",
            path.display()
        ))
        .map_err(|e| e.to_string())?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline".to_string())?;
        let sink = p
            .by_name("s")
            .and_then(|s| s.downcast::<gst_app::AppSink>().ok())
            .ok_or("no appsink")?;
        p.set_state(gst::State::Playing).map_err(|e| e.to_string())?;
        let mut aus = Vec::new();
        let mut caps = None;
        while let Ok(sample) = sink.pull_sample() {
            if caps.is_none() {
                caps = sample.caps_owned();
            }
            if let Some(b) = sample.buffer_owned() {
                aus.push(b);
            }
        }
        let _ = p.set_state(gst::State::Null);
        let caps = caps.ok_or("no H.264 video in the file")?;
        let s = caps.structure(0).ok_or("empty caps")?;
        let fps = s
            .get::<gst::Fraction>("framerate")
            .ok()
            .filter(|f| f.numer() > 0 && f.denom() > 0)
            .map_or(30, |f| (f.numer() / f.denom()).max(1) as u32);
        Ok(Self {
            width: s.get::<i32>("width").unwrap_or(0) as u32,
            height: s.get::<i32>("height").unwrap_or(0) as u32,
            fps,
            aus,
            caps,
        })
    }
}

/// What a camera serves.
#[derive(Clone)]
pub enum Content {
    /// A live test pattern, encoded by x264enc.
    Pattern(Format),
    /// A clip looped in real time (no encoding).
    Clip(Arc<Clip>),
}

/// Feeds `clip` into the camera's appsrc `src`, looping, timestamped from the first frame's
/// running time on; `identity sync=true` after it paces the stream in real time.
fn feed_clip(src: &gst_app::AppSrc, clip: Arc<Clip>) {
    let n = AtomicU64::new(0);
    let base = Mutex::new(None::<gst::ClockTime>);
    let period = gst::ClockTime::SECOND / u64::from(clip.fps);
    src.set_callbacks(
        gst_app::AppSrcCallbacks::builder()
            .need_data(move |src, _| {
                if clip.aus.is_empty() {
                    let _ = src.end_of_stream();
                    return;
                }
                let i = n.fetch_add(1, Ordering::Relaxed);
                let base = *base
                    .lock()
                    .unwrap()
                    .get_or_insert_with(|| src.current_running_time().unwrap_or(gst::ClockTime::ZERO));
                let mut b = clip.aus[(i % clip.aus.len() as u64) as usize].copy();
                {
                    let b = b.make_mut();
                    let pts = base + period * i;
                    b.set_pts(pts);
                    b.set_dts(pts);
                    b.set_duration(period);
                }
                let _ = src.push_buffer(b);
            })
            .build(),
    );
}

/// One RTSP camera: `rtsp://127.0.0.1:PORT/cam`, H.264 of a live test pattern or a clip.
pub struct Camera {
    server: gst_rtsp_server::RTSPServer,
    source: Option<glib::SourceId>,
    ctx: glib::MainContext,
    port: u16,
    pub faults: Arc<Faults>,
}

/// Whether to drop `buffer`: an RTP packet (payload type 96) picked at the rate
/// `faults.loss_percent`; counts RTP packets and drops in `faults`.
fn drop_rtp(faults: &Faults, rng: &Mutex<XorShift>, buffer: &gst::BufferRef) -> bool {
    let percent = faults.loss_percent.load(Ordering::Relaxed);
    let Ok(map) = buffer.map_readable() else {
        return false;
    };
    let is_rtp = map.len() >= 12 && map[0] >> 6 == 2 && map[1] & 0x7f == 96;
    if !is_rtp {
        return false;
    }
    faults.rtp_packets.fetch_add(1, Ordering::Relaxed);
    let drop = percent > 0 && rng.lock().unwrap().next() % 100 < percent;
    if drop {
        faults.rtp_dropped.fetch_add(1, Ordering::Relaxed);
    }
    drop
}

/// Installs the loss probe on a multiudpsink of the server's media pipeline.
fn lossy_udpsink(sink: &gst::Element, faults: Arc<Faults>, seed: u32) {
    let Some(pad) = sink.static_pad("sink") else {
        return;
    };
    let rng = Mutex::new(XorShift(seed));
    pad.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
        move |_, info| match &mut info.data {
            Some(gst::PadProbeData::Buffer(b)) => {
                // Handled: the probe consumes the packet (with Drop, GStreamer 1.22 would
                // unref the data a second time, which the Rust binding already took).
                if drop_rtp(&faults, &rng, b) {
                    gst::PadProbeReturn::Handled
                } else {
                    gst::PadProbeReturn::Ok
                }
            }
            Some(gst::PadProbeData::BufferList(list)) => {
                let dropped: Vec<usize> = list
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| drop_rtp(&faults, &rng, b))
                    .map(|(i, _)| i)
                    .collect();
                if dropped.len() == list.len() {
                    return gst::PadProbeReturn::Handled;
                }
                if !dropped.is_empty() {
                    let l = list.make_mut();
                    for i in dropped.into_iter().rev() {
                        l.remove(i..=i);
                    }
                }
                gst::PadProbeReturn::Ok
            }
            _ => gst::PadProbeReturn::Ok,
        },
    );
}

/// Drops the access units leaving `garble` during the first `faults.hold_ms` of the media.
fn holder(garble: &gst::Element, faults: Arc<Faults>) {
    let Some(pad) = garble.static_pad("src") else {
        return;
    };
    let first = std::sync::OnceLock::<Instant>::new();
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
        let hold = Duration::from_millis(u64::from(faults.hold_ms.load(Ordering::Relaxed)));
        if first.get_or_init(Instant::now).elapsed() < hold {
            // Handled: consumed here (Drop would unref it twice on GStreamer 1.22).
            gst::PadProbeReturn::Handled
        } else {
            gst::PadProbeReturn::Ok
        }
    });
}

/// Overwrites the payload of every access unit leaving `garble` while `faults.garble` is set.
fn garbler(garble: &gst::Element, faults: Arc<Faults>) {
    let Some(pad) = garble.static_pad("src") else {
        return;
    };
    let rng = Mutex::new(XorShift(0x1234_5678));
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if !faults.garble.load(Ordering::Relaxed) {
            return gst::PadProbeReturn::Ok;
        }
        if let Some(gst::PadProbeData::Buffer(b)) = &mut info.data {
            let size = b.size();
            let mut rng = rng.lock().unwrap();
            // A start code first, so that the payloader sends the rest as one (garbage) NAL.
            let bytes: Vec<u8> = (0..size)
                .map(|i| match i {
                    0..=2 => 0,
                    3 => 1,
                    _ => (rng.next() >> 24) as u8,
                })
                .collect();
            let mut garbage = gst::Buffer::from_mut_slice(bytes);
            {
                let g = garbage.get_mut().unwrap();
                let _ = b.copy_into(
                    g,
                    gst::BufferCopyFlags::FLAGS | gst::BufferCopyFlags::TIMESTAMPS,
                    ..,
                );
            }
            *b = garbage;
        }
        gst::PadProbeReturn::Ok
    });
}

impl Camera {
    pub fn start(ctx: &glib::MainContext, port: u16, width: u32, height: u32) -> Self {
        Self::start_with(
            ctx,
            port,
            Content::Pattern(Format::new(width, height, 30)),
            Arc::default(),
            1,
        )
    }

    /// A camera serving `content` on `port`, subject to `faults`; `seed` seeds its packet loss.
    pub fn start_with(
        ctx: &glib::MainContext,
        port: u16,
        content: Content,
        faults: Arc<Faults>,
        seed: u32,
    ) -> Self {
        let server = gst_rtsp_server::RTSPServer::new();
        server.set_address("127.0.0.1");
        server.set_service(&port.to_string());
        let factory = gst_rtsp_server::RTSPMediaFactory::new();
        let clip = match &content {
            Content::Pattern(Format { width, height, fps }) => {
                // 300 kbit/s at 160x120, 30 frames/s; a keyframe every half second; 4:2:0
                // (NVDEC does not decode x264's 4:4:4).
                let bitrate = (width * height * fps / 1920).max(100);
                let gop = (fps / 2).max(1);
                factory.set_launch(&format!(
                    "( videotestsrc is-live=true pattern=ball ! video/x-raw,format=I420,width={width},height={height},framerate={fps}/1 \
                     ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={gop} bitrate={bitrate} \
                     ! video/x-h264,stream-format=byte-stream,alignment=au ! identity name=garble \
                     ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
                ));
                None
            }
            Content::Clip(clip) => {
                factory.set_launch(&format!(
                    "( appsrc name=src is-live=true format=time caps=\"{}\" ! h264parse \
                     ! identity name=garble sync=true ! rtph264pay name=pay0 pt=96 config-interval=-1 )",
                    clip.caps
                ));
                Some(clip.clone())
            }
        };
        factory.set_shared(true);
        let f = faults.clone();
        factory.connect_media_configure(move |_, media| {
            let bin = media.element();
            let by_name = |name: &str| bin.dynamic_cast_ref::<gst::Bin>().and_then(|b| b.by_name(name));
            if let Some(g) = by_name("garble") {
                holder(&g, f.clone());
                garbler(&g, f.clone());
            }
            if let (Some(clip), Some(src)) = (
                &clip,
                by_name("src").and_then(|s| s.downcast::<gst_app::AppSrc>().ok()),
            ) {
                feed_clip(&src, clip.clone());
            }
            // The stream's UDP sinks are added to the media's pipeline when it is prepared.
            if let Some(pipeline) = bin.parent().and_then(|p| p.downcast::<gst::Bin>().ok()) {
                let f = f.clone();
                pipeline.connect_element_added(move |_, e| {
                    if e.factory().is_some_and(|fa| fa.name() == "multiudpsink") {
                        lossy_udpsink(e, f.clone(), seed);
                    }
                });
            }
        });
        server.mount_points().unwrap().add_factory("/cam", factory);
        let source = server.attach(Some(ctx)).expect("the RTSP server listens");
        Self {
            server,
            source: Some(source),
            ctx: ctx.clone(),
            port,
            faults,
        }
    }

    pub fn uri(&self) -> String {
        format!("rtsp://127.0.0.1:{}/cam", self.port)
    }

    /// Stops listening and drops every client (the camera goes away).
    pub fn stop(&mut self) {
        if let Some(s) = self.source.take() {
            // Attached to our own context: destroy it there (SourceId::remove looks in the
            // default context).
            if let Some(src) = self.ctx.find_source_by_id(&s) {
                src.destroy();
            }
        }
        self.server
            .client_filter(Some(&mut |_, _| gst_rtsp_server::RTSPFilterResult::Remove));
    }
}

/// A main context for the servers, iterated on its own thread.
pub fn server_context() -> glib::MainContext {
    let ctx = glib::MainContext::new();
    let c = ctx.clone();
    std::thread::spawn(move || {
        let l = glib::MainLoop::new(Some(&c), false);
        c.with_thread_default(|| l.run()).unwrap();
    });
    ctx
}

/// Runs `f` on the servers' context thread and waits for it.
pub fn on_ctx<T: Send + 'static>(ctx: &glib::MainContext, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    ctx.invoke(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("server context answers")
}

/// One camera on its own server context.
pub struct Served {
    pub ctx: glib::MainContext,
    pub port: u16,
    pub camera: Option<Camera>,
    pub faults: Arc<Faults>,
    content: Content,
    seed: u32,
}

impl Served {
    /// A live test pattern of `format`; `seed` seeds its packet loss.
    pub fn new(format: Format, seed: u32) -> Self {
        Self::with_content(Content::Pattern(format), seed)
    }

    pub fn with_content(content: Content, seed: u32) -> Self {
        let mut s = Self {
            ctx: server_context(),
            port: free_port(),
            camera: None,
            faults: Arc::default(),
            content,
            seed,
        };
        s.restart();
        s
    }

    pub fn uri(&self) -> String {
        format!("rtsp://127.0.0.1:{}/cam", self.port)
    }

    /// (Re)starts the server with its content.
    pub fn restart(&mut self) {
        let (c2, port, faults, seed) = (self.ctx.clone(), self.port, self.faults.clone(), self.seed);
        let content = self.content.clone();
        self.camera = Some(on_ctx(&self.ctx, move || {
            Camera::start_with(&c2, port, content, faults, seed)
        }));
    }

    /// (Re)starts the server with `content` from now on.
    pub fn restart_with(&mut self, content: Content) {
        self.content = content;
        self.restart();
    }

    /// Stops the server and drops its clients.
    pub fn stop(&mut self) {
        if let Some(mut cam) = self.camera.take() {
            on_ctx(&self.ctx, move || {
                cam.stop();
                drop(cam);
            });
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(cam) = self.camera.take() {
            on_ctx(&self.ctx, move || drop(cam));
        }
    }
}

/// A frame out of trtdemux.
#[derive(Debug, Clone)]
pub struct Out {
    pub pts: gst::ClockTime,
    pub width: u32,
    pub discont: bool,
    pub at: Instant,
}

/// `trtcamsrc-status` messages: (camera id, state, reason).
pub type Statuses = Arc<Mutex<Vec<(String, String, String)>>>;

/// `n` trtcamsrc (uris) → trtmux → trtdemux → queue → appsink out{i}; `on_frame(i, out)` is
/// called for every frame of camera i. Sinks of a live multi-camera pipeline are
/// `async=false`: a camera that never delivers would otherwise keep its sink from
/// prerolling, and the pipeline in PAUSED.
pub fn pipeline(
    uris: &[String],
    extra: &str,
    extra_last: &str,
    on_frame: impl Fn(usize, Out) + Send + Sync + 'static,
) -> (gst::Pipeline, Statuses) {
    let mut desc = "trtmux name=m batched-push-timeout=40000 ! trtdemux name=d".to_string();
    for (i, uri) in uris.iter().enumerate() {
        let extra = if i + 1 == uris.len() { extra_last } else { extra };
        desc += &format!(
            " trtcamsrc name=cam{i} camera-id=cam{i} uri={uri} latency=300 {extra} ! m.sink_{i} \
             d.src_{i} ! queue ! appsink name=out{i} sync=false async=false"
        );
    }
    let p = common::parse(&desc);
    let on_frame = Arc::new(on_frame);
    for i in 0..uris.len() {
        let f = on_frame.clone();
        common::on_sample(&p, &format!("out{i}"), move |s| {
            let Some(b) = s.buffer() else { return };
            let Some(info) = s.caps().and_then(|c| gst_video::VideoInfo::from_caps(c).ok()) else {
                return;
            };
            f(
                i,
                Out {
                    pts: b.pts().unwrap_or(gst::ClockTime::ZERO),
                    width: info.width(),
                    discont: b.flags().contains(gst::BufferFlags::DISCONT),
                    at: Instant::now(),
                },
            );
        });
    }
    let statuses: Statuses = Arc::new(Mutex::new(Vec::new()));
    let st = statuses.clone();
    p.bus().unwrap().set_sync_handler(move |_, msg| {
        if let gst::MessageView::Element(e) = msg.view() {
            if let Some(s) = e.structure().filter(|s| s.name() == "trtcamsrc-status") {
                st.lock().unwrap().push((
                    s.get::<String>("camera-id").unwrap_or_default(),
                    s.get::<String>("state").unwrap_or_default(),
                    s.get::<String>("reason").unwrap_or_default(),
                ));
            }
        }
        gst::BusSyncReply::Pass
    });
    (p, statuses)
}

/// Panics with the pipeline's first ERROR message, if any.
pub fn no_error(p: &gst::Pipeline) {
    if let Some(msg) = p.bus().unwrap().pop_filtered(&[gst::MessageType::Error]) {
        if let gst::MessageView::Error(e) = msg.view() {
            panic!("pipeline error: {} {:?}", e.error(), e.debug());
        }
    }
}

/// The states camera `cam` went through, in order.
pub fn states_of(statuses: &Statuses, cam: &str) -> Vec<String> {
    statuses
        .lock()
        .unwrap()
        .iter()
        .filter(|(c, ..)| c == cam)
        .map(|(_, s, _)| s.clone())
        .collect()
}

/// `reconnecting` states of cameras cam0 .. cam{n-1}.
pub fn reconnects(statuses: &Statuses, n: usize) -> Vec<usize> {
    (0..n)
        .map(|i| {
            states_of(statuses, &format!("cam{i}"))
                .iter()
                .filter(|s| *s == "reconnecting")
                .count()
        })
        .collect()
}

/// Frames missing between two consecutive frames of a camera of frame period `period`:
/// 0 when contiguous (within jitter); otherwise the frame periods in the hole (at least 1,
/// also for a DISCONT frame).
pub fn missing_between(prev: &Out, next: &Out, period: gst::ClockTime) -> u64 {
    let d = next.pts.saturating_sub(prev.pts);
    if d.nseconds() * 3 >= period.nseconds() * 5 || next.discont {
        (d.nseconds() / period.nseconds()).saturating_sub(1).max(1)
    } else {
        0
    }
}

/// Resident memory (MiB), threads and open file descriptors of this process.
pub fn resources() -> (f64, u64, u64) {
    resources_of("self")
}

/// Resident memory (MiB), threads and open file descriptors of process `pid` ("self": this
/// one).
pub fn resources_of(pid: &str) -> (f64, u64, u64) {
    let (rss_kb, threads, fds) = common::process_resources(pid);
    (rss_kb as f64 / 1024.0, threads, fds)
}

/// glibc's heap of this process (MiB): bytes allocated and not freed (small blocks in the
/// arenas plus mmap()ed large ones), and what the arenas hold from the system (in use or
/// free). RSS growing while the first stays flat is memory freed but kept by the
/// allocator, not a leak.
pub fn heap() -> (f64, f64) {
    // SAFETY: mallinfo2 only reads the allocator's counters.
    let m = unsafe { libc::mallinfo2() };
    let mib = |b: usize| b as f64 / (1024.0 * 1024.0);
    (mib(m.uordblks + m.hblkhd), mib(m.arena + m.hblkhd))
}

/// The CPU model and core count, as bench records name the device.
pub fn cpu_device() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("cpu: {cpu} x{cores}")
}

/// CPU seconds (user + system) of this process.
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // After the command name: state is field 0, utime 11, stime 12; 100 ticks a second.
    (ticks(11) + ticks(12)) / 100.0
}

/// Today's date (UTC), YYYY-MM-DD.
pub fn date() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The commit of this checkout.
pub fn commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
