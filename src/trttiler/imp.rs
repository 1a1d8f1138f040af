//! Source `i` (trtmux sink pad number) always lands in tile `i % (rows * columns)`, in
//! row-major order, scaled to fit its tile with its aspect ratio kept. A source with no
//! frame in a batch keeps showing its last frame. The mosaic is composed in RGBA and
//! converted once into the negotiated output format.

use crate::batch::{self, BatchMeta};
use crate::geometry::LetterboxTransform;
use crate::preprocess::{content_span, source_coord};
use crate::video::{BilinearTap, FrameReader};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use std::sync::{LazyLock, Mutex};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "trttiler",
        gst::DebugColorFlags::empty(),
        Some("trtvision mosaic"),
    )
});

#[derive(Debug, Clone, Copy)]
struct Settings {
    rows: u32,
    columns: u32,
    width: u32,
    height: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            rows: 0,
            columns: 0,
            width: 1280,
            height: 720,
        }
    }
}

/// Rows and columns for `n` sources when not set: as square as possible.
pub fn grid_for(n: u32, rows: u32, columns: u32) -> (u32, u32) {
    let n = n.max(1);
    match (rows, columns) {
        (0, 0) => {
            let c = (n as f64).sqrt().ceil() as u32;
            (n.div_ceil(c), c)
        }
        (0, c) => (n.div_ceil(c), c),
        (r, 0) => (r, n.div_ceil(r)),
        (r, c) => (r, c),
    }
}

#[derive(Default)]
struct State {
    out_info: Option<gst_video::VideoInfo>,
    mosaic: Vec<u8>,
    xs: Vec<BilinearTap>,
    row: Vec<[f32; 3]>,
}

#[derive(Default)]
pub struct TrtTiler {
    settings: Mutex<Settings>,
    state: Mutex<State>,
}

/// Draws `frame` letterboxed into the tile `(tx, ty, tw, th)` of an RGBA mosaic of width `mw`.
#[allow(clippy::too_many_arguments)]
fn draw_tile(
    mosaic: &mut [u8],
    mw: u32,
    (tx, ty, tw, th): (u32, u32, u32, u32),
    frame: &FrameReader,
    xs: &mut Vec<BilinearTap>,
    row: &mut Vec<[f32; 3]>,
) {
    let t = LetterboxTransform::letterbox(frame.width(), frame.height(), tw, th);
    let (x0, x1) = content_span(t.pad_x, t.scale_x, frame.width(), tw);
    let (y0, y1) = content_span(t.pad_y, t.scale_y, frame.height(), th);
    xs.clear();
    xs.extend((x0..x1).map(|x| BilinearTap::new(source_coord(x, t.pad_x, t.scale_x), frame.width())));
    row.resize(xs.len(), [0.0; 3]);
    for y in 0..th {
        let line = ((ty + y) * mw + tx) as usize * 4;
        let out = &mut mosaic[line..line + tw as usize * 4];
        out.fill(0);
        for px in out.chunks_exact_mut(4) {
            px[3] = 255;
        }
        if y < y0 || y >= y1 || x0 >= x1 {
            continue;
        }
        let ty_tap = BilinearTap::new(source_coord(y, t.pad_y, t.scale_y), frame.height());
        frame.sample_row_bilinear(ty_tap, xs, row);
        for (i, rgb) in row.iter().enumerate() {
            let o = (x0 as usize + i) * 4;
            for c in 0..3 {
                out[o + c] = rgb[c].round().clamp(0.0, 255.0) as u8;
            }
        }
    }
}

#[glib::object_subclass]
impl ObjectSubclass for TrtTiler {
    const NAME: &'static str = "GstTrtTiler";
    type Type = super::TrtTiler;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for TrtTiler {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let d = Settings::default();
            vec![
                glib::ParamSpecUInt::builder("rows")
                    .nick("Rows")
                    .blurb("Tile rows of the mosaic (0 = chosen from the batch size)")
                    .maximum(64)
                    .default_value(d.rows)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("columns")
                    .nick("Columns")
                    .blurb("Tile columns of the mosaic (0 = chosen from the batch size)")
                    .maximum(64)
                    .default_value(d.columns)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("width")
                    .nick("Width")
                    .blurb("Width of the mosaic in pixels")
                    .minimum(16)
                    .maximum(16384)
                    .default_value(d.width)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("height")
                    .nick("Height")
                    .blurb("Height of the mosaic in pixels")
                    .minimum(16)
                    .maximum(16384)
                    .default_value(d.height)
                    .mutable_ready()
                    .build(),
            ]
        });
        PROPS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap();
        let v: u32 = value.get().expect("type checked upstream");
        match pspec.name() {
            "rows" => s.rows = v,
            "columns" => s.columns = v,
            "width" => s.width = v,
            "height" => s.height = v,
            _ => unreachable!("unknown property {}", pspec.name()),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap();
        match pspec.name() {
            "rows" => s.rows.to_value(),
            "columns" => s.columns.to_value(),
            "width" => s.width.to_value(),
            "height" => s.height.to_value(),
            _ => unreachable!("unknown property {}", pspec.name()),
        }
    }
}

impl GstObjectImpl for TrtTiler {}

impl ElementImpl for TrtTiler {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "TrtVision tiler",
                "Filter/Converter/Video",
                "Composes the frames of an analytics batch into one mosaic video frame",
                "gst-trtvision developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static T: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            vec![
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &batch::batch_caps(),
                )
                .expect("valid sink template"),
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &crate::caps::frame_caps(),
                )
                .expect("valid src template"),
            ]
        });
        T.as_ref()
    }
}

impl BaseTransformImpl for TrtTiler {
    const MODE: gst_base::subclass::BaseTransformMode = gst_base::subclass::BaseTransformMode::NeverInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn transform_caps(
        &self,
        direction: gst::PadDirection,
        caps: &gst::Caps,
        filter: Option<&gst::Caps>,
    ) -> Option<gst::Caps> {
        let out = if direction == gst::PadDirection::Sink {
            let s = *self.settings.lock().unwrap();
            let framerate = caps
                .structure(0)
                .and_then(|st| st.get::<gst::Fraction>("framerate").ok())
                .unwrap_or(gst::Fraction::new(0, 1));
            gst_video::VideoCapsBuilder::new()
                .format_list(crate::caps::FRAME_FORMATS)
                .width(s.width as i32)
                .height(s.height as i32)
                .framerate(framerate)
                .pixel_aspect_ratio(gst::Fraction::new(1, 1))
                .build()
        } else {
            batch::batch_caps()
        };
        Some(match filter {
            Some(f) => f.intersect_with_mode(&out, gst::CapsIntersectMode::First),
            None => out,
        })
    }

    fn set_caps(&self, _incaps: &gst::Caps, outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let info = gst_video::VideoInfo::from_caps(outcaps)
            .map_err(|_| gst::loggable_error!(CAT, "invalid output caps {}", outcaps))?;
        let mut st = self.state.lock().unwrap();
        st.mosaic = vec![0; (info.width() * info.height() * 4) as usize];
        for px in st.mosaic.chunks_exact_mut(4) {
            px[3] = 255;
        }
        st.out_info = Some(info);
        Ok(())
    }

    fn transform_size(
        &self,
        _direction: gst::PadDirection,
        _caps: &gst::Caps,
        _size: usize,
        othercaps: &gst::Caps,
    ) -> Option<usize> {
        gst_video::VideoInfo::from_caps(othercaps).ok().map(|i| i.size())
    }

    fn transform(
        &self,
        inbuf: &gst::Buffer,
        outbuf: &mut gst::BufferRef,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let s = *self.settings.lock().unwrap();
        let mut guard = self.state.lock().unwrap();
        let st = &mut *guard;
        let out_info = st.out_info.clone().ok_or(gst::FlowError::NotNegotiated)?;
        let Some(meta) = inbuf.meta::<BatchMeta>() else {
            gst::element_imp_error!(
                self,
                gst::StreamError::Format,
                ("trttiler received a buffer without batch metadata; it must come after trtmux")
            );
            return Err(gst::FlowError::Error);
        };
        let batch = meta.batch();
        let (rows, cols) = grid_for(batch.batch_size as u32, s.rows, s.columns);
        let (mw, mh) = (out_info.width(), out_info.height());
        let (tw, th) = (mw / cols, mh / rows);
        for slot in &batch.slots {
            let tile = slot.pad_index() % (rows * cols);
            let rect = ((tile % cols) * tw, (tile / cols) * th, tw, th);
            let Ok(frame) =
                gst_video::VideoFrameRef::from_buffer_ref_readable(slot.buffer.as_ref(), &slot.info)
            else {
                gst::warning!(CAT, imp = self, "cannot map frame of source {}", slot.pad_index());
                continue;
            };
            let Ok(reader) = FrameReader::new(&frame) else {
                continue;
            };
            if tw > 0 && th > 0 {
                draw_tile(&mut st.mosaic, mw, rect, &reader, &mut st.xs, &mut st.row);
            }
        }
        let mut out =
            gst_video::VideoFrameRef::from_buffer_ref_writable(outbuf, &out_info).map_err(|_| {
                gst::element_imp_error!(self, gst::StreamError::Failed, ("Could not map the output frame"));
                gst::FlowError::Error
            })?;
        crate::video::write_rgba(&mut out, &st.mosaic[..(mw * mh * 4) as usize]).map_err(|e| {
            gst::element_imp_error!(
                self,
                gst::StreamError::Format,
                ("Could not write the mosaic: {}", e)
            );
            gst::FlowError::Error
        })?;
        drop(out);
        outbuf.set_pts(inbuf.pts());
        outbuf.set_duration(batch.slots.iter().find_map(|s| s.duration));
        Ok(gst::FlowSuccess::Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::grid_for;

    #[test]
    fn grid_defaults() {
        assert_eq!(grid_for(8, 0, 0), (3, 3));
        assert_eq!(grid_for(8, 2, 0), (2, 4));
        assert_eq!(grid_for(8, 0, 4), (2, 4));
        assert_eq!(grid_for(4, 0, 0), (2, 2));
        assert_eq!(grid_for(1, 0, 0), (1, 1));
    }
}
