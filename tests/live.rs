//! Live-camera semantics through the full chain: lost frames (GAP), DISCONT buffers,
//! timestamp jumps and caps changes mid-stream, flushing seeks in a loop.

mod common;

use gst::prelude::*;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::within;

/// trtmux → trtpreprocess → trtinfer → trtmaskselect → trtoverlay → trtdemux `d`.
fn full_chain() -> String {
    format!(
        "trtmux name=m ! trtpreprocess config-file={c} ! trtinfer model={c} ! trtmaskselect ! trtoverlay ! trtdemux name=d",
        c = common::cfg("shapes-yolo.toml")
    )
}

/// What one output branch saw, in arrival order.
#[derive(Debug, Clone, PartialEq)]
enum Item {
    Frame {
        pts: Option<gst::ClockTime>,
        offset: u64,
        width: u32,
        height: u32,
        discont: bool,
        /// The segment the frame was rendered in (time format), if the sink had one.
        segment_start: Option<gst::ClockTime>,
    },
    Gap(gst::ClockTime),
}

type Seen = Arc<Mutex<Vec<Vec<Item>>>>;

/// Records frames and GAP events reaching appsinks out0..out{n-1}.
fn record(p: &gst::Pipeline, n: u32) -> Seen {
    let seen: Seen = Arc::new(Mutex::new(vec![Vec::new(); n as usize]));
    for i in 0..n {
        let s = seen.clone();
        p.by_name(&format!("out{i}"))
            .unwrap_or_else(|| panic!("out{i} exists"))
            .static_pad("sink")
            .unwrap()
            .add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
                if let Some(gst::PadProbeData::Event(e)) = &info.data {
                    if let gst::EventView::Gap(g) = e.view() {
                        s.lock().unwrap()[i as usize].push(Item::Gap(g.get().0));
                    }
                }
                gst::PadProbeReturn::Ok
            });
        let s = seen.clone();
        common::on_sample(p, &format!("out{i}"), move |sample| {
            let buf = sample.buffer().expect("sample has a buffer");
            let info = gst_video::VideoInfo::from_caps(sample.caps().expect("caps")).unwrap();
            let segment_start = sample
                .segment()
                .and_then(|seg| seg.downcast_ref::<gst::ClockTime>().and_then(|t| t.start()));
            s.lock().unwrap()[i as usize].push(Item::Frame {
                pts: buf.pts(),
                offset: buf.offset(),
                width: info.width(),
                height: info.height(),
                discont: buf.flags().contains(gst::BufferFlags::DISCONT),
                segment_start,
            });
        });
    }
    seen
}

fn frame_pts(items: &[Item]) -> Vec<gst::ClockTime> {
    items
        .iter()
        .filter_map(|i| match i {
            Item::Frame { pts, .. } => Some(pts.expect("frame has a timestamp")),
            Item::Gap(_) => None,
        })
        .collect()
}

fn at_30fps(n: u64) -> gst::ClockTime {
    gst::ClockTime::SECOND.mul_div_floor(n, 30).unwrap()
}

fn run(p: &gst::Pipeline, secs: u64) {
    if let Err(e) = common::run_to_end(p, gst::ClockTime::from_seconds(secs)) {
        panic!("pipeline failed: {e}");
    }
}

/// One camera of eight loses every fifth frame (its source sends a GAP event in its place,
/// as a depayloader or decoder does on packet loss): no element fails, the seven others
/// lose nothing, and the lossy camera gets its other frames plus a GAP event at each lost
/// frame's time, in order.
#[test]
fn gap_every_fifth_frame_on_one_camera_of_eight() {
    within(120, "gap every fifth frame", || {
        common::init();
        let (n, frames, lossy) = (8u32, 20u64, 3u32);
        let mut desc = full_chain();
        for i in 0..n {
            desc += &format!(
                " trtscenesrc camera={i} num-buffers={frames} ! video/x-raw,format=NV12,width=160,height=120,framerate=30/1 \
                 ! identity name=cam{i} ! m.sink_{i} d.src_{i} ! queue ! appsink name=out{i} sync=false"
            );
        }
        let p = common::parse(&desc);
        let seen = record(&p, n);
        let cam = p.by_name(&format!("cam{lossy}")).unwrap();
        cam.static_pad("src")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, |pad, info| {
                let Some(buf) = info.buffer() else {
                    return gst::PadProbeReturn::Ok;
                };
                if buf.offset() % 5 != 4 {
                    return gst::PadProbeReturn::Ok;
                }
                let gap = gst::event::Gap::builder(buf.pts().unwrap())
                    .duration(buf.duration())
                    .build();
                pad.push_event(gap);
                gst::PadProbeReturn::Drop
            });
        run(&p, 60);
        let seen = seen.lock().unwrap();
        for i in 0..n {
            let items = &seen[i as usize];
            if i == lossy {
                let expect: Vec<Item> = (0..frames)
                    .map(|k| {
                        if k % 5 == 4 {
                            Item::Gap(at_30fps(k))
                        } else {
                            Item::Frame {
                                pts: Some(at_30fps(k)),
                                offset: k,
                                width: 160,
                                height: 120,
                                // basesrc marks a stream's first buffer DISCONT.
                                discont: k == 0,
                                segment_start: Some(gst::ClockTime::ZERO),
                            }
                        }
                    })
                    .collect();
                assert_eq!(items, &expect, "lossy camera: frames and gaps in order");
            } else {
                let pts = frame_pts(items);
                assert_eq!(
                    pts,
                    (0..frames).map(at_30fps).collect::<Vec<_>>(),
                    "camera {i} lost frames"
                );
                assert!(items.iter().all(|i| matches!(i, Item::Frame { .. })));
            }
        }
    });
}

/// NV12 frame of `w`x`h`, one grey level.
fn nv12(w: u32, h: u32, pts: gst::ClockTime, discont: bool, offset: u64) -> gst::Buffer {
    let size = (w * h * 3 / 2) as usize;
    let mut buf = gst::Buffer::from_mut_slice(vec![96u8; size]);
    {
        let b = buf.get_mut().unwrap();
        b.set_pts(pts);
        b.set_duration(at_30fps(1));
        b.set_offset(offset);
        if discont {
            b.set_flags(gst::BufferFlags::DISCONT);
        }
    }
    buf
}

fn nv12_caps(w: u32, h: u32) -> gst::Caps {
    gst_video::VideoCapsBuilder::new()
        .format(gst_video::VideoFormat::Nv12)
        .width(w as i32)
        .height(h as i32)
        .framerate(gst::Fraction::new(30, 1))
        .build()
}

/// A camera that comes back at another resolution, after a DISCONT and a timestamp jump of
/// ten seconds, next to a steady camera: every element processes each slot at its own
/// size, trtdemux sets the new caps on that camera's pad before the first new frame, and
/// the DISCONT flag and the timestamps reach the output unchanged.
#[test]
fn camera_returns_at_another_resolution_after_discont_and_jump() {
    within(120, "resolution change", || {
        common::init();
        let desc = full_chain()
            + " trtscenesrc camera=0 num-buffers=20 ! video/x-raw,format=NV12,width=160,height=120,framerate=30/1 ! m.sink_0 \
               d.src_0 ! queue ! appsink name=out0 sync=false \
               appsrc name=cam format=time ! m.sink_1 d.src_1 ! queue ! appsink name=out1 sync=false";
        let p = common::parse(&desc);
        let seen = record(&p, 2);
        // Caps seen on the changing camera's output pad, in order.
        let caps_seen = Arc::new(Mutex::new(Vec::<(u32, u32)>::new()));
        let c = caps_seen.clone();
        p.by_name("out1").unwrap().static_pad("sink").unwrap().add_probe(
            gst::PadProbeType::EVENT_DOWNSTREAM,
            move |_, info| {
                if let Some(gst::PadProbeData::Event(e)) = &info.data {
                    if let gst::EventView::Caps(caps) = e.view() {
                        let vi = gst_video::VideoInfo::from_caps(caps.caps()).unwrap();
                        c.lock().unwrap().push((vi.width(), vi.height()));
                    }
                }
                gst::PadProbeReturn::Ok
            },
        );
        let src = p.by_name("cam").unwrap().downcast::<gst_app::AppSrc>().unwrap();
        src.set_caps(Some(&nv12_caps(320, 240)));
        for k in 0..10u64 {
            src.push_buffer(nv12(320, 240, at_30fps(k), false, k)).unwrap();
        }
        src.set_caps(Some(&nv12_caps(640, 360)));
        let jump = gst::ClockTime::from_seconds(10);
        for k in 10..20u64 {
            src.push_buffer(nv12(640, 360, jump + at_30fps(k), k == 10, k))
                .unwrap();
        }
        src.end_of_stream().unwrap();
        run(&p, 60);
        let seen = seen.lock().unwrap();
        assert_eq!(frame_pts(&seen[0]), (0..20).map(at_30fps).collect::<Vec<_>>());
        let got: Vec<(u64, u32, u32, bool, gst::ClockTime)> = seen[1]
            .iter()
            .map(|i| match i {
                Item::Frame {
                    pts,
                    offset,
                    width,
                    height,
                    discont,
                    ..
                } => (*offset, *width, *height, *discont, pts.unwrap()),
                Item::Gap(t) => panic!("unexpected gap at {t}"),
            })
            .collect();
        let expect: Vec<_> = (0..20u64)
            .map(|k| {
                if k < 10 {
                    (k, 320, 240, k == 0, at_30fps(k))
                } else {
                    (k, 640, 360, k == 10, jump + at_30fps(k))
                }
            })
            .collect();
        assert_eq!(got, expect);
        assert_eq!(*caps_seen.lock().unwrap(), vec![(320, 240), (640, 360)]);
    });
}

/// A finite seekable stream played 20 times through the full chain, with a flushing seek
/// back to 0 at every EOS: every loop delivers every frame of both cameras with the
/// timestamps of the first loop, in a segment (FLUSH_STOP clears the sticky segment, so
/// trtdemux must send it again), and each seek goes upstream of trtdemux once although
/// both branches' sinks send it.
#[test]
fn twenty_flushing_seek_loops_through_the_full_chain() {
    within(300, "20 seek loops", || {
        common::init();
        let (n, frames, loops) = (2u32, 8u64, 20usize);
        let mut desc = full_chain();
        for i in 0..n {
            desc += &format!(
                " trtscenesrc camera={i} ! video/x-raw,format=NV12,width=160,height=120,framerate=30/1 ! m.sink_{i} \
                 d.src_{i} ! queue ! appsink name=out{i} sync=false"
            );
        }
        let p = common::parse(&desc);
        let seen = record(&p, n);
        let seeks_upstream = Arc::new(Mutex::new(Vec::<gst::Seqnum>::new()));
        let s = seeks_upstream.clone();
        p.by_name("d").unwrap().static_pad("sink").unwrap().add_probe(
            gst::PadProbeType::EVENT_UPSTREAM,
            move |_, info| {
                if let Some(gst::PadProbeData::Event(e)) = &info.data {
                    if e.type_() == gst::EventType::Seek {
                        s.lock().unwrap().push(e.seqnum());
                    }
                }
                gst::PadProbeReturn::Ok
            },
        );
        let stop = at_30fps(frames);
        let seek = |p: &gst::Pipeline| {
            p.seek(
                1.0,
                gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE,
                gst::SeekType::Set,
                gst::ClockTime::ZERO,
                gst::SeekType::Set,
                stop,
            )
            .expect("the pipeline accepts a flushing seek");
        };
        p.set_state(gst::State::Paused).unwrap();
        p.state(gst::ClockTime::from_seconds(20)).0.expect("prerolls");
        seek(&p);
        p.set_state(gst::State::Playing).unwrap();
        let bus = p.bus().unwrap();
        let mut eos = 0;
        let deadline = Instant::now() + Duration::from_secs(240);
        while eos < loops {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = bus.timed_pop_filtered(
                gst::ClockTime::from_nseconds(left.as_nanos() as u64),
                &[gst::MessageType::Eos, gst::MessageType::Error],
            );
            match msg.as_ref().map(|m| m.view()) {
                Some(gst::MessageView::Eos(_)) => {
                    eos += 1;
                    if eos < loops {
                        seek(&p);
                    }
                }
                Some(gst::MessageView::Error(e)) => {
                    p.set_state(gst::State::Null).unwrap();
                    panic!("error in loop {eos}: {} {:?}", e.error(), e.debug())
                }
                _ => {
                    p.set_state(gst::State::Null).unwrap();
                    panic!("loop {eos} did not end (deadlock?)")
                }
            }
        }
        p.set_state(gst::State::Null).unwrap();
        let seen = seen.lock().unwrap();
        for (cam, items) in seen.iter().enumerate() {
            // Frames made before the first seek (preroll) are flushed or complete a first
            // partial run; from there on every run is 0..frames.
            let pts = frame_pts(items);
            let runs: Vec<&[gst::ClockTime]> = pts.chunk_by(|a, b| b > a).collect();
            let full: Vec<gst::ClockTime> = (0..frames).map(at_30fps).collect();
            let complete = runs.iter().filter(|r| **r == full.as_slice()).count();
            assert!(
                complete >= loops,
                "camera {cam}: {complete} complete loops of {loops}: {runs:?}"
            );
            assert!(
                runs.iter().all(|r| full.starts_with(r)),
                "camera {cam}: a loop with wrong timestamps: {runs:?}"
            );
            for i in items {
                if let Item::Frame { segment_start, .. } = i {
                    assert_eq!(
                        *segment_start,
                        Some(gst::ClockTime::ZERO),
                        "camera {cam}: frame without its segment"
                    );
                }
            }
        }
        let seeks = seeks_upstream.lock().unwrap();
        let mut unique = seeks.clone();
        unique.dedup();
        assert_eq!(
            seeks.len(),
            unique.len(),
            "a seek went upstream more than once: {seeks:?}"
        );
        assert!(seeks.len() >= loops, "{} seeks went upstream", seeks.len());
    });
}

/// What trtdemux sent on one source's pad.
#[derive(Debug, Default)]
struct Ended {
    frames: u64,
    /// Frames seen before the EOS (None: no EOS yet).
    eos_after: Option<u64>,
    removed: bool,
}

/// Sources added and released while the pipeline plays (an application's request/release of
/// trtmux pads, as trtvision-serve does): each released source's frames already in trtmux
/// come out first, then its EOS, then trtdemux removes its pad (`pad-removed`); after the
/// cycles only the permanent source's pads are left.
#[test]
fn released_sources_lose_their_trtdemux_pads() {
    within(180, "add/remove cycles", || {
        common::init();
        let caps = "video/x-raw,format=NV12,width=64,height=48,framerate=30/1";
        let p = common::parse(&format!(
            "videotestsrc is-live=true ! {caps} ! m.sink_0 trtmux name=m batched-push-timeout=20000 ! trtdemux name=d"
        ));
        let (m, d) = (p.by_name("m").unwrap(), p.by_name("d").unwrap());
        let ended: Arc<Mutex<std::collections::HashMap<String, Ended>>> = Arc::default();
        let (e, weak) = (ended.clone(), p.downgrade());
        d.connect_pad_added(move |_, pad| {
            let Some(p) = weak.upgrade() else { return };
            let sink = gst::ElementFactory::make("fakesink")
                .property("sync", false)
                .property("async", false)
                .build()
                .unwrap();
            p.add(&sink).unwrap();
            sink.sync_state_with_parent().unwrap();
            pad.link(&sink.static_pad("sink").unwrap()).unwrap();
            let (e, name) = (e.clone(), pad.name().to_string());
            e.lock().unwrap().entry(name.clone()).or_default();
            pad.add_probe(
                gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
                move |_, info| {
                    let mut e = e.lock().unwrap();
                    let s = e.entry(name.clone()).or_default();
                    match &info.data {
                        Some(gst::PadProbeData::Buffer(_)) => s.frames += 1,
                        Some(gst::PadProbeData::Event(ev)) if ev.type_() == gst::EventType::Eos => {
                            s.eos_after = Some(s.frames)
                        }
                        _ => {}
                    }
                    gst::PadProbeReturn::Ok
                },
            );
        });
        let e = ended.clone();
        d.connect_pad_removed(move |_, pad| {
            e.lock()
                .unwrap()
                .entry(pad.name().to_string())
                .or_default()
                .removed = true;
        });
        p.set_state(gst::State::Playing).unwrap();
        let wait = |what: &str, cond: &dyn Fn() -> bool| {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !cond() {
                assert!(Instant::now() < deadline, "{what}");
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        for cycle in 0..40 {
            let src = gst::parse::bin_from_description(
                &format!("videotestsrc is-live=true ! capsfilter caps={caps}"),
                true,
            )
            .unwrap();
            p.add(&src).unwrap();
            let mux_pad = m.request_pad_simple("sink_%u").unwrap();
            let name = mux_pad.name().replace("sink_", "src_");
            let entered = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let en = entered.clone();
            mux_pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                en.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                gst::PadProbeReturn::Ok
            });
            let src_pad = src.static_pad("src").unwrap();
            src_pad.link(&mux_pad).unwrap();
            src.sync_state_with_parent().unwrap();
            wait(&format!("cycle {cycle}: frames on {name}"), &|| {
                ended.lock().unwrap().get(&name).is_some_and(|s| s.frames >= 3)
            });
            // Release as an application removing a camera does: nothing more enters trtmux.
            src_pad.add_probe(gst::PadProbeType::DATA_DOWNSTREAM, |_, _| {
                gst::PadProbeReturn::Handled
            });
            src.set_state(gst::State::Null).unwrap();
            src_pad.unlink(&mux_pad).unwrap();
            p.remove(&src).unwrap();
            m.release_request_pad(&mux_pad);
            wait(&format!("cycle {cycle}: {name} removed"), &|| {
                ended.lock().unwrap().get(&name).is_some_and(|s| s.removed)
            });
            let e = ended.lock().unwrap();
            let s = &e[&name];
            let entered = entered.load(std::sync::atomic::Ordering::SeqCst);
            assert_eq!(
                s.frames, entered,
                "cycle {cycle}: {name} lost frames queued in trtmux"
            );
            assert_eq!(
                s.eos_after,
                Some(entered),
                "cycle {cycle}: {name}: EOS not after its last frame"
            );
        }
        let src_pads: Vec<String> = d.src_pads().iter().map(|p| p.name().to_string()).collect();
        assert_eq!(src_pads, ["src_0"], "trtdemux keeps pads of removed sources");
        assert_eq!(m.num_sink_pads(), 1);
        p.set_state(gst::State::Null).unwrap();
    });
}
