// Dense model outputs left on the GPU (src/cuda/dense.rs): the per-frame summary of
// channel 0 that trtjsonexport exports and trtoverlay's automatic colour range uses, so
// that only a few bytes per frame cross to the host instead of the map.
//
// One block per frame (row of the output [B, C, h, w], f32 or f16). A map pixel (u, v)
// counts when its centre lies on the frame: my = (v + 0.5) / sy in [y0, y1) and
// mx = (u + 0.5) / sx in [x0, x1) (the content rectangle of the letterbox in model
// pixels), and its value is finite; exactly DenseMap::stats in src/results.rs (the
// compile options forbid FMA contraction and use IEEE division, so the same pixels
// count). Each thread keeps min, max, count and a double sum of its pixels; a shared-
// memory tree reduction combines them in a fixed order (deterministic results).
//
// No headers: NVRTC compiles this without the CUDA toolkit's include directory.

#define THREADS 256

// Must match `StatsJob` in src/cuda/dense.rs (#[repr(C)], 32 bytes).
struct StatsJob {
    float x0, y0, x1, y1;  // frame part of the model input, model pixels
    float sx, sy;          // map pixels per model pixel
    int _pad0, _pad1;
};

// Must match `StatsRecord` in src/cuda/dense.rs (#[repr(C)], 32 bytes).
struct StatsRecord {
    float min, max;
    unsigned int count, _pad0;
    double sum;
    double _pad1;
};

__device__ __forceinline__ float load_value(const void* base, unsigned long long i, int f16) {
    if (f16) {
        unsigned short h = ((const unsigned short*)base)[i];
        float f;
        asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
        return f;
    }
    return ((const float*)base)[i];
}

extern "C" __global__ void __launch_bounds__(THREADS)
trtv_dense_stats(const void* values, int f16, unsigned long long row_elems, int h, int w,
                 const StatsJob* __restrict__ jobs, StatsRecord* __restrict__ out) {
    __shared__ float s_min[THREADS];
    __shared__ float s_max[THREADS];
    __shared__ unsigned int s_count[THREADS];
    __shared__ double s_sum[THREADS];

    const int row = blockIdx.x;
    const int tid = threadIdx.x;
    const StatsJob j = jobs[row];
    const unsigned long long base = (unsigned long long)row * row_elems;
    const int plane = h * w;  // checked on the host to fit an int
    float lo = __int_as_float(0x7f800000);   // +inf
    float hi = -__int_as_float(0x7f800000);  // -inf
    unsigned int n = 0;
    double sum = 0.0;
    for (int i = tid; i < plane; i += THREADS) {
        const int v = i / w;
        const int u = i - v * w;
        const float my = ((float)v + 0.5f) / j.sy;
        if (my < j.y0 || my >= j.y1) {
            continue;
        }
        const float mx = ((float)u + 0.5f) / j.sx;
        if (mx < j.x0 || mx >= j.x1) {
            continue;
        }
        const float x = load_value(values, base + (unsigned long long)i, f16);
        if (!isfinite(x)) {
            continue;
        }
        lo = fminf(lo, x);
        hi = fmaxf(hi, x);
        sum += (double)x;
        n += 1;
    }
    s_min[tid] = lo;
    s_max[tid] = hi;
    s_count[tid] = n;
    s_sum[tid] = sum;
    __syncthreads();
    for (int stride = THREADS / 2; stride > 0; stride >>= 1) {
        if (tid < stride) {
            s_min[tid] = fminf(s_min[tid], s_min[tid + stride]);
            s_max[tid] = fmaxf(s_max[tid], s_max[tid + stride]);
            s_count[tid] += s_count[tid + stride];
            s_sum[tid] += s_sum[tid + stride];
        }
        __syncthreads();
    }
    if (tid == 0) {
        StatsRecord r;
        r.min = s_min[0];
        r.max = s_max[0];
        r.count = s_count[0];
        r._pad0 = 0;
        r.sum = s_sum[0];
        r._pad1 = 0.0;
        out[row] = r;
    }
}
