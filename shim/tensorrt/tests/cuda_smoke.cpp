// cuda_smoke.cpp - exercises the shim's CUDA driver layer on a real GPU, without TensorRT
// (cuda.cpp and errors.cpp need no TensorRT or CUDA headers). Build and run on a machine
// with an NVIDIA driver:
//
//   cd <repo>; S=shim/tensorrt
//   g++ -std=c++17 -Wall -Wextra -I$S $S/errors.cpp $S/cuda.cpp $S/tests/cuda_smoke.cpp -ldl -o /tmp/smoke
//   /tmp/smoke
//
// Checks symbol resolution (cuMemAlloc_v2, ...), the error path before loading, pinned and
// device allocation, async copies, events and CUDA graph capture/replay.
#include "status.h"

#include <cstdio>
#include <cstring>
#include <vector>

namespace
{

int g_failures = 0;

void expect(bool ok, char const* what)
{
    std::printf("%s %s%s%s\n", ok ? "ok  " : "FAIL", what, ok ? "" : ": ", ok ? "" : trts_last_error());
    if (!ok)
    {
        ++g_failures;
    }
}

} // namespace

int main()
{
    uint64_t dev = 0;
    expect(trts_cuda_malloc(&dev, 16) == TRTS_E_UNAVAILABLE, "cuMemAlloc before load fails cleanly");

    if (trts::cuda_load() != TRTS_OK)
    {
        std::printf("FAIL cuda_load: %s\n", trts_last_error());
        return 1;
    }
    char name[256] = {};
    int32_t major = 0;
    int32_t minor = 0;
    expect(trts_device_info(0, name, sizeof(name), &major, &minor) == TRTS_OK, "device info");
    std::printf("     device 0: %s, sm_%d%d\n", name, major, minor);
    expect(trts_device_info(999, name, sizeof(name), &major, &minor) == TRTS_E_UNAVAILABLE, "bad device rejected");

    void* ctx = nullptr;
    expect(trts::cuda_retain_primary(0, &ctx) == TRTS_OK && ctx != nullptr, "primary context");

    void* stream = nullptr;
    expect(trts_cuda_stream_create(&stream) == TRTS_OK, "stream");
    void* event = nullptr;
    expect(trts_cuda_event_create(&event) == TRTS_OK, "event");

    size_t const n = 1 << 20;
    std::vector<unsigned char> src(n);
    for (size_t i = 0; i < n; ++i)
    {
        src[i] = static_cast<unsigned char>(i * 7 + 1);
    }
    uint64_t a = 0;
    uint64_t b = 0;
    void* pinned = nullptr;
    expect(trts_cuda_malloc(&a, n) == TRTS_OK && trts_cuda_malloc(&b, n) == TRTS_OK, "cuMemAlloc");
    expect(trts_cuda_host_alloc(&pinned, n) == TRTS_OK, "cuMemHostAlloc");

    // H2D -> D2D -> D2H, one event wait.
    expect(trts_cuda_htod_async(a, src.data(), n, stream) == TRTS_OK, "HtoD async");
    expect(trts_cuda_dtod_async(b, a, n, stream) == TRTS_OK, "DtoD async");
    expect(trts_cuda_dtoh_async(pinned, b, n, stream) == TRTS_OK, "DtoH async");
    expect(trts_cuda_event_record(event, stream) == TRTS_OK && trts_cuda_event_sync(event) == TRTS_OK, "event wait");
    expect(std::memcmp(pinned, src.data(), n) == 0, "round trip data");

    // Capture memset(b, 0x5a) + D2H into a graph; nothing runs until it is launched.
    expect(trts_cuda_memset_async(b, 0, n, stream) == TRTS_OK && trts_cuda_stream_sync(stream) == TRTS_OK, "memset");
    std::memset(pinned, 0, n);
    expect(trts_cuda_capture_begin(stream) == TRTS_OK, "capture begin");
    trts_cuda_memset_async(b, 0x5a, n, stream);
    trts_cuda_dtoh_async(pinned, b, n, stream);
    void* exec = nullptr;
    expect(trts_cuda_capture_end(stream, &exec) == TRTS_OK && exec != nullptr, "capture end + instantiate");
    expect(trts_cuda_stream_sync(stream) == TRTS_OK, "sync after capture");
    expect(static_cast<unsigned char*>(pinned)[0] == 0, "captured work did not run yet");
    for (int i = 0; i < 3; ++i)
    {
        expect(trts_cuda_graph_launch(exec, stream) == TRTS_OK, "graph launch");
    }
    expect(trts_cuda_stream_sync(stream) == TRTS_OK, "sync after launch");
    unsigned char const* p = static_cast<unsigned char const*>(pinned);
    expect(p[0] == 0x5a && p[n - 1] == 0x5a, "graph replay wrote the data");

    // Errors are reported, not thrown.
    uint64_t huge = 0;
    expect(trts_cuda_malloc(&huge, size_t(1) << 50) == TRTS_E_RUNTIME, "oversized cuMemAlloc fails cleanly");
    std::printf("     message: %s\n", trts_last_error());

    trts_cuda_graph_destroy(exec);
    trts_cuda_host_free(pinned);
    trts_cuda_free(a);
    trts_cuda_free(b);
    trts_cuda_event_destroy(event);
    trts_cuda_stream_destroy(stream);
    trts::cuda_release_primary(0);
    std::printf("%s: %d failure(s)\n", g_failures == 0 ? "PASS" : "FAIL", g_failures);
    return g_failures == 0 ? 0 : 1;
}
