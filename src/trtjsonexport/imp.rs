//! JSON lines export. One object per frame:
//! `{"source":0,"frame":12,"pts":400000000,"batch":12,"width":640,"height":480,
//!   "detections":[{"model":"shapes-yolo","class_id":0,"label":"red","confidence":0.9,
//!   "bbox":[x,y,w,h],"object_id":-1,"mask":{"x":..,"y":..,"width":..,"height":..,"area":..},
//!   "secondary":[{"model":"shapes-landmarks","keypoints":[{"name":"centroid","x":..,"y":..,
//!   "score":1.0}],"attribute":{"class_id":0,"label":"red","score":1.0}}]}],
//!   "dense":[{"model":"shapes-depth","shape":[1,320,320],"min":2.0,"mean":9.1,"max":10.0}],
//!   "analytics":{"zones":[{"zone":"door","label":"red","class_id":0,"count":1}],
//!   "events":[{"type":"zone_entry","zone":"door","object":{"track_id":3,"label":"red","class_id":0}}]}}`
//! `pts` is the frame's own PTS in nanoseconds (null when unset); `bbox` and keypoints are in
//! frame pixels; `mask`, `secondary`, `dense` and `analytics` (trtanalytics) are omitted when there are none (`dense`
//! summarises channel 0 of each dense map over the part that covers the frame; for maps left
//! in GPU memory trtinfer computed the summary there, so the export needs no map values).

use crate::batch::Batch;
use crate::results::{DenseSummaryJson, DetectionJson};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use serde::Serialize;
use std::io::Write;
use std::sync::{LazyLock, Mutex};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "trtjsonexport",
        gst::DebugColorFlags::empty(),
        Some("trtvision JSON export"),
    )
});

#[derive(Serialize)]
struct FrameJson<'a> {
    source: u32,
    frame: u64,
    pts: Option<u64>,
    batch: u64,
    width: u32,
    height: u32,
    detections: Vec<DetectionJson<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    dense: Vec<DenseSummaryJson<'a>>,
    /// Zone counts and events of trtanalytics (schema: docs/schema, `zones` and `event`).
    #[serde(skip_serializing_if = "Option::is_none")]
    analytics: Option<AnalyticsJson<'a>>,
}

#[derive(Serialize)]
struct AnalyticsJson<'a> {
    zones: &'a [crate::messages::ZoneCount],
    events: &'a [crate::messages::Event],
}

/// Writes the JSON lines of one batch to `out`.
pub fn write_batch(out: &mut impl Write, batch: &Batch) -> std::io::Result<()> {
    for slot in &batch.slots {
        let line = FrameJson {
            source: slot.pad_index(),
            frame: slot.frame_number,
            pts: slot.pts.map(|t| t.nseconds()),
            batch: batch.batch_number,
            width: slot.info.width(),
            height: slot.info.height(),
            detections: slot.results.detections.iter().map(DetectionJson::from).collect(),
            dense: slot
                .results
                .dense
                .iter()
                .filter_map(DenseSummaryJson::of)
                .collect(),
            analytics: slot.results.analytics.as_ref().map(|a| AnalyticsJson {
                zones: &a.zones,
                events: &a.events,
            }),
        };
        serde_json::to_writer(&mut *out, &line)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

#[derive(Default)]
pub struct TrtJsonExport {
    location: Mutex<Option<String>>,
    file: Mutex<Option<std::io::BufWriter<std::fs::File>>>,
}

#[glib::object_subclass]
impl ObjectSubclass for TrtJsonExport {
    const NAME: &'static str = "GstTrtJsonExport";
    type Type = super::TrtJsonExport;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for TrtJsonExport {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![glib::ParamSpecString::builder("location")
                .nick("Location")
                .blurb("File the JSON lines are written to (one line per frame; '-' = standard output)")
                .mutable_ready()
                .build()]
        });
        PROPS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        match pspec.name() {
            "location" => *self.location.lock().unwrap() = value.get().expect("type checked upstream"),
            _ => unreachable!("unknown property {}", pspec.name()),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        match pspec.name() {
            "location" => self.location.lock().unwrap().to_value(),
            _ => unreachable!("unknown property {}", pspec.name()),
        }
    }
}

impl GstObjectImpl for TrtJsonExport {}

impl ElementImpl for TrtJsonExport {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "TrtVision JSON export",
                "Filter/Analyzer/Video",
                "Writes the detections of every frame of a batch as JSON lines",
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

impl BaseTransformImpl for TrtJsonExport {
    const MODE: gst_base::subclass::BaseTransformMode = gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let location = self.location.lock().unwrap().clone();
        let file = match location.as_deref() {
            None | Some("-") => None,
            Some(path) => Some(std::io::BufWriter::new(std::fs::File::create(path).map_err(
                |e| {
                    gst::error_msg!(
                        gst::ResourceError::OpenWrite,
                        ("Could not open JSON export file '{}' for writing: {}", path, e)
                    )
                },
            )?)),
        };
        *self.file.lock().unwrap() = file;
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        if let Some(mut f) = self.file.lock().unwrap().take() {
            // Reported, but the element still stops (as filesink does): failing stop() would
            // leave its pads active and the pipeline unable to reach NULL.
            if let Err(e) = f.flush() {
                gst::element_imp_error!(
                    self,
                    gst::ResourceError::Write,
                    ("Could not write the JSON export file: {}", e)
                );
            }
        }
        Ok(())
    }

    fn transform_ip(&self, buf: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        let meta = crate::transform::batch_meta(self.obj().upcast_ref(), buf)?;
        let batch = meta.batch();
        let mut file = self.file.lock().unwrap();
        let res = match file.as_mut() {
            Some(f) => write_batch(f, batch),
            None => write_batch(&mut std::io::stdout().lock(), batch),
        };
        if let Err(e) = res {
            gst::element_imp_error!(
                self,
                gst::ResourceError::Write,
                ("Could not write the JSON export: {}", e)
            );
            return Err(gst::FlowError::Error);
        }
        gst::trace!(CAT, imp = self, "exported batch {}", batch.batch_number);
        Ok(gst::FlowSuccess::Ok)
    }
}
