//! Device tests of trttiler's CUDA path: the mosaic kernel against the CPU mosaic for many
//! input and output formats, sizes and grids; the element on GstCudaMemory through a
//! `gst_check::Harness` (GPU composition, CPU composition into CUDA memory, tiles kept for
//! absent sources); a timing line.
//!
//! Built only with `--features cuda`; every test is `#[ignore]`d (reported as ignored by
//! `cargo test --features cuda` on machines without a GPU) and runs with
//! `--include-ignored`, where a missing GPU is a failure.
#![cfg(feature = "cuda")]

mod common;

use std::time::Instant;

use common::cuda::{
    compare_planes, cuda_pool_buffer, device, fill_cuda_buffer, n_planes, plane_geometry, read_cuda_buffer,
    read_system_buffer, system_buffer, Rng, TestFrame,
};
use gst::prelude::*;
use gst_video::VideoFormat;
use gsttrtvision::batch::{self, CUDA_MEMORY_FEATURE};
use gsttrtvision::cuda::{self, CudaContext, CudaFrame, DeviceContext, Event};
use gsttrtvision::ops::mosaic::cuda::{CudaTiler, INLINE_TILES};
use gsttrtvision::ops::mosaic::{self, Grid, Scratch};
use gsttrtvision::video::color::YuvCoefficients;
use gsttrtvision::video::{FrameReader, PixelsMut};

/// The CPU tiler's RGBA mosaic of `tiles` (tile `i` shows `tiles[i]`).
fn cpu_mosaic(grid: &Grid, tiles: &[Option<FrameReader>]) -> Vec<u8> {
    let mut rgba = vec![0u8; (grid.width * grid.height * 4) as usize];
    mosaic::clear(&mut rgba);
    let mut scratch = Scratch::default();
    for (i, t) in tiles.iter().enumerate() {
        if let Some(frame) = t {
            mosaic::draw_tile(&mut rgba, grid, i as u32, frame, &mut scratch);
        }
    }
    rgba
}

/// `rgba` converted into `format` planes with `strides`, as the CPU tiler writes its output.
fn convert(rgba: &[u8], format: VideoFormat, w: u32, h: u32, strides: &[usize]) -> Vec<Vec<u8>> {
    let mut planes: Vec<Vec<u8>> = (0..3)
        .map(|p| {
            if p < n_planes(format) {
                vec![0u8; strides[p] * plane_geometry(format, p, w as usize, h as usize).1]
            } else {
                Vec::new()
            }
        })
        .collect();
    {
        let (p0, rest) = planes.split_at_mut(1);
        let (p1, p2) = rest.split_at_mut(1);
        let mut px = PixelsMut::from_planes(format, w, h, [&mut p0[0], &mut p1[0], &mut p2[0]], strides)
            .expect("CPU planes");
        px.write_rgba(rgba).expect("CPU conversion");
    }
    planes.truncate(n_planes(format));
    planes
}

type Spec = (VideoFormat, u32, u32, bool);

struct Case {
    name: &'static str,
    out: Spec,
    rows: u32,
    cols: u32,
    inputs: Vec<Option<Spec>>,
}

fn cases(rng: &mut Rng) -> Vec<Case> {
    use VideoFormat::*;
    let formats = [Nv12, I420, Rgba, Bgra, Rgbx, Bgrx, Rgb, Bgr];
    let many = |n: usize, odd: bool, rng: &mut Rng| -> Vec<Option<Spec>> {
        (0..n)
            .map(|i| {
                if i % 7 == 5 {
                    None
                } else {
                    let w = 1 + (rng.next() % 300) as u32;
                    let h = 1 + (rng.next() % 300) as u32;
                    Some((formats[i % formats.len()], w, h, odd))
                }
            })
            .collect()
    };
    vec![
        Case {
            name: "3x3 into NV12 1280x720, every input format",
            out: (Nv12, 1280, 720, false),
            rows: 3,
            cols: 3,
            inputs: vec![
                Some((Nv12, 1920, 1080, false)),
                Some((I420, 641, 479, false)),
                Some((Rgba, 640, 480, false)),
                Some((Bgrx, 1280, 720, false)),
                Some((Rgb, 333, 517, false)),
                Some((Bgr, 720, 1280, false)),
                Some((Bgra, 64, 48, false)),
                Some((Rgbx, 1, 1, false)),
                None,
            ],
        },
        Case {
            name: "2x4 into RGBA 641x479, odd strides",
            out: (Rgba, 641, 479, true),
            rows: 2,
            cols: 4,
            inputs: vec![
                Some((I420, 1920, 1080, true)),
                Some((Nv12, 641, 479, true)),
                Some((Rgba, 3, 1000, true)),
                None,
                Some((Bgrx, 17, 9, true)),
                Some((Rgb, 640, 480, true)),
                Some((Bgr, 2, 2, true)),
                Some((Nv12, 1, 1, true)),
            ],
        },
        Case {
            name: "1x1 into BGRx 1920x1080, same size (scale 1)",
            out: (Bgrx, 1920, 1080, false),
            rows: 1,
            cols: 1,
            inputs: vec![Some((Nv12, 1920, 1080, false))],
        },
        Case {
            name: "1x2 into NV12 641x479 (odd size)",
            out: (Nv12, 641, 479, false),
            rows: 1,
            cols: 2,
            inputs: vec![Some((I420, 1280, 720, false)), Some((Bgrx, 641, 479, false))],
        },
        Case {
            name: "2x2 into RGB 320x240, odd strides",
            out: (Rgb, 320, 240, true),
            rows: 2,
            cols: 2,
            inputs: many(4, true, rng),
        },
        Case {
            name: "2x2 into BGR 99x77",
            out: (Bgr, 99, 77, false),
            rows: 2,
            cols: 2,
            inputs: many(4, false, rng),
        },
        Case {
            name: "4x8 into BGRA 1920x1080 (largest inline tile table)",
            out: (Bgra, 1920, 1080, false),
            rows: 4,
            cols: 8,
            inputs: many(INLINE_TILES, false, rng),
        },
        Case {
            name: "6x6 into I420 333x211 (tile table in device memory)",
            out: (I420, 333, 211, false),
            rows: 6,
            cols: 6,
            inputs: many(36, false, rng),
        },
        Case {
            name: "5x7 into RGBx 1280x720 (tile table in device memory)",
            out: (Rgbx, 1280, 720, true),
            rows: 5,
            cols: 7,
            inputs: many(35, true, rng),
        },
        Case {
            name: "16x2 into NV12 32x32 (tiles of 16x2 pixels)",
            out: (Nv12, 32, 32, false),
            rows: 16,
            cols: 2,
            inputs: many(32, false, rng),
        },
    ]
}

/// The kernel against the CPU mosaic (`trttiler::mosaic` + `video::write_rgba`), and the
/// CPU mosaic written into CUDA frames by the kernel (`CudaTiler::write_rgba`).
#[test]
#[ignore = "needs a CUDA GPU: run with --include-ignored, as scripts/device/run-tests.sh does"]
fn gpu_mosaic_matches_cpu_mosaic() {
    let dev = device();
    let mut tiler = CudaTiler::new(&dev).expect("CUDA tiler");
    eprintln!("tiler: {tiler:?}");
    let mut rng = Rng(17);
    let mut failures = Vec::new();
    for case in cases(&mut rng) {
        let frames: Vec<Option<TestFrame>> = case
            .inputs
            .iter()
            .map(|s| s.map(|(f, w, h, odd)| TestFrame::new(&dev, &mut rng, f, w, h, odd).expect("upload")))
            .collect();
        let tiles: Vec<Option<CudaFrame>> = frames.iter().map(|f| f.as_ref().map(TestFrame::cuda)).collect();
        let (format, w, h, odd) = case.out;
        // Random output pixels: every byte must be written.
        let mut out = TestFrame::new(&dev, &mut rng, format, w, h, odd).expect("output");
        tiler
            .compose(&tiles, case.rows, case.cols, &out.cuda())
            .expect("compose");
        tiler.wait().expect("wait");
        out.download();
        let grid = Grid {
            width: w,
            height: h,
            rows: case.rows,
            columns: case.cols,
        };
        let readers: Vec<Option<FrameReader>> =
            frames.iter().map(|f| f.as_ref().map(TestFrame::reader)).collect();
        let rgba = cpu_mosaic(&grid, &readers);
        let want = convert(&rgba, format, w, h, &out.strides);
        let (max, count) = compare_planes(format, w, h, (&out.host, &out.strides), (&want, &out.strides));
        println!("{}: max difference {max}, {count} bytes differ", case.name);
        if max > 2 {
            failures.push(format!("{}: {max}", case.name));
        }
        // The CPU mosaic into a CUDA frame (with strides of its own: `want` keeps those of
        // `out`).
        let mut out2 = TestFrame::new(&dev, &mut rng, format, w, h, odd).expect("output");
        tiler.write_rgba(&rgba, &out2.cuda()).expect("write_rgba");
        tiler.wait().expect("wait");
        out2.download();
        let (max, count) = compare_planes(format, w, h, (&out2.host, &out2.strides), (&want, &out.strides));
        println!(
            "{} (CPU mosaic written by the kernel): max difference {max}, {count} bytes differ",
            case.name
        );
        if max > 0 {
            failures.push(format!("{} write_rgba: {max}", case.name));
        }
        // Composed on the device into host memory (a system-memory output frame).
        let mut host: Vec<Vec<u8>> = (0..n_planes(format))
            .map(|p| vec![0xa5u8; out.strides[p] * plane_geometry(format, p, w as usize, h as usize).1])
            .collect();
        {
            let mut slices: Vec<&mut [u8]> = host.iter_mut().map(|p| p.as_mut_slice()).collect();
            tiler
                .compose_to_host(
                    &tiles,
                    case.rows,
                    case.cols,
                    format,
                    (w, h),
                    YuvCoefficients::size_default(h),
                    &mut slices,
                    &out.strides,
                )
                .expect("compose_to_host");
        }
        let (max, count) = compare_planes(format, w, h, (&host, &out.strides), (&want, &out.strides));
        println!(
            "{} (composed into host memory): max difference {max}, {count} bytes differ",
            case.name
        );
        if max > 2 {
            failures.push(format!("{} compose_to_host: {max}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "GPU mosaic differs from the CPU mosaic: {failures:?}"
    );
    // Invalid grids are refused before anything is queued.
    let out = TestFrame::new(&dev, &mut rng, VideoFormat::Rgba, 16, 16, false).expect("output");
    assert!(tiler.compose(&[None, None], 1, 1, &out.cuda()).is_err());
    assert!(tiler.compose(&[], 0, 1, &out.cuda()).is_err());
    assert!(tiler.write_rgba(&[0u8; 16], &out.cuda()).is_err());
}

/// One source's frame: its pixels on the host (with strides) and as buffers.
struct SourceFrame {
    pad: u32,
    info: gst_video::VideoInfo,
    planes: Vec<Vec<u8>>,
    strides: Vec<usize>,
    cuda: gst::Buffer,
}

impl SourceFrame {
    fn reader(&self) -> FrameReader<'_> {
        let planes: Vec<&[u8]> = self.planes.iter().map(|p| p.as_slice()).collect();
        FrameReader::from_planes(
            self.info.format(),
            self.info.width(),
            self.info.height(),
            &planes,
            &self.strides,
        )
        .expect("reader")
        .with_colors(gsttrtvision::video::color::YuvCoefficients::for_info(&self.info))
    }
}

/// Per tile of `grid`, the reader of the frame of `frames` that lands in it.
fn tile_readers<'a>(grid: &Grid, frames: &[&'a SourceFrame]) -> Vec<Option<FrameReader<'a>>> {
    let mut t: Vec<Option<FrameReader<'a>>> = (0..grid.tiles()).map(|_| None).collect();
    for f in frames {
        t[grid.tile_of(f.pad) as usize] = Some(f.reader());
    }
    t
}

fn batch_of(frames: &[&SourceFrame], batch_size: usize, cuda_memory: bool) -> gst::Buffer {
    let slots = frames
        .iter()
        .map(|f| {
            let buffer = if cuda_memory {
                f.cuda.clone()
            } else {
                system_buffer(&f.info, &f.planes, &f.strides)
            };
            common::frame_slot(f.pad, f.info.clone(), buffer, None)
        })
        .collect();
    common::batch_buffer(batch_size, slots)
}

/// One output frame of the element, read back.
struct Output {
    planes: Vec<Vec<u8>>,
    strides: Vec<usize>,
    info: gst_video::VideoInfo,
    on_device: bool,
}

/// What one element run produced: the output of every batch, `gpu-frames` and
/// `cpu-reason` at the end.
struct Run {
    outputs: Vec<Output>,
    gpu_frames: u64,
    cpu_reason: Option<String>,
}

fn run_element(
    ctx: &CudaContext,
    dctx: &DeviceContext,
    device: &str,
    cuda_batches: bool,
    out_caps: gst::Caps,
    batches: &[Vec<&SourceFrame>],
) -> Run {
    // Configured before the harness starts it: the context is then the element's own.
    let mut h = common::harness(
        "trttiler",
        &[
            ("width", &1280u32),
            ("height", &720u32),
            ("rows", &2u32),
            ("columns", &2u32),
            ("device", &device),
        ],
        Some(&ctx.to_gst_context()),
    );
    let batch_caps = if cuda_batches {
        gst::Caps::builder(batch::BATCH_MEDIA_TYPE)
            .features([CUDA_MEMORY_FEATURE])
            .build()
    } else {
        batch::batch_caps()
    };
    h.set_src_caps(batch_caps);
    h.set_sink_caps(out_caps);
    h.play();
    let mut outputs = Vec::new();
    for frames in batches {
        let out = h
            .push_and_pull(batch_of(frames, 4, cuda_batches))
            .expect("mosaic");
        let caps = h.sinkpad().and_then(|p| p.current_caps()).expect("output caps");
        let info = gst_video::VideoInfo::from_caps(&caps).expect("info");
        let on_device = cuda::is_cuda_buffer(&out);
        let (planes, strides) = if on_device {
            read_cuda_buffer(dctx, out.as_ref(), &info)
        } else {
            read_system_buffer(out.as_ref(), &info)
        };
        outputs.push(Output {
            planes,
            strides,
            info,
            on_device,
        });
    }
    let e = h.element().expect("element");
    Run {
        outputs,
        gpu_frames: e.property::<u64>("gpu-frames"),
        cpu_reason: e.property::<Option<String>>("cpu-reason"),
    }
}

/// trttiler on batches of GstCudaMemory frames: composed on the GPU into CUDA memory and
/// into system memory (tiles of absent sources kept), on the CPU into CUDA memory
/// (`device=cpu`, and system-memory batches) and into system memory; every output equals
/// the CPU mosaic. One source's caps carry a colorimetry other than its size's default.
#[test]
#[ignore = "needs a CUDA GPU: run with --include-ignored, as scripts/device/run-tests.sh does"]
fn tiler_element_on_gst_cuda_memory() {
    let _dev = device();
    common::init();
    let ctx = CudaContext::new_primary(0).expect("GstCudaContext wrapping the primary context");
    let dctx = ctx.device_context().expect("device context");
    let mut rng = Rng(23);
    let mut pools = Vec::new();
    // The I420 720p source is flagged BT.601, not its size's default (BT.709): the kernel
    // must convert with the caps' colorimetry, as the CPU does.
    let bt601 = "bt601"
        .parse::<gst_video::VideoColorimetry>()
        .expect("colorimetry");
    let mut make = |pad: u32, format: VideoFormat, w: u32, h: u32, rng: &mut Rng| {
        let mut info = gst_video::VideoInfo::builder(format, w, h);
        if format == VideoFormat::I420 {
            info = info.colorimetry(&bt601);
        }
        let info = info.build().expect("info");
        let (pool, mut cuda) = cuda_pool_buffer(&ctx, &info);
        let (planes, strides) = fill_cuda_buffer(&dctx, rng, &mut cuda, &info);
        pools.push(pool);
        SourceFrame {
            pad,
            info,
            planes,
            strides,
            cuda,
        }
    };
    let first = [
        make(0, VideoFormat::Nv12, 1920, 1080, &mut rng),
        make(1, VideoFormat::I420, 1280, 720, &mut rng),
        make(2, VideoFormat::Rgba, 640, 480, &mut rng),
        make(3, VideoFormat::Bgrx, 640, 360, &mut rng),
    ];
    let second = [
        make(0, VideoFormat::Nv12, 1920, 1080, &mut rng),
        make(2, VideoFormat::Rgba, 640, 480, &mut rng),
    ];
    let batches: Vec<Vec<&SourceFrame>> = vec![first.iter().collect(), second.iter().collect()];
    let grid = Grid {
        width: 1280,
        height: 720,
        rows: 2,
        columns: 2,
    };
    // The CPU mosaic after each batch: the second keeps sources 1 and 3 of the first.
    let mut tiles = tile_readers(&grid, &batches[0]);
    let mosaics = [cpu_mosaic(&grid, &tiles), {
        for (i, t) in tile_readers(&grid, &batches[1]).into_iter().enumerate() {
            if t.is_some() {
                tiles[i] = t;
            }
        }
        cpu_mosaic(&grid, &tiles)
    }];
    let caps = |format: VideoFormat, cuda_memory: bool| {
        let b = gst_video::VideoCapsBuilder::new().format(format);
        if cuda_memory {
            b.features([CUDA_MEMORY_FEATURE]).build()
        } else {
            b.build()
        }
    };
    // (name, device, CUDA batches, output caps, gpu-frames, start of cpu-reason). device=cpu
    // launches no kernel: CUDA frames are read through GstCudaMemory's system-memory map,
    // a CUDA output frame is written through it.
    let runs = [
        (
            "GPU, CUDA batches into CUDA NV12",
            "auto",
            true,
            caps(VideoFormat::Nv12, true),
            6,
            None,
        ),
        (
            "GPU, CUDA batches into CUDA BGRx",
            "auto",
            true,
            caps(VideoFormat::Bgrx, true),
            6,
            None,
        ),
        (
            "device=cpu, CUDA batches into CUDA NV12",
            "cpu",
            true,
            caps(VideoFormat::Nv12, true),
            0,
            Some("device=cpu"),
        ),
        (
            "system batches into CUDA RGBA",
            "auto",
            false,
            caps(VideoFormat::Rgba, true),
            0,
            Some("the batches are in system memory"),
        ),
        (
            "GPU, CUDA batches into system I420",
            "auto",
            true,
            caps(VideoFormat::I420, false),
            6,
            None,
        ),
        (
            "device=cpu, CUDA batches into system RGB",
            "cpu",
            true,
            caps(VideoFormat::Rgb, false),
            0,
            Some("device=cpu"),
        ),
    ];
    let mut failures = Vec::new();
    for (name, device, cuda_batches, out_caps, gpu_frames, cpu_reason) in runs {
        let want_cuda = out_caps
            .features(0)
            .is_some_and(|f| f.contains(CUDA_MEMORY_FEATURE));
        let run = run_element(&ctx, &dctx, device, cuda_batches, out_caps, &batches);
        for (k, out) in run.outputs.iter().enumerate() {
            assert_eq!(out.on_device, want_cuda, "{name}: output memory");
            let (f, w, h) = (out.info.format(), out.info.width(), out.info.height());
            let want = convert(&mosaics[k], f, w, h, &out.strides);
            let (max, count) = compare_planes(f, w, h, (&out.planes, &out.strides), (&want, &out.strides));
            println!("trttiler {name}, batch {k}: max difference {max}, {count} bytes differ");
            if max > 2 {
                failures.push(format!("{name}, batch {k}: {max}"));
            }
        }
        println!(
            "trttiler {name}: gpu-frames {}, cpu-reason {:?}",
            run.gpu_frames, run.cpu_reason
        );
        assert_eq!(
            run.gpu_frames, gpu_frames,
            "{name}: gpu-frames (cpu-reason: {:?})",
            run.cpu_reason
        );
        match (cpu_reason, run.cpu_reason.as_deref()) {
            (None, None) => {}
            (Some(want), Some(got)) if got.starts_with(want) => {}
            (want, got) => panic!("{name}: cpu-reason {got:?}, expected one starting with {want:?}"),
        }
    }
    assert!(
        failures.is_empty(),
        "trttiler differs from the CPU mosaic: {failures:?}"
    );
    drop(batches);
    for pool in pools {
        pool.set_active(false).ok();
    }
}

/// trttiler in real pipelines: camera frames uploaded by `cudaupload` (GStreamer's
/// nvcodec plugin), the mosaic composed on the GPU into CUDA memory (read back by
/// `cudadownload`) and into system memory, against the same pipeline in system memory
/// (composed on the CPU).
///
/// The 720p I420 camera is BT.601 by its caps, not its size's default (BT.709). Mapped
/// GstCudaMemory frames once lost that colorimetry (the size's default was used), so this
/// test differed in mosaic 0 by at most 15 levels in 7,923 bytes while the kernel tests,
/// whose frames all carry their size's default, were identical; the CPU mosaic with that
/// tile read as BT.709 gives exactly those numbers. `tiler_element_on_gst_cuda_memory`
/// covers it closer to the kernel.
#[test]
#[ignore = "needs a CUDA GPU: run with --include-ignored, as scripts/device/run-tests.sh does"]
fn tiler_in_a_cuda_pipeline_matches_the_system_memory_pipeline() {
    let _dev = device();
    common::init();
    assert!(
        gst::ElementFactory::find("cudaupload").is_some()
            && gst::ElementFactory::find("cudadownload").is_some(),
        "GStreamer's nvcodec plugin (cudaupload, cudadownload) is not installed"
    );
    let cams = [
        (0, "NV12", 640, 480),
        (1, "I420", 1280, 720),
        (2, "RGBA", 320, 240),
    ];
    // (frames in CUDA memory, mosaic in CUDA memory): the mosaics, gpu-frames, cpu-reason and
    // the caps negotiated on trtmux's sink pads and trttiler's sink pad.
    let run = |cuda_in: bool, cuda_out: bool| -> (Vec<gst::Buffer>, u64, Option<String>, Vec<String>) {
        // The mosaic's colorimetry pinned too (RGB tiles are converted by it): through
        // cudadownload and without it, negotiation may otherwise settle on different ones.
        let out = if cuda_out {
            "video/x-raw(memory:CUDAMemory),format=NV12,colorimetry=bt601 ! cudadownload ! video/x-raw,format=NV12,colorimetry=bt601"
        } else {
            "video/x-raw,format=NV12,colorimetry=bt601"
        };
        let mut desc = format!(
            "trtmux name=m ! trttiler name=t rows=2 columns=2 width=960 height=540 ! {out} ! appsink name=out sync=false"
        );
        // No capsfilter after cudaupload: trtmux itself asks for CUDA memory
        // (GStreamer 1.22's cudaupload would otherwise pass system memory through).
        for (i, (camera, format, w, h)) in cams.iter().enumerate() {
            let up = if cuda_in { " ! cudaupload" } else { "" };
            // One colorimetry in both runs: caps through cudaupload and without it may
            // otherwise settle on different ones (each run converts by its own caps).
            let colorimetry = if *format == "RGBA" {
                ""
            } else {
                ",colorimetry=bt601"
            };
            desc += &format!(
                " trtscenesrc camera={camera} num-buffers=4 ! video/x-raw,format={format},width={w},height={h}{colorimetry}{up} ! m.sink_{i}"
            );
        }
        let p = common::parse(&desc);
        let frames = common::collect(&p, "out");
        let tiler = p.by_name("t").expect("trttiler");
        let mux = p.by_name("m").expect("trtmux");
        let mut pads: Vec<gst::Pad> = (0..cams.len())
            .map(|i| mux.static_pad(&format!("sink_{i}")).expect("trtmux sink pad"))
            .collect();
        pads.push(tiler.static_pad("sink").expect("trttiler sink pad"));
        let negotiated = record_caps(&pads);
        if let Err(e) = common::run_to_end(&p, gst::ClockTime::from_seconds(60)) {
            panic!("{desc}: {e}");
        }
        let gpu_frames = tiler.property::<u64>("gpu-frames");
        let reason = tiler.property::<Option<String>>("cpu-reason");
        let frames = std::mem::take(&mut *frames.lock().expect("frames"));
        let negotiated = std::mem::take(&mut *negotiated.lock().expect("caps"));
        println!(
            "trttiler pipeline {desc}: {} mosaics, gpu-frames {gpu_frames}, cpu-reason {reason:?}",
            frames.len()
        );
        for c in &negotiated {
            println!("  negotiated {c}");
        }
        (frames, gpu_frames, reason, negotiated)
    };
    let (cpu, cpu_gpu_frames, reason, _) = run(false, false);
    assert_eq!(cpu.len(), 4);
    assert_eq!(cpu_gpu_frames, 0);
    assert!(
        reason
            .as_deref()
            .is_some_and(|r| r.starts_with("the batches are in system memory")),
        "{reason:?}"
    );
    let info = gst_video::VideoInfo::builder(VideoFormat::Nv12, 960, 540)
        .build()
        .expect("info");
    for cuda_out in [true, false] {
        let (gpu, gpu_frames, reason, negotiated) = run(true, cuda_out);
        assert_eq!(gpu.len(), 4);
        for c in &negotiated {
            assert!(
                c.contains(CUDA_MEMORY_FEATURE),
                "CUDA memory expected after cudaupload, negotiated {c}"
            );
        }
        assert_eq!(
            gpu_frames, 12,
            "every frame composed on the GPU; trttiler's cpu-reason: {reason:?}; negotiated: {negotiated:#?}"
        );
        assert_eq!(reason, None);
        for (k, (g, c)) in gpu.iter().zip(&cpu).enumerate() {
            let (gp, gs) = read_system_buffer(g.as_ref(), &info);
            let (cp, cs) = read_system_buffer(c.as_ref(), &info);
            let (max, count) = compare_planes(VideoFormat::Nv12, 960, 540, (&gp, &gs), (&cp, &cs));
            println!(
                "trttiler pipeline (CUDA output {cuda_out}), mosaic {k}: max difference {max}, {count} bytes differ"
            );
            assert!(max <= 2, "CUDA output {cuda_out}, mosaic {k}: {max}");
        }
    }
}

/// Records `pad: caps` for every caps event reaching one of `pads`.
fn record_caps(pads: &[gst::Pad]) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    for pad in pads {
        let (seen, name) = (
            seen.clone(),
            format!(
                "{}:{}",
                pad.parent().map(|p| p.name()).unwrap_or_default(),
                pad.name()
            ),
        );
        pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
            if let Some(gst::EventView::Caps(c)) = info.event().map(|e| e.view()) {
                if let Ok(mut v) = seen.lock() {
                    v.push(format!("{name}: {}", c.caps()));
                }
            }
            gst::PadProbeReturn::Ok
        });
    }
    seen
}

/// Timing: 8 NV12 1920x1080 frames into a 3x3 NV12 1920x1080 mosaic, kernel time with
/// CUDA events, against the CPU tiler (compose + conversion, one thread); one JSON line.
#[test]
#[ignore = "needs a CUDA GPU: run with --include-ignored, as scripts/device/run-tests.sh does"]
fn timing_tiler_8x1080p_nv12() {
    let dev = device();
    let (w, h, n) = (1920u32, 1080u32, 8usize);
    let mut rng = Rng(31);
    let frames: Vec<TestFrame> = (0..n)
        .map(|_| TestFrame::new(&dev, &mut rng, VideoFormat::Nv12, w, h, false).expect("upload"))
        .collect();
    let mut tiles: Vec<Option<CudaFrame>> = frames.iter().map(|f| Some(f.cuda())).collect();
    tiles.push(None);
    let out = TestFrame::new(&dev, &mut rng, VideoFormat::Nv12, w, h, false).expect("output");
    let out_frame = out.cuda();
    let mut tiler = CudaTiler::new(&dev).expect("CUDA tiler");
    for _ in 0..20 {
        tiler.compose(&tiles, 3, 3, &out_frame).expect("warm-up");
        tiler.wait().expect("wait");
    }
    let start = Event::new(&dev, true).expect("event");
    let stop = Event::new(&dev, true).expect("event");
    let (mut kernel_us, mut total_us) = (Vec::new(), Vec::new());
    for _ in 0..200 {
        let t0 = Instant::now();
        unsafe { start.record(tiler.stream()) }.expect("record");
        tiler.compose(&tiles, 3, 3, &out_frame).expect("compose");
        unsafe { stop.record(tiler.stream()) }.expect("record");
        tiler.wait().expect("wait");
        total_us.push(t0.elapsed().as_secs_f64() * 1e6);
        stop.synchronize().expect("sync");
        kernel_us.push(stop.elapsed_ms(&start).expect("elapsed") as f64 * 1e3);
    }
    // Into host memory (a system-memory output frame): compose, then one download.
    let mut host: Vec<Vec<u8>> = (0..2)
        .map(|p| vec![0u8; out.strides[p] * plane_geometry(VideoFormat::Nv12, p, w as usize, h as usize).1])
        .collect();
    let mut to_host_us = Vec::new();
    for _ in 0..50 {
        let mut slices: Vec<&mut [u8]> = host.iter_mut().map(|p| p.as_mut_slice()).collect();
        let t0 = Instant::now();
        tiler
            .compose_to_host(
                &tiles,
                3,
                3,
                VideoFormat::Nv12,
                (w, h),
                YuvCoefficients::size_default(h),
                &mut slices,
                &out.strides,
            )
            .expect("compose_to_host");
        to_host_us.push(t0.elapsed().as_secs_f64() * 1e6);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let grid = Grid {
        width: w,
        height: h,
        rows: 3,
        columns: 3,
    };
    let readers: Vec<Option<FrameReader>> = frames.iter().map(|f| Some(f.reader())).collect();
    let t0 = Instant::now();
    for _ in 0..3 {
        let rgba = cpu_mosaic(&grid, &readers);
        let _ = convert(&rgba, VideoFormat::Nv12, w, h, &out.strides);
    }
    let cpu_ms = t0.elapsed().as_secs_f64() * 1e3 / 3.0;
    let info = cuda::probe().ok();
    let line = serde_json::json!({
        "bench": "cuda_tiler",
        "device": info.as_ref().map(|i| i.name.clone()),
        "driver_version": info.as_ref().map(|i| i.driver_version),
        "arch": tiler.arch(),
        "case": "8x NV12 1920x1080 into a 3x3 NV12 1920x1080 mosaic",
        "kernel_us_median": median(&mut kernel_us),
        "compose_total_us_median": median(&mut total_us),
        "compose_to_host_us_median": median(&mut to_host_us),
        "d2h_bytes_per_batch_to_host": w as usize * h as usize * 3 / 2,
        "launches_per_batch": 1,
        "h2d_bytes_per_batch": 0,
        "cpu_compose_ms_per_batch": cpu_ms,
        "cpu_threads": 1,
    });
    println!("{line}");
    assert!(median(&mut kernel_us) > 0.0);
}
