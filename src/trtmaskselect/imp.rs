//! For each frame, the detections that carry a pending mask source (set by trtinfer's
//! seg/DETR parsers) are filtered by confidence and top-K per class; only those get a
//! mask, computed at frame resolution inside their box. The model's mask tensors are then
//! released from the batch: nothing else of them travels further.

use crate::batch::{BatchOutputs, MaskTensor};
use crate::ops::maskselect::{self, MaskSelection};
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
    selected: Mutex<Vec<usize>>,
    /// Copy masks computed on the GPU to host memory (metadata); off: they stay in device
    /// memory for trtoverlay's GPU path only.
    download: std::sync::atomic::AtomicBool,
    /// Mask kernel for model outputs that stayed on the GPU (created on first use).
    #[cfg(feature = "cuda")]
    gpu: Mutex<Option<crate::ops::maskselect::cuda::MaskSelector>>,
}

impl TrtMaskSelect {
    /// Masks of outputs that stayed on the GPU: one kernel launch for every kept detection
    /// of the batch; only the kept masks come to the host. Returns (produced, kept) bytes.
    #[cfg(feature = "cuda")]
    fn process_device(
        &self,
        batch: &mut crate::batch::Batch,
        outputs: &[BatchOutputs],
        sel: &MaskSelection,
        selected: &mut Vec<usize>,
    ) -> Result<(u64, u64), gst::FlowError> {
        use crate::ops::maskselect::cuda::{MaskPlanes, MaskRequest, MaskSelector};
        use crate::results::{DeviceMask, FrameMask, MaskSource};
        let fail = |what: String| {
            gst::element_imp_error!(
                self,
                gst::StreamError::Failed,
                ("Masks could not be computed on the GPU: {}", what)
            );
            gst::FlowError::Error
        };
        let download = self.download.load(Ordering::Relaxed);
        let mut produced = 0u64;
        let mut requests = Vec::new();
        let mut targets = Vec::new();
        for out in outputs {
            let MaskTensor::DevicePrototypes {
                protos,
                coefficients,
                first,
            } = &out.masks
            else {
                continue;
            };
            produced += protos.len_bytes() as u64;
            for (slot_idx, slot) in batch.slots.iter().enumerate() {
                let Some(row) = out.row_of(slot_idx) else { continue };
                let Some(transform) = out.transforms.get(row) else {
                    continue;
                };
                let dets = &slot.results.detections;
                maskselect::select(dets, sel, selected);
                for &i in selected.iter() {
                    let d = &dets[i];
                    if d.model != out.model || d.mask_source != Some(MaskSource::OutputColumn) {
                        continue;
                    }
                    let rect = d.bbox.to_pixel_rect(transform.frame_w, transform.frame_h);
                    if rect.2 == 0 || rect.3 == 0 {
                        continue;
                    }
                    requests.push(MaskRequest {
                        planes: MaskPlanes::Prototypes {
                            protos,
                            coefficients,
                            first: *first,
                            anchor: d.query as usize,
                        },
                        row,
                        rect,
                        transform: *transform,
                        mask_threshold: sel.mask_threshold,
                    });
                    targets.push((slot_idx, i, rect));
                }
            }
        }
        let mut kept = 0u64;
        if !requests.is_empty() {
            let mut gpu = self.gpu.lock().unwrap();
            if gpu.is_none() {
                let ptr = match &requests[0].planes {
                    MaskPlanes::Prototypes { protos, .. } => protos,
                    MaskPlanes::Dense { masks, .. } => masks,
                };
                let ptr = match &ptr.storage {
                    crate::tensor::TensorStorage::Device { ptr, .. } => *ptr,
                    crate::tensor::TensorStorage::Host(_) => 0,
                };
                let ctx = crate::cuda::device_of_pointer(ptr)
                    .and_then(crate::cuda::DeviceContext::primary)
                    .map_err(|e| fail(e.to_string()))?;
                *gpu = Some(MaskSelector::new(&ctx).map_err(|e| fail(e.to_string()))?);
            }
            let selector = gpu.as_mut().expect("created above");
            let mut offsets = Vec::with_capacity(requests.len() + 1);
            let masks = selector
                .run(&requests, download, &mut offsets)
                .map_err(|e| fail(e.to_string()))?;
            for (k, &(slot_idx, i, (x, y, width, height))) in targets.iter().enumerate() {
                let range = masks.offsets[k]..masks.offsets[k + 1];
                let data = if download {
                    masks.host[range.clone()].to_vec()
                } else {
                    Vec::new()
                };
                kept += range.len() as u64;
                let device = DeviceMask {
                    ptr: masks.arena.ptr() + range.start as u64,
                    // Complete: the selector waited for its kernel.
                    ready_event: 0,
                    keepalive: masks.arena.clone(),
                };
                batch.slots[slot_idx].results.detections[i].mask = Some(FrameMask {
                    x,
                    y,
                    width,
                    height,
                    data,
                    device: Some(device),
                });
            }
        }
        for slot in batch.slots.iter_mut() {
            for d in slot.results.detections.iter_mut() {
                if outputs.iter().any(|o| o.model == d.model) {
                    d.mask_source = None;
                }
            }
        }
        Ok((produced, kept))
    }

    #[cfg(not(feature = "cuda"))]
    fn process_device(
        &self,
        _batch: &mut crate::batch::Batch,
        _outputs: &[BatchOutputs],
        _sel: &MaskSelection,
        _selected: &mut Vec<usize>,
    ) -> Result<(u64, u64), gst::FlowError> {
        gst::element_imp_error!(
            self,
            gst::StreamError::Failed,
            ("Masks are in GPU memory but this build has no CUDA support (cargo feature 'cuda')")
        );
        Err(gst::FlowError::Error)
    }

    fn process(&self, batch: &mut crate::batch::Batch) -> Result<(), gst::FlowError> {
        let (sel, post) = *self.settings.lock().unwrap();
        let mut selected = self.selected.lock().unwrap();
        let outputs: Vec<BatchOutputs> = std::mem::take(&mut batch.outputs);
        let (mut produced, mut kept) = (0u64, 0u64);
        let (device, outputs): (Vec<BatchOutputs>, Vec<BatchOutputs>) = outputs
            .into_iter()
            .partition(|o| matches!(o.masks, MaskTensor::DevicePrototypes { .. }));
        if !device.is_empty() {
            let (p, k) = self.process_device(batch, &device, &sel, &mut selected)?;
            produced += p;
            kept += k;
        }
        for out in &outputs {
            produced += out.masks.tensor().len_bytes() as u64;
            let tensor = out.masks.tensor();
            let Some(values) = tensor.f32_values() else {
                gst::warning!(
                    CAT,
                    imp = self,
                    "mask tensor of {} is not a host float tensor",
                    out.model
                );
                continue;
            };
            let values = &*values;
            for (slot_idx, slot) in batch.slots.iter_mut().enumerate() {
                let Some(row) = out.row_of(slot_idx) else { continue };
                let Some(transform) = out.transforms.get(row) else {
                    continue;
                };
                let dets = &mut slot.results.detections;
                maskselect::select(dets, &sel, &mut selected);
                for &i in selected.iter() {
                    if dets[i].model != out.model {
                        continue;
                    }
                    dets[i].mask = maskselect::frame_mask(
                        &dets[i],
                        &out.masks,
                        values,
                        row,
                        transform,
                        sel.mask_threshold,
                    );
                    if let Some(m) = &dets[i].mask {
                        kept += m.data.len() as u64;
                    }
                }
                for d in dets.iter_mut().filter(|d| d.model == out.model) {
                    d.mask_source = None;
                }
            }
        }
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
            selected: Mutex::default(),
            download: std::sync::atomic::AtomicBool::new(true),
            #[cfg(feature = "cuda")]
            gpu: Mutex::default(),
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
