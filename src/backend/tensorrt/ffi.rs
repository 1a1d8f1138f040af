//! Declarations of the C shim (`shim/tensorrt/trts.h`) and small safe helpers.
//!
//! Every shim function returning `i32` returns a status; on failure the thread-local
//! message from `trts_last_error` explains it. No C++ exception crosses this boundary.

use std::ffi::{c_char, c_void, CStr};

/// `enum trts_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Unavailable,
    InvalidModel,
    Deserialize,
    Shape,
    Runtime,
    Precision,
}

impl Status {
    fn from_code(code: i32) -> Status {
        match code {
            1 => Status::Unavailable,
            2 => Status::InvalidModel,
            3 => Status::Deserialize,
            4 => Status::Shape,
            6 => Status::Precision,
            _ => Status::Runtime,
        }
    }
}

/// A failed shim call: status and message.
#[derive(Debug, Clone)]
pub(crate) struct ShimError {
    pub status: Status,
    pub message: String,
}

impl std::fmt::Display for ShimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Converts a shim status into a result, fetching the thread's last error on failure.
pub(crate) fn check(code: i32) -> Result<(), ShimError> {
    if code == 0 {
        return Ok(());
    }
    // SAFETY: trts_last_error returns a NUL-terminated thread-local string that stays
    // valid until the next shim call on this thread; it is copied at once.
    let message = unsafe { CStr::from_ptr(trts_last_error()) }
        .to_string_lossy()
        .into_owned();
    Err(ShimError {
        status: Status::from_code(code),
        message: if message.is_empty() {
            format!("TensorRT shim call failed with status {code}")
        } else {
            message
        },
    })
}

/// `TRTS_MAX_DIMS`.
pub(crate) const MAX_DIMS: usize = 8;

/// `trts_io_info`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct IoInfo {
    pub name: *const c_char,
    pub is_input: i32,
    pub dtype: i32,
    pub linear: i32,
    pub on_host: i32,
    pub nb_dims: i32,
    pub dims: [i64; MAX_DIMS],
    pub min_dims: [i64; MAX_DIMS],
    pub max_dims: [i64; MAX_DIMS],
}

impl Default for IoInfo {
    fn default() -> Self {
        IoInfo {
            name: std::ptr::null(),
            is_input: 0,
            dtype: 0,
            linear: 0,
            on_host: 0,
            nb_dims: 0,
            dims: [0; MAX_DIMS],
            min_dims: [0; MAX_DIMS],
            max_dims: [0; MAX_DIMS],
        }
    }
}

/// `trts_build_params`.
#[repr(C)]
pub(crate) struct BuildParams {
    pub onnx_path: *const c_char,
    pub precision: i32,
    pub max_batch: i64,
    pub workspace_bytes: u64,
    pub timing_cache: *const c_void,
    pub timing_cache_len: usize,
    pub calib_cache: *const c_void,
    pub calib_cache_len: usize,
}

/// Opaque `trts_runtime`.
#[repr(C)]
pub(crate) struct RawRuntime {
    _private: [u8; 0],
}
/// Opaque `trts_engine`.
#[repr(C)]
pub(crate) struct RawEngine {
    _private: [u8; 0],
}
/// Opaque `trts_blob`.
#[repr(C)]
pub(crate) struct RawBlob {
    _private: [u8; 0],
}

/// `trts_log_fn`.
pub(crate) type LogFn = extern "C" fn(severity: i32, msg: *const c_char);

extern "C" {
    pub(crate) fn trts_last_error() -> *const c_char;
    pub(crate) fn trts_header_version() -> i32;
    pub(crate) fn trts_load(log: Option<LogFn>, lib_version: *mut i32) -> i32;
    pub(crate) fn trts_load_onnx_parser() -> i32;
    pub(crate) fn trts_device_info(
        device: i32,
        name: *mut c_char,
        name_cap: usize,
        cc_major: *mut i32,
        cc_minor: *mut i32,
    ) -> i32;

    pub(crate) fn trts_runtime_create(device: i32, out: *mut *mut RawRuntime) -> i32;
    pub(crate) fn trts_runtime_destroy(rt: *mut RawRuntime);
    pub(crate) fn trts_runtime_make_current(rt: *mut RawRuntime) -> i32;

    pub(crate) fn trts_build_onnx(
        rt: *mut RawRuntime,
        params: *const BuildParams,
        plan: *mut *mut RawBlob,
        timing_cache: *mut *mut RawBlob,
    ) -> i32;
    pub(crate) fn trts_blob_data(blob: *const RawBlob) -> *const c_void;
    pub(crate) fn trts_blob_size(blob: *const RawBlob) -> usize;
    pub(crate) fn trts_blob_free(blob: *mut RawBlob);

    pub(crate) fn trts_engine_load(
        rt: *mut RawRuntime,
        plan: *const c_void,
        len: usize,
        out: *mut *mut RawEngine,
    ) -> i32;
    pub(crate) fn trts_engine_destroy(engine: *mut RawEngine);
    pub(crate) fn trts_engine_num_io(engine: *const RawEngine) -> i32;
    pub(crate) fn trts_engine_io_info(engine: *const RawEngine, index: i32, out: *mut IoInfo) -> i32;
    pub(crate) fn trts_context_set_input_shape(
        engine: *mut RawEngine,
        name: *const c_char,
        dims: *const i64,
        nb_dims: i32,
    ) -> i32;
    pub(crate) fn trts_context_shape(
        engine: *const RawEngine,
        name: *const c_char,
        dims: *mut i64,
        nb_dims: *mut i32,
    ) -> i32;
    pub(crate) fn trts_context_set_address(
        engine: *mut RawEngine,
        name: *const c_char,
        device_ptr: u64,
    ) -> i32;
    pub(crate) fn trts_context_enqueue(engine: *mut RawEngine, stream: *mut c_void) -> i32;

    pub(crate) fn trts_cuda_stream_create(stream: *mut *mut c_void) -> i32;
    pub(crate) fn trts_cuda_stream_destroy(stream: *mut c_void);
    pub(crate) fn trts_cuda_stream_sync(stream: *mut c_void) -> i32;
    pub(crate) fn trts_cuda_malloc(ptr: *mut u64, bytes: usize) -> i32;
    pub(crate) fn trts_cuda_free(ptr: u64);
    pub(crate) fn trts_cuda_host_alloc(ptr: *mut *mut c_void, bytes: usize) -> i32;
    pub(crate) fn trts_cuda_host_free(ptr: *mut c_void);
    pub(crate) fn trts_cuda_memset_async(dst: u64, value: u8, bytes: usize, stream: *mut c_void) -> i32;
    pub(crate) fn trts_cuda_htod_async(
        dst: u64,
        src: *const c_void,
        bytes: usize,
        stream: *mut c_void,
    ) -> i32;
    pub(crate) fn trts_cuda_dtoh_async(dst: *mut c_void, src: u64, bytes: usize, stream: *mut c_void) -> i32;
    pub(crate) fn trts_cuda_dtod_async(dst: u64, src: u64, bytes: usize, stream: *mut c_void) -> i32;
    pub(crate) fn trts_cuda_event_create(event: *mut *mut c_void) -> i32;
    pub(crate) fn trts_cuda_event_destroy(event: *mut c_void);
    pub(crate) fn trts_cuda_event_record(event: *mut c_void, stream: *mut c_void) -> i32;
    pub(crate) fn trts_cuda_event_sync(event: *mut c_void) -> i32;
    pub(crate) fn trts_cuda_capture_begin(stream: *mut c_void) -> i32;
    pub(crate) fn trts_cuda_capture_end(stream: *mut c_void, exec: *mut *mut c_void) -> i32;
    pub(crate) fn trts_cuda_graph_launch(exec: *mut c_void, stream: *mut c_void) -> i32;
    pub(crate) fn trts_cuda_graph_destroy(exec: *mut c_void);
}

/// `major.minor.patch` of a TensorRT version integer (major*10000 + minor*100 + patch).
pub(crate) fn version_string(v: i32) -> String {
    format!("{}.{}.{}", v / 10000, (v / 100) % 100, v % 100)
}

/// Owned serialized bytes produced by TensorRT (`IHostMemory`).
pub(crate) struct Blob(*mut RawBlob);

impl Blob {
    /// Takes ownership of a blob pointer (may be null: empty blob).
    pub(crate) fn from_raw(raw: *mut RawBlob) -> Blob {
        Blob(raw)
    }

    /// The bytes.
    pub(crate) fn as_slice(&self) -> &[u8] {
        if self.0.is_null() {
            return &[];
        }
        // SAFETY: the blob owns `size` bytes at `data` until trts_blob_free.
        unsafe {
            let data = trts_blob_data(self.0) as *const u8;
            let len = trts_blob_size(self.0);
            if data.is_null() || len == 0 {
                &[]
            } else {
                std::slice::from_raw_parts(data, len)
            }
        }
    }
}

impl Drop for Blob {
    fn drop(&mut self) {
        // SAFETY: the pointer came from the shim and is freed once.
        unsafe { trts_blob_free(self.0) }
    }
}
