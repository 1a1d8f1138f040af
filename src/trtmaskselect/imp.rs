//! For each frame, the detections that carry a pending mask source (set by trtinfer's
//! seg/DETR parsers) are filtered by confidence and top-K per class; only those get a
//! mask, computed at frame resolution inside their box. The model's mask tensors are then
//! released from the batch: nothing else of them travels further.

use crate::ops::maskselect::batch::{BatchMaskSelect, MaskBatchStats};
use crate::ops::maskselect::MaskSelection;
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "trtmaskselect",
        gst::DebugColorFlags::empty(),
        Some("trtvision mask selection"),
    )
});

pub struct TrtMaskSelect {
    settings: Mutex<(MaskSelection, bool)>,
    bytes_produced: AtomicU64,
    bytes_kept: AtomicU64,
    /// Copy masks computed on the GPU to host memory (metadata); off: they stay in device
    /// memory for trtoverlay's GPU path only.
    download: std::sync::atomic::AtomicBool,
    /// The operation (CPU or GPU path per model output, chosen inside).
    op: Mutex<BatchMaskSelect>,
}

impl TrtMaskSelect {
    fn process(&self, batch: &mut crate::batch::Batch) -> Result<(), gst::FlowError> {
        let (sel, post) = *self.settings.lock().unwrap();
        let download = self.download.load(Ordering::Relaxed);
        let stats = self.op.lock().unwrap().run(batch, &sel, download).map_err(|e| {
            gst::element_imp_error!(self, gst::StreamError::Failed, ("{}", e));
            gst::FlowError::Error
        })?;
        for model in &stats.unreadable {
            gst::warning!(
                CAT,
                imp = self,
                "mask tensor of {model} is not a host float tensor"
            );
        }
        let MaskBatchStats { produced, kept, .. } = stats;
        let total_produced = self.bytes_produced.fetch_add(produced, Ordering::Relaxed) + produced;
        let total_kept = self.bytes_kept.fetch_add(kept, Ordering::Relaxed) + kept;
        gst::log!(
            CAT,
            imp = self,
            "batch {}: mask bytes produced {produced}, kept {kept}",
            batch.batch_number
        );
        if post && produced > 0 {
            let s = gst::Structure::builder("trtmaskselect-stats")
                .field("batch", batch.batch_number)
                .field("bytes-produced", produced)
                .field("bytes-kept", kept)
                .field("total-bytes-produced", total_produced)
                .field("total-bytes-kept", total_kept)
                .build();
            let _ = self
                .obj()
                .post_message(gst::message::Element::builder(s).src(&*self.obj()).build());
        }
        Ok(())
    }
}

impl Default for TrtMaskSelect {
    fn default() -> Self {
        Self {
            settings: Mutex::default(),
            bytes_produced: AtomicU64::default(),
            bytes_kept: AtomicU64::default(),
            download: std::sync::atomic::AtomicBool::new(true),
            op: Mutex::default(),
        }
    }
}

#[glib::object_subclass]
impl ObjectSubclass for TrtMaskSelect {
    const NAME: &'static str = "GstTrtMaskSelect";
    type Type = super::TrtMaskSelect;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for TrtMaskSelect {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let d = MaskSelection::default();
            vec![
                glib::ParamSpecFloat::builder("threshold")
                    .nick("Confidence threshold")
                    .blurb("Detections with a confidence below this get no mask")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(d.min_confidence)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("top-k")
                    .nick("Top K")
                    .blurb("Most masks kept per frame and class, highest confidence first (0 = no limit)")
                    .default_value(d.top_k as u32)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecFloat::builder("mask-threshold")
                    .nick("Mask threshold")
                    .blurb("Mask probability above which a pixel belongs to the object")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(d.mask_threshold)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("download-masks")
                    .nick("Download masks")
                    .blurb(
                        "Copy masks computed on the GPU to host memory so that the metadata (ROI meta, JSON) \
                         carries them; when off they stay in GPU memory and only trtoverlay's GPU path draws them",
                    )
                    .default_value(true)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("post-messages")
                    .nick("Post statistics")
                    .blurb(
                        "Post a 'trtmaskselect-stats' element message per batch with bytes produced and kept",
                    )
                    .default_value(false)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt64::builder("bytes-produced")
                    .nick("Mask bytes produced")
                    .blurb("Bytes of mask tensors the models produced since start")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("bytes-kept")
                    .nick("Mask bytes kept")
                    .blurb("Bytes of compact masks kept in the metadata since start")
                    .read_only()
                    .build(),
            ]
        });
        PROPS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap();
        match pspec.name() {
            "threshold" => s.0.min_confidence = value.get().expect("type checked upstream"),
            "top-k" => s.0.top_k = value.get::<u32>().expect("type checked upstream") as usize,
            "mask-threshold" => s.0.mask_threshold = value.get().expect("type checked upstream"),
            "post-messages" => s.1 = value.get().expect("type checked upstream"),
            "download-masks" => self
                .download
                .store(value.get().expect("type checked upstream"), Ordering::Relaxed),
            _ => unreachable!("unknown property {}", pspec.name()),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap();
        match pspec.name() {
            "threshold" => s.0.min_confidence.to_value(),
            "top-k" => (s.0.top_k as u32).to_value(),
            "mask-threshold" => s.0.mask_threshold.to_value(),
            "post-messages" => s.1.to_value(),
            "download-masks" => self.download.load(Ordering::Relaxed).to_value(),
            "bytes-produced" => self.bytes_produced.load(Ordering::Relaxed).to_value(),
            "bytes-kept" => self.bytes_kept.load(Ordering::Relaxed).to_value(),
            _ => unreachable!("unknown property {}", pspec.name()),
        }
    }
}

impl GstObjectImpl for TrtMaskSelect {}

impl ElementImpl for TrtMaskSelect {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "TrtVision mask selection",
                "Filter/Analyzer/Video",
                "Keeps the masks of active detections only, cropped and resized to their boxes in frame pixels",
                "gst-trtvision developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static T: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(crate::transform::batch_pad_templates);
        T.as_ref()
    }
}

impl BaseTransformImpl for TrtMaskSelect {
    const MODE: gst_base::subclass::BaseTransformMode = gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        self.bytes_produced.store(0, Ordering::Relaxed);
        self.bytes_kept.store(0, Ordering::Relaxed);
        Ok(())
    }

    fn transform_ip(&self, buf: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        let mut meta = crate::transform::batch_meta(self.obj().upcast_ref(), buf)?;
        self.process(meta.batch_mut())?;
        Ok(gst::FlowSuccess::Ok)
    }
}
