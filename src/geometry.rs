//! Geometry shared by the CPU and GPU paths: boxes, IoU and the transform between a
//! frame and a model input (letterbox or stretch).

use serde::{Deserialize, Serialize};

/// Axis-aligned box in pixels, corners `(x0, y0)` inclusive and `(x1, y1)` exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct BoxF {
    pub x0: f32,
    pub y0: f32,
    pub x1: f32,
    pub y1: f32,
}

impl BoxF {
    pub fn new(x0: f32, y0: f32, x1: f32, y1: f32) -> Self {
        Self { x0, y0, x1, y1 }
    }
    /// From centre, width and height.
    pub fn from_cxcywh(cx: f32, cy: f32, w: f32, h: f32) -> Self {
        Self::new(cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0)
    }
    pub fn width(&self) -> f32 {
        (self.x1 - self.x0).max(0.0)
    }
    pub fn height(&self) -> f32 {
        (self.y1 - self.y0).max(0.0)
    }
    pub fn area(&self) -> f32 {
        self.width() * self.height()
    }
    /// Intersection over union; 0 for empty boxes.
    pub fn iou(&self, other: &BoxF) -> f32 {
        let ix = (self.x1.min(other.x1) - self.x0.max(other.x0)).max(0.0);
        let iy = (self.y1.min(other.y1) - self.y0.max(other.y0)).max(0.0);
        let inter = ix * iy;
        let union = self.area() + other.area() - inter;
        if union <= 0.0 {
            0.0
        } else {
            inter / union
        }
    }
    /// Clamped to `[0, w] x [0, h]`.
    pub fn clamp(&self, w: f32, h: f32) -> BoxF {
        BoxF::new(
            self.x0.clamp(0.0, w),
            self.y0.clamp(0.0, h),
            self.x1.clamp(0.0, w),
            self.y1.clamp(0.0, h),
        )
    }
    /// Integer pixel rectangle `(x, y, w, h)` covering the box, clamped to the frame.
    pub fn to_pixel_rect(&self, frame_w: u32, frame_h: u32) -> (u32, u32, u32, u32) {
        let c = self.clamp(frame_w as f32, frame_h as f32);
        let x0 = c.x0.floor() as u32;
        let y0 = c.y0.floor() as u32;
        let x1 = (c.x1.ceil() as u32).min(frame_w);
        let y1 = (c.y1.ceil() as u32).min(frame_h);
        (x0, y0, x1.saturating_sub(x0), y1.saturating_sub(y0))
    }
}

/// How a frame was placed into the model input: `model = frame * scale + pad`.
///
/// Recorded per frame by trtpreprocess so that parsers map model coordinates back.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LetterboxTransform {
    pub scale_x: f32,
    pub scale_y: f32,
    pub pad_x: f32,
    pub pad_y: f32,
    /// Frame size in pixels.
    pub frame_w: u32,
    pub frame_h: u32,
    /// Model input size in pixels.
    pub model_w: u32,
    pub model_h: u32,
}

impl LetterboxTransform {
    /// Keep aspect ratio, centre the frame, pad the rest.
    pub fn letterbox(frame_w: u32, frame_h: u32, model_w: u32, model_h: u32) -> Self {
        let s = (model_w as f32 / frame_w as f32).min(model_h as f32 / frame_h as f32);
        let pad_x = ((model_w as f32 - frame_w as f32 * s) / 2.0).floor();
        let pad_y = ((model_h as f32 - frame_h as f32 * s) / 2.0).floor();
        Self {
            scale_x: s,
            scale_y: s,
            pad_x,
            pad_y,
            frame_w,
            frame_h,
            model_w,
            model_h,
        }
    }

    /// Scale each axis independently to fill the model input.
    pub fn stretch(frame_w: u32, frame_h: u32, model_w: u32, model_h: u32) -> Self {
        Self {
            scale_x: model_w as f32 / frame_w as f32,
            scale_y: model_h as f32 / frame_h as f32,
            pad_x: 0.0,
            pad_y: 0.0,
            frame_w,
            frame_h,
            model_w,
            model_h,
        }
    }

    /// Placement of the region `rect` (frame pixels) of a `frame_w x frame_h` frame into a
    /// `model_w x model_h` input: stretched to fill it, or with `keep_aspect` scaled by the
    /// smaller factor and centred, the sides then showing the frame around `rect` (and the
    /// padding value only beyond the frame's edges). The padding is the negated crop origin,
    /// so the preprocessing, the CUDA kernel and the parsers treat a crop like any frame.
    pub fn crop(
        frame_w: u32,
        frame_h: u32,
        rect: &BoxF,
        model_w: u32,
        model_h: u32,
        keep_aspect: bool,
    ) -> Self {
        let (rw, rh) = (rect.width().max(1e-3), rect.height().max(1e-3));
        let (mut sx, mut sy) = (model_w as f32 / rw, model_h as f32 / rh);
        let (mut cx, mut cy) = (0.0, 0.0);
        if keep_aspect {
            let s = sx.min(sy);
            (sx, sy) = (s, s);
            cx = (model_w as f32 - rw * s) / 2.0;
            cy = (model_h as f32 - rh * s) / 2.0;
        }
        Self {
            scale_x: sx,
            scale_y: sy,
            pad_x: cx - rect.x0 * sx,
            pad_y: cy - rect.y0 * sy,
            frame_w,
            frame_h,
            model_w,
            model_h,
        }
    }

    /// Region of the model input covered by the frame: `(x0, y0, x1, y1)` in model pixels.
    pub fn content_rect(&self) -> BoxF {
        BoxF::new(
            self.pad_x,
            self.pad_y,
            self.pad_x + self.frame_w as f32 * self.scale_x,
            self.pad_y + self.frame_h as f32 * self.scale_y,
        )
    }

    /// Model pixel → frame pixel.
    pub fn to_frame(&self, x: f32, y: f32) -> (f32, f32) {
        ((x - self.pad_x) / self.scale_x, (y - self.pad_y) / self.scale_y)
    }

    /// Frame pixel → model pixel.
    pub fn to_model(&self, x: f32, y: f32) -> (f32, f32) {
        (x * self.scale_x + self.pad_x, y * self.scale_y + self.pad_y)
    }

    /// Box in model pixels → box in frame pixels, clamped to the frame.
    pub fn box_to_frame(&self, b: &BoxF) -> BoxF {
        let (x0, y0) = self.to_frame(b.x0, b.y0);
        let (x1, y1) = self.to_frame(b.x1, b.y1);
        BoxF::new(x0, y0, x1, y1).clamp(self.frame_w as f32, self.frame_h as f32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letterbox_roundtrip() {
        let t = LetterboxTransform::letterbox(1920, 1080, 640, 640);
        assert!((t.scale_x - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(t.pad_x, 0.0);
        assert_eq!(t.pad_y, 140.0);
        let (mx, my) = t.to_model(960.0, 540.0);
        let (fx, fy) = t.to_frame(mx, my);
        assert!((fx - 960.0).abs() < 1e-3 && (fy - 540.0).abs() < 1e-3);
    }

    #[test]
    fn crop_maps_the_rect_onto_the_input() {
        let r = BoxF::new(100.0, 50.0, 300.0, 150.0);
        let t = LetterboxTransform::crop(640, 480, &r, 64, 64, false);
        assert_eq!(t.to_model(100.0, 50.0), (0.0, 0.0));
        assert_eq!(t.to_model(300.0, 150.0), (64.0, 64.0));
        let t = LetterboxTransform::crop(640, 480, &r, 64, 64, true);
        // 200x100 into 64x64 keeps the aspect: 64x32, centred vertically.
        assert_eq!(t.to_model(100.0, 50.0), (0.0, 16.0));
        assert_eq!(t.to_model(300.0, 150.0), (64.0, 48.0));
        let (fx, fy) = t.to_frame(32.0, 32.0);
        assert!((fx - 200.0).abs() < 1e-4 && (fy - 100.0).abs() < 1e-4);
    }

    #[test]
    fn iou_basic() {
        let a = BoxF::new(0.0, 0.0, 10.0, 10.0);
        let b = BoxF::new(5.0, 0.0, 15.0, 10.0);
        assert!((a.iou(&b) - 50.0 / 150.0).abs() < 1e-6);
        assert_eq!(a.iou(&BoxF::new(20.0, 20.0, 30.0, 30.0)), 0.0);
    }
}
