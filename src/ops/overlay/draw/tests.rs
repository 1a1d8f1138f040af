//! Draw on RGBA / NV12 / I420 / BGRx frames, read back, check pixels.

use super::*;
use crate::video::{color::YuvCoefficients, write_rgba, FrameReader};
use gst_video::prelude::*;
use gst_video::{VideoFormat, VideoInfo};

const GREY: [u8; 3] = [100, 100, 100];
const RED: [u8; 3] = [230, 20, 20];

struct TestFrame {
    info: VideoInfo,
    buf: gst::Buffer,
}

impl TestFrame {
    fn new(format: VideoFormat, w: u32, h: u32) -> Self {
        gst::init().unwrap();
        let info = VideoInfo::builder(format, w, h).build().unwrap();
        let mut buf = gst::Buffer::with_size(info.size()).unwrap();
        let img: Vec<u8> = (0..w * h)
            .flat_map(|_| [GREY[0], GREY[1], GREY[2], 255])
            .collect();
        {
            let mut f = VideoFrameRef::from_buffer_ref_writable(buf.get_mut().unwrap(), &info).unwrap();
            write_rgba(&mut f, &img).unwrap();
        }
        Self { info, buf }
    }

    fn draw(&mut self, op: impl FnOnce(&mut FrameMut<'_>)) {
        let mut f = VideoFrameRef::from_buffer_ref_writable(self.buf.get_mut().unwrap(), &self.info).unwrap();
        op(&mut f);
    }

    fn rgb(&self, x: u32, y: u32) -> [u8; 3] {
        let f = VideoFrameRef::from_buffer_ref_readable(self.buf.as_ref(), &self.info).unwrap();
        FrameReader::new(&f).unwrap().rgb_at(x, y)
    }

    /// Raw `[Y, U, V]` of pixel `(x, y)` of an NV12 frame.
    fn nv12_yuv(&self, x: u32, y: u32) -> [u8; 3] {
        let f = VideoFrameRef::from_buffer_ref_readable(self.buf.as_ref(), &self.info).unwrap();
        let s = f.plane_stride();
        let (yp, uv) = (f.plane_data(0).unwrap(), f.plane_data(1).unwrap());
        let c = (y / 2) as usize * s[1] as usize + (x / 2) as usize * 2;
        [yp[y as usize * s[0] as usize + x as usize], uv[c], uv[c + 1]]
    }
}

fn near(a: [u8; 3], b: [u8; 3], tol: i32) -> bool {
    (0..3).all(|k| (a[k] as i32 - b[k] as i32).abs() <= tol)
}

fn expected_blend(over: [u8; 3], under: [u8; 3], alpha: f32) -> [u8; 3] {
    let m = |k: usize| (over[k] as f32 * alpha + under[k] as f32 * (1.0 - alpha)).round() as u8;
    [m(0), m(1), m(2)]
}

#[test]
fn outline_sets_edges_and_keeps_interior() {
    for format in [
        VideoFormat::Rgba,
        VideoFormat::Bgrx,
        VideoFormat::Nv12,
        VideoFormat::I420,
    ] {
        let mut f = TestFrame::new(format, 64, 48);
        let rect = BoxF::new(10.0, 10.0, 30.0, 26.0);
        f.draw(|fr| draw_rect_outline(fr, &rect, RED, 2).unwrap());
        let tol = if format == VideoFormat::Rgba || format == VideoFormat::Bgrx {
            0
        } else {
            4
        };
        for (x, y) in [
            (10, 10),
            (11, 11),
            (29, 25),
            (28, 24),
            (20, 10),
            (10, 18),
            (29, 18),
        ] {
            assert!(
                near(f.rgb(x, y), RED, tol),
                "{format:?} edge ({x},{y}) {:?}",
                f.rgb(x, y)
            );
        }
        // Interior and outside: untouched (beyond the chroma blocks of the lines).
        for (x, y) in [(14, 14), (20, 18), (26, 22), (8, 8), (32, 28), (40, 40)] {
            assert!(
                near(f.rgb(x, y), GREY, tol),
                "{format:?} ({x},{y}) {:?}",
                f.rgb(x, y)
            );
        }
    }
}

#[test]
fn nv12_outline_luma_is_exact_and_chroma_follows_blocks() {
    let mut f = TestFrame::new(VideoFormat::Nv12, 32, 32);
    // A 1-pixel line at x = 5 touches chroma block column 2 (pixels 4 and 5).
    f.draw(|fr| draw_rect_outline(fr, &BoxF::new(5.0, 5.0, 20.0, 20.0), RED, 1).unwrap());
    let (red, grey) = (
        YuvCoefficients::BT601_LIMITED.rgb_to_yuv(RED),
        YuvCoefficients::BT601_LIMITED.rgb_to_yuv(GREY),
    );
    assert_eq!(f.nv12_yuv(5, 10)[0], red[0]);
    assert_eq!(
        f.nv12_yuv(4, 10)[0],
        grey[0],
        "luma of the neighbour is untouched"
    );
    assert_eq!(
        f.nv12_yuv(4, 10)[1..],
        red[1..],
        "but its chroma block is painted"
    );
    assert_eq!(f.nv12_yuv(7, 10), grey, "next block untouched");
}

#[test]
fn fill_blend_matches_expected_within_two_levels() {
    let mut f = TestFrame::new(VideoFormat::Rgba, 16, 16);
    f.draw(|fr| fill_rect_blend(fr, &BoxF::new(2.0, 2.0, 8.0, 8.0), RED, 0.5).unwrap());
    assert!(near(f.rgb(4, 4), expected_blend(RED, GREY, 0.5), 2));
    assert_eq!(f.rgb(9, 9), GREY);

    let mut f = TestFrame::new(VideoFormat::Nv12, 16, 16);
    f.draw(|fr| fill_rect_blend(fr, &BoxF::new(2.0, 2.0, 8.0, 8.0), RED, 0.25).unwrap());
    let want = expected_blend(
        YuvCoefficients::BT601_LIMITED.rgb_to_yuv(RED),
        YuvCoefficients::BT601_LIMITED.rgb_to_yuv(GREY),
        0.25,
    );
    assert!(near(f.nv12_yuv(4, 4), want, 2));
}

#[test]
fn text_pixels_present_and_confined() {
    for format in [VideoFormat::Rgba, VideoFormat::Nv12] {
        let mut f = TestFrame::new(format, 80, 40);
        let white = [255, 255, 255];
        f.draw(|fr| draw_text(fr, 5, 6, "Hi 7", white, 2, None).unwrap());
        let w = font::text_width("Hi 7", 2);
        let (mut lit, mut stray) = (0, 0);
        for y in 0..40 {
            for x in 0..80 {
                let is_lit = f.rgb(x, y)[0] > 200;
                let inside = (5..5 + w).contains(&x) && (6..6 + 16).contains(&y);
                lit += (is_lit && inside) as u32;
                stray += (is_lit && !inside) as u32;
            }
        }
        assert!(lit > 40, "{format:?}: only {lit} text pixels");
        assert_eq!(stray, 0);
        // 'H' at scale 2: its left stem covers (5..7, 6..20).
        assert!(f.rgb(5, 6)[0] > 200 && f.rgb(6, 19)[0] > 200);
    }
}

#[test]
fn text_background_fills_its_box() {
    let mut f = TestFrame::new(VideoFormat::Rgba, 40, 20);
    let bg = [0, 0, 128];
    f.draw(|fr| draw_text(fr, 1, 2, "ab", [255, 255, 0], 1, Some(bg)).unwrap());
    for y in 2..10 {
        for x in 1..13 {
            let p = f.rgb(x, y);
            assert!(p == bg || p == [255, 255, 0], "({x},{y}) {p:?}");
        }
    }
    assert_eq!(f.rgb(13, 5), GREY);
    assert_eq!(f.rgb(5, 10), GREY);
}

fn disc_mask(x: u32, y: u32, d: u32) -> FrameMask {
    let r = d as f32 / 2.0;
    let data = (0..d * d)
        .map(|i| {
            let (c, rr) = ((i % d) as f32 + 0.5 - r, (i / d) as f32 + 0.5 - r);
            if c * c + rr * rr <= r * r {
                255
            } else {
                0
            }
        })
        .collect();
    FrameMask {
        x,
        y,
        width: d,
        height: d,
        data,
        device: None,
    }
}

#[test]
fn mask_blend_rgba_and_nv12() {
    let color = [20, 200, 40];
    let m = disc_mask(8, 8, 16);

    let mut f = TestFrame::new(VideoFormat::Rgba, 32, 32);
    f.draw(|fr| blend_mask(fr, &m, color, 0.6).unwrap());
    assert!(near(f.rgb(16, 16), expected_blend(color, GREY, 0.6), 2));
    assert_eq!(f.rgb(8, 8), GREY, "corner of the box is outside the disc");
    assert_eq!(f.rgb(30, 30), GREY);

    let mut f = TestFrame::new(VideoFormat::Nv12, 32, 32);
    f.draw(|fr| blend_mask(fr, &m, color, 0.6).unwrap());
    let want = expected_blend(
        YuvCoefficients::BT601_LIMITED.rgb_to_yuv(color),
        YuvCoefficients::BT601_LIMITED.rgb_to_yuv(GREY),
        0.6,
    );
    assert!(
        near(f.nv12_yuv(16, 16), want, 2),
        "{:?} vs {want:?}",
        f.nv12_yuv(16, 16)
    );
    assert_eq!(f.nv12_yuv(8, 8), YuvCoefficients::BT601_LIMITED.rgb_to_yuv(GREY));
    assert!(near(f.rgb(16, 16), expected_blend(color, GREY, 0.6), 4));
}

#[test]
fn nothing_panics_out_of_bounds() {
    let boxes = [
        BoxF::new(-100.0, -100.0, 1e9, 1e9),
        BoxF::new(-50.0, -50.0, -10.0, -10.0),
        BoxF::new(1e30, 1e30, f32::INFINITY, f32::INFINITY),
        BoxF::new(f32::NAN, 0.0, 5.0, 5.0),
        BoxF::new(5.0, 5.0, 2.0, 2.0),
        BoxF::new(0.0, 0.0, 1.0, 1.0),
    ];
    let far_mask = FrameMask {
        x: u32::MAX - 3,
        y: u32::MAX - 3,
        width: 2,
        height: 2,
        data: vec![255; 4],
        device: None,
    };
    for format in crate::video::supported_formats() {
        for (w, h) in [(1, 1), (3, 3), (17, 9)] {
            let mut f = TestFrame::new(*format, w, h);
            f.draw(|fr| {
                for b in &boxes {
                    draw_rect_outline(fr, b, RED, 3).unwrap();
                    draw_rect_outline(fr, b, RED, u32::MAX).unwrap();
                    fill_rect_blend(fr, b, RED, 0.5).unwrap();
                }
                draw_text(fr, -7, -3, "clipped text", RED, 3, Some(GREY)).unwrap();
                draw_text(fr, i32::MAX, i32::MIN, "x", RED, u32::MAX, Some(GREY)).unwrap();
                blend_mask(fr, &disc_mask(0, 0, 40), RED, 1.0).unwrap();
                blend_mask(fr, &far_mask, RED, 1.0).unwrap();
            });
        }
    }
}

#[test]
fn palette_is_distinct() {
    let set: std::collections::HashSet<_> = (0..20).map(class_color).collect();
    assert_eq!(set.len(), 20);
    assert_eq!(class_color(3), class_color(23));
}

/// A 2x2 dense map (left column 0, right column 10) letterboxed from a 64x48 frame into a
/// 16x16 input: left half of the frame gets the low colour, right half the high one, in RGB
/// and in NV12 (luma per pixel, chroma per block), alpha 1.
#[test]
fn dense_map_colours_each_pixel_by_its_map_cell() {
    use crate::geometry::LetterboxTransform;
    use crate::ops::overlay::draw::colormap::Colormap;
    use crate::results::DenseMap;
    use crate::tensor::Tensor;
    use std::sync::Arc;
    let (w, h) = (64u32, 48u32);
    let map = DenseMap::host(
        Arc::from("depth"),
        Tensor::from_f32("depth", vec![1, 1, 2, 2], &[0.0, 10.0, 0.0, 10.0]),
        0,
        (1, 2, 2),
        LetterboxTransform::letterbox(w, h, 16, 16),
    );
    let lut = Colormap::Jet.lut();
    let (lo, hi) = (lut[0], lut[255]);
    for format in [VideoFormat::Rgba, VideoFormat::Nv12] {
        let mut f = TestFrame::new(format, w, h);
        f.draw(|fr| {
            Canvas::new(fr)
                .unwrap()
                .dense(&map, &lut, (0.0, 10.0), 1.0, &mut Vec::new())
        });
        for (x, y) in [(0, 0), (31, 47), (10, 20)] {
            match format {
                VideoFormat::Nv12 => assert_eq!(f.nv12_yuv(x, y), lo.yuv, "({x}, {y})"),
                _ => assert_eq!(f.rgb(x, y), lo.rgb, "({x}, {y})"),
            }
        }
        for (x, y) in [(32, 0), (63, 47), (50, 20)] {
            match format {
                VideoFormat::Nv12 => assert_eq!(f.nv12_yuv(x, y), hi.yuv, "({x}, {y})"),
                _ => assert_eq!(f.rgb(x, y), hi.rgb, "({x}, {y})"),
            }
        }
    }
}
