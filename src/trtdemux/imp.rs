//! Restoring per-source streams from batches.
//!
//! Each slot's frame buffer is the original buffer of its source (trtmux took it by
//! reference), so timestamps, offsets and the source's own metas are intact; trtdemux only
//! adds the results. Per source it recreates the sticky events (stream-start, caps,
//! segment) recorded by trtmux, and ends a source's pad when trtmux announces that source
//! ended (`trtvision/source-eos`). When the source was removed (its trtmux pad released),
//! the pad is removed after its EOS, from the streaming thread, in order with the frames
//! before it: an application that adds and removes cameras does not accumulate pads.
//!
//! A frame a source lost (trtmux's `trtvision/source-gap` event) becomes a GAP event on
//! that source's pad, so that each source keeps its own timeline. After a flush every pad
//! gets its segment again before its next frame (FLUSH_STOP clears the sticky segment
//! downstream). A seek that several branches send upstream (every sink of the pipeline
//! sends the application's seek) goes upstream once: later copies with the same seqnum
//! get the first one's answer.

use crate::batch::{self, BatchMeta, FrameSlot, SourceStream};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock, Mutex};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "trtdemux",
        gst::DebugColorFlags::empty(),
        Some("trtvision batch demuxer"),
    )
});

const DEFAULT_ATTACH_ROI: bool = true;
#[cfg(feature = "v1_28")]
const DEFAULT_META: super::TrtDemuxMeta = super::TrtDemuxMeta::Both;

struct SrcStream {
    pad: gst::Pad,
    /// Source description whose events were last pushed on `pad`.
    announced: Option<Arc<SourceStream>>,
    /// A flush cleared the pad's segment: send it again before the next frame or gap.
    need_segment: bool,
    ended: bool,
}

#[derive(Default)]
struct State {
    streams: BTreeMap<u32, SrcStream>,
    combiner: gst_base::UniqueFlowCombiner,
    /// Seqnum and result of the last seek sent upstream.
    last_seek: Option<(gst::Seqnum, bool)>,
}

pub struct TrtDemux {
    sinkpad: gst::Pad,
    attach_roi: Mutex<bool>,
    #[cfg(feature = "v1_28")]
    meta: Mutex<super::TrtDemuxMeta>,
    state: Mutex<State>,
}

impl TrtDemux {
    fn src_pad_for(&self, state: &mut State, source: &Arc<SourceStream>) -> gst::Pad {
        let idx = source.pad_index;
        if let Some(s) = state.streams.get(&idx) {
            return s.pad.clone();
        }
        let templ = self.obj().pad_template("src_%u").expect("template exists");
        let pad = gst::Pad::builder_from_template(&templ)
            .name(format!("src_{idx}"))
            .query_function(|pad, parent, query| {
                TrtDemux::catch_panic_pad_function(parent, || false, |d| d.src_query(pad, query))
            })
            .event_function(|pad, parent, event| {
                TrtDemux::catch_panic_pad_function(parent, || false, |d| d.src_event(pad, event))
            })
            .build();
        if let Err(e) = pad.set_active(true) {
            gst::warning!(CAT, imp = self, "cannot activate src_{idx}: {e}");
        }
        state.combiner.add_pad(&pad);
        state.streams.insert(
            idx,
            SrcStream {
                pad: pad.clone(),
                announced: None,
                need_segment: false,
                ended: false,
            },
        );
        pad
    }

    fn src_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        match query.view_mut() {
            gst::QueryViewMut::Caps(q) => {
                let caps = pad.current_caps().unwrap_or_else(|| pad.pad_template_caps());
                let caps = match q.filter() {
                    Some(f) => f.intersect_with_mode(&caps, gst::CapsIntersectMode::First),
                    None => caps,
                };
                q.set_result(&caps);
                true
            }
            _ => gst::Pad::query_default(pad, Some(&*self.obj()), query),
        }
    }

    fn src_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        if let gst::EventView::Seek(_) = event.view() {
            let seqnum = event.seqnum();
            {
                let mut state = self.state.lock().unwrap();
                if let Some((last, res)) = state.last_seek {
                    if last == seqnum {
                        gst::debug!(CAT, obj = pad, "seek {seqnum:?} already sent upstream");
                        return res;
                    }
                }
                // Recorded before forwarding: a flushing seek comes back through this
                // element (FLUSH_START/STOP) while the first branch's copy is handled.
                state.last_seek = Some((seqnum, true));
            }
            let res = self.sinkpad.push_event(event);
            if let Some(last) = self.state.lock().unwrap().last_seek.as_mut() {
                if last.0 == seqnum {
                    last.1 = res;
                }
            }
            return res;
        }
        gst::Pad::event_default(pad, Some(&*self.obj()), event)
    }

    /// Sends the sticky events of `idx` again when a flush cleared them.
    fn take_need_segment(&self, idx: u32) -> bool {
        self.state
            .lock()
            .unwrap()
            .streams
            .get_mut(&idx)
            .is_some_and(|s| std::mem::take(&mut s.need_segment))
    }

    /// Pushes stream-start, caps and segment when the slot's source description changed
    /// (the segment also after a flush).
    fn announce(
        &self,
        pad: &gst::Pad,
        announced: &mut Option<Arc<SourceStream>>,
        source: &Arc<SourceStream>,
    ) {
        let prev = announced.as_ref();
        if self.take_need_segment(source.pad_index) {
            pad.push_event(gst::event::Segment::new(&source.segment));
            if prev.is_some_and(|p| Arc::ptr_eq(p, source)) {
                return;
            }
        } else if prev.is_some_and(|p| Arc::ptr_eq(p, source)) {
            return;
        }
        let stream_changed = prev.is_none_or(|p| p.stream_id != source.stream_id);
        if stream_changed {
            let id = source.stream_id.clone().unwrap_or_else(|| {
                pad.create_stream_id(&*self.obj(), Some(&format!("{}", source.pad_index)))
            });
            pad.push_event(gst::event::StreamStart::new(&id));
        }
        if stream_changed || prev.is_some_and(|p| p.caps != source.caps) {
            pad.push_event(gst::event::Caps::new(&source.caps));
        }
        if stream_changed || prev.is_some_and(|p| p.segment != source.segment) {
            pad.push_event(gst::event::Segment::new(&source.segment));
        }
        *announced = Some(source.clone());
    }

    fn push_slot(&self, slot: FrameSlot, attach_roi: bool) -> Result<gst::FlowSuccess, gst::FlowError> {
        let (pad, new_pad) = {
            let mut state = self.state.lock().unwrap();
            let known = state.streams.contains_key(&slot.pad_index());
            (self.src_pad_for(&mut state, &slot.source), !known)
        };
        if new_pad {
            // Sticky events go on the pad before it is exposed so that the app linking on
            // pad-added sees caps straight away.
            let mut announced = None;
            self.announce(&pad, &mut announced, &slot.source);
            if let Some(s) = self.state.lock().unwrap().streams.get_mut(&slot.pad_index()) {
                s.announced = announced;
            }
            if let Err(e) = self.obj().add_pad(&pad) {
                gst::warning!(CAT, imp = self, "cannot add {}: {e}", pad.name());
            }
        } else {
            let mut announced = self
                .state
                .lock()
                .unwrap()
                .streams
                .get(&slot.pad_index())
                .and_then(|s| s.announced.clone());
            self.announce(&pad, &mut announced, &slot.source);
            if let Some(s) = self.state.lock().unwrap().streams.get_mut(&slot.pad_index()) {
                s.announced = announced;
            }
        }

        let pad_index = slot.pad_index();
        let FrameSlot {
            mut buffer,
            results,
            info,
            ..
        } = slot;
        let analytics = results.analytics.as_deref();
        if let (true, Some(a)) = (attach_roi, analytics) {
            super::roi::attach_analytics_frame(buffer.make_mut(), pad_index, a);
        }
        #[cfg(not(feature = "v1_28"))]
        if attach_roi && !results.is_empty() {
            super::roi::attach_frame(buffer.make_mut(), &results, analytics, &info);
        }
        #[cfg(feature = "v1_28")]
        if attach_roi && (!results.is_empty() || !results.tracks.is_empty()) {
            let which = *self.meta.lock().unwrap();
            let b = buffer.make_mut();
            if which.roi() {
                super::roi::attach_frame(b, &results, analytics, &info);
            }
            if which.analytics() && !(results.detections.is_empty() && results.tracks.is_empty()) {
                if let Err(e) = super::analytics::attach(
                    b,
                    &results.detections,
                    &results.tracks,
                    info.width(),
                    info.height(),
                ) {
                    gst::warning!(
                        CAT,
                        imp = self,
                        "source {pad_index}: GstAnalytics metadata incomplete: {e}"
                    );
                }
            }
        }
        let res = pad.push(buffer);
        let mut state = self.state.lock().unwrap();
        state.combiner.update_pad_flow(&pad, res)
    }

    fn sink_chain(&self, mut buffer: gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        let attach_roi = *self.attach_roi.lock().unwrap();
        let batch = {
            let b = buffer.make_mut();
            match b.meta_mut::<BatchMeta>() {
                Some(mut m) => std::mem::take(m.batch_mut()),
                None => {
                    gst::element_imp_error!(
                        self,
                        gst::StreamError::Format,
                        ("trtdemux received a buffer without batch metadata; it must follow trtmux"),
                        ["buffer {:?} has no TrtVisionBatchMeta", buffer]
                    );
                    return Err(gst::FlowError::Error);
                }
            }
        };
        // Batch-level tensors (inputs, model outputs left on the device) are of no use past
        // this point: release them before the frames go downstream, not after.
        let crate::batch::Batch {
            slots,
            inputs,
            outputs,
            ..
        } = batch;
        drop((inputs, outputs));
        let mut res = Ok(gst::FlowSuccess::Ok);
        for slot in slots {
            res = self.push_slot(slot, attach_roi);
            if res.is_err() {
                break;
            }
        }
        res
    }

    /// A GAP event on the pad of source `idx` where trtmux received no frame. Before the
    /// source's first frame its pad has no caps and no segment yet: nothing to announce.
    fn gap_source(&self, idx: u32, timestamp: Option<gst::ClockTime>, duration: Option<gst::ClockTime>) {
        let (pad, source, need_segment) = {
            let mut state = self.state.lock().unwrap();
            match state.streams.get_mut(&idx) {
                Some(s) if !s.ended => (
                    s.pad.clone(),
                    s.announced.clone(),
                    std::mem::take(&mut s.need_segment),
                ),
                _ => {
                    gst::debug!(CAT, imp = self, "gap of source {idx} before its first frame");
                    return;
                }
            }
        };
        let Some(ts) = timestamp else {
            gst::debug!(CAT, imp = self, "gap of source {idx} without a timestamp");
            return;
        };
        if need_segment {
            if let Some(source) = source {
                pad.push_event(gst::event::Segment::new(&source.segment));
            }
        }
        gst::log!(CAT, obj = pad, "gap at {ts} for {}", duration.display());
        pad.push_event(gst::event::Gap::builder(ts).duration(duration).build());
    }

    fn end_source(&self, idx: u32) {
        let pad = {
            let mut state = self.state.lock().unwrap();
            match state.streams.get_mut(&idx) {
                Some(s) if !s.ended => {
                    s.ended = true;
                    Some(s.pad.clone())
                }
                _ => None,
            }
        };
        if let Some(pad) = pad {
            gst::debug!(CAT, imp = self, "source {idx} ended");
            pad.push_event(gst::event::Eos::new());
        }
    }

    /// Removes the (ended) pad of source `idx`, whose trtmux pad was released.
    fn remove_source(&self, idx: u32) {
        let stream = {
            let mut state = self.state.lock().unwrap();
            let stream = state.streams.remove(&idx);
            if let Some(s) = &stream {
                state.combiner.remove_pad(&s.pad);
            }
            stream
        };
        let Some(stream) = stream else { return };
        gst::debug!(
            CAT,
            imp = self,
            "source {idx} removed, removing {}",
            stream.pad.name()
        );
        let _ = stream.pad.set_active(false);
        if let Err(e) = self.obj().remove_pad(&stream.pad) {
            gst::warning!(CAT, imp = self, "cannot remove {}: {e}", stream.pad.name());
        }
    }

    fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        use gst::EventView;
        match event.view() {
            EventView::CustomDownstream(e) => {
                if let Some(s) = e.structure().filter(|s| s.name() == batch::SOURCE_EOS_EVENT) {
                    if let Ok(idx) = s.get::<u32>("source") {
                        self.end_source(idx);
                        if s.get::<bool>("removed").unwrap_or(false) {
                            self.remove_source(idx);
                        }
                    }
                    return true;
                }
                if let Some((idx, ts, dur)) = e.structure().and_then(batch::parse_source_gap) {
                    self.gap_source(idx, ts, dur);
                    return true;
                }
                self.forward_to_all(event)
            }
            EventView::Caps(_) => true,
            EventView::StreamStart(_) | EventView::Segment(_) => true,
            EventView::Eos(_) => {
                let pads: Vec<_> = self.state.lock().unwrap().streams.keys().copied().collect();
                for idx in pads {
                    self.end_source(idx);
                }
                true
            }
            EventView::FlushStop(_) => {
                let mut state = self.state.lock().unwrap();
                state.combiner.reset();
                for s in state.streams.values_mut() {
                    s.ended = false;
                    s.need_segment = true;
                }
                drop(state);
                self.forward_to_all(event)
            }
            _ if event.is_serialized() && event.is_sticky() => true,
            _ => {
                let _ = pad;
                self.forward_to_all(event)
            }
        }
    }

    fn forward_to_all(&self, event: gst::Event) -> bool {
        let pads: Vec<_> = self
            .state
            .lock()
            .unwrap()
            .streams
            .values()
            .map(|s| s.pad.clone())
            .collect();
        let mut ok = true;
        for p in pads {
            ok &= p.push_event(event.clone());
        }
        ok
    }
}

#[glib::object_subclass]
impl ObjectSubclass for TrtDemux {
    const NAME: &'static str = "GstTrtDemux";
    type Type = super::TrtDemux;
    type ParentType = gst::Element;

    fn with_class(klass: &Self::Class) -> Self {
        let templ = klass.pad_template("sink").expect("template exists");
        let sinkpad = gst::Pad::builder_from_template(&templ)
            .chain_function(|_pad, parent, buffer| {
                TrtDemux::catch_panic_pad_function(
                    parent,
                    || Err(gst::FlowError::Error),
                    |d| d.sink_chain(buffer),
                )
            })
            .event_function(|pad, parent, event| {
                TrtDemux::catch_panic_pad_function(parent, || false, |d| d.sink_event(pad, event))
            })
            .build();
        Self {
            sinkpad,
            attach_roi: Mutex::new(DEFAULT_ATTACH_ROI),
            #[cfg(feature = "v1_28")]
            meta: Mutex::new(DEFAULT_META),
            state: Mutex::new(State::default()),
        }
    }
}

impl ObjectImpl for TrtDemux {
    fn constructed(&self) {
        self.parent_constructed();
        self.obj().add_pad(&self.sinkpad).expect("adding sink pad");
    }

    fn properties() -> &'static [glib::ParamSpec] {
        static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecBoolean::builder("attach-roi-meta")
                    .nick("Attach ROI meta")
                    .blurb("Attach one GstVideoRegionOfInterestMeta per detection (with detection and mask parameters), raw model tensors as a TrtVisionTensorMeta, and trtanalytics' zones and lines (a trtvision-analytics ROI parameter per detection, a TrtVisionAnalyticsMeta summary per frame) to each output frame")
                    .default_value(DEFAULT_ATTACH_ROI)
                    .mutable_playing()
                    .build(),
                #[cfg(feature = "v1_28")]
                glib::ParamSpecEnum::builder_with_default("meta", DEFAULT_META)
                    .nick("Result metadata")
                    .blurb("Which result metadata to attach when attach-roi-meta is on: ROI metas, one GstAnalyticsRelationMeta per frame (object detection, tracking, classification and segmentation entries), or both")
                    .mutable_playing()
                    .build(),
            ]
        });
        PROPS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        match pspec.name() {
            "attach-roi-meta" => {
                *self.attach_roi.lock().unwrap() = value.get().expect("type checked upstream")
            }
            #[cfg(feature = "v1_28")]
            "meta" => *self.meta.lock().unwrap() = value.get().expect("type checked upstream"),
            _ => unreachable!("unknown property {}", pspec.name()),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        match pspec.name() {
            "attach-roi-meta" => self.attach_roi.lock().unwrap().to_value(),
            #[cfg(feature = "v1_28")]
            "meta" => self.meta.lock().unwrap().to_value(),
            _ => unreachable!("unknown property {}", pspec.name()),
        }
    }
}

impl GstObjectImpl for TrtDemux {}

impl ElementImpl for TrtDemux {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "TrtVision batch demuxer",
                "Demuxer/Video",
                "Splits analytics batches back into per-source frames carrying region-of-interest metadata",
                "gst-trtvision developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            vec![
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &batch::batch_caps_any_memory(),
                )
                .expect("valid sink template"),
                gst::PadTemplate::new(
                    "src_%u",
                    gst::PadDirection::Src,
                    gst::PadPresence::Sometimes,
                    &crate::caps::frame_caps_any_memory(),
                )
                .expect("valid src template"),
            ]
        });
        TEMPLATES.as_ref()
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        let res = self.parent_change_state(transition)?;
        if transition == gst::StateChange::PausedToReady {
            let mut state = self.state.lock().unwrap();
            let streams = std::mem::take(&mut state.streams);
            state.combiner.clear();
            drop(state);
            for s in streams.into_values() {
                let _ = s.pad.set_active(false);
                let _ = self.obj().remove_pad(&s.pad);
            }
        }
        Ok(res)
    }
}
