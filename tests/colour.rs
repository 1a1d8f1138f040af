//! Colour conversion against an oracle no one here wrote: GStreamer's own `videoconvert`.
//!
//! Random 4:2:0 frames (NV12 and I420) are tagged with BT.601, BT.709 and BT.2020
//! colorimetry in limited and full range. trtpreprocess turns each into an f32 RGB tensor
//! at the frame's own size with no normalisation (`scale=1`, mean 0, std 1); `videoconvert`
//! (no dithering, no chroma resampling, so each pixel takes the chroma of its 2x2 block as
//! our readers do) converts the same samples to 16-bit RGB. Every value must be within one
//! level of videoconvert's. Caps without colorimetry follow GStreamer's default for the
//! frame size (BT.601 for SD, BT.709 for HD).
//!
//! The samples reach videoconvert as 16-bit P016 and leave it as RGBA64: its 8-bit paths
//! round by up to 3 levels (measured with GStreamer 1.22: BT.601 white, Y 235, becomes
//! 253), and from 8-bit input its 16-bit path widens samples as `v * 257` against offsets
//! of `128 << 8`, which shifts chroma by half a level (1.1 levels of blue). So each 8-bit
//! sample is widened to the 16-bit value of the same level (limited range `v << 8`; full
//! range luma `v * 257`, chroma `128 << 8` plus `(v - 128) * 257`, which leaves full-range
//! chroma 0 out of reach: those frames draw chroma from 1..=255); there videoconvert's
//! 16-bit matrix lands within 0.5 levels of the standards' formulas.

mod common;

use gst::prelude::*;
use gst_video::VideoInfo;

const W: u32 = 64;

fn full_range(info: &VideoInfo) -> bool {
    info.colorimetry().range() == gst_video::VideoColorRange::Range0_255
}

/// A deterministic pseudo-random 4:2:0 frame of `info`'s format and size (full range:
/// chroma in 1..=255, see the module documentation).
fn random_frame(info: &VideoInfo, seed: u64) -> gst::Buffer {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut data = vec![0u8; info.size()];
    let chroma_start = info.offset()[1];
    let lowest_chroma = u8::from(full_range(info));
    for (i, b) in data.iter_mut().enumerate() {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *b = (state >> 33) as u8;
        if i >= chroma_start {
            *b = (*b).max(lowest_chroma);
        }
    }
    gst::Buffer::from_mut_slice(data)
}

/// The 16-bit sample of the same level as 8-bit `v` (luma or chroma, limited or full range).
fn widen(v: u8, chroma: bool, full: bool) -> u16 {
    match (full, chroma) {
        (false, _) => (v as u16) << 8,
        (true, false) => v as u16 * 257,
        (true, true) => (32768 + (v as i32 - 128) * 257) as u16,
    }
}

/// The samples of a 4:2:0 `frame` (NV12 or I420) as a P016 frame ([`widen`]) and its caps
/// (same size and colorimetry).
fn as_p016(frame: &gst::Buffer, info: &VideoInfo) -> (gst::Buffer, gst::Caps) {
    let caps = gst_video::VideoInfo::builder(gst_video::VideoFormat::P016Le, info.width(), info.height())
        .colorimetry(&info.colorimetry())
        .build()
        .unwrap()
        .to_caps()
        .unwrap();
    let out_info = VideoInfo::from_caps(&caps).unwrap();
    let src = frame.map_readable().unwrap();
    let (w, h) = (info.width() as usize, info.height() as usize);
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let (ins, ino) = (info.stride(), info.offset());
    let (outs, outo) = (out_info.stride(), out_info.offset());
    let full = full_range(info);
    let mut out = vec![0u8; out_info.size()];
    let mut put = |plane: usize, x: usize, y: usize, v: u8| {
        let i = outo[plane] + y * outs[plane] as usize + x * 2;
        out[i..i + 2].copy_from_slice(&widen(v, plane == 1, full).to_le_bytes());
    };
    for y in 0..h {
        for x in 0..w {
            put(0, x, y, src[ino[0] + y * ins[0] as usize + x]);
        }
    }
    for y in 0..ch {
        for x in 0..cw {
            let (u, v) = match info.format() {
                gst_video::VideoFormat::Nv12 => {
                    let i = ino[1] + y * ins[1] as usize + 2 * x;
                    (src[i], src[i + 1])
                }
                _ => (
                    src[ino[1] + y * ins[1] as usize + x],
                    src[ino[2] + y * ins[2] as usize + x],
                ),
            };
            put(1, 2 * x, y, u);
            put(1, 2 * x + 1, y, v);
        }
    }
    (gst::Buffer::from_mut_slice(out), caps)
}

/// RGB (`w*h*3`, 8-bit scale) of `frame` as videoconvert makes it.
fn videoconvert_rgb(frame: &gst::Buffer, info: &VideoInfo) -> Vec<f32> {
    let (frame, caps) = as_p016(frame, info);
    let pipeline = common::parse(&format!(
        "appsrc name=src format=time ! videoconvert dither=none chroma-mode=none \
         ! video/x-raw,format=RGBA64_LE,width={w},height={h} ! appsink name=sink sync=false",
        w = info.width(),
        h = info.height()
    ));
    let src = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    src.set_caps(Some(&caps));
    let out = common::collect(&pipeline, "sink");
    pipeline.set_state(gst::State::Playing).unwrap();
    src.push_buffer(frame.clone()).unwrap();
    src.end_of_stream().unwrap();
    common::run_to_end(&pipeline, gst::ClockTime::from_seconds(20)).expect("videoconvert runs");
    let bufs = out.lock().unwrap();
    let buf = bufs.first().expect("videoconvert made a frame");
    let rgb_info = VideoInfo::builder(gst_video::VideoFormat::Rgba64Le, info.width(), info.height())
        .build()
        .unwrap();
    let map = buf.map_readable().unwrap();
    let stride = rgb_info.stride()[0] as usize;
    let mut rgb = Vec::with_capacity((info.width() * info.height() * 3) as usize);
    for y in 0..info.height() as usize {
        for px in map[y * stride..][..info.width() as usize * 8].chunks_exact(8) {
            for c in 0..3 {
                rgb.push(u16::from_le_bytes([px[2 * c], px[2 * c + 1]]) as f32 / 257.0);
            }
        }
    }
    rgb
}

/// trtpreprocess's tensor of `frame` (planar RGB, f32, values 0-255).
fn preprocess_rgb(info: &VideoInfo, frame: &gst::Buffer) -> Vec<f32> {
    let (w, h) = (info.width(), info.height());
    let props: [(&str, &dyn gst::glib::value::ToValue); 7] = [
        ("width", &w),
        ("height", &h),
        ("resize", &"stretch"),
        ("scale", &1.0f32),
        ("mean", &"0"),
        ("std", &"1"),
        ("dtype", &"f32"),
    ];
    let mut harness = common::harness("trtpreprocess", &props, None);
    harness.set_src_caps(gsttrtvision::batch::batch_caps());
    let slot = common::frame_slot(0, info.clone(), frame.clone(), None);
    let out = harness
        .push_and_pull(common::batch_buffer(1, vec![slot]))
        .expect("a batch out");
    let meta = out.meta::<gsttrtvision::batch::BatchMeta>().expect("batch meta");
    let batch = meta.batch();
    batch.inputs[0].tensor.to_f32().expect("a host f32 tensor")
}

fn check(caps_str: &str) {
    common::init();
    let caps: gst::Caps = caps_str.parse().unwrap();
    let info = VideoInfo::from_caps(&caps).unwrap();
    let frame = random_frame(&info, info.height() as u64 * 31 + info.width() as u64);
    let want = videoconvert_rgb(&frame, &info);
    let got = preprocess_rgb(&info, &frame);
    let (w, h) = (info.width() as usize, info.height() as usize);
    let plane = w * h;
    assert_eq!(got.len(), 3 * plane, "{caps_str}: tensor size");
    let mut worst = (0f32, 0usize, 0usize);
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                let g = got[c * plane + y * w + x];
                let d = (g - want[(y * w + x) * 3 + c]).abs();
                if d > worst.0 {
                    worst = (d, x, y);
                }
            }
        }
    }
    assert!(
        worst.0 <= 1.0,
        "{caps_str}: trtpreprocess differs from videoconvert by {} levels at ({}, {})",
        worst.0,
        worst.1,
        worst.2
    );
}

fn caps(format: &str, h: u32, colorimetry: Option<&str>) -> String {
    let c = colorimetry
        .map(|c| format!(",colorimetry=(string){c}"))
        .unwrap_or_default();
    format!("video/x-raw,format={format},width={W},height={h},framerate=30/1{c}")
}

#[test]
fn bt601_limited_and_full() {
    for f in ["NV12", "I420"] {
        check(&caps(f, 48, Some("bt601")));
        check(&caps(f, 48, Some("1:4:0:0")));
    }
}

#[test]
fn bt709_limited_and_full() {
    for f in ["NV12", "I420"] {
        check(&caps(f, 48, Some("bt709")));
        check(&caps(f, 48, Some("1:3:5:1")));
    }
}

#[test]
fn bt2020_limited_and_full() {
    for f in ["NV12", "I420"] {
        check(&caps(f, 48, Some("bt2020")));
        check(&caps(f, 48, Some("1:6:0:0")));
    }
}

#[test]
fn caps_without_colorimetry_follow_the_size_default() {
    // 480 lines: BT.601; 720 lines: BT.709 (GStreamer's defaults).
    check(&caps("NV12", 480, None));
    check(&caps("NV12", 720, None));
}
