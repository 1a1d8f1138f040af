// Batched drawing kernel of trtoverlay's CUDA path (src/cuda/overlay.rs).
//
// One launch per batch draws every command of every frame in place: grid
// (ceil(W/32), ceil(H/32), frames), 16x16 threads per block, each thread owning one 2x2
// pixel block (4 pixels and, for NV12/I420, their chroma sample) of a 32x32 tile.
//
// The commands of a frame are `DrawCommand`s in the order the CPU draws (see
// src/overlay.rs): the block culls them against its tile in chunks of 256 (one command
// per thread, order-preserving compaction into shared memory) and every thread then
// applies the surviving commands in list order to the pixels it owns, kept in
// registers: so overlapping commands blend exactly in CPU order, and each pixel and
// chroma sample is read and written once per launch.
//
// Per-pixel rules (identical to overlay::execute on the CPU):
//   - a pixel is covered by a command when it lies in the command's bounds and, for a
//     glyph, its bit in the 8x8 font cell (scaled) is set, for a mask, its mask byte is
//     >= 128; covered pixels inside the frame are blended (RGB, or luma);
//   - on 4:2:0 frames the chroma sample of a 2x2 block is blended once when any of its
//     four pixels is covered;
//   - blend(old, new, a) = (new * a + old * (255 - a) + 127) / 255, integer, as
//     src/video/writer.rs; colours arrive as RGB and as YUV converted on the host with
//     each frame's matrix and range (video/color.rs).
//
// A frame may have a dense layer (a depth or heat map, `DenseLayer`), drawn before its
// commands, with the rules of Canvas::dense (src/draw.rs) and overlay::execute_dense:
//   - pixel (x, y) shows map cell (u, v), u = floor(((x + 0.5) * scale_x + pad_x) * w /
//     model_w) evaluated in this order in f32 (the compile options forbid FMA contraction
//     and use IEEE division, so it rounds as on the CPU), v alike; pixels outside the
//     map are left alone;
//   - the cell's channel-0 value picks LUT entry round(clamp((value - lo) / (hi - lo), 0,
//     1) * 255) (0 for non-finite values or an empty range), blended at the layer's alpha;
//   - on 4:2:0 frames the chroma of block (cx, cy) takes the entry of pixel (2cx, 2cy).
//
// No headers: NVRTC compiles this without the CUDA toolkit's include directory.

#define CMD_RECT 0
#define CMD_GLYPH 1
#define CMD_MASK_HOST 2
#define CMD_MASK_DEVICE 3

#define LAYOUT_PACKED 0
#define LAYOUT_NV12 1
#define LAYOUT_I420 2

#define DENSE_HOST 0
#define DENSE_DEVICE 1

#define TILE 32
#define THREADS 256

// Must match `DrawCommand` in src/overlay.rs (#[repr(C)], 56 bytes).
struct DrawCommand {
    unsigned int kind;            // CMD_*
    unsigned int alpha;           // 0..255
    int x0, y0, x1, y1;           // bounds in frame pixels, [x0, x1) x [y0, y1)
    int ox, oy;                   // glyph cell / mask top-left corner
    int a;                        // glyph: scale; mask: width
    int b;                        // glyph: atlas index; mask: height
    unsigned char rgb[4];
    unsigned char yuv[4];
    unsigned long long mask;      // host mask: offset into the mask bytes; device: address
};

// Must match `FrameTarget` in src/cuda/overlay.rs (#[repr(C)], 88 bytes).
struct FrameTarget {
    unsigned long long plane[3];  // device addresses of the planes (GStreamer order)
    int stride[3];                // bytes per row of each plane
    int layout;                   // LAYOUT_*
    int bpp;                      // packed: bytes per pixel
    int off_r, off_g, off_b;      // packed: byte offset of R, G, B inside a pixel
    int width, height;
    int first, count;             // the frame's commands
    int bounds[4];                // x0, y0, x1, y1 of all its commands (and dense layer)
    int dense, _pad;              // index of its DenseLayer, or -1
};

// Must match `DenseLayer` in src/ops/overlay/mod.rs (#[repr(C)], 64 bytes).
struct DenseLayer {
    unsigned long long values;    // host: index into the batch's dense values; device: address
    unsigned int source;          // DENSE_HOST / DENSE_DEVICE
    unsigned int f16;             // device values are f16
    int width, height;            // map size
    float scale_x, scale_y, pad_x, pad_y;  // frame -> model pixels
    float model_w, model_h;       // model input size
    float lo, hi;                 // value range of the colour map
    unsigned int alpha;           // 0..255
    unsigned int lut;             // 256-entry block of the LUT in the frame's colour space
};

__device__ __forceinline__ unsigned int blend(unsigned int old, unsigned int v, unsigned int a) {
    return (v * a + old * (255u - a) + 127u) / 255u;
}

__device__ __forceinline__ bool covers(const DrawCommand& c, const unsigned char* __restrict__ atlas,
                                       const unsigned char* __restrict__ mask_bytes, int x, int y) {
    if (x < c.x0 || x >= c.x1 || y < c.y0 || y >= c.y1) {
        return false;
    }
    if (c.kind == CMD_RECT) {
        return true;
    }
    if (c.kind == CMD_GLYPH) {
        int s = c.a > 0 ? c.a : 1;
        int col = (x - c.ox) / s;
        int row = (y - c.oy) / s;
        if (col < 0 || col >= 8 || row < 0 || row >= 8) {
            return false;
        }
        return (atlas[c.b * 8 + row] & (0x80 >> col)) != 0;
    }
    int mx = x - c.ox;
    int my = y - c.oy;
    if (mx < 0 || my < 0 || mx >= c.a || my >= c.b) {
        return false;
    }
    const unsigned char* bits = c.kind == CMD_MASK_HOST
                                    ? mask_bytes + c.mask
                                    : (const unsigned char*)(unsigned long long)c.mask;
    return bits[(long long)my * c.a + mx] >= 128;
}

// Map cell of frame coordinate `c` (pixel centre), or -1 outside the map
// (results::map_coordinate).
__device__ __forceinline__ int dense_cell(float c, float scale, float pad, int size, float model) {
    const float u = (c * scale + pad) * (float)size / model;
    return (u >= 0.0f && u < (float)size) ? (int)u : -1;
}

// LUT entry of `value` on [lo, hi] (colormap::lut_index).
__device__ __forceinline__ int lut_index(float value, float lo, float hi) {
    if (!isfinite(value)) {
        return 0;
    }
    const float span = hi - lo;
    float t = span > 0.0f ? (value - lo) / span : 0.0f;
    t = fminf(fmaxf(t, 0.0f), 1.0f);
    return (int)roundf(t * 255.0f);
}

// Channel-0 value of map cell (u, v) of layer `d`.
__device__ __forceinline__ float dense_value(const DenseLayer& d, const float* __restrict__ host_values,
                                             int u, int v) {
    const long long i = (long long)v * d.width + u;
    if (d.source == DENSE_HOST) {
        return host_values[d.values + i];
    }
    if (d.f16) {
        const unsigned short h = ((const unsigned short*)d.values)[i];
        float f;
        asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
        return f;
    }
    return ((const float*)d.values)[i];
}

// Reads the pixels of the 2x2 block at (px, py) inside the frame and its chroma sample.
__device__ __forceinline__ void load_block(const FrameTarget& f, int px, int py, int cx, int cy, bool yuv,
                                           unsigned int (&v)[4][3], unsigned int& u_val,
                                           unsigned int& v_val) {
    for (int q = 0; q < 4; ++q) {
        const int x = px + (q & 1);
        const int y = py + (q >> 1);
        if (x >= f.width || y >= f.height) {
            continue;
        }
        if (yuv) {
            v[q][0] = ((const unsigned char*)f.plane[0])[(long long)y * f.stride[0] + x];
        } else {
            const unsigned char* p =
                (const unsigned char*)f.plane[0] + (long long)y * f.stride[0] + (long long)x * f.bpp;
            v[q][0] = p[f.off_r];
            v[q][1] = p[f.off_g];
            v[q][2] = p[f.off_b];
        }
    }
    if (f.layout == LAYOUT_NV12) {
        const unsigned char* p = (const unsigned char*)f.plane[1] + (long long)cy * f.stride[1] + 2 * cx;
        u_val = p[0];
        v_val = p[1];
    } else if (f.layout == LAYOUT_I420) {
        u_val = ((const unsigned char*)f.plane[1])[(long long)cy * f.stride[1] + cx];
        v_val = ((const unsigned char*)f.plane[2])[(long long)cy * f.stride[2] + cx];
    }
}

extern "C" __global__ void __launch_bounds__(THREADS)
trtv_overlay(const FrameTarget* __restrict__ frames, const DrawCommand* __restrict__ cmds,
             const unsigned char* __restrict__ atlas, const unsigned char* __restrict__ mask_bytes,
             const DenseLayer* __restrict__ dense, const float* __restrict__ dense_values,
             const unsigned char* __restrict__ lut) {
    const FrameTarget& f = frames[blockIdx.z];
    const int tx0 = blockIdx.x * TILE;
    const int ty0 = blockIdx.y * TILE;
    // Uniform per block: tiles without any command or dense layer return before any
    // barrier.
    if ((f.count <= 0 && f.dense < 0) || tx0 >= f.bounds[2] || ty0 >= f.bounds[3] ||
        tx0 + TILE <= f.bounds[0] || ty0 + TILE <= f.bounds[1] || tx0 >= f.width + 1 ||
        ty0 >= f.height + 1) {
        return;
    }
    __shared__ int list[THREADS];
    __shared__ int warp_hits[THREADS / 32];

    const int tid = threadIdx.y * blockDim.x + threadIdx.x;
    const int lane = tid & 31;
    const int warp = tid >> 5;
    const int cx = (tx0 >> 1) + threadIdx.x;  // chroma block (2x2 pixels) of this thread
    const int cy = (ty0 >> 1) + threadIdx.y;
    const int px = 2 * cx;
    const int py = 2 * cy;
    const int cw = (f.width + 1) >> 1;
    const int ch = (f.height + 1) >> 1;
    const bool active = cx < cw && cy < ch;
    const bool yuv = f.layout != LAYOUT_PACKED;

    // Pixels of this thread: RGB (packed) or Y (4:2:0) of its 4 pixels, and U, V.
    unsigned int v[4][3];
    unsigned int u_val = 0, v_val = 0;
    bool loaded = false;
    bool dirty = false;

    if (f.dense >= 0 && active) {
        const DenseLayer& d = dense[f.dense];
        const int u0 = dense_cell((float)px + 0.5f, d.scale_x, d.pad_x, d.width, d.model_w);
        const int u1 = dense_cell((float)(px + 1) + 0.5f, d.scale_x, d.pad_x, d.width, d.model_w);
        const int v0 = dense_cell((float)py + 0.5f, d.scale_y, d.pad_y, d.height, d.model_h);
        const int v1 = dense_cell((float)(py + 1) + 0.5f, d.scale_y, d.pad_y, d.height, d.model_h);
        if ((u0 >= 0 || u1 >= 0) && (v0 >= 0 || v1 >= 0)) {
            load_block(f, px, py, cx, cy, yuv, v, u_val, v_val);
            loaded = true;
            dirty = true;
            const unsigned int a = d.alpha > 255u ? 255u : d.alpha;
            for (int q = 0; q < 4; ++q) {
                const int u = (q & 1) ? u1 : u0;
                const int vv = (q >> 1) ? v1 : v0;
                if (u < 0 || vv < 0 || px + (q & 1) >= f.width || py + (q >> 1) >= f.height) {
                    continue;
                }
                const unsigned char* e =
                    lut + 8 * (256 * (size_t)d.lut + lut_index(dense_value(d, dense_values, u, vv), d.lo, d.hi));
                if (yuv) {
                    v[q][0] = blend(v[q][0], e[4], a);
                } else {
                    v[q][0] = blend(v[q][0], e[0], a);
                    v[q][1] = blend(v[q][1], e[1], a);
                    v[q][2] = blend(v[q][2], e[2], a);
                }
                // The chroma sample takes the colour of the block's top-left pixel.
                if (yuv && q == 0) {
                    u_val = blend(u_val, e[5], a);
                    v_val = blend(v_val, e[6], a);
                }
            }
        }
    }

    const int end = f.first + f.count;
    for (int base = f.first; base < end; base += THREADS) {
        const int i = base + tid;
        bool hit = false;
        if (i < end) {
            const DrawCommand& c = cmds[i];
            hit = c.x0 < tx0 + TILE && c.x1 > tx0 && c.y0 < ty0 + TILE && c.y1 > ty0;
        }
        const unsigned int ballot = __ballot_sync(0xffffffffu, hit);
        if (lane == 0) {
            warp_hits[warp] = __popc(ballot);
        }
        __syncthreads();
        int offset = 0;
        int total = 0;
        for (int w = 0; w < THREADS / 32; ++w) {
            offset += w < warp ? warp_hits[w] : 0;
            total += warp_hits[w];
        }
        if (hit) {
            list[offset + __popc(ballot & ((1u << lane) - 1u))] = i;
        }
        __syncthreads();
        for (int k = 0; active && k < total; ++k) {
            const DrawCommand& c = cmds[list[k]];
            if (c.x0 >= px + 2 || c.x1 <= px || c.y0 >= py + 2 || c.y1 <= py) {
                continue;
            }
            bool cov[4];
            bool any = false;
            for (int q = 0; q < 4; ++q) {
                cov[q] = covers(c, atlas, mask_bytes, px + (q & 1), py + (q >> 1));
                any = any || cov[q];
            }
            if (!any) {
                continue;
            }
            if (!loaded) {
                load_block(f, px, py, cx, cy, yuv, v, u_val, v_val);
                loaded = true;
            }
            dirty = true;
            const unsigned int a = c.alpha > 255u ? 255u : c.alpha;
            for (int q = 0; q < 4; ++q) {
                if (!cov[q] || px + (q & 1) >= f.width || py + (q >> 1) >= f.height) {
                    continue;
                }
                if (yuv) {
                    v[q][0] = blend(v[q][0], c.yuv[0], a);
                } else {
                    v[q][0] = blend(v[q][0], c.rgb[0], a);
                    v[q][1] = blend(v[q][1], c.rgb[1], a);
                    v[q][2] = blend(v[q][2], c.rgb[2], a);
                }
            }
            if (yuv) {
                u_val = blend(u_val, c.yuv[1], a);
                v_val = blend(v_val, c.yuv[2], a);
            }
        }
        __syncthreads();
    }
    if (!dirty) {
        return;
    }
    for (int q = 0; q < 4; ++q) {
        const int x = px + (q & 1);
        const int y = py + (q >> 1);
        if (x >= f.width || y >= f.height) {
            continue;
        }
        if (yuv) {
            ((unsigned char*)f.plane[0])[(long long)y * f.stride[0] + x] = (unsigned char)v[q][0];
        } else {
            unsigned char* p = (unsigned char*)f.plane[0] + (long long)y * f.stride[0] + (long long)x * f.bpp;
            p[f.off_r] = (unsigned char)v[q][0];
            p[f.off_g] = (unsigned char)v[q][1];
            p[f.off_b] = (unsigned char)v[q][2];
        }
    }
    if (f.layout == LAYOUT_NV12) {
        unsigned char* p = (unsigned char*)f.plane[1] + (long long)cy * f.stride[1] + 2 * cx;
        p[0] = (unsigned char)u_val;
        p[1] = (unsigned char)v_val;
    } else if (f.layout == LAYOUT_I420) {
        ((unsigned char*)f.plane[1])[(long long)cy * f.stride[1] + cx] = (unsigned char)u_val;
        ((unsigned char*)f.plane[2])[(long long)cy * f.stride[2] + cx] = (unsigned char)v_val;
    }
}
