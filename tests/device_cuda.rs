//! Device tests of the CUDA path: GPU preprocessing against the CPU reference, the
//! GStreamer CUDA memory and context interop, and a timing line.
//!
//! Built only with `--features cuda`; every test skips (passing, with a message) when
//! [`cuda::probe`] finds no usable GPU, so `cargo test --features cuda` also passes on
//! machines without one, unless `TRTV_REQUIRE_CUDA=1`. On the GPU machine: `scripts/device/build.sh` here, then
//! `scripts/device/run-tests.sh` there (see that script for what to carry).
#![cfg(feature = "cuda")]

use std::time::Instant;

use gst::prelude::*;
use gst_video::prelude::*;
use gst_video::VideoFormat;
use gsttrtvision::config::{ColorOrder, PreprocessConfig, ResizeMode};
use gsttrtvision::cuda::{
    self, copy_device_to_host, device_lease, CudaContext, CudaError, CudaFrame, CudaPreprocessor,
    DeviceBuffer, DeviceContext, Event, Stream, CUDA_FORMATS,
};
use gsttrtvision::preprocess::{self, Scratch};
use gsttrtvision::tensor::{DType, Tensor};
use gsttrtvision::video::FrameReader;

/// The primary context of device 0, or `None` (with a message) when there is no GPU;
/// with `TRTV_REQUIRE_CUDA=1` (set by scripts/device/run-tests.sh) no GPU is a failure.
fn device() -> Option<DeviceContext> {
    match cuda::probe() {
        Ok(info) => {
            eprintln!("CUDA device: {info:?}");
            match DeviceContext::primary(0) {
                Ok(ctx) => Some(ctx),
                Err(e) => panic!("the probe found a GPU but its primary context failed: {e}"),
            }
        }
        Err(e) if std::env::var_os("TRTV_REQUIRE_CUDA").is_some_and(|v| v == "1") => {
            panic!("TRTV_REQUIRE_CUDA=1 but {e}")
        }
        Err(e) => {
            eprintln!("skipping the device test: {e}");
            None
        }
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

fn n_planes(format: VideoFormat) -> usize {
    match format {
        VideoFormat::Nv12 => 2,
        VideoFormat::I420 => 3,
        _ => 1,
    }
}

/// Bytes of pixels in a row of plane `i`, and rows of that plane.
fn plane_geometry(format: VideoFormat, i: usize, w: usize, h: usize) -> (usize, usize) {
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    match (format, i) {
        (VideoFormat::Rgb | VideoFormat::Bgr, _) => (w * 3, h),
        (VideoFormat::Nv12 | VideoFormat::I420, 0) => (w, h),
        (VideoFormat::Nv12, _) => (cw * 2, ch),
        (VideoFormat::I420, _) => (cw, ch),
        _ => (w * 4, h),
    }
}

/// A random frame on the host and its copy on the device, with padded strides.
struct TestFrame {
    format: VideoFormat,
    width: u32,
    height: u32,
    host: Vec<Vec<u8>>,
    strides: Vec<usize>,
    device: Vec<DeviceBuffer>,
}

impl TestFrame {
    /// `odd_strides`: strides that are not multiples of 4 (exercises the byte-load path
    /// of 4-byte formats); otherwise pitched to 256 like GstCudaMemory.
    fn new(
        ctx: &DeviceContext,
        rng: &mut Rng,
        format: VideoFormat,
        width: u32,
        height: u32,
        odd_strides: bool,
    ) -> Result<Self, CudaError> {
        let mut host = Vec::new();
        let mut strides = Vec::new();
        let mut device = Vec::new();
        for i in 0..n_planes(format) {
            let (row, rows) = plane_geometry(format, i, width as usize, height as usize);
            let stride = if odd_strides {
                row + 3 + (rng.next() % 29) as usize
            } else {
                row.next_multiple_of(256)
            };
            let mut bytes = vec![0u8; stride * rows];
            rng.fill(&mut bytes);
            let buf = DeviceBuffer::new(ctx, bytes.len())?;
            buf.copy_from_host(&bytes)?;
            host.push(bytes);
            strides.push(stride);
            device.push(buf);
        }
        Ok(Self {
            format,
            width,
            height,
            host,
            strides,
            device,
        })
    }

    fn reader(&self) -> FrameReader<'_> {
        let planes: Vec<&[u8]> = self.host.iter().map(|p| p.as_slice()).collect();
        match FrameReader::from_planes(self.format, self.width, self.height, &planes, &self.strides) {
            Ok(r) => r,
            Err(e) => panic!("CPU reader for {:?}: {e}", self.format),
        }
    }

    fn cuda(&self) -> CudaFrame {
        let ptrs: Vec<u64> = self.device.iter().map(|b| b.ptr()).collect();
        // SAFETY: the device buffers hold the planes with these strides and live as long
        // as `self`, which outlives every tensor of the tests (each is waited for).
        match unsafe { CudaFrame::from_raw(self.format, self.width, self.height, &ptrs, &self.strides) } {
            Ok(f) => f,
            Err(e) => panic!("{e}"),
        }
    }
}

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
fn gpu_matches_cpu_for_every_format() {
    let Some(ctx) = device() else { return };
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut frames = Vec::new();
    for (i, &format) in CUDA_FORMATS.iter().enumerate() {
        for (j, (w, h)) in [(1920u32, 1080u32), (641, 479)].into_iter().enumerate() {
            let odd = (i + j) % 2 == 1;
            frames.push(TestFrame::new(&ctx, &mut rng, format, w, h, odd).expect("upload"));
        }
    }
    let mut failures = Vec::new();
    for (name, cfg) in configs() {
        let mut pre = CudaPreprocessor::new(&ctx, &cfg, frames.len()).expect("preprocessor");
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

/// Object crops (trtinfer operate-on=objects): every crop of every frame is one row of one
/// launch of the same kernel (the frame repeated, the crop's placement as the row's
/// transform), against `preprocess::fill_row` with the same placements. Crops inside the
/// frame, on its edges, partly outside, tiny and larger than the input; stretched and with
/// kept aspect ratio.
#[test]
fn gpu_crops_match_cpu_crops() {
    use gsttrtvision::geometry::{BoxF, LetterboxTransform};
    let Some(ctx) = device() else { return };
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
fn pool_leases_and_errors() {
    let Some(ctx) = device() else { return };
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
    assert_eq!(pre.pool_size(), cuda::INITIAL_POOL);

    // Held tensors make the pool grow up to MAX_POOL, then runs fail cleanly.
    let mut held = Vec::new();
    for _ in 0..cuda::MAX_POOL {
        held.push(pre.run(std::slice::from_ref(&frame), &[t]).expect("run"));
    }
    assert_eq!(pre.pool_size(), cuda::MAX_POOL);
    let ptrs: Vec<u64> = held
        .iter()
        .map(|t| device_lease(t).map_or(0, |l| l.ptr()))
        .collect();
    assert!(ptrs.iter().all(|p| p % 256 == 0), "{ptrs:x?}");
    assert!(matches!(
        pre.run(std::slice::from_ref(&frame), &[t]),
        Err(CudaError::PoolExhausted(_))
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

/// GstCudaContext (wrapping the primary context), the context helpers, a
/// GstCudaBufferPool frame mapped with `map_cuda_frame`, preprocessed on the GPU.
#[test]
fn gst_cuda_memory_frames() {
    let Some(dev) = device() else { return };
    if let Err(e) = gst::init() {
        panic!("gst::init: {e}");
    }
    let ctx = CudaContext::new_primary(0).expect("GstCudaContext wrapping the primary context");
    assert_eq!(ctx.device_id(), 0);
    assert_eq!(ctx.handle(), dev.raw(), "wraps the primary context");
    let dctx = ctx.device_context().expect("device context");
    assert!(dctx.is_primary());

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

    // A CUDA buffer pool frame written through a system-memory map (uploaded by
    // GstCudaMemory when mapped for CUDA).
    let mut rng = Rng(99);
    let cfg = PreprocessConfig {
        dtype: DType::F16,
        ..Default::default()
    };
    let mut pre = CudaPreprocessor::new(&dctx, &cfg, 4).expect("preprocessor");
    let mut frames = Vec::new();
    let mut maps = Vec::new();
    let mut infos = Vec::new();
    for (format, w, h) in [
        (VideoFormat::Nv12, 1920u32, 1080u32),
        (VideoFormat::I420, 641, 479),
        (VideoFormat::Rgba, 641, 479),
        (VideoFormat::Bgrx, 1280, 720),
    ] {
        let info = gst_video::VideoInfo::builder(format, w, h).build().expect("info");
        let caps = gst_video::VideoCapsBuilder::new()
            .features([gsttrtvision::batch::CUDA_MEMORY_FEATURE])
            .format(format)
            .width(w as i32)
            .height(h as i32)
            .framerate(gst::Fraction::new(30, 1))
            .build();
        let pool = ctx.buffer_pool().expect("pool");
        let mut config = pool.config();
        config.set_params(Some(&caps), info.size() as u32, 1, 0);
        config.add_option(gst_video::BUFFER_POOL_OPTION_VIDEO_META);
        pool.set_config(config).expect("pool config");
        pool.set_active(true).expect("pool active");
        let mut buffer = pool.acquire_buffer(None).expect("buffer");
        assert!(cuda::is_cuda_buffer(&buffer));
        let host: Vec<Vec<u8>>;
        let strides: Vec<usize>;
        {
            let bref = buffer.get_mut().expect("writable buffer");
            let mut vf = gst_video::VideoFrameRef::from_buffer_ref_writable(bref, &info).expect("host map");
            strides = vf.plane_stride()[..vf.n_planes() as usize]
                .iter()
                .map(|&s| s as usize)
                .collect();
            let mut planes = Vec::new();
            for p in 0..vf.n_planes() {
                let data = vf.plane_data_mut(p).expect("plane");
                rng.fill(data);
                planes.push(data.to_vec());
            }
            host = planes;
        }
        let map = cuda::map_cuda_frame(&buffer, &info).expect("CUDA map");
        assert!(map.is_accessible_from(&ctx));
        assert_eq!(map.context().as_ref(), Some(&ctx));
        let f = map.frame();
        assert_eq!((f.format(), f.width(), f.height()), (format, w, h));
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

/// Timing: a batch of 8 1080p NV12 frames into a 640x640 f16 letterbox tensor, kernel
/// time with CUDA events, against the device-to-device copy bandwidth; one JSON line.
#[test]
fn timing_8x1080p_nv12_to_640_f16() {
    let Some(ctx) = device() else { return };
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
    let start = Event::new(&ctx, true).expect("event");
    let stop = Event::new(&ctx, true).expect("event");
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
    // Throughput: 200 batches queued back to back (two tensors alive at a time).
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
    let median_us = times[times.len() / 2];
    let min_us = times[0];

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
        "kernel_us_median": median_us,
        "kernel_us_min": min_us,
        "pipelined_us_per_batch": pipelined_us,
        "bytes_read_touched_rows": touched,
        "bytes_read_full_frames": full,
        "bytes_written": written,
        "achieved_gbps": achieved_gbps,
        "dtod_copy_gbps": copy_gbps,
        "fraction_of_copy_bandwidth": achieved_gbps / copy_gbps,
        "cpu_fill_batch_ms": cpu_ms,
        "cpu_threads": threads,
    });
    println!("{line}");
    assert!(median_us > 0.0);
}
