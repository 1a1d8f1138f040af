//! The command list executed on the CPU must give the bytes [`draw_frame`] gives.

use super::*;
use crate::results::DeviceMask;
use crate::video::color::YuvCoefficients;
use gst_video::{VideoFormat, VideoFrameRef, VideoInfo};
use std::sync::Arc;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> i64 {
        (self.next() % n.max(1)) as i64
    }
}

fn detection(class_id: u32, bbox: BoxF, mask: Option<FrameMask>, object_id: i64) -> Detection {
    Detection {
        model: Arc::from("m"),
        class_id,
        label: Arc::from(["person", "car", "dog", "tråd"][class_id as usize % 4]),
        confidence: 0.5 + class_id as f32 / 100.0,
        bbox,
        object_id,
        query: 0,
        mask_source: None,
        mask,
        secondary: Vec::new(),
    }
}

/// Overlapping random boxes and masks, some partly or fully outside the frame, plus
/// degenerate boxes.
fn random_detections(rng: &mut Rng, w: u32, h: u32, n: usize) -> Vec<Detection> {
    let (wi, hi) = (w as i64, h as i64);
    let mut out = Vec::new();
    for i in 0..n {
        let x0 = rng.below(wi as u64 + 40) - 20;
        let y0 = rng.below(hi as u64 + 40) - 20;
        let bw = 1 + rng.below(wi as u64 / 2 + 2);
        let bh = 1 + rng.below(hi as u64 / 2 + 2);
        let bbox = BoxF::new(
            x0 as f32 + 0.3,
            y0 as f32 - 0.4,
            (x0 + bw) as f32 + 0.5,
            (y0 + bh) as f32,
        );
        let mask = (i % 3 != 2).then(|| {
            let (mx, my) = (rng.below(wi as u64 + 2) as u32, rng.below(hi as u64 + 2) as u32);
            let (mw, mh) = (1 + rng.below(40) as u32, 1 + rng.below(30) as u32);
            let data = (0..mw * mh).map(|_| (rng.next() & 0xff) as u8).collect();
            FrameMask {
                x: mx,
                y: my,
                width: mw,
                height: mh,
                data,
                device: None,
            }
        });
        let mut d = detection(i as u32, bbox, mask, if i % 2 == 0 { i as i64 } else { -1 });
        if i % 2 == 1 {
            // Keypoints of a secondary model, some outside the frame or not finite.
            let keypoints = (0..4)
                .map(|k| crate::results::Keypoint {
                    name: Arc::from(k.to_string()),
                    x: if k == 3 && i % 4 == 1 {
                        f32::NAN
                    } else {
                        rng.below(wi as u64 + 10) as f32 - 5.3
                    },
                    y: rng.below(hi as u64 + 10) as f32 - 4.6,
                    score: 1.0,
                })
                .collect();
            d.secondary.push(crate::results::ObjectResult {
                model: Arc::from("landmarks"),
                keypoints,
                attribute: None,
            });
        }
        out.push(d);
    }
    for bbox in [
        BoxF::new(-1e9, -1e9, 1e9, 1e9),
        BoxF::new(f32::NAN, 1.0, 4.0, 4.0),
        BoxF::new(2.0, 2.0, 3.0, 3.0),
        BoxF::new(wi as f32 - 1.0, hi as f32 - 1.0, wi as f32 + 9.0, hi as f32 + 9.0),
    ] {
        out.push(detection(7, bbox, None, 3));
    }
    out
}

fn frame(format: VideoFormat, w: u32, h: u32, seed: u64) -> (VideoInfo, gst::Buffer) {
    gst::init().unwrap();
    let info = VideoInfo::builder(format, w, h).build().unwrap();
    let mut buf = gst::Buffer::with_size(info.size()).unwrap();
    let mut rng = Rng(seed);
    for chunk in buf.get_mut().unwrap().map_writable().unwrap().chunks_mut(8) {
        let v = rng.next().to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
    (info, buf)
}

fn draw_cpu(info: &VideoInfo, buf: &mut gst::Buffer, dets: &[Detection], style: &OverlayStyle) {
    let mut f = VideoFrameRef::from_buffer_ref_writable(buf.get_mut().unwrap(), info).unwrap();
    let mut canvas = Canvas::new(&mut f).unwrap();
    draw_frame(&mut canvas, dets, style, &mut String::new());
}

fn draw_commands(info: &VideoInfo, buf: &mut gst::Buffer, list: &OverlayCommands, index: usize) {
    let fc = list.frames[index];
    let cmds = &list.commands[fc.first as usize..(fc.first + fc.count) as usize];
    let mut f = VideoFrameRef::from_buffer_ref_writable(buf.get_mut().unwrap(), info).unwrap();
    let mut px = PixelsMut::new(&mut f).unwrap();
    execute(&mut px, cmds, &list.mask_bytes);
}

#[test]
fn commands_draw_the_same_bytes_as_the_canvas() {
    let mut rng = Rng(0x5eed);
    let styles = [
        OverlayStyle::default(),
        OverlayStyle {
            line_width: 7,
            mask_alpha: 1.0,
            text_scale: 1,
            ..Default::default()
        },
        OverlayStyle {
            line_width: 1,
            mask_alpha: 0.13,
            text_scale: 3,
            draw_masks: false,
            ..Default::default()
        },
    ];
    let mut list = OverlayCommands::default();
    let mut checked = 0;
    for format in crate::video::supported_formats() {
        for (w, h) in [(1, 1), (7, 5), (64, 48), (161, 97)] {
            for style in &styles {
                // Several frames in one list, as for a batch.
                list.clear();
                let frames: Vec<_> = (0..3)
                    .map(|k| {
                        let n = 2 + 5 * k;
                        let dets = random_detections(&mut rng, w, h, n);
                        list.add_frame(w, h, &YuvCoefficients::size_default(h), &dets, style);
                        dets
                    })
                    .collect();
                assert_eq!(list.frames.len(), 3);
                for (k, dets) in frames.iter().enumerate() {
                    let (info, mut a) = frame(*format, w, h, 11 + k as u64);
                    let mut b = a.copy_deep().unwrap();
                    draw_cpu(&info, &mut a, dets, style);
                    draw_commands(&info, &mut b, &list, k);
                    let (ma, mb) = (a.map_readable().unwrap(), b.map_readable().unwrap());
                    if let Some(i) = ma.iter().zip(mb.iter()).position(|(x, y)| x != y) {
                        panic!("{format:?} {w}x{h} {style:?} frame {k}: byte {i} differs");
                    }
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 8 * 4 * 3 * 3);
}

#[test]
fn scene_frames_match_and_bounds_hold_every_command() {
    let style = OverlayStyle::default();
    let mut list = OverlayCommands::default();
    for format in [VideoFormat::Nv12, VideoFormat::Rgba] {
        for frame_no in [0u64, 17, 230] {
            let (w, h) = (641, 479);
            let dets = crate::scene::scene_detections(2, frame_no, w, h);
            assert!(!dets.is_empty());
            list.clear();
            list.add_frame(w, h, &YuvCoefficients::size_default(h), &dets, &style);
            let fc = list.frames[0];
            assert!(fc.count > 0);
            for c in &list.commands {
                assert!(c.x0 < c.x1 && c.y0 < c.y1);
                assert!(c.x0 >= fc.bounds[0] && c.y0 >= fc.bounds[1]);
                assert!(c.x1 <= fc.bounds[2] && c.y1 <= fc.bounds[3]);
                assert!(c.x1 <= w as i32 + 1 && c.y1 <= h as i32 + 1);
            }
            let masks = list.commands.iter().filter(|c| c.kind == CMD_MASK_HOST).count();
            assert_eq!(masks, dets.len());
            let (info, mut a) = frame(format, w, h, frame_no);
            let mut b = a.copy_deep().unwrap();
            draw_cpu(&info, &mut a, &dets, &style);
            draw_commands(&info, &mut b, &list, 0);
            assert!(a.map_readable().unwrap().as_slice() == b.map_readable().unwrap().as_slice());
        }
    }
}

#[test]
fn command_list_shapes() {
    let mut list = OverlayCommands::default();
    let style = OverlayStyle::default();
    // Nothing to draw: an empty frame entry.
    list.add_frame(100, 100, &YuvCoefficients::size_default(100), &[], &style);
    assert_eq!(list.frames[0], FrameCommands::default());
    assert!(list.is_empty());
    // A box fully inside: 4 bands, a label background and one glyph per visible char.
    let d = detection(1, BoxF::new(10.0, 40.0, 60.0, 90.0), None, -1);
    list.add_frame(
        100,
        100,
        &YuvCoefficients::size_default(100),
        std::slice::from_ref(&d),
        &style,
    );
    let f = list.frames[1];
    let cmds = &list.commands[f.first as usize..];
    assert_eq!(f.count as usize, cmds.len());
    let label = "car 51%";
    let glyphs = label.chars().filter(|&c| c != ' ').count();
    assert_eq!(cmds.len(), 4 + 1 + glyphs);
    assert!(cmds[..5].iter().all(|c| c.kind == CMD_RECT && c.alpha == 255));
    assert_eq!((cmds[4].x0, cmds[4].y0, cmds[4].y1), (10, 24, 40));
    assert_eq!(cmds[4].x1, 10 + font::text_width(label, 2) as i32);
    let g = cmds[5];
    assert_eq!((g.kind, g.ox, g.oy, g.a), (CMD_GLYPH, 10, 24, 2));
    assert_eq!(g.b as usize, font::glyph_index('c'));
    assert_eq!(&g.rgb[..3], &[255, 255, 255]);
    assert_eq!(
        &g.yuv[..3],
        &crate::video::color::YuvCoefficients::BT601_LIMITED.rgb_to_yuv([255, 255, 255])
    );
    // Masks: host bits are packed; device masks keep their address; masks fully off the
    // frame and short data are skipped.
    list.clear();
    let host = FrameMask {
        x: 3,
        y: 4,
        width: 2,
        height: 2,
        data: vec![255, 0, 0, 255],
        device: None,
    };
    let dev = FrameMask {
        data: Vec::new(),
        device: Some(DeviceMask {
            ptr: 0xdead_0000,
            ready_event: 0,
            keepalive: Arc::new(()),
        }),
        ..host.clone()
    };
    let off = FrameMask {
        x: 200,
        ..host.clone()
    };
    let short = FrameMask {
        data: vec![255],
        ..host.clone()
    };
    let style = OverlayStyle {
        draw_boxes: false,
        draw_labels: false,
        ..Default::default()
    };
    let dets: Vec<_> = [host.clone(), dev, off, short, host]
        .into_iter()
        .map(|m| detection(0, BoxF::new(0.0, 0.0, 1.0, 1.0), Some(m), -1))
        .collect();
    list.add_frame(100, 100, &YuvCoefficients::size_default(100), &dets, &style);
    let kinds: Vec<_> = list.commands.iter().map(|c| (c.kind, c.mask)).collect();
    assert_eq!(
        kinds,
        [
            (CMD_MASK_HOST, 0),
            (CMD_MASK_DEVICE, 0xdead_0000),
            (CMD_MASK_HOST, 4)
        ]
    );
    assert_eq!(list.mask_bytes, [255, 0, 0, 255, 255, 0, 0, 255]);
    assert_eq!(list.commands[0].alpha, 102);
    assert_eq!(list.frames[0].bounds, [3, 4, 5, 6]);
    // An odd-sized frame: mask bounds reach the chroma grid, not past it.
    list.clear();
    let edge = FrameMask {
        x: 5,
        y: 5,
        width: 4,
        height: 4,
        data: vec![255; 16],
        device: None,
    };
    list.add_frame(
        7,
        7,
        &YuvCoefficients::size_default(7),
        &[detection(0, BoxF::new(0.0, 0.0, 1.0, 1.0), Some(edge), -1)],
        &style,
    );
    assert_eq!(list.frames[0].bounds, [5, 5, 8, 8]);
}

/// Runs `f` on the pixels of `buf`.
fn on_pixels(info: &VideoInfo, buf: &mut gst::Buffer, f: impl FnOnce(&mut PixelsMut)) {
    let mut frame = VideoFrameRef::from_buffer_ref_writable(buf.get_mut().unwrap(), info).unwrap();
    f(&mut PixelsMut::new(&mut frame).unwrap());
}

/// A random `channels x mh x mw` map of a `w x h` frame (letterboxed or stretched into a
/// random model size), with some non-finite values.
fn random_map(rng: &mut Rng, w: u32, h: u32) -> DenseMap {
    use crate::geometry::LetterboxTransform;
    let (mw, mh, c) = (
        1 + rng.below(40) as usize,
        1 + rng.below(40) as usize,
        1 + rng.below(2) as usize,
    );
    let values: Vec<f32> = (0..c * mw * mh)
        .map(|_| match rng.below(50) {
            0 => f32::NAN,
            1 => f32::INFINITY,
            _ => rng.below(2000) as f32 / 100.0 - 5.0,
        })
        .collect();
    let (model_w, model_h) = (8 + rng.below(700) as u32, 8 + rng.below(700) as u32);
    let transform = if rng.below(2) == 0 {
        LetterboxTransform::letterbox(w, h, model_w, model_h)
    } else {
        LetterboxTransform::stretch(w, h, model_w, model_h)
    };
    let tensor = crate::tensor::Tensor::from_f32("depth", vec![1, c, mh, mw], &values);
    DenseMap::host(Arc::from("depth"), tensor, 0, (c, mh, mw), transform)
}

/// The dense layer executed with the kernel's rules, then the commands, gives the bytes of
/// the canvas (dense map, then detections) for every format, odd sizes and ranges.
#[test]
fn dense_layer_draws_the_same_bytes_as_the_canvas() {
    use crate::ops::overlay::draw::colormap::Colormap;
    let mut rng = Rng(0xde45e);
    let style = OverlayStyle::default();
    let mut list = OverlayCommands::default();
    let (mut checked, mut coloured) = (0u64, 0u64);
    for format in crate::video::supported_formats() {
        for (w, h) in [(1, 1), (7, 5), (64, 48), (161, 97)] {
            for (k, colormap) in [Colormap::Turbo, Colormap::Jet, Colormap::Gray]
                .into_iter()
                .enumerate()
            {
                let lut = colormap.lut();
                let map = random_map(&mut rng, w, h);
                let range = match k {
                    0 => map.stats().map(|(lo, _, hi)| (lo, hi)).unwrap_or((0.0, 1.0)),
                    1 => (2.5, 7.0),
                    _ => (3.0, 3.0),
                };
                let alpha = [0.5, 1.0, 0.13][k];
                let dets = random_detections(&mut rng, w, h, 3);
                list.clear();
                list.set_dense_lut(&lut);
                let dense = DenseDraw {
                    map: &map,
                    range,
                    alpha,
                };
                list.add_frame_with_dense(
                    w,
                    h,
                    &YuvCoefficients::size_default(h),
                    Some(dense),
                    &dets,
                    &style,
                );
                let fc = list.frames[0];
                assert_eq!(fc.dense, 0);
                assert_eq!(&fc.bounds[..2], &[0, 0]);
                assert!(fc.bounds[2] >= w as i32 && fc.bounds[3] >= h as i32);
                let (info, mut a) = frame(*format, w, h, 5 + checked);
                let mut b = a.copy_deep().unwrap();
                let original = a.copy_deep().unwrap();
                let mut draw_cpu = |dense: bool| {
                    let mut f = VideoFrameRef::from_buffer_ref_writable(a.get_mut().unwrap(), &info).unwrap();
                    let mut canvas = Canvas::new(&mut f).unwrap();
                    if dense {
                        canvas.dense(&map, &lut, range, alpha, &mut Vec::new());
                    } else {
                        draw_frame(&mut canvas, &dets, &style, &mut String::new());
                    }
                };
                draw_cpu(true);
                draw_cpu(false);
                on_pixels(&info, &mut b, |px| execute_dense(px, &list.dense[0], &list));
                let layered =
                    b.map_readable().unwrap().as_slice() != original.map_readable().unwrap().as_slice();
                coloured += u64::from(layered);
                let cmds = &list.commands[fc.first as usize..(fc.first + fc.count) as usize];
                on_pixels(&info, &mut b, |px| execute(px, cmds, &list.mask_bytes));
                let (ma, mb) = (a.map_readable().unwrap(), b.map_readable().unwrap());
                if let Some(i) = ma.iter().zip(mb.iter()).position(|(x, y)| x != y) {
                    panic!("{format:?} {w}x{h} {colormap:?}: byte {i} differs");
                }
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 8 * 4 * 3);
    // The maps cover the frames: the colour map changed nearly every frame.
    assert!(coloured >= checked * 3 / 4, "{coloured} of {checked}");
}

#[test]
fn dense_layers_in_the_command_list() {
    use crate::geometry::LetterboxTransform;
    use crate::ops::overlay::draw::colormap::Colormap;
    use crate::results::DeviceDense;
    let style = OverlayStyle::default();
    let tr = LetterboxTransform::letterbox(64, 48, 16, 16);
    let host = DenseMap::host(
        Arc::from("depth"),
        crate::tensor::Tensor::from_f32(
            "depth",
            vec![2, 1, 2, 2],
            &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
        ),
        1,
        (1, 2, 2),
        tr,
    );
    let draw = |map| DenseDraw {
        map,
        range: (0.0, 7.0),
        alpha: 0.5,
    };
    let mut list = OverlayCommands::default();
    // No colour map set: nothing to draw.
    list.add_frame_with_dense(
        64,
        48,
        &YuvCoefficients::size_default(48),
        Some(draw(&host)),
        &[],
        &style,
    );
    assert_eq!(list.frames[0].dense, -1);
    assert!(list.is_empty());
    list.clear();
    list.set_dense_lut(&Colormap::Turbo.lut());
    // The map's YUV is made per colour space when a frame of that space needs it.
    assert!(list.dense_lut.is_empty());
    // Host values of the map's row are copied; a device map keeps its address and event;
    // a map with values nowhere draws nothing.
    let mut device = host.clone();
    device.tensor = crate::tensor::Tensor {
        storage: crate::tensor::TensorStorage::Device {
            ptr: 0xbeef_0000,
            len: 32,
            keepalive: Arc::new(()),
        },
        ..device.tensor
    };
    let nowhere = device.clone();
    device.device = Some(DeviceDense {
        ptr: 0xbeef_0010,
        dtype: crate::tensor::DType::F16,
        ready_event: 0x77,
        keepalive: Arc::new(()),
    });
    list.add_frame_with_dense(
        64,
        48,
        &YuvCoefficients::size_default(48),
        Some(draw(&host)),
        &[],
        &style,
    );
    list.add_frame_with_dense(
        63,
        47,
        &YuvCoefficients::size_default(47),
        Some(draw(&device)),
        &[],
        &style,
    );
    list.add_frame_with_dense(
        64,
        48,
        &YuvCoefficients::size_default(48),
        Some(draw(&nowhere)),
        &[],
        &style,
    );
    assert_eq!(list.dense_values, [4.0, 5.0, 6.0, 7.0]);
    assert_eq!(list.dense.len(), 2);
    let (h, d) = (list.dense[0], list.dense[1]);
    assert_eq!((h.source, h.values, h.f16, h.alpha), (DENSE_HOST, 0, 0, 128));
    assert_eq!((d.source, d.values, d.f16), (DENSE_DEVICE, 0xbeef_0010, 1));
    assert_eq!((h.width, h.height, h.model_w, h.lo, h.hi), (2, 2, 16.0, 0.0, 7.0));
    assert_eq!(list.device_events, [0x77]);
    // Both frames are BT.601 limited (SD): one block of the colour map.
    assert_eq!(list.dense_lut.len(), 256);
    assert_eq!((h.lut, d.lut), (0, 0));
    let turbo = Colormap::Turbo.lut();
    let e = list.dense_lut[200];
    assert_eq!([e[0], e[1], e[2]], turbo[200].rgb);
    assert_eq!([e[4], e[5], e[6]], turbo[200].yuv);
    // A BT.709 frame gets a block of its own, converted with its matrix.
    let hd = YuvCoefficients::size_default(720);
    list.add_frame_with_dense(1280, 720, &hd, Some(draw(&host)), &[], &style);
    assert_eq!(list.dense_lut.len(), 512);
    assert_eq!(list.dense.last().unwrap().lut, 1);
    let e = list.dense_lut[256 + 200];
    assert_eq!([e[4], e[5], e[6]], hd.rgb_to_yuv(turbo[200].rgb));
    assert_ne!(hd.rgb_to_yuv(turbo[200].rgb), turbo[200].yuv);
    let dense: Vec<_> = list.frames.iter().take(3).map(|f| (f.dense, f.bounds)).collect();
    assert_eq!(
        dense,
        [(0, [0, 0, 64, 48]), (1, [0, 0, 63, 47]), (-1, [0, 0, 0, 0])]
    );
    assert!(!list.is_empty());
}
