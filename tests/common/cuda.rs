//! Helpers of the device tests (feature `cuda`): the GPU, random frames on the
//! host with their device copies, GstCudaMemory frames written and read on the device.

use gst_video::prelude::*;
use gst_video::VideoFormat;
use gsttrtvision::cuda::{
    self, copy_device_to_host, CudaContext, CudaError, CudaFrame, DeviceBuffer, DeviceContext,
};
use gsttrtvision::video::FrameReader;

/// The primary context of device 0. The device tests are `#[ignore]`d (they run with
/// `--include-ignored`, as scripts/device/run-tests.sh does): once asked for, no GPU is a
/// failure.
pub fn device() -> DeviceContext {
    match cuda::probe() {
        Ok(info) => {
            eprintln!("CUDA device: {info:?}");
            match DeviceContext::primary(0) {
                Ok(ctx) => ctx,
                Err(e) => panic!("the probe found a GPU but its primary context failed: {e}"),
            }
        }
        Err(e) => panic!("this device test needs a CUDA GPU: {e}"),
    }
}

/// xorshift64: reproducible random bytes.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n` (0 for `n` = 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

pub fn n_planes(format: VideoFormat) -> usize {
    match format {
        VideoFormat::Nv12 => 2,
        VideoFormat::I420 => 3,
        _ => 1,
    }
}

/// Bytes of pixels in a row of plane `i`, and rows of that plane.
pub fn plane_geometry(format: VideoFormat, i: usize, w: usize, h: usize) -> (usize, usize) {
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    match (format, i) {
        (VideoFormat::Rgb | VideoFormat::Bgr, _) => (w * 3, h),
        (VideoFormat::Nv12 | VideoFormat::I420, 0) => (w, h),
        (VideoFormat::Nv12, _) => (cw * 2, ch),
        (VideoFormat::I420, _) => (cw, ch),
        _ => (w * 4, h),
    }
}

/// A frame on the host and its copy on the device, with padded strides.
pub struct TestFrame {
    pub format: VideoFormat,
    pub width: u32,
    pub height: u32,
    pub host: Vec<Vec<u8>>,
    pub strides: Vec<usize>,
    pub device: Vec<DeviceBuffer>,
}

impl TestFrame {
    /// Random pixels. `odd_strides`: strides that are not multiples of 4 (the byte-load
    /// and byte-store paths of 4-byte formats); otherwise pitched to 256 like
    /// GstCudaMemory.
    pub fn new(
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

    /// CPU reader over the host copy.
    pub fn reader(&self) -> FrameReader<'_> {
        let planes: Vec<&[u8]> = self.host.iter().map(|p| p.as_slice()).collect();
        match FrameReader::from_planes(self.format, self.width, self.height, &planes, &self.strides) {
            Ok(r) => r,
            Err(e) => panic!("CPU reader for {:?}: {e}", self.format),
        }
    }

    /// The device copy.
    pub fn cuda(&self) -> CudaFrame {
        let ptrs: Vec<u64> = self.device.iter().map(|b| b.ptr()).collect();
        // SAFETY: the device buffers hold the planes with these strides and live as long
        // as `self`, which outlives every launch of the tests (each is waited for).
        match unsafe { CudaFrame::from_raw(self.format, self.width, self.height, &ptrs, &self.strides) } {
            Ok(f) => f,
            Err(e) => panic!("{e}"),
        }
    }

    /// The host copy as pixels to draw on with the CPU canvas.
    pub fn pixels(&mut self) -> gsttrtvision::video::PixelsMut<'_> {
        let mut it = self.host.iter_mut();
        let mut next = || it.next().map(|p| p.as_mut_slice()).unwrap_or(&mut []);
        let planes = [next(), next(), next()];
        gsttrtvision::video::PixelsMut::from_planes(
            self.format,
            self.width,
            self.height,
            planes,
            &self.strides,
        )
        .expect("CPU pixels")
    }

    /// Largest difference and number of differing bytes between device and host planes.
    pub fn compare(&self, ctx: &DeviceContext) -> (u8, usize) {
        let (mut max, mut count) = (0u8, 0usize);
        for (dev, host) in self.device.iter().zip(&self.host) {
            let mut got = vec![0u8; host.len()];
            copy_device_to_host(ctx, dev.ptr(), dev.len(), &mut got).expect("download");
            for (a, b) in got.iter().zip(host) {
                let d = a.abs_diff(*b);
                max = max.max(d);
                count += usize::from(d != 0);
            }
        }
        (max, count)
    }

    /// Copies the device planes back into `host`.
    pub fn download(&mut self) {
        for (h, d) in self.host.iter_mut().zip(&self.device) {
            d.copy_to_host(h).expect("download");
        }
    }
}

/// An active GstCudaBufferPool of `info` frames (with GstVideoMeta) in `ctx`, and one
/// buffer of it.
pub fn cuda_pool_buffer(ctx: &CudaContext, info: &gst_video::VideoInfo) -> (gst::BufferPool, gst::Buffer) {
    let caps = gst_video::VideoCapsBuilder::new()
        .features([gsttrtvision::batch::CUDA_MEMORY_FEATURE])
        .format(info.format())
        .width(info.width() as i32)
        .height(info.height() as i32)
        .framerate(gst::Fraction::new(30, 1))
        .build();
    let pool = ctx.buffer_pool().expect("pool");
    let mut config = pool.config();
    config.set_params(Some(&caps), info.size() as u32, 1, 0);
    config.add_option(gst_video::BUFFER_POOL_OPTION_VIDEO_META);
    pool.set_config(config).expect("pool config");
    pool.set_active(true).expect("pool active");
    let buffer = pool.acquire_buffer(None).expect("buffer");
    (pool, buffer)
}

/// Fills every plane of a GstCudaMemory `buffer` with random bytes written on the device
/// through a CUDA map (its real plane addresses and pitches); returns the host copy of
/// each plane (`stride * rows` bytes) and the strides. (Not through a system-memory map:
/// GStreamer 1.22's GstCudaMemory staging copy misses parts of some planes of odd sizes.)
pub fn fill_cuda_buffer(
    dctx: &DeviceContext,
    rng: &mut Rng,
    buffer: &mut gst::Buffer,
    info: &gst_video::VideoInfo,
) -> (Vec<Vec<u8>>, Vec<usize>) {
    let map = cuda::map_cuda_frame_mut(buffer.get_mut().expect("writable buffer"), info)
        .expect("CUDA map for writing");
    let f = map.frame();
    let (mut host, mut strides) = (Vec::new(), Vec::new());
    for p in 0..f.n_planes() {
        let (row_bytes, rows) =
            plane_geometry(info.format(), p, info.width() as usize, info.height() as usize);
        let stride = f.stride(p);
        let mut data = vec![0u8; stride * rows];
        rng.fill(&mut data);
        for r in 0..rows {
            let row = &data[r * stride..][..row_bytes];
            cuda::copy_host_to_device(dctx, row, f.plane(p) + (r * stride) as u64, row_bytes)
                .expect("upload row");
        }
        host.push(data);
        strides.push(stride);
    }
    (host, strides)
}

/// The planes of a GstCudaMemory `buffer` read on the device through a CUDA map, as
/// [`fill_cuda_buffer`] returns them.
pub fn read_cuda_buffer(
    dctx: &DeviceContext,
    buffer: &gst::BufferRef,
    info: &gst_video::VideoInfo,
) -> (Vec<Vec<u8>>, Vec<usize>) {
    let map = cuda::map_cuda_frame(buffer, info).expect("CUDA map for reading");
    let f = map.frame();
    let (mut host, mut strides) = (Vec::new(), Vec::new());
    for p in 0..f.n_planes() {
        let (row_bytes, rows) =
            plane_geometry(info.format(), p, info.width() as usize, info.height() as usize);
        let stride = f.stride(p);
        let mut data = vec![0u8; stride * rows];
        for r in 0..rows {
            let row = &mut data[r * stride..][..row_bytes];
            copy_device_to_host(dctx, f.plane(p) + (r * stride) as u64, row_bytes, row)
                .expect("download row");
        }
        host.push(data);
        strides.push(stride);
    }
    (host, strides)
}

/// The planes of a system-memory `buffer` as [`read_cuda_buffer`] returns them.
pub fn read_system_buffer(
    buffer: &gst::BufferRef,
    info: &gst_video::VideoInfo,
) -> (Vec<Vec<u8>>, Vec<usize>) {
    let vf = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, info).expect("map");
    let (mut host, mut strides) = (Vec::new(), Vec::new());
    for p in 0..vf.n_planes() {
        let stride = vf.plane_stride()[p as usize] as usize;
        let (row_bytes, rows) = plane_geometry(
            info.format(),
            p as usize,
            info.width() as usize,
            info.height() as usize,
        );
        let data = vf.plane_data(p).expect("plane");
        let mut out = vec![0u8; stride * rows];
        for r in 0..rows {
            out[r * stride..][..row_bytes].copy_from_slice(&data[r * stride..][..row_bytes]);
        }
        host.push(out);
        strides.push(stride);
    }
    (host, strides)
}

/// A system-memory buffer of `info`'s default layout holding `planes` (rows of `strides`).
pub fn system_buffer(info: &gst_video::VideoInfo, planes: &[Vec<u8>], strides: &[usize]) -> gst::Buffer {
    let mut buffer = gst::Buffer::with_size(info.size()).expect("buffer");
    {
        let bref = buffer.get_mut().expect("writable");
        let mut vf = gst_video::VideoFrameRef::from_buffer_ref_writable(bref, info).expect("map");
        for (p, (src, &ss)) in planes.iter().zip(strides).enumerate() {
            let ds = vf.plane_stride()[p] as usize;
            let (row_bytes, rows) =
                plane_geometry(info.format(), p, info.width() as usize, info.height() as usize);
            let dst = vf.plane_data_mut(p as u32).expect("plane");
            for r in 0..rows {
                dst[r * ds..][..row_bytes].copy_from_slice(&src[r * ss..][..row_bytes]);
            }
        }
    }
    buffer
}

/// Largest difference and number of differing bytes between two frames given as planes
/// with strides, over the pixel bytes of each row (padding ignored). Each frame's strides
/// must be those its planes were laid out with (a clear panic otherwise).
pub fn compare_planes(
    format: VideoFormat,
    width: u32,
    height: u32,
    a: (&[Vec<u8>], &[usize]),
    b: (&[Vec<u8>], &[usize]),
) -> (u8, usize) {
    let (mut max, mut count) = (0u8, 0usize);
    for p in 0..n_planes(format) {
        let (row_bytes, rows) = plane_geometry(format, p, width as usize, height as usize);
        for (side, (planes, strides)) in [("first", a), ("second", b)] {
            let need = (rows - 1) * strides[p] + row_bytes;
            assert!(
                strides[p] >= row_bytes && planes[p].len() >= need,
                "{format:?} {width}x{height}, plane {p} of the {side} frame: {} bytes with stride {} \
                 ({need} needed): planes and strides do not belong together",
                planes[p].len(),
                strides[p]
            );
        }
        for r in 0..rows {
            let ra = &a.0[p][r * a.1[p]..][..row_bytes];
            let rb = &b.0[p][r * b.1[p]..][..row_bytes];
            for (x, y) in ra.iter().zip(rb) {
                let d = x.abs_diff(*y);
                max = max.max(d);
                count += usize::from(d != 0);
            }
        }
    }
    (max, count)
}
