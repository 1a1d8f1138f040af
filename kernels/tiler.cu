// Mosaic kernel of trttiler's CUDA path (src/ops/mosaic/cuda.rs).
//
// One launch per batch writes the whole output frame: grid (ceil(W/64), ceil(H/16)), one
// thread per 2x2 output pixel block (block of 32x8 threads). For each pixel the thread
// finds its tile (row-major, `tile_w x tile_h` pixels each; pixels right of or below the
// last tile are background), samples the tile's source frame (any of NV12, I420, RGB,
// BGR, RGBA, BGRA, RGBx, BGRx, possibly different per tile) and writes the pixel in the
// output format (the same set). The 2x2 block is what 4:2:0 outputs need: its chroma
// sample is computed from the block's own pixels.
//
// The result is exactly that of the CPU tiler (src/trttiler/imp.rs, src/video/):
//   - tile content: frame letterboxed into the tile (host: LetterboxTransform::letterbox,
//     preprocess::content_span); inside [x0, x1) x [y0, y1) of the tile, bilinear sample
//     at source coordinate (i + 0.5 - pad) / scale - 0.5 clamped to [0, size - 1], taps
//     i0 = floor(c), i1 = min(i0 + 1, size - 1), w1 = c - i0;
//     packed: (a*wx0 + b*wx1)*wy0 + (c*wx0 + d*wx1)*wy1 on R, G, B; 4:2:0: the same on
//     Y, U, V (chroma of each tap's 2x2 block), then the float formula with the frame's
//     own matrix and range, clamped to [0, 255]; then rounded half away from zero to 8 bits;
//   - everything else (letterbox bars, tiles without a frame, the remainder) is black;
//   - output: packed formats take R, G, B and 255 in the fourth byte; NV12/I420 take
//     Y = ((yr R + yg G + yb B + 128) >> 8) + Yo per pixel and, per 2x2 block, U and V
//     of the rounded mean R, G, B of the block's pixels inside the frame, with the output's
//     integer coefficients (video/color.rs; BT.601 limited: 66 129 25, offset 16).
// The host compiles this with --fmad=false and IEEE division, so every f32 operation
// rounds like the CPU code: the output is byte-identical.
//
// A single tile whose source is an RGBA image of the output's size (scale 1, no pad)
// reproduces that image exactly: the host uses this to convert a mosaic composed on the
// CPU into a CUDA output frame.
//
// No CUDA toolkit headers: NVRTC compiles this without the toolkit's include directory;
// the one include, common.cuh, is put in place by the host (src/cuda/nvrtc.rs).

#define KIND_NONE -1    // no frame: background
#define KIND_PACKED 0   // 3 or 4 bytes per pixel, byte loads
#define KIND_PACKED4 1  // 4 bytes per pixel, plane and stride 4-byte aligned: word loads
#define KIND_NV12 2
#define KIND_I420 3

#define OUT_PACKED 0    // 3 or 4 bytes per pixel, byte stores
#define OUT_PACKED4 1   // 4 bytes per pixel, plane and stride 4-byte aligned: word stores
#define OUT_NV12 2
#define OUT_I420 3

// Must match `TileSource` in src/ops/mosaic/cuda.rs (#[repr(C)], 120 bytes).
struct TileSource {
    unsigned long long plane[3];  // device addresses of the planes (GStreamer order)
    int stride[3];                // bytes per row of each plane
    int kind;                     // KIND_*
    int bpp;                      // packed: bytes per pixel
    int off_r, off_g, off_b;      // packed: byte offset of R, G, B inside a pixel
    int width, height;            // frame size in pixels
    float scale_x, scale_y;       // LetterboxTransform of the frame into its tile
    float pad_x, pad_y;
    int x0, x1, y0, y1;           // content span in tile pixels, [x0, x1) x [y0, y1)
    float yuv[6];                 // YUV -> RGB: luma offset, fy, frv, fgu, fgv, fbu
};

// Must match `MosaicTarget` in src/ops/mosaic/cuda.rs (#[repr(C)], 128 bytes).
struct MosaicTarget {
    unsigned long long plane[3];  // output planes (GStreamer order)
    int stride[3];
    int kind;                     // OUT_*
    int bpp;                      // packed: bytes per pixel
    int off_r, off_g, off_b;      // packed: byte offset of R, G, B inside a pixel
    int off_a;                    // packed, 4 bytes: offset of the alpha/padding byte
    int width, height;            // output size in pixels
    int tile_w, tile_h;           // tile size in pixels (0: no tile, all background)
    int rows, cols;               // grid; the tile table holds rows * cols entries
    int y_offset;                 // RGB -> YUV of a 4:2:0 output: luma offset,
    int yuv[9];                   // integer Y, U, V coefficients (r, g, b each)
    int reserved;
};

#include "common.cuh"

__device__ __forceinline__ Tap make_tap(float coord, int size) {
    const float mx = (float)(size - 1);
    float c = coord != coord ? 0.0f : fminf(fmaxf(coord, 0.0f), mx);
    Tap t;
    t.i0 = (int)floorf(c);
    t.i1 = min(t.i0 + 1, size - 1);
    t.w1 = c - (float)t.i0;
    return t;
}

__device__ __forceinline__ unsigned int load_u8(unsigned long long base, size_t offset) {
    return __ldg((const unsigned char*)base + offset);
}

// RGB (0..255 floats) of tile pixel (x, y) of frame `p` (inside its content span).
__device__ __forceinline__ void sample_rgb(const TileSource& p, int x, int y, float rgb[3]) {
    const Tap tx = make_tap(source_coord(x, p.pad_x, p.scale_x), p.width);
    const Tap ty = make_tap(source_coord(y, p.pad_y, p.scale_y), p.height);
    const float wx1 = tx.w1, wx0 = 1.0f - tx.w1;
    const float wy1 = ty.w1, wy0 = 1.0f - ty.w1;
    const size_t r0 = (size_t)ty.i0 * p.stride[0], r1 = (size_t)ty.i1 * p.stride[0];
    if (p.kind == KIND_PACKED4) {
        const unsigned int* row0 = (const unsigned int*)(p.plane[0] + r0);
        const unsigned int* row1 = (const unsigned int*)(p.plane[0] + r1);
        const unsigned int a = __ldg(row0 + tx.i0), b = __ldg(row0 + tx.i1);
        const unsigned int c = __ldg(row1 + tx.i0), d = __ldg(row1 + tx.i1);
        const int offs[3] = {p.off_r, p.off_g, p.off_b};
#pragma unroll
        for (int k = 0; k < 3; k++) {
            const int s = offs[k] * 8;  // little-endian: byte i is bits 8i..8i+7
            rgb[k] = lerp2((float)((a >> s) & 0xffu), (float)((b >> s) & 0xffu), (float)((c >> s) & 0xffu),
                           (float)((d >> s) & 0xffu), wx0, wx1, wy0, wy1);
        }
    } else if (p.kind == KIND_PACKED) {
        const size_t xa = (size_t)tx.i0 * p.bpp, xb = (size_t)tx.i1 * p.bpp;
        const int offs[3] = {p.off_r, p.off_g, p.off_b};
#pragma unroll
        for (int k = 0; k < 3; k++) {
            const int o = offs[k];
            rgb[k] = lerp2((float)load_u8(p.plane[0], r0 + xa + o), (float)load_u8(p.plane[0], r0 + xb + o),
                           (float)load_u8(p.plane[0], r1 + xa + o), (float)load_u8(p.plane[0], r1 + xb + o),
                           wx0, wx1, wy0, wy1);
        }
    } else {
        // 4:2:0: interpolate Y, U, V at the same taps, then convert once.
        const float yy = lerp2((float)load_u8(p.plane[0], r0 + tx.i0), (float)load_u8(p.plane[0], r0 + tx.i1),
                               (float)load_u8(p.plane[0], r1 + tx.i0), (float)load_u8(p.plane[0], r1 + tx.i1),
                               wx0, wx1, wy0, wy1);
        const size_t cx0 = tx.i0 >> 1, cx1 = tx.i1 >> 1;
        const size_t c0 = (size_t)(ty.i0 >> 1) * p.stride[1], c1 = (size_t)(ty.i1 >> 1) * p.stride[1];
        float uu, vv;
        if (p.kind == KIND_NV12) {
            const unsigned long long uv = p.plane[1];
            uu = lerp2((float)load_u8(uv, c0 + 2 * cx0), (float)load_u8(uv, c0 + 2 * cx1),
                       (float)load_u8(uv, c1 + 2 * cx0), (float)load_u8(uv, c1 + 2 * cx1), wx0, wx1, wy0, wy1);
            vv = lerp2((float)load_u8(uv, c0 + 2 * cx0 + 1), (float)load_u8(uv, c0 + 2 * cx1 + 1),
                       (float)load_u8(uv, c1 + 2 * cx0 + 1), (float)load_u8(uv, c1 + 2 * cx1 + 1), wx0, wx1,
                       wy0, wy1);
        } else {
            const unsigned long long u = p.plane[1], v = p.plane[2];
            const size_t v0 = (size_t)(ty.i0 >> 1) * p.stride[2], v1 = (size_t)(ty.i1 >> 1) * p.stride[2];
            uu = lerp2((float)load_u8(u, c0 + cx0), (float)load_u8(u, c0 + cx1), (float)load_u8(u, c1 + cx0),
                       (float)load_u8(u, c1 + cx1), wx0, wx1, wy0, wy1);
            vv = lerp2((float)load_u8(v, v0 + cx0), (float)load_u8(v, v0 + cx1), (float)load_u8(v, v1 + cx0),
                       (float)load_u8(v, v1 + cx1), wx0, wx1, wy0, wy1);
        }
        yuv_to_rgb(yy, uu, vv, p.yuv, rgb);
    }
}

// The 8-bit RGB of mosaic pixel (x, y), as the CPU tiler's RGBA mosaic holds it.
__device__ __forceinline__ void mosaic_rgb(const TileSource* tiles, const MosaicTarget& m, int x, int y,
                                           int rgb[3]) {
    rgb[0] = rgb[1] = rgb[2] = 0;
    if (m.tile_w <= 0 || m.tile_h <= 0) {
        return;
    }
    const int tx = x / m.tile_w, ty = y / m.tile_h;
    if (tx >= m.cols || ty >= m.rows) {
        return;
    }
    const TileSource& p = tiles[ty * m.cols + tx];
    const int lx = x - tx * m.tile_w, ly = y - ty * m.tile_h;
    if (p.kind == KIND_NONE || lx < p.x0 || lx >= p.x1 || ly < p.y0 || ly >= p.y1) {
        return;
    }
    float f[3];
    sample_rgb(p, lx, ly, f);
#pragma unroll
    for (int k = 0; k < 3; k++) {
        // Rust's f32::round (half away from zero), then clamp: as draw_tile does.
        rgb[k] = (int)fminf(fmaxf(roundf(f[k]), 0.0f), 255.0f);
    }
}

__device__ __forceinline__ unsigned char clamp_u8(int v) {
    return (unsigned char)min(max(v, 0), 255);
}

// video/color.rs YuvCoefficients::rgb_to_y with the output's coefficients.
__device__ __forceinline__ unsigned char rgb_to_y(const MosaicTarget& m, int r, int g, int b) {
    return clamp_u8(((m.yuv[0] * r + m.yuv[1] * g + m.yuv[2] * b + 128) >> 8) + m.y_offset);
}

__device__ __forceinline__ void write_pixel(const MosaicTarget& m, int x, int y, const int rgb[3]) {
    unsigned char* row = (unsigned char*)m.plane[0] + (size_t)y * m.stride[0];
    if (m.kind == OUT_PACKED4) {
        const unsigned int w = ((unsigned int)rgb[0] << (8 * m.off_r)) | ((unsigned int)rgb[1] << (8 * m.off_g)) |
                               ((unsigned int)rgb[2] << (8 * m.off_b)) | (255u << (8 * m.off_a));
        ((unsigned int*)row)[x] = w;
    } else if (m.kind == OUT_PACKED) {
        unsigned char* px = row + (size_t)x * m.bpp;
        px[m.off_r] = (unsigned char)rgb[0];
        px[m.off_g] = (unsigned char)rgb[1];
        px[m.off_b] = (unsigned char)rgb[2];
        if (m.bpp == 4) {
            px[m.off_a] = 255;
        }
    } else {
        row[x] = rgb_to_y(m, rgb[0], rgb[1], rgb[2]);
    }
}

// video/color.rs rgb_sum_to_uv: mean of `n` pixels rounded, then the output's U and V
// coefficients.
__device__ __forceinline__ void write_chroma(const MosaicTarget& m, int cx, int cy, unsigned int sr,
                                             unsigned int sg, unsigned int sb, unsigned int n) {
    const unsigned int half = n / 2;
    const int r = (int)((sr + half) / n), g = (int)((sg + half) / n), b = (int)((sb + half) / n);
    const unsigned char u = clamp_u8(((m.yuv[3] * r + m.yuv[4] * g + m.yuv[5] * b + 128) >> 8) + 128);
    const unsigned char v = clamp_u8(((m.yuv[6] * r + m.yuv[7] * g + m.yuv[8] * b + 128) >> 8) + 128);
    if (m.kind == OUT_NV12) {
        unsigned char* px = (unsigned char*)m.plane[1] + (size_t)cy * m.stride[1] + 2 * (size_t)cx;
        px[0] = u;
        px[1] = v;
    } else {
        ((unsigned char*)m.plane[1])[(size_t)cy * m.stride[1] + cx] = u;
        ((unsigned char*)m.plane[2])[(size_t)cy * m.stride[2] + cx] = v;
    }
}

__device__ __forceinline__ void tile_block(const TileSource* tiles, const MosaicTarget& m) {
    const int bx = blockIdx.x * blockDim.x + threadIdx.x;
    const int by = blockIdx.y * blockDim.y + threadIdx.y;
    const int x0 = 2 * bx, y0 = 2 * by;
    if (x0 >= m.width || y0 >= m.height) {
        return;
    }
    unsigned int sr = 0, sg = 0, sb = 0, n = 0;
#pragma unroll
    for (int dy = 0; dy < 2; dy++) {
#pragma unroll
        for (int dx = 0; dx < 2; dx++) {
            const int x = x0 + dx, y = y0 + dy;
            if (x < m.width && y < m.height) {
                int rgb[3];
                mosaic_rgb(tiles, m, x, y, rgb);
                write_pixel(m, x, y, rgb);
                sr += rgb[0];
                sg += rgb[1];
                sb += rgb[2];
                n += 1;
            }
        }
    }
    if (m.kind == OUT_NV12 || m.kind == OUT_I420) {
        write_chroma(m, bx, by, sr, sg, sb, n);
    }
}

// Up to INLINE_TILES tiles, the tile table travels inside the launch itself (a
// __grid_constant__ kernel argument, read through the constant cache): no copy before the
// kernel. Larger grids read it from device memory (copied from pinned memory first).
#define INLINE_TILES 32

// Must match `InlineTiles` in src/ops/mosaic/cuda.rs (3840 bytes).
struct InlineTiles {
    TileSource t[INLINE_TILES];
};

extern "C" __global__ void __launch_bounds__(256)
    trtv_tile(const TileSource* __restrict__ tiles, const MosaicTarget m) {
    tile_block(tiles, m);
}

extern "C" __global__ void __launch_bounds__(256)
    trtv_tile_inline(const __grid_constant__ InlineTiles tiles, const MosaicTarget m) {
    tile_block(tiles.t, m);
}
