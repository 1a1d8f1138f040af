// Mask selection on the GPU: for every kept detection of a batch (one job each), the mask
// inside its box in frame pixels, 0 or 255 per pixel, with exactly the math of
// src/masks.rs frame_mask: frame pixel centre -> model input (letterbox transform) -> mask
// plane coordinates, bilinear sample (pixel centres at .5, clamped), and for prototype masks
// (YOLO-seg) the sum over prototypes k of coefficient_k * sample_k in order, skipping zero
// coefficients (coefficients read straight from output0 [B, 4 + C + P, N] at the anchor;
// non-finite ones count as zero). Dense masks (DETR) sample plane `anchor` (the query).
// One launch per batch: blockIdx.y is the job, blocks along x stride over its pixels.

#define MODE_PROTOTYPES 0
#define MODE_DENSE 1
#define MAX_PROTOS 256

struct MaskJob {
    unsigned long long planes;  // row of the mask tensor: [P or Q, h, w]
    unsigned long long coeffs;  // row of output0: [4 + C + P, N] (prototype mode)
    unsigned long long out;     // mw * mh bytes
    int mode, planes_f16, coeffs_f16, count;  // count: P (prototypes) or Q (dense)
    int h, w, anchors, first;                 // first: channel of coefficient 0 in output0
    int anchor, x, y, mw;
    int mh, _pad0;
    float scale_x, scale_y, pad_x, pad_y;
    float sx, sy, logit_thr, _pad1;
};

__device__ __forceinline__ float load_value(unsigned long long base, unsigned long long i, int f16) {
    if (f16) {
        unsigned short h = ((const unsigned short*)base)[i];
        float f;
        asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
        return f;
    }
    return ((const float*)base)[i];
}

__device__ __forceinline__ float sample(const MaskJob& j, int c, float u, float v) {
    unsigned long long plane = (unsigned long long)c * j.h * j.w;
    float x = fminf(fmaxf(u - 0.5f, 0.0f), (float)(j.w - 1));
    float y = fminf(fmaxf(v - 0.5f, 0.0f), (float)(j.h - 1));
    int x0 = (int)floorf(x), y0 = (int)floorf(y);
    int x1 = min(x0 + 1, j.w - 1), y1 = min(y0 + 1, j.h - 1);
    float fx = x - (float)x0, fy = y - (float)y0;
    float p00 = load_value(j.planes, plane + (unsigned long long)y0 * j.w + x0, j.planes_f16);
    float p01 = load_value(j.planes, plane + (unsigned long long)y0 * j.w + x1, j.planes_f16);
    float p10 = load_value(j.planes, plane + (unsigned long long)y1 * j.w + x0, j.planes_f16);
    float p11 = load_value(j.planes, plane + (unsigned long long)y1 * j.w + x1, j.planes_f16);
    float top = p00 * (1.0f - fx) + p01 * fx;
    float bottom = p10 * (1.0f - fx) + p11 * fx;
    return top * (1.0f - fy) + bottom * fy;
}

extern "C" __global__ void trtv_mask_select(const MaskJob* jobs) {
    __shared__ float coeff[MAX_PROTOS];
    const MaskJob& j = jobs[blockIdx.y];
    if (j.mode == MODE_PROTOTYPES) {
        for (int k = threadIdx.x; k < j.count && k < MAX_PROTOS; k += blockDim.x) {
            float c = load_value(j.coeffs, (unsigned long long)(j.first + k) * j.anchors + j.anchor,
                                 j.coeffs_f16);
            coeff[k] = isfinite(c) ? c : 0.0f;
        }
        __syncthreads();
    }
    int total = j.mw * j.mh;
    unsigned char* out = (unsigned char*)j.out;
    for (int p = blockIdx.x * blockDim.x + threadIdx.x; p < total; p += gridDim.x * blockDim.x) {
        int i = p % j.mw, r = p / j.mw;
        float fx = (float)(j.x + i) + 0.5f;
        float fy = (float)(j.y + r) + 0.5f;
        float mx = fx * j.scale_x + j.pad_x;
        float my = fy * j.scale_y + j.pad_y;
        float u = mx * j.sx, v = my * j.sy;
        float logit;
        if (j.mode == MODE_PROTOTYPES) {
            logit = 0.0f;
            int n = min(j.count, MAX_PROTOS);
            for (int k = 0; k < n; k++) {
                float c = coeff[k];
                if (c != 0.0f) logit += c * sample(j, k, u, v);
            }
        } else {
            logit = sample(j, j.anchor, u, v);
        }
        out[p] = logit > j.logit_thr ? 255 : 0;
    }
}
