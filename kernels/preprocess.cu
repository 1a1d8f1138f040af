// Batched preprocessing kernel of trtpreprocess's CUDA path (src/ops/preprocess/cuda.rs).
//
// One launch per batch: grid (ceil(W/(32*PX)), ceil(H/8), frames), one thread per PX
// horizontally adjacent output pixels of one frame, writing the three planes of those
// pixels into the NCHW tensor (f32 or f16). PX = 1 (`trtv_preprocess_nchw`, any width)
// or 2/4/8 (`trtv_preprocess_nchw_x2/_x4/_x8`, output width a multiple of PX): the wide
// variants share the row taps and row pointers of a thread's pixels and store each plane
// with one vector store (PX f16 or f32 values).
// Frames of one batch may differ in format, size and placement; each frame's parameters
// are one `FrameParams`, inside the launch's arguments for up to 32 frames (`_inline`
// entry points), else in device memory (copied from pinned host memory once per batch).
//
// The math is exactly src/ops/preprocess/ + src/video/reader.rs + src/video/color.rs:
//   - output pixel (x, y) is inside the content iff x0 <= x < x1 and y0 <= y < y1
//     (spans computed on the host by preprocess::content_span), otherwise the pad value;
//   - source coordinate (i + 0.5 - pad) / scale - 0.5, clamped to [0, size - 1],
//     taps i0 = floor(c), i1 = min(i0 + 1, size - 1), w1 = c - i0;
//   - packed RGB: bilinear on R, G, B as (a*wx0 + b*wx1)*wy0 + (c*wx0 + d*wx1)*wy1;
//   - 4:2:0: same bilinear on Y, U, V (chroma of each tap's 2x2 block), then the float
//     formula with the frame's own matrix and range (FrameParams::yuv), clamped to [0, 255];
//   - value = rgb[order[c]] * a[c] + b[c].
// The host compiles this with --fmad=false (no contraction into FMA, like Rust) and IEEE
// division, so every f32 operation rounds like the CPU code: results are bit-identical up
// to the f32 -> f16 conversion, which is round-to-nearest-even on both sides.
//
// No CUDA toolkit headers: NVRTC compiles this without the toolkit's include directory;
// the one include, common.cuh, is put in place by the host (src/cuda/nvrtc.rs).

#define KIND_PACKED 0   // 3 or 4 bytes per pixel, byte loads
#define KIND_PACKED4 1  // 4 bytes per pixel, plane and stride 4-byte aligned: word loads
#define KIND_NV12 2
#define KIND_I420 3

// Must match `FrameParams` in src/ops/preprocess/cuda.rs (#[repr(C)], 120 bytes).
struct FrameParams {
    unsigned long long plane[3];  // device addresses of the planes (GStreamer order)
    int stride[3];                // bytes per row of each plane
    int kind;                     // KIND_*
    int bpp;                      // packed: bytes per pixel
    int off_r, off_g, off_b;      // packed: byte offset of R, G, B inside a pixel
    int width, height;            // frame size in pixels
    float scale_x, scale_y;       // LetterboxTransform
    float pad_x, pad_y;
    int x0, x1, y0, y1;           // content span in output pixels, [x0, x1) x [y0, y1)
    float yuv[6];                 // YUV -> RGB: luma offset, fy, frv, fgu, fgv, fbu
};

// Must match `NormParams` in src/ops/preprocess/cuda.rs (#[repr(C)], 72 bytes).
struct NormParams {
    float a[3];      // value = pixel * a + b, per output plane
    float b[3];
    float pad[3];    // pad_value * a + b, per output plane
    int order[3];    // output plane c takes RGB channel order[c]
    int out_w, out_h;
    int f16;         // 1: write f16, 0: write f32
    int frames;
    int stage;       // 4:2:0 row staging: bytes per staged row (multiple of 32), 0 = off
    unsigned int float_bits;  // 0x4B000000 (2^23 as float bits), see byte_f
};

#include "common.cuh"

__device__ __forceinline__ Tap make_tap(float coord, int size) {
    const float mx = (float)(size - 1);
    float c = coord != coord ? 0.0f : fminf(fmaxf(coord, 0.0f), mx);
    Tap t;
    // At c = size - 1 the taps are (size - 2, size - 1) with weight 1 instead of
    // (size - 1, size - 1) with weight 0: the same value (a * 0 + b * 1 == b), and for
    // sizes of at least 2 every i1 is i0 + 1, which the NV12 path relies on.
    t.i0 = min((int)floorf(c), max(size - 2, 0));
    t.i1 = min(t.i0 + 1, size - 1);
    t.w1 = c - (float)t.i0;
    return t;
}

__device__ __forceinline__ unsigned short f32_to_f16(float f) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

// A byte (0..255, zero-extended) as a float: 2^23 + b built by bits, minus 2^23. Exact, and
// an integer OR plus a full-rate add instead of the quarter-rate int-to-float conversion.
__device__ __forceinline__ float u8f(unsigned int b) {
    return __uint_as_float(0x4B000000u | b) - 8388608.0f;
}

// Source rows of one output row: the two taps' rows of every plane (chroma rows for
// 4:2:0), computed once per thread.
struct Rows {
    const unsigned char* r0[3];
    const unsigned char* r1[3];
    float wy0, wy1;
};

// NV12_ONLY: the `_nv12` entry points (every frame NV12: no format test).
template <bool NV12_ONLY>
__device__ __forceinline__ Rows make_rows(const FrameParams& p, int y) {
    const Tap ty = make_tap(source_coord(y, p.pad_y, p.scale_y), p.height);
    Rows r;
    r.wy1 = ty.w1;
    r.wy0 = 1.0f - ty.w1;
    const unsigned char* p0 = (const unsigned char*)p.plane[0];
    r.r0[0] = p0 + (size_t)ty.i0 * p.stride[0];
    r.r1[0] = p0 + (size_t)ty.i1 * p.stride[0];
    r.r0[1] = r.r1[1] = r.r0[2] = r.r1[2] = p0;
    if (NV12_ONLY || p.kind == KIND_NV12 || p.kind == KIND_I420) {
        const int cy0 = ty.i0 >> 1, cy1 = ty.i1 >> 1;
        const int planes = NV12_ONLY || p.kind == KIND_NV12 ? 2 : 3;
        for (int k = 1; k < planes; k++) {
            const unsigned char* pk = (const unsigned char*)p.plane[k];
            r.r0[k] = pk + (size_t)cy0 * p.stride[k];
            r.r1[k] = pk + (size_t)cy1 * p.stride[k];
        }
    }
    // Opaque to the optimiser: each tap address is then row pointer + column (two adds)
    // instead of base + row * stride + column recomputed at every load.
#pragma unroll
    for (int k = 0; k < 3; k++) {
        asm("" : "+l"(r.r0[k]));
        asm("" : "+l"(r.r1[k]));
    }
    return r;
}

// RGB (0..255 floats, before normalisation) at column taps `tx`, rows `r`.
__device__ __forceinline__ void sample_rgb(const FrameParams& p, const Rows& r, const Tap& tx, float rgb[3]) {
    const float wx1 = tx.w1, wx0 = 1.0f - tx.w1;
    const float wy0 = r.wy0, wy1 = r.wy1;
    if (p.kind == KIND_PACKED4) {
        const unsigned int* r0 = (const unsigned int*)r.r0[0];
        const unsigned int* r1 = (const unsigned int*)r.r1[0];
        const unsigned int a = __ldg(r0 + tx.i0), b = __ldg(r0 + tx.i1);
        const unsigned int c = __ldg(r1 + tx.i0), d = __ldg(r1 + tx.i1);
        const int offs[3] = {p.off_r, p.off_g, p.off_b};
#pragma unroll
        for (int k = 0; k < 3; k++) {
            const int s = offs[k] * 8;  // little-endian: byte i is bits 8i..8i+7
            rgb[k] = lerp2(u8f((a >> s) & 0xffu), u8f((b >> s) & 0xffu), u8f((c >> s) & 0xffu),
                           u8f((d >> s) & 0xffu), wx0, wx1, wy0, wy1);
        }
    } else if (p.kind == KIND_PACKED) {
        const unsigned char* r0 = r.r0[0];
        const unsigned char* r1 = r.r1[0];
        const int xa = tx.i0 * p.bpp, xb = tx.i1 * p.bpp;
        const int offs[3] = {p.off_r, p.off_g, p.off_b};
#pragma unroll
        for (int k = 0; k < 3; k++) {
            const int o = offs[k];
            rgb[k] = lerp2(u8f(__ldg(r0 + xa + o)), u8f(__ldg(r0 + xb + o)), u8f(__ldg(r1 + xa + o)),
                           u8f(__ldg(r1 + xb + o)), wx0, wx1, wy0, wy1);
        }
    } else {
        // 4:2:0: interpolate Y, U, V at the same taps, then convert once.
        const unsigned char* y0r = r.r0[0];
        const unsigned char* y1r = r.r1[0];
        const float yy = lerp2(u8f(__ldg(y0r + tx.i0)), u8f(__ldg(y0r + tx.i1)), u8f(__ldg(y1r + tx.i0)),
                               u8f(__ldg(y1r + tx.i1)), wx0, wx1, wy0, wy1);
        const int cx0 = tx.i0 >> 1, cx1 = tx.i1 >> 1;
        float uu, vv;
        if (p.kind == KIND_NV12) {
            const unsigned char* u0r = r.r0[1];
            const unsigned char* u1r = r.r1[1];
            uu = lerp2(u8f(__ldg(u0r + 2 * cx0)), u8f(__ldg(u0r + 2 * cx1)), u8f(__ldg(u1r + 2 * cx0)),
                       u8f(__ldg(u1r + 2 * cx1)), wx0, wx1, wy0, wy1);
            vv = lerp2(u8f(__ldg(u0r + 2 * cx0 + 1)), u8f(__ldg(u0r + 2 * cx1 + 1)),
                       u8f(__ldg(u1r + 2 * cx0 + 1)), u8f(__ldg(u1r + 2 * cx1 + 1)), wx0, wx1, wy0, wy1);
        } else {
            const unsigned char* u0r = r.r0[1];
            const unsigned char* u1r = r.r1[1];
            const unsigned char* v0r = r.r0[2];
            const unsigned char* v1r = r.r1[2];
            uu = lerp2(u8f(__ldg(u0r + cx0)), u8f(__ldg(u0r + cx1)), u8f(__ldg(u1r + cx0)),
                       u8f(__ldg(u1r + cx1)), wx0, wx1, wy0, wy1);
            vv = lerp2(u8f(__ldg(v0r + cx0)), u8f(__ldg(v0r + cx1)), u8f(__ldg(v1r + cx0)),
                       u8f(__ldg(v1r + cx1)), wx0, wx1, wy0, wy1);
        }
        yuv_to_rgb(yy, uu, vv, p.yuv, rgb);
    }
}

// A byte of `w` (selector 0x7650: byte 0, 0x7651: byte 1) as a float, like u8f: one
// byte permute builds 2^23 + b from w and `bits` = 0x4B000000. `bits` comes from the launch
// (NormParams::float_bits): as a literal the compiler would move a selector into a
// register before every permute instead.
__device__ __forceinline__ float byte_f(unsigned int w, unsigned int sel, unsigned int bits) {
    return __uint_as_float(__byte_perm(w, bits, sel)) - 8388608.0f;
}

// sample_rgb for NV12 frames of at least 2x2 pixels whose chroma plane and stride are even
// (the host checks; `_nv12` entry points): every tap pair is (i0, i0 + 1) (make_tap), so the
// second luma tap is the next byte, and each chroma tap's U and V come with one 16-bit load.
// The same arithmetic in the same order as sample_rgb.
// SAME_CROW: both luma tap rows lie in the same chroma row (the first is even): the
// bottom chroma taps equal the top ones, so they are neither loaded nor interpolated again
// (the same values, so the same result).
template <bool SAME_CROW>
__device__ __forceinline__ void sample_nv12(const Rows& r, const Tap& tx, unsigned int bits, const float* yc,
                                            float rgb[3]) {
    const float wx1 = tx.w1, wx0 = 1.0f - tx.w1;
    // Unsigned offsets: no sign extension in the address arithmetic.
    const unsigned int i0 = (unsigned int)tx.i0;
    const unsigned char* y0 = r.r0[0] + i0;
    const unsigned char* y1 = r.r1[0] + i0;
    const float yy = lerp2(u8f(__ldg(y0)), u8f(__ldg(y0 + 1)), u8f(__ldg(y1)), u8f(__ldg(y1 + 1)), wx0, wx1,
                           r.wy0, r.wy1);
    // Byte offsets of the UV pairs of luma columns i0 and i0 + 1.
    const unsigned int c0 = i0 & ~1u, c1 = (i0 + 1) & ~1u;
    const unsigned int a = __ldg((const unsigned short*)(r.r0[1] + c0));
    const unsigned int b = __ldg((const unsigned short*)(r.r0[1] + c1));
    // lerp2's two row sums, U and V.
    const float ut = byte_f(a, 0x7650, bits) * wx0 + byte_f(b, 0x7650, bits) * wx1;
    const float vt = byte_f(a, 0x7651, bits) * wx0 + byte_f(b, 0x7651, bits) * wx1;
    float ub = ut, vb = vt;
    if (!SAME_CROW) {
        const unsigned int c = __ldg((const unsigned short*)(r.r1[1] + c0));
        const unsigned int d = __ldg((const unsigned short*)(r.r1[1] + c1));
        ub = byte_f(c, 0x7650, bits) * wx0 + byte_f(d, 0x7650, bits) * wx1;
        vb = byte_f(c, 0x7651, bits) * wx0 + byte_f(d, 0x7651, bits) * wx1;
    }
    yuv_to_rgb(yy, ut * r.wy0 + ub * r.wy1, vt * r.wy0 + vb * r.wy1, yc, rgb);
}

// Stores PX consecutive values of one plane at element `idx` (a multiple of PX when
// PX > 1, so that the vector stores are aligned).
template <int PX>
__device__ __forceinline__ void store_f16(unsigned short* o, size_t idx, const float* v) {
    unsigned short h[PX];
#pragma unroll
    for (int k = 0; k < PX; k++) {
        h[k] = f32_to_f16(v[k]);
    }
    if (PX == 8) {
        uint4 w;
        w.x = (unsigned)h[0] | ((unsigned)h[1 % PX] << 16);
        w.y = (unsigned)h[2 % PX] | ((unsigned)h[3 % PX] << 16);
        w.z = (unsigned)h[4 % PX] | ((unsigned)h[5 % PX] << 16);
        w.w = (unsigned)h[6 % PX] | ((unsigned)h[7 % PX] << 16);
        *(uint4*)(o + idx) = w;
    } else if (PX == 4) {
        uint2 w;
        w.x = (unsigned)h[0] | ((unsigned)h[1 % PX] << 16);
        w.y = (unsigned)h[2 % PX] | ((unsigned)h[3 % PX] << 16);
        *(uint2*)(o + idx) = w;
    } else if (PX == 2) {
        *(unsigned*)(o + idx) = (unsigned)h[0] | ((unsigned)h[1 % PX] << 16);
    } else {
        o[idx] = h[0];
    }
}

template <int PX>
__device__ __forceinline__ void store_f32(float* o, size_t idx, const float* v) {
    if (PX == 8 || PX == 4) {
#pragma unroll
        for (int k = 0; k < PX; k += 4) {
            *(float4*)(o + idx + k) = make_float4(v[k], v[(k + 1) % PX], v[(k + 2) % PX], v[(k + 3) % PX]);
        }
    } else if (PX == 2) {
        *(float2*)(o + idx) = make_float2(v[0], v[1 % PX]);
    } else {
        o[idx] = v[0];
    }
}

// 4:2:0 row staging. A warp covers 32 * PX consecutive output columns of one output row;
// the source bytes its pixels read form one short span per source row (two luma rows,
// two chroma rows). With staging on, the warp first copies those spans into its slice of
// shared memory with coalesced loads (16 bytes per lane where planes and strides are
// 16-byte aligned) and the pixels then read their taps there: a handful of wide loads per
// row instead of a scattered byte load per tap. Warp slice: luma row 0, luma row 1,
// chroma row 0, chroma row 1, `stage` bytes each (I420: U in the first half of a chroma
// slot, V in the second). Spans that do not fit fall back to direct loads.
struct Staged {
    const unsigned char* y0;
    const unsigned char* y1;
    const unsigned char* c0;
    const unsigned char* c1;
    int ylo, clo, vofs;
};

__device__ __forceinline__ void copy_span(unsigned char* dst, const unsigned char* src, int bytes, bool wide,
                                          int lane) {
    if (wide) {
        const uint4* s = (const uint4*)src;
        uint4* d = (uint4*)dst;
        for (int v = lane; v < ((bytes + 15) >> 4); v += 32) {
            d[v] = __ldg(s + v);
        }
    } else {
        for (int b = lane; b < bytes; b += 32) {
            dst[b] = __ldg(src + b);
        }
    }
}

// Copies the spans of luma columns [lo, hi] of rows `r` into `slice`; false (nothing
// copied) when a span is longer than the slots. Warp-uniform arguments only.
__device__ __forceinline__ bool stage_rows(const FrameParams& p, const Rows& r, int lo, int hi, int stage,
                                           unsigned char* slice, int lane, Staged& st) {
    const bool nv12 = p.kind == KIND_NV12;
    const int ylo = lo & ~15;
    const int ybytes = hi - ylo + 1;
    const int clo = nv12 ? (2 * (lo >> 1)) & ~15 : (lo >> 1) & ~15;
    const int cbytes = nv12 ? 2 * (hi >> 1) + 2 - clo : (hi >> 1) + 1 - clo;
    const int cslot = nv12 ? stage : stage / 2;
    if (ybytes > stage || cbytes > cslot) {
        return false;
    }
    const int planes = nv12 ? 2 : 3;
    unsigned long long bits = 0;
    for (int k = 0; k < planes; k++) {
        bits |= p.plane[k] | (unsigned long long)p.stride[k];
    }
    // Whole 16-byte loads stay inside each row: rows start 16-byte aligned and the row's
    // stride (a multiple of 16) covers the last loaded block.
    const bool wide = (bits & 15) == 0;
    copy_span(slice, r.r0[0] + ylo, ybytes, wide, lane);
    copy_span(slice + stage, r.r1[0] + ylo, ybytes, wide, lane);
    copy_span(slice + 2 * stage, r.r0[1] + clo, cbytes, wide, lane);
    copy_span(slice + 3 * stage, r.r1[1] + clo, cbytes, wide, lane);
    if (!nv12) {
        copy_span(slice + 2 * stage + cslot, r.r0[2] + clo, cbytes, wide, lane);
        copy_span(slice + 3 * stage + cslot, r.r1[2] + clo, cbytes, wide, lane);
    }
    __syncwarp();
    st.y0 = slice - ylo;
    st.y1 = slice + stage - ylo;
    st.c0 = slice + 2 * stage - clo;
    st.c1 = slice + 3 * stage - clo;
    st.ylo = ylo;
    st.clo = clo;
    st.vofs = nv12 ? 1 : cslot;
    return true;
}

// sample_rgb for 4:2:0 frames from staged rows (the same arithmetic, taps read from shared
// memory; st.y0[i] is luma column i of tap row 0).
__device__ __forceinline__ void sample_staged(bool nv12, const Staged& st, const Tap& tx, float wy0, float wy1,
                                              const float* yc, float rgb[3]) {
    const float wx1 = tx.w1, wx0 = 1.0f - tx.w1;
    const float yy = lerp2(u8f(st.y0[tx.i0]), u8f(st.y0[tx.i1]), u8f(st.y1[tx.i0]), u8f(st.y1[tx.i1]),
                           wx0, wx1, wy0, wy1);
    const int cx0 = tx.i0 >> 1, cx1 = tx.i1 >> 1;
    // NV12: U at 2*cx, V at 2*cx + 1; I420: U at cx, V at cx in the slot's second half.
    const int u0 = nv12 ? 2 * cx0 : cx0, u1 = nv12 ? 2 * cx1 : cx1;
    const int v = st.vofs;
    const float uu = lerp2(u8f(st.c0[u0]), u8f(st.c0[u1]), u8f(st.c1[u0]), u8f(st.c1[u1]), wx0, wx1, wy0,
                           wy1);
    const float vv = lerp2(u8f(st.c0[u0 + v]), u8f(st.c0[u1 + v]), u8f(st.c1[u0 + v]), u8f(st.c1[u1 + v]),
                           wx0, wx1, wy0, wy1);
    yuv_to_rgb(yy, uu, vv, yc, rgb);
}

// Columns of one block at most (blockDim.x * PX): the host keeps blocks within it.
#define MAX_BLOCK_COLUMNS 1024

// STAGE: the entry points with row staging (`_staged_inline`); the others never stage and
// carry none of its code (fewer registers). ORDER: -1 reads any format and takes the
// output plane order from NormParams; 0 (RGB) and 1 (BGR): the `_nv12` entry points, every
// frame NV12 (sample_nv12's conditions), the order fixed at compile time.
template <int PX, bool STAGE, int ORDER>
__device__ __forceinline__ void preprocess(const FrameParams* frames, void* __restrict__ out,
                                           const NormParams& n) {
    const int f = blockIdx.z;
    if (f >= n.frames) {
        return;  // the whole block: before any barrier
    }
    const FrameParams& p = frames[f];
    // The column taps of the block's columns, computed once per block (they depend on the
    // column only) instead of once per row: the IEEE division is the costly part.
    __shared__ int tap_i0[MAX_BLOCK_COLUMNS];
    __shared__ int tap_i1[MAX_BLOCK_COLUMNS];
    __shared__ float tap_w1[MAX_BLOCK_COLUMNS];
    const int col0 = blockIdx.x * blockDim.x * PX;
    const int cols = blockDim.x * PX;
    // Column c of the block sits at (c % PX) * blockDim.x + c / PX: the lanes of a warp
    // reading pixel k of their PX read consecutive words (no bank conflicts).
    for (int k = threadIdx.y * blockDim.x + threadIdx.x; k < cols; k += blockDim.x * blockDim.y) {
        const Tap t = make_tap(source_coord(col0 + k, p.pad_x, p.scale_x), p.width);
        const int at = (k % PX) * blockDim.x + k / PX;
        tap_i0[at] = t.i0;
        tap_i1[at] = t.i1;
        tap_w1[at] = t.w1;
    }
    __syncthreads();
    const int x = col0 + threadIdx.x * PX;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    // blockDim.x is a multiple of 32: the 32 lanes of a warp share y, so this return and
    // the staging below are warp-uniform.
    if (y >= n.out_h) {
        return;
    }
    float v[3][PX];
    const bool row_in = y >= p.y0 && y < p.y1;
    // The warp's content columns [c_lo, c_hi].
    const int lane = threadIdx.x & 31;
    const int wcol0 = col0 + (threadIdx.x & ~31) * PX;
    const int c_lo = max(wcol0, p.x0);
    const int c_hi = min(min(wcol0 + 32 * PX, p.x1), n.out_w) - 1;
    if (row_in && c_lo <= c_hi) {
        const Rows r = make_rows<(ORDER >= 0)>(p, y);
        Staged st;
        bool staged = false;
        if (STAGE && n.stage > 0 && (p.kind == KIND_NV12 || p.kind == KIND_I420)) {
            extern __shared__ uint4 stage_smem[];
            const int warp = (threadIdx.y * blockDim.x + threadIdx.x) >> 5;
            unsigned char* slice = (unsigned char*)stage_smem + (size_t)warp * 4 * n.stage;
            const int lo = c_lo - col0, hi = c_hi - col0;
            staged = stage_rows(p, r, tap_i0[(lo % PX) * blockDim.x + lo / PX],
                                tap_i1[(hi % PX) * blockDim.x + hi / PX], n.stage, slice, lane, st);
        }
        const bool nv12 = p.kind == KIND_NV12;
        // The frame's YUV -> RGB coefficients, in registers for all of the thread's pixels.
        float yc[6];
#pragma unroll
        for (int k = 0; k < 6; k++) {
            yc[k] = p.yuv[k];
        }
        // Threads whose PX pixels all lie in the content (most of them) skip the per-pixel
        // bounds checks.
        const bool all_in = x >= p.x0 && x + PX <= p.x1 && x + PX <= n.out_w;
        // Output pixel k of the thread: sampled and normalised into v[.][k].
        // same_crow: a constant at every call (the branch below folds away once inlined).
        auto pixel = [&](bool same_crow, int k) {
            Tap tx;
            tx.i0 = tap_i0[k * blockDim.x + threadIdx.x];
            tx.i1 = tap_i1[k * blockDim.x + threadIdx.x];
            tx.w1 = tap_w1[k * blockDim.x + threadIdx.x];
            float rgb[3];
            if (ORDER >= 0) {
                if (same_crow) {
                    sample_nv12<true>(r, tx, n.float_bits, yc, rgb);
                } else {
                    sample_nv12<false>(r, tx, n.float_bits, yc, rgb);
                }
            } else if (STAGE && staged) {
                sample_staged(nv12, st, tx, r.wy0, r.wy1, yc, rgb);
            } else {
                sample_rgb(p, r, tx, rgb);
            }
#pragma unroll
            for (int c = 0; c < 3; c++) {
                // A select, not a dynamic index: keeps rgb in registers.
                const int s = ORDER == 0 ? c : (ORDER == 1 ? 2 - c : n.order[c]);
                const float px = s == 0 ? rgb[0] : (s == 1 ? rgb[1] : rgb[2]);
                v[c][k] = px * n.a[c] + n.b[c];
            }
        };
        if (all_in && ORDER >= 0 && r.r0[1] == r.r1[1]) {
            // Straight-line code for the PX pixels (no per-pixel branch); one chroma row.
#pragma unroll
            for (int k = 0; k < PX; k++) {
                pixel(true, k);
            }
        } else if (all_in) {
#pragma unroll
            for (int k = 0; k < PX; k++) {
                pixel(false, k);
            }
        } else {
#pragma unroll
            for (int k = 0; k < PX; k++) {
                const int xx = x + k;
                if (xx >= p.x0 && xx < p.x1 && xx < n.out_w) {
                    pixel(false, k);
                } else {
#pragma unroll
                    for (int c = 0; c < 3; c++) {
                        v[c][k] = n.pad[c];
                    }
                }
            }
        }
    } else {
#pragma unroll
        for (int c = 0; c < 3; c++) {
#pragma unroll
            for (int k = 0; k < PX; k++) {
                v[c][k] = n.pad[c];
            }
        }
    }
    // PX > 1 only for widths that are a multiple of PX: all PX pixels are in the row.
    if (x >= n.out_w) {
        return;
    }
    const size_t plane = (size_t)n.out_w * (size_t)n.out_h;
    const size_t idx = (size_t)f * 3 * plane + (size_t)y * n.out_w + x;
    if (n.f16) {
#pragma unroll
        for (int c = 0; c < 3; c++) {
            store_f16<PX>((unsigned short*)out, idx + c * plane, v[c]);
        }
    } else {
#pragma unroll
        for (int c = 0; c < 3; c++) {
            store_f32<PX>((float*)out, idx + c * plane, v[c]);
        }
    }
}

// Up to INLINE_FRAMES frames, the parameters travel inside the launch itself (a
// __grid_constant__ kernel argument, read through the constant cache): no copy before the
// kernel. Larger batches read them from device memory (copied from pinned memory first).
#define INLINE_FRAMES 32

// Must match `InlineFrames` in src/ops/preprocess/cuda.rs (3840 bytes).
struct InlineFrames {
    FrameParams f[INLINE_FRAMES];
};

// The first INLINE_FRAMES_SMALL entries of InlineFrames: batches of up to 8 frames pass 768
// bytes of parameters with the launch instead of 3072 (`_inline8` entry points).
#define INLINE_FRAMES_SMALL 8
struct InlineFramesSmall {
    FrameParams f[INLINE_FRAMES_SMALL];
};

#define TRTV_PREPROCESS_ENTRY_T(NAME, PX, STAGE, ORDER, BOUNDS, FRAMES)                                 \
    extern "C" __global__ void __launch_bounds__ BOUNDS NAME(const __grid_constant__ FRAMES frames,     \
                                                             void* __restrict__ out, NormParams n) {       \
        preprocess<PX, STAGE, ORDER>(frames.f, out, n);                                                 \
    }
#define TRTV_PREPROCESS_ENTRY(NAME, PX, STAGE, ORDER, BOUNDS) \
    TRTV_PREPROCESS_ENTRY_T(NAME, PX, STAGE, ORDER, BOUNDS, InlineFrames)

#define TRTV_PREPROCESS_ENTRIES(NAME, PX)                                                              \
    extern "C" __global__ void __launch_bounds__(256)                                                  \
        NAME(const FrameParams* __restrict__ frames, void* __restrict__ out, NormParams n) {           \
        preprocess<PX, false, -1>(frames, out, n);                                                     \
    }                                                                                                  \
    TRTV_PREPROCESS_ENTRY(NAME##_inline, PX, false, -1, (256))                                         \
    TRTV_PREPROCESS_ENTRY(NAME##_staged_inline, PX, true, -1, (256))                                   \
    /* The same with fewer registers per thread, for more resident warps (6 or 8 blocks of */       \
    /* 256 threads per SM): the kernel is bound by instruction issue, not by DRAM. */                  \
    TRTV_PREPROCESS_ENTRY(NAME##_inline_occ6, PX, false, -1, (256, 6))                                 \
    TRTV_PREPROCESS_ENTRY(NAME##_inline_occ8, PX, false, -1, (256, 8))                                 \
    /* Batches of NV12 frames only (sample_nv12), RGB or BGR output order. */                         \
    TRTV_PREPROCESS_ENTRY(NAME##_nv12rgb_inline, PX, false, 0, (256))                                  \
    TRTV_PREPROCESS_ENTRY(NAME##_nv12bgr_inline, PX, false, 1, (256))                                  \
    TRTV_PREPROCESS_ENTRY_T(NAME##_nv12rgb_inline8, PX, false, 0, (256), InlineFramesSmall)            \
    TRTV_PREPROCESS_ENTRY_T(NAME##_nv12bgr_inline8, PX, false, 1, (256), InlineFramesSmall)

TRTV_PREPROCESS_ENTRIES(trtv_preprocess_nchw, 1)
TRTV_PREPROCESS_ENTRIES(trtv_preprocess_nchw_x2, 2)
TRTV_PREPROCESS_ENTRIES(trtv_preprocess_nchw_x4, 4)
TRTV_PREPROCESS_ENTRIES(trtv_preprocess_nchw_x8, 8)
