//! Raw declarations of the parts of libgstcuda-1.0 (gst-plugins-bad 1.22, "unstable API")
//! that the CUDA path uses, transcribed from `/usr/include/gstreamer-1.0/gst/cuda/`.
//!
//! No Rust bindings exist for this library. Version notes for 1.22: there is no
//! `GstCudaStream` / `gst_cuda_memory_get_stream` / `gst_cuda_memory_sync` (they arrived in
//! 1.24); memory written by nvcodec elements is complete when they push it (they
//! synchronise their stream). From 1.24 on, producers may push memory still being written
//! on their stream: `super::memsync` looks `gst_cuda_memory_sync` up at run time and calls
//! it before a frame is mapped for our kernels.
//!
//! The CUDA driver types (`CUcontext`, ...) are those of `cudarc::driver::sys`.

#![allow(non_camel_case_types, non_snake_case, missing_docs)]

use std::ffi::{c_char, c_int, c_uint, c_void};

use gst::ffi::{GstBufferPool, GstContext, GstElement, GstMemory, GstObject, GstObjectClass, GstQuery};
use gst::glib::ffi::{gboolean, gpointer, GType};
use gst_video::ffi::GstVideoInfo;

/// `GST_CUDA_CONTEXT_TYPE`: context type name of a shared CUDA context.
pub const GST_CUDA_CONTEXT_TYPE: &str = "gst.cuda.context";
/// `GST_CUDA_MEMORY_TYPE_NAME`.
pub const GST_CUDA_MEMORY_TYPE_NAME: &str = "gst.cuda.memory";
/// `GST_MAP_CUDA = GST_MAP_FLAG_LAST << 1`: map flag asking a GstCudaMemory for its device
/// pointer instead of a host staging copy.
pub const GST_MAP_CUDA: c_uint = (gst::ffi::GST_MAP_FLAG_LAST as c_uint) << 1;
/// `GST_CUDA_MEMORY_TRANSFER_NEED_DOWNLOAD = GST_MEMORY_FLAG_LAST << 0`.
pub const GST_CUDA_MEMORY_TRANSFER_NEED_DOWNLOAD: c_uint = gst::ffi::GST_MEMORY_FLAG_LAST as c_uint;
/// `GST_CUDA_MEMORY_TRANSFER_NEED_UPLOAD = GST_MEMORY_FLAG_LAST << 1`.
pub const GST_CUDA_MEMORY_TRANSFER_NEED_UPLOAD: c_uint = (gst::ffi::GST_MEMORY_FLAG_LAST as c_uint) << 1;
/// Name of the `guint` property holding a GstCudaContext's device ordinal.
pub const CUDA_DEVICE_ID_PROPERTY: &str = "cuda-device-id";

/// `struct _GstCudaContext` (public part only; the rest is behind `priv`).
#[repr(C)]
#[derive(Debug, Copy, Clone)]
pub struct GstCudaContext {
    pub object: GstObject,
    pub priv_: gpointer,
}

/// `struct _GstCudaContextClass`.
#[repr(C)]
#[derive(Debug, Copy, Clone)]
pub struct GstCudaContextClass {
    pub parent_class: GstObjectClass,
}

/// `struct _GstCudaMemory` as of 1.22: the public `context` and `info` follow the
/// GstMemory header.
#[repr(C)]
#[derive(Debug, Copy, Clone)]
pub struct GstCudaMemory {
    pub mem: GstMemory,
    pub context: *mut GstCudaContext,
    pub info: GstVideoInfo,
    pub priv_: gpointer,
    pub _gst_reserved: [gpointer; 4],
}

#[link(name = "gstcuda-1.0")]
extern "C" {
    /// Loads libcuda through GStreamer's own loader; TRUE when the driver API is usable.
    pub fn gst_cuda_load_library() -> gboolean;

    pub fn gst_cuda_context_get_type() -> GType;
    /// New context (cuCtxCreate) on device `device_id`; NULL on failure. Transfer full.
    pub fn gst_cuda_context_new(device_id: c_uint) -> *mut GstCudaContext;
    /// Wraps an existing CUcontext (not owned: the caller keeps it alive). Transfer full.
    pub fn gst_cuda_context_new_wrapped(
        handler: cudarc::driver::sys::CUcontext,
        device: cudarc::driver::sys::CUdevice,
    ) -> *mut GstCudaContext;
    pub fn gst_cuda_context_push(ctx: *mut GstCudaContext) -> gboolean;
    pub fn gst_cuda_context_pop(cuda_ctx: *mut cudarc::driver::sys::CUcontext) -> gboolean;
    /// The CUcontext; transfer none.
    pub fn gst_cuda_context_get_handle(ctx: *mut GstCudaContext) -> gpointer;
    pub fn gst_cuda_context_get_texture_alignment(ctx: *mut GstCudaContext) -> c_int;
    pub fn gst_cuda_context_can_access_peer(ctx: *mut GstCudaContext, peer: *mut GstCudaContext) -> gboolean;

    pub fn gst_cuda_ensure_element_context(
        element: *mut GstElement,
        device_id: c_int,
        cuda_ctx: *mut *mut GstCudaContext,
    ) -> gboolean;
    pub fn gst_cuda_handle_set_context(
        element: *mut GstElement,
        context: *mut GstContext,
        device_id: c_int,
        cuda_ctx: *mut *mut GstCudaContext,
    ) -> gboolean;
    pub fn gst_cuda_handle_context_query(
        element: *mut GstElement,
        query: *mut GstQuery,
        cuda_ctx: *mut GstCudaContext,
    ) -> gboolean;
    /// A `gst.cuda.context` GstContext holding `cuda_ctx`. Transfer full.
    pub fn gst_context_new_cuda_context(cuda_ctx: *mut GstCudaContext) -> *mut GstContext;

    pub fn gst_cuda_memory_init_once();
    pub fn gst_is_cuda_memory(mem: *mut GstMemory) -> gboolean;
    pub fn gst_cuda_allocator_get_type() -> GType;
    pub fn gst_cuda_allocator_alloc(
        allocator: *mut c_void,
        context: *mut GstCudaContext,
        info: *const GstVideoInfo,
    ) -> *mut GstMemory;

    pub fn gst_cuda_buffer_pool_get_type() -> GType;
    /// A buffer pool of GstCudaMemory (with GstVideoMeta) on `context`. Transfer full.
    pub fn gst_cuda_buffer_pool_new(context: *mut GstCudaContext) -> *mut GstBufferPool;

    /// Compiles CUDA C with GStreamer's NVRTC loader (unused: we use cudarc's, which finds
    /// CUDA 13's libnvrtc.so.13; GStreamer 1.22's loader does not).
    pub fn gst_cuda_nvrtc_compile(source: *const c_char) -> *mut c_char;
}
