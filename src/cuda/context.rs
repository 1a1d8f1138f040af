//! GStreamer's CUDA context (libgstcuda-1.0) and CUDA memory mapping.
//!
//! Elements of one pipeline share one [`CudaContext`] through the GstContext mechanism
//! (`gst.cuda.context`): nvcodec's decoders, `cudaupload` and trtvision's elements then
//! exchange GstCudaMemory without copies. An element calls [`ensure_element_context`] on
//! NULL→READY, answers context queries with [`handle_context_query`] and takes contexts
//! offered by the application or the bin in `set_context` with [`handle_set_context`].
//!
//! When no element or application provides a context, [`ensure_element_context`] creates
//! one that **wraps the device's primary context** (unlike GStreamer's own helper, which
//! creates a separate context): device memory is only valid in the context that
//! allocated it, and TensorRT and ONNX Runtime work in the primary context, so frames and
//! tensors made in it can be handed to them without a copy.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Mutex;

use gst::glib;
use gst::glib::translate::{from_glib_full, from_glib_none, IntoGlib, ToGlibPtr};
use gst::prelude::*;
use gst_video::VideoInfo;

use super::driver::DeviceContext;
use super::ffi;
use super::frame::CudaFrame;
use super::CudaError;

glib::wrapper! {
    /// A `GstCudaContext`: a CUDA context shared by the elements of a pipeline.
    pub struct CudaContext(Object<ffi::GstCudaContext, ffi::GstCudaContextClass>) @extends gst::Object;

    match fn {
        type_ => || ffi::gst_cuda_context_get_type(),
    }
}

// SAFETY: GstCudaContext is a thread-safe GstObject (its CUcontext is usable from any
// thread with push/pop).
unsafe impl Send for CudaContext {}
// SAFETY: as above.
unsafe impl Sync for CudaContext {}

/// Loads libcuda through GStreamer's loader (needed before any gst_cuda_* call that
/// creates contexts or memory).
fn load_gst_cuda() -> Result<(), CudaError> {
    super::probe()?;
    // SAFETY: plain initialisation calls without arguments.
    let ok = unsafe { ffi::gst_cuda_load_library() } != glib::ffi::GFALSE;
    if !ok {
        return Err(CudaError::Unavailable(
            "libgstcuda-1.0 could not load the CUDA driver library".into(),
        ));
    }
    // SAFETY: as above; idempotent.
    unsafe { ffi::gst_cuda_memory_init_once() };
    Ok(())
}

impl CudaContext {
    /// A new, separate CUDA context on device `device_id` (`gst_cuda_context_new`).
    /// Prefer [`CudaContext::new_primary`] when tensors go to TensorRT or ONNX Runtime.
    pub fn new(device_id: u32) -> Result<Self, CudaError> {
        load_gst_cuda()?;
        // SAFETY: returns a new reference or NULL.
        let ptr = unsafe { ffi::gst_cuda_context_new(device_id) };
        if ptr.is_null() {
            return Err(CudaError::Unavailable(format!(
                "GStreamer could not create a CUDA context on device {device_id}"
            )));
        }
        // SAFETY: non-null, transfer full.
        Ok(unsafe { from_glib_full(ptr) })
    }

    /// A GstCudaContext wrapping the primary context of device `device_id`, which stays
    /// retained for the lifetime of the GObject.
    pub fn new_primary(device_id: u32) -> Result<Self, CudaError> {
        load_gst_cuda()?;
        let dev = DeviceContext::primary(device_id as i32)?;
        // SAFETY: valid CUcontext and CUdevice; the context is kept retained below.
        let ptr = unsafe { ffi::gst_cuda_context_new_wrapped(dev.raw(), dev.device()) };
        if ptr.is_null() {
            return Err(CudaError::Unavailable(format!(
                "GStreamer could not wrap the primary CUDA context of device {device_id}"
            )));
        }
        // SAFETY: non-null, transfer full.
        let ctx: CudaContext = unsafe { from_glib_full(ptr) };
        // SAFETY: the key is private to this module and always holds a DeviceContext; it is
        // dropped (releasing the primary context) when the GObject is finalised.
        unsafe { ctx.set_data("trtvision-primary-context", dev) };
        Ok(ctx)
    }

    /// The CUcontext (`gst_cuda_context_get_handle`); valid while `self` lives.
    pub fn handle(&self) -> cudarc::driver::sys::CUcontext {
        // SAFETY: valid object.
        unsafe { ffi::gst_cuda_context_get_handle(self.to_glib_none().0) as cudarc::driver::sys::CUcontext }
    }

    /// Device ordinal (the `cuda-device-id` property).
    pub fn device_id(&self) -> u32 {
        if self.find_property(ffi::CUDA_DEVICE_ID_PROPERTY).is_none() {
            return 0;
        }
        self.property::<u32>(ffi::CUDA_DEVICE_ID_PROPERTY)
    }

    /// Whether memory of `other` can be read directly in `self`: the same object, two
    /// GstCudaContexts wrapping the same CUcontext (e.g. each wrapping the device's primary
    /// context: an application's and one an element made before it got the application's),
    /// or peer access enabled between them.
    pub fn can_access(&self, other: &CudaContext) -> bool {
        if self == other || self.handle() == other.handle() {
            return true;
        }
        // SAFETY: valid objects.
        let ok =
            unsafe { ffi::gst_cuda_context_can_access_peer(self.to_glib_none().0, other.to_glib_none().0) };
        ok != glib::ffi::GFALSE
    }

    /// A `gst.cuda.context` GstContext holding this context.
    pub fn to_gst_context(&self) -> gst::Context {
        // SAFETY: valid object; transfer full.
        unsafe { from_glib_full(ffi::gst_context_new_cuda_context(self.to_glib_none().0)) }
    }

    /// The driver-level view of this context, for the kernel runners.
    pub fn device_context(&self) -> Result<DeviceContext, CudaError> {
        DeviceContext::from_gst(self)
    }

    /// A `GstCudaBufferPool` allocating GstCudaMemory (with GstVideoMeta) in this context;
    /// configure it with CUDA caps as usual.
    pub fn buffer_pool(&self) -> Result<gst::BufferPool, CudaError> {
        // SAFETY: valid object; transfer full or NULL.
        let ptr = unsafe { ffi::gst_cuda_buffer_pool_new(self.to_glib_none().0) };
        if ptr.is_null() {
            return Err(CudaError::Unavailable(
                "could not create a CUDA buffer pool".into(),
            ));
        }
        // SAFETY: non-null, transfer full.
        Ok(unsafe { from_glib_full(ptr) })
    }
}

/// Takes a `gst.cuda.context` offered to the element (its `set_context`), if the slot is
/// still empty and the context's device matches `device_id` (-1 = any). Returns whether
/// the slot holds a context afterwards.
pub fn handle_set_context(
    element: &gst::Element,
    context: &gst::ContextRef,
    device_id: i32,
    slot: &mut Option<CudaContext>,
) -> bool {
    if slot.is_some() {
        return true;
    }
    let mut raw: *mut ffi::GstCudaContext = std::ptr::null_mut();
    // SAFETY: valid element and context; `raw` is an out-pointer that receives a new
    // reference on success.
    unsafe {
        ffi::gst_cuda_handle_set_context(
            element.to_glib_none().0,
            context.as_mut_ptr(),
            device_id,
            &mut raw,
        );
    }
    if !raw.is_null() {
        // SAFETY: non-null, transfer full.
        *slot = Some(unsafe { from_glib_full(raw) });
    }
    slot.is_some()
}

/// Answers a `gst.cuda.context` context query with `ctx`; false for other queries or when
/// there is no context yet.
pub fn handle_context_query(
    element: &gst::Element,
    query: &mut gst::QueryRef,
    ctx: Option<&CudaContext>,
) -> bool {
    let Some(ctx) = ctx else {
        return false;
    };
    // SAFETY: valid element, query and context (transfer none).
    unsafe {
        ffi::gst_cuda_handle_context_query(element.to_glib_none().0, query.as_mut_ptr(), ctx.to_glib_none().0)
            != glib::ffi::GFALSE
    }
}

/// Finds or creates the element's CUDA context and stores it in `slot` (the same slot the
/// element's `set_context` fills through [`handle_set_context`]).
///
/// Order, as GStreamer's `gst_cuda_ensure_element_context`: the slot itself, a context
/// query downstream then upstream, a `need-context` message (the bin or the application
/// may call `set_context` synchronously), and finally a new context, announced with a
/// `have-context` message so that the rest of the pipeline shares it. The new context
/// wraps the primary context of `device_id` (-1 = device 0), see the module docs.
///
/// Call it without holding `slot`'s lock.
pub fn ensure_element_context(
    element: &gst::Element,
    device_id: i32,
    slot: &Mutex<Option<CudaContext>>,
) -> Result<CudaContext, CudaError> {
    let current = |slot: &Mutex<Option<CudaContext>>| slot.lock().ok().and_then(|s| s.clone());
    if let Some(c) = current(slot) {
        return Ok(c);
    }
    let mut query = gst::query::Context::new(ffi::GST_CUDA_CONTEXT_TYPE);
    for pads in [element.src_pads(), element.sink_pads()] {
        for pad in pads {
            if pad.peer_query(&mut query) {
                if let Some(context) = query.context() {
                    let mut found = None;
                    if handle_set_context(element, context, device_id, &mut found) {
                        if let (Ok(mut s), Some(c)) = (slot.lock(), found) {
                            return Ok(s.get_or_insert(c).clone());
                        }
                    }
                }
            }
        }
    }
    let msg = gst::message::NeedContext::builder(ffi::GST_CUDA_CONTEXT_TYPE)
        .src(element)
        .build();
    let _ = element.post_message(msg);
    if let Some(c) = current(slot) {
        return Ok(c);
    }
    let ctx = CudaContext::new_primary(device_id.max(0) as u32)?;
    let ctx = match slot.lock() {
        Ok(mut s) => s.get_or_insert(ctx).clone(),
        Err(_) => ctx,
    };
    let msg = gst::message::HaveContext::builder(ctx.to_gst_context())
        .src(element)
        .build();
    let _ = element.post_message(msg);
    Ok(ctx)
}

/// The CUDA context of one element and the GstContext handling every CUDA-capable
/// trtvision element does: take offered contexts ([`ElementCudaContext::set_context`]),
/// find or create one on NULL→READY ([`ElementCudaContext::before_change_state`]) and drop
/// it on READY→NULL ([`ElementCudaContext::after_change_state`]), answer queries
/// ([`ElementCudaContext::query`]). Elements use it through
/// [`crate::gpu_element::CudaContextElement`].
#[derive(Debug)]
pub struct ElementCudaContext {
    slot: Mutex<Option<CudaContext>>,
    /// The `device-id` property: -1 = the pipeline's context, whatever its device.
    device_id: AtomicI32,
    /// The `allow-peer-copy` property.
    allow_peer_copy: AtomicBool,
}

impl Default for ElementCudaContext {
    fn default() -> Self {
        Self {
            slot: Mutex::new(None),
            device_id: AtomicI32::new(-1),
            allow_peer_copy: AtomicBool::new(false),
        }
    }
}

impl ElementCudaContext {
    /// The context, once found or created.
    pub fn get(&self) -> Option<CudaContext> {
        self.slot.lock().ok().and_then(|s| s.clone())
    }

    /// The `device-id` property (-1 = any device).
    pub fn device_id(&self) -> i32 {
        self.device_id.load(Ordering::Relaxed)
    }

    /// Sets the `device-id` property (the element allows it in NULL and READY only).
    pub fn set_device_id(&self, id: i32) {
        self.device_id.store(id, Ordering::Relaxed);
    }

    /// The `allow-peer-copy` property.
    pub fn allow_peer_copy(&self) -> bool {
        self.allow_peer_copy.load(Ordering::Relaxed)
    }

    /// Sets the `allow-peer-copy` property.
    pub fn set_allow_peer_copy(&self, allow: bool) {
        self.allow_peer_copy.store(allow, Ordering::Relaxed);
    }

    /// The device the element runs on: `device-id` when set, else the device of its
    /// context, once it has one.
    pub fn device(&self) -> Option<u32> {
        u32::try_from(self.device_id())
            .ok()
            .or_else(|| self.get().map(|c| c.device_id()))
    }

    /// From the element's `set_context`: keeps an offered context of the element's device
    /// (any device with `device-id=-1`).
    pub fn set_context(&self, element: &gst::Element, context: &gst::Context) {
        if let Ok(mut slot) = self.slot.lock() {
            handle_set_context(element, context, self.device_id(), &mut slot);
        }
    }

    /// Before the element's parent `change_state`: finds or creates the context on
    /// NULL→READY when a GPU is there. The error says why the element stays on the CPU.
    pub fn before_change_state(&self, element: &gst::Element, t: gst::StateChange) -> Result<(), CudaError> {
        if t == gst::StateChange::NullToReady && super::cuda_available() {
            ensure_element_context(element, self.device_id(), &self.slot)?;
        }
        Ok(())
    }

    /// After the element's parent `change_state`: drops the context on READY→NULL.
    pub fn after_change_state(&self, t: gst::StateChange) {
        if t == gst::StateChange::ReadyToNull {
            if let Ok(mut slot) = self.slot.lock() {
                *slot = None;
            }
        }
    }

    /// From the element's query handler: answers `gst.cuda.context` queries.
    pub fn query(&self, element: &gst::Element, query: &mut gst::QueryRef) -> bool {
        matches!(query.view(), gst::QueryView::Context(_))
            && handle_context_query(element, query, self.get().as_ref())
    }
}

/// Whether every memory of `buffer` is GstCudaMemory (and there is at least one).
pub fn is_cuda_buffer(buffer: &gst::BufferRef) -> bool {
    let n = buffer.n_memory();
    n > 0
        && (0..n).all(|i| {
            // SAFETY: valid memory of a live buffer.
            unsafe { ffi::gst_is_cuda_memory(buffer.peek_memory(i).as_mut_ptr()) != glib::ffi::GFALSE }
        })
}

/// A frame of GstCudaMemory mapped for reading on the device (`GST_MAP_READ |
/// GST_MAP_CUDA`); unmapped on drop.
pub struct CudaFrameMap {
    frame: gst_video::ffi::GstVideoFrame,
    context: *mut ffi::GstCudaContext,
    cuda: CudaFrame,
}

// SAFETY: the mapped frame holds a buffer reference and device addresses only; GStreamer
// allows unmapping from any thread.
unsafe impl Send for CudaFrameMap {}

impl std::fmt::Debug for CudaFrameMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaFrameMap").field("frame", &self.cuda).finish()
    }
}

impl CudaFrameMap {
    /// The device frame; it keeps a reference to the buffer, so the pixels outlive the
    /// map as long as the preprocessor needs them.
    pub fn frame(&self) -> CudaFrame {
        self.cuda.clone()
    }

    /// The context that owns the memory.
    pub fn context(&self) -> Option<CudaContext> {
        if self.context.is_null() {
            None
        } else {
            // SAFETY: non-null GstCudaContext kept alive by the mapped memory; transfer none.
            Some(unsafe { from_glib_none(self.context) })
        }
    }

    /// Whether kernels running in `ctx` can read the frame directly.
    pub fn is_accessible_from(&self, ctx: &CudaContext) -> bool {
        self.context().is_some_and(|mem_ctx| ctx.can_access(&mem_ctx))
    }
}

impl Drop for CudaFrameMap {
    fn drop(&mut self) {
        // SAFETY: mapped successfully in map_cuda_frame, unmapped once.
        unsafe { gst_video::ffi::gst_video_frame_unmap(&mut self.frame) };
    }
}

/// Maps a video frame of GstCudaMemory for reading on the GPU: device address and stride
/// of each plane (from the buffer's GstVideoMeta, else from the memory's own layout).
///
/// Fails with [`CudaError::NotCudaMemory`] when the buffer is in system memory (the
/// element then uses the CPU path) and [`CudaError::UnsupportedFormat`] for formats the
/// kernel cannot read.
pub fn map_cuda_frame(buffer: &gst::BufferRef, info: &VideoInfo) -> Result<CudaFrameMap, CudaError> {
    map_with_flags(buffer, info, gst::ffi::GST_MAP_READ)
}

/// Maps a video frame of GstCudaMemory for reading and writing on the GPU (kernels
/// drawing in place), like [`map_cuda_frame`]. The buffer must be writable (hence
/// `&mut`); after the map is dropped, GstCudaMemory knows the device copy changed and
/// downloads it for later system-memory maps.
pub fn map_cuda_frame_mut(buffer: &mut gst::BufferRef, info: &VideoInfo) -> Result<CudaFrameMap, CudaError> {
    map_with_flags(buffer, info, gst::ffi::GST_MAP_READ | gst::ffi::GST_MAP_WRITE)
}

fn map_with_flags(
    buffer: &gst::BufferRef,
    info: &VideoInfo,
    access: gst::ffi::GstMapFlags,
) -> Result<CudaFrameMap, CudaError> {
    if !is_cuda_buffer(buffer) {
        return Err(CudaError::NotCudaMemory);
    }
    let format = info.format();
    let layout = super::frame::FrameLayout::of(format).ok_or(CudaError::UnsupportedFormat(format))?;
    // SAFETY: is_cuda_buffer checked that every memory is GstCudaMemory.
    unsafe { super::memsync::sync_buffer(buffer) };
    let mut frame = MaybeUninit::<gst_video::ffi::GstVideoFrame>::zeroed();
    let flags = access | ffi::GST_MAP_CUDA;
    // SAFETY: valid info and buffer; `frame` is an out-parameter. gst_video_frame_map
    // takes its own buffer reference and never writes to a buffer mapped for reading;
    // write access comes only from map_cuda_frame_mut, which holds the buffer mutably.
    let ok = unsafe {
        gst_video::ffi::gst_video_frame_map(
            frame.as_mut_ptr(),
            info.to_glib_none().0,
            buffer.as_mut_ptr(),
            flags,
        )
    };
    if ok == glib::ffi::GFALSE {
        return Err(CudaError::Map(format!(
            "could not map a {format:?} {}x{} CUDA frame for {} on the device",
            info.width(),
            info.height(),
            if access & gst::ffi::GST_MAP_WRITE != 0 {
                "drawing"
            } else {
                "reading"
            }
        )));
    }
    // SAFETY: initialised by the successful map above.
    let frame = unsafe { frame.assume_init() };
    // SAFETY: memory 0 is GstCudaMemory (checked above), whose layout starts with the
    // public part declared in ffi::GstCudaMemory.
    let mem = unsafe { &*(buffer.peek_memory(0).as_ptr() as *const ffi::GstCudaMemory) };
    let mut map = CudaFrameMap {
        frame,
        context: mem.context,
        cuda: CudaFrame {
            format,
            layout,
            width: info.width(),
            height: info.height(),
            planes: [0; 3],
            strides: [0; 3],
            colors: crate::video::color::YuvCoefficients::for_info(info),
            keepalive: None,
        },
    };
    let n = layout.n_planes();
    let mut planes = [0u64; 3];
    let mut strides = [0usize; 3];
    if map.frame.meta.is_null() && buffer.n_memory() == 1 && mem_layout_matches(&mem.info, info) {
        // No GstVideoMeta: the memory's own (pitched) layout is authoritative.
        let base = map.frame.map[0].data as u64;
        for i in 0..n {
            planes[i] = base + mem.info.offset[i] as u64;
            strides[i] = mem.info.stride[i].max(0) as usize;
        }
    } else {
        for i in 0..n {
            planes[i] = map.frame.data[i] as u64;
            strides[i] = map.frame.info.stride[i].max(0) as usize;
        }
    }
    // SAFETY: the planes are device memory of the mapped buffer, valid while the buffer
    // lives; the frame keeps a reference to it.
    let cuda = unsafe { frame_of(info, &planes[..n], &strides[..n]) }?;
    // SAFETY: frame.buffer is the mapped buffer (transfer none).
    let buf: gst::Buffer = unsafe { from_glib_none(map.frame.buffer) };
    map.cuda = cuda.with_keepalive(buf);
    Ok(map)
}

/// The device frame of `info` at `planes` with `strides`, converting its YUV with the
/// colorimetry of `info` (its caps), not the size's default: a 720p camera flagged BT.601
/// is read as BT.601 on the GPU as on the CPU.
///
/// # Safety
/// As [`CudaFrame::from_raw`].
unsafe fn frame_of(info: &VideoInfo, planes: &[u64], strides: &[usize]) -> Result<CudaFrame, CudaError> {
    // SAFETY: forwarded contract.
    let frame = unsafe { CudaFrame::from_raw(info.format(), info.width(), info.height(), planes, strides) }?;
    Ok(frame.with_colors(crate::video::color::YuvCoefficients::for_info(info)))
}

fn mem_layout_matches(mem: &gst_video::ffi::GstVideoInfo, info: &VideoInfo) -> bool {
    if mem.finfo.is_null() {
        return false;
    }
    // SAFETY: static format description.
    let mem_format = unsafe { (*mem.finfo).format };
    mem_format == info.format().into_glib()
        && mem.width == info.width() as i32
        && mem.height == info.height() as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Layouts as compiled from the 1.22 headers (offsetof/sizeof with gcc, x86_64).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn ffi_layouts_match_the_headers() {
        use std::mem::{offset_of, size_of};
        assert_eq!(size_of::<gst::ffi::GstMemory>(), 112);
        assert_eq!(offset_of!(ffi::GstCudaMemory, context), 112);
        assert_eq!(offset_of!(ffi::GstCudaMemory, info), 120);
        assert_eq!(offset_of!(ffi::GstCudaMemory, priv_), 272);
        assert_eq!(size_of::<ffi::GstCudaMemory>(), 312);
        assert_eq!(size_of::<ffi::GstCudaContext>(), 96);
        assert_eq!(ffi::GST_MAP_CUDA, 131072);
    }

    /// Mapped frames convert with their caps' colorimetry, also where it is not the
    /// size's default (the GPU read 720p BT.601 frames as BT.709 before).
    #[test]
    fn mapped_frames_keep_the_caps_colorimetry() {
        use crate::video::color::{YuvCoefficients, YuvMatrix};
        gst::init().unwrap();
        let caps = |colorimetry: Option<&str>| {
            let mut b = gst_video::VideoCapsBuilder::new()
                .format(gst_video::VideoFormat::I420)
                .width(1280)
                .height(720)
                .framerate(gst::Fraction::new(30, 1));
            if let Some(c) = colorimetry {
                b = b.field("colorimetry", c);
            }
            VideoInfo::from_caps(&b.build()).unwrap()
        };
        let planes = [0x10000u64, 0x200000, 0x300000];
        let strides = [1280usize, 640, 640];
        for (colorimetry, want) in [
            (Some("bt601"), YuvCoefficients::new(YuvMatrix::Bt601, false)),
            (Some("bt709"), YuvCoefficients::new(YuvMatrix::Bt709, false)),
            (None, YuvCoefficients::size_default(720)),
        ] {
            // SAFETY: never read.
            let f = unsafe { frame_of(&caps(colorimetry), &planes, &strides) }.unwrap();
            assert_eq!(f.colors, want, "{colorimetry:?}");
        }
        assert_ne!(
            YuvCoefficients::size_default(720),
            YuvCoefficients::new(YuvMatrix::Bt601, false),
            "the BT.601 case must differ from the size's default"
        );
    }

    /// The parts that need libgstcuda but no GPU.
    #[test]
    fn system_memory_and_foreign_contexts_are_refused() {
        gst::init().unwrap();
        assert_eq!(CudaContext::static_type().name(), "GstCudaContext");
        let info = VideoInfo::builder(gst_video::VideoFormat::Nv12, 64, 48)
            .build()
            .unwrap();
        let buf = gst::Buffer::with_size(info.size()).unwrap();
        assert!(!is_cuda_buffer(&buf));
        assert!(matches!(
            map_cuda_frame(&buf, &info),
            Err(CudaError::NotCudaMemory)
        ));
        assert!(!is_cuda_buffer(&gst::Buffer::new()));
        let bin = gst::Bin::new();
        let mut q = gst::query::Context::new(ffi::GST_CUDA_CONTEXT_TYPE);
        assert!(!handle_context_query(bin.upcast_ref(), &mut q, None));
        let other = gst::Context::new("gst.gl.GLDisplay", true);
        let mut slot = None;
        assert!(!handle_set_context(bin.upcast_ref(), &other, -1, &mut slot));
        assert!(slot.is_none());
    }
}
