//! Ground-truth invariants of the synthetic scene.

use super::*;

const SIZES: [(u32, u32); 4] = [(640, 480), (1920, 1080), (1080, 1920), (321, 241)];

fn overlap(a: &BoxF, b: &BoxF) -> bool {
    a.x0 < b.x1 && b.x0 < a.x1 && a.y0 < b.y1 && b.y0 < a.y1
}

#[test]
fn objects_are_valid_on_many_frames() {
    for cam in 0..8 {
        for &(w, h) in &SIZES {
            let min_side = w.min(h) as f32;
            for frame in (0..2000).step_by(7) {
                let objs = scene_objects(cam, frame, w, h);
                assert!((2..=4).contains(&objs.len()), "cam {cam} frame {frame}");
                for (i, o) in objs.iter().enumerate() {
                    let b = &o.bbox;
                    assert!(b.x0 >= 0.0 && b.y0 >= 0.0 && b.x1 <= w as f32 && b.y1 <= h as f32);
                    let side = b.width().max(b.height());
                    assert!(side >= 0.09 * min_side && side <= 0.25 * min_side, "{side}");
                    assert!(b.width().min(b.height()) >= 0.09 * min_side);
                    for p in &objs[i + 1..] {
                        assert!(p.class_id > o.class_id, "one per class, sorted");
                        assert!(!overlap(b, &p.bbox), "overlap cam {cam} frame {frame}");
                    }
                }
            }
        }
    }
}

#[test]
fn hd_objects_survive_letterboxing_to_640() {
    for cam in 0..16 {
        for frame in (0..600).step_by(13) {
            for o in scene_objects(cam, frame, 1920, 1080) {
                assert!(o.bbox.width() >= 72.0 && o.bbox.height() >= 72.0, "{o:?}");
            }
        }
    }
}

#[test]
fn render_matches_masks_and_boxes_exactly() {
    for cam in 0..6 {
        for &(w, h) in &SIZES[..2] {
            let frame = 17 + cam as u64 * 31;
            let mut img = vec![0u8; (w * h * 4) as usize];
            render_rgba(cam, frame, w, h, &mut img);
            let objs = scene_objects(cam, frame, w, h);
            let masks: Vec<FrameMask> = objs.iter().map(|o| object_mask(o, w, h)).collect();
            for (o, m) in objs.iter().zip(&masks) {
                // The box is tight: first/last rows and columns of the mask are used.
                assert_eq!((m.x as f32, m.y as f32), (o.bbox.x0, o.bbox.y0));
                assert_eq!(
                    (m.width as f32, m.height as f32),
                    (o.bbox.width(), o.bbox.height())
                );
                let row_used = |r: u32| (0..m.width).any(|c| m.data[(r * m.width + c) as usize] == 255);
                let col_used = |c: u32| (0..m.height).any(|r| m.data[(r * m.width + c) as usize] == 255);
                assert!(row_used(0) && row_used(m.height - 1));
                assert!(col_used(0) && col_used(m.width - 1));
                assert!(m.area() as f32 >= 0.45 * o.bbox.area(), "{:?}", o.shape);
            }
            for y in 0..h {
                for x in 0..w {
                    let i = ((y * w + x) * 4) as usize;
                    let px = [img[i], img[i + 1], img[i + 2]];
                    assert_eq!(img[i + 3], 255);
                    let owner = objs.iter().zip(&masks).find(|(_, m)| m.contains(x, y));
                    let want = owner.map_or(BACKGROUND, |(o, _)| CLASS_COLORS[o.class_id as usize]);
                    assert_eq!(px, want, "cam {cam} ({x},{y})");
                }
            }
        }
    }
}

#[test]
fn deterministic_and_camera_dependent() {
    let a = scene_objects(3, 123, 1920, 1080);
    assert_eq!(a, scene_objects(3, 123, 1920, 1080));
    assert_ne!(a, scene_objects(4, 123, 1920, 1080));
    // Shapes vary between cameras.
    let mut shapes = std::collections::HashSet::new();
    for cam in 0..8 {
        for o in scene_objects(cam, 0, 640, 480) {
            shapes.insert(o.shape);
        }
    }
    assert_eq!(shapes.len(), 3);
}

#[test]
fn motion_is_smooth_and_classes_blink() {
    for cam in 0..8 {
        let mut absent = [false; 4];
        let mut prev: Vec<SceneObject> = Vec::new();
        for frame in 0..600 {
            let objs = scene_objects(cam, frame, 1920, 1080);
            for (c, gone) in absent.iter_mut().enumerate() {
                *gone |= !objs.iter().any(|o| o.class_id == c as u32);
            }
            for o in &objs {
                if let Some(p) = prev.iter().find(|p| p.class_id == o.class_id) {
                    assert_eq!(p.shape, o.shape);
                    // The box moves at most ~25 px per frame at 1080p.
                    let d = ((o.bbox.x0 - p.bbox.x0).abs()).max((o.bbox.y0 - p.bbox.y0).abs());
                    assert!(d <= 25.0, "cam {cam} frame {frame} jump {d}");
                }
            }
            prev = objs;
        }
        assert!(absent.iter().any(|&a| a), "cam {cam}: no class ever disappears");
    }
}

#[test]
fn tiny_frames_do_not_panic() {
    for (w, h) in [(1, 1), (2, 3), (15, 400), (16, 16), (17, 33)] {
        let mut img = vec![0u8; (w * h * 4) as usize];
        render_rgba(0, 5, w, h, &mut img);
        for o in scene_objects(0, 5, w, h) {
            assert!(o.bbox.x1 <= w as f32 && o.bbox.y1 <= h as f32);
            let m = object_mask(&o, w, h);
            assert_eq!(m.data.len(), (m.width * m.height) as usize);
        }
    }
}
