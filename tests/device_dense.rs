//! Device tests of dense outputs on the GPU: the colour-map layer of the CUDA overlay
//! against the CPU canvas, the GPU summary of dense maps against the CPU one, trtoverlay
//! drawing dense maps on GstCudaMemory, a depth chain whose maps stay on the device, and a
//! timing line.
//!
//! Built only with `--features cuda`; every test is `#[ignore]`d (reported as ignored by
//! `cargo test --features cuda` on machines without a GPU) and runs with
//! `--include-ignored`, where a missing GPU is a failure.
#![cfg(feature = "cuda")]

mod common;

use gsttrtvision::video::color::YuvCoefficients;
use std::sync::Arc;
use std::time::Instant;

use common::cuda::{cuda_pool_buffer, device, plane_geometry, Rng, TestFrame};

use gst::prelude::*;
use gst_video::prelude::*;
use gst_video::VideoFormat;
use gsttrtvision::cuda::{self, CudaContext, CudaFrame, DeviceBuffer, DeviceContext};
use gsttrtvision::geometry::{BoxF, LetterboxTransform};
use gsttrtvision::ops::dense::cuda::{device_row, download_channel0, DenseSummarizer};
use gsttrtvision::ops::overlay::draw::colormap::Colormap;
use gsttrtvision::ops::overlay::draw::Canvas;
use gsttrtvision::ops::overlay::{draw_frame, DenseDraw, OverlayCommands, OverlayStyle};
use gsttrtvision::results::{DenseMap, Detection};
use gsttrtvision::tensor::{DType, Tensor, TensorStorage};
use gsttrtvision::video::Paint;

/// A device tensor holding `bytes` (the buffer lives as long as the tensor).
fn device_tensor(ctx: &DeviceContext, name: &str, dtype: DType, shape: Vec<usize>, bytes: &[u8]) -> Tensor {
    let buf = DeviceBuffer::new(ctx, bytes.len()).expect("device tensor");
    buf.copy_from_host(bytes).expect("upload");
    Tensor {
        name: name.into(),
        dtype,
        shape,
        storage: TensorStorage::Device {
            ptr: buf.ptr(),
            len: bytes.len(),
            keepalive: Arc::new(buf),
        },
    }
}

/// Random values in [-5, 15) with a few NaN and infinities, rounded to f16 when `f16`
/// (so that the CPU reference sees what the GPU reads); and their bytes in `dtype`.
fn random_values(rng: &mut Rng, n: usize, f16: bool) -> (Vec<f32>, Vec<u8>) {
    let values: Vec<f32> = (0..n)
        .map(|_| match rng.below(64) {
            0 => f32::NAN,
            1 => f32::INFINITY,
            2 => f32::NEG_INFINITY,
            _ => rng.below(20_000) as f32 / 1000.0 - 5.0,
        })
        .map(|v| if f16 { half::f16::from_f32(v).to_f32() } else { v })
        .collect();
    let bytes = encode(&values, f16);
    (values, bytes)
}

/// `values` as f16 or f32 bytes.
fn encode(values: &[f32], f16: bool) -> Vec<u8> {
    if f16 {
        values
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_ne_bytes())
            .collect()
    } else {
        values.iter().flat_map(|v| v.to_ne_bytes()).collect()
    }
}

/// Where a test map's values live.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Source {
    Host,
    DeviceF32,
    DeviceF16,
}

/// A 2-row batch `[2, c, mh, mw]` of random values placed like a `w x h` frame into a model
/// input of random size; returns the map of row 1 (host or device, per `source`) and the
/// f32 values of its channel 0 (the CPU reference).
fn test_map(ctx: &DeviceContext, rng: &mut Rng, w: u32, h: u32, source: Source) -> (DenseMap, Vec<f32>) {
    let (mw, mh) = (1 + rng.below(330) as usize, 1 + rng.below(330) as usize);
    let c = 1 + rng.below(2) as usize;
    let (model_w, model_h) = (16 + rng.below(1000) as u32, 16 + rng.below(1000) as u32);
    let transform = if rng.below(3) == 0 {
        LetterboxTransform::stretch(w, h, model_w, model_h)
    } else {
        LetterboxTransform::letterbox(w, h, model_w, model_h)
    };
    let f16 = source == Source::DeviceF16;
    let (values, bytes) = random_values(rng, 2 * c * mh * mw, f16);
    let channel0 = values[c * mh * mw..][..mh * mw].to_vec();
    let shape = vec![2, c, mh, mw];
    let map = match source {
        Source::Host => DenseMap::host(
            Arc::from("depth"),
            Tensor::from_f32("depth", shape, &values),
            1,
            (c, mh, mw),
            transform,
        ),
        Source::DeviceF32 | Source::DeviceF16 => {
            let dtype = if f16 { DType::F16 } else { DType::F32 };
            let t = device_tensor(ctx, "depth", dtype, shape, &bytes);
            let mut map = DenseMap::host(Arc::from("depth"), t.clone(), 1, (c, mh, mw), transform);
            map.device = Some(device_row(&t, 1).expect("device row"));
            map
        }
    };
    (map, channel0)
}

/// Boxes with labels over a `w x h` frame (drawn over the colour map).
fn boxes(rng: &mut Rng, w: u32, h: u32, n: usize) -> Vec<Detection> {
    (0..n)
        .map(|i| {
            let (x0, y0) = (rng.below(w as u64) as f32, rng.below(h as u64) as f32);
            let bbox = BoxF::new(
                x0,
                y0,
                x0 + 5.0 + rng.below(200) as f32,
                y0 + 5.0 + rng.below(150) as f32,
            );
            Detection::new(Arc::from("det"), i as u32, Arc::from("obj"), 0.5, bbox)
        })
        .collect()
}

/// The value range the CPU would use: the map's own (CPU) minimum and maximum, a fixed
/// one, or an empty one.
fn range_for(k: usize, map: &DenseMap, channel0: &[f32]) -> (f32, f32) {
    match k % 3 {
        0 => {
            let host = DenseMap::host(
                map.model.clone(),
                Tensor::from_f32("c0", vec![1, 1, map.height, map.width], channel0),
                0,
                (1, map.height, map.width),
                map.transform,
            );
            host.stats().map_or((0.0, 1.0), |(lo, _, hi)| (lo, hi))
        }
        1 => (-1.0, 9.5),
        _ => (4.0, 4.0),
    }
}

/// GPU colour maps (host, device f32 and device f16 maps, several formats, odd sizes and
/// strides, letterbox and stretch placements, value ranges) under boxes and labels, against
/// the CPU canvas: every byte within 2 levels (expected: equal).
#[test]
#[ignore = "needs a CUDA GPU: run with --include-ignored, as scripts/device/run-tests.sh does"]
fn dense_colormap_gpu_matches_cpu() {
    let ctx = device();
    let mut overlay = gsttrtvision::ops::overlay::cuda::CudaOverlay::new(&ctx).expect("CUDA overlay");
    let mut rng = Rng(0xd3a5e);
    let style = OverlayStyle::default();
    let cases = [
        (VideoFormat::Nv12, 1920, 1080, false),
        (VideoFormat::Nv12, 641, 479, true),
        (VideoFormat::I420, 641, 479, false),
        (VideoFormat::Rgba, 1280, 720, false),
        (VideoFormat::Rgba, 641, 479, true),
        (VideoFormat::Bgrx, 333, 211, false),
        (VideoFormat::Rgbx, 64, 48, false),
        (VideoFormat::Bgra, 7, 5, false),
        (VideoFormat::Rgb, 321, 241, true),
        (VideoFormat::Nv12, 1, 1, false),
        (VideoFormat::Nv12, 97, 3, false),
    ];
    let sources = [Source::Host, Source::DeviceF32, Source::DeviceF16];
    for (round, colormap) in [Colormap::Turbo, Colormap::Jet, Colormap::Gray]
        .into_iter()
        .enumerate()
    {
        let lut: Vec<Paint> = colormap.lut();
        let alpha = [0.5, 1.0, 0.27][round];
        let mut list = OverlayCommands::default();
        list.set_dense_lut(&lut);
        let (mut frames, mut keep) = (Vec::new(), Vec::new());
        for (i, &(format, w, h, odd)) in cases.iter().enumerate() {
            let mut f = TestFrame::new(&ctx, &mut rng, format, w, h, odd).expect("device frame");
            let source = sources[(i + round) % 3];
            let (map, channel0) = test_map(&ctx, &mut rng, w, h, source);
            let range = range_for(i + round, &map, &channel0);
            // Every fourth frame has boxes only, to mix frames with and without a layer.
            let with_dense = i % 4 != 3;
            let dets = boxes(&mut rng, w, h, 1 + i % 4);
            let mut canvas = Canvas::from_pixels(f.pixels());
            if with_dense {
                canvas.dense_values(&map, &channel0, &lut, range, alpha, &mut Vec::new());
            }
            draw_frame(&mut canvas, &dets, &style, &mut String::new());
            let dense = with_dense.then_some(DenseDraw {
                map: &map,
                range,
                alpha,
            });
            list.add_frame_with_dense(w, h, &YuvCoefficients::size_default(h), dense, &dets, &style);
            assert_eq!(list.frames[i].dense >= 0, with_dense, "{format:?} {w}x{h}");
            keep.push((map, source, range));
            frames.push(f);
        }
        let cuda_frames: Vec<CudaFrame> = frames.iter().map(TestFrame::cuda).collect();
        assert!(overlay.draw(&cuda_frames, &list).expect("draw"));
        overlay.wait().expect("kernel");
        for (f, (map, source, range)) in frames.iter().zip(&keep) {
            let (max, count) = f.compare(&ctx);
            println!(
                "dense {colormap:?} {:?} {}x{} map {}x{} {source:?} range {range:?}: max difference {max}, {count} bytes differ",
                f.format, f.width, f.height, map.width, map.height
            );
            assert!(
                max <= 2,
                "{:?} {}x{} {source:?}: {max}",
                f.format,
                f.width,
                f.height
            );
        }
    }
    // The colour map changed between rounds: it is uploaded again, and a list with only
    // dense layers is drawn (not "nothing to draw").
    let mut f = TestFrame::new(&ctx, &mut rng, VideoFormat::Nv12, 64, 48, false).expect("device frame");
    let (map, channel0) = test_map(&ctx, &mut rng, 64, 48, Source::DeviceF32);
    let lut = Colormap::Turbo.lut();
    let mut canvas = Canvas::from_pixels(f.pixels());
    canvas.dense_values(&map, &channel0, &lut, (0.0, 10.0), 1.0, &mut Vec::new());
    let mut list = OverlayCommands::default();
    list.set_dense_lut(&lut);
    let dense = DenseDraw {
        map: &map,
        range: (0.0, 10.0),
        alpha: 1.0,
    };
    list.add_frame_with_dense(
        64,
        48,
        &YuvCoefficients::size_default(48),
        Some(dense),
        &[],
        &style,
    );
    assert!(list.commands.is_empty() && !list.is_empty());
    assert!(overlay.draw(&[f.cuda()], &list).expect("draw"));
    overlay.wait().expect("kernel");
    assert_eq!(f.compare(&ctx).0, 0);
}

/// The GPU summary (min, mean, max of channel 0 over the frame-covering part) of f32 and
/// f16 device outputs equals the CPU one (min and max exactly, the mean to f32 rounding),
/// frames with no finite value have none, and the download equals the values.
#[test]
#[ignore = "needs a CUDA GPU: run with --include-ignored, as scripts/device/run-tests.sh does"]
fn dense_summary_gpu_matches_cpu() {
    let ctx = device();
    let mut gpu = DenseSummarizer::new(&ctx).expect("summarizer");
    let mut rng = Rng(0x5a11);
    let layouts = [
        (3, 1, 320, 320),
        (4, 3, 37, 53),
        (1, 1, 1, 1),
        (2, 2, 480, 640),
        (16, 1, 64, 64),
    ];
    for (k, &(b, c, h, w)) in layouts.iter().enumerate() {
        for f16 in [false, true] {
            let (mut values, _) = random_values(&mut rng, b * c * h * w, f16);
            // Row 0 of the last layout has no finite value.
            if k == layouts.len() - 1 {
                values[..c * h * w].fill(f32::NAN);
            }
            let bytes = encode(&values, f16);
            let dtype = if f16 { DType::F16 } else { DType::F32 };
            let t = device_tensor(&ctx, "depth", dtype, vec![b, c, h, w], &bytes);
            let host = Tensor::from_f32("depth", vec![b, c, h, w], &values);
            let (mut maps, mut reference) = (Vec::new(), Vec::new());
            for row in 0..b {
                // Frames of different sizes and placements, letterboxed or stretched.
                let (fw, fh) = (50 + rng.below(1900) as u32, 50 + rng.below(1000) as u32);
                let (mw, mh) = (
                    w as u32 * (1 + rng.below(3) as u32),
                    h as u32 * (1 + rng.below(3) as u32),
                );
                let tr = if row % 2 == 0 {
                    LetterboxTransform::letterbox(fw, fh, mw, mh)
                } else {
                    LetterboxTransform::stretch(fw, fh, mw, mh)
                };
                let mut m = DenseMap::host(Arc::from("depth"), t.clone(), row, (c, h, w), tr);
                m.device = Some(device_row(&t, row).expect("row"));
                maps.push(m);
                reference.push(DenseMap::host(Arc::from("depth"), host.clone(), row, (c, h, w), tr).stats());
            }
            let (download, copied) = gpu.run(&t, (c, h, w), &mut maps, true).expect("summary");
            assert_eq!(copied, 32 * b + b * c * h * w * dtype.size());
            for (row, (m, want)) in maps.iter().zip(&reference).enumerate() {
                match (m.summary, want) {
                    (Some((lo, mean, hi)), Some((wlo, wmean, whi))) => {
                        assert_eq!((lo, hi), (*wlo, *whi), "{b}x{c}x{h}x{w} f16 {f16} row {row}");
                        let tol = 1e-5 * wmean.abs().max(1.0);
                        assert!((mean - wmean).abs() <= tol, "row {row}: mean {mean} vs {wmean}");
                    }
                    (None, None) => {}
                    (got, want) => panic!("{b}x{c}x{h}x{w} row {row}: {got:?} vs {want:?}"),
                }
                assert!(m.values().is_none(), "the map itself stays on the device");
            }
            if k == layouts.len() - 1 {
                assert_eq!(maps[0].summary, None);
            }
            let download = download.expect("download requested");
            assert_eq!(download.dtype, DType::F32);
            let got = download.as_f32().expect("f32 host values");
            assert!(got
                .iter()
                .zip(&values)
                .all(|(a, b)| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())));
            // One frame's channel 0 on demand, and a run without download copies only the
            // summaries.
            let mut one = Vec::new();
            download_channel0(&maps[b - 1], &mut one).expect("channel 0");
            let start = (b - 1) * c * h * w;
            let want = &values[start..start + h * w];
            assert!(one
                .iter()
                .zip(want)
                .all(|(a, b)| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())));
            let (none, copied) = gpu.run(&t, (c, h, w), &mut maps, false).expect("summary");
            assert!(none.is_none());
            assert_eq!(copied, 32 * b);
            println!("dense summary {b}x{c}x{h}x{w} f16 {f16}: {b} rows match the CPU");
        }
    }
    // Maps that are not rows 0, 1, ... of the tensor are refused.
    let t = device_tensor(&ctx, "depth", DType::F32, vec![2, 1, 2, 2], &[0u8; 32]);
    let tr = LetterboxTransform::letterbox(4, 4, 2, 2);
    let mut maps = vec![DenseMap::host(Arc::from("d"), t.clone(), 1, (1, 2, 2), tr)];
    assert!(matches!(
        gpu.run(&t, (1, 2, 2), &mut maps, false),
        Err(cuda::CudaError::InvalidInput(_))
    ));
}

fn init_gst() {
    if let Err(e) = gst::init() {
        panic!("gst::init: {e}");
    }
    if let Err(e) = gsttrtvision::plugin_register_static() {
        panic!("plugin registration: {e}");
    }
}

/// trtoverlay (dense-colormap=turbo) on a batch of GstCudaMemory frames with device and
/// host dense maps, and a system-memory frame with a map only in GPU memory: the CUDA
/// frames are drawn on the GPU (no frame leaves the device), the system-memory frame on the
/// CPU from a copy of its map; read back, every frame equals the CPU drawing.
#[test]
#[ignore = "needs a CUDA GPU: run with --include-ignored, as scripts/device/run-tests.sh does"]
fn overlay_element_draws_dense_maps_on_gst_cuda_memory() {
    let dev = device();
    init_gst();
    let ctx = CudaContext::new_primary(0).expect("GstCudaContext wrapping the primary context");
    let mut rng = Rng(0xe1e);
    let style = OverlayStyle::default();
    let lut = Colormap::Turbo.lut();
    let source = Arc::new(gsttrtvision::batch::SourceStream {
        pad_index: 0,
        stream_id: None,
        caps: gst::Caps::new_empty_simple("video/x-raw"),
        segment: gst::FormattedSegment::new(),
    });
    let (mut slots, mut expected, mut pools) = (Vec::new(), Vec::new(), Vec::new());
    for (format, w, h, cuda_mem, src) in [
        (VideoFormat::Nv12, 1920u32, 1080u32, true, Source::DeviceF32),
        (VideoFormat::Rgba, 641, 479, true, Source::DeviceF16),
        (VideoFormat::Bgrx, 1280, 720, true, Source::Host),
        (VideoFormat::Nv12, 640, 480, false, Source::DeviceF32),
    ] {
        let info = gst_video::VideoInfo::builder(format, w, h).build().expect("info");
        let mut buffer = if cuda_mem {
            let (pool, b) = cuda_pool_buffer(&ctx, &info);
            pools.push(pool);
            b
        } else {
            gst::Buffer::with_size(info.size()).expect("buffer")
        };
        {
            let bref = buffer.get_mut().expect("writable");
            let mut vf = gst_video::VideoFrameRef::from_buffer_ref_writable(bref, &info).expect("host map");
            for p in 0..vf.n_planes() {
                rng.fill(vf.plane_data_mut(p).expect("plane"));
            }
        }
        let (map, channel0) = test_map(&dev, &mut rng, w, h, src);
        let dets = boxes(&mut rng, w, h, 3);
        // CPU reference on a system-memory copy of the same pixels, automatic range.
        let range = range_for(0, &map, &channel0);
        let mut reference = gst::Buffer::with_size(info.size()).expect("buffer");
        {
            let src =
                gst_video::VideoFrameRef::from_buffer_ref_readable(buffer.as_ref(), &info).expect("map");
            let dst_ref = reference.get_mut().expect("writable");
            let mut dst = gst_video::VideoFrameRef::from_buffer_ref_writable(dst_ref, &info).expect("map");
            src.copy(&mut dst).expect("copy");
            let mut canvas = Canvas::new(&mut dst).expect("canvas");
            canvas.dense_values(&map, &channel0, &lut, range, 0.5, &mut Vec::new());
            draw_frame(&mut canvas, &dets, &style, &mut String::new());
        }
        expected.push((reference, info.clone()));
        slots.push(gsttrtvision::batch::FrameSlot {
            source: source.clone(),
            frame_number: 0,
            pts: None,
            dts: None,
            duration: None,
            info,
            buffer,
            results: gsttrtvision::results::FrameResults {
                detections: dets,
                dense: vec![map],
                ..Default::default()
            },
        });
    }
    // The element's automatic range is the map's summary (GPU) or its host minimum and
    // maximum: give device maps the CPU summary so both sides use the same range.
    for slot in &mut slots {
        for m in &mut slot.results.dense {
            if m.device.is_some() {
                let mut c0 = Vec::new();
                download_channel0(m, &mut c0).expect("channel 0");
                let host = DenseMap::host(
                    m.model.clone(),
                    Tensor::from_f32("c0", vec![1, 1, m.height, m.width], &c0),
                    0,
                    (1, m.height, m.width),
                    m.transform,
                );
                m.summary = host.stats();
            }
        }
    }
    let mut batch_buf = gst::Buffer::new();
    gsttrtvision::batch::BatchMeta::add(
        batch_buf.get_mut().expect("writable"),
        gsttrtvision::batch::Batch {
            slots,
            batch_size: 4,
            ..Default::default()
        },
    );
    let mut h = gst_check::Harness::new("trtoverlay");
    let element = h.element().expect("element");
    element.set_context(&ctx.to_gst_context());
    element.set_property_from_str("dense-colormap", "turbo");
    h.set_src_caps(gsttrtvision::batch::batch_caps());
    h.play();
    let out = h.push_and_pull(batch_buf).expect("batch out");
    assert_eq!(
        element.property::<u64>("gpu-frames"),
        3,
        "the three CUDA-memory frames are drawn on the GPU"
    );
    let meta = out.meta::<gsttrtvision::batch::BatchMeta>().expect("batch meta");
    for (slot, (reference, info)) in meta.batch().slots.iter().zip(&expected) {
        let got =
            gst_video::VideoFrameRef::from_buffer_ref_readable(slot.buffer.as_ref(), info).expect("map");
        let want = gst_video::VideoFrameRef::from_buffer_ref_readable(reference.as_ref(), info).expect("map");
        let (mut max, mut count) = (0u8, 0usize);
        for p in 0..got.n_planes() {
            let (gs, ws) = (
                got.plane_stride()[p as usize] as usize,
                want.plane_stride()[p as usize] as usize,
            );
            let (gd, wd) = (
                got.plane_data(p).expect("plane"),
                want.plane_data(p).expect("plane"),
            );
            let (row_bytes, rows) = plane_geometry(
                info.format(),
                p as usize,
                info.width() as usize,
                info.height() as usize,
            );
            for r in 0..rows {
                for (a, b) in gd[r * gs..][..row_bytes].iter().zip(&wd[r * ws..][..row_bytes]) {
                    let d = a.abs_diff(*b);
                    max = max.max(d);
                    count += usize::from(d != 0);
                }
            }
        }
        println!(
            "trtoverlay dense {:?} {}x{} (CUDA memory: {}): max difference {max}, {count} bytes differ",
            info.format(),
            info.width(),
            info.height(),
            cuda::is_cuda_buffer(&slot.buffer)
        );
        assert!(max <= 2, "{:?}: {max}", info.format());
    }
    drop(out);
    drop(element);
    drop(h);
    for pool in pools {
        pool.set_active(false).ok();
    }
}

/// Directory with the model configs and generated models: `TRTV_ENGINES`, else
/// `.device-build/engines` (the staged copy on the GPU machine), else `engines`.
fn engines_dir() -> std::path::PathBuf {
    if let Some(d) = std::env::var_os("TRTV_ENGINES") {
        return d.into();
    }
    for d in [".device-build/engines", "engines"] {
        if std::path::Path::new(d).join("models/shapes-depth.onnx").exists() {
            return d.into();
        }
    }
    "engines".into()
}

/// What a depth chain attached to one frame.
#[derive(Debug)]
struct DepthFrame {
    key: (u32, u64),
    on_device: bool,
    host_values: bool,
    /// What consumers see (the producer's summary, else computed from host values).
    stats: Option<(f32, f32, f32)>,
    /// Computed on the CPU from the host values, when there are some.
    host_stats: Option<(f32, f32, f32)>,
}

/// 3 synthetic cameras → trtmux → trtpreprocess → trtinfer (shapes-depth) → trtoverlay
/// (turbo) → appsink, on the CPU or on the GPU (CUDA frames, onnxruntime-cuda); returns
/// per frame what the dense map holds, and the overlay's `gpu-frames` and trtinfer's
/// `d2h-bytes`.
fn run_depth_chain(gpu: bool, download: bool, frames: u32) -> (Vec<DepthFrame>, u64, u64) {
    let model = engines_dir().join("shapes-depth.toml");
    let (upload, backend) = if gpu {
        (
            "cudaupload ! video/x-raw(memory:CUDAMemory) ! ",
            "onnxruntime-cuda",
        )
    } else {
        ("", "onnxruntime-cpu")
    };
    let mut desc = format!(
        "trtmux name=m batch-size=3 ! trtpreprocess config-file={m} ! trtinfer name=inf model={m} backend={backend} \
         download-dense={download} ! trtoverlay name=ov dense-colormap=turbo ! appsink name=out sync=false ",
        m = model.display()
    );
    for i in 0..3 {
        desc += &format!(
            "trtscenesrc camera={i} num-buffers={frames} ! video/x-raw,format=NV12,width=640,height=480 ! {upload}m.sink_{i} "
        );
    }
    let pipeline = gst::parse::launch(&desc)
        .unwrap_or_else(|e| panic!("{desc}: {e}"))
        .downcast::<gst::Pipeline>()
        .expect("pipeline");
    let sink = pipeline
        .by_name("out")
        .expect("appsink")
        .downcast::<gst_app::AppSink>()
        .expect("appsink");
    pipeline.set_state(gst::State::Playing).expect("playing");
    let bus = pipeline.bus().expect("bus");
    let mut out = Vec::new();
    loop {
        let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(30)) else {
            if sink.is_eos() {
                break;
            }
            let err = bus.pop_filtered(&[gst::MessageType::Error]);
            pipeline.set_state(gst::State::Null).ok();
            panic!(
                "{backend}: no batch for 30 s after {} frames; bus error: {err:?}",
                out.len()
            );
        };
        let buf = sample.buffer().expect("buffer");
        let meta = buf.meta::<gsttrtvision::batch::BatchMeta>().expect("batch meta");
        for slot in &meta.batch().slots {
            let map = slot.results.dense.first().expect("a dense map per frame");
            out.push(DepthFrame {
                key: (slot.pad_index(), slot.frame_number),
                on_device: map.device.is_some(),
                host_values: map.values().is_some(),
                stats: map.stats(),
                host_stats: map.host_stats(),
            });
        }
    }
    let err = bus.pop_filtered(&[gst::MessageType::Error]);
    let gpu_frames = pipeline
        .by_name("ov")
        .expect("overlay")
        .property::<u64>("gpu-frames");
    let d2h = pipeline
        .by_name("inf")
        .expect("trtinfer")
        .property::<u64>("d2h-bytes");
    pipeline.set_state(gst::State::Null).expect("null");
    if let Some(gst::MessageView::Error(e)) = err.as_ref().map(|m| m.view()) {
        panic!("{backend}: {} ({:?})", e.error(), e.debug());
    }
    out.sort_by_key(|f| f.key);
    (out, gpu_frames, d2h)
}

/// The GPU depth chain keeps every map on the device (only the 32-byte summaries cross to
/// the host, frames are drawn on the GPU), its summaries match the CPU chain's, and with
/// download-dense the host values are there too.
#[test]
#[ignore = "needs a CUDA GPU: run with --include-ignored, as scripts/device/run-tests.sh does"]
fn gpu_depth_chain_keeps_maps_on_the_device() {
    let _dev = device();
    init_gst();
    assert!(
        std::env::var_os("ORT_DYLIB_PATH").is_some(),
        "ORT_DYLIB_PATH (ONNX Runtime with the CUDA provider) is not set"
    );
    let frames = 10;
    let n = 3 * frames as usize;
    let (cpu, cpu_gpu_frames, _) = run_depth_chain(false, false, frames);
    let (gpu, gpu_frames, d2h) = run_depth_chain(true, false, frames);
    let (dl, _, d2h_dl) = run_depth_chain(true, true, frames);
    assert_eq!((cpu.len(), gpu.len(), dl.len()), (n, n, n));
    assert_eq!(cpu_gpu_frames, 0);
    assert_eq!(gpu_frames, n as u64, "every CUDA frame is drawn on the GPU");
    assert_eq!(d2h, 32 * n as u64, "only the summaries cross to the host");
    assert_eq!(d2h_dl, (32 + 320 * 320 * 4) * n as u64);
    let mut worst = 0f32;
    for ((c, g), d) in cpu.iter().zip(&gpu).zip(&dl) {
        assert_eq!((c.key, g.key), (d.key, d.key));
        assert!(!c.on_device && c.host_values, "{:?}", c.key);
        assert!(g.on_device && !g.host_values, "{:?}", g.key);
        assert!(d.on_device && d.host_values, "{:?}", d.key);
        let (Some((clo, cmean, chi)), Some((glo, gmean, ghi)), Some((dlo, dmean, dhi)), Some(host)) =
            (c.stats, g.stats, d.stats, d.host_stats)
        else {
            panic!("{:?}: no summary: {c:?} {g:?} {d:?}", c.key)
        };
        // The synthetic model outputs a few levels (2, 4, ..., 10): GPU preprocessing may
        // flip a few edge pixels, not the extremes, and only slightly the mean.
        assert_eq!((clo, chi), (glo, ghi), "{:?}", c.key);
        assert_eq!((dlo, dhi), (glo, ghi), "{:?}", d.key);
        // The GPU summary of the downloaded run equals the CPU summary of its values.
        assert_eq!((dlo, dhi), (host.0, host.2), "{:?}", d.key);
        assert!(
            (dmean - host.1).abs() <= 1e-5 * host.1.abs().max(1.0),
            "{:?}",
            d.key
        );
        worst = worst.max((cmean - gmean).abs()).max((cmean - dmean).abs());
    }
    println!("GPU depth chain vs CPU chain: {n} frames, largest mean difference {worst}");
    assert!(worst < 0.05, "{worst}");
}

/// Timing: 3 NV12 1920x1080 frames with a 320x320 device depth map and 10 labelled boxes
/// each, colour map + boxes in one launch, against the CPU drawing; one JSON line.
#[test]
#[ignore = "needs a CUDA GPU: run with --include-ignored, as scripts/device/run-tests.sh does"]
fn timing_dense_overlay_3x1080p_nv12() {
    let ctx = device();
    let (w, h, batch) = (1920u32, 1080u32, 3usize);
    let mut rng = Rng(17);
    let mut frames: Vec<TestFrame> = (0..batch)
        .map(|_| TestFrame::new(&ctx, &mut rng, VideoFormat::Nv12, w, h, false).expect("device frame"))
        .collect();
    let (values, bytes) = random_values(&mut rng, batch * 320 * 320, false);
    let t = device_tensor(&ctx, "depth", DType::F32, vec![batch, 1, 320, 320], &bytes);
    let tr = LetterboxTransform::letterbox(w, h, 320, 320);
    let host = Tensor::from_f32("depth", vec![batch, 1, 320, 320], &values);
    let maps: Vec<(DenseMap, DenseMap)> = (0..batch)
        .map(|row| {
            let mut m = DenseMap::host(Arc::from("depth"), t.clone(), row, (1, 320, 320), tr);
            m.device = Some(device_row(&t, row).expect("row"));
            (
                m,
                DenseMap::host(Arc::from("depth"), host.clone(), row, (1, 320, 320), tr),
            )
        })
        .collect();
    let dets: Vec<Vec<Detection>> = (0..batch).map(|_| boxes(&mut rng, w, h, 10)).collect();
    let cuda_frames: Vec<CudaFrame> = frames.iter().map(TestFrame::cuda).collect();
    let style = OverlayStyle::default();
    let lut = Colormap::Turbo.lut();
    let range = (-5.0, 15.0);
    let mut overlay = gsttrtvision::ops::overlay::cuda::CudaOverlay::new(&ctx).expect("CUDA overlay");
    let mut list = OverlayCommands::default();
    let build = |list: &mut OverlayCommands| {
        list.clear();
        list.set_dense_lut(&lut);
        for ((m, _), d) in maps.iter().zip(&dets) {
            let dense = DenseDraw {
                map: m,
                range,
                alpha: 0.5,
            };
            list.add_frame_with_dense(w, h, &YuvCoefficients::size_default(h), Some(dense), d, &style);
        }
    };
    for _ in 0..20 {
        build(&mut list);
        overlay.draw(&cuda_frames, &list).expect("warm-up");
        overlay.wait().expect("wait");
    }
    let start = cuda::Event::new(&ctx, true).expect("event");
    let stop = cuda::Event::new(&ctx, true).expect("event");
    let (mut total_us, mut kernel_us) = (Vec::new(), Vec::new());
    for _ in 0..200 {
        let t0 = Instant::now();
        build(&mut list);
        // SAFETY: the overlay's live stream, same context as the events.
        unsafe { start.record(overlay.stream()) }.expect("record");
        overlay.draw(&cuda_frames, &list).expect("draw");
        // SAFETY: as above.
        unsafe { stop.record(overlay.stream()) }.expect("record");
        overlay.wait().expect("wait");
        total_us.push(t0.elapsed().as_secs_f64() * 1e6);
        stop.synchronize().expect("sync");
        kernel_us.push(stop.elapsed_ms(&start).expect("elapsed") as f64 * 1e3);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let t0 = Instant::now();
    for _ in 0..3 {
        for (f, ((_, m), d)) in frames.iter_mut().zip(maps.iter().zip(&dets)) {
            let mut canvas = Canvas::from_pixels(f.pixels());
            canvas.dense(m, &lut, range, 0.5, &mut Vec::new());
            draw_frame(&mut canvas, d, &style, &mut String::new());
        }
    }
    let cpu_ms = t0.elapsed().as_secs_f64() * 1e3 / 3.0;
    let info = cuda::probe().ok();
    let line = serde_json::json!({
        "bench": "cuda_overlay_dense",
        "device": info.as_ref().map(|i| i.name.clone()),
        "driver_version": info.as_ref().map(|i| i.driver_version),
        "arch": overlay.arch(),
        "case": "3x NV12 1920x1080, 320x320 f32 depth map on the device (turbo, alpha 0.5) + 10 labelled boxes a frame",
        "commands_per_batch": list.commands.len(),
        // One host-to-device copy: frame table, commands, dense layers (no map values).
        "h2d_bytes_per_batch": 96 * batch + 56 * list.commands.len() + 64 * list.dense.len(),
        "map_bytes_to_host": 0,
        "copy_and_kernel_us_median": median(&mut kernel_us),
        "draw_total_us_median": median(&mut total_us),
        "launches_per_batch": 1,
        "cpu_draw_ms_per_batch": cpu_ms,
        "cpu_threads": 1,
    });
    println!("{line}");
    assert!(median(&mut kernel_us) > 0.0);
}
