//! The mosaic of `trttiler`: where each source goes and how its frame is drawn into its
//! tile (the CPU implementation, here). The CUDA kernel (`kernels/tiler.cu`, run by
//! [`cuda::CudaTiler`]) reproduces it byte for byte; the device tests compare the two
//! through these functions. [`batch::BatchMosaic`] is the operation on a batch that the
//! element calls; it picks the GPU or the CPU per batch.

pub mod batch;
#[cfg(feature = "cuda")]
pub mod cuda;

use crate::geometry::LetterboxTransform;
use crate::ops::preprocess::{content_span, source_coord};
use crate::video::{BilinearTap, FrameReader};

/// Rows and columns for `n` sources when not set (0): as square as possible.
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

/// The tiles of a `width x height` mosaic split into `rows x columns`: each is
/// `width / columns x height / rows` pixels; the remainder (right and bottom) stays black.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    /// Mosaic width in pixels.
    pub width: u32,
    /// Mosaic height in pixels.
    pub height: u32,
    /// Tile rows.
    pub rows: u32,
    /// Tile columns.
    pub columns: u32,
}

impl Grid {
    /// Number of tiles.
    pub fn tiles(&self) -> u32 {
        self.rows * self.columns
    }

    /// Tile of source `pad_index` (trtmux sink pad number), in row-major order.
    pub fn tile_of(&self, pad_index: u32) -> u32 {
        pad_index % self.tiles().max(1)
    }

    /// `(x, y, width, height)` of tile `tile` in pixels.
    pub fn rect(&self, tile: u32) -> (u32, u32, u32, u32) {
        let (tw, th) = (self.width / self.columns.max(1), self.height / self.rows.max(1));
        let c = self.columns.max(1);
        ((tile % c) * tw, (tile / c) * th, tw, th)
    }
}

/// Reusable scratch of [`draw_tile`].
#[derive(Debug, Default)]
pub struct Scratch {
    xs: Vec<BilinearTap>,
    row: Vec<[f32; 3]>,
}

/// Fills a tightly packed RGBA mosaic with opaque black.
pub fn clear(mosaic: &mut [u8]) {
    for px in mosaic.chunks_exact_mut(4) {
        px.copy_from_slice(&[0, 0, 0, 255]);
    }
}

/// Draws `frame` into tile `tile` of the tightly packed RGBA mosaic of `grid`: letterboxed
/// (aspect kept, centred, black bars), bilinear samples rounded to 8 bits, alpha 255.
/// Tiles of zero size draw nothing.
pub fn draw_tile(mosaic: &mut [u8], grid: &Grid, tile: u32, frame: &FrameReader, scratch: &mut Scratch) {
    let (tx, ty, tw, th) = grid.rect(tile);
    if tw == 0 || th == 0 {
        return;
    }
    let mw = grid.width;
    let t = LetterboxTransform::letterbox(frame.width(), frame.height(), tw, th);
    let (x0, x1) = content_span(t.pad_x, t.scale_x, frame.width(), tw);
    let (y0, y1) = content_span(t.pad_y, t.scale_y, frame.height(), th);
    let Scratch { xs, row } = scratch;
    xs.clear();
    xs.extend((x0..x1).map(|x| BilinearTap::new(source_coord(x, t.pad_x, t.scale_x), frame.width())));
    row.resize(xs.len(), [0.0; 3]);
    for y in 0..th {
        let line = ((ty + y) * mw + tx) as usize * 4;
        let out = &mut mosaic[line..line + tw as usize * 4];
        clear(out);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_defaults() {
        assert_eq!(grid_for(8, 0, 0), (3, 3));
        assert_eq!(grid_for(8, 2, 0), (2, 4));
        assert_eq!(grid_for(8, 0, 4), (2, 4));
        assert_eq!(grid_for(4, 0, 0), (2, 2));
        assert_eq!(grid_for(1, 0, 0), (1, 1));
    }

    #[test]
    fn tiles_and_letterbox() {
        let g = Grid {
            width: 65,
            height: 32,
            rows: 1,
            columns: 2,
        };
        assert_eq!((g.tiles(), g.tile_of(3), g.rect(1)), (2, 1, (32, 0, 32, 32)));
        // A 2x1 red frame into a 32x32 tile: 32x16 of red between black bars.
        let px = [255u8, 0, 0, 255, 255, 0, 0, 255];
        let frame = FrameReader::from_planes(gst_video::VideoFormat::Rgba, 2, 1, &[&px], &[8]).unwrap();
        let mut mosaic = vec![7u8; 65 * 32 * 4];
        clear(&mut mosaic);
        draw_tile(&mut mosaic, &g, 1, &frame, &mut Scratch::default());
        let at = |x: usize, y: usize| &mosaic[(y * 65 + x) * 4..][..4];
        assert_eq!(at(40, 4), &[0, 0, 0, 255]);
        assert_eq!(at(40, 16), &[255, 0, 0, 255]);
        assert_eq!(at(10, 16), &[0, 0, 0, 255]);
        assert_eq!(at(64, 16), &[0, 0, 0, 255]);
    }
}
