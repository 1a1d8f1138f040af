//! Device tests of several GPUs in one machine: each trtpreprocess keeps the CUDA context of
//! the GPU its `device-id` names, a frame of another GPU is refused with an error naming
//! both devices, and with `allow-peer-copy=true` it is preprocessed to the same tensor as
//! on its own GPU.
//!
//! Built only with `--features cuda`; every test is `#[ignore]`d and runs with
//! `--include-ignored` (scripts/device/run-tests.sh). Without a GPU that is a failure, as in
//! the other device tests; with one GPU each test prints `SKIPPED:` and the reason, since
//! nothing of what it checks exists there.
#![cfg(feature = "cuda")]

mod common;

use gst::prelude::*;
use gsttrtvision::cuda::{self, copy_device_to_host, device_lease, device_of_pointer, DeviceContext};
use gsttrtvision::tensor::Tensor;

/// The number of GPUs, or `None` (with the `SKIPPED:` line) when fewer than two.
fn two_gpus() -> Option<i32> {
    let info = cuda::probe().unwrap_or_else(|e| panic!("this device test needs CUDA GPUs: {e}"));
    if info.device_count < 2 {
        eprintln!(
            "SKIPPED: {} CUDA device(s) here; the multi-GPU tests need 2 or more",
            info.device_count
        );
        return None;
    }
    common::init();
    Some(info.device_count)
}

/// One camera uploaded to GPU `upload`, preprocessed by a trtpreprocess with `props`; the
/// tensors (downloaded from their GPU) or the pipeline's error message.
fn run(upload: u32, props: &str, frames: u32) -> (gst::Pipeline, Result<Vec<Vec<u8>>, String>) {
    let desc = format!(
        "trtscenesrc camera=0 num-buffers={frames} \
         ! video/x-raw,format=NV12,width=160,height=120,framerate=30/1,colorimetry=bt601 \
         ! cudaupload cuda-device-id={upload} ! video/x-raw(memory:CUDAMemory) ! m.sink_0 \
         trtmux name=m batch-size=1 ! trtpreprocess name=pre width=64 height=48 dtype=f32 {props} \
         ! appsink name=out sync=false"
    );
    let pipeline = common::parse(&desc);
    let sink = pipeline
        .by_name("out")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    let bus = pipeline.bus().unwrap();
    let error = |bus: &gst::Bus| {
        bus.pop_filtered(&[gst::MessageType::Error])
            .map(|m| match m.view() {
                gst::MessageView::Error(e) => e.error().to_string(),
                _ => unreachable!(),
            })
    };
    if pipeline.set_state(gst::State::Playing).is_err() {
        let e = error(&bus).unwrap_or_else(|| "the pipeline did not start".into());
        return (pipeline, Err(e));
    }
    let mut tensors = Vec::new();
    while let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(30)) {
        let buf = sample.buffer().unwrap();
        let meta = buf.meta::<gsttrtvision::batch::BatchMeta>().expect("batch meta");
        tensors.push(host_bytes(&meta.batch().inputs[0].tensor));
    }
    let result = match error(&bus) {
        Some(e) => Err(e),
        None => Ok(tensors),
    };
    (pipeline, result)
}

fn host_bytes(t: &Tensor) -> Vec<u8> {
    if let Some(b) = t.host_bytes() {
        return b.to_vec();
    }
    let lease = device_lease(t).expect("a device tensor of the preprocessor");
    lease.wait().expect("kernel completes");
    let dev = device_of_pointer(lease.ptr()).expect("the tensor's GPU");
    let ctx = DeviceContext::primary(dev).expect("the tensor's GPU");
    let mut host = vec![0u8; t.len_bytes()];
    copy_device_to_host(&ctx, lease.ptr(), lease.len(), &mut host).expect("download");
    host
}

/// The device of the `gst.cuda.context` an element answers a context query with.
fn context_device(element: &gst::Element) -> Option<u32> {
    let mut q = gst::query::Context::new("gst.cuda.context");
    if !element.query(&mut q) {
        return None;
    }
    q.context()?.structure().get::<u32>("cuda-device-id").ok()
}

#[test]
#[ignore = "needs 2 or more CUDA GPUs: run with --include-ignored, as scripts/device/run-tests.sh does"]
fn device_each_element_keeps_its_gpus_context() {
    let Some(n) = two_gpus() else { return };
    for dev in 0..n.min(4) as u32 {
        let (pipeline, res) = run(dev, &format!("device-id={dev}"), 8);
        let tensors = res.unwrap_or_else(|e| panic!("device {dev}: {e}"));
        assert_eq!(tensors.len(), 8, "device {dev}: every frame preprocessed");
        let pre = pipeline.by_name("pre").unwrap();
        assert_eq!(context_device(&pre), Some(dev), "trtpreprocess device-id={dev}");
        assert_eq!(pre.property::<u64>("gpu-batches"), 8, "device {dev}: on the GPU");
        pipeline.set_state(gst::State::Null).unwrap();
    }
}

#[test]
#[ignore = "needs 2 or more CUDA GPUs: run with --include-ignored, as scripts/device/run-tests.sh does"]
fn device_foreign_gpu_frame_is_refused() {
    if two_gpus().is_none() {
        return;
    }
    let (pipeline, res) = run(1, "device-id=0", 4);
    pipeline.set_state(gst::State::Null).unwrap();
    let e = res.expect_err("a frame of GPU 1 at an element on GPU 0 must be an error");
    assert!(e.contains("CUDA device 1"), "{e}");
    assert!(e.contains("device 0"), "{e}");
    assert!(e.contains("allow-peer-copy"), "{e}");
}

#[test]
#[ignore = "needs 2 or more CUDA GPUs: run with --include-ignored, as scripts/device/run-tests.sh does"]
fn device_peer_copy_gives_the_same_tensors() {
    if two_gpus().is_none() {
        return;
    }
    let (p, own) = run(1, "device-id=1", 8);
    p.set_state(gst::State::Null).unwrap();
    let own = own.expect("preprocessing on the frame's own GPU");
    let (p, peer) = run(1, "device-id=0 allow-peer-copy=true", 8);
    let pre = p.by_name("pre").unwrap();
    let gpu_batches = pre.property::<u64>("gpu-batches");
    p.set_state(gst::State::Null).unwrap();
    let peer = match peer {
        Ok(t) => t,
        // Without peer access between the two GPUs the element must say so.
        Err(e) if e.contains("peer access") => {
            eprintln!("SKIPPED: no peer access between GPU 0 and GPU 1 here: {e}");
            return;
        }
        Err(e) => panic!("allow-peer-copy=true: {e}"),
    };
    assert_eq!(gpu_batches, 8, "the peer frames were preprocessed on GPU 0");
    assert_eq!(peer.len(), own.len());
    for (i, (a, b)) in peer.iter().zip(&own).enumerate() {
        assert_eq!(a, b, "batch {i}: GPU 0 reading GPU 1's frame differs from GPU 1");
    }
}
