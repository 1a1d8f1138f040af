use super::*;
use crate::analytics::{config, ZoneState};
use crate::messages::ZoneCount;
use crate::ops::overlay::draw::Canvas;
use crate::ops::overlay::{draw_analytics, draw_frame, execute, OverlayCommands};
use crate::video::color::YuvCoefficients;
use crate::video::PixelsMut;
use gst_video::{VideoFormat, VideoFrameRef, VideoInfo};
use std::sync::Arc;

const RULES: &str = r#"
[[camera]]
id = 0
[[camera.zone]]
name = "dock"
polygon = [[20, 30], [120, 30], [120, 90], [20, 90]]
occupancy-threshold = 2
[[camera.line]]
name = "gate"
from = [260, 10]
to = [260, 110]
"#;

fn analytics(total: u32, alarm: bool) -> FrameAnalytics {
    let c = config::Config::parse(RULES).unwrap();
    FrameAnalytics {
        zones: vec![ZoneCount {
            zone: "dock".into(),
            label: "red".into(),
            class_id: 0,
            count: total,
        }],
        events: Vec::new(),
        rules: Some(Arc::new(c.cameras[0].clone())),
        zone_states: vec![ZoneState { total, alarm }],
        line_totals: vec![(3, 1)],
        ..Default::default()
    }
}

fn black(format: VideoFormat, w: u32, h: u32) -> (VideoInfo, gst::Buffer) {
    gst::init().unwrap();
    let info = VideoInfo::builder(format, w, h).build().unwrap();
    let mut buf = gst::Buffer::with_size(info.size()).unwrap();
    buf.get_mut().unwrap().map_writable().unwrap().fill(0);
    (info, buf)
}

fn rgba_at(buf: &gst::Buffer, w: u32, x: u32, y: u32) -> [u8; 3] {
    let m = buf.map_readable().unwrap();
    let i = ((y * w + x) * 4) as usize;
    [m[i], m[i + 1], m[i + 2]]
}

fn draw_cpu(info: &VideoInfo, buf: &mut gst::Buffer, a: &FrameAnalytics) {
    let mut f = VideoFrameRef::from_buffer_ref_writable(buf.get_mut().unwrap(), info).unwrap();
    let mut canvas = Canvas::new(&mut f).unwrap();
    draw_analytics(&mut canvas, a, &OverlayStyle::default(), &mut String::new());
}

#[test]
fn zone_outline_line_arrow_and_labels_are_where_the_rules_say() {
    let (w, h) = (320, 120);
    let (info, mut buf) = black(VideoFormat::Rgba, w, h);
    draw_cpu(&info, &mut buf, &analytics(1, false));
    // Zone edges (stroke 2 centred on the edge): left edge x = 20, bottom edge y = 90.
    assert_eq!(rgba_at(&buf, w, 20, 60), ZONE_COLOR, "left edge");
    assert_eq!(rgba_at(&buf, w, 19, 60), ZONE_COLOR, "left edge, 2 px");
    assert_eq!(rgba_at(&buf, w, 70, 90), ZONE_COLOR, "bottom edge");
    assert_eq!(rgba_at(&buf, w, 120, 50), ZONE_COLOR, "right edge");
    assert_eq!(
        rgba_at(&buf, w, 70, 60),
        [0, 0, 0],
        "inside untouched (outline only)"
    );
    assert_eq!(rgba_at(&buf, w, 10, 60), [0, 0, 0], "outside untouched");
    // Label "dock 1 red 1" on the zone colour just inside the top-left corner.
    let label_w = font::text_width("dock 1 red 1", 2);
    let (lx, ly) = (22, 32);
    let mut bg = 0;
    let mut ink = 0;
    for y in ly..ly + font::GLYPH_H * 2 {
        for x in lx..lx + label_w {
            match rgba_at(&buf, w, x, y) {
                ZONE_COLOR => bg += 1,
                [0, 0, 0] => ink += 1,
                c => panic!("label pixel {x},{y} is {c:?}"),
            }
        }
    }
    assert!(bg > 0 && ink > 50, "label background {bg} and text {ink} pixels");
    // The line x = 260 from y 10 to 110; it points down, so the forward side is the left:
    // the arrow runs from (260, 60) to (236, 60).
    assert_eq!(rgba_at(&buf, w, 260, 30), LINE_COLOR);
    assert_eq!(
        rgba_at(&buf, w, 245, 60),
        LINE_COLOR,
        "arrow shaft towards the forward side"
    );
    assert_eq!(
        rgba_at(&buf, w, 275, 60),
        [0, 0, 0],
        "nothing on the backward side"
    );
    // Totals beside the end point (262, 94): "gate fwd 3 bwd 1" on the line colour.
    assert_eq!(rgba_at(&buf, w, 263, 95), LINE_COLOR);
}

#[test]
fn a_zone_at_its_threshold_is_drawn_in_the_alarm_colour() {
    let (w, h) = (320, 120);
    let (info, mut buf) = black(VideoFormat::Rgba, w, h);
    draw_cpu(&info, &mut buf, &analytics(2, true));
    assert_eq!(rgba_at(&buf, w, 20, 60), ALARM_COLOR);
    assert_eq!(rgba_at(&buf, w, 70, 90), ALARM_COLOR);
}

#[test]
fn segments_cover_their_pixels_in_runs() {
    struct Fills(Vec<[i64; 4]>);
    impl Painter for Fills {
        fn mask(&mut self, _: &crate::results::FrameMask, _: [u8; 3], _: f32) {}
        fn rect_outline(&mut self, _: &crate::geometry::BoxF, _: [u8; 3], _: u32) {}
        fn text(&mut self, _: i32, _: i32, _: &str, _: [u8; 3], _: u32, _: Option<[u8; 3]>) {}
        fn fill(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, _: [u8; 3]) {
            self.0.push([x0, y0, x1, y1]);
        }
    }
    let mut f = Fills(Vec::new());
    segment(&mut f, (0.0, 0.0), (100.0, 0.0), 2, [1, 1, 1]);
    assert_eq!(f.0, [[-1, -1, 101, 1]], "a horizontal line is one rectangle");
    f.0.clear();
    segment(&mut f, (0.0, 0.0), (100.0, 10.0), 2, [1, 1, 1]);
    assert_eq!(f.0.len(), 11, "one run per row of a flat line");
    let covered = |x: i64, y: i64| {
        f.0.iter()
            .any(|r| (r[0]..r[2]).contains(&x) && (r[1]..r[3]).contains(&y))
    };
    assert!((0..=100).all(|x| covered(x, (x as f32 / 10.0).round() as i64)));
    f.0.clear();
    segment(&mut f, (5.0, 100.0), (5.0, 0.0), 3, [1, 1, 1]);
    assert_eq!(f.0, [[4, -1, 7, 102]], "vertical, either direction");
    f.0.clear();
    segment(&mut f, (f32::NAN, 0.0), (5.0, 0.0), 3, [1, 1, 1]);
    assert!(f.0.is_empty(), "no drawing from non-finite points");
}

#[test]
fn commands_draw_the_same_bytes_as_the_canvas() {
    // The CUDA overlay executes the command list; `execute` is its CPU twin.
    let style = OverlayStyle::default();
    for format in crate::video::supported_formats() {
        for (w, h) in [(320, 120), (161, 97)] {
            for a in [analytics(1, false), analytics(2, true)] {
                let (info, mut cpu) = black(*format, w, h);
                let mut cmd = cpu.copy_deep().unwrap();
                {
                    let mut f =
                        VideoFrameRef::from_buffer_ref_writable(cpu.get_mut().unwrap(), &info).unwrap();
                    let mut canvas = Canvas::new(&mut f).unwrap();
                    draw_analytics(&mut canvas, &a, &style, &mut String::new());
                    draw_frame(&mut canvas, &[], &style, &mut String::new());
                }
                let mut list = OverlayCommands::default();
                list.add_frame_with_analytics(
                    w,
                    h,
                    &YuvCoefficients::for_info(&info),
                    None,
                    Some(&a),
                    &[],
                    &style,
                );
                let fc = list.frames[0];
                assert!(fc.count > 10, "commands recorded");
                let cmds = &list.commands[fc.first as usize..(fc.first + fc.count) as usize];
                {
                    let mut f =
                        VideoFrameRef::from_buffer_ref_writable(cmd.get_mut().unwrap(), &info).unwrap();
                    execute(&mut PixelsMut::new(&mut f).unwrap(), cmds, &list.mask_bytes);
                }
                let (ma, mb) = (cpu.map_readable().unwrap(), cmd.map_readable().unwrap());
                if let Some(i) = ma.iter().zip(mb.iter()).position(|(x, y)| x != y) {
                    panic!("{format:?} {w}x{h}: byte {i} differs");
                }
            }
        }
    }
}
