//! Behaviour of trtmux: batching policy, pads, events and flushing.
//!
//! Every aggregate call takes at most one frame from each source pad that has one queued,
//! round-robin from the pad after the last one served, until `batch-size` frames are
//! collected. Non-live, the base class calls aggregate only once every non-EOS pad has a
//! frame, so every batch is full unless sources ended. Live, a partial batch is pushed
//! when the earliest queued frame is `batched-push-timeout` older than the pipeline clock
//! allows (the aggregator's timeout); a stalled source then simply has no slot in that
//! batch. Frames are never dropped, duplicated or reordered within a source.
//!
//! A frame a source lost (a GAP event, which the base class queues as an empty buffer
//! flagged GAP) never takes a slot: trtmux sends a `trtvision/source-gap` event downstream
//! instead, before the batch, and takes that source's next queued frame if there is one.
//! Flushing drops every queued frame (also those of released pads) and the per-source
//! state that belongs to the old position.
//!
//! A source ends downstream with a `trtvision/source-eos` event after its last batched
//! frame: `removed` false when it reached EOS, true when its pad was released (also after an
//! EOS already announced), so that trtdemux removes that source's pad instead of keeping
//! an ended one per camera that ever came and went.
//!
//! Here: settings, pads, events, queries and flushing; the batch itself is made in
//! `imp/batching.rs`.

#[cfg(feature = "v1_28")]
use crate::batch::FrameSlot;
use crate::batch::{self, SourceStream};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;
use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock, Mutex};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "trtmux",
        gst::DebugColorFlags::empty(),
        Some("trtvision batching muxer"),
    )
});

/// -1: as many slots as linked sink pads.
const DEFAULT_BATCH_SIZE: i32 = -1;
const DEFAULT_PUSH_TIMEOUT_US: i64 = 40_000;

#[derive(Debug, Clone, Copy)]
struct Settings {
    batch_size: i32,
    push_timeout_us: i64,
    #[cfg(feature = "v1_28")]
    batch_meta: super::TrtMuxBatchMeta,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            batch_size: DEFAULT_BATCH_SIZE,
            push_timeout_us: DEFAULT_PUSH_TIMEOUT_US,
            #[cfg(feature = "v1_28")]
            batch_meta: Default::default(),
        }
    }
}

/// What trtmux knows about one sink pad's stream.
#[derive(Debug, Default)]
struct PadState {
    stream_id: Option<glib::GString>,
    caps: Option<gst::Caps>,
    info: Option<gst_video::VideoInfo>,
    segment: gst::FormattedSegment<gst::ClockTime>,
    /// Rebuilt when caps, segment or stream id change; shared by the slots.
    source: Option<Arc<SourceStream>>,
    frames: u64,
    eos_announced: bool,
    /// The sticky events of the stream in a GstAnalyticsBatchMeta, made with `source`.
    #[cfg(feature = "v1_28")]
    sticky: Vec<gst::Event>,
}

impl PadState {
    fn source(&mut self, pad_index: u32) -> Option<Arc<SourceStream>> {
        if self.source.is_none() {
            let source = Arc::new(SourceStream {
                pad_index,
                stream_id: self.stream_id.clone(),
                caps: self.caps.clone()?,
                segment: self.segment.clone(),
            });
            #[cfg(feature = "v1_28")]
            {
                self.sticky = batch::upstream::sticky_events(&source);
            }
            self.source = Some(source);
        }
        self.source.clone()
    }
}

#[derive(Debug, Default)]
struct State {
    pads: BTreeMap<u32, PadState>,
    /// Frames of released pads still to be batched, with their source.
    orphans: std::collections::VecDeque<(Arc<SourceStream>, gst_video::VideoInfo, u64, gst::Buffer)>,
    /// Released pads whose removal still has to be announced downstream.
    released: Vec<u32>,
    next_pad: u32,
    batches: u64,
    cuda: Option<bool>,
    /// Pad indices in the order of the `streams` of the negotiated analytics batch caps.
    #[cfg(feature = "v1_28")]
    caps_streams: Vec<u32>,
}

#[derive(Default)]
pub struct TrtMux {
    settings: Mutex<Settings>,
    state: Mutex<State>,
    pads: Mutex<Vec<(u32, gst_base::AggregatorPad)>>,
    /// Batches made and nanoseconds spent making them (aggregate() up to the push), for the
    /// `stats` property.
    made: std::sync::atomic::AtomicU64,
    made_ns: std::sync::atomic::AtomicU64,
}

fn pad_index(pad: &impl IsA<gst::Pad>) -> Option<u32> {
    pad.as_ref().name().strip_prefix("sink_")?.parse().ok()
}

fn is_cuda_caps(caps: &gst::Caps) -> bool {
    caps.features(0)
        .is_some_and(|f| f.contains(batch::CUDA_MEMORY_FEATURE))
}

impl TrtMux {
    /// A stream was added or removed or changed caps: analytics batch caps
    /// (`batch-meta=analytics`) list every stream's caps, so they are made again.
    fn streams_changed(&self) {
        #[cfg(feature = "v1_28")]
        if self.settings.lock().unwrap().batch_meta == super::TrtMuxBatchMeta::Analytics {
            self.obj().src_pad().mark_reconfigure();
        }
    }

    /// Sink pads by index, kept up to date on request/release so that the per-batch path
    /// neither walks the element's pad list nor parses pad names.
    fn sink_pads(&self) -> Vec<(u32, gst_base::AggregatorPad)> {
        self.pads.lock().unwrap().clone()
    }

    /// What a sink pad accepts, in order of preference: its template intersected with
    /// `filter` in the template's order, CUDA memory first, so that an upstream element
    /// offering both memories picks CUDA memory (GStreamer 1.22's `cudaupload` lists
    /// system memory first: in the filter's order it would pass system memory through).
    /// Once a source has negotiated system memory, system memory comes first, so that
    /// the other sources match it (all sources of a batch use the same memory).
    fn sink_caps(&self, template: &gst::Caps, filter: Option<&gst::CapsRef>) -> gst::Caps {
        let system_first = self.state.lock().unwrap().cuda == Some(false);
        let ordered = if system_first {
            let (mut cuda, mut system) = (gst::Caps::new_empty(), gst::Caps::new_empty());
            for (s, f) in template.iter_with_features() {
                let side = if f.contains(batch::CUDA_MEMORY_FEATURE) {
                    &mut cuda
                } else {
                    &mut system
                };
                side.make_mut()
                    .append_structure_full(s.to_owned(), Some(f.to_owned()));
            }
            system.merge(cuda);
            system
        } else {
            template.clone()
        };
        match filter {
            Some(f) => ordered.intersect_with_mode(f, gst::CapsIntersectMode::First),
            None => ordered,
        }
    }

    /// The end of source `pad_index`; `removed` when its pad was released.
    fn source_eos_event((pad_index, removed): (u32, bool)) -> gst::Event {
        gst::event::CustomDownstream::new(
            gst::Structure::builder(batch::SOURCE_EOS_EVENT)
                .field("source", pad_index)
                .field("removed", removed)
                .build(),
        )
    }
}

#[cfg(feature = "v1_28")]
impl TrtMux {
    /// With `batch-meta=analytics|both`: the streams of the batch's GstAnalyticsBatchMeta
    /// (every sink pad, in caps order: its sticky events, the gaps it announced, its frame,
    /// the end of its stream) and where each slot's frame sits in it. Frames of pads
    /// released since the caps were made have no stream (trtdemux still gets them).
    #[allow(clippy::type_complexity)]
    fn upstream_streams(
        &self,
        state: &State,
        slots: &[FrameSlot],
        gaps: &[gst::Event],
        ended: &[(u32, bool)],
    ) -> Option<(Vec<batch::upstream::StreamObjects>, Vec<Option<(usize, usize)>>)> {
        if self.settings.lock().unwrap().batch_meta == super::TrtMuxBatchMeta::Trtvision {
            return None;
        }
        let order: Vec<u32> = match self.settings.lock().unwrap().batch_meta {
            super::TrtMuxBatchMeta::Analytics => state.caps_streams.clone(),
            _ => state.pads.keys().copied().collect(),
        };
        let mut places = vec![None; slots.len()];
        let mut objects: Vec<Vec<gst::MiniObject>> = Vec::with_capacity(order.len());
        for (s, idx) in order.iter().enumerate() {
            let mut o: Vec<gst::MiniObject> = Vec::new();
            for g in gaps
                .iter()
                .filter_map(|g| g.structure().and_then(batch::parse_source_gap))
            {
                if let (src, Some(t), d) = g {
                    if src == *idx {
                        o.push(gst::event::Gap::builder(t).duration(d).build().upcast());
                    }
                }
            }
            for (i, slot) in slots.iter().enumerate() {
                if slot.pad_index() == *idx {
                    places[i] = Some((s, o.len()));
                    o.push(slot.buffer.clone().upcast());
                }
            }
            // Sources that ended (or whose pad was released: `(index, removed)`).
            if ended.iter().any(|(i, _)| i == idx) {
                o.push(gst::event::Eos::new().upcast());
            }
            objects.push(o);
        }
        for (i, p) in places.iter().enumerate() {
            if p.is_none() {
                gst::debug!(
                    CAT,
                    imp = self,
                    "frame of sink_{} has no stream in the analytics batch (pad released)",
                    slots[i].pad_index()
                );
            }
        }
        let streams = order
            .iter()
            .zip(objects)
            .map(|(idx, objects)| batch::upstream::StreamObjects {
                sticky: state.pads.get(idx).map_or_else(Vec::new, |p| p.sticky.clone()),
                objects,
            })
            .collect();
        Some((streams, places))
    }
}

mod batching;

#[glib::object_subclass]
impl ObjectSubclass for TrtMux {
    const NAME: &'static str = "GstTrtMux";
    type Type = super::TrtMux;
    type ParentType = gst_base::Aggregator;
    type Interfaces = (gst::ChildProxy,);
}

impl ObjectImpl for TrtMux {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecInt::builder("batch-size")
                    .nick("Batch size")
                    .blurb("Largest number of frames in one batch, at most one per source; -1 uses the number of linked sink pads (0 is invalid)")
                    .minimum(-1)
                    .maximum(1024)
                    .default_value(DEFAULT_BATCH_SIZE)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb("Batches made since start and the time trtmux itself spent making them (batches, total-ns, mean-ns): its own cost per batch, without the base class's waiting and the push downstream")
                    .read_only()
                    .build(),
                glib::ParamSpecInt64::builder("batched-push-timeout")
                    .nick("Batched push timeout")
                    .blurb("Live pipelines: microseconds to wait for the missing frames of a partial batch before pushing it anyway (-1 = wait for all sources)")
                    .minimum(-1)
                    .maximum(i64::MAX / 1000)
                    .default_value(DEFAULT_PUSH_TIMEOUT_US)
                    .mutable_ready()
                    .build(),
                #[cfg(feature = "v1_28")]
                glib::ParamSpecEnum::builder::<super::TrtMuxBatchMeta>("batch-meta")
                    .nick("Batch metadata")
                    .blurb("What a batch carries: the trtvision batch meta only; also upstream's GstAnalyticsBatchMeta with caps multistream/x-analytics-batch, so that analyticssplitter (or another consumer of analytics batches) splits it; or also the GstAnalyticsBatchMeta with trtvision batch caps, for trtdemux")
                    .mutable_ready()
                    .build(),
            ]
        });
        PROPS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap();
        match pspec.name() {
            "batch-size" => s.batch_size = value.get().expect("type checked upstream"),
            "batched-push-timeout" => {
                s.push_timeout_us = value.get().expect("type checked upstream");
                let latency = if s.push_timeout_us < 0 {
                    // The aggregator's latency bounds the wait; a very long one means
                    // "wait for every source".
                    gst::ClockTime::from_seconds(3600)
                } else {
                    gst::ClockTime::from_useconds(s.push_timeout_us as u64)
                };
                drop(s);
                self.obj().set_property("latency", latency);
            }
            #[cfg(feature = "v1_28")]
            "batch-meta" => {
                s.batch_meta = value.get().expect("type checked upstream");
                drop(s);
                self.obj().src_pad().mark_reconfigure();
            }
            _ => unreachable!("unknown property {}", pspec.name()),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap();
        match pspec.name() {
            "batch-size" => s.batch_size.to_value(),
            "batched-push-timeout" => s.push_timeout_us.to_value(),
            #[cfg(feature = "v1_28")]
            "batch-meta" => s.batch_meta.to_value(),
            "stats" => {
                use std::sync::atomic::Ordering::Relaxed;
                let (n, ns) = (self.made.load(Relaxed), self.made_ns.load(Relaxed));
                gst::Structure::builder("trtmux-stats")
                    .field("batches", n)
                    .field("total-ns", ns)
                    .field("mean-ns", ns.checked_div(n).unwrap_or(0))
                    .build()
                    .to_value()
            }
            _ => unreachable!("unknown property {}", pspec.name()),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        self.obj().set_property(
            "latency",
            gst::ClockTime::from_useconds(DEFAULT_PUSH_TIMEOUT_US as u64),
        );
    }
}

impl GstObjectImpl for TrtMux {}

impl ElementImpl for TrtMux {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "TrtVision batching muxer",
                "Muxer/Video",
                "Batches frames of several video sources by reference into one analytics batch",
                "gst-trtvision developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let sink = gst::PadTemplate::with_gtype(
                "sink_%u",
                gst::PadDirection::Sink,
                gst::PadPresence::Request,
                &crate::caps::frame_caps_any_memory(),
                gst_base::AggregatorPad::static_type(),
            )
            .expect("valid sink template");
            let src = gst::PadTemplate::with_gtype(
                "src",
                gst::PadDirection::Src,
                gst::PadPresence::Always,
                &batch::batch_caps_any_memory(),
                gst_base::AggregatorPad::static_type(),
            )
            .expect("valid src template");
            vec![sink, src]
        });
        TEMPLATES.as_ref()
    }

    fn request_new_pad(
        &self,
        templ: &gst::PadTemplate,
        name: Option<&str>,
        caps: Option<&gst::Caps>,
    ) -> Option<gst::Pad> {
        let pad = self.parent_request_new_pad(templ, name, caps)?;
        if let (Some(idx), Ok(apad)) = (pad_index(&pad), pad.clone().downcast::<gst_base::AggregatorPad>()) {
            let mut pads = self.pads.lock().unwrap();
            pads.push((idx, apad));
            pads.sort_by_key(|(i, _)| *i);
        }
        if let Some(idx) = pad_index(&pad) {
            let mut state = self.state.lock().unwrap();
            state.pads.insert(idx, PadState::default());
            state.next_pad = state.next_pad.max(idx + 1);
        }
        self.obj().child_added(&pad, &pad.name());
        self.streams_changed();
        Some(pad)
    }

    fn release_pad(&self, pad: &gst::Pad) {
        self.pads
            .lock()
            .unwrap()
            .retain(|(_, p)| p.upcast_ref::<gst::Pad>() != pad);
        if let (Some(idx), Ok(apad)) = (pad_index(pad), pad.clone().downcast::<gst_base::AggregatorPad>()) {
            let mut state = self.state.lock().unwrap();
            // Frames already queued on the pad still belong to the stream: batch them
            // with the next batches instead of letting the base class drop them.
            let mut ps = state.pads.remove(&idx).unwrap_or_default();
            let mut kept = 0;
            if let (Some(info), Some(source)) = (ps.info.clone(), ps.source(idx)) {
                while let Some(buf) = apad.pop_buffer() {
                    if batch::is_gap_buffer(&buf) {
                        continue;
                    }
                    state
                        .orphans
                        .push_back((source.clone(), info.clone(), ps.frames, buf));
                    ps.frames += 1;
                    kept += 1;
                }
            }
            // Announced also when the source's EOS was: downstream then removes its pad.
            state.released.push(idx);
            gst::info!(
                CAT,
                imp = self,
                "released sink_{idx}, {kept} queued frames kept for the next batches"
            );
        }
        self.obj().child_removed(pad, &pad.name());
        self.parent_release_pad(pad);
        self.streams_changed();
    }
}

impl AggregatorImpl for TrtMux {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        if self.settings.lock().unwrap().batch_size == 0 {
            return Err(gst::error_msg!(
                gst::CoreError::Failed,
                ("trtmux batch-size is 0: set it to the number of frames per batch (at least 1), or -1 for one slot per linked source")
            ));
        }
        let mut state = self.state.lock().unwrap();
        for ps in state.pads.values_mut() {
            *ps = PadState::default();
        }
        state.orphans.clear();
        state.released.clear();
        self.made.store(0, std::sync::atomic::Ordering::Relaxed);
        self.made_ns.store(0, std::sync::atomic::Ordering::Relaxed);
        state.batches = 0;
        state.cuda = None;
        Ok(())
    }

    fn flush(&self) -> Result<gst::FlowSuccess, gst::FlowError> {
        // The base class already dropped what the sink pads held; frames of released pads
        // and the per-source descriptions belong to the old position as well.
        let mut state = self.state.lock().unwrap();
        let dropped = state.orphans.len();
        state.orphans.clear();
        // Released pads are still announced (their queued frames are gone): downstream
        // removes their pads.
        for ps in state.pads.values_mut() {
            ps.source = None;
            ps.eos_announced = false;
        }
        drop(state);
        gst::debug!(
            CAT,
            imp = self,
            "flushed, {dropped} frames of released pads dropped"
        );
        self.parent_flush()
    }

    fn sink_event(&self, pad: &gst_base::AggregatorPad, event: gst::Event) -> bool {
        use gst::EventView;
        if let Some(idx) = pad_index(pad) {
            let mut state = self.state.lock().unwrap();
            let ps = state.pads.entry(idx).or_default();
            match event.view() {
                EventView::StreamStart(e) => {
                    ps.stream_id = Some(e.stream_id().into());
                    ps.source = None;
                    ps.eos_announced = false;
                }
                EventView::Caps(e) => {
                    let caps = e.caps_owned();
                    match gst_video::VideoInfo::from_caps(&caps) {
                        Ok(info) => {
                            gst::debug!(CAT, obj = pad, "caps {caps}");
                            let cuda = is_cuda_caps(&caps);
                            ps.info = Some(info);
                            ps.caps = Some(caps);
                            ps.source = None;
                            self.streams_changed();
                            match state.cuda {
                                Some(c) if c != cuda => {
                                    drop(state);
                                    gst::element_imp_error!(
                                        self,
                                        gst::CoreError::Negotiation,
                                        ("All sources of trtmux must use the same memory (all CUDA memory or all system memory)"),
                                        ["sink_{} has caps {} which differ in memory type from the other sources", idx, e.caps()]
                                    );
                                    return false;
                                }
                                _ => state.cuda = Some(cuda),
                            }
                        }
                        Err(_) => {
                            drop(state);
                            gst::element_imp_error!(
                                self,
                                gst::CoreError::Negotiation,
                                ("Source {} sent caps that are not raw video", idx),
                                ["caps: {}", e.caps()]
                            );
                            return false;
                        }
                    }
                }
                EventView::Segment(e) => {
                    if let Ok(seg) = e.segment().clone().downcast::<gst::ClockTime>() {
                        ps.segment = seg;
                        ps.source = None;
                    } else {
                        drop(state);
                        gst::element_imp_error!(
                            self,
                            gst::StreamError::Format,
                            ("Source {} sent a segment not in time format", idx)
                        );
                        return false;
                    }
                }
                EventView::FlushStop(_) => {
                    ps.eos_announced = false;
                }
                _ => {}
            }
        }
        self.parent_sink_event(pad, event)
    }

    fn sink_query(&self, pad: &gst_base::AggregatorPad, query: &mut gst::QueryRef) -> bool {
        if let gst::QueryViewMut::Caps(q) = query.view_mut() {
            let caps = self.sink_caps(&pad.pad_template_caps(), q.filter());
            gst::log!(CAT, obj = pad, "caps query answered with {caps}");
            q.set_result(&caps);
            return true;
        }
        self.parent_sink_query(pad, query)
    }

    fn update_src_caps(&self, _caps: &gst::Caps) -> Result<gst::Caps, gst::FlowError> {
        #[cfg(feature = "v1_28")]
        if self.settings.lock().unwrap().batch_meta == super::TrtMuxBatchMeta::Analytics {
            let mut state = self.state.lock().unwrap();
            state.caps_streams = state.pads.keys().copied().collect();
            let streams: Vec<gst::Caps> = state
                .pads
                .values()
                .map(|p| {
                    p.caps
                        .clone()
                        .unwrap_or_else(|| gst::Caps::new_empty_simple("application/unknown"))
                })
                .collect();
            return Ok(batch::upstream::upstream_batch_caps_of(streams));
        }
        let state = self.state.lock().unwrap();
        let cuda = state.cuda.unwrap_or(false);
        // The fastest source's rate: what a mosaic of the batches plays at.
        let framerate = state
            .pads
            .values()
            .filter_map(|p| p.info.as_ref().map(|i| i.fps()))
            .filter(|f| f.numer() > 0)
            .max_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        drop(state);
        let mut caps = batch::batch_caps();
        if let Some(f) = framerate {
            caps.get_mut().expect("new caps are writable").set("framerate", f);
        }
        if cuda {
            caps.get_mut()
                .expect("new caps are writable")
                .set_features_simple(Some(gst::CapsFeatures::new([batch::CUDA_MEMORY_FEATURE])));
        }
        Ok(caps)
    }

    fn next_time(&self) -> Option<gst::ClockTime> {
        // The earliest running time queued on any pad: the live timeout fires
        // `batched-push-timeout` after it.
        self.sink_pads()
            .iter()
            .filter_map(|(_, pad)| {
                let buf = pad.peek_buffer()?;
                let seg = pad.segment().downcast::<gst::ClockTime>().ok()?;
                seg.to_running_time(buf.pts()?)
            })
            .min()
    }

    fn aggregate(&self, timeout: bool) -> Result<gst::FlowSuccess, gst::FlowError> {
        self.aggregate_batch(timeout)
    }
}

impl ChildProxyImpl for TrtMux {
    fn child_by_index(&self, index: u32) -> Option<glib::Object> {
        self.obj()
            .sink_pads()
            .get(index as usize)
            .map(|p| p.clone().upcast())
    }

    fn child_by_name(&self, name: &str) -> Option<glib::Object> {
        self.obj().static_pad(name).map(|p| p.upcast())
    }

    fn children_count(&self) -> u32 {
        self.obj().num_sink_pads() as u32
    }
}
