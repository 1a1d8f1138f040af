//! Device tests of the CUDA path: GPU preprocessing against the CPU reference, the
//! GStreamer CUDA memory and context interop, and a timing line.
//!
//! Built only with `--features cuda`; every test is `#[ignore]`d (reported as ignored by
//! `cargo test --features cuda` on machines without a GPU) and runs with
//! `--include-ignored`, where a missing GPU is a failure.
//! On the GPU machine: `scripts/device/build.sh` here, then
//! `scripts/device/run-tests.sh` there (see that script for what to carry).
#![cfg(feature = "cuda")]

mod common;

use gsttrtvision::video::color::YuvCoefficients;
use std::time::Instant;

use common::cuda::{
    cuda_pool_buffer, device, fill_cuda_buffer, n_planes, plane_geometry, read_cuda_buffer, system_buffer,
    Rng, TestFrame,
};

use gst::prelude::*;
use gst_video::prelude::*;
use gst_video::VideoFormat;
use gsttrtvision::config::{ColorOrder, PreprocessConfig, ResizeMode};
use gsttrtvision::cuda::{
    self, copy_device_to_host, device_lease, CudaContext, CudaError, CudaFrame, DeviceBuffer, DeviceContext,
    Event, Stream, CUDA_FORMATS,
};
use gsttrtvision::ops::preprocess::cuda::{CudaPreprocessor, INITIAL_POOL, MAX_POOL};
use gsttrtvision::ops::preprocess::{self, Scratch};
use gsttrtvision::tensor::{DType, Tensor};
use gsttrtvision::video::FrameReader;

fn decode(dtype: DType, bytes: &[u8]) -> Vec<f32> {
    match dtype {
        DType::F16 => bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_ne_bytes([c[0], c[1]]).to_f32())
            .collect(),
        _ => bytes
            .chunks_exact(4)
            .map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    }
}

/// Device tensor bytes, after waiting for its event.
fn download(ctx: &DeviceContext, t: &Tensor) -> Vec<u8> {
    let lease = device_lease(t).expect("a device tensor of the preprocessor");
    lease.wait().expect("kernel completes");
    let mut host = vec![0u8; t.len_bytes()];
    copy_device_to_host(ctx, lease.ptr(), lease.len(), &mut host).expect("download");
    host
}

/// Max abs difference and number of differing elements between GPU and CPU rows.
fn compare(cfg: &PreprocessConfig, gpu: &[u8], cpu: &[u8]) -> (f32, usize) {
    let (g, c) = (decode(cfg.dtype, gpu), decode(cfg.dtype, cpu));
    assert_eq!(g.len(), c.len());
    let mut max = 0f32;
    let mut diff = 0;
    for (a, b) in g.iter().zip(&c) {
        let d = (a - b).abs();
        if d.is_nan() || d > 0.0 {
            diff += 1;
            max = max.max(if d.is_nan() { f32::INFINITY } else { d });
        }
    }
    (max, diff)
}

fn tolerance(dtype: DType) -> f32 {
    if dtype == DType::F16 {
        1e-2
    } else {
        1e-3
    }
}

fn configs() -> Vec<(&'static str, PreprocessConfig)> {
    let d = PreprocessConfig::default();
    vec![
        ("letterbox-640-f32-rgb", d),
        (
            "letterbox-640-f16-bgr-imagenet",
            PreprocessConfig {
                dtype: DType::F16,
                color: ColorOrder::Bgr,
                mean: [0.485, 0.456, 0.406],
                std: [0.229, 0.224, 0.225],
                ..d
            },
        ),
        (
            "stretch-300x200-f16-rgb-pad0",
            PreprocessConfig {
                width: 300,
                height: 200,
                dtype: DType::F16,
                resize: ResizeMode::Stretch,
                pad_value: 0,
                ..d
            },
        ),
        (
            "letterbox-333x517-f32-bgr-scale1",
            PreprocessConfig {
                width: 333,
                height: 517,
                color: ColorOrder::Bgr,
                scale: 1.0,
                mean: [10.0, 20.0, 30.0],
                std: [2.0, 3.0, 4.0],
                ..d
            },
        ),
    ]
}

/// Every format at 1920x1080 and 641x479, all in one mixed batch (one launch) per config,
/// against `preprocess::fill_row` on the same pixels.
#[test]
#[ignore = "needs a CUDA GPU: run with --include-ignored, as scripts/device/run-tests.sh does"]
fn gpu_matches_cpu_for_every_format() {
    let ctx = device();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut frames = Vec::new();
    for (i, &format) in CUDA_FORMATS.iter().enumerate() {
        for (j, (w, h)) in [(1920u32, 1080u32), (641, 479)].into_iter().enumerate() {
            let odd = (i + j) % 2 == 1;
            frames.push(TestFrame::new(&ctx, &mut rng, format, w, h, odd).expect("upload"));
        }
    }
    let mut failures = Vec::new();
    for (name, cfg, px) in configs()
        .into_iter()
        .flat_map(|(name, cfg)| [1u32, 2, 4, 8].map(move |px| (name, cfg, px)))
        .filter(|(_, cfg, px)| cfg.width % px == 0)
    {
        let name = format!("{name} x{px}");
        let mut pre = CudaPreprocessor::new(&ctx, &cfg, frames.len()).expect("preprocessor");
        pre.set_pixels_per_thread(px).expect("kernel variant");
        if px == 8 {
            // Another thread block too (the result must not depend on it).
            pre.set_block(64, 2).expect("block");
        }
        if px == 2 || px == 4 {
            // 4:2:0 taps read from rows staged in shared memory (same result).
            pre.set_staging(true);
        }
        if px == 1 {
            // The entry point compiled for 8 resident blocks per SM (same result).
            pre.set_min_blocks_per_sm(8).expect("occupancy variant");
        }
        let cuda_frames: Vec<CudaFrame> = frames.iter().map(TestFrame::cuda).collect();
        let transforms: Vec<_> = frames.iter().map(|f| cfg.transform(f.width, f.height)).collect();
        let t0 = Instant::now();
        let tensor = pre.run(&cuda_frames, &transforms).expect("run");
        let gpu = download(&ctx, &tensor);
        let gpu_ms = t0.elapsed().as_secs_f64() * 1e3;
        assert_eq!(
            tensor.shape,
            vec![frames.len(), 3, cfg.height as usize, cfg.width as usize]
        );
        assert_eq!(tensor.dtype, cfg.dtype);
        let row = 3 * (cfg.width * cfg.height) as usize * cfg.dtype.size();
        let mut cpu = vec![0u8; row];
        let mut scratch = Scratch::default();
        for (k, f) in frames.iter().enumerate() {
            preprocess::fill_row(&cfg, &f.reader(), &transforms[k], &mut cpu, &mut scratch);
            let (max, diff) = compare(&cfg, &gpu[k * row..(k + 1) * row], &cpu);
            println!(
                "{name}: {:?} {}x{} strides {:?}: max abs error {max:e}, {diff} of {} values differ",
                f.format,
                f.width,
                f.height,
                f.strides,
                row / cfg.dtype.size()
            );
            if max > tolerance(cfg.dtype) {
                failures.push(format!(
                    "{name} {:?} {}x{}: max abs error {max}",
                    f.format, f.width, f.height
                ));
            }
        }
        println!(
            "{name}: batch of {} on {} (arch {}), {gpu_ms:.2} ms including download",
            frames.len(),
            cuda::probe().map(|i| i.name).unwrap_or_default(),
            pre.arch()
        );
    }
    assert!(
        failures.is_empty(),
        "GPU and CPU disagree:\n{}",
        failures.join("\n")
    );
}

/// Batches of NV12 frames only take the kernel entry point specialised for them
/// (`CudaPreprocessor::set_nv12_path`): same bytes as the generic entry point, same values as
/// `preprocess::fill_row`, for every config and pixels-per-thread variant; a batch holding a
/// frame it cannot take (odd chroma stride) runs the generic one.
#[test]
#[ignore = "needs a CUDA GPU: run with --include-ignored, as scripts/device/run-tests.sh does"]
fn nv12_entry_point_matches_generic_and_cpu() {
    let ctx = device();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let sizes = [
        (1920u32, 1080u32),
        (641, 479),
        (1280, 720),
        (2, 2),
        (3, 5),
        (17, 2),
    ];
    let frames: Vec<TestFrame> = sizes
        .iter()
        .map(|&(w, h)| TestFrame::new(&ctx, &mut rng, VideoFormat::Nv12, w, h, false).expect("upload"))
        .collect();
    // Random odd-ish strides: draw until the chroma stride is odd.
    let odd = (0..64)
        .map(|_| TestFrame::new(&ctx, &mut rng, VideoFormat::Nv12, 640, 480, true).expect("upload"))
        .find(|f| f.strides[1] % 2 == 1)
        .expect("an odd chroma stride");
    let mut failures = Vec::new();
    for (name, cfg, px) in configs()
        .into_iter()
        .flat_map(|(name, cfg)| [1u32, 2, 4, 8].map(move |px| (name, cfg, px)))
        .filter(|(_, cfg, px)| cfg.width % px == 0)
    {
        let mut pre = CudaPreprocessor::new(&ctx, &cfg, frames.len() + 1).expect("preprocessor");
        pre.set_pixels_per_thread(px).expect("kernel variant");
        assert!(pre.nv12_path(), "on by default");
        let cuda_frames: Vec<CudaFrame> = frames.iter().map(TestFrame::cuda).collect();
        let transforms: Vec<_> = frames.iter().map(|f| cfg.transform(f.width, f.height)).collect();
        let fast = download(&ctx, &pre.run(&cuda_frames, &transforms).expect("run"));
        assert!(
            pre.last_run_nv12(),
            "{name} x{px}: an NV12 batch takes the NV12 entry point"
        );
        // The NV12 entry point with all 32 inline parameter slots (batches above 8 frames).
        pre.set_small_params(false);
        let fast_large = download(&ctx, &pre.run(&cuda_frames, &transforms).expect("run"));
        pre.set_small_params(true);
        pre.set_nv12_path(false);
        let generic = download(&ctx, &pre.run(&cuda_frames, &transforms).expect("run"));
        assert!(!pre.last_run_nv12());
        if fast != generic || fast_large != generic {
            failures.push(format!("{name} x{px}: NV12 and generic entry points differ"));
        }
        let row = 3 * (cfg.width * cfg.height) as usize * cfg.dtype.size();
        let mut cpu = vec![0u8; row];
        let mut scratch = Scratch::default();
        for (k, f) in frames.iter().enumerate() {
            preprocess::fill_row(&cfg, &f.reader(), &transforms[k], &mut cpu, &mut scratch);
            let (max, diff) = compare(&cfg, &fast[k * row..(k + 1) * row], &cpu);
            println!(
                "{name} x{px} nv12 {}x{}: max abs error {max:e}, {diff} values differ",
                f.width, f.height
            );
            if max > tolerance(cfg.dtype) {
                failures.push(format!(
                    "{name} x{px} {}x{}: max abs error {max}",
                    f.width, f.height
                ));
            }
        }
        // One frame with an odd chroma stride: the whole batch takes the generic kernel.
        pre.set_nv12_path(true);
        let mut mixed = cuda_frames.clone();
        mixed.push(odd.cuda());
        let mut mixed_t = transforms.clone();
        mixed_t.push(cfg.transform(odd.width, odd.height));
        let out = download(&ctx, &pre.run(&mixed, &mixed_t).expect("run"));
        assert!(
            !pre.last_run_nv12(),
            "{name} x{px}: an odd chroma stride must take the generic kernel"
        );
        if out[..fast.len()] != fast[..] {
            failures.push(format!(
                "{name} x{px}: the generic kernel differs on a mixed batch"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Object crops (trtinfer operate-on=objects): every crop of every frame is one row of one
/// launch of the same kernel (the frame repeated, the crop's placement as the row's
/// transform), against `preprocess::fill_row` with the same placements. Crops inside the
/// frame, on its edges, partly outside, tiny and larger than the input; stretched and with
/// kept aspect ratio.
#[test]
#[ignore = "needs a CUDA GPU: run with --include-ignored, as scripts/device/run-tests.sh does"]
fn gpu_crops_match_cpu_crops() {
    use gsttrtvision::geometry::{BoxF, LetterboxTransform};
    let ctx = device();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut frames = Vec::new();
    for (i, &format) in CUDA_FORMATS.iter().enumerate() {
        let (w, h) = if i % 2 == 0 {
            (1920u32, 1080u32)
        } else {
            (641, 479)
        };
        frames.push(TestFrame::new(&ctx, &mut rng, format, w, h, i % 3 == 1).expect("upload"));
    }
    let rects = |w: f32, h: f32| {
        [
            BoxF::new(w * 0.2, h * 0.3, w * 0.35, h * 0.6),
            BoxF::new(0.0, 0.0, 37.0, 53.0),
            BoxF::new(w - 40.5, h - 20.25, w, h),
            BoxF::new(-15.0, h * 0.5, 30.0, h * 0.5 + 90.0),
            BoxF::new(100.3, 200.7, 103.3, 205.7),
            BoxF::new(10.0, 10.0, w - 10.0, h - 10.0),
        ]
    };
    let d = PreprocessConfig::default();
    let crop_configs = [
        (
            "crop-64-stretch-f32",
            PreprocessConfig {
                width: 64,
                height: 64,
                resize: ResizeMode::Stretch,
                ..d
            },
        ),
        (
            "crop-96x48-keep-aspect-f16-bgr",
            PreprocessConfig {
                width: 96,
                height: 48,
                dtype: DType::F16,
                color: ColorOrder::Bgr,
                ..d
            },
        ),
    ];
    let mut failures = Vec::new();
    for (name, cfg) in crop_configs {
        let keep = cfg.resize == ResizeMode::Letterbox;
        let mut rows = Vec::new();
        for (k, f) in frames.iter().enumerate() {
            for r in rects(f.width as f32, f.height as f32) {
                let t = LetterboxTransform::crop(f.width, f.height, &r, cfg.width, cfg.height, keep);
                rows.push((k, t));
            }
        }
        let cuda_frames: Vec<CudaFrame> = rows.iter().map(|(k, _)| frames[*k].cuda()).collect();
        let transforms: Vec<_> = rows.iter().map(|(_, t)| *t).collect();
        let mut pre = CudaPreprocessor::new(&ctx, &cfg, rows.len()).expect("preprocessor");
        let tensor = pre
            .run(&cuda_frames, &transforms)
            .expect("one launch for all crops");
        let gpu = download(&ctx, &tensor);
        let row = 3 * (cfg.width * cfg.height) as usize * cfg.dtype.size();
        let mut cpu = vec![0u8; row];
        let mut scratch = Scratch::default();
        let mut worst = (0f32, 0usize);
        for (i, (k, t)) in rows.iter().enumerate() {
            preprocess::fill_row(&cfg, &frames[*k].reader(), t, &mut cpu, &mut scratch);
            let (max, diff) = compare(&cfg, &gpu[i * row..(i + 1) * row], &cpu);
            worst = (worst.0.max(max), worst.1 + diff);
            if max > tolerance(cfg.dtype) {
                failures.push(format!(
                    "{name} row {i} ({:?}, {t:?}): max abs error {max}",
                    frames[*k].format
                ));
            }
        }
        println!(
            "{name}: {} crops of {} frames in one launch: max abs error {:e}, {} values differ",
            rows.len(),
            frames.len(),
            worst.0,
            worst.1
        );
    }
    assert!(
        failures.is_empty(),
        "GPU and CPU crops disagree:\n{}",
        failures.join("\n")
    );
}

/// Pool reuse and growth, leases, and argument errors.
#[test]
#[ignore = "needs a CUDA GPU: run with --include-ignored, as scripts/device/run-tests.sh does"]
fn pool_leases_and_errors() {
    let ctx = device();
    let cfg = PreprocessConfig {
        width: 64,
        height: 48,
        dtype: DType::F16,
        ..Default::default()
    };
    let mut rng = Rng(7);
    let f = TestFrame::new(&ctx, &mut rng, VideoFormat::Nv12, 100, 60, false).expect("upload");
    let frame = f.cuda();
    let t = cfg.transform(100, 60);
    let mut pre = CudaPreprocessor::new(&ctx, &cfg, 2).expect("preprocessor");
    pre.set_tensor_name("x");
    assert_eq!(pre.pool_size(), INITIAL_POOL);

    // Held tensors make the pool grow up to MAX_POOL, then runs wait (bounded) and fail
    // cleanly when none comes back.
    pre.configure_pool(MAX_POOL, Some(std::time::Duration::from_millis(100)));
    let mut held = Vec::new();
    for _ in 0..MAX_POOL {
        held.push(pre.run(std::slice::from_ref(&frame), &[t]).expect("run"));
    }
    assert_eq!(pre.pool_size(), MAX_POOL);
    let ptrs: Vec<u64> = held
        .iter()
        .map(|t| device_lease(t).map_or(0, |l| l.ptr()))
        .collect();
    assert!(ptrs.iter().all(|p| p % 256 == 0), "{ptrs:x?}");
    assert!(matches!(
        pre.run(std::slice::from_ref(&frame), &[t]),
        Err(CudaError::PoolWait(
            gsttrtvision::tensor::pool::PoolWaitError::Timeout { limit: MAX_POOL, .. }
        ))
    ));
    // A clone of a tensor keeps its buffer; dropping the last one recycles it.
    let first = held.remove(0);
    let clone = first.clone();
    drop(first);
    assert!(pre.run(std::slice::from_ref(&frame), &[t]).is_err());
    drop(clone);
    let again = pre
        .run(std::slice::from_ref(&frame), &[t])
        .expect("recycled buffer");
    assert_eq!(device_lease(&again).map(|l| l.ptr()), Some(ptrs[0]));
    assert_eq!(again.name, "x");
    let lease = device_lease(&again).expect("lease");
    lease.wait().expect("wait");
    assert!(lease.is_ready().expect("query"));
    // GPU-side wait from another stream.
    let other = Stream::new(&ctx).expect("stream");
    // SAFETY: a live stream.
    unsafe { lease.wait_on_stream(other.raw()) }.expect("stream wait");
    other.synchronize().expect("sync");
    drop(held);

    // Errors.
    assert!(matches!(pre.run(&[], &[]), Err(CudaError::InvalidInput(_))));
    assert!(matches!(
        pre.run(&[frame.clone(), frame.clone(), frame.clone()], &[t, t, t]),
        Err(CudaError::InvalidInput(_))
    ));
    assert!(matches!(
        pre.run(std::slice::from_ref(&frame), &[]),
        Err(CudaError::InvalidInput(_))
    ));
    let wrong = cfg.transform(200, 60);
    assert!(matches!(
        pre.run(std::slice::from_ref(&frame), &[wrong]),
        Err(CudaError::InvalidInput(_))
    ));
    assert!(CudaPreprocessor::new(&ctx, &cfg, 0).is_err());
    assert!(CudaPreprocessor::new(&ctx, &PreprocessConfig { width: 0, ..cfg }, 1).is_err());
    let host = Tensor::from_f32("h", vec![1], &[0.0]);
    assert!(device_lease(&host).is_none());
    // SAFETY: never read.
    let yuy2 = unsafe { CudaFrame::from_raw(VideoFormat::Yuy2, 4, 4, &[256], &[8]) };
    assert!(matches!(yuy2, Err(CudaError::UnsupportedFormat(_))));
    pre.synchronize().expect("sync");
}

#[test]
#[ignore = "needs a CUDA GPU: run with --include-ignored, as scripts/device/run-tests.sh does"]
fn gst_cuda_memory_frames() {
    let dev = device();
    if let Err(e) = gst::init() {
        panic!("gst::init: {e}");
    }
    let ctx = CudaContext::new_primary(0).expect("GstCudaContext wrapping the primary context");
    assert_eq!(ctx.device_id(), 0);
    assert_eq!(ctx.handle(), dev.raw(), "wraps the primary context");
    let dctx = ctx.device_context().expect("device context");
    assert!(dctx.is_primary());
    // A second wrapper of the primary context is another object over the same CUcontext:
    // memory of one is usable in the other.
    let twin = CudaContext::new_primary(0).expect("second wrapper");
    assert_ne!(twin, ctx);
    assert!(twin.can_access(&ctx) && ctx.can_access(&twin));

    // Context helpers on a bin without neighbours: creates one, answers queries, and a
    // second element takes it from the GstContext.
    let bin = gst::Bin::new();
    let slot = std::sync::Mutex::new(None);
    let made = cuda::ensure_element_context(bin.upcast_ref(), -1, &slot).expect("ensure");
    assert!(slot.lock().map(|s| s.is_some()).unwrap_or(false));
    assert!(DeviceContext::from_gst(&made)
        .map(|d| d.is_primary())
        .unwrap_or(false));
    let mut q = gst::query::Context::new("gst.cuda.context");
    assert!(cuda::handle_context_query(bin.upcast_ref(), &mut q, Some(&made)));
    let answered = q.context_owned().expect("context in the query");
    let mut other = None;
    assert!(cuda::handle_set_context(
        bin.upcast_ref(),
        &answered,
        0,
        &mut other
    ));
    assert_eq!(other.as_ref(), Some(&made));
    let mut wrong_device = None;
    assert!(!cuda::handle_set_context(
        bin.upcast_ref(),
        &answered,
        7,
        &mut wrong_device
    ));

    // CUDA buffer pool frames written on the device through a CUDA map (plane addresses
    // and strides as GstCudaMemory lays them out, see fill_cuda_buffer), then
    // preprocessed from a read map.
    let mut rng = Rng(99);
    let cfg = PreprocessConfig {
        dtype: DType::F16,
        ..Default::default()
    };
    let mut pre = CudaPreprocessor::new(&dctx, &cfg, 5).expect("preprocessor");
    let mut frames = Vec::new();
    let mut maps = Vec::new();
    let mut infos = Vec::new();
    for (format, w, h) in [
        (VideoFormat::Nv12, 1920u32, 1080u32),
        (VideoFormat::I420, 641, 479),
        (VideoFormat::I420, 1280, 720),
        (VideoFormat::Rgba, 641, 479),
        (VideoFormat::Bgrx, 1280, 720),
    ] {
        let info = gst_video::VideoInfo::builder(format, w, h).build().expect("info");
        let (pool, mut buffer) = cuda_pool_buffer(&ctx, &info);
        assert!(cuda::is_cuda_buffer(&buffer));
        let (host, strides) = fill_cuda_buffer(&dctx, &mut rng, &mut buffer, &info);
        let map = cuda::map_cuda_frame(&buffer, &info).expect("CUDA map");
        assert!(map.is_accessible_from(&ctx));
        assert_eq!(map.context().as_ref(), Some(&ctx));
        let f = map.frame();
        assert_eq!((f.format(), f.width(), f.height()), (format, w, h));
        assert_eq!(
            (0..f.n_planes()).map(|p| f.stride(p)).collect::<Vec<_>>(),
            strides
        );
        frames.push((host, strides, info.clone()));
        maps.push(map);
        infos.push(info);
        pool.set_active(false).ok();
    }
    let cuda_frames: Vec<CudaFrame> = maps.iter().map(|m| m.frame()).collect();
    let transforms: Vec<_> = infos
        .iter()
        .map(|i| cfg.transform(i.width(), i.height()))
        .collect();
    let tensor = pre.run(&cuda_frames, &transforms).expect("run");
    drop(maps); // the tensor's lease keeps the buffers alive
    let gpu = download(&dctx, &tensor);
    let row = 3 * (cfg.width * cfg.height) as usize * cfg.dtype.size();
    let mut cpu = vec![0u8; row];
    for (k, (host, strides, info)) in frames.iter().enumerate() {
        let planes: Vec<&[u8]> = host.iter().map(|p| p.as_slice()).collect();
        let reader = FrameReader::from_planes(info.format(), info.width(), info.height(), &planes, strides)
            .map(|r| r.with_colors(YuvCoefficients::for_info(info)))
            .expect("reader");
        preprocess::fill_row(&cfg, &reader, &transforms[k], &mut cpu, &mut Scratch::default());
        let (max, diff) = compare(&cfg, &gpu[k * row..(k + 1) * row], &cpu);
        println!(
            "GstCudaMemory {:?} {}x{} strides {strides:?}: max abs error {max:e}, {diff} values differ",
            info.format(),
            info.width(),
            info.height()
        );
        assert!(max <= tolerance(cfg.dtype), "{:?}: {max}", info.format());
    }

    // System memory is refused with NotCudaMemory.
    let info = gst_video::VideoInfo::builder(VideoFormat::Nv12, 64, 48)
        .build()
        .expect("info");
    let sys_buf = gst::Buffer::with_size(info.size()).expect("buffer");
    assert!(matches!(
        cuda::map_cuda_frame(&sys_buf, &info),
        Err(CudaError::NotCudaMemory)
    ));
}

/// Holds a stream until the host opens it: `cuStreamWaitValue32` on a word of mapped pinned
/// memory. Work queued behind a closed gate starts only once everything is queued, so
/// events around it time the GPU's work without the host's time to submit it (the
/// method of nvbench's blocking kernel).
struct Gate {
    host: *mut u32,
    dev: cudarc::driver::sys::CUdeviceptr,
    ctx: DeviceContext,
    next: u32,
}

impl Gate {
    /// None where the device cannot wait on memory values.
    fn new(ctx: &DeviceContext) -> Option<Self> {
        use cudarc::driver::sys;
        let _g = ctx.push().ok()?;
        let mut p: *mut std::ffi::c_void = std::ptr::null_mut();
        // SAFETY: out-pointer to a local, context current.
        let r = unsafe {
            sys::cuMemHostAlloc(
                &mut p,
                4,
                sys::CU_MEMHOSTALLOC_DEVICEMAP | sys::CU_MEMHOSTALLOC_PORTABLE,
            )
        };
        if r != sys::CUresult::CUDA_SUCCESS {
            return None;
        }
        // SAFETY: a 4-byte pinned allocation.
        unsafe { std::ptr::write_volatile(p.cast::<u32>(), 0) };
        let mut dev = 0;
        // SAFETY: `p` was allocated with CU_MEMHOSTALLOC_DEVICEMAP.
        let r = unsafe { sys::cuMemHostGetDevicePointer_v2(&mut dev, p, 0) };
        let gate = Self {
            host: p.cast(),
            dev,
            ctx: ctx.clone(),
            next: 0,
        };
        (r == sys::CUresult::CUDA_SUCCESS).then_some(gate)
    }

    /// Closes the gate on `stream` (its later work waits); false where unsupported.
    fn close(&mut self, stream: cudarc::driver::sys::CUstream) -> bool {
        use cudarc::driver::sys;
        self.next += 1;
        let Ok(_g) = self.ctx.push() else { return false };
        // SAFETY: a live mapped word; the stream belongs to this context.
        let r = unsafe {
            sys::cuStreamWaitValue32_v2(
                stream,
                self.dev,
                self.next,
                sys::CUstreamWaitValue_flags::CU_STREAM_WAIT_VALUE_GEQ as u32,
            )
        };
        r == sys::CUresult::CUDA_SUCCESS
    }

    /// Lets the stream go on.
    fn open(&self) {
        // SAFETY: a live pinned word, read by the device.
        unsafe { std::ptr::write_volatile(self.host, self.next) };
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.open();
        if let Ok(_g) = self.ctx.push() {
            // SAFETY: nothing waits on the word any more once the contexts' work is done.
            unsafe {
                cudarc::driver::sys::cuCtxSynchronize();
                cudarc::driver::sys::cuMemFreeHost(self.host.cast());
            }
        }
    }
}

/// Timing: a batch of 8 1080p NV12 frames into a 640x640 f16 letterbox tensor, kernel
/// time with CUDA events, against the device-to-device copy bandwidth; one JSON line.
#[test]
#[ignore = "needs a CUDA GPU: run with --include-ignored, as scripts/device/run-tests.sh does"]
fn timing_8x1080p_nv12_to_640_f16() {
    let ctx = device();
    let (w, h, batch) = (1920u32, 1080u32, 8usize);
    let cfg = PreprocessConfig {
        dtype: DType::F16,
        ..Default::default()
    };
    let mut rng = Rng(42);
    let frames: Vec<TestFrame> = (0..batch)
        .map(|_| TestFrame::new(&ctx, &mut rng, VideoFormat::Nv12, w, h, false).expect("upload"))
        .collect();
    let cuda_frames: Vec<CudaFrame> = frames.iter().map(TestFrame::cuda).collect();
    let transforms = vec![cfg.transform(w, h); batch];
    let mut pre = CudaPreprocessor::new(&ctx, &cfg, batch).expect("preprocessor");
    let default_px = pre.pixels_per_thread();
    assert!(
        pre.set_pixels_per_thread(3).is_err(),
        "3 pixels per thread is refused"
    );
    let start = Event::new(&ctx, true).expect("event");
    let stop = Event::new(&ctx, true).expect("event");
    let gate = std::cell::RefCell::new(Gate::new(&ctx));
    // Median of 200 single launches queued behind a closed gate, timed with events (the
    // kernel's time on the GPU, without the host's submission); None where unsupported.
    // `run` queues the work and returns what must outlive it (dropped once the gate is
    // open: a preprocessor tensor waits for its kernel when dropped).
    let queued = |stream: cudarc::driver::sys::CUstream,
                  run: &mut dyn FnMut() -> Box<dyn std::any::Any>|
     -> Option<f64> {
        let mut gate = gate.borrow_mut();
        let g = gate.as_mut()?;
        let mut times = Vec::new();
        for i in 0..220 {
            if !g.close(stream) {
                return None;
            }
            unsafe { start.record(stream) }.expect("record");
            let keep = run();
            unsafe { stop.record(stream) }.expect("record");
            g.open();
            stop.synchronize().expect("sync");
            drop(keep);
            if i >= 20 {
                times.push(stop.elapsed_ms(&start).expect("elapsed") as f64 * 1e3);
            }
        }
        times.sort_by(f64::total_cmp);
        Some(times[times.len() / 2])
    };
    // (median, min) of 200 single launches timed with events, the time per batch of 200
    // batches queued back to back (two tensors alive at a time), in microseconds, and the
    // median queued behind a gate (`queued`).
    let time = |pre: &mut CudaPreprocessor| -> (f64, f64, f64, Option<f64>) {
        for _ in 0..20 {
            drop(pre.run(&cuda_frames, &transforms).expect("warm-up"));
        }
        pre.synchronize().expect("sync");
        let mut times = Vec::new();
        for _ in 0..200 {
            unsafe { start.record(pre.stream()) }.expect("record");
            let t = pre.run(&cuda_frames, &transforms).expect("run");
            unsafe { stop.record(pre.stream()) }.expect("record");
            stop.synchronize().expect("sync");
            times.push(stop.elapsed_ms(&start).expect("elapsed") as f64 * 1e3);
            drop(t);
        }
        unsafe { start.record(pre.stream()) }.expect("record");
        let mut prev = None;
        for _ in 0..200 {
            let t = pre.run(&cuda_frames, &transforms).expect("run");
            prev = Some(t);
        }
        drop(prev);
        unsafe { stop.record(pre.stream()) }.expect("record");
        stop.synchronize().expect("sync");
        let pipelined_us = stop.elapsed_ms(&start).expect("elapsed") as f64 * 1e3 / 200.0;
        times.sort_by(f64::total_cmp);
        let stream = pre.stream();
        let q = queued(stream, &mut || {
            Box::new(pre.run(&cuda_frames, &transforms).expect("run"))
        });
        (times[times.len() / 2], times[0], pipelined_us, q)
    };
    let default_block = pre.block();
    assert!(
        pre.set_block(48, 4).is_err(),
        "x must be a multiple of the warp size"
    );
    assert!(pre.set_block(64, 8).is_err(), "at most 256 threads");
    let mut variants = serde_json::Map::new();
    let mut chosen = None;
    let blocks = [default_block, (64, 4), (128, 2), (32, 8), (64, 2)];
    for px in [1u32, 2, 4, 8] {
        pre.set_pixels_per_thread(px).expect("variant");
        for (i, &(bx, by)) in blocks.iter().enumerate() {
            // Every block shape for the default pixels per thread, the default block else.
            if i > 0 && px != default_px {
                continue;
            }
            pre.set_block(bx, by).expect("block");
            let (median, min, pipelined, q) = time(&mut pre);
            variants.insert(
                format!("x{px}-block{bx}x{by}"),
                serde_json::json!({"kernel_us_median": median, "kernel_us_min": min, "pipelined_us_per_batch": pipelined, "kernel_us_median_queued": q}),
            );
            if px == default_px && (bx, by) == default_block {
                chosen = Some((median, min, pipelined, q));
            }
        }
        pre.set_block(default_block.0, default_block.1).expect("block");
    }
    // The default pixels per thread with one setting changed, timed with the default block
    // and 32 x 8: variant "x<px>-block<x>x<y>-<suffix>".
    pre.set_pixels_per_thread(default_px).expect("variant");
    let mut timed = |pre: &mut CudaPreprocessor, suffix: &str| {
        for &(bx, by) in &[default_block, (32, 8)] {
            pre.set_block(bx, by).expect("block");
            let (median, min, pipelined, q) = time(pre);
            variants.insert(
                format!("x{default_px}-block{bx}x{by}-{suffix}"),
                serde_json::json!({"kernel_us_median": median, "kernel_us_min": min, "pipelined_us_per_batch": pipelined, "kernel_us_median_queued": q}),
            );
        }
        pre.set_block(default_block.0, default_block.1).expect("block");
    };
    // The generic entry point instead of the NV12 one.
    pre.set_nv12_path(false);
    timed(&mut pre, "generic");
    pre.set_nv12_path(true);
    // The NV12 entry point taking all 32 inline parameter slots (3072 bytes) instead of 8.
    pre.set_small_params(false);
    timed(&mut pre, "params3072");
    pre.set_small_params(true);
    // 4:2:0 row staging (shared memory) instead of direct loads.
    pre.set_staging(true);
    timed(&mut pre, "staged");
    pre.set_staging(false);
    // Compiled for more resident warps (fewer registers per thread).
    assert!(
        pre.set_min_blocks_per_sm(5).is_err(),
        "5 blocks per SM is no variant"
    );
    for occ in [6u32, 8] {
        pre.set_min_blocks_per_sm(occ).expect("occupancy variant");
        timed(&mut pre, &format!("occ{occ}"));
    }
    pre.set_min_blocks_per_sm(0).expect("default entry point");
    pre.set_block(default_block.0, default_block.1).expect("block");
    let (median_us, min_us, pipelined_us, queued_us) = chosen.expect("the default variant was timed");

    // Bytes: each output row in the content reads two source rows (and their chroma
    // rows); count the distinct rows touched, at full row width.
    let t = transforms[0];
    let (y0, y1) = preprocess::content_span(t.pad_y, t.scale_y, h, cfg.height);
    let mut luma = std::collections::BTreeSet::new();
    for y in y0..y1 {
        let c = preprocess::source_coord(y, t.pad_y, t.scale_y).clamp(0.0, (h - 1) as f32);
        let i0 = c.floor() as u32;
        luma.insert(i0);
        luma.insert((i0 + 1).min(h - 1));
    }
    let chroma: std::collections::BTreeSet<u32> = luma.iter().map(|r| r / 2).collect();
    let touched = batch * (luma.len() + chroma.len()) * w as usize;
    let full = batch * (w * h) as usize * 3 / 2;
    let written = batch * 3 * (cfg.width * cfg.height) as usize * 2;

    // Device-to-device copy bandwidth of 1 GiB (counting read + write).
    let gib = 1usize << 30;
    let a = DeviceBuffer::new(&ctx, gib).expect("1 GiB");
    let b = DeviceBuffer::new(&ctx, gib).expect("1 GiB");
    let stream = Stream::new(&ctx).expect("stream");
    let copy = |n: usize| -> f64 {
        let _g = ctx.push().expect("push");
        unsafe { start.record(stream.raw()) }.expect("record");
        for _ in 0..n {
            // SAFETY: two live 1 GiB allocations of this context.
            let r = unsafe { cudarc::driver::sys::cuMemcpyDtoDAsync_v2(b.ptr(), a.ptr(), gib, stream.raw()) };
            assert_eq!(r, cudarc::driver::sys::CUresult::CUDA_SUCCESS);
        }
        unsafe { stop.record(stream.raw()) }.expect("record");
        stop.synchronize().expect("sync");
        stop.elapsed_ms(&start).expect("elapsed") as f64 / n as f64
    };
    copy(2);
    let copy_ms = copy(10);
    let copy_gbps = 2.0 * gib as f64 / (copy_ms * 1e-3) / 1e9;
    let achieved_gbps = (touched + written) as f64 / (median_us * 1e-6) / 1e9;
    // The same measure for one copy moving as many bytes as the kernel (read + write),
    // timed like the kernel (median of 200 single launches between events): the same
    // launch and tail costs, the same working set against the 50 MB L2.
    let same = (touched + written) / 2;
    let mut same_us = Vec::new();
    for i in 0..220 {
        let _g = ctx.push().expect("push");
        unsafe { start.record(stream.raw()) }.expect("record");
        // SAFETY: `same` bytes lie inside both 1 GiB allocations.
        let r = unsafe { cudarc::driver::sys::cuMemcpyDtoDAsync_v2(b.ptr(), a.ptr(), same, stream.raw()) };
        assert_eq!(r, cudarc::driver::sys::CUresult::CUDA_SUCCESS);
        unsafe { stop.record(stream.raw()) }.expect("record");
        stop.synchronize().expect("sync");
        if i >= 20 {
            same_us.push(stop.elapsed_ms(&start).expect("elapsed") as f64 * 1e3);
        }
    }
    same_us.sort_by(f64::total_cmp);
    let same_copy_us = same_us[same_us.len() / 2];
    let same_copy_gbps = 2.0 * same as f64 / (same_copy_us * 1e-6) / 1e9;
    // The same copy queued behind the gate, like the kernel's queued timing.
    let same_copy_queued_us = queued(stream.raw(), &mut || {
        let _g = ctx.push().expect("push");
        // SAFETY: `same` bytes lie inside both 1 GiB allocations.
        let r = unsafe { cudarc::driver::sys::cuMemcpyDtoDAsync_v2(b.ptr(), a.ptr(), same, stream.raw()) };
        assert_eq!(r, cudarc::driver::sys::CUresult::CUDA_SUCCESS);
        Box::new(())
    });
    let moved = (touched + written) as f64;
    let queued_gbps = queued_us.map(|us| moved / (us * 1e-6) / 1e9);

    // CPU reference on this machine's cores, for comparison.
    let readers: Vec<FrameReader> = frames.iter().map(TestFrame::reader).collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut scratch: Vec<Scratch> = (0..threads).map(|_| Scratch::default()).collect();
    let mut out = vec![0u8; written];
    let t0 = Instant::now();
    for _ in 0..5 {
        preprocess::fill_batch(&cfg, &readers, &transforms, &mut out, &mut scratch);
    }
    let cpu_ms = t0.elapsed().as_secs_f64() * 1e3 / 5.0;

    let info = cuda::probe().ok();
    let line = serde_json::json!({
        "bench": "cuda_preprocess",
        "device": info.as_ref().map(|i| i.name.clone()),
        "driver_version": info.as_ref().map(|i| i.driver_version),
        "arch": pre.arch(),
        "case": "8x NV12 1920x1080 -> [8,3,640,640] f16 letterbox",
        "pixels_per_thread": default_px,
        "staging": pre.staging(),
        "nv12_entry_point": pre.nv12_path(),
        "small_params": pre.small_params(),
        "block": [default_block.0, default_block.1],
        "variants": variants,
        "kernel_us_median": median_us,
        "kernel_us_min": min_us,
        "pipelined_us_per_batch": pipelined_us,
        "bytes_read_touched_rows": touched,
        "bytes_read_full_frames": full,
        "bytes_written": written,
        "achieved_gbps": achieved_gbps,
        "dtod_copy_gbps": copy_gbps,
        "dtod_copy_same_bytes_us_median": same_copy_us,
        "dtod_copy_same_bytes_gbps": same_copy_gbps,
        "fraction_of_same_size_copy": achieved_gbps / same_copy_gbps,
        "fraction_of_copy_bandwidth": achieved_gbps / copy_gbps,
        "fraction_of_copy_bandwidth_pipelined":
            (touched + written) as f64 / (pipelined_us * 1e-6) / 1e9 / copy_gbps,
        "kernel_us_median_queued": queued_us,
        "achieved_gbps_queued": queued_gbps,
        "fraction_of_copy_bandwidth_queued": queued_gbps.map(|g| g / copy_gbps),
        "dtod_copy_same_bytes_us_median_queued": same_copy_queued_us,
        "fraction_of_same_size_copy_queued": queued_gbps
            .zip(same_copy_queued_us)
            .map(|(g, us)| g / (moved / (us * 1e-6) / 1e9)),
        "cpu_fill_batch_ms": cpu_ms,
        "cpu_threads": 1,
    });
    println!("{line}");
    assert!(median_us > 0.0);
}

/// A device tensor holding `bytes` (the buffer lives as long as the tensor).
fn device_tensor(ctx: &DeviceContext, name: &str, dtype: DType, shape: Vec<usize>, bytes: &[u8]) -> Tensor {
    let buf = DeviceBuffer::new(ctx, bytes.len()).unwrap();
    buf.copy_from_host(bytes).unwrap();
    Tensor {
        name: name.into(),
        dtype,
        shape,
        storage: gsttrtvision::tensor::TensorStorage::Device {
            ptr: buf.ptr(),
            len: bytes.len(),
            keepalive: std::sync::Arc::new(buf),
        },
    }
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_ne_bytes()).collect()
}

/// Synthetic YOLO-seg outputs: `[b, 4 + classes + protos, anchors]` with sparse high
/// scores, and prototypes `[b, protos, ph, pw]`.
fn yolo_seg_outputs(
    b: usize,
    classes: usize,
    protos: usize,
    anchors: usize,
    (ph, pw): (usize, usize),
    seed: u64,
) -> (Vec<f32>, Vec<f32>) {
    let mut rng = Rng(seed);
    let mut u = || (rng.next() >> 11) as f32 / (1u64 << 53) as f32;
    let ch = 4 + classes + protos;
    let mut out0 = vec![0f32; b * ch * anchors];
    for bi in 0..b {
        for a in 0..anchors {
            let at = |c: usize| (bi * ch + c) * anchors + a;
            out0[at(0)] = u() * 640.0;
            out0[at(1)] = u() * 640.0;
            out0[at(2)] = 4.0 + u() * 200.0;
            out0[at(3)] = 4.0 + u() * 200.0;
            for c in 0..classes {
                out0[at(4 + c)] = u().powi(10);
            }
            for k in 0..protos {
                out0[at(4 + classes + k)] = u() * 2.0 - 1.0;
            }
        }
    }
    let mut p = vec![0f32; b * protos * ph * pw];
    for (i, v) in p.iter_mut().enumerate() {
        let (x, y) = ((i % pw) as f32, ((i / pw) % ph) as f32);
        *v = ((x * 0.21 + (i / (ph * pw)) as f32).sin() + (y * 0.17).cos()) * 2.0 + u() - 0.5;
    }
    (out0, p)
}

/// YOLO decoding and mask selection on the GPU give the CPU parser's detections (same
/// boxes, scores, classes, order) and its masks (IoU ≥ 0.98, here expected identical),
/// for f32 and f16 outputs; prints a timing line for 8 x [116, 8400] outputs.
#[test]
#[ignore = "needs a CUDA GPU: run with --include-ignored, as scripts/device/run-tests.sh does"]
fn gpu_postprocess_matches_cpu() {
    use gsttrtvision::batch::MaskTensor;
    use gsttrtvision::geometry::LetterboxTransform;
    use gsttrtvision::ops::{
        maskselect::cuda::{MaskPlanes, MaskRequest, MaskSelector},
        yolo::{self, cuda::YoloDecoder},
    };
    use gsttrtvision::parsers::{self, ParseParams, ParseScratch, ParserKind};
    let ctx = device();
    let (b, classes, np, anchors, (ph, pw)) = (4, 3, 8, 2100, (40, 40));
    let (out0, protos) = yolo_seg_outputs(b, classes, np, anchors, (ph, pw), 7);
    let transforms: Vec<_> = (0..b)
        .map(|i| LetterboxTransform::letterbox(1280 - 100 * i as u32, 720, 640, 640))
        .collect();
    let params = ParseParams::default();
    let shape0 = vec![b, 4 + classes + np, anchors];
    let shape1 = vec![b, np, ph, pw];
    let mut dec = YoloDecoder::new(&ctx).unwrap();
    let mut sel = MaskSelector::new(&ctx).unwrap();
    for dtype in [DType::F32, DType::F16] {
        let enc = |v: &[f32]| -> Vec<u8> {
            match dtype {
                DType::F16 => v
                    .iter()
                    .flat_map(|x| half::f16::from_f32(*x).to_ne_bytes())
                    .collect(),
                _ => f32_bytes(v),
            }
        };
        let (b0, b1) = (enc(&out0), enc(&protos));
        let host0 = Tensor::host(
            "output0",
            dtype,
            shape0.clone(),
            gsttrtvision::tensor::PooledBytes::detached(b0.clone()),
        );
        let host1 = Tensor::host(
            "output1",
            dtype,
            shape1.clone(),
            gsttrtvision::tensor::PooledBytes::detached(b1.clone()),
        );
        let cpu = parsers::parse(
            ParserKind::YoloSeg,
            &params,
            &[host0.clone(), host1.clone()],
            &transforms,
        )
        .unwrap();
        let dev0 = device_tensor(&ctx, "output0", dtype, shape0.clone(), &b0);
        let dev1 = device_tensor(&ctx, "output1", dtype, shape1.clone(), &b1);
        let mut cands = Vec::new();
        let copied = dec
            .decode(&dev0, classes, params.conf_threshold, &mut cands)
            .unwrap();
        let gpu = yolo::finish_candidates(&mut ParseScratch::default(), &params, &cands, &transforms, true);
        assert_eq!(cpu.len(), gpu.len());
        let total: usize = cpu.iter().map(|f| f.len()).sum();
        assert!(total > 20, "the synthetic outputs must give detections ({total})");
        eprintln!(
            "{dtype:?}: {} candidates, {copied} bytes copied, {total} detections",
            cands.len()
        );
        let values = host1.f32_values().unwrap();
        let mut requests = Vec::new();
        let mut expected = Vec::new();
        for (row, (c, g)) in cpu.iter().zip(&gpu).enumerate() {
            assert_eq!(c.len(), g.len(), "frame {row}");
            for (dc, dg) in c.iter().zip(g) {
                assert_eq!(
                    (dc.class_id, dc.query, dc.bbox, dc.confidence),
                    (dg.class_id, dg.query, dg.bbox, dg.confidence)
                );
                let tr = &transforms[row];
                let cpu_mask = gsttrtvision::ops::maskselect::frame_mask(
                    dc,
                    &MaskTensor::Prototypes(host1.clone()),
                    &values,
                    row,
                    tr,
                    0.5,
                );
                let Some(cm) = cpu_mask else { continue };
                requests.push(MaskRequest {
                    planes: MaskPlanes::Prototypes {
                        protos: &dev1,
                        coefficients: &dev0,
                        first: 4 + classes,
                        anchor: dg.query as usize,
                    },
                    row,
                    rect: dg.bbox.to_pixel_rect(tr.frame_w, tr.frame_h),
                    transform: *tr,
                    mask_threshold: 0.5,
                });
                expected.push(cm);
            }
        }
        let mut offsets = Vec::new();
        let masks = sel.run(&requests, true, &mut offsets).unwrap();
        let (mut diff, mut px, mut worst) = (0usize, 0usize, 1.0f64);
        for (k, cm) in expected.iter().enumerate() {
            let gm = &masks.host[masks.offsets[k]..masks.offsets[k + 1]];
            assert_eq!((requests[k].rect.2, requests[k].rect.3), (cm.width, cm.height));
            let (mut inter, mut union) = (0usize, 0usize);
            for (a, g) in cm.data.iter().zip(gm) {
                let (a, g) = (*a >= 128, *g >= 128);
                inter += (a && g) as usize;
                union += (a || g) as usize;
                diff += (a != g) as usize;
            }
            px += cm.data.len();
            if union > 0 {
                worst = worst.min(inter as f64 / union as f64);
            }
        }
        eprintln!(
            "{dtype:?}: {} masks, {px} pixels, {diff} differ, worst IoU {worst:.5}",
            expected.len()
        );
        assert!(!expected.is_empty());
        assert!(worst >= 0.98, "mask IoU {worst}");
    }

    // Timing: 8 x [116, 8400] f32 (YOLO11-seg 640 layout), 32 x 160 x 160 prototypes.
    let (b, classes, np, anchors) = (8, 80, 32, 8400);
    let (out0, protos) = yolo_seg_outputs(b, classes, np, anchors, (160, 160), 11);
    let dev0 = device_tensor(
        &ctx,
        "output0",
        DType::F32,
        vec![b, 4 + classes + np, anchors],
        &f32_bytes(&out0),
    );
    let dev1 = device_tensor(
        &ctx,
        "output1",
        DType::F32,
        vec![b, np, 160, 160],
        &f32_bytes(&protos),
    );
    let transforms: Vec<_> = (0..b)
        .map(|_| LetterboxTransform::letterbox(1920, 1080, 640, 640))
        .collect();
    let params = ParseParams {
        conf_threshold: 0.5,
        ..ParseParams::default()
    };
    let mut cands = Vec::new();
    let mut scratch = ParseScratch::default();
    let (mut t_dec, mut t_mask, mut bytes, mut n_masks, mut mask_bytes) =
        (Vec::new(), Vec::new(), 0usize, 0usize, 0usize);
    for it in 0..60 {
        let t0 = Instant::now();
        let copied = dec
            .decode(&dev0, classes, params.conf_threshold, &mut cands)
            .unwrap();
        let dets = yolo::finish_candidates(&mut scratch, &params, &cands, &transforms, true);
        let t1 = Instant::now();
        let requests: Vec<_> = dets
            .iter()
            .enumerate()
            .flat_map(|(row, f)| f.iter().take(10).map(move |d| (row, d.clone())))
            .map(|(row, d)| MaskRequest {
                planes: MaskPlanes::Prototypes {
                    protos: &dev1,
                    coefficients: &dev0,
                    first: 4 + classes,
                    anchor: d.query as usize,
                },
                row,
                rect: d.bbox.to_pixel_rect(1920, 1080),
                transform: transforms[row],
                mask_threshold: 0.5,
            })
            .collect();
        let mut offsets = Vec::new();
        let masks = sel.run(&requests, true, &mut offsets).unwrap();
        let t2 = Instant::now();
        if it >= 10 {
            t_dec.push((t1 - t0).as_secs_f64() * 1e6);
            t_mask.push((t2 - t1).as_secs_f64() * 1e6);
            bytes = copied;
            n_masks = requests.len();
            mask_bytes = masks.host.len();
        }
    }
    t_dec.sort_by(f64::total_cmp);
    t_mask.sort_by(f64::total_cmp);
    println!(
        "{{\"bench\":\"cuda_postprocess\",\"batch\":{b},\"output0\":[{b},{},{anchors}],\"decode_us_median\":{:.1},\"mask_us_median\":{:.1},\"candidates\":{},\"decode_d2h_bytes\":{bytes},\"masks\":{n_masks},\"mask_d2h_bytes\":{mask_bytes},\"output0_bytes\":{}}}",
        4 + classes + np,
        t_dec[t_dec.len() / 2],
        t_mask[t_mask.len() / 2],
        cands.len(),
        out0.len() * 4
    );
}

/// Files of the chain's model, relative to an engines directory.
const CHAIN_MODEL_FILES: [&str; 3] = [
    "shapes-yolo-seg.toml",
    "shapes.txt",
    "models/shapes-yolo-seg.onnx",
];

/// The chain model's config. Its directory: `TRTV_ENGINES` when set (the GStreamer 1.28
/// bundle's check.sh points it at the bundle's engines/), else the first of
/// `.device-build/engines` (the staged copy on the GPU machine), `engines` (both relative
/// to the working directory) and this checkout's engines/ that holds every file of the
/// model. Panics naming the missing files otherwise.
fn chain_model() -> std::path::PathBuf {
    let dirs: Vec<std::path::PathBuf> = match std::env::var_os("TRTV_ENGINES") {
        Some(d) => vec![d.into()],
        None => vec![
            ".device-build/engines".into(),
            "engines".into(),
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("engines"),
        ],
    };
    let missing = |d: &std::path::Path| -> Vec<std::path::PathBuf> {
        CHAIN_MODEL_FILES
            .iter()
            .map(|f| d.join(f))
            .filter(|p| !p.is_file())
            .collect()
    };
    if let Some(d) = dirs.iter().find(|d| missing(d).is_empty()) {
        return d.join(CHAIN_MODEL_FILES[0]);
    }
    let cwd = std::env::current_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    let report: Vec<String> = dirs
        .iter()
        .map(|d| format!("{}: missing {:?}", d.display(), missing(d)))
        .collect();
    panic!(
        "the chain model's files are missing (working directory {cwd}): {}; set TRTV_ENGINES to a \
         directory holding {CHAIN_MODEL_FILES:?} (python3 engines/generate_models.py --out engines/models \
         makes the ONNX file)",
        report.join("; ")
    );
}

/// Plays the pipeline `desc` whose appsink is named `out`; a pipeline that does not start
/// panics with the error message its elements posted.
fn play_to_appsink(desc: &str) -> (gst::Pipeline, gst_app::AppSink) {
    let pipeline = gst::parse::launch(desc)
        .unwrap_or_else(|e| panic!("{desc}: {e}"))
        .downcast::<gst::Pipeline>()
        .unwrap();
    let sink = pipeline
        .by_name("out")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    if pipeline.set_state(gst::State::Playing).is_err() {
        let err = pipeline
            .bus()
            .and_then(|b| b.pop_filtered(&[gst::MessageType::Error]));
        pipeline.set_state(gst::State::Null).ok();
        match err.as_ref().map(|m| m.view()) {
            Some(gst::MessageView::Error(e)) => panic!(
                "the pipeline did not start: {} ({:?}) from {:?}; pipeline: {desc}",
                e.error(),
                e.debug(),
                e.src().map(|s| s.path_string())
            ),
            _ => panic!("the pipeline did not start (no error message was posted); pipeline: {desc}"),
        }
    }
    (pipeline, sink)
}

type ChainResults = Vec<((u32, u64), Vec<gsttrtvision::results::Detection>)>;

/// Runs `cameras` synthetic cameras through trtmux (batch-size 4) → trtpreprocess →
/// trtinfer (with `infer_props`) → trtmaskselect and returns per (camera, frame) the
/// detections (class, box, confidence, mask).
fn run_chain(gpu: bool, frames: u32, cameras: u32, infer_props: &str) -> ChainResults {
    let model = chain_model();
    let (upload, backend) = if gpu {
        (
            "cudaupload ! video/x-raw(memory:CUDAMemory) ! ",
            "onnxruntime-cuda",
        )
    } else {
        ("", "onnxruntime-cpu")
    };
    let mut desc = format!(
        "trtmux name=m batch-size=4 ! trtpreprocess config-file={m} ! trtinfer name=infer model={m} backend={backend} {infer_props} \
         ! trtmaskselect threshold=0.3 ! appsink name=out sync=false ",
        m = model.display()
    );
    for i in 0..cameras {
        desc += &format!(
            "trtscenesrc camera={i} num-buffers={frames} ! video/x-raw,format=NV12,width=640,height=480 ! {upload}m.sink_{i} "
        );
    }
    let (pipeline, sink) = play_to_appsink(&desc);
    let bus = pipeline.bus().unwrap();
    let mut results = Vec::new();
    loop {
        let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(30)) else {
            if sink.is_eos() {
                break;
            }
            let err = bus.pop_filtered(&[gst::MessageType::Error]);
            pipeline.set_state(gst::State::Null).unwrap();
            panic!(
                "{backend}: no batch for 30 s after {} frames; bus error: {err:?}",
                results.len()
            );
        };
        let buf = sample.buffer().unwrap();
        let meta = buf.meta::<gsttrtvision::batch::BatchMeta>().expect("batch meta");
        for slot in &meta.batch().slots {
            results.push((
                (slot.pad_index(), slot.frame_number),
                slot.results.detections.clone(),
            ));
        }
    }
    let err = bus.pop_filtered(&[gst::MessageType::Error]);
    let warning = bus.pop_filtered(&[gst::MessageType::Warning]);
    pipeline.set_state(gst::State::Null).unwrap();
    if let Some(gst::MessageView::Error(e)) = err.as_ref().map(|m| m.view()) {
        panic!("{backend}: {} ({:?})", e.error(), e.debug());
    }
    if let Some(gst::MessageView::Warning(w)) = warning.as_ref().map(|m| m.view()) {
        panic!("{backend} {infer_props}: warning {}", w.error());
    }
    results.sort_by_key(|r| r.0);
    results
}

/// Same classes, boxes within 1 px, confidences within 1e-3, masks with IoU ≥ 0.98;
/// returns (detections, masks, worst IoU).
fn assert_same_detections(cpu: &ChainResults, gpu: &ChainResults) -> (usize, usize, f64) {
    assert_eq!(gpu.len(), cpu.len());
    let (mut dets, mut masks, mut worst) = (0usize, 0usize, 1.0f64);
    for ((kc, c), (kg, g)) in cpu.iter().zip(gpu) {
        assert_eq!(kc, kg);
        assert_eq!(c.len(), g.len(), "{kc:?}: {c:?} vs {g:?}");
        for (a, b) in c.iter().zip(g) {
            dets += 1;
            assert_eq!(a.class_id, b.class_id, "{kc:?}");
            for (x, y) in [
                (a.bbox.x0, b.bbox.x0),
                (a.bbox.y0, b.bbox.y0),
                (a.bbox.x1, b.bbox.x1),
                (a.bbox.y1, b.bbox.y1),
            ] {
                assert!((x - y).abs() <= 1.0, "{kc:?}: {:?} vs {:?}", a.bbox, b.bbox);
            }
            assert!((a.confidence - b.confidence).abs() < 1e-3);
            match (&a.mask, &b.mask) {
                (Some(ma), Some(mb)) => {
                    masks += 1;
                    let (mut inter, mut union) = (0usize, 0usize);
                    for y in ma.y.min(mb.y)..(ma.y + ma.height).max(mb.y + mb.height) {
                        for x in ma.x.min(mb.x)..(ma.x + ma.width).max(mb.x + mb.width) {
                            let (p, q) = (ma.contains(x, y), mb.contains(x, y));
                            inter += (p && q) as usize;
                            union += (p || q) as usize;
                        }
                    }
                    if union > 0 {
                        worst = worst.min(inter as f64 / union as f64);
                    }
                }
                (None, None) => {}
                (ma, mb) => panic!(
                    "{kc:?}: mask on one side only: {} vs {}",
                    ma.is_some(),
                    mb.is_some()
                ),
            }
        }
    }
    assert!(dets > 0 && masks > 0);
    assert!(worst >= 0.98, "mask IoU {worst}");
    (dets, masks, worst)
}

/// Initialises GStreamer and registers the plugin after checking that the chain model's
/// files, a GPU and ONNX Runtime with the CUDA provider (`ORT_DYLIB_PATH`) are at hand.
fn init_chain() {
    chain_model();
    let _dev = device();
    gst::init().unwrap();
    let _ = gsttrtvision::plugin_register_static();
    assert!(
        std::env::var_os("ORT_DYLIB_PATH").is_some(),
        "ORT_DYLIB_PATH (ONNX Runtime with the CUDA provider) is not set"
    );
}

/// The whole GPU chain (CUDA frames, GPU preprocessing, ONNX Runtime CUDA provider with
/// outputs left on the device, GPU YOLO decoding and mask selection) gives the CPU chain's
/// detections: same classes, boxes within 1 px, masks with IoU ≥ 0.98.
#[test]
#[ignore = "needs a CUDA GPU: run with --include-ignored, as scripts/device/run-tests.sh does"]
fn gpu_chain_matches_cpu_chain() {
    init_chain();
    let frames = 12;
    let cpu = run_chain(false, frames, 4, "");
    let gpu = run_chain(true, frames, 4, "");
    assert_eq!(cpu.len(), 4 * frames as usize);
    let (dets, masks, worst) = assert_same_detections(&cpu, &gpu);
    eprintln!("GPU chain vs CPU chain: {dets} detections, {masks} masks, worst mask IoU {worst:.4}");
}

/// The GPU chain with a fixed batch and CUDA graphs (trtinfer cuda-graph=true) gives the
/// CPU chain's detections: with full batches (4 cameras, batch-size 4) and with batches
/// of 3 padded to 4 (3 cameras); and the same with fixed-batch=true alone. No warning may
/// be posted (a graph that cannot be captured warns).
#[test]
#[ignore = "needs a CUDA GPU: run with --include-ignored, as scripts/device/run-tests.sh does"]
fn gpu_chain_with_cuda_graphs_matches_cpu_chain() {
    init_chain();
    let frames = 12;
    for cameras in [4, 3] {
        let cpu = run_chain(false, frames, cameras, "");
        assert_eq!(cpu.len(), (cameras * frames) as usize);
        for props in ["cuda-graph=true max-batch=4", "fixed-batch=true max-batch=4"] {
            let gpu = run_chain(true, frames, cameras, props);
            let (dets, masks, worst) = assert_same_detections(&cpu, &gpu);
            eprintln!(
                "GPU chain ({props}, {cameras} cameras) vs CPU chain: {dets} detections, {masks} masks, worst mask IoU {worst:.4}"
            );
        }
    }
}

// --- Overlay ---------------------------------------------------------------------------

use gsttrtvision::geometry::BoxF;
use gsttrtvision::ops::overlay::draw::Canvas;
use gsttrtvision::ops::overlay::{draw_frame, OverlayCommands, OverlayStyle};
use gsttrtvision::results::{Detection, DeviceMask, FrameMask};
use gsttrtvision::video::PixelsMut;
use std::sync::Arc;

/// `n` labelled detections with elliptic masks on a grid over a `w x h` frame, partly
/// overlapping each other and the frame edges, plus the scene's ground truth.
fn overlay_detections(rng: &mut Rng, w: u32, h: u32, n: usize) -> Vec<Detection> {
    let mut dets = gsttrtvision::scene::scene_detections(rng.next() as u32 % 8, rng.next() % 500, w, h);
    let labels: [Arc<str>; 3] = [Arc::from("person"), Arc::from("car"), Arc::from("bicycle")];
    for i in 0..n {
        let bw = (w / 6).max(2) + (rng.next() % 40) as u32;
        let bh = (h / 6).max(2) + (rng.next() % 30) as u32;
        let x0 = (rng.next() % (w as u64 + 20)) as i64 - 10;
        let y0 = (rng.next() % (h as u64 + 20)) as i64 - 10;
        let (mx, my) = (x0.max(0) as u32, y0.max(0) as u32);
        let data = (0..bw * bh)
            .map(|k| {
                let (dx, dy) = (
                    (k % bw) as f32 / bw as f32 - 0.5,
                    (k / bw) as f32 / bh as f32 - 0.5,
                );
                if dx * dx + dy * dy <= 0.25 {
                    255
                } else {
                    (rng.next() % 100) as u8
                }
            })
            .collect();
        dets.push(Detection {
            model: Arc::from("m"),
            class_id: i as u32,
            label: labels[i % 3].clone(),
            confidence: 0.31 + (i % 60) as f32 / 100.0,
            bbox: BoxF::new(
                x0 as f32 + 0.4,
                y0 as f32,
                (x0 + bw as i64) as f32,
                (y0 + bh as i64) as f32 - 0.6,
            ),
            object_id: if i % 2 == 0 { i as i64 * 7 } else { -1 },
            query: i as u32,
            mask_source: None,
            mask: Some(FrameMask {
                x: mx,
                y: my,
                width: bw,
                height: bh,
                data,
                device: None,
            }),
            secondary: Vec::new(),
        });
    }
    dets
}

/// The same detections with every other mask only in device memory (uploaded here).
fn with_device_masks(ctx: &DeviceContext, dets: &[Detection]) -> Vec<Detection> {
    let mut out = dets.to_vec();
    for d in out.iter_mut().step_by(2) {
        if let Some(m) = d.mask.as_mut() {
            let buf = DeviceBuffer::new(ctx, m.data.len()).expect("mask buffer");
            buf.copy_from_host(&m.data).expect("mask upload");
            m.device = Some(DeviceMask {
                ptr: buf.ptr(),
                ready_event: 0,
                keepalive: Arc::new(buf),
            });
            m.data = Vec::new();
        }
    }
    out
}

/// Draws `dets` on the host planes of `f` with the CPU overlay.
fn draw_cpu_planes(f: &mut TestFrame, dets: &[Detection], style: &OverlayStyle) {
    let mut it = f.host.iter_mut();
    let mut next = || it.next().map(|p| p.as_mut_slice()).unwrap_or(&mut []);
    let planes = [next(), next(), next()];
    let px = PixelsMut::from_planes(f.format, f.width, f.height, planes, &f.strides).expect("CPU pixels");
    draw_frame(&mut Canvas::from_pixels(px), dets, style, &mut String::new());
}

/// Draws `list` on `frames` on the GPU in one launch, waits, and checks every frame against
/// its CPU drawing: every byte within 2 levels (expected: equal). `what` names a case in
/// the printed line.
fn gpu_drawing_matches_cpu(
    ctx: &DeviceContext,
    overlay: &mut gsttrtvision::ops::overlay::cuda::CudaOverlay,
    frames: &[TestFrame],
    list: &OverlayCommands,
    what: &str,
) {
    let cuda_frames: Vec<CudaFrame> = frames.iter().map(TestFrame::cuda).collect();
    assert!(overlay.draw(&cuda_frames, list).expect("draw"));
    overlay.wait().expect("kernel");
    for f in frames {
        let (max, count) = f.compare(ctx);
        println!(
            "{what} {:?} {}x{}: max difference {max}, {count} bytes differ",
            f.format, f.width, f.height
        );
        assert!(max <= 2, "{:?} {}x{}: {max}", f.format, f.width, f.height);
    }
}

/// GPU drawing of one batch of mixed formats and sizes (host and device masks) against
/// the CPU drawing of the same detections: every byte within 2 levels (expected: equal).
#[test]
#[ignore = "needs a CUDA GPU: run with --include-ignored, as scripts/device/run-tests.sh does"]
fn overlay_gpu_matches_cpu() {
    let ctx = device();
    let mut overlay = gsttrtvision::ops::overlay::cuda::CudaOverlay::new(&ctx).expect("CUDA overlay");
    let mut rng = Rng(7);
    let style = OverlayStyle::default();
    let cases = [
        (VideoFormat::Nv12, 1920, 1080, false),
        (VideoFormat::Nv12, 641, 479, true),
        (VideoFormat::Rgba, 1280, 720, false),
        (VideoFormat::Rgba, 641, 479, true),
        (VideoFormat::Bgrx, 333, 211, false),
        (VideoFormat::Rgbx, 64, 48, false),
        (VideoFormat::Bgra, 7, 5, false),
        (VideoFormat::Rgb, 321, 241, true),
        (VideoFormat::I420, 641, 479, false),
        (VideoFormat::Nv12, 1, 1, false),
    ];
    for style in [
        style,
        OverlayStyle {
            line_width: 9,
            mask_alpha: 0.77,
            text_scale: 3,
            ..style
        },
    ] {
        let mut frames = Vec::new();
        let mut list = OverlayCommands::default();
        let mut keep = Vec::new();
        for &(format, w, h, odd) in &cases {
            let mut f = TestFrame::new(&ctx, &mut rng, format, w, h, odd).expect("upload");
            let dets = overlay_detections(&mut rng, w, h, 24);
            let gpu_dets = with_device_masks(&ctx, &dets);
            list.add_frame(w, h, &YuvCoefficients::size_default(h), &gpu_dets, &style);
            draw_cpu_planes(&mut f, &dets, &style);
            keep.push(gpu_dets);
            frames.push(f);
        }
        let what = format!("overlay line {} scale {}", style.line_width, style.text_scale);
        gpu_drawing_matches_cpu(&ctx, &mut overlay, &frames, &list, &what);
        drop(keep);
    }
    // Mismatched lists are refused without launching.
    let f = TestFrame::new(&ctx, &mut rng, VideoFormat::Rgba, 16, 16, false).expect("upload");
    assert!(matches!(
        overlay.draw(&[f.cuda()], &OverlayCommands::default()),
        Err(CudaError::InvalidInput(_))
    ));
    let mut list = OverlayCommands::default();
    list.add_frame(16, 16, &YuvCoefficients::size_default(16), &[], &style);
    assert!(!overlay.draw(&[f.cuda()], &list).expect("nothing to draw"));
}

/// trtoverlay on a batch of GstCudaMemory frames (and one system-memory frame): the GPU
/// path draws in place, the result read back through a system-memory map equals the CPU
/// drawing.
#[test]
#[ignore = "needs a CUDA GPU: run with --include-ignored, as scripts/device/run-tests.sh does"]
fn overlay_element_on_gst_cuda_memory() {
    let _dev = device();
    if let Err(e) = gst::init() {
        panic!("gst::init: {e}");
    }
    if let Err(e) = gsttrtvision::plugin_register_static() {
        panic!("plugin registration: {e}");
    }
    let ctx = CudaContext::new_primary(0).expect("GstCudaContext wrapping the primary context");
    let dctx = ctx.device_context().expect("device context");
    let mut rng = Rng(5);
    let style = OverlayStyle::default();
    let source = Arc::new(gsttrtvision::batch::SourceStream {
        pad_index: 0,
        stream_id: None,
        caps: gst::Caps::new_empty_simple("video/x-raw"),
        segment: gst::FormattedSegment::new(),
    });
    let mut slots = Vec::new();
    let mut expected = Vec::new();
    let mut pools = Vec::new();
    let mut originals = Vec::new();
    let cases = [
        (VideoFormat::Nv12, 1920u32, 1080u32, true),
        (VideoFormat::Rgba, 641, 479, true),
        (VideoFormat::I420, 641, 479, true),
        (VideoFormat::Bgrx, 1280, 720, true),
        (VideoFormat::Nv12, 640, 480, false),
    ];
    for (format, w, h, cuda_mem) in cases {
        let info = gst_video::VideoInfo::builder(format, w, h).build().expect("info");
        let (buffer, planes, strides) = if cuda_mem {
            let (pool, mut b) = cuda_pool_buffer(&ctx, &info);
            pools.push(pool);
            let (planes, strides) = fill_cuda_buffer(&dctx, &mut rng, &mut b, &info);
            (b, planes, strides)
        } else {
            let mut planes = Vec::new();
            let mut strides = Vec::new();
            for p in 0..n_planes(format) {
                let (row_bytes, rows) = plane_geometry(format, p, w as usize, h as usize);
                let mut data = vec![0u8; row_bytes * rows];
                rng.fill(&mut data);
                planes.push(data);
                strides.push(row_bytes);
            }
            (system_buffer(&info, &planes, &strides), planes, strides)
        };
        assert_eq!(cuda::is_cuda_buffer(&buffer), cuda_mem);
        originals.push((planes.clone(), strides.clone()));
        let dets = overlay_detections(&mut rng, w, h, 16);
        // CPU reference on a system-memory copy of the same pixels.
        let mut reference = system_buffer(&info, &planes, &strides);
        {
            let dst_ref = reference.get_mut().expect("writable");
            let mut dst = gst_video::VideoFrameRef::from_buffer_ref_writable(dst_ref, &info).expect("map");
            let mut canvas = Canvas::new(&mut dst).expect("canvas");
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
                ..Default::default()
            },
        });
    }
    // A batch input made by the preprocessor from the CUDA frames, as trtpreprocess does:
    // its lease holds the frames too. The overlay must still draw in place (no copy of
    // the frames), and only after the preprocessing kernel has read them.
    let cfg = PreprocessConfig {
        dtype: DType::F16,
        ..PreprocessConfig::default()
    };
    let rows: Vec<usize> = (0..slots.len())
        .filter(|&i| cuda::is_cuda_buffer(&slots[i].buffer))
        .collect();
    let maps: Vec<_> = rows
        .iter()
        .map(|&i| cuda::map_cuda_frame(slots[i].buffer.as_ref(), &slots[i].info).expect("map"))
        .collect();
    let in_frames: Vec<CudaFrame> = maps.iter().map(|m| m.frame()).collect();
    let planes_before: Vec<u64> = in_frames.iter().map(|f| f.plane(0)).collect();
    drop(maps);
    let transforms: Vec<_> = in_frames
        .iter()
        .map(|f| cfg.transform(f.width(), f.height()))
        .collect();
    let mut pre = CudaPreprocessor::new(&dctx, &cfg, rows.len()).expect("preprocessor");
    let tensor = pre.run(&in_frames, &transforms).expect("preprocess");
    drop(in_frames);
    let lease = cuda::device_lease(&tensor).expect("a lease");
    assert_eq!(lease.held_frames(), rows.len());
    let mut batch_buf = gst::Buffer::new();
    gsttrtvision::batch::BatchMeta::add(
        batch_buf.get_mut().expect("writable"),
        gsttrtvision::batch::Batch {
            slots,
            batch_size: cases.len(),
            inputs: vec![gsttrtvision::batch::BatchTensor {
                model: "overlay-test".into(),
                tensor,
                slots: rows.clone(),
                transforms: transforms.clone(),
            }],
            ..Default::default()
        },
    );
    // The harness starts the element at once: it makes its own wrapper of the primary
    // context before set_context can offer ours (kept, as GStreamer elements do). Frames
    // of `ctx` are still drawn on the GPU: both wrap the same CUcontext.
    let mut h = gst_check::Harness::new("trtoverlay");
    h.element().expect("element").set_context(&ctx.to_gst_context());
    h.set_src_caps(gsttrtvision::batch::batch_caps());
    h.play();
    let out = h.push_and_pull(batch_buf).expect("batch out");
    let element = h.element().expect("element");
    let meta = out.meta::<gsttrtvision::batch::BatchMeta>().expect("batch meta");
    let mut failures = Vec::new();
    {
        let batch = meta.batch();
        let input = &batch.inputs[0];
        let lease = cuda::device_lease(&input.tensor).expect("a lease");
        assert_eq!(
            lease.held_frames(),
            0,
            "the overlay took the frames from the batch input"
        );
        for (k, &i) in rows.iter().enumerate() {
            let slot = &batch.slots[i];
            let m = cuda::map_cuda_frame(slot.buffer.as_ref(), &slot.info).expect("map");
            if m.frame().plane(0) != planes_before[k] {
                failures.push(format!("frame {i} was copied before drawing (new device memory)"));
            }
        }
        // The tensor holds the frames as they were before drawing: the preprocessing kernel
        // read them before the overlay wrote.
        let gpu = download(&dctx, &input.tensor);
        let row = 3 * (cfg.width * cfg.height) as usize * cfg.dtype.size();
        let mut cpu = vec![0u8; row];
        let mut scratch = Scratch::default();
        for (k, &i) in rows.iter().enumerate() {
            let (planes, strides) = &originals[i];
            let info = &batch.slots[i].info;
            let refs: Vec<&[u8]> = planes.iter().map(|p| p.as_slice()).collect();
            let reader = FrameReader::from_planes(info.format(), info.width(), info.height(), &refs, strides)
                .map(|r| r.with_colors(YuvCoefficients::for_info(info)))
                .expect("reader");
            preprocess::fill_row(&cfg, &reader, &transforms[k], &mut cpu, &mut scratch);
            let (max, _) = compare(&cfg, &gpu[k * row..(k + 1) * row], &cpu);
            if max > tolerance(cfg.dtype) {
                failures.push(format!(
                    "input tensor row {k} (frame {i}) differs from the undrawn frame: {max}"
                ));
            }
        }
    }
    for (slot, (reference, info)) in meta.batch().slots.iter().zip(&expected) {
        let on_device = cuda::is_cuda_buffer(&slot.buffer);
        let got = if on_device {
            let (planes, strides) = read_cuda_buffer(&dctx, slot.buffer.as_ref(), info);
            system_buffer(info, &planes, &strides)
        } else {
            slot.buffer.clone()
        };
        let got = gst_video::VideoFrameRef::from_buffer_ref_readable(got.as_ref(), info).expect("map");
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
            "trtoverlay {:?} {}x{} (CUDA memory: {on_device}): max difference {max}, {count} bytes differ",
            info.format(),
            info.width(),
            info.height(),
        );
        if max > 2 {
            failures.push(format!(
                "{:?} {}x{}: {max}",
                info.format(),
                info.width(),
                info.height()
            ));
        }
    }
    let gpu_frames = element.property::<u64>("gpu-frames");
    println!("trtoverlay gpu-frames {gpu_frames}");
    assert!(
        failures.is_empty(),
        "overlay differs from the CPU canvas: {failures:?}"
    );
    assert_eq!(gpu_frames, 4, "the four CUDA-memory frames are drawn on the GPU");
    drop(out);
    drop(element);
    drop(h);
    for pool in pools {
        pool.set_active(false).ok();
    }
}

/// Timing: 8 NV12 1920x1080 frames with 24 masked, labelled detections each: host-side
/// command building, the whole draw (copy + kernel + wait) and the kernel alone (CUDA
/// events), against the CPU drawing; one JSON line.
#[test]
#[ignore = "needs a CUDA GPU: run with --include-ignored, as scripts/device/run-tests.sh does"]
fn timing_overlay_8x1080p_nv12() {
    let ctx = device();
    let (w, h, batch, per_frame) = (1920u32, 1080u32, 8usize, 24usize);
    let mut rng = Rng(11);
    let mut frames: Vec<TestFrame> = (0..batch)
        .map(|_| TestFrame::new(&ctx, &mut rng, VideoFormat::Nv12, w, h, false).expect("upload"))
        .collect();
    let dets: Vec<Vec<Detection>> = (0..batch)
        .map(|_| overlay_detections(&mut rng, w, h, per_frame))
        .collect();
    let cuda_frames: Vec<CudaFrame> = frames.iter().map(TestFrame::cuda).collect();
    let style = OverlayStyle::default();
    let mut overlay = gsttrtvision::ops::overlay::cuda::CudaOverlay::new(&ctx).expect("CUDA overlay");
    let mut list = OverlayCommands::default();
    let build = |list: &mut OverlayCommands| {
        list.clear();
        for d in &dets {
            list.add_frame(w, h, &YuvCoefficients::size_default(h), d, &style);
        }
    };
    for _ in 0..20 {
        build(&mut list);
        overlay.draw(&cuda_frames, &list).expect("warm-up");
        overlay.wait().expect("wait");
    }
    let start = Event::new(&ctx, true).expect("event");
    let stop = Event::new(&ctx, true).expect("event");
    let (mut build_us, mut total_us, mut kernel_us) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..200 {
        let t0 = Instant::now();
        build(&mut list);
        let t1 = Instant::now();
        unsafe { start.record(overlay.stream()) }.expect("record");
        overlay.draw(&cuda_frames, &list).expect("draw");
        unsafe { stop.record(overlay.stream()) }.expect("record");
        overlay.wait().expect("wait");
        let t2 = Instant::now();
        stop.synchronize().expect("sync");
        build_us.push((t1 - t0).as_secs_f64() * 1e6);
        total_us.push((t2 - t0).as_secs_f64() * 1e6);
        kernel_us.push(stop.elapsed_ms(&start).expect("elapsed") as f64 * 1e3);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let t0 = Instant::now();
    for _ in 0..3 {
        for (f, d) in frames.iter_mut().zip(&dets) {
            draw_cpu_planes(f, d, &style);
        }
    }
    let cpu_ms = t0.elapsed().as_secs_f64() * 1e3 / 3.0;
    let info = cuda::probe().ok();
    let line = serde_json::json!({
        "bench": "cuda_overlay",
        "device": info.as_ref().map(|i| i.name.clone()),
        "driver_version": info.as_ref().map(|i| i.driver_version),
        "arch": overlay.arch(),
        "case": format!("8x NV12 1920x1080, {} detections a frame (24 masked + scene ground truth), boxes + labels + masks", dets[0].len()),
        "commands_per_batch": list.commands.len(),
        "mask_bytes_per_batch": list.mask_bytes.len(),
        // One host-to-device copy: the frame table, the commands and the host masks.
        "h2d_bytes_per_batch": 96 * batch + 56 * list.commands.len() + list.mask_bytes.len(),
        "build_us_median": median(&mut build_us),
        "copy_and_kernel_us_median": median(&mut kernel_us),
        "draw_total_us_median": median(&mut total_us),
        "launches_per_batch": 1,
        "staging_bytes": overlay.staging_size(),
        "cpu_draw_frame_ms_per_batch": cpu_ms,
        "cpu_threads": 1,
    });
    println!("{line}");
    assert!(median(&mut kernel_us) > 0.0);
}

/// Tensors of trtpreprocess (model input 64x48 f32, 2 cameras of 160x120 NV12, BT.601) in
/// frame order, downloaded when they live on the device; with `gpu` the frames go through
/// cudaupload. Nothing is pulled until the pool has had `pool_size` tensors out for a
/// while, so a small pool makes the element wait. Returns the tensors and the element's
/// statistics (gpu-batches, cpu-batches, pool-peak, pool-waits).
fn preprocess_held(gpu: bool, pool_size: u32, frames: u32) -> (Vec<Vec<u8>>, [u64; 4]) {
    let _dev = device();
    gst::init().unwrap();
    let _ = gsttrtvision::plugin_register_static();
    let upload = if gpu {
        "cudaupload ! video/x-raw(memory:CUDAMemory) ! "
    } else {
        ""
    };
    let mut desc = format!(
        "trtmux name=m batch-size=2 ! trtpreprocess name=pre width=64 height=48 dtype=f32 \
         pool-size={pool_size} pool-timeout=0 \
         ! queue max-size-buffers=32 max-size-bytes=0 max-size-time=0 ! appsink name=out sync=false "
    );
    for i in 0..2 {
        desc += &format!(
            "trtscenesrc camera={i} num-buffers={frames} \
             ! video/x-raw,format=NV12,width=160,height=120,framerate=30/1,colorimetry=bt601 ! {upload}m.sink_{i} "
        );
    }
    let (pipeline, sink) = play_to_appsink(&desc);
    let pre = pipeline.by_name("pre").unwrap();
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    while pre.property::<u32>("pool-peak") < pool_size.min(frames) {
        assert!(
            Instant::now() < deadline,
            "the pool never had {pool_size} tensors out"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let ctx = device();
    let mut tensors = Vec::new();
    while let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(30)) {
        let buf = sample.buffer().unwrap();
        let meta = buf.meta::<gsttrtvision::batch::BatchMeta>().expect("batch meta");
        let t = &meta.batch().inputs[0].tensor;
        tensors.push(match t.host_bytes() {
            Some(b) => b.to_vec(),
            None => download(&ctx, t),
        });
    }
    let err = pipeline.bus().unwrap().pop_filtered(&[gst::MessageType::Error]);
    let stats = [
        pre.property::<u64>("gpu-batches"),
        pre.property::<u64>("cpu-batches"),
        pre.property::<u32>("pool-peak") as u64,
        pre.property::<u64>("pool-waits"),
    ];
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(err.is_none(), "{err:?}");
    assert!(sink.is_eos(), "the stream ended");
    (tensors, stats)
}

#[test]
#[ignore = "needs a CUDA GPU: run with --include-ignored, as scripts/device/run-tests.sh does"]
fn device_pool_waits_instead_of_cpu_fallback() {
    const FRAMES: u32 = 24;
    let (cpu, cpu_stats) = preprocess_held(false, 64, FRAMES);
    assert_eq!(cpu_stats[1], FRAMES as u64, "the reference ran on the CPU");
    // pool-size 2 behind a 32-buffer queue: the third batch must wait for a device tensor.
    let (gpu, [gpu_batches, cpu_batches, peak, waits]) = preprocess_held(true, 2, FRAMES);
    println!("pool-size 2: gpu-batches {gpu_batches}, cpu-batches {cpu_batches}, pool-peak {peak}, pool-waits {waits}");
    assert_eq!(cpu_batches, 0, "no batch fell back to the CPU path");
    assert_eq!(gpu_batches, FRAMES as u64);
    assert_eq!(peak, 2, "never more than pool-size device tensors out");
    assert!(waits >= 1, "the element waited for a tensor");
    assert_eq!(gpu.len(), cpu.len(), "no batch lost");
    let cfg = PreprocessConfig {
        width: 64,
        height: 48,
        dtype: DType::F32,
        ..Default::default()
    };
    for (i, (g, c)) in gpu.iter().zip(&cpu).enumerate() {
        let (max, _) = compare(&cfg, g, c);
        assert!(
            max <= tolerance(DType::F32),
            "batch {i}: GPU differs from CPU by {max}"
        );
    }
}

/// trtanalytics' zones, lines and counts in the GPU command list against the CPU drawing
/// (a zone in the alarm colour, a diagonal line with its arrow, labels), under detections
/// with device masks: every byte within 2 levels (expected: equal).
#[test]
#[ignore = "needs a CUDA GPU: run with --include-ignored, as scripts/device/run-tests.sh does"]
fn overlay_analytics_gpu_matches_cpu() {
    use gsttrtvision::analytics::{config::Config, Analytics};
    let ctx = device();
    let mut overlay = gsttrtvision::ops::overlay::cuda::CudaOverlay::new(&ctx).expect("CUDA overlay");
    let mut rng = Rng(19);
    let style = OverlayStyle::default();
    let rules = Config::parse(
        "[[camera]]\nid = 0\n\
         [[camera.zone]]\nname = \"dock\"\npolygon = [[30, 40], [400, 60], [300, 400], [20, 300]]\noccupancy-threshold = 1\n\
         [[camera.zone]]\nname = \"quiet\"\npolygon = [[500, 20], [620, 20], [620, 120]]\n\
         [[camera.line]]\nname = \"gate\"\nfrom = [600, 460]\nto = [350, 10]\n",
    )
    .expect("rules");
    let mut list = OverlayCommands::default();
    let mut frames = Vec::new();
    let mut keep = Vec::new();
    for &(format, w, h) in &[
        (VideoFormat::Nv12, 640, 480),
        (VideoFormat::Rgba, 641, 479),
        (VideoFormat::I420, 333, 211),
    ] {
        let mut f = TestFrame::new(&ctx, &mut rng, format, w, h, false).expect("upload");
        let dets = overlay_detections(&mut rng, w, h, 6);
        let mut analytics = Analytics::new(rules.clone());
        let a = analytics.process(0, 0, &dets, true).expect("analytics");
        let gpu_dets = with_device_masks(&ctx, &dets);
        list.add_frame_with_analytics(
            w,
            h,
            &YuvCoefficients::size_default(h),
            None,
            Some(&a),
            &gpu_dets,
            &style,
        );
        {
            let mut it = f.host.iter_mut();
            let mut next = || it.next().map(|p| p.as_mut_slice()).unwrap_or(&mut []);
            let planes = [next(), next(), next()];
            let px =
                PixelsMut::from_planes(f.format, f.width, f.height, planes, &f.strides).expect("CPU pixels");
            let mut canvas = Canvas::from_pixels(px);
            gsttrtvision::ops::overlay::draw_analytics(&mut canvas, &a, &style, &mut String::new());
            draw_frame(&mut canvas, &dets, &style, &mut String::new());
        }
        keep.push(gpu_dets);
        frames.push(f);
    }
    gpu_drawing_matches_cpu(&ctx, &mut overlay, &frames, &list, "overlay analytics");
    drop(keep);
}
