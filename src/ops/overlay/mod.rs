//! What the overlay draws, as data: the CPU drawing of a frame ([`draw_frame`]) and the
//! same drawing as a flat list of [`DrawCommand`]s for a whole batch
//! ([`OverlayCommands`]), which the CUDA overlay (`kernels/overlay.cu`) executes in one
//! launch and [`execute`] executes on the CPU with the kernel's per-pixel rules.
//!
//! Every drawing operation of [`Canvas`] is "blend one colour at one alpha over a set
//! of pixels, and over every 4:2:0 chroma block holding at least one of them". A command
//! describes such a set (a rectangle, a glyph cell of the bitmap font, or a mask) and
//! the kernel evaluates, for every pixel and every chroma block, the commands of its
//! frame that cover it in list order. The list keeps [`draw_frame`]'s order (masks first,
//! then box and label of each detection), so the result equals the CPU drawing exactly.
//! Where the CPU splits one operation into several fills that touch a chroma block more
//! than once (outline bands, glyph runs), those fills are opaque and of one colour, so
//! blending once or several times gives the same bytes.
//!
//! A dense map (depth, heat map) is not such a set: every pixel takes its own colour. A
//! frame has at most one, drawn first ([`DenseLayer`], executed on the CPU by
//! [`execute_dense`]), with the per-pixel rules of [`Canvas::dense`].

pub mod analytics;
pub mod batch;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod draw;
pub mod font;

use crate::geometry::BoxF;
use crate::ops::overlay::draw::{alpha_u8, class_color, colormap, outline_bands, visible_glyphs, Canvas};
use crate::results::{map_coordinate, DenseMap, Detection, FrameMask};
use crate::tensor::DType;
use crate::video::color::{YuvCoefficients, YuvMatrix};
use crate::video::{Paint, PixelsMut};
use std::fmt::Write;

/// What is drawn, and how.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OverlayStyle {
    /// Width of box outlines in pixels, drawn inwards (0 = no outline).
    pub line_width: u32,
    /// Opacity of masks in `[0, 1]`.
    pub mask_alpha: f32,
    /// Draw box outlines.
    pub draw_boxes: bool,
    /// Draw labels above the boxes.
    pub draw_labels: bool,
    /// Blend masks.
    pub draw_masks: bool,
    /// Integer scale of the bitmap font.
    pub text_scale: u32,
    /// Draw the keypoints of secondary models (after every box and label).
    pub draw_keypoints: bool,
    /// Half-size of a keypoint marker in pixels.
    pub keypoint_radius: u32,
}

impl Default for OverlayStyle {
    fn default() -> Self {
        Self {
            line_width: 2,
            mask_alpha: 0.4,
            draw_boxes: true,
            draw_labels: true,
            draw_masks: true,
            text_scale: 2,
            draw_keypoints: true,
            keypoint_radius: 2,
        }
    }
}

/// Label text of a detection: `label NN%` and ` #id` when tracked.
fn write_label(label: &mut String, d: &Detection) {
    label.clear();
    let _ = write!(label, "{} {:.0}%", d.label, d.confidence * 100.0);
    if d.object_id >= 0 {
        let _ = write!(label, " #{}", d.object_id);
    }
    for a in d.secondary.iter().filter_map(|r| r.attribute.as_ref()) {
        let _ = write!(label, " {}", a.label);
    }
}

/// Top-left corner of a detection's label: above the box when it fits, else inside.
fn label_origin(d: &Detection, style: &OverlayStyle) -> (i32, i32) {
    let h = (font::GLYPH_H * style.text_scale) as f32;
    let y = if d.bbox.y0 >= h { d.bbox.y0 - h } else { d.bbox.y0 };
    (d.bbox.x0 as i32, y as i32)
}

/// The drawing operations of the overlay, in frame pixels: the [`Canvas`] draws them,
/// the command builder records them.
trait Painter {
    fn mask(&mut self, mask: &FrameMask, color: [u8; 3], alpha: f32);
    fn rect_outline(&mut self, rect: &BoxF, color: [u8; 3], line_width: u32);
    fn text(&mut self, x: i32, y: i32, text: &str, color: [u8; 3], scale: u32, background: Option<[u8; 3]>);
    /// An opaque filled rectangle `[x0, x1) x [y0, y1)`, clipped to the frame.
    fn fill(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, color: [u8; 3]);
}

impl Painter for Canvas<'_> {
    fn mask(&mut self, mask: &FrameMask, color: [u8; 3], alpha: f32) {
        Canvas::mask(self, mask, color, alpha)
    }
    fn rect_outline(&mut self, rect: &BoxF, color: [u8; 3], line_width: u32) {
        Canvas::rect_outline(self, rect, color, line_width)
    }
    fn text(&mut self, x: i32, y: i32, text: &str, color: [u8; 3], scale: u32, background: Option<[u8; 3]>) {
        Canvas::text(self, x, y, text, color, scale, background)
    }
    fn fill(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, color: [u8; 3]) {
        Canvas::fill_opaque(self, x0, y0, x1, y1, color)
    }
}

/// The overlay of one frame, in drawing order: every mask, then box and label of each
/// detection.
fn paint(p: &mut impl Painter, detections: &[Detection], style: &OverlayStyle, label: &mut String) {
    if style.draw_masks {
        for d in detections {
            if let Some(m) = &d.mask {
                p.mask(m, class_color(d.class_id), style.mask_alpha);
            }
        }
    }
    for d in detections {
        let color = class_color(d.class_id);
        if style.draw_boxes {
            p.rect_outline(&d.bbox, color, style.line_width);
        }
        if style.draw_labels {
            write_label(label, d);
            let (x, y) = label_origin(d, style);
            p.text(x, y, label, [255, 255, 255], style.text_scale, Some(color));
        }
    }
    if style.draw_keypoints {
        for d in detections {
            for (k, kp) in d.secondary.iter().flat_map(|r| r.keypoints.iter().enumerate()) {
                if let Some(squares) =
                    crate::ops::overlay::draw::point_squares(kp.x, kp.y, style.keypoint_radius)
                {
                    let colors = [[0, 0, 0], class_color(k as u32 + 5)];
                    for ([x0, y0, x1, y1], c) in squares.into_iter().zip(colors) {
                        p.fill(x0, y0, x1, y1, c);
                    }
                }
            }
        }
    }
}

/// Draws the detections of one frame onto it (CPU implementation).
pub fn draw_frame(canvas: &mut Canvas, detections: &[Detection], style: &OverlayStyle, label: &mut String) {
    paint(canvas, detections, style, label);
}

/// Draws trtanalytics' zones, lines and counts of one frame onto it (CPU implementation);
/// trtoverlay draws them before the detections.
pub fn draw_analytics(
    canvas: &mut Canvas,
    analytics: &crate::analytics::FrameAnalytics,
    style: &OverlayStyle,
    label: &mut String,
) {
    analytics::paint_analytics(canvas, analytics, style, label);
}

/// A filled rectangle (its pixel bounds are the command's bounds).
pub const CMD_RECT: u32 = 0;
/// A glyph of [`font::atlas`] at an integer scale.
pub const CMD_GLYPH: u32 = 1;
/// A mask whose bits are in [`OverlayCommands::mask_bytes`] at byte offset `mask`.
pub const CMD_MASK_HOST: u32 = 2;
/// A mask whose bits are in device memory at address `mask`.
pub const CMD_MASK_DEVICE: u32 = 3;

/// One drawing command; layout shared with `DrawCommand` in `kernels/overlay.cu`.
///
/// A pixel `(px, py)` is covered when it lies in `[x0, x1) x [y0, y1)` and, for a glyph,
/// bit `(px - ox) / a, (py - oy) / a` of glyph `b` is set, for a mask, byte
/// `(py - oy) * a + (px - ox)` of its bits is ≥ 128. Covered pixels inside the frame are
/// blended; on 4:2:0 frames so is every chroma block with a covered pixel, once. The
/// bounds of rectangles and glyphs are clipped to the frame; those of masks to the
/// chroma block grid (`2 * ceil(w / 2)` by `2 * ceil(h / 2)`), because the CPU tints a
/// block for mask pixels just right of or below an odd-sized frame.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DrawCommand {
    /// `CMD_*`.
    pub kind: u32,
    /// Opacity 0..=255.
    pub alpha: u32,
    /// Bounds: pixels `[x0, x1) x [y0, y1)`.
    pub x0: i32,
    pub y0: i32,
    pub x1: i32,
    pub y1: i32,
    /// Glyph: top-left of its 8x8 cell; mask: its top-left corner.
    pub ox: i32,
    pub oy: i32,
    /// Glyph: scale; mask: width.
    pub a: i32,
    /// Glyph: [`font::glyph_index`]; mask: height.
    pub b: i32,
    /// Colour as `[r, g, b, 0]`.
    pub rgb: [u8; 4],
    /// The same colour in the frame's YUV (its matrix and range) as `[y, u, v, 0]`.
    pub yuv: [u8; 4],
    /// Mask: byte offset into the batch's mask bytes, or device address.
    pub mask: u64,
}

const _: () = assert!(std::mem::size_of::<DrawCommand>() == 56);

/// The dense layer's values are in [`OverlayCommands::dense_values`] (f32), from element
/// [`DenseLayer::values`].
pub const DENSE_HOST: u32 = 0;
/// The dense layer's values are in device memory at address [`DenseLayer::values`].
pub const DENSE_DEVICE: u32 = 1;

/// A dense map drawn as a colour map under a frame's commands (what [`Canvas::dense`]
/// does); layout shared with `DenseLayer` in `kernels/overlay.cu`.
///
/// Frame pixel `(x, y)` shows map cell `(u, v)` = [`map_coordinate`] of `x + 0.5` and
/// `y + 0.5`; when both lie in the map, the pixel is blended with LUT entry
/// [`colormap::lut_index`] of the cell's value on `[lo, hi]`. On 4:2:0 frames the chroma of
/// block `(cx, cy)` takes the colour of pixel `(2cx, 2cy)`, when that pixel maps into the
/// map.
///
/// [`map_coordinate`]: crate::results::map_coordinate
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DenseLayer {
    /// `DENSE_HOST`: index of the first value of channel 0 in the batch's dense values;
    /// `DENSE_DEVICE`: device address of the first value of channel 0.
    pub values: u64,
    /// `DENSE_*`.
    pub source: u32,
    /// Device values are f16 (1) or f32 (0); host values are f32.
    pub f16: u32,
    /// Map width and height.
    pub width: i32,
    pub height: i32,
    /// Frame → model placement ([`LetterboxTransform`](crate::geometry::LetterboxTransform)).
    pub scale_x: f32,
    pub scale_y: f32,
    pub pad_x: f32,
    pub pad_y: f32,
    /// Model input width and height (whole numbers, as f32).
    pub model_w: f32,
    pub model_h: f32,
    /// Values mapped onto the first and last LUT entries.
    pub lo: f32,
    pub hi: f32,
    /// Opacity 0..=255.
    pub alpha: u32,
    /// Which 256-entry block of [`OverlayCommands::dense_lut`] colours this frame (one
    /// block per colour space of the batch's frames).
    pub lut: u32,
}

const _: () = assert!(std::mem::size_of::<DenseLayer>() == 64);

/// What [`OverlayCommands::add_frame_with_dense`] draws under the detections: `map`
/// coloured over `range` at opacity `alpha` (0..1), with the list's
/// [`OverlayCommands::set_dense_lut`].
#[derive(Debug, Clone, Copy)]
pub struct DenseDraw<'a> {
    pub map: &'a DenseMap,
    pub range: (f32, f32),
    pub alpha: f32,
}

/// The commands of one frame: `commands[first..first + count]`, all inside `bounds`
/// (`[x0, y0, x1, y1]`, empty when there are none), and its dense layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameCommands {
    /// Index of the frame's first command.
    pub first: u32,
    /// Number of commands of the frame.
    pub count: u32,
    /// Union of the commands' bounds (the whole frame with a dense layer), `[x0, y0, x1, y1]`.
    pub bounds: [i32; 4],
    /// Index of the frame's [`DenseLayer`] in [`OverlayCommands::dense`], or -1.
    pub dense: i32,
}

impl Default for FrameCommands {
    fn default() -> Self {
        Self {
            first: 0,
            count: 0,
            bounds: [0; 4],
            dense: -1,
        }
    }
}

/// Host-side command list of a batch, reused from batch to batch (cleared, never freed).
#[derive(Debug, Default)]
pub struct OverlayCommands {
    /// Commands of every frame, frame after frame.
    pub commands: Vec<DrawCommand>,
    /// One entry per [`OverlayCommands::add_frame`].
    pub frames: Vec<FrameCommands>,
    /// Bits of the host masks, packed back to back.
    pub mask_bytes: Vec<u8>,
    /// CUevents (addresses) recorded after the writes of the device masks and dense maps
    /// referenced by the list: the GPU executor waits on each before drawing.
    pub device_events: Vec<u64>,
    /// Dense layers of the frames that have one.
    pub dense: Vec<DenseLayer>,
    /// Channel 0 of the host dense maps, back to back.
    pub dense_values: Vec<f32>,
    /// The colour map of dense layers: blocks of 256 entries of `[r, g, b, 0, y, u, v, 0]`,
    /// one block per colour space of the batch's frames ([`DenseLayer::lut`]); empty =
    /// dense layers are not drawn ([`OverlayCommands::set_dense_lut`]).
    pub dense_lut: Vec<[u8; 8]>,
    /// The colour map's RGB (256 entries, empty without one) and the colour space of each
    /// block of `dense_lut`.
    dense_rgb: Vec<[u8; 3]>,
    dense_spaces: Vec<(YuvMatrix, bool)>,
    label: String,
}

fn command(kind: u32, color: [u8; 3], alpha: u32, colors: &YuvCoefficients) -> DrawCommand {
    let p = Paint::for_colors(color, colors);
    DrawCommand {
        kind,
        alpha,
        rgb: [p.rgb[0], p.rgb[1], p.rgb[2], 0],
        yuv: [p.yuv[0], p.yuv[1], p.yuv[2], 0],
        ..Default::default()
    }
}

/// Frame being added: its size and the running bounds of its commands.
struct FrameBuilder<'a> {
    list: &'a mut OverlayCommands,
    w: i64,
    h: i64,
    bounds: [i64; 4],
    colors: YuvCoefficients,
}

impl FrameBuilder<'_> {
    /// Pushes `c` with bounds `[x0, x1) x [y0, y1)` clipped to `(0, 0)..(cw, ch)`;
    /// nothing when empty.
    #[allow(clippy::too_many_arguments)]
    fn push(&mut self, mut c: DrawCommand, x0: i64, y0: i64, x1: i64, y1: i64, cw: i64, ch: i64) -> bool {
        let (x0, y0, x1, y1) = (x0.clamp(0, cw), y0.clamp(0, ch), x1.clamp(0, cw), y1.clamp(0, ch));
        if x0 >= x1 || y0 >= y1 {
            return false;
        }
        // Clipped to a frame of at most i32::MAX pixels a side.
        (c.x0, c.y0, c.x1, c.y1) = (x0 as i32, y0 as i32, x1 as i32, y1 as i32);
        let b = &mut self.bounds;
        (b[0], b[1], b[2], b[3]) = (b[0].min(x0), b[1].min(y0), b[2].max(x1), b[3].max(y1));
        self.list.commands.push(c);
        true
    }

    fn rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, color: [u8; 3], alpha: u32) {
        let (w, h) = (self.w, self.h);
        let c = command(CMD_RECT, color, alpha, &self.colors);
        self.push(c, x0, y0, x1, y1, w, h);
    }
}

impl Painter for FrameBuilder<'_> {
    /// [`Canvas::fill_opaque`].
    fn fill(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, color: [u8; 3]) {
        self.rect(x0, y0, x1, y1, color, 255);
    }

    /// [`Canvas::rect_outline`].
    fn rect_outline(&mut self, rect: &BoxF, color: [u8; 3], line_width: u32) {
        for [x0, y0, x1, y1] in outline_bands(rect, line_width).into_iter().flatten() {
            self.rect(x0, y0, x1, y1, color, 255);
        }
    }

    /// [`Canvas::text`].
    fn text(&mut self, x: i32, y: i32, text: &str, color: [u8; 3], scale: u32, background: Option<[u8; 3]>) {
        let s = scale.max(1) as i64;
        let (x, y) = (x as i64, y as i64);
        let cell_h = font::GLYPH_H as i64 * s;
        if let Some(bg) = background {
            let w = font::text_width(text, scale.max(1)) as i64;
            self.rect(x, y, x + w, y + cell_h, bg, 255);
        }
        let (w, h) = (self.w, self.h);
        for (gx, ch) in visible_glyphs(x, y, text, s, w, h) {
            let index = font::glyph_index(ch);
            if font::atlas()[index].iter().all(|&r| r == 0) {
                continue;
            }
            let mut c = command(CMD_GLYPH, color, 255, &self.colors);
            // The cell intersects the frame, so its corner fits an i32.
            (c.ox, c.oy, c.a, c.b) = (gx as i32, y as i32, s as i32, index as i32);
            self.push(c, gx, y, gx + 8 * s, y + cell_h, w, h);
        }
    }

    /// [`Canvas::mask`].
    fn mask(&mut self, m: &FrameMask, color: [u8; 3], alpha: f32) {
        let (mw, mh) = (m.width as i64, m.height as i64);
        if mw == 0 || mh == 0 || mw > i32::MAX as i64 || mh > i32::MAX as i64 {
            return;
        }
        let (x, y) = (m.x as i64, m.y as i64);
        let (gw, gh) = (2 * ((self.w + 1) / 2), 2 * ((self.h + 1) / 2));
        if x >= gw || y >= gh {
            return;
        }
        let mut c = command(CMD_MASK_HOST, color, alpha_u8(alpha) as u32, &self.colors);
        (c.ox, c.oy, c.a, c.b) = (x as i32, y as i32, mw as i32, mh as i32);
        let n = (mw * mh) as usize;
        if let Some(d) = &m.device {
            c.kind = CMD_MASK_DEVICE;
            c.mask = d.ptr;
            let events = &self.list.device_events;
            let new_event = d.ready_event != 0 && events.last() != Some(&d.ready_event);
            if self.push(c, x, y, x + mw, y + mh, gw, gh) && new_event {
                self.list.device_events.push(d.ready_event);
            }
        } else if m.data.len() >= n {
            c.mask = self.list.mask_bytes.len() as u64;
            if self.push(c, x, y, x + mw, y + mh, gw, gh) {
                self.list.mask_bytes.extend_from_slice(&m.data[..n]);
            }
        }
    }
}

impl OverlayCommands {
    /// Empties the list for a new batch (keeps the memory and the colour map).
    pub fn clear(&mut self) {
        self.commands.clear();
        self.frames.clear();
        self.mask_bytes.clear();
        self.device_events.clear();
        self.dense.clear();
        self.dense_values.clear();
    }

    /// The colour map of dense layers (a [`Colormap::lut`](crate::ops::overlay::draw::colormap::Colormap::lut));
    /// fewer than 256 entries draw no dense layer, as [`Canvas::dense`].
    pub fn set_dense_lut(&mut self, lut: &[Paint]) {
        self.dense_lut.clear();
        self.dense_spaces.clear();
        self.dense_rgb.clear();
        if lut.len() >= 256 {
            self.dense_rgb.extend(lut[..256].iter().map(|p| p.rgb));
        }
    }

    /// The block of `dense_lut` holding the colour map in `colors`' space, added on first use.
    fn dense_lut_block(&mut self, colors: &YuvCoefficients) -> Option<u32> {
        if self.dense_rgb.len() < 256 {
            return None;
        }
        let space = colors.space();
        if let Some(i) = self.dense_spaces.iter().position(|&s| s == space) {
            return Some(i as u32);
        }
        self.dense_spaces.push(space);
        self.dense_lut.extend(self.dense_rgb.iter().map(|&c| {
            let y = colors.rgb_to_yuv(c);
            [c[0], c[1], c[2], 0, y[0], y[1], y[2], 0]
        }));
        Some(self.dense_spaces.len() as u32 - 1)
    }

    /// Appends the commands drawing `detections` on a `width x height` frame with
    /// `style`, in [`draw_frame`]'s order.
    pub fn add_frame(
        &mut self,
        width: u32,
        height: u32,
        colors: &YuvCoefficients,
        detections: &[Detection],
        style: &OverlayStyle,
    ) {
        self.add_frame_with_dense(width, height, colors, None, detections, style);
    }

    /// [`OverlayCommands::add_frame`] with a dense map drawn first, under the detections
    /// (as trtoverlay's CPU drawing): read where it is in device memory
    /// ([`DenseMap::device`]), else its host values are copied into the list. A map whose
    /// values are in neither place, or without a colour map set, draws nothing (as on the
    /// CPU).
    pub fn add_frame_with_dense(
        &mut self,
        width: u32,
        height: u32,
        colors: &YuvCoefficients,
        dense: Option<DenseDraw<'_>>,
        detections: &[Detection],
        style: &OverlayStyle,
    ) {
        self.add_frame_with_analytics(width, height, colors, dense, None, detections, style);
    }

    /// [`OverlayCommands::add_frame_with_dense`] with trtanalytics' zones, lines and counts
    /// between the dense layer and the detections (as [`draw_analytics`] before
    /// [`draw_frame`] on the CPU).
    #[allow(clippy::too_many_arguments)]
    pub fn add_frame_with_analytics(
        &mut self,
        width: u32,
        height: u32,
        colors: &YuvCoefficients,
        dense: Option<DenseDraw<'_>>,
        analytics: Option<&crate::analytics::FrameAnalytics>,
        detections: &[Detection],
        style: &OverlayStyle,
    ) {
        let layer = dense.and_then(|d| self.dense_layer(d, colors));
        let first = self.commands.len();
        let mut label = std::mem::take(&mut self.label);
        let mut f = FrameBuilder {
            list: self,
            w: width as i64,
            h: height as i64,
            bounds: [i64::MAX, i64::MAX, i64::MIN, i64::MIN],
            colors: *colors,
        };
        if let Some(a) = analytics {
            analytics::paint_analytics(&mut f, a, style, &mut label);
        }
        paint(&mut f, detections, style, &mut label);
        let b = f.bounds;
        self.label = label;
        let count = self.commands.len() - first;
        let (w, h) = (
            width.min(i32::MAX as u32) as i32,
            height.min(i32::MAX as u32) as i32,
        );
        let dense = match layer {
            Some(l) if w > 0 && h > 0 => {
                self.dense.push(l);
                self.dense.len() as i32 - 1
            }
            _ => -1,
        };
        self.frames.push(FrameCommands {
            first: first as u32,
            count: count as u32,
            bounds: if dense >= 0 {
                // Commands lie inside the chroma grid, the dense layer covers the frame.
                [0, 0, b[2].max(w as i64) as i32, b[3].max(h as i64) as i32]
            } else if count == 0 {
                [0; 4]
            } else {
                [b[0] as i32, b[1] as i32, b[2] as i32, b[3] as i32]
            },
            dense,
        });
    }

    /// The layer of `d`, its host values appended to [`OverlayCommands::dense_values`]
    /// and its ready event to the device events; `None` when nothing can be drawn.
    fn dense_layer(&mut self, d: DenseDraw<'_>, colors: &YuvCoefficients) -> Option<DenseLayer> {
        let m = d.map;
        let t = &m.transform;
        let (Ok(width), Ok(height)) = (i32::try_from(m.width), i32::try_from(m.height)) else {
            return None;
        };
        if self.dense_rgb.len() < 256 || width == 0 || height == 0 || m.channels == 0 {
            return None;
        }
        let lut = self.dense_lut_block(colors)?;
        let mut layer = DenseLayer {
            width,
            height,
            scale_x: t.scale_x,
            scale_y: t.scale_y,
            pad_x: t.pad_x,
            pad_y: t.pad_y,
            model_w: t.model_w as f32,
            model_h: t.model_h as f32,
            lo: d.range.0,
            hi: d.range.1,
            alpha: alpha_u8(d.alpha) as u32,
            lut,
            ..Default::default()
        };
        if let Some(dev) = &m.device {
            layer.source = DENSE_DEVICE;
            layer.values = dev.ptr;
            layer.f16 = match dev.dtype {
                DType::F32 => 0,
                DType::F16 => 1,
                _ => return None,
            };
            let events = &self.device_events;
            if dev.ready_event != 0 && events.last() != Some(&dev.ready_event) {
                self.device_events.push(dev.ready_event);
            }
        } else {
            let values = m.channel(0)?;
            layer.source = DENSE_HOST;
            layer.values = self.dense_values.len() as u64;
            self.dense_values.extend_from_slice(values);
        }
        Some(layer)
    }

    /// Whether any frame has something to draw.
    pub fn is_empty(&self) -> bool {
        self.commands.is_empty() && self.dense.is_empty()
    }
}

/// Whether command `c` covers pixel `(px, py)` (see [`DrawCommand`]); device masks are
/// not readable here and cover nothing.
#[inline]
fn covers(c: &DrawCommand, mask_bytes: &[u8], px: i32, py: i32) -> bool {
    if px < c.x0 || px >= c.x1 || py < c.y0 || py >= c.y1 {
        return false;
    }
    match c.kind {
        CMD_RECT => true,
        CMD_GLYPH => {
            let s = c.a.max(1);
            let (col, row) = ((px - c.ox) / s, (py - c.oy) / s);
            let bits = font::atlas().get(c.b as usize).and_then(|g| g.get(row as usize));
            (0..8).contains(&col) && bits.is_some_and(|r| r & (0x80 >> col) != 0)
        }
        CMD_MASK_HOST => {
            let (mx, my) = ((px - c.ox) as i64, (py - c.oy) as i64);
            if mx < 0 || my < 0 || mx >= c.a as i64 || my >= c.b as i64 {
                return false;
            }
            let i = c.mask as usize + (my * c.a as i64 + mx) as usize;
            mask_bytes.get(i).is_some_and(|&v| v >= 128)
        }
        _ => false,
    }
}

/// LUT entry of `value` on `[lo, hi]`: [`colormap::lut_index`].
#[inline]
fn dense_paint(lut: &[[u8; 8]], value: f32, lo: f32, hi: f32, space: (YuvMatrix, bool)) -> Paint {
    let e = lut[colormap::lut_index(value, lo, hi) as usize];
    Paint {
        rgb: [e[0], e[1], e[2]],
        yuv: [e[4], e[5], e[6]],
        space,
    }
}

/// Draws the dense layer `layer` of a frame on the CPU with the kernel's rules (see
/// [`DenseLayer`]); host layers read `list.dense_values`, device layers draw nothing here.
pub fn execute_dense(px: &mut PixelsMut, layer: &DenseLayer, list: &OverlayCommands) {
    let lut_start = layer.lut as usize * 256;
    if layer.source != DENSE_HOST || list.dense_lut.len() < lut_start + 256 {
        return;
    }
    let (mw, mh) = (layer.width.max(0) as usize, layer.height.max(0) as usize);
    let start = layer.values as usize;
    let Some(values) = list.dense_values.get(start..start + mw * mh) else {
        return;
    };
    let (w, h) = (px.width(), px.height());
    let space = px.colors().space();
    let cell = |x: u32, y: u32| {
        let u = map_coordinate(x as f32 + 0.5, layer.scale_x, layer.pad_x, mw, layer.model_w)?;
        let v = map_coordinate(y as f32 + 0.5, layer.scale_y, layer.pad_y, mh, layer.model_h)?;
        Some(dense_paint(
            &list.dense_lut[lut_start..lut_start + 256],
            values[v * mw + u],
            layer.lo,
            layer.hi,
            space,
        ))
    };
    let a = layer.alpha.min(255) as u8;
    for y in 0..h {
        for x in 0..w {
            if let Some(p) = cell(x, y) {
                px.blend_span(y, x, x + 1, &p, a);
            }
        }
    }
    if px.layout().is_yuv420() {
        for cy in 0..h.div_ceil(2) {
            for cx in 0..w.div_ceil(2) {
                if let Some(p) = cell(2 * cx, 2 * cy) {
                    px.blend_chroma_span(cy, cx, cx + 1, &p, a);
                }
            }
        }
    }
}

/// Executes the commands of one frame on the CPU with the kernel's rules: the CPU twin
/// of `kernels/overlay.cu` (commands in order, each blending the pixels it covers and,
/// on 4:2:0 frames, each chroma block holding a covered pixel once).
pub fn execute(px: &mut PixelsMut, commands: &[DrawCommand], mask_bytes: &[u8]) {
    let (w, h) = (px.width() as i32, px.height() as i32);
    let yuv420 = px.layout().is_yuv420();
    let space = px.colors().space();
    for c in commands {
        // The command list holds each colour converted for this frame already.
        let paint = Paint {
            rgb: [c.rgb[0], c.rgb[1], c.rgb[2]],
            yuv: [c.yuv[0], c.yuv[1], c.yuv[2]],
            space,
        };
        let alpha = c.alpha.min(255) as u8;
        for y in c.y0.max(0)..c.y1.min(h) {
            for x in c.x0.max(0)..c.x1.min(w) {
                if covers(c, mask_bytes, x, y) {
                    px.blend_span(y as u32, x as u32, x as u32 + 1, &paint, alpha);
                }
            }
        }
        if !yuv420 {
            continue;
        }
        let (cw, ch) = ((w + 1) / 2, (h + 1) / 2);
        for cy in (c.y0.max(0) / 2)..((c.y1 + 1) / 2).min(ch) {
            for cx in (c.x0.max(0) / 2)..((c.x1 + 1) / 2).min(cw) {
                let touched = (0..4).any(|k| covers(c, mask_bytes, 2 * cx + (k & 1), 2 * cy + (k >> 1)));
                if touched {
                    px.blend_chroma_span(cy as u32, cx as u32, cx as u32 + 1, &paint, alpha);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
