//! Batch preprocessing shared by the CPU path and the CUDA kernel's host side: the
//! geometry of each output row and the CPU implementation that fills an NCHW tensor.
//!
//! Output pixel `(x, y)` of frame row `r` samples the frame at
//! `((x + 0.5 - pad_x) / scale_x - 0.5, (y + 0.5 - pad_y) / scale_y - 0.5)` bilinearly,
//! clamped to the frame, if its centre lies inside the frame's content rectangle, and is
//! the padding value otherwise. The CUDA kernel computes exactly the same.

use crate::config::{ColorOrder, PreprocessConfig};
use crate::geometry::LetterboxTransform;
use crate::tensor::DType;
use crate::video::{BilinearTap, FrameReader};

/// Output columns / rows `[start, end)` whose pixel centres fall inside the content.
pub fn content_span(pad: f32, scale: f32, frame_len: u32, out_len: u32) -> (u32, u32) {
    let start = (pad - 0.5).ceil().max(0.0);
    let end = (pad + frame_len as f32 * scale - 0.5).ceil().max(0.0);
    (start.min(out_len as f32) as u32, end.min(out_len as f32) as u32)
}

/// Source coordinate of output index `i`.
#[inline]
pub fn source_coord(i: u32, pad: f32, scale: f32) -> f32 {
    (i as f32 + 0.5 - pad) / scale - 0.5
}

/// Writes planar values of one tensor row (one frame) into `out`, which holds
/// `3 * height * width` elements of `cfg.dtype`.
struct RowWriter<'a> {
    out: &'a mut [u8],
    dtype: DType,
    plane: usize,
}

impl RowWriter<'_> {
    #[inline]
    fn put(&mut self, c: usize, idx: usize, v: f32) {
        let i = c * self.plane + idx;
        match self.dtype {
            DType::F16 => self.out[i * 2..i * 2 + 2].copy_from_slice(&half::f16::from_f32(v).to_ne_bytes()),
            _ => self.out[i * 4..i * 4 + 4].copy_from_slice(&v.to_ne_bytes()),
        }
    }
}

/// Reusable per-thread scratch of the CPU preprocessor.
#[derive(Debug, Default)]
pub struct Scratch {
    xs: Vec<BilinearTap>,
    row: Vec<[f32; 3]>,
}

/// Fills one tensor row (`3 x H x W` elements) from one frame.
pub fn fill_row(
    cfg: &PreprocessConfig,
    frame: &FrameReader<'_>,
    t: &LetterboxTransform,
    out: &mut [u8],
    scratch: &mut Scratch,
) {
    let (w, h) = (cfg.width, cfg.height);
    let affine = cfg.affine();
    let order: [usize; 3] = match cfg.color {
        ColorOrder::Rgb => [0, 1, 2],
        ColorOrder::Bgr => [2, 1, 0],
    };
    let pad: [f32; 3] = std::array::from_fn(|c| cfg.pad_value as f32 * affine[c].0 + affine[c].1);
    let mut wr = RowWriter {
        out,
        dtype: cfg.dtype,
        plane: (w * h) as usize,
    };
    let (x0, x1) = content_span(t.pad_x, t.scale_x, frame.width(), w);
    let (y0, y1) = content_span(t.pad_y, t.scale_y, frame.height(), h);
    scratch.xs.clear();
    scratch
        .xs
        .extend((x0..x1).map(|x| BilinearTap::new(source_coord(x, t.pad_x, t.scale_x), frame.width())));
    scratch.row.resize(scratch.xs.len(), [0.0; 3]);

    for y in 0..h {
        let base = (y * w) as usize;
        let inside = y >= y0 && y < y1 && x0 < x1;
        if inside {
            let ty = BilinearTap::new(source_coord(y, t.pad_y, t.scale_y), frame.height());
            frame.sample_row_bilinear(ty, &scratch.xs, &mut scratch.row);
        }
        for x in 0..w {
            let px = if inside && x >= x0 && x < x1 {
                Some(scratch.row[(x - x0) as usize])
            } else {
                None
            };
            for c in 0..3 {
                let v = match px {
                    Some(rgb) => rgb[order[c]] * affine[c].0 + affine[c].1,
                    None => pad[c],
                };
                wr.put(c, base + x as usize, v);
            }
        }
    }
}

/// Fills a whole batch tensor, frames spread over the available cores.
pub fn fill_batch(
    cfg: &PreprocessConfig,
    frames: &[FrameReader<'_>],
    transforms: &[LetterboxTransform],
    out: &mut [u8],
    scratch: &mut [Scratch],
) {
    let row_bytes = 3 * (cfg.width * cfg.height) as usize * cfg.dtype.size();
    let rows: Vec<(&FrameReader, &LetterboxTransform, &mut [u8])> = frames
        .iter()
        .zip(transforms)
        .zip(out.chunks_exact_mut(row_bytes))
        .map(|((f, t), o)| (f, t, o))
        .collect();
    let workers = scratch.len().max(1).min(rows.len().max(1));
    if workers <= 1 {
        let s = &mut scratch[0];
        for (f, t, o) in rows {
            fill_row(cfg, f, t, o, s);
        }
        return;
    }
    let mut buckets: Vec<Vec<(&FrameReader, &LetterboxTransform, &mut [u8])>> =
        (0..workers).map(|_| Vec::new()).collect();
    for (i, r) in rows.into_iter().enumerate() {
        buckets[i % workers].push(r);
    }
    std::thread::scope(|s| {
        for (bucket, sc) in buckets.into_iter().zip(scratch.iter_mut()) {
            s.spawn(move || {
                for (f, t, o) in bucket {
                    fill_row(cfg, f, t, o, sc);
                }
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_span_matches_letterbox() {
        let t = LetterboxTransform::letterbox(1920, 1080, 640, 640);
        assert_eq!(content_span(t.pad_x, t.scale_x, 1920, 640), (0, 640));
        assert_eq!(content_span(t.pad_y, t.scale_y, 1080, 640), (140, 500));
    }

    #[test]
    fn fills_letterboxed_rgba_frame() {
        // 4x2 RGBA frame, all red except one green column, into an 8x8 f32 tensor.
        let (fw, fh) = (4u32, 2u32);
        let mut px = vec![0u8; (fw * fh * 4) as usize];
        for y in 0..fh {
            for x in 0..fw {
                let i = ((y * fw + x) * 4) as usize;
                px[i..i + 4].copy_from_slice(if x == 3 {
                    &[0, 255, 0, 255]
                } else {
                    &[255, 0, 0, 255]
                });
            }
        }
        let frame =
            FrameReader::from_planes(gst_video::VideoFormat::Rgba, fw, fh, &[&px], &[(fw * 4) as usize])
                .unwrap();
        let cfg = PreprocessConfig {
            width: 8,
            height: 8,
            ..Default::default()
        };
        let t = cfg.transform(fw, fh);
        let mut out = vec![0u8; 3 * 64 * 4];
        fill_row(&cfg, &frame, &t, &mut out, &mut Scratch::default());
        let v: Vec<f32> = out
            .chunks_exact(4)
            .map(|c| f32::from_ne_bytes(c.try_into().unwrap()))
            .collect();
        let at = |c: usize, x: usize, y: usize| v[c * 64 + y * 8 + x];
        // Scale 2, pad_y 2: rows 0-1 and 6-7 are padding (114/255).
        assert!((at(0, 0, 0) - 114.0 / 255.0).abs() < 1e-6);
        assert!((at(0, 0, 3) - 1.0).abs() < 1e-6 && at(1, 0, 3).abs() < 1e-6);
        assert!((at(1, 7, 4) - 1.0).abs() < 1e-6, "green column at the right edge");
        assert!((at(0, 7, 6) - 114.0 / 255.0).abs() < 1e-6);
    }
}
