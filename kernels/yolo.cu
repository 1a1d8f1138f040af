// YOLOv8 / YOLO11 output decoding on the GPU: candidate compaction.
//
// output0 is [B, 4 + C (+ P), N] channel-major (f32 or f16). One thread per (frame, anchor)
// finds the best class exactly as the CPU parser does (src/parsers/yolo.rs: classes in
// order, a finite score strictly greater than the best so far wins, so the first of equal
// scores is kept) and, when that score is finite and >= the confidence threshold, appends
// one 32-byte record to a compact list: cx, cy, w, h, score (f32), class, anchor, frame
// (u32). The list is preceded by a 32-byte header whose first u32 is the record count, so
// that one copy brings the count and the records to the host. Records arrive in any
// order; the host sorts them by (frame, anchor) before the same NMS as the CPU path.

#define REC_WORDS 8

__device__ __forceinline__ float load_value(const void* base, unsigned long long i, int f16) {
    if (f16) {
        unsigned short h = ((const unsigned short*)base)[i];
        float f;
        asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
        return f;
    }
    return ((const float*)base)[i];
}

extern "C" __global__ void trtv_yolo_candidates(const void* out0, int f16, int channels, int anchors,
                                                int classes, float conf, unsigned int* header,
                                                unsigned int capacity) {
    int a = blockIdx.x * blockDim.x + threadIdx.x;
    int b = blockIdx.y;
    if (a >= anchors) return;
    unsigned long long row = (unsigned long long)b * channels * anchors;
    float best = -__int_as_float(0x7f800000);  // -inf
    int cls = 0;
    for (int c = 0; c < classes; c++) {
        float s = load_value(out0, row + (unsigned long long)(4 + c) * anchors + a, f16);
        if (isfinite(s) && s > best) {
            best = s;
            cls = c;
        }
    }
    if (!(isfinite(best) && best >= conf)) return;
    unsigned int i = atomicAdd(header, 1u);
    if (i >= capacity) return;
    unsigned int* rec = header + REC_WORDS + (unsigned long long)i * REC_WORDS;
    float* f = (float*)rec;
    f[0] = load_value(out0, row + a, f16);
    f[1] = load_value(out0, row + anchors + a, f16);
    f[2] = load_value(out0, row + 2ull * anchors + a, f16);
    f[3] = load_value(out0, row + 3ull * anchors + a, f16);
    f[4] = best;
    rec[5] = (unsigned int)cls;
    rec[6] = (unsigned int)a;
    rec[7] = (unsigned int)b;
}
