// Helpers shared by kernels/preprocess.cu and kernels/tiler.cu: the sampling arithmetic
// of src/preprocess.rs, src/video/reader.rs and src/video/color.rs, operation for operation
// (the files are compiled with --fmad=false and IEEE division, so every f32 operation rounds
// as on the CPU).
//
// NVRTC compiles from memory without the file system: src/cuda/nvrtc.rs puts this file's
// text in place of a kernel file's include line for it (a plain include for any other
// compiler, e.g. scripts/kernels/sass.py).

// Source taps of one output coordinate: i0, i1 and the weight of i1.
struct Tap {
    int i0, i1;
    float w1;
};

// Source coordinate of output pixel i: (i + 0.5 - pad) / scale - 0.5.
__device__ __forceinline__ float source_coord(int i, float pad, float scale) {
    return ((float)i + 0.5f - pad) / scale - 0.5f;
}

// Bilinear interpolation: (a*wx0 + b*wx1)*wy0 + (c*wx0 + d*wx1)*wy1.
__device__ __forceinline__ float lerp2(float a, float b, float c, float d, float wx0, float wx1, float wy0,
                                       float wy1) {
    const float top = a * wx0 + b * wx1;
    const float bottom = c * wx0 + d * wx1;
    return top * wy0 + bottom * wy1;
}

__device__ __forceinline__ float clamp255(float v) {
    return fminf(fmaxf(v, 0.0f), 255.0f);
}

// video/color.rs YuvCoefficients::yuv_to_rgb_f32 with one frame's coefficients
// `k` = [luma offset, fy, frv, fgu, fgv, fbu] (the stream's matrix and range).
__device__ __forceinline__ void yuv_to_rgb(float yy, float uu, float vv, const float* k, float rgb[3]) {
    const float cc = k[1] * (yy - k[0]);
    const float d = uu - 128.0f;
    const float e = vv - 128.0f;
    rgb[0] = clamp255(cc + k[2] * e);
    rgb[1] = clamp255(cc - k[3] * d - k[4] * e);
    rgb[2] = clamp255(cc + k[5] * d);
}
