//! trtmux batching semantics.

mod common;

use gst::prelude::*;
use gsttrtvision::batch::BatchMeta;
use std::collections::BTreeMap;

fn slots_of(b: &gst::Buffer) -> Vec<(u32, u64, Option<gst::ClockTime>, u32, u32)> {
    let meta = b.meta::<BatchMeta>().expect("batch meta present");
    meta.batch()
        .slots
        .iter()
        .map(|s| {
            (
                s.pad_index(),
                s.frame_number,
                s.pts,
                s.info.width(),
                s.info.height(),
            )
        })
        .collect()
}

#[test]
fn batches_sources_of_different_sizes_formats_and_rates() {
    common::init();
    let p = common::parse(
        "trtmux name=m ! appsink name=out sync=false \
         videotestsrc num-buffers=12 ! video/x-raw,format=RGBA,width=320,height=240,framerate=30/1 ! m.sink_0 \
         videotestsrc num-buffers=12 ! video/x-raw,format=NV12,width=640,height=480,framerate=60/1 ! m.sink_1 \
         videotestsrc num-buffers=7 ! video/x-raw,format=I420,width=176,height=144,framerate=15/1 ! m.sink_2",
    );
    let out = common::collect(&p, "out");
    common::run_to_end(&p, gst::ClockTime::from_seconds(20)).unwrap();
    let out = out.lock().unwrap();
    // Every frame exactly once, in order per source, with its own size and timestamps.
    let mut per_source: BTreeMap<u32, Vec<(u64, Option<gst::ClockTime>)>> = BTreeMap::new();
    for b in out.iter() {
        let slots = slots_of(b);
        assert!(slots.len() <= 3, "batch larger than the number of sources");
        let mut seen = std::collections::HashSet::new();
        for (pad, n, pts, w, h) in slots {
            assert!(seen.insert(pad), "two frames of one source in a batch");
            let expect = match pad {
                0 => (320, 240),
                1 => (640, 480),
                2 => (176, 144),
                _ => panic!("unknown pad {pad}"),
            };
            assert_eq!((w, h), expect);
            per_source.entry(pad).or_default().push((n, pts));
        }
    }
    let rates = [(0u32, 12u64, 30u64), (1, 12, 60), (2, 7, 15)];
    for (pad, count, fps) in rates {
        let frames = &per_source[&pad];
        assert_eq!(frames.len() as u64, count, "source {pad} frame count");
        for (i, (n, pts)) in frames.iter().enumerate() {
            assert_eq!(*n, i as u64);
            let expect = gst::ClockTime::SECOND.mul_div_floor(i as u64, fps).unwrap();
            assert_eq!(*pts, Some(expect), "source {pad} frame {i} pts");
        }
    }
    // Sources that ended early never stall the others: 12 batches in all.
    assert_eq!(out.len(), 12);
}

#[test]
fn batch_size_smaller_than_sources_is_fair_and_lossless() {
    common::init();
    let p = common::parse(
        "trtmux name=m batch-size=2 ! appsink name=out sync=false \
         videotestsrc num-buffers=10 ! video/x-raw,width=64,height=48 ! m.sink_0 \
         videotestsrc num-buffers=10 ! video/x-raw,width=64,height=48 ! m.sink_1 \
         videotestsrc num-buffers=10 ! video/x-raw,width=64,height=48 ! m.sink_2 \
         videotestsrc num-buffers=10 ! video/x-raw,width=64,height=48 ! m.sink_3",
    );
    let out = common::collect(&p, "out");
    common::run_to_end(&p, gst::ClockTime::from_seconds(20)).unwrap();
    let out = out.lock().unwrap();
    let mut per_source: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for b in out.iter() {
        let slots = slots_of(b);
        assert!(slots.len() <= 2);
        for (pad, n, ..) in slots {
            per_source.entry(pad).or_default().push(n);
        }
    }
    for pad in 0..4 {
        assert_eq!(per_source[&pad], (0..10).collect::<Vec<_>>(), "source {pad}");
    }
    assert_eq!(out.len(), 20);
}

#[test]
fn frames_travel_by_reference() {
    common::init();
    let p = common::parse(
        "appsrc name=src format=time caps=video/x-raw,format=RGBA,width=8,height=8,framerate=30/1 \
         ! trtmux name=m ! appsink name=out sync=false",
    );
    let out = common::collect(&p, "out");
    let src = p.by_name("src").unwrap().downcast::<gst_app::AppSrc>().unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let mut pushed = Vec::new();
    for i in 0..3u64 {
        let mut b = gst::Buffer::with_size(8 * 8 * 4).unwrap();
        b.get_mut()
            .unwrap()
            .set_pts(gst::ClockTime::from_mseconds(33 * i));
        pushed.push(b.as_ptr() as usize);
        src.push_buffer(b).unwrap();
    }
    src.end_of_stream().unwrap();
    let bus = p.bus().unwrap();
    bus.timed_pop_filtered(gst::ClockTime::from_seconds(10), &[gst::MessageType::Eos])
        .expect("eos");
    p.set_state(gst::State::Null).unwrap();
    let out = out.lock().unwrap();
    let got: Vec<usize> = out
        .iter()
        .map(|b| b.meta::<BatchMeta>().unwrap().batch().slots[0].buffer.as_ptr() as usize)
        .collect();
    assert_eq!(got, pushed, "slots must hold the very buffers that were pushed");
}

#[test]
fn live_source_stall_pushes_partial_batches() {
    common::init();
    // sink_1 is live but never produces a frame: after batched-push-timeout the frames of
    // sink_0 go out alone, in order, none dropped.
    let p = common::parse(
        "trtmux name=m batched-push-timeout=20000 ! appsink name=out sync=false \
         videotestsrc is-live=true num-buffers=15 ! video/x-raw,width=64,height=48,framerate=30/1 ! m.sink_0 \
         appsrc name=stalled is-live=true format=time caps=video/x-raw,format=RGBA,width=32,height=32,framerate=30/1 ! m.sink_1",
    );
    let out = common::collect(&p, "out");
    let stalled = p
        .by_name("stalled")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    p.set_state(gst::State::Playing).unwrap();
    // Let the live source run out, then end the stalled one.
    std::thread::sleep(std::time::Duration::from_millis(1200));
    stalled.end_of_stream().unwrap();
    let bus = p.bus().unwrap();
    let msg = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(10),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    p.set_state(gst::State::Null).unwrap();
    assert!(matches!(msg.map(|m| m.type_()), Some(gst::MessageType::Eos)));
    let out = out.lock().unwrap();
    let frames: Vec<u64> = out
        .iter()
        .flat_map(slots_of)
        .map(|(pad, n, ..)| {
            assert_eq!(pad, 0);
            n
        })
        .collect();
    assert_eq!(frames, (0..15).collect::<Vec<_>>());
}

#[test]
fn pads_requested_and_released_while_playing() {
    common::init();
    let p = common::parse(
        "trtmux name=m ! appsink name=out sync=false \
         videotestsrc is-live=true num-buffers=60 ! video/x-raw,width=64,height=48,framerate=60/1 ! m.sink_0",
    );
    let out = common::collect(&p, "out");
    let mux = p.by_name("m").unwrap();
    p.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));

    // Add a second live source while playing.
    let src = gst::ElementFactory::make("videotestsrc")
        .property("is-live", true)
        .build()
        .unwrap();
    let caps = gst::ElementFactory::make("capsfilter")
        .property(
            "caps",
            gst::Caps::builder("video/x-raw")
                .field("width", 32)
                .field("height", 32)
                .field("framerate", gst::Fraction::new(60, 1))
                .build(),
        )
        .build()
        .unwrap();
    p.add_many([&src, &caps]).unwrap();
    gst::Element::link_many([&src, &caps]).unwrap();
    let pad = mux.request_pad_simple("sink_%u").unwrap();
    caps.static_pad("src").unwrap().link(&pad).unwrap();
    // Downstream first, so the new source never pushes into a stopped element.
    caps.sync_state_with_parent().unwrap();
    src.sync_state_with_parent().unwrap();
    // Wait (bounded) until the new source shows up in batches.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline
        && !out
            .lock()
            .unwrap()
            .iter()
            .any(|b| slots_of(b).iter().any(|s| s.0 == 1))
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(100));

    // Release it again while playing.
    src.set_state(gst::State::Null).unwrap();
    caps.static_pad("src").unwrap().unlink(&pad).unwrap();
    mux.release_request_pad(&pad);
    p.remove_many([&src, &caps]).unwrap();
    caps.set_state(gst::State::Null).unwrap();

    let bus = p.bus().unwrap();
    let msg = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(10),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    p.set_state(gst::State::Null).unwrap();
    assert!(
        matches!(msg.map(|m| m.type_()), Some(gst::MessageType::Eos)),
        "pipeline ends normally"
    );
    let out = out.lock().unwrap();
    let mut per_source: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for b in out.iter() {
        for (pad, n, ..) in slots_of(b) {
            per_source.entry(pad).or_default().push(n);
        }
    }
    assert_eq!(per_source[&0], (0..60).collect::<Vec<_>>());
    let added = per_source.get(&1).unwrap_or_else(|| {
        panic!(
            "the added source contributed no frames: {:?}",
            per_source.keys().collect::<Vec<_>>()
        )
    });
    assert_eq!(*added, (0..added.len() as u64).collect::<Vec<_>>());
}

/// Sink pads prefer CUDA memory: an upstream element offering both (GStreamer 1.22's
/// `cudaupload` lists system memory first) is answered CUDA memory first, so it delivers
/// GstCudaMemory. Once a source has negotiated system memory, system memory comes first,
/// so that the other sources match it.
#[test]
fn sink_pads_prefer_cuda_memory_until_a_source_negotiates_system_memory() {
    use gsttrtvision::batch::CUDA_MEMORY_FEATURE;
    common::init();
    let video = |cuda: bool| {
        let b = gst_video::VideoCapsBuilder::new()
            .format(gst_video::VideoFormat::Nv12)
            .width(64)
            .height(48)
            .framerate(gst::Fraction::new(30, 1));
        if cuda {
            b.features([CUDA_MEMORY_FEATURE]).build()
        } else {
            b.build()
        }
    };
    let cuda_at = |caps: &gst::Caps| -> Vec<bool> {
        (0..caps.size())
            .map(|i| caps.features(i).is_some_and(|f| f.contains(CUDA_MEMORY_FEATURE)))
            .collect()
    };
    // What cudaupload offers: system memory (passthrough) first, then CUDA memory.
    let mut offered = video(false);
    offered.merge(video(true));
    let mut h = gst_check::Harness::with_padnames("trtmux", Some("sink_0"), Some("src"));
    let mux = h.element().expect("trtmux");
    let sink_0 = mux.static_pad("sink_0").expect("sink_0");
    let caps = sink_0.query_caps(Some(&offered));
    assert_eq!(cuda_at(&caps), [true, false], "{caps}");
    assert!(
        caps.structure(0).is_some_and(|s| s.get::<i32>("width") == Ok(64)),
        "{caps}"
    );
    assert_eq!(cuda_at(&sink_0.query_caps(None)), [true, false]);
    // Source 0 negotiates system memory (a CPU decoder): later sources get system memory
    // first.
    h.set_src_caps(video(false));
    let batch = h
        .push_and_pull(gst::Buffer::with_size(64 * 48 * 3 / 2).expect("frame"))
        .expect("batch");
    assert_eq!(slots_of(&batch).len(), 1);
    let sink_1 = mux.request_pad_simple("sink_%u").expect("sink_1");
    let caps = sink_1.query_caps(Some(&offered));
    assert_eq!(cuda_at(&caps), [false, true], "{caps}");
    mux.release_request_pad(&sink_1);
}
