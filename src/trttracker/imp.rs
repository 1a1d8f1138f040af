//! Each slot of a batch is one frame of one source (its trtmux pad index): the slot's
//! detections go through that source's tracker ([`crate::tracking::Tracker`]), which
//! writes the track ids into them. Nothing else of the batch changes: detections are
//! neither added, removed nor moved.
//!
//! Sources are forgotten when trtmux reports their end (`trtvision/source-eos`), on a
//! flush and when the element stops; a source whose frame numbers go back (its pad was
//! released and requested again) starts afresh. Property changes apply from the next
//! batch and keep the current tracks.

use crate::batch;
use crate::tracking::{Tracker, TrackerConfig};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{LazyLock, Mutex};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "trttracker",
        gst::DebugColorFlags::empty(),
        Some("trtvision multi-object tracker"),
    )
});

#[derive(Default)]
pub struct TrtTracker {
    settings: Mutex<TrackerConfig>,
    tracker: Mutex<Tracker>,
    /// Confirmed tracks alive after the last batch, all sources together.
    tracks: AtomicU32,
}

impl TrtTracker {
    fn process(&self, batch: &mut batch::Batch) {
        let config = *self.settings.lock().unwrap();
        let mut tracker = self.tracker.lock().unwrap();
        if *tracker.config() != config {
            tracker.set_config(config);
        }
        for slot in &mut batch.slots {
            tracker.update_frame(
                slot.pad_index(),
                slot.frame_number,
                slot.pts,
                &mut slot.results.detections,
                &mut slot.results.tracks,
            );
        }
        batch.tracked = true;
        let tracks = tracker.confirmed_tracks();
        self.store_track_count(tracks);
        gst::log!(
            CAT,
            imp = self,
            "batch {}: {} slots, {tracks} confirmed tracks",
            batch.batch_number,
            batch.slots.len()
        );
    }

    fn store_track_count(&self, tracks: usize) {
        self.tracks
            .store(tracks.min(u32::MAX as usize) as u32, Ordering::Relaxed);
    }

    fn reset(&self) {
        self.tracker.lock().unwrap().reset();
        self.tracks.store(0, Ordering::Relaxed);
    }
}

#[glib::object_subclass]
impl ObjectSubclass for TrtTracker {
    const NAME: &'static str = "GstTrtTracker";
    type Type = super::TrtTracker;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for TrtTracker {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let d = TrackerConfig::default();
            vec![
                glib::ParamSpecFloat::builder("iou-threshold")
                    .nick("IoU threshold")
                    .blurb("Smallest IoU between a track's predicted box and a detection of its class for them to match")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(d.iou_threshold)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecFloat::builder("high-threshold")
                    .nick("High confidence threshold")
                    .blurb(
                        "Detections at or above this confidence are matched first and may start new tracks",
                    )
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(d.high_threshold)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecFloat::builder("low-threshold")
                    .nick("Low confidence threshold")
                    .blurb(
                        "Detections from this confidence up to high-threshold only continue confirmed tracks \
                         (second association stage); lower ones are ignored and keep object-id -1. \
                         At or above high-threshold there is no second stage",
                    )
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(d.low_threshold)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("max-age")
                    .nick("Maximum age")
                    .blurb(
                        "Consecutive frames a confirmed track survives on its prediction without a matching \
                         detection; it is deleted after one more, and the object then gets a new id",
                    )
                    .maximum(100_000)
                    .default_value(d.max_age)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("min-hits")
                    .nick("Minimum hits")
                    .blurb(
                        "Matches in a row before a new track is confirmed and its detections get an id \
                         (earlier ones keep object-id -1); tracks born on a source's first frame are \
                         confirmed at once",
                    )
                    .minimum(1)
                    .maximum(1000)
                    .default_value(d.min_hits)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("tracks")
                    .nick("Confirmed tracks")
                    .blurb("Confirmed tracks alive (matched or coasting) after the last batch, all sources together")
                    .read_only()
                    .build(),
            ]
        });
        PROPS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap();
        match pspec.name() {
            "iou-threshold" => s.iou_threshold = value.get().expect("type checked upstream"),
            "high-threshold" => s.high_threshold = value.get().expect("type checked upstream"),
            "low-threshold" => s.low_threshold = value.get().expect("type checked upstream"),
            "max-age" => s.max_age = value.get().expect("type checked upstream"),
            "min-hits" => s.min_hits = value.get().expect("type checked upstream"),
            _ => unreachable!("unknown property {}", pspec.name()),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap();
        match pspec.name() {
            "iou-threshold" => s.iou_threshold.to_value(),
            "high-threshold" => s.high_threshold.to_value(),
            "low-threshold" => s.low_threshold.to_value(),
            "max-age" => s.max_age.to_value(),
            "min-hits" => s.min_hits.to_value(),
            "tracks" => self.tracks.load(Ordering::Relaxed).to_value(),
            _ => unreachable!("unknown property {}", pspec.name()),
        }
    }
}

impl GstObjectImpl for TrtTracker {}

impl ElementImpl for TrtTracker {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "TrtVision multi-object tracker",
                "Filter/Analyzer/Video",
                "Tracks the detections of each source of a batch (Kalman filter, two-stage IoU association) \
                 and writes stable per-source ids, from 1, to their object-id",
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

impl BaseTransformImpl for TrtTracker {
    const MODE: gst_base::subclass::BaseTransformMode = gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        self.reset();
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        self.reset();
        Ok(())
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        match event.view() {
            gst::EventView::FlushStop(_) => self.reset(),
            gst::EventView::CustomDownstream(e) => {
                if let Some(source) = e
                    .structure()
                    .filter(|s| s.name() == batch::SOURCE_EOS_EVENT)
                    .and_then(|s| s.get::<u32>("source").ok())
                {
                    gst::debug!(CAT, imp = self, "source {source} ended, forgetting its tracks");
                    let mut tracker = self.tracker.lock().unwrap();
                    tracker.remove_source(source);
                    self.store_track_count(tracker.confirmed_tracks());
                }
            }
            _ => {}
        }
        self.parent_sink_event(event)
    }

    fn transform_ip(&self, buf: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        let mut meta = crate::transform::batch_meta(self.obj().upcast_ref(), buf)?;
        self.process(meta.batch_mut());
        Ok(gst::FlowSuccess::Ok)
    }
}
