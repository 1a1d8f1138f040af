//! How per-frame results are written as GstAnalytics metadata (GStreamer >= 1.28 builds,
//! cargo feature `v1_28`; documented in docs/gstreamer-versions.md).
//!
//! One `GstAnalyticsRelationMeta` per frame holding, per detection, in detection order:
//! - an object-detection entry (`GstAnalyticsODMtd`): label as the object type quark, box as
//!   the ROI meta's rectangle (frame pixels, rounded outwards, clamped), confidence;
//! - a tracking entry (`GstAnalyticsTrackingMtd`) when the object has a track id: the id,
//!   first seen = PTS of the first frame of the track (`TrackInfo::first_seen`, written by
//!   trttracker), last seen = this frame's PTS;
//! - one classification entry (`GstAnalyticsClsMtd`) per secondary model whose best
//!   attribute class reached its threshold: the attribute label quark and score;
//! - a segmentation entry (`GstAnalyticsSegmentationMtd`, instance type) when the detection
//!   has a mask: a GRAY8 buffer (with `GstVideoMeta`) of the mask's size placed at the mask's
//!   rectangle in the frame, pixel value 0 = background, 255 = the object (region ids
//!   `[0, 255]`).
//!
//! Every tracking, classification and segmentation entry is related to its object-detection
//! entry with `GST_ANALYTICS_REL_TYPE_RELATE_TO` (object detection first), the direction
//! upstream's consumers (e.g. `objectdetectionoverlay`) look them up with
//! `gst_analytics_relation_meta_get_direct_related`.
//!
//! After the detections, one tracking entry, related to nothing, per track of the frame's
//! [`TrackInfo`] list that no detection carries: a confirmed track coasting on its
//! prediction (last seen = the last frame that matched it) or one that ended on this frame
//! (also marked lost with `gst_analytics_tracking_mtd_set_lost`), as upstream's
//! `ioutracker` writes them. Times are buffer PTS; an object id without track info (not
//! written by trttracker) gets this frame's PTS as first and last seen.

use crate::results::{Detection, FrameMask, TrackInfo};
use gst::glib;
use gst_analytics::prelude::*;
use gst_analytics::{
    ffi, AnalyticsClassificationMtd, AnalyticsODMtd, AnalyticsRelationMeta, AnalyticsTrackingMtd, RelTypes,
};

/// Marker type for upstream's segmentation entries (the Rust bindings have none yet).
pub struct AnalyticsSegmentationMtd;

// SAFETY: the type is the C library's segmentation mtd type.
unsafe impl gst_analytics::AnalyticsMtd for AnalyticsSegmentationMtd {
    fn mtd_type() -> ffi::GstAnalyticsMtdType {
        unsafe { ffi::gst_analytics_segmentation_mtd_get_mtd_type() }
    }
}

/// Adds one `GstAnalyticsRelationMeta` with `detections` and `tracks` (the frame's
/// results) to `buffer` (see the module docs), in place of the relation metas the frame
/// had (written on the batch by the elements before, see `crate::batch::upstream`). The
/// buffer's PTS is "now" (0 without one).
pub fn attach(
    buffer: &mut gst::BufferRef,
    detections: &[Detection],
    tracks: &[TrackInfo],
    frame_w: u32,
    frame_h: u32,
) -> Result<(), glib::BoolError> {
    while let Some(m) = buffer.meta_mut::<AnalyticsRelationMeta>() {
        m.remove()
            .map_err(|_| glib::bool_error!("cannot remove a relation meta"))?;
    }
    let now = buffer.pts().unwrap_or(gst::ClockTime::ZERO);
    let carried = |id: i64| detections.iter().any(|d| d.object_id == id);
    let entries: usize = detections
        .iter()
        .map(|d| 1 + usize::from(d.object_id >= 0) + usize::from(d.mask.is_some()) + d.secondary.len())
        .sum::<usize>()
        + tracks.iter().filter(|t| !carried(t.id)).count();
    let data_bytes: usize = entries * 64;
    let params = gst_analytics::AnalyticsRelationMetaInitParams::new(entries.max(1), data_bytes.max(256));
    let mut meta = AnalyticsRelationMeta::add_full(buffer, &params);
    for d in detections {
        let (x, y, w, h) = d.bbox.to_pixel_rect(frame_w, frame_h);
        let od_id = meta
            .add_od_mtd(
                glib::Quark::from_str(&*d.label),
                x as i32,
                y as i32,
                w as i32,
                h as i32,
                d.confidence,
            )?
            .id();
        if d.object_id >= 0 {
            let info = tracks.iter().find(|t| t.id == d.object_id);
            let first = info.and_then(|t| t.first_seen).unwrap_or(now);
            let trk_id = add_tracking(&mut meta, d.object_id, first, now, false)?;
            meta.set_relation(RelTypes::RELATE_TO, od_id, trk_id)?;
        }
        for r in &d.secondary {
            if let Some(a) = &r.attribute {
                let cls_id = meta
                    .add_one_cls_mtd(a.score, glib::Quark::from_str(&*a.label))?
                    .id();
                meta.set_relation(RelTypes::RELATE_TO, od_id, cls_id)?;
            }
        }
        if let Some(m) = &d.mask {
            let seg_id = add_instance_mask(&mut meta, m)?;
            meta.set_relation(RelTypes::RELATE_TO, od_id, seg_id)?;
        }
    }
    for t in tracks.iter().filter(|t| t.id >= 0 && !carried(t.id)) {
        let first = t.first_seen.unwrap_or(now);
        let last = t.last_seen.unwrap_or(first);
        add_tracking(&mut meta, t.id, first, last, t.lost)?;
    }
    Ok(())
}

/// Adds a tracking entry (`id`, first and last seen, lost); returns its id in the meta.
fn add_tracking(
    meta: &mut gst::MetaRefMut<'_, AnalyticsRelationMeta, gst::meta::Standalone>,
    id: i64,
    first: gst::ClockTime,
    last: gst::ClockTime,
    lost: bool,
) -> Result<u32, glib::BoolError> {
    let trk_id = meta.add_tracking_mtd(id as u64, first)?.id();
    let mut handle = ffi::GstAnalyticsTrackingMtd {
        id: trk_id,
        meta: meta.as_mut_ptr(),
    };
    // SAFETY: the handle names the tracking entry just added to this meta.
    let ok = unsafe {
        ffi::gst_analytics_tracking_mtd_update_last_seen(&mut handle, last.nseconds()) != glib::ffi::GFALSE
            && (!lost || ffi::gst_analytics_tracking_mtd_set_lost(&mut handle) != glib::ffi::GFALSE)
    };
    if !ok {
        return Err(glib::bool_error!("cannot update tracking entry {trk_id}"));
    }
    Ok(trk_id)
}

fn add_instance_mask(
    meta: &mut gst::MetaRefMut<'_, AnalyticsRelationMeta, gst::meta::Standalone>,
    m: &FrameMask,
) -> Result<u32, glib::BoolError> {
    if m.width == 0 || m.height == 0 || m.data.len() != (m.width * m.height) as usize {
        return Err(glib::bool_error!(
            "mask of {}x{} with {} bytes",
            m.width,
            m.height,
            m.data.len()
        ));
    }
    let mut mask = gst::Buffer::from_mut_slice(m.data.clone());
    gst_video::VideoMeta::add_full(
        mask.get_mut().expect("new buffer is writable"),
        gst_video::VideoFrameFlags::empty(),
        gst_video::VideoFormat::Gray8,
        m.width,
        m.height,
        &[0],
        &[m.width as i32],
    )?;
    let mut region_ids = [0u32, 255];
    let mut handle = std::mem::MaybeUninit::<ffi::GstAnalyticsSegmentationMtd>::uninit();
    // SAFETY: the mask buffer (transfer full) has a GRAY8 GstVideoMeta; region_ids outlives the
    // call (copied by it); the handle is written on success.
    let ok = unsafe {
        use glib::translate::IntoGlibPtr;
        ffi::gst_analytics_relation_meta_add_segmentation_mtd(
            meta.as_mut_ptr(),
            mask.into_glib_ptr(),
            ffi::GST_SEGMENTATION_TYPE_INSTANCE,
            region_ids.len(),
            region_ids.as_mut_ptr(),
            m.x as i32,
            m.y as i32,
            m.width,
            m.height,
            handle.as_mut_ptr(),
        )
    };
    if ok == glib::ffi::GFALSE {
        return Err(glib::bool_error!("cannot add a segmentation entry"));
    }
    Ok(unsafe { handle.assume_init() }.id)
}

/// One object-detection entry read back with what is related to it (for applications and
/// tests).
#[derive(Debug, Clone, PartialEq)]
pub struct AnalyticsObject {
    pub label: String,
    pub confidence: f32,
    /// x, y, w, h in frame pixels.
    pub rect: (i32, i32, i32, i32),
    /// Track id, first seen, last seen.
    pub track: Option<(u64, gst::ClockTime, gst::ClockTime)>,
    /// (label, score) of the related classification entries.
    pub classes: Vec<(String, f32)>,
    /// The related instance mask (255 = object) in frame pixels.
    pub mask: Option<FrameMask>,
}

/// Reads every object-detection entry of `buffer`'s relation meta, in the order they were
/// added, with their related tracking, classification and segmentation entries.
pub fn read(buffer: &gst::BufferRef) -> Vec<AnalyticsObject> {
    let Some(meta) = buffer.meta::<AnalyticsRelationMeta>() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for od in meta.iter::<AnalyticsODMtd>() {
        let Ok(loc) = od.location() else {
            continue;
        };
        let label = od.obj_type().map(|q| q.as_str().to_string()).unwrap_or_default();
        let track = meta
            .iter_direct_related::<AnalyticsTrackingMtd>(od.id(), RelTypes::RELATE_TO)
            .next()
            .map(|t| {
                let (id, first, last, _) = t.info();
                (id, first, last)
            });
        let classes = meta
            .iter_direct_related::<AnalyticsClassificationMtd>(od.id(), RelTypes::RELATE_TO)
            .filter(|c| !c.is_empty())
            .map(|c| (c.quark(0).as_str().to_string(), c.level(0)))
            .collect();
        let mask = meta
            .iter_direct_related::<AnalyticsSegmentationMtd>(od.id(), RelTypes::RELATE_TO)
            .next()
            .and_then(|s| read_mask(&meta, s.id()));
        out.push(AnalyticsObject {
            label,
            confidence: od.confidence_level(),
            rect: (loc.x, loc.y, loc.w, loc.h),
            track,
            classes,
            mask,
        });
    }
    out
}

/// One tracking entry read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnalyticsTrack {
    pub id: u64,
    pub first_seen: gst::ClockTime,
    pub last_seen: gst::ClockTime,
    pub lost: bool,
    /// An object-detection entry of the frame is related to it (the object was detected
    /// on this frame); `false` for a coasting or lost track.
    pub detected: bool,
}

/// Reads every tracking entry of `buffer`'s relation meta, in the order they were added.
pub fn read_tracks(buffer: &gst::BufferRef) -> Vec<AnalyticsTrack> {
    let Some(meta) = buffer.meta::<AnalyticsRelationMeta>() else {
        return Vec::new();
    };
    let detected: Vec<u32> = meta
        .iter::<AnalyticsODMtd>()
        .flat_map(|od| {
            meta.iter_direct_related::<AnalyticsTrackingMtd>(od.id(), RelTypes::RELATE_TO)
                .map(|t| t.id())
                .collect::<Vec<_>>()
        })
        .collect();
    meta.iter::<AnalyticsTrackingMtd>()
        .map(|t| {
            let (id, first_seen, last_seen, lost) = t.info();
            AnalyticsTrack {
                id,
                first_seen,
                last_seen,
                lost,
                detected: detected.contains(&t.id()),
            }
        })
        .collect()
}

/// The mask of segmentation entry `id` as a [`FrameMask`] (GRAY8 masks only).
fn read_mask(meta: &gst::MetaRef<'_, AnalyticsRelationMeta>, id: u32) -> Option<FrameMask> {
    let handle = ffi::GstAnalyticsSegmentationMtd {
        id,
        meta: unsafe { meta.as_mut_ptr() },
    };
    let (mut x, mut y, mut w, mut h) = (0i32, 0i32, 0u32, 0u32);
    // SAFETY: the handle names a segmentation entry of this meta; the returned buffer is a
    // new reference (transfer full).
    let buffer: Option<gst::Buffer> = unsafe {
        glib::translate::from_glib_full(ffi::gst_analytics_segmentation_mtd_get_mask(
            &handle, &mut x, &mut y, &mut w, &mut h,
        ))
    };
    let buffer = buffer?;
    let vmeta = buffer.meta::<gst_video::VideoMeta>()?;
    if vmeta.format() != gst_video::VideoFormat::Gray8 || vmeta.width() != w || vmeta.height() != h {
        return None;
    }
    let (offset, stride) = (vmeta.offset()[0], vmeta.stride()[0] as usize);
    let map = buffer.map_readable().ok()?;
    let mut data = Vec::with_capacity((w * h) as usize);
    for row in 0..h as usize {
        let start = offset + row * stride;
        data.extend_from_slice(map.get(start..start + w as usize)?);
    }
    Some(FrameMask {
        x: u32::try_from(x).ok()?,
        y: u32::try_from(y).ok()?,
        width: w,
        height: h,
        data,
        device: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::BoxF;
    use crate::results::{Attribute, ObjectResult};
    use std::sync::Arc;

    fn detection(label: &str, object_id: i64, mask: Option<FrameMask>, attr: Option<&str>) -> Detection {
        let mut d = Detection::new(
            Arc::from("m"),
            1,
            Arc::from(label),
            0.75,
            BoxF::new(10.4, 20.0, 50.2, 60.9),
        );
        d.object_id = object_id;
        d.mask = mask;
        if let Some(a) = attr {
            d.secondary.push(ObjectResult {
                model: Arc::from("colour"),
                keypoints: Vec::new(),
                attribute: Some(Attribute {
                    class_id: 2,
                    label: Arc::from(a),
                    score: 0.5,
                }),
            });
        }
        d
    }

    #[test]
    fn entries_read_back_with_their_relations() {
        gst::init().unwrap();
        let mask = FrameMask {
            x: 10,
            y: 20,
            width: 3,
            height: 2,
            data: vec![0, 255, 255, 255, 0, 0],
            device: None,
        };
        let dets = vec![
            detection("square", 7, Some(mask.clone()), Some("red")),
            detection("circle", -1, None, None),
        ];
        let s = gst::ClockTime::from_seconds;
        let tracks = [
            TrackInfo {
                id: 7,
                first_seen: Some(s(2)),
                last_seen: Some(s(3)),
                lost: false,
            },
            // Coasting: no detection carries id 4 on this frame.
            TrackInfo {
                id: 4,
                first_seen: Some(s(1)),
                last_seen: Some(s(2)),
                lost: false,
            },
            TrackInfo {
                id: 5,
                first_seen: Some(s(0)),
                last_seen: Some(s(1)),
                lost: true,
            },
        ];
        let mut b2 = gst::Buffer::new();
        b2.get_mut().unwrap().set_pts(s(3));
        attach(b2.get_mut().unwrap(), &dets, &tracks, 640, 480).unwrap();

        let objs = read(&b2);
        assert_eq!(objs.len(), 2);
        assert_eq!(objs[0].label, "square");
        assert_eq!(objs[0].rect, (10, 20, 41, 41));
        assert!((objs[0].confidence - 0.75).abs() < 1e-6);
        assert_eq!(objs[0].track, Some((7, s(2), s(3))));
        assert_eq!(objs[0].classes, vec![("red".to_string(), 0.5)]);
        assert_eq!(
            objs[0].mask.as_ref().map(|m| (&m.data, m.x, m.y)),
            Some((&mask.data, 10, 20))
        );
        assert_eq!(objs[1].label, "circle");
        assert_eq!(
            (objs[1].track, objs[1].classes.len(), objs[1].mask.is_none()),
            (None, 0, true)
        );
        assert!(read(&gst::Buffer::new()).is_empty());

        let track = |id, first, last, lost, detected| AnalyticsTrack {
            id,
            first_seen: s(first),
            last_seen: s(last),
            lost,
            detected,
        };
        assert_eq!(
            read_tracks(&b2),
            vec![
                track(7, 2, 3, false, true),
                track(4, 1, 2, false, false),
                track(5, 0, 1, true, false)
            ]
        );

        // Attaching again replaces the relation meta; an id without track info gets this
        // frame's PTS as first and last seen.
        attach(b2.get_mut().unwrap(), &dets, &[], 640, 480).unwrap();
        assert_eq!(b2.iter_meta::<AnalyticsRelationMeta>().count(), 1);
        assert_eq!(read_tracks(&b2), vec![track(7, 3, 3, false, true)]);
    }
}
