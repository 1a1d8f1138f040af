//! GstMeta wrapper that carries a [`Batch`] on a batch buffer.

use super::Batch;
use gst::glib;
use gst::prelude::*;
use std::fmt;

/// The batch meta. One per batch buffer; copied (frames by reference) when the buffer is.
#[repr(transparent)]
pub struct BatchMeta(imp::BatchMeta);

// SAFETY: the Batch inside is Send + Sync; the GstMeta header is plain data.
unsafe impl Send for BatchMeta {}
unsafe impl Sync for BatchMeta {}

impl BatchMeta {
    /// Attaches `batch` to `buffer`.
    pub fn add(
        buffer: &mut gst::BufferRef,
        batch: Batch,
    ) -> gst::MetaRefMut<'_, Self, gst::meta::Standalone> {
        unsafe {
            let mut params = std::mem::ManuallyDrop::new(batch);
            let meta = gst::ffi::gst_buffer_add_meta(
                buffer.as_mut_ptr(),
                imp::batch_meta_get_info(),
                &mut *params as *mut Batch as glib::ffi::gpointer,
            ) as *mut imp::BatchMeta;
            Self::from_mut_ptr(buffer, meta)
        }
    }

    pub fn batch(&self) -> &Batch {
        &self.0.batch
    }

    pub fn batch_mut(&mut self) -> &mut Batch {
        &mut self.0.batch
    }
}

unsafe impl MetaAPI for BatchMeta {
    type GstType = imp::BatchMeta;

    fn meta_api() -> glib::Type {
        imp::batch_meta_api_get_type()
    }
}

impl fmt::Debug for BatchMeta {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("BatchMeta")
            .field("batch_number", &self.0.batch.batch_number)
            .field("slots", &self.0.batch.slots.len())
            .finish()
    }
}

mod imp {
    use super::Batch;
    use gst::glib;
    use gst::glib::translate::*;
    use std::ptr;
    use std::sync::LazyLock;

    #[repr(C)]
    pub struct BatchMeta {
        parent: gst::ffi::GstMeta,
        pub(super) batch: Batch,
    }

    pub(super) fn batch_meta_api_get_type() -> glib::Type {
        static TYPE: LazyLock<glib::Type> = LazyLock::new(|| unsafe {
            let t = from_glib(gst::ffi::gst_meta_api_type_register(
                c"TrtVisionBatchMetaAPI".as_ptr(),
                [ptr::null::<std::os::raw::c_char>()].as_ptr() as *mut *const _,
            ));
            assert_ne!(t, glib::Type::INVALID);
            t
        });
        *TYPE
    }

    unsafe extern "C" fn batch_meta_init(
        meta: *mut gst::ffi::GstMeta,
        params: glib::ffi::gpointer,
        _buffer: *mut gst::ffi::GstBuffer,
    ) -> glib::ffi::gboolean {
        let meta = &mut *(meta as *mut BatchMeta);
        // `params` points at a Batch the caller gave up ownership of (ManuallyDrop).
        ptr::write(&mut meta.batch, ptr::read(params as *const Batch));
        true.into_glib()
    }

    unsafe extern "C" fn batch_meta_free(meta: *mut gst::ffi::GstMeta, _buffer: *mut gst::ffi::GstBuffer) {
        let meta = &mut *(meta as *mut BatchMeta);
        ptr::drop_in_place(&mut meta.batch);
    }

    unsafe extern "C" fn batch_meta_transform(
        dest: *mut gst::ffi::GstBuffer,
        meta: *mut gst::ffi::GstMeta,
        _buffer: *mut gst::ffi::GstBuffer,
        type_: glib::ffi::GQuark,
        _data: glib::ffi::gpointer,
    ) -> glib::ffi::gboolean {
        // Only plain copies keep the batch; other transforms (scaling...) make no sense.
        if type_ != *COPY_QUARK {
            return false.into_glib();
        }
        let meta = &*(meta as *const BatchMeta);
        let batch = meta.batch.clone();
        super::BatchMeta::add(gst::BufferRef::from_mut_ptr(dest), batch);
        true.into_glib()
    }

    static COPY_QUARK: LazyLock<glib::ffi::GQuark> =
        LazyLock::new(|| unsafe { glib::ffi::g_quark_from_static_string(c"gst-copy".as_ptr()) });

    struct MetaInfo(ptr::NonNull<gst::ffi::GstMetaInfo>);
    unsafe impl Send for MetaInfo {}
    unsafe impl Sync for MetaInfo {}

    pub(super) fn batch_meta_get_info() -> *const gst::ffi::GstMetaInfo {
        static INFO: LazyLock<MetaInfo> = LazyLock::new(|| unsafe {
            MetaInfo(
                ptr::NonNull::new(gst::ffi::gst_meta_register(
                    batch_meta_api_get_type().into_glib(),
                    c"TrtVisionBatchMeta".as_ptr(),
                    std::mem::size_of::<BatchMeta>(),
                    Some(batch_meta_init),
                    Some(batch_meta_free),
                    Some(batch_meta_transform),
                ) as *mut gst::ffi::GstMetaInfo)
                .expect("registering the batch meta failed"),
            )
        });
        INFO.0.as_ptr()
    }
}
