//! `trttiler` through a `gst_check::Harness`: caps negotiation (system memory, CUDA memory
//! where the build and the machine allow it), tiles kept for absent sources, the grid
//! starting again from black when it changes, and the `device` / `gpu-frames` properties.
//! The GPU composition itself is compared with this CPU mosaic in tests/device_tiler.rs.

mod common;

use gst::prelude::*;
use gsttrtvision::batch::{self, FrameSlot, CUDA_MEMORY_FEATURE};

fn cuda_on_this_machine() -> bool {
    #[cfg(feature = "cuda")]
    return gsttrtvision::cuda::cuda_available();
    #[cfg(not(feature = "cuda"))]
    false
}

fn has_cuda_feature(caps: &gst::CapsRef, i: usize) -> bool {
    caps.features(i).is_some_and(|f| f.contains(CUDA_MEMORY_FEATURE))
}

/// A solid RGBA frame of source `pad` in a slot.
fn slot(pad: u32, w: u32, h: u32, rgb: [u8; 3]) -> FrameSlot {
    let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgba, w, h)
        .build()
        .expect("info");
    let mut bytes = vec![255u8; info.size()];
    for px in bytes.chunks_exact_mut(4) {
        px[..3].copy_from_slice(&rgb);
    }
    common::frame_slot(
        pad,
        info,
        gst::Buffer::from_mut_slice(bytes),
        Some(gst::ClockTime::from_mseconds(40)),
    )
}

/// A started harness around `trttiler` with `props`, fed system-memory batches and
/// producing RGBA.
fn harness(props: &[(&str, &dyn ToValue)]) -> gst_check::Harness {
    let mut h = common::harness("trttiler", props, None);
    h.set_src_caps(batch::batch_caps());
    h.set_sink_caps(
        gst_video::VideoCapsBuilder::new()
            .format(gst_video::VideoFormat::Rgba)
            .build(),
    );
    h.play();
    h
}

/// RGB at `(x, y)` of an RGBA output buffer of width `w`.
fn rgb(buf: &gst::Buffer, w: usize, x: usize, y: usize) -> [u8; 3] {
    let map = buf.map_readable().expect("readable");
    let i = (y * w + x) * 4;
    [map[i], map[i + 1], map[i + 2]]
}

#[test]
fn pad_templates_and_caps_queries() {
    common::init();
    let e = gst::ElementFactory::make("trttiler").build().expect("trttiler");
    let sink = e.static_pad("sink").expect("sink");
    let src = e.static_pad("src").expect("src");
    // Batches in either memory are accepted (the CPU path reads CUDA frames too).
    let templ = sink.pad_template_caps();
    assert!(
        has_cuda_feature(&templ, 0) && !has_cuda_feature(&templ, 1),
        "{templ}"
    );
    // The output offers CUDA memory only in builds with the `cuda` feature.
    let templ = src.pad_template_caps();
    assert_eq!(has_cuda_feature(&templ, 0), cfg!(feature = "cuda"), "{templ}");
    // Output caps (unlinked: for the sink template's batches): CUDA memory only where a
    // GPU can hold the frames.
    let caps = src.query_caps(None);
    assert!(!caps.is_empty());
    let cuda: Vec<bool> = (0..caps.size()).map(|i| has_cuda_feature(&caps, i)).collect();
    assert_eq!(cuda.iter().any(|&c| c), cuda_on_this_machine(), "{caps}");
    let s = caps.structure(0).expect("structure");
    assert_eq!(s.get::<i32>("width").ok(), Some(1280));
    assert_eq!(s.get::<i32>("height").ok(), Some(720));
    // Without a GPU (or without the feature) a CUDA output cannot be negotiated.
    let cuda_out = gst_video::VideoCapsBuilder::new()
        .features([CUDA_MEMORY_FEATURE])
        .format(gst_video::VideoFormat::Nv12)
        .build();
    assert_eq!(
        src.query_caps(Some(&cuda_out)).is_empty(),
        !cuda_on_this_machine()
    );
    // Batches in either memory upstream, those of the output's memory first (unlinked:
    // the src template, CUDA memory first in builds with the feature).
    let caps = sink.query_caps(None);
    assert_eq!(caps.size(), 2, "{caps}");
    assert_eq!(has_cuda_feature(&caps, 0), cfg!(feature = "cuda"), "{caps}");
    assert_ne!(has_cuda_feature(&caps, 0), has_cuda_feature(&caps, 1), "{caps}");
    assert_eq!(common::enum_nick(&e, "device"), "auto");
    assert_eq!(e.property::<u64>("gpu-frames"), 0);
    assert_eq!(e.property::<Option<String>>("cpu-reason"), None, "no batch yet");
    e.set_property_from_str("device", "cpu");
    assert_eq!(common::enum_nick(&e, "device"), "cpu");
}

#[test]
fn cuda_batches_negotiate_and_compose_on_the_cpu_path() {
    // A batch announced in CUDA memory (here holding system-memory frames, as a CPU
    // fallback would see them): accepted, and composed like any other.
    let mut h = harness(&[
        ("width", &64u32),
        ("height", &32u32),
        ("columns", &2u32),
        ("rows", &1u32),
    ]);
    h.set_src_caps(
        gst::Caps::builder(batch::BATCH_MEDIA_TYPE)
            .features([CUDA_MEMORY_FEATURE])
            .build(),
    );
    let out = h
        .push_and_pull(common::batch_buffer(
            2,
            vec![slot(0, 32, 32, [200, 10, 20]), slot(1, 32, 32, [5, 6, 7])],
        ))
        .expect("mosaic");
    let caps = h.sinkpad().and_then(|p| p.current_caps()).expect("caps");
    assert!(
        !has_cuda_feature(&caps, 0),
        "the harness asked for system memory: {caps}"
    );
    assert_eq!(rgb(&out, 64, 16, 16), [200, 10, 20]);
    assert_eq!(rgb(&out, 64, 48, 16), [5, 6, 7]);
    let e = h.element().expect("element");
    assert_eq!(e.property::<u64>("gpu-frames"), 0);
    // Why the CPU composed: no CUDA context or build without CUDA here, system-memory
    // frames on a GPU machine; never the device setting.
    let reason = e.property::<Option<String>>("cpu-reason").expect("a reason");
    assert_ne!(reason, "device=cpu");
    // `device` takes effect at the next batch, also while playing, and composes the
    // same mosaic: only source 1 in this batch, source 0 keeps its tile.
    for (device, why) in [("cpu", Some("device=cpu")), ("auto", None)] {
        e.set_property_from_str("device", device);
        let out = h
            .push_and_pull(common::batch_buffer(2, vec![slot(1, 32, 32, [1, 2, 3])]))
            .expect("mosaic");
        assert_eq!(rgb(&out, 64, 16, 16), [200, 10, 20], "device={device}");
        assert_eq!(rgb(&out, 64, 48, 16), [1, 2, 3], "device={device}");
        let got = e.property::<Option<String>>("cpu-reason").expect("a reason");
        match why {
            Some(w) => assert_eq!(got, w),
            None => assert_eq!(got, reason, "device=auto: the first reason again"),
        }
    }
}

#[test]
fn absent_sources_keep_their_last_frame() {
    for device in ["auto", "cpu"] {
        // Two 32x32 tiles and one black column right of them (65 = 2 * 32 + 1).
        let mut h = harness(&[
            ("width", &65u32),
            ("height", &32u32),
            ("columns", &2u32),
            ("rows", &1u32),
            ("device", &device),
        ]);
        let out = h
            .push_and_pull(common::batch_buffer(
                2,
                vec![slot(0, 32, 32, [255, 0, 0]), slot(1, 16, 8, [0, 0, 255])],
            ))
            .expect("mosaic");
        assert_eq!(rgb(&out, 65, 16, 16), [255, 0, 0]);
        // 16x8 letterboxed into 32x32: 32x16 in the middle, black bars above and below.
        assert_eq!(rgb(&out, 65, 48, 16), [0, 0, 255]);
        assert_eq!(rgb(&out, 65, 48, 4), [0, 0, 0]);
        assert_eq!(rgb(&out, 65, 64, 16), [0, 0, 0]);
        assert_eq!(out.duration(), Some(gst::ClockTime::from_mseconds(40)));
        // Only source 0 in the next batch: source 1 keeps its tile.
        let out = h
            .push_and_pull(common::batch_buffer(2, vec![slot(0, 32, 32, [0, 255, 0])]))
            .expect("mosaic");
        assert_eq!(rgb(&out, 65, 16, 16), [0, 255, 0], "{device}");
        assert_eq!(rgb(&out, 65, 48, 16), [0, 0, 255], "{device}");
        // Source 3 lands in tile 3 % 2 = 1.
        let out = h
            .push_and_pull(common::batch_buffer(2, vec![slot(3, 32, 32, [9, 9, 9])]))
            .expect("mosaic");
        assert_eq!(rgb(&out, 65, 16, 16), [0, 255, 0]);
        assert_eq!(rgb(&out, 65, 48, 16), [9, 9, 9]);
        let e = h.element().expect("element");
        assert_eq!(e.property::<u64>("gpu-frames"), 0);
        let reason = e.property::<Option<String>>("cpu-reason").expect("a reason");
        let want = if device == "cpu" {
            "device=cpu"
        } else if cfg!(feature = "cuda") {
            "the batches are in system memory"
        } else {
            "the plugin was built without CUDA support"
        };
        assert!(reason.starts_with(want), "{reason}");
    }
}

#[test]
fn a_new_grid_starts_from_black() {
    // rows = columns = 0: the grid follows the batch size.
    let mut h = harness(&[("width", &64u32), ("height", &64u32)]);
    let red = (0..4).map(|i| slot(i, 32, 32, [255, 0, 0])).collect();
    let out = h.push_and_pull(common::batch_buffer(4, red)).expect("mosaic");
    for (x, y) in [(16, 16), (48, 16), (16, 48), (48, 48)] {
        assert_eq!(rgb(&out, 64, x, y), [255, 0, 0]);
    }
    // Batch size 2: a 1x2 grid of 32x64 tiles; the right tile has no frame yet.
    let out = h
        .push_and_pull(common::batch_buffer(2, vec![slot(0, 32, 32, [0, 0, 255])]))
        .expect("mosaic");
    assert_eq!(rgb(&out, 64, 16, 32), [0, 0, 255]);
    assert_eq!(rgb(&out, 64, 16, 4), [0, 0, 0], "letterbox bar");
    assert_eq!(
        rgb(&out, 64, 48, 16),
        [0, 0, 0],
        "no stale pixels of the 2x2 grid"
    );
}

#[test]
fn buffers_without_batch_meta_are_an_error() {
    let mut h = harness(&[]);
    assert_eq!(h.push(gst::Buffer::new()), Err(gst::FlowError::Error));
}
