//! GStreamer >= 1.24 hands out GstCudaMemory whose producer (a decoder, cudaupload, ...)
//! may still be writing it on its own CUDA stream: the memory is only marked as needing a
//! sync, and mapping it with `GST_MAP_CUDA` does not wait. `gst_cuda_memory_sync` waits
//! for that stream when (and only when) the memory is so marked. GStreamer 1.22 has no
//! such function (its producers sync before pushing), so it is looked up at run time in
//! the loaded libgstcuda-1.0: one build is right on both.

use std::ffi::{c_void, CStr};
use std::sync::{LazyLock, OnceLock};

use super::ffi::GstCudaMemory;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "trtcuda",
        gst::DebugColorFlags::empty(),
        Some("trtvision CUDA memory interop"),
    )
});

/// `void gst_cuda_memory_sync (GstCudaMemory * mem)` (GStreamer >= 1.24).
pub(crate) type MemorySyncFn = unsafe extern "C" fn(*mut GstCudaMemory);

/// Name of the sync function in libgstcuda-1.0.
const SYNC_SYMBOL: &CStr = c"gst_cuda_memory_sync";
/// The library the plugin links (already loaded when this runs).
const GSTCUDA_LIBRARY: &CStr = c"libgstcuda-1.0.so.0";

/// The sync function found by `lookup` (a `dlsym`-like function), logged either way.
pub(crate) fn resolve_with(lookup: impl FnOnce(&CStr) -> *mut c_void) -> Option<MemorySyncFn> {
    let ptr = lookup(SYNC_SYMBOL);
    if ptr.is_null() {
        gst::debug!(
            CAT,
            "libgstcuda-1.0 has no gst_cuda_memory_sync (GStreamer < 1.24): CUDA memory is read as its producer pushed it"
        );
        None
    } else {
        gst::debug!(
            CAT,
            "libgstcuda-1.0 has gst_cuda_memory_sync (GStreamer >= 1.24): CUDA memory is synchronised before kernels use it"
        );
        // SAFETY: the symbol of that name has this signature in every release that has it.
        Some(unsafe { std::mem::transmute::<*mut c_void, MemorySyncFn>(ptr) })
    }
}

/// `dlsym` in the already loaded libgstcuda-1.0 (never loads it a second time).
fn dlsym_gstcuda(symbol: &CStr) -> *mut c_void {
    // SAFETY: RTLD_NOLOAD only returns a handle of a library already in the process;
    // the handle is released after the lookup (the library stays loaded: the plugin links it).
    unsafe {
        let handle = libc::dlopen(GSTCUDA_LIBRARY.as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD);
        if handle.is_null() {
            return libc::dlsym(libc::RTLD_DEFAULT, symbol.as_ptr());
        }
        let ptr = libc::dlsym(handle, symbol.as_ptr());
        libc::dlclose(handle);
        ptr
    }
}

/// The sync function of the installed GStreamer, resolved once.
pub(crate) fn memory_sync() -> Option<MemorySyncFn> {
    static SYNC: OnceLock<Option<MemorySyncFn>> = OnceLock::new();
    *SYNC.get_or_init(|| resolve_with(dlsym_gstcuda))
}

/// Waits for pending writes of every GstCudaMemory of `buffer` (GStreamer >= 1.24; a no-op
/// on 1.22) before a kernel reads or writes it.
///
/// # Safety
/// Every memory of `buffer` must be GstCudaMemory.
pub(crate) unsafe fn sync_buffer(buffer: &gst::BufferRef) {
    let Some(sync) = memory_sync() else { return };
    for i in 0..buffer.n_memory() {
        // SAFETY: the caller guarantees GstCudaMemory; the sync function only takes its
        // lock and waits for its stream.
        unsafe { sync(buffer.peek_memory(i).as_ptr() as *mut GstCudaMemory) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static CALLS: AtomicUsize = AtomicUsize::new(0);
    unsafe extern "C" fn counting_sync(_: *mut GstCudaMemory) {
        CALLS.fetch_add(1, Ordering::SeqCst);
    }

    #[test]
    fn symbol_found_is_called_and_absent_symbol_keeps_the_old_path() {
        let _ = gst::init();
        let mut asked = None;
        let absent = resolve_with(|s| {
            asked = Some(s.to_owned());
            std::ptr::null_mut()
        });
        assert!(absent.is_none());
        assert_eq!(asked.as_deref(), Some(c"gst_cuda_memory_sync"));
        let found = resolve_with(|_| counting_sync as *mut c_void).expect("resolved");
        // SAFETY: the test function ignores its argument.
        unsafe { found(std::ptr::null_mut()) };
        assert_eq!(CALLS.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn installed_gstreamer_decides() {
        let _ = gst::init();
        // The lookup in the real library agrees with the installed GStreamer's version.
        let (major, minor, _, _) = gst::version();
        assert_eq!(
            memory_sync().is_some(),
            (major, minor) >= (1, 24),
            "GStreamer {major}.{minor}"
        );
    }
}
