//! Upstream's analytics batches (GStreamer >= 1.28, cargo feature `v1_28`; documented in
//! docs/gstreamer-versions.md).
//!
//! gst-plugins-rs' `analyticscombiner` pushes one payload-less buffer per batch carrying a
//! `GstAnalyticsBatchMeta`: per stream (in the order of the `streams` array of its caps
//! `multistream/x-analytics-batch(meta:GstAnalyticsBatchMeta)`) the sticky events that apply
//! (stream-start, caps, segment) and the serialized objects of the batch: buffers, buffer
//! lists and serialized events. `analyticssplitter` pushes those objects on one pad per
//! stream. Metadata meant for a frame is attached to that frame's buffer inside the meta.
//!
//! Mapping to our [`Batch`]:
//! - [`from_analytics_batch`]: every buffer of a raw-video stream becomes one slot (in stream
//!   order, then object order), by reference: the slot holds the same `GstBuffer`. The
//!   slot's source is the stream (pad index = position in the meta, caps, segment and
//!   stream id from its sticky events). Events and buffer lists are left where they are.
//!   [`Batch::upstream_objects`] records where each slot's buffer sits in the meta.
//! - [`add_analytics_batch_meta`]: how trtmux (`batch-meta=analytics|both`) writes the meta.
//! - [`Lent`]: while an element works on a batch, the meta's references to the slot frames
//!   are lent to the slots (the frames stay writable: drawing into them copies nothing);
//!   when the element is done the references are put back, and each frame's
//!   `GstAnalyticsRelationMeta` is rewritten from the slot's results, so elements further
//!   down (ours or upstream's, up to `analyticssplitter`) read the results on the frames.

use super::{Batch, FrameSlot, SourceStream};
use gst::glib;
use gst::glib::translate::*;
use gst::prelude::*;
use gst_analytics::AnalyticsBatchMeta;
use std::sync::Arc;

/// Media type of upstream's analytics batches.
pub const UPSTREAM_BATCH_MEDIA_TYPE: &str = "multistream/x-analytics-batch";

/// Caps feature of upstream's analytics batches.
pub fn upstream_batch_feature() -> &'static str {
    gst_analytics::CAPS_FEATURE_META_ANALYTICS_BATCH_META.as_str()
}

/// Caps of upstream's analytics batches (any streams).
pub fn upstream_batch_caps() -> gst::Caps {
    gst::Caps::builder(UPSTREAM_BATCH_MEDIA_TYPE)
        .features([upstream_batch_feature()])
        .build()
}

/// Whether `caps` are upstream's analytics batch caps.
pub fn is_upstream_batch_caps(caps: &gst::CapsRef) -> bool {
    caps.structure(0)
        .is_some_and(|s| s.name() == UPSTREAM_BATCH_MEDIA_TYPE)
}

/// The caps of an analytics batch of `streams` (the original caps of each stream, in meta
/// order).
pub fn upstream_batch_caps_of(streams: impl IntoIterator<Item = gst::Caps>) -> gst::Caps {
    let array: gst::Array = streams.into_iter().map(|c| c.to_send_value()).collect();
    gst::Caps::builder(UPSTREAM_BATCH_MEDIA_TYPE)
        .features([upstream_batch_feature()])
        .field("streams", array)
        .build()
}

/// Our batch view of the analytics batch on `buffer`; `None` when it has no
/// `GstAnalyticsBatchMeta`. Streams that are not raw video have no slots; a buffer of a
/// raw-video stream that cannot be a frame (a gap) is left to the meta.
pub fn from_analytics_batch(buffer: &gst::BufferRef) -> Option<Result<Batch, String>> {
    let meta = buffer.meta::<AnalyticsBatchMeta>()?;
    Some(batch_of(buffer, &meta))
}

fn batch_of(buffer: &gst::BufferRef, meta: &AnalyticsBatchMeta) -> Result<Batch, String> {
    let mut slots = Vec::new();
    let mut upstream_objects = Vec::new();
    for (s, stream) in meta.streams().iter().enumerate() {
        let has_frames = stream.objects().iter().any(|o| {
            o.downcast_ref::<gst::Buffer>()
                .is_some_and(|b| !super::is_gap_buffer(b))
        });
        if !has_frames {
            continue;
        }
        // The sticky events apply before the first object; caps and segment events among
        // the objects apply to the frames after them.
        let mut caps = stream.caps();
        let mut segment = stream.segment();
        let mut current: Option<(Arc<SourceStream>, gst_video::VideoInfo)> = None;
        for (k, object) in stream.objects().iter().enumerate() {
            if let Some(event) = object.downcast_ref::<gst::Event>() {
                match event.view() {
                    gst::EventView::Caps(c) => {
                        caps = Some(c.caps_owned());
                        current = None;
                    }
                    gst::EventView::Segment(e) => {
                        segment = Some(e.segment().clone());
                        current = None;
                    }
                    _ => {}
                }
                continue;
            }
            let Some(b) = object.downcast_ref::<gst::Buffer>() else {
                continue;
            };
            if super::is_gap_buffer(b) {
                continue;
            }
            if current.is_none() {
                let c = caps
                    .clone()
                    .ok_or_else(|| format!("stream {s} of the analytics batch has frames but no caps"))?;
                // Not video (audio, metadata streams): nothing for us to look at.
                let Ok(info) = gst_video::VideoInfo::from_caps(&c) else {
                    break;
                };
                let seg = match &segment {
                    Some(seg) => seg.clone().downcast::<gst::ClockTime>().map_err(|_| {
                        format!("stream {s} of the analytics batch has a segment not in time format")
                    })?,
                    None => gst::FormattedSegment::<gst::ClockTime>::new(),
                };
                let source = Arc::new(SourceStream {
                    pad_index: s as u32,
                    stream_id: stream.stream_id().map(|id| id.into()),
                    caps: c,
                    segment: seg,
                });
                current = Some((source, info));
            }
            let (source, info) = current.as_ref().expect("set above");
            let owned = b.clone();
            slots.push(FrameSlot {
                source: source.clone(),
                // Raw video sources number their buffers in the offset field.
                frame_number: if owned.offset() != gst::ffi::GST_BUFFER_OFFSET_NONE {
                    owned.offset()
                } else {
                    0
                },
                pts: owned.pts(),
                dts: owned.dts(),
                duration: owned.duration(),
                info: info.clone(),
                buffer: owned,
                results: Default::default(),
            });
            upstream_objects.push(Some((s, k)));
        }
    }
    // The combiner's batches start at multiples of its batch duration.
    let batch_number = match (buffer.pts(), buffer.duration()) {
        (Some(p), Some(d)) if d > gst::ClockTime::ZERO => p.nseconds() / d.nseconds(),
        _ => 0,
    };
    let batch_size = slots.len();
    Ok(Batch {
        slots,
        batch_number,
        batch_size,
        upstream_objects,
        ..Default::default()
    })
}

/// What one stream of an analytics batch holds: the sticky events that apply to it and the
/// serialized objects (frames, events) of this batch.
pub struct StreamObjects {
    pub sticky: Vec<gst::Event>,
    pub objects: Vec<gst::MiniObject>,
}

/// Attaches a `GstAnalyticsBatchMeta` of `streams` (in caps order) to `buffer`.
pub fn add_analytics_batch_meta(buffer: &mut gst::BufferRef, streams: Vec<StreamObjects>) {
    let mut meta = AnalyticsBatchMeta::add(buffer);
    // SAFETY: the meta is new (no streams); the arrays are allocated with GLib's allocator
    // and filled with owned references, which the meta's free function releases with them
    // (as analyticscombiner does).
    unsafe {
        let meta = &mut *meta.as_mut_ptr();
        let n = streams.len();
        meta.streams = glib::ffi::g_malloc0_n(
            n.max(1),
            std::mem::size_of::<gst_analytics::ffi::GstAnalyticsBatchStream>(),
        ) as *mut gst_analytics::ffi::GstAnalyticsBatchStream;
        meta.n_streams = n;
        for (idx, s) in streams.into_iter().enumerate() {
            let stream = &mut *meta.streams.add(idx);
            stream.index = idx as u32;
            stream.n_sticky_events = s.sticky.len();
            stream.sticky_events = glib::ffi::g_malloc0_n(
                s.sticky.len().max(1),
                std::mem::size_of::<*mut gst::ffi::GstEvent>(),
            ) as *mut *mut gst::ffi::GstEvent;
            for (i, e) in s.sticky.into_iter().enumerate() {
                *stream.sticky_events.add(i) = e.into_glib_ptr();
            }
            stream.n_objects = s.objects.len();
            stream.objects = glib::ffi::g_malloc0_n(
                s.objects.len().max(1),
                std::mem::size_of::<*mut gst::ffi::GstMiniObject>(),
            ) as *mut *mut gst::ffi::GstMiniObject;
            for (i, o) in s.objects.into_iter().enumerate() {
                *stream.objects.add(i) = o.into_glib_ptr();
            }
        }
    }
}

/// The sticky events of a stream as trtmux describes it in an analytics batch.
pub fn sticky_events(source: &SourceStream) -> Vec<gst::Event> {
    let id = source
        .stream_id
        .as_ref()
        .map(|s| s.to_string())
        .unwrap_or_else(|| format!("trtmux/sink_{}", source.pad_index));
    vec![
        gst::event::StreamStart::new(&id),
        gst::event::Caps::new(&source.caps),
        gst::event::Segment::new(&source.segment),
    ]
}

/// The meta's references to the slot frames, lent to the slots while an element works on
/// the batch (see the module docs). Must be given back with [`Lent::give_back`].
#[derive(Debug, Default)]
pub struct Lent {
    /// Slot index and where its frame sits in the meta (stream, object).
    places: Vec<(usize, usize, usize)>,
}

fn object_ptr(
    meta: &mut AnalyticsBatchMeta,
    stream: usize,
    object: usize,
) -> Option<*mut *mut gst::ffi::GstMiniObject> {
    // SAFETY: indices are checked against the meta's own array lengths.
    unsafe {
        let m = &mut *(meta as *mut AnalyticsBatchMeta as *mut gst_analytics::ffi::GstAnalyticsBatchMeta);
        if m.streams.is_null() || stream >= m.n_streams {
            return None;
        }
        let s = &mut *m.streams.add(stream);
        if s.objects.is_null() || object >= s.n_objects {
            return None;
        }
        Some(s.objects.add(object))
    }
}

impl Lent {
    /// Takes the meta's references to the frames of `batch`'s slots that are the same
    /// buffers as the slots hold (the slots keep them alive meanwhile).
    pub fn take(meta: &mut AnalyticsBatchMeta, batch: &Batch) -> Lent {
        let mut places = Vec::new();
        for (i, (slot, place)) in batch.slots.iter().zip(&batch.upstream_objects).enumerate() {
            let Some((s, k)) = *place else { continue };
            let Some(p) = object_ptr(meta, s, k) else { continue };
            // SAFETY: `p` points into the meta's object array; the reference it holds is
            // released only when it is the slot's buffer, which the slot keeps alive.
            unsafe {
                if *p as *const gst::ffi::GstBuffer == slot.buffer.as_ptr() {
                    gst::ffi::gst_mini_object_unref(*p);
                    places.push((i, s, k));
                }
            }
        }
        Lent { places }
    }

    /// Puts a reference to each slot's (possibly replaced) frame back into the meta, after
    /// rewriting the frame's `GstAnalyticsRelationMeta` from the slot's results. Returns
    /// the first error writing the relation metas (the frames are put back regardless).
    pub fn give_back(self, meta: &mut AnalyticsBatchMeta, batch: &mut Batch) -> Result<(), glib::BoolError> {
        let mut first_err = Ok(());
        for (i, s, k) in self.places {
            let Some(p) = object_ptr(meta, s, k) else { continue };
            let object: gst::MiniObject = match batch.slots.get_mut(i) {
                Some(slot) => {
                    if let Err(e) = publish(slot) {
                        first_err = first_err.and(Err(e));
                    }
                    slot.buffer.clone().upcast()
                }
                // The slot is gone: the stream lost this frame.
                None => gst::event::Gap::builder(gst::ClockTime::ZERO).build().upcast(),
            };
            // SAFETY: the place's reference was released by `take`; this stores a new one.
            unsafe {
                *p = object.into_glib_ptr();
            }
        }
        first_err
    }
}

/// Rewrites the `GstAnalyticsRelationMeta` of the slot's frame from its results (the
/// entries of `crate::trtdemux::analytics::attach`).
fn publish(slot: &mut FrameSlot) -> Result<(), glib::BoolError> {
    let (w, h) = (slot.info.width(), slot.info.height());
    let has_meta = slot
        .buffer
        .meta::<gst_analytics::AnalyticsRelationMeta>()
        .is_some();
    let nothing = slot.results.detections.is_empty() && slot.results.tracks.is_empty();
    if nothing && !has_meta {
        return Ok(());
    }
    let b = slot.buffer.make_mut();
    while let Some(m) = b.meta_mut::<gst_analytics::AnalyticsRelationMeta>() {
        m.remove()
            .map_err(|_| glib::bool_error!("cannot remove a relation meta"))?;
    }
    if nothing {
        return Ok(());
    }
    crate::trtdemux::analytics::attach(b, &slot.results.detections, &slot.results.tracks, w, h)
}
