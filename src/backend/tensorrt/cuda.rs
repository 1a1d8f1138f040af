//! RAII wrappers over the CUDA driver calls of the shim. All of them act in the CUDA
//! context current on the calling thread; the backend makes its context current before
//! creating, using or dropping them.

use std::ffi::c_void;

use super::ffi::{self, check, ShimError};

/// A non-blocking CUDA stream.
pub(crate) struct Stream(*mut c_void);

impl Stream {
    pub(crate) fn new() -> Result<Stream, ShimError> {
        let mut s = std::ptr::null_mut();
        // SAFETY: out-pointer to a local.
        check(unsafe { ffi::trts_cuda_stream_create(&mut s) })?;
        Ok(Stream(s))
    }
    pub(crate) fn raw(&self) -> *mut c_void {
        self.0
    }
    pub(crate) fn sync(&self) -> Result<(), ShimError> {
        // SAFETY: valid stream.
        check(unsafe { ffi::trts_cuda_stream_sync(self.0) })
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // SAFETY: created by trts_cuda_stream_create, destroyed once.
        unsafe { ffi::trts_cuda_stream_destroy(self.0) }
    }
}

/// Device memory (`cuMemAlloc`).
pub(crate) struct DeviceBuffer {
    ptr: u64,
    len: usize,
}

impl DeviceBuffer {
    pub(crate) fn new(len: usize) -> Result<DeviceBuffer, ShimError> {
        let mut ptr = 0u64;
        // SAFETY: out-pointer to a local.
        check(unsafe { ffi::trts_cuda_malloc(&mut ptr, len) })?;
        Ok(DeviceBuffer { ptr, len })
    }
    pub(crate) fn ptr(&self) -> u64 {
        self.ptr
    }
    pub(crate) fn len(&self) -> usize {
        self.len
    }
    /// Zero-fills the buffer on `stream`.
    pub(crate) fn zero_async(&self, stream: &Stream) -> Result<(), ShimError> {
        // SAFETY: the range lies in this allocation.
        check(unsafe { ffi::trts_cuda_memset_async(self.ptr, 0, self.len, stream.raw()) })
    }
    /// Copies host bytes to the start of the buffer on `stream`. The caller keeps `src`
    /// alive until the stream has passed this copy.
    pub(crate) fn upload_async(&self, src: &[u8], stream: &Stream) -> Result<(), ShimError> {
        assert!(src.len() <= self.len, "upload larger than the device buffer");
        // SAFETY: destination range checked above; source is a live slice.
        check(unsafe { ffi::trts_cuda_htod_async(self.ptr, src.as_ptr().cast(), src.len(), stream.raw()) })
    }
    /// Copies `len` bytes from device address `src` to the start of the buffer.
    pub(crate) fn copy_from_device_async(
        &self,
        src: u64,
        len: usize,
        stream: &Stream,
    ) -> Result<(), ShimError> {
        assert!(len <= self.len, "copy larger than the device buffer");
        // SAFETY: destination range checked above; the caller vouches for the source range.
        check(unsafe { ffi::trts_cuda_dtod_async(self.ptr, src, len, stream.raw()) })
    }
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        // SAFETY: allocated by trts_cuda_malloc, freed once.
        unsafe { ffi::trts_cuda_free(self.ptr) }
    }
}

/// Page-locked host memory (`cuMemHostAlloc`), the target of asynchronous downloads.
pub(crate) struct PinnedBuffer {
    ptr: *mut u8,
    len: usize,
}

impl PinnedBuffer {
    pub(crate) fn new(len: usize) -> Result<PinnedBuffer, ShimError> {
        let mut p = std::ptr::null_mut();
        // SAFETY: out-pointer to a local.
        check(unsafe { ffi::trts_cuda_host_alloc(&mut p, len) })?;
        Ok(PinnedBuffer { ptr: p.cast(), len })
    }
    /// Queues a copy of `len` bytes from device address `src` into the buffer.
    pub(crate) fn download_async(&mut self, src: u64, len: usize, stream: &Stream) -> Result<(), ShimError> {
        assert!(len <= self.len, "download larger than the pinned buffer");
        // SAFETY: destination range checked above; `&mut self` keeps readers away until the
        // caller has synchronized.
        check(unsafe { ffi::trts_cuda_dtoh_async(self.ptr.cast(), src, len, stream.raw()) })
    }
    /// The first `len` bytes. Only meaningful after the download was synchronized.
    pub(crate) fn bytes(&self, len: usize) -> &[u8] {
        assert!(len <= self.len);
        // SAFETY: in-bounds range of a live allocation.
        unsafe { std::slice::from_raw_parts(self.ptr, len) }
    }
}

impl Drop for PinnedBuffer {
    fn drop(&mut self) {
        // SAFETY: allocated by trts_cuda_host_alloc, freed once.
        unsafe { ffi::trts_cuda_host_free(self.ptr.cast()) }
    }
}

/// A CUDA event (blocking sync, no timing).
pub(crate) struct Event(*mut c_void);

impl Event {
    pub(crate) fn new() -> Result<Event, ShimError> {
        let mut e = std::ptr::null_mut();
        // SAFETY: out-pointer to a local.
        check(unsafe { ffi::trts_cuda_event_create(&mut e) })?;
        Ok(Event(e))
    }
    pub(crate) fn record(&self, stream: &Stream) -> Result<(), ShimError> {
        // SAFETY: valid event and stream.
        check(unsafe { ffi::trts_cuda_event_record(self.0, stream.raw()) })
    }
    pub(crate) fn sync(&self) -> Result<(), ShimError> {
        // SAFETY: valid event.
        check(unsafe { ffi::trts_cuda_event_sync(self.0) })
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: created by trts_cuda_event_create, destroyed once.
        unsafe { ffi::trts_cuda_event_destroy(self.0) }
    }
}

/// An instantiated CUDA graph.
pub(crate) struct GraphExec(*mut c_void);

impl GraphExec {
    /// Captures whatever `record` enqueues on `stream` (thread-local capture mode). The
    /// capture is always ended, also when `record` fails.
    pub(crate) fn capture<E>(
        stream: &Stream,
        record: impl FnOnce() -> Result<(), E>,
    ) -> Result<Result<GraphExec, ShimError>, E> {
        // SAFETY: valid stream.
        if let Err(e) = check(unsafe { ffi::trts_cuda_capture_begin(stream.raw()) }) {
            return Ok(Err(e));
        }
        let recorded = record();
        let mut exec = std::ptr::null_mut();
        // SAFETY: ends the capture begun above; out-pointer to a local.
        let ended = check(unsafe { ffi::trts_cuda_capture_end(stream.raw(), &mut exec) });
        let graph = ended.map(|()| GraphExec(exec));
        recorded.map(|()| graph)
    }
    pub(crate) fn launch(&self, stream: &Stream) -> Result<(), ShimError> {
        // SAFETY: valid graph and stream.
        check(unsafe { ffi::trts_cuda_graph_launch(self.0, stream.raw()) })
    }
}

impl Drop for GraphExec {
    fn drop(&mut self) {
        // SAFETY: instantiated by trts_cuda_capture_end, destroyed once.
        unsafe { ffi::trts_cuda_graph_destroy(self.0) }
    }
}
