//! Batch preprocessing shared by the CPU path and the CUDA kernel's host side: the
//! geometry of each output row and the CPU implementation that fills an NCHW tensor.
//!
//! Output pixel `(x, y)` of frame row `r` samples the frame at
//! `((x + 0.5 - pad_x) / scale_x - 0.5, (y + 0.5 - pad_y) / scale_y - 0.5)` bilinearly,
//! clamped to the frame, if its centre lies inside the frame's content rectangle, and is
//! the padding value otherwise. The CUDA kernel computes exactly the same.

#[cfg(feature = "cuda")]
pub mod cuda;

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

/// Element types the tensor can hold, written from f32 values.
trait TensorElem: Copy {
    fn from_f32(v: f32) -> Self;
}

impl TensorElem for f32 {
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        v
    }
}

impl TensorElem for half::f16 {
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        half::f16::from_f32(v)
    }
}

/// Reusable per-thread scratch of the CPU preprocessor.
#[derive(Debug, Default)]
pub struct Scratch {
    xs: Vec<BilinearTap>,
    row: Vec<[f32; 3]>,
    /// Staging for tensors whose bytes are not aligned for their element type.
    unaligned: Vec<u8>,
}

/// Fills one tensor row (`3 x H x W` elements of `cfg.dtype`, native endian) from one frame.
pub fn fill_row(
    cfg: &PreprocessConfig,
    frame: &FrameReader<'_>,
    t: &LetterboxTransform,
    out: &mut [u8],
    scratch: &mut Scratch,
) {
    match cfg.dtype {
        DType::F16 => fill_row_as::<half::f16>(cfg, frame, t, out, scratch),
        _ => fill_row_as::<f32>(cfg, frame, t, out, scratch),
    }
}

fn fill_row_as<T: TensorElem>(
    cfg: &PreprocessConfig,
    frame: &FrameReader<'_>,
    t: &LetterboxTransform,
    out: &mut [u8],
    scratch: &mut Scratch,
) {
    let mut staging = std::mem::take(&mut scratch.unaligned);
    // SAFETY: f32 and f16 accept any bit pattern; only the aligned middle is used.
    let (pre, values, post) = unsafe { out.align_to_mut::<T>() };
    if pre.is_empty() && post.is_empty() {
        fill_planes(cfg, frame, t, values, scratch);
    } else {
        // Rare: a tensor allocation that is not aligned for T. Fill aligned staging, copy.
        staging.resize(out.len() + std::mem::align_of::<T>(), 0);
        let offset = staging.as_ptr().align_offset(std::mem::align_of::<T>());
        let region = &mut staging[offset..offset + out.len()];
        // SAFETY: as above; `region` starts aligned and has whole elements.
        let (_, values, _) = unsafe { region.align_to_mut::<T>() };
        fill_planes(cfg, frame, t, values, scratch);
        out.copy_from_slice(&staging[offset..offset + out.len()]);
    }
    scratch.unaligned = staging;
}

fn fill_planes<T: TensorElem>(
    cfg: &PreprocessConfig,
    frame: &FrameReader<'_>,
    t: &LetterboxTransform,
    out: &mut [T],
    scratch: &mut Scratch,
) {
    let (w, h) = (cfg.width as usize, cfg.height as usize);
    let plane = w * h;
    if out.len() < 3 * plane {
        return;
    }
    let affine = cfg.affine();
    let order: [usize; 3] = match cfg.color {
        ColorOrder::Rgb => [0, 1, 2],
        ColorOrder::Bgr => [2, 1, 0],
    };
    let pad: [T; 3] = std::array::from_fn(|c| T::from_f32(cfg.pad_value as f32 * affine[c].0 + affine[c].1));
    let (x0, x1) = content_span(t.pad_x, t.scale_x, frame.width(), cfg.width);
    let (y0, y1) = content_span(t.pad_y, t.scale_y, frame.height(), cfg.height);
    let (x0, x1) = (x0 as usize, x1 as usize);
    scratch.xs.clear();
    scratch.xs.extend(
        (x0..x1).map(|x| BilinearTap::new(source_coord(x as u32, t.pad_x, t.scale_x), frame.width())),
    );
    scratch.row.resize(scratch.xs.len(), [0.0; 3]);

    let (p0, rest) = out.split_at_mut(plane);
    let (p1, p2) = rest.split_at_mut(plane);
    let planes = [p0, p1, &mut p2[..plane]];
    for y in 0..h {
        let line = y * w..(y + 1) * w;
        let inside = y >= y0 as usize && y < y1 as usize && x0 < x1;
        if !inside {
            for c in 0..3 {
                planes[c][line.clone()].fill(pad[c]);
            }
            continue;
        }
        let ty = BilinearTap::new(source_coord(y as u32, t.pad_y, t.scale_y), frame.height());
        frame.sample_row_bilinear(ty, &scratch.xs, &mut scratch.row);
        for c in 0..3 {
            let dst = &mut planes[c][line.clone()];
            dst[..x0].fill(pad[c]);
            dst[x1..].fill(pad[c]);
            let (a, b, src) = (affine[c].0, affine[c].1, order[c]);
            for (d, rgb) in dst[x0..x1].iter_mut().zip(&scratch.row) {
                *d = T::from_f32(rgb[src] * a + b);
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
