//! Back-pressure of trtpreprocess's tensor pool on the CPU path (the GPU path uses the same
//! wait, `device_cuda::device_pool_waits_instead_of_cpu_fallback`): with `pool-size` tensors
//! held downstream the element waits for one to come back instead of allocating more,
//! resumes without loss when downstream releases them, posts an error naming the pool when
//! the wait times out, and never blocks a stop.
//!
//! The same holds for trtinfer's output tensors (`output-pool-size`, `pool-timeout`): the
//! YOLO-seg prototypes travel with the batch, so a downstream that holds batches holds
//! them; and a batch waiting for one (holding trtinfer's context lock, with one session
//! or several) is woken by a flush or a stop.

mod common;

use gst::prelude::*;
use gsttrtvision::batch::BatchMeta;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

const CAMERAS: usize = 2;

fn pipeline(frames: u32, pool: &str) -> gst::Pipeline {
    common::init();
    let mut desc = format!(
        "trtmux name=m batch-size={CAMERAS} ! trtpreprocess name=pre width=64 height=48 {pool} \
         ! queue name=q max-size-buffers=32 max-size-bytes=0 max-size-time=0 \
         ! appsink name=out sync=false max-buffers=0"
    );
    for i in 0..CAMERAS {
        desc += &format!(
            " trtscenesrc camera={i} num-buffers={frames} ! video/x-raw,format=NV12,width=160,height=120,framerate=30/1 ! m.sink_{i}"
        );
    }
    common::parse(&desc)
}

fn appsink(p: &gst::Pipeline) -> gst_app::AppSink {
    p.by_name("out")
        .expect("appsink")
        .downcast::<gst_app::AppSink>()
        .expect("an appsink")
}

/// A hash of the batch tensor's bytes.
fn tensor_hash(sample: &gst::Sample) -> u64 {
    let buffer = sample.buffer().expect("a buffer");
    let meta = buffer.meta::<BatchMeta>().expect("batch meta");
    let batch = meta.batch();
    let bytes = batch.inputs[0].tensor.host_bytes().expect("a host tensor");
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// Pulls every sample to EOS (dropping each after hashing it); fails on an error message.
fn drain(p: &gst::Pipeline) -> Vec<u64> {
    let sink = appsink(p);
    let bus = p.bus().expect("bus");
    let mut hashes = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(60)) {
        hashes.push(tensor_hash(&sample));
        assert!(Instant::now() < deadline, "draining took too long");
    }
    if let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
        panic!("error while draining: {msg:?}");
    }
    assert!(sink.is_eos(), "the stream ended with EOS");
    hashes
}

/// Waits until `pre`'s pool has had `n` tensors out at once.
fn wait_for_peak(pre: &gst::Element, n: u32) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while pre.property::<u32>("pool-peak") < n {
        assert!(Instant::now() < deadline, "the pool never had {n} tensors out");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_full_pool_blocks_upstream_and_resumes_without_loss() {
    const FRAMES: u32 = 30;
    // Reference: a pool large enough never to wait, drained as it comes.
    let reference = pipeline(FRAMES, "pool-size=64");
    reference.set_state(gst::State::Playing).expect("plays");
    let expected = drain(&reference);
    reference.set_state(gst::State::Null).expect("stops");
    assert_eq!(expected.len(), FRAMES as usize, "one batch per frame time");

    // pool-size 8 behind a 32-buffer queue: nothing pulls for a while, so the queue and
    // the appsink hold 8 batches and the element waits for a 9th tensor.
    let p = pipeline(FRAMES, "pool-size=8 pool-timeout=0");
    let pre = p.by_name("pre").expect("trtpreprocess");
    p.set_state(gst::State::Playing).expect("plays");
    wait_for_peak(&pre, 8);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(pre.property::<u32>("pool-peak"), 8, "never a 9th tensor");
    let queued: u32 = p.by_name("q").expect("queue").property("current-level-buffers");
    assert!(queued <= 8, "{queued} batches in the queue");
    let got = drain(&p);
    assert!(pre.property::<u64>("pool-waits") >= 1, "upstream waited");
    assert_eq!(
        pre.property::<u32>("pool-peak"),
        8,
        "never more than pool-size out"
    );
    assert_eq!(pre.property::<u64>("cpu-batches"), FRAMES as u64);
    p.set_state(gst::State::Null).expect("stops");
    assert_eq!(got, expected, "the same tensors, none lost, in order");
}

#[test]
fn a_pool_held_past_the_timeout_is_an_error_naming_pool_size() {
    let p = pipeline(100, "pool-size=2 pool-timeout=300");
    p.set_state(gst::State::Playing).expect("plays");
    let bus = p.bus().expect("bus");
    // Nothing pulls: after two batches the third waits 300 ms of PLAYING, then fails.
    let msg = bus
        .timed_pop_filtered(gst::ClockTime::from_seconds(60), &[gst::MessageType::Error])
        .expect("an error message");
    let gst::MessageView::Error(e) = msg.view() else {
        unreachable!()
    };
    let text = e.error().to_string();
    assert!(
        text.contains("pool-size=2") && text.contains("300 ms") && text.contains("held downstream"),
        "{text}"
    );
    assert_eq!(
        msg.src().map(|s| s.name().to_string()).as_deref(),
        Some("pre"),
        "posted by trtpreprocess"
    );
    common::within(20, "stopping after the pool error", move || {
        p.set_state(gst::State::Null).expect("stops");
    });
}

#[test]
fn stopping_wakes_a_batch_waiting_without_a_limit() {
    let p = pipeline(100, "pool-size=2 pool-timeout=0");
    let pre = p.by_name("pre").expect("trtpreprocess");
    p.set_state(gst::State::Playing).expect("plays");
    wait_for_peak(&pre, 2);
    // The streaming thread now waits for a tensor, with no timeout.
    std::thread::sleep(Duration::from_millis(300));
    assert!(p
        .bus()
        .expect("bus")
        .pop_filtered(&[gst::MessageType::Error])
        .is_none());
    common::within(20, "stopping while a batch waits for a tensor", move || {
        p.set_state(gst::State::Null).expect("stops");
    });
}

#[test]
fn pool_properties_have_sane_ranges() {
    common::init();
    let pre = gst::ElementFactory::make("trtpreprocess")
        .build()
        .expect("element");
    assert_eq!(pre.property::<u32>("pool-size"), 8);
    assert_eq!(pre.property::<u32>("pool-timeout"), 10_000);
    let spec = pre.find_property("pool-size").expect("pool-size");
    let spec = spec.downcast_ref::<gst::glib::ParamSpecUInt>().expect("a uint");
    assert_eq!((spec.minimum(), spec.maximum()), (1, 64));
    for stat in ["gpu-batches", "cpu-batches", "pool-waits"] {
        assert_eq!(pre.property::<u64>(stat), 0, "{stat}");
    }
}

/// trtinfer's `pool-timeout` reads as trtpreprocess's: default 10000 ms, 0 accepted (wait
/// without a limit) and read back as 0.
#[test]
fn trtinfer_pool_timeout_zero_means_without_a_limit() {
    common::init();
    let infer = gst::ElementFactory::make("trtinfer").build().expect("element");
    let pre = gst::ElementFactory::make("trtpreprocess")
        .build()
        .expect("element");
    assert_eq!(infer.property::<u32>("pool-timeout"), 10_000);
    for e in [&infer, &pre] {
        let spec = e.find_property("pool-timeout").expect("pool-timeout");
        let spec = spec.downcast_ref::<gst::glib::ParamSpecUInt>().expect("a uint");
        assert_eq!((spec.minimum(), spec.maximum()), (0, 3_600_000), "{}", e.name());
        assert!(
            spec.blurb().is_some_and(
                |b| b.ends_with("0 = wait without a limit (a flush or stop still ends the wait)")
            ),
            "{}: {:?}",
            e.name(),
            spec.blurb()
        );
        e.set_property("pool-timeout", 0u32);
        assert_eq!(e.property::<u32>("pool-timeout"), 0, "{}", e.name());
    }
    infer.set_property("pool-timeout", 250u32);
    assert_eq!(infer.property::<u32>("pool-timeout"), 250);
}

/// A batch's tensor goes back to the pool once the trtinfer of its model has run: queues
/// after trtinfer (a recording branch, a slow encoder) hold batches, not tensors.
#[test]
fn trtinfer_returns_the_tensor_to_the_pool() {
    const FRAMES: u32 = 12;
    common::model("shapes-yolo.onnx");
    if !gsttrtvision::skip::have_ort() {
        return;
    }
    common::init();
    let model = common::cfg("shapes-yolo.toml");
    let mut desc = format!(
        "trtmux name=m batch-size={CAMERAS} ! trtpreprocess name=pre config-file={model} pool-size=2 pool-timeout=2000 \
         ! trtinfer model={model} backend=onnxruntime-cpu \
         ! queue name=q max-size-buffers=32 max-size-bytes=0 max-size-time=0 \
         ! appsink name=out sync=false max-buffers=1"
    );
    for i in 0..CAMERAS {
        desc += &format!(
            " trtscenesrc camera={i} num-buffers={FRAMES} ! video/x-raw,format=NV12,width=160,height=120,framerate=30/1 ! m.sink_{i}"
        );
    }
    let p = common::parse(&desc);
    let pre = p.by_name("pre").expect("trtpreprocess");
    let queue = p.by_name("q").expect("queue");
    p.set_state(gst::State::Playing).expect("plays");
    // Nothing pulls: every batch but the appsink's two reaches the queue, with a pool of 2.
    let deadline = Instant::now() + Duration::from_secs(120);
    while queue.property::<u32>("current-level-buffers") < FRAMES - 2 {
        if let Some(msg) = p.bus().expect("bus").pop_filtered(&[gst::MessageType::Error]) {
            panic!("{msg:?}");
        }
        assert!(
            Instant::now() < deadline,
            "only {} batches queued after trtinfer with pool-size=2 (pool-peak {}, pool-waits {})",
            queue.property::<u32>("current-level-buffers"),
            pre.property::<u32>("pool-peak"),
            pre.property::<u64>("pool-waits")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(pre.property::<u32>("pool-peak") <= 2);
    let sink = appsink(&p);
    let mut batches = 0;
    while let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(60)) {
        let buffer = sample.buffer().expect("a buffer");
        let meta = buffer.meta::<BatchMeta>().expect("batch meta");
        assert!(meta.batch().inputs.is_empty(), "the tensor left with the batch");
        assert_eq!(meta.batch().models.len(), 1, "trtinfer ran");
        batches += 1;
    }
    assert!(sink.is_eos());
    assert_eq!(batches, FRAMES);
    p.set_state(gst::State::Null).expect("stops");
}

/// A second trtinfer of the same model finds the input released by the first, and says how
/// to keep it; with `keep-input=true` on the first, both run.
#[test]
fn a_second_trtinfer_of_one_model_needs_keep_input() {
    common::model("shapes-yolo.onnx");
    if !gsttrtvision::skip::have_ort() {
        return;
    }
    common::init();
    let model = common::cfg("shapes-yolo.toml");
    let run = |keep: bool| {
        let p = common::parse(&format!(
            "trtmux name=m batch-size=1 ! trtpreprocess config-file={model} \
             ! trtinfer model={model} backend=onnxruntime-cpu keep-input={keep} \
             ! trtinfer name=second model={model} backend=onnxruntime-cpu ! fakesink \
             trtscenesrc camera=0 num-buffers=3 ! video/x-raw,format=NV12,width=160,height=120 ! m.sink_0"
        ));
        common::run_to_end(&p, gst::ClockTime::from_seconds(120))
    };
    let err = run(false).expect_err("the second trtinfer has no input");
    assert!(
        err.contains("keep-input=true") && err.contains("shapes-yolo"),
        "{err}"
    );
    run(true).expect("both trtinfer elements run with keep-input=true");
}

/// trtmux (2 cameras, 320x240) -> trtpreprocess (never the bound) -> trtinfer (YOLO-seg on
/// ONNX Runtime CPU, `infer` properties) -> a 32-buffer queue -> appsink.
fn infer_pipeline(frames: u32, infer: &str) -> Option<gst::Pipeline> {
    common::model("shapes-yolo-seg.onnx");
    if !gsttrtvision::skip::have_ort() {
        return None;
    }
    common::init();
    let model = common::cfg("shapes-yolo-seg.toml");
    let mut desc = format!(
        "trtmux name=m batch-size={CAMERAS} ! trtpreprocess config-file={model} pool-size=64 \
         ! trtinfer name=infer model={model} backend=onnxruntime-cpu {infer} \
         ! queue name=q max-size-buffers=32 max-size-bytes=0 max-size-time=0 \
         ! appsink name=out sync=false max-buffers=0"
    );
    for i in 0..CAMERAS {
        desc += &format!(
            " trtscenesrc camera={i} num-buffers={frames} ! video/x-raw,format=NV12,width=320,height=240,framerate=30/1 ! m.sink_{i}"
        );
    }
    Some(common::parse(&desc))
}

/// trtinfer's output pool counters (from its `stats`): (peak, waits).
fn output_pool(infer: &gst::Element) -> (u32, u64) {
    let st = infer.property::<gst::Structure>("stats");
    (
        st.get::<u32>("output-pool-peak").expect("output-pool-peak"),
        st.get::<u64>("output-pool-waits").expect("output-pool-waits"),
    )
}

fn wait_for_output_peak(infer: &gst::Element, n: u32) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while output_pool(infer).0 < n {
        assert!(
            Instant::now() < deadline,
            "trtinfer never had {n} output tensors out"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A hash of each batch's detections and mask prototypes, pulled to EOS.
fn drain_results(p: &gst::Pipeline) -> Vec<u64> {
    let sink = appsink(p);
    let mut hashes = Vec::new();
    while let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(60)) {
        let buffer = sample.buffer().expect("a buffer");
        let meta = buffer.meta::<BatchMeta>().expect("batch meta");
        let batch = meta.batch();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for slot in &batch.slots {
            for d in &slot.results.detections {
                (
                    d.class_id,
                    d.confidence.to_bits(),
                    d.bbox.x0.to_bits(),
                    d.bbox.y1.to_bits(),
                )
                    .hash(&mut h);
            }
        }
        assert_eq!(batch.outputs.len(), 1, "one prototype tensor per batch");
        let protos = match &batch.outputs[0].masks {
            gsttrtvision::batch::MaskTensor::Prototypes(t) => t.host_bytes().expect("host prototypes"),
            other => panic!("prototypes expected, got {other:?}"),
        };
        protos.hash(&mut h);
        hashes.push(h.finish());
    }
    if let Some(msg) = p.bus().expect("bus").pop_filtered(&[gst::MessageType::Error]) {
        panic!("error while draining: {msg:?}");
    }
    assert!(sink.is_eos(), "the stream ended with EOS");
    hashes
}

#[test]
fn trtinfer_output_pool_holds_its_bound_and_upstream_waits() {
    const FRAMES: u32 = 20;
    let Some(reference) = infer_pipeline(FRAMES, "output-pool-size=64") else {
        return;
    };
    reference.set_state(gst::State::Playing).expect("plays");
    let expected = drain_results(&reference);
    reference.set_state(gst::State::Null).expect("stops");
    assert_eq!(expected.len(), FRAMES as usize);

    // 4 output tensors per output, nothing pulled for a while: the queue and the appsink
    // hold 4 batches and trtinfer waits (pool-timeout=0: without a limit) for a 5th
    // prototype tensor.
    let p = infer_pipeline(FRAMES, "output-pool-size=4 pool-timeout=0").expect("ORT found above");
    let infer = p.by_name("infer").expect("trtinfer");
    p.set_state(gst::State::Playing).expect("plays");
    wait_for_output_peak(&infer, 4);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(output_pool(&infer).0, 4, "never a 5th output tensor");
    let queued: u32 = p.by_name("q").expect("queue").property("current-level-buffers");
    assert!(queued <= 4, "{queued} batches in the queue");
    let got = drain_results(&p);
    let (peak, waits) = output_pool(&infer);
    assert_eq!(peak, 4, "never more than output-pool-size out");
    assert!(waits >= 1, "upstream waited");
    p.set_state(gst::State::Null).expect("stops");
    assert_eq!(got, expected, "the same results, none lost, in order");
}

#[test]
fn trtinfer_output_pool_held_past_the_timeout_is_an_error() {
    let Some(p) = infer_pipeline(100, "output-pool-size=2 pool-timeout=300") else {
        return;
    };
    p.set_state(gst::State::Playing).expect("plays");
    let msg = p
        .bus()
        .expect("bus")
        .timed_pop_filtered(gst::ClockTime::from_seconds(120), &[gst::MessageType::Error])
        .expect("an error message");
    let gst::MessageView::Error(e) = msg.view() else {
        unreachable!()
    };
    let text = e.error().to_string();
    assert!(
        text.contains("all 2 pooled tensors")
            && text.contains("300 ms")
            && text.contains("output-pool-size")
            && text.contains("host tensors of output 'output1'"),
        "{text}"
    );
    assert_eq!(msg.src().map(|s| s.name().to_string()).as_deref(), Some("infer"));
    common::within(20, "stopping after the output pool error", move || {
        p.set_state(gst::State::Null).expect("stops");
    });
}

/// A playing pipeline whose trtinfer (returned too), with `sessions`, has a batch waiting
/// for an output tensor (both of its pool held downstream; the pool timeout is 10 minutes):
/// the streaming thread waits (for a prototype tensor, or for a session waiting for one)
/// with trtinfer's context lock held. `None` when the test is skipped.
fn waiting_for_an_output_tensor(sessions: u32) -> Option<(gst::Pipeline, gst::Element)> {
    let p = infer_pipeline(
        100,
        &format!("output-pool-size=2 pool-timeout=600000 sessions={sessions}"),
    )?;
    let infer = p.by_name("infer").expect("trtinfer");
    p.set_state(gst::State::Playing).expect("plays");
    wait_for_output_peak(&infer, 2);
    std::thread::sleep(Duration::from_millis(300));
    Some((p, infer))
}

/// With `sessions`, a batch waits for an output tensor (the pool timeout is 10 minutes);
/// FLUSH_START sent to trtinfer returns at once and reaches downstream (which drops what
/// it held), no error is posted, and the stop that follows is prompt too.
fn flush_wakes_a_waiting_batch(sessions: u32) {
    let Some((p, infer)) = waiting_for_an_output_tensor(sessions) else {
        return;
    };
    let sink = infer.static_pad("sink").expect("sink pad");
    let began = Instant::now();
    common::within(
        20,
        "FLUSH_START while a batch waits for an output tensor",
        move || {
            assert!(sink.send_event(gst::event::FlushStart::new()));
        },
    );
    assert!(began.elapsed() < Duration::from_secs(5), "{:?}", began.elapsed());
    let queued: u32 = p.by_name("q").expect("queue").property("current-level-buffers");
    assert_eq!(queued, 0, "the flush reached the queue");
    assert!(
        p.bus()
            .expect("bus")
            .pop_filtered(&[gst::MessageType::Error])
            .is_none(),
        "a flush is no error"
    );
    common::within(20, "stopping after the flush", move || {
        p.set_state(gst::State::Null).expect("stops");
    });
}

#[test]
fn flush_start_wakes_trtinfer_waiting_for_an_output_tensor() {
    flush_wakes_a_waiting_batch(1);
}

#[test]
fn flush_start_wakes_trtinfer_waiting_for_a_session() {
    flush_wakes_a_waiting_batch(2);
}

/// A stop while a batch waits for an output tensor, without a flush first.
#[test]
fn stopping_wakes_trtinfer_waiting_for_an_output_tensor() {
    for sessions in [1, 2] {
        let Some((p, _)) = waiting_for_an_output_tensor(sessions) else {
            return;
        };
        common::within(
            20,
            "stopping while a batch waits for an output tensor",
            move || {
                p.set_state(gst::State::Null).expect("stops");
            },
        );
    }
}
