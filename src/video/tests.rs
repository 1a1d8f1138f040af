//! Round trips through every supported format, odd sizes included.

use super::*;
use gst_video::{VideoFrameRef, VideoInfo};

/// RGBA image whose colour is constant on 2x2 blocks, so 4:2:0 round trips are exact up
/// to the YUV quantisation.
fn block_image(w: u32, h: u32) -> Vec<u8> {
    let mut img = vec![0u8; (w * h * 4) as usize];
    for y in 0..h {
        for x in 0..w {
            let (bx, by) = (x / 2, y / 2);
            let i = ((y * w + x) * 4) as usize;
            img[i] = (bx * 37 % 256) as u8;
            img[i + 1] = (by * 53 % 256) as u8;
            img[i + 2] = ((bx + by) * 29 % 256) as u8;
            img[i + 3] = 255;
        }
    }
    img
}

fn buffer_for(format: VideoFormat, w: u32, h: u32) -> (VideoInfo, gst::Buffer) {
    gst::init().unwrap();
    let info = VideoInfo::builder(format, w, h).build().unwrap();
    let buf = gst::Buffer::with_size(info.size()).unwrap();
    (info, buf)
}

fn close(a: [u8; 3], b: [u8; 3], tol: i32) -> bool {
    (0..3).all(|k| (a[k] as i32 - b[k] as i32).abs() <= tol)
}

#[test]
fn write_then_read_every_format() {
    for &format in supported_formats() {
        for (w, h) in [(1, 1), (7, 5), (64, 48), (33, 17)] {
            let (info, mut buf) = buffer_for(format, w, h);
            let img = block_image(w, h);
            {
                let bref = buf.get_mut().unwrap();
                let mut f = VideoFrameRef::from_buffer_ref_writable(bref, &info).unwrap();
                write_rgba(&mut f, &img).unwrap();
            }
            let f = VideoFrameRef::from_buffer_ref_readable(buf.as_ref(), &info).unwrap();
            let r = FrameReader::new(&f).unwrap();
            let tol = if Layout::of(format).unwrap().is_yuv420() {
                3
            } else {
                0
            };
            let mut row = vec![[0u8; 3]; w as usize];
            for y in 0..h {
                r.read_rgb_row(y, &mut row);
                for x in 0..w {
                    let i = ((y * w + x) * 4) as usize;
                    let want = [img[i], img[i + 1], img[i + 2]];
                    assert!(close(row[x as usize], want, tol), "{format:?} {w}x{h} ({x},{y})");
                    assert_eq!(row[x as usize], r.rgb_at(x, y));
                }
            }
        }
    }
}

#[test]
fn padding_byte_is_opaque() {
    let (info, mut buf) = buffer_for(VideoFormat::Bgrx, 2, 1);
    {
        let mut f = VideoFrameRef::from_buffer_ref_writable(buf.get_mut().unwrap(), &info).unwrap();
        write_rgba(&mut f, &[1, 2, 3, 0, 4, 5, 6, 0]).unwrap();
    }
    let map = buf.map_readable().unwrap();
    assert_eq!(&map[..8], &[3, 2, 1, 255, 6, 5, 4, 255]);
}

#[test]
fn bilinear_matches_pixels_and_midpoints() {
    for &format in supported_formats() {
        let (w, h) = (20, 12);
        let (info, mut buf) = buffer_for(format, w, h);
        let img = block_image(w, h);
        {
            let mut f = VideoFrameRef::from_buffer_ref_writable(buf.get_mut().unwrap(), &info).unwrap();
            write_rgba(&mut f, &img).unwrap();
        }
        let f = VideoFrameRef::from_buffer_ref_readable(buf.as_ref(), &info).unwrap();
        let r = FrameReader::new(&f).unwrap();
        // Integer coordinates reproduce the pixels; half-way points average neighbours.
        let xs: Vec<BilinearTap> = (0..w).map(|x| BilinearTap::new(x as f32, w)).collect();
        let mids: Vec<BilinearTap> = (0..w - 1).map(|x| BilinearTap::new(x as f32 + 0.5, w)).collect();
        let mut out = vec![[0f32; 3]; w as usize];
        for y in 0..h {
            r.sample_row_bilinear(BilinearTap::new(y as f32, h), &xs, &mut out);
            for x in 0..w {
                let p = r.rgb_at(x, y);
                for k in 0..3 {
                    assert!((out[x as usize][k] - p[k] as f32).abs() <= 2.0, "{format:?}");
                }
            }
            r.sample_row_bilinear(BilinearTap::new(y as f32, h), &mids, &mut out);
            for x in 0..w - 1 {
                let (a, b) = (r.rgb_at(x, y), r.rgb_at(x + 1, y));
                for k in 0..3 {
                    let want = (a[k] as f32 + b[k] as f32) / 2.0;
                    assert!((out[x as usize][k] - want).abs() <= 2.5, "{format:?}");
                }
            }
        }
    }
}

#[test]
fn taps_clamp_at_edges() {
    assert_eq!(
        BilinearTap::new(-3.0, 10),
        BilinearTap {
            i0: 0,
            i1: 1,
            w1: 0.0
        }
    );
    assert_eq!(
        BilinearTap::new(12.0, 10),
        BilinearTap {
            i0: 9,
            i1: 9,
            w1: 0.0
        }
    );
    assert_eq!(
        BilinearTap::new(0.4, 1),
        BilinearTap {
            i0: 0,
            i1: 0,
            w1: 0.0
        }
    );
}

#[test]
fn rejects_unsupported_and_short_planes() {
    let data = [0u8; 10];
    assert!(matches!(
        FrameReader::from_planes(VideoFormat::Yuy2, 2, 2, &[&data], &[4]),
        Err(VideoError::Unsupported(_))
    ));
    assert!(matches!(
        FrameReader::from_planes(VideoFormat::Rgba, 2, 2, &[&data], &[8]),
        Err(VideoError::TooSmall { .. })
    ));
}
