// cuda.cpp - the few CUDA driver API functions the backend needs, resolved from
// libcuda.so.1 with dlsym. CUDA headers are not required: the types below mirror cuda.h.
#include "status.h"

#include <atomic>
#include <dlfcn.h>
#include <mutex>

namespace
{

// Mirrors of cuda.h types (ABI-stable since CUDA 3.2 for the functions used here).
using CUresult = int;
using CUdevice = int;
using CUdeviceptr = unsigned long long;
using CUcontext = struct CUctx_st*;
using CUstream = struct CUstream_st*;
using CUevent = struct CUevent_st*;
using CUgraph = struct CUgraph_st*;
using CUgraphExec = struct CUgraphExec_st*;

constexpr CUresult CUDA_SUCCESS = 0;
constexpr CUresult CUDA_ERROR_NO_DEVICE = 100;
constexpr int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75;
constexpr int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76;
constexpr unsigned CU_STREAM_NON_BLOCKING = 0x1;
constexpr unsigned CU_EVENT_BLOCKING_SYNC = 0x1;
constexpr unsigned CU_EVENT_DISABLE_TIMING = 0x2;
constexpr int CU_STREAM_CAPTURE_MODE_THREAD_LOCAL = 1;

struct Driver
{
    CUresult (*cuInit)(unsigned) = nullptr;
    CUresult (*cuGetErrorString)(CUresult, char const**) = nullptr;
    CUresult (*cuGetErrorName)(CUresult, char const**) = nullptr;
    CUresult (*cuDeviceGet)(CUdevice*, int) = nullptr;
    CUresult (*cuDeviceGetCount)(int*) = nullptr;
    CUresult (*cuDeviceGetName)(char*, int, CUdevice) = nullptr;
    CUresult (*cuDeviceGetAttribute)(int*, int, CUdevice) = nullptr;
    CUresult (*cuDevicePrimaryCtxRetain)(CUcontext*, CUdevice) = nullptr;
    CUresult (*cuDevicePrimaryCtxRelease)(CUdevice) = nullptr;
    CUresult (*cuCtxSetCurrent)(CUcontext) = nullptr;
    CUresult (*cuStreamCreate)(CUstream*, unsigned) = nullptr;
    CUresult (*cuStreamDestroy)(CUstream) = nullptr;
    CUresult (*cuStreamSynchronize)(CUstream) = nullptr;
    CUresult (*cuMemAlloc)(CUdeviceptr*, size_t) = nullptr;
    CUresult (*cuMemFree)(CUdeviceptr) = nullptr;
    CUresult (*cuMemHostAlloc)(void**, size_t, unsigned) = nullptr;
    CUresult (*cuMemFreeHost)(void*) = nullptr;
    CUresult (*cuMemsetD8Async)(CUdeviceptr, unsigned char, size_t, CUstream) = nullptr;
    CUresult (*cuMemcpyHtoDAsync)(CUdeviceptr, void const*, size_t, CUstream) = nullptr;
    CUresult (*cuMemcpyDtoHAsync)(void*, CUdeviceptr, size_t, CUstream) = nullptr;
    CUresult (*cuMemcpyDtoDAsync)(CUdeviceptr, CUdeviceptr, size_t, CUstream) = nullptr;
    CUresult (*cuEventCreate)(CUevent*, unsigned) = nullptr;
    CUresult (*cuEventDestroy)(CUevent) = nullptr;
    CUresult (*cuEventRecord)(CUevent, CUstream) = nullptr;
    CUresult (*cuEventSynchronize)(CUevent) = nullptr;
    // CUDA graphs (optional: missing symbols only disable graph capture).
    CUresult (*cuStreamBeginCapture)(CUstream, int) = nullptr;
    CUresult (*cuStreamEndCapture)(CUstream, CUgraph*) = nullptr;
    CUresult (*cuGraphInstantiateWithFlags)(CUgraphExec*, CUgraph, unsigned long long) = nullptr;
    CUresult (*cuGraphLaunch)(CUgraphExec, CUstream) = nullptr;
    CUresult (*cuGraphExecDestroy)(CUgraphExec) = nullptr;
    CUresult (*cuGraphDestroy)(CUgraph) = nullptr;
};

std::mutex g_mutex;
Driver g_drv;
//! Set (release) once g_drv is complete and cuInit succeeded; g_drv is immutable after.
std::atomic<bool> g_loaded{false};

template <typename T>
bool resolve(void* handle, char const* name, T& slot, std::string& missing)
{
    slot = reinterpret_cast<T>(dlsym(handle, name));
    if (slot == nullptr)
    {
        if (!missing.empty())
        {
            missing += ", ";
        }
        missing += name;
        return false;
    }
    return true;
}

std::string describe(CUresult r)
{
    char const* name = nullptr;
    char const* text = nullptr;
    if (g_drv.cuGetErrorName != nullptr)
    {
        g_drv.cuGetErrorName(r, &name);
    }
    if (g_drv.cuGetErrorString != nullptr)
    {
        g_drv.cuGetErrorString(r, &text);
    }
    std::string s = name != nullptr ? name : ("CUDA error " + std::to_string(r));
    if (text != nullptr)
    {
        s += std::string(" (") + text + ")";
    }
    return s;
}

int32_t check(CUresult r, char const* what)
{
    if (r == CUDA_SUCCESS)
    {
        return TRTS_OK;
    }
    return trts::fail(TRTS_E_RUNTIME, std::string(what) + " failed: " + describe(r));
}

bool loaded()
{
    return g_loaded.load(std::memory_order_acquire);
}

int32_t not_loaded()
{
    return trts::fail(TRTS_E_UNAVAILABLE, "the CUDA driver is not loaded (trts_load was not called)");
}

#define TRTS_NEED_DRIVER()                                                                                             \
    if (!loaded())                                                                                                     \
    {                                                                                                                  \
        return not_loaded();                                                                                           \
    }

} // namespace

namespace trts
{

int32_t cuda_load()
{
    std::lock_guard<std::mutex> lock(g_mutex);
    if (loaded())
    {
        return TRTS_OK;
    }
    std::vector<std::string> const candidates{"libcuda.so.1", "libcuda.so"};
    std::string tried;
    std::string opened;
    void* h = open_first(candidates, tried, opened);
    if (h == nullptr)
    {
        return fail(TRTS_E_UNAVAILABLE,
            "libcuda.so.1 (NVIDIA driver) could not be loaded: install the NVIDIA driver, or add the directory "
            "holding libcuda.so.1 to LD_LIBRARY_PATH (in containers use the NVIDIA container runtime) [" + tried
                + "]");
    }
    Driver d;
    std::string missing;
    resolve(h, "cuGetErrorString", d.cuGetErrorString, missing);
    resolve(h, "cuGetErrorName", d.cuGetErrorName, missing);
    resolve(h, "cuInit", d.cuInit, missing);
    resolve(h, "cuDeviceGet", d.cuDeviceGet, missing);
    resolve(h, "cuDeviceGetCount", d.cuDeviceGetCount, missing);
    resolve(h, "cuDeviceGetName", d.cuDeviceGetName, missing);
    resolve(h, "cuDeviceGetAttribute", d.cuDeviceGetAttribute, missing);
    resolve(h, "cuDevicePrimaryCtxRetain", d.cuDevicePrimaryCtxRetain, missing);
    resolve(h, "cuDevicePrimaryCtxRelease_v2", d.cuDevicePrimaryCtxRelease, missing);
    resolve(h, "cuCtxSetCurrent", d.cuCtxSetCurrent, missing);
    resolve(h, "cuStreamCreate", d.cuStreamCreate, missing);
    resolve(h, "cuStreamDestroy_v2", d.cuStreamDestroy, missing);
    resolve(h, "cuStreamSynchronize", d.cuStreamSynchronize, missing);
    resolve(h, "cuMemAlloc_v2", d.cuMemAlloc, missing);
    resolve(h, "cuMemFree_v2", d.cuMemFree, missing);
    resolve(h, "cuMemHostAlloc", d.cuMemHostAlloc, missing);
    resolve(h, "cuMemFreeHost", d.cuMemFreeHost, missing);
    resolve(h, "cuMemsetD8Async", d.cuMemsetD8Async, missing);
    resolve(h, "cuMemcpyHtoDAsync_v2", d.cuMemcpyHtoDAsync, missing);
    resolve(h, "cuMemcpyDtoHAsync_v2", d.cuMemcpyDtoHAsync, missing);
    resolve(h, "cuMemcpyDtoDAsync_v2", d.cuMemcpyDtoDAsync, missing);
    resolve(h, "cuEventCreate", d.cuEventCreate, missing);
    resolve(h, "cuEventDestroy_v2", d.cuEventDestroy, missing);
    resolve(h, "cuEventRecord", d.cuEventRecord, missing);
    resolve(h, "cuEventSynchronize", d.cuEventSynchronize, missing);
    if (!missing.empty())
    {
        return fail(TRTS_E_UNAVAILABLE,
            opened + " lacks " + missing + ": the NVIDIA driver is too old, update it (or fix LD_LIBRARY_PATH)");
    }
    std::string optional;
    resolve(h, "cuStreamBeginCapture_v2", d.cuStreamBeginCapture, optional);
    resolve(h, "cuStreamEndCapture", d.cuStreamEndCapture, optional);
    resolve(h, "cuGraphInstantiateWithFlags", d.cuGraphInstantiateWithFlags, optional);
    resolve(h, "cuGraphLaunch", d.cuGraphLaunch, optional);
    resolve(h, "cuGraphExecDestroy", d.cuGraphExecDestroy, optional);
    resolve(h, "cuGraphDestroy", d.cuGraphDestroy, optional);

    CUresult r = d.cuInit(0);
    if (r != CUDA_SUCCESS)
    {
        g_drv = d; // for describe()
        return fail(TRTS_E_UNAVAILABLE,
            "cuInit failed: " + describe(r)
                + (r == CUDA_ERROR_NO_DEVICE ? std::string(": no CUDA GPU is visible (check CUDA_VISIBLE_DEVICES)")
                                             : std::string(": check the NVIDIA driver installation")));
    }
    g_drv = d;
    g_loaded.store(true, std::memory_order_release);
    return TRTS_OK;
}

int32_t cuda_retain_primary(int32_t device, void** ctx)
{
    TRTS_NEED_DRIVER();
    int count = 0;
    if (g_drv.cuDeviceGetCount(&count) != CUDA_SUCCESS || device < 0 || device >= count)
    {
        return fail(TRTS_E_UNAVAILABLE,
            "CUDA device " + std::to_string(device) + " does not exist (" + std::to_string(count) + " visible)");
    }
    CUdevice dev = 0;
    if (int32_t s = check(g_drv.cuDeviceGet(&dev, device), "cuDeviceGet"))
    {
        return s;
    }
    CUcontext c = nullptr;
    if (int32_t s = check(g_drv.cuDevicePrimaryCtxRetain(&c, dev), "cuDevicePrimaryCtxRetain"))
    {
        return s;
    }
    if (int32_t s = check(g_drv.cuCtxSetCurrent(c), "cuCtxSetCurrent"))
    {
        g_drv.cuDevicePrimaryCtxRelease(dev);
        return s;
    }
    *ctx = c;
    return TRTS_OK;
}

int32_t cuda_set_current(void* ctx)
{
    TRTS_NEED_DRIVER();
    return check(g_drv.cuCtxSetCurrent(static_cast<CUcontext>(ctx)), "cuCtxSetCurrent");
}

void cuda_release_primary(int32_t device)
{
    if (!loaded())
    {
        return;
    }
    CUdevice dev = 0;
    if (g_drv.cuDeviceGet(&dev, device) == CUDA_SUCCESS)
    {
        g_drv.cuDevicePrimaryCtxRelease(dev);
    }
}

} // namespace trts

using trts::guarded;
using trts::guarded_void;

extern "C" int32_t trts_device_info(int32_t device, char* name, size_t name_cap, int32_t* cc_major, int32_t* cc_minor)
{
    return guarded([&]() -> int32_t {
        TRTS_NEED_DRIVER();
        int count = 0;
        if (g_drv.cuDeviceGetCount(&count) != CUDA_SUCCESS || device < 0 || device >= count)
        {
            return trts::fail(TRTS_E_UNAVAILABLE,
                "CUDA device " + std::to_string(device) + " does not exist (" + std::to_string(count) + " visible)");
        }
        CUdevice dev = 0;
        if (int32_t s = check(g_drv.cuDeviceGet(&dev, device), "cuDeviceGet"))
        {
            return s;
        }
        if (name != nullptr && name_cap > 0)
        {
            int const cap = name_cap > 4096 ? 4096 : static_cast<int>(name_cap);
            if (int32_t s = check(g_drv.cuDeviceGetName(name, cap, dev), "cuDeviceGetName"))
            {
                return s;
            }
            name[name_cap - 1] = '\0';
        }
        int major = 0;
        int minor = 0;
        if (int32_t s = check(
                g_drv.cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev), "cuDeviceGetAttribute"))
        {
            return s;
        }
        if (int32_t s = check(
                g_drv.cuDeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev), "cuDeviceGetAttribute"))
        {
            return s;
        }
        *cc_major = major;
        *cc_minor = minor;
        return TRTS_OK;
    });
}

extern "C" int32_t trts_cuda_stream_create(void** stream)
{
    return guarded([&]() -> int32_t {
        TRTS_NEED_DRIVER();
        CUstream s = nullptr;
        int32_t st = check(g_drv.cuStreamCreate(&s, CU_STREAM_NON_BLOCKING), "cuStreamCreate");
        *stream = s;
        return st;
    });
}

extern "C" void trts_cuda_stream_destroy(void* stream)
{
    guarded_void([&]() {
        if (stream != nullptr && loaded())
        {
            g_drv.cuStreamDestroy(static_cast<CUstream>(stream));
        }
    });
}

extern "C" int32_t trts_cuda_stream_sync(void* stream)
{
    return guarded([&]() -> int32_t {
        TRTS_NEED_DRIVER();
        return check(g_drv.cuStreamSynchronize(static_cast<CUstream>(stream)), "cuStreamSynchronize");
    });
}

extern "C" int32_t trts_cuda_malloc(uint64_t* ptr, size_t bytes)
{
    return guarded([&]() -> int32_t {
        TRTS_NEED_DRIVER();
        CUdeviceptr p = 0;
        CUresult r = g_drv.cuMemAlloc(&p, bytes == 0 ? 1 : bytes);
        if (r != CUDA_SUCCESS)
        {
            return trts::fail(
                TRTS_E_RUNTIME, "cuMemAlloc(" + std::to_string(bytes) + " bytes) failed: " + describe(r));
        }
        *ptr = p;
        return TRTS_OK;
    });
}

extern "C" void trts_cuda_free(uint64_t ptr)
{
    guarded_void([&]() {
        if (ptr != 0 && loaded())
        {
            g_drv.cuMemFree(ptr);
        }
    });
}

extern "C" int32_t trts_cuda_host_alloc(void** ptr, size_t bytes)
{
    return guarded([&]() -> int32_t {
        TRTS_NEED_DRIVER();
        void* p = nullptr;
        CUresult r = g_drv.cuMemHostAlloc(&p, bytes == 0 ? 1 : bytes, 0);
        if (r != CUDA_SUCCESS)
        {
            return trts::fail(TRTS_E_RUNTIME,
                "cuMemHostAlloc(" + std::to_string(bytes) + " bytes of pinned memory) failed: " + describe(r));
        }
        *ptr = p;
        return TRTS_OK;
    });
}

extern "C" void trts_cuda_host_free(void* ptr)
{
    guarded_void([&]() {
        if (ptr != nullptr && loaded())
        {
            g_drv.cuMemFreeHost(ptr);
        }
    });
}

extern "C" int32_t trts_cuda_memset_async(uint64_t dst, uint8_t value, size_t bytes, void* stream)
{
    return guarded([&]() -> int32_t {
        TRTS_NEED_DRIVER();
        return check(g_drv.cuMemsetD8Async(dst, value, bytes, static_cast<CUstream>(stream)), "cuMemsetD8Async");
    });
}

extern "C" int32_t trts_cuda_htod_async(uint64_t dst, const void* src, size_t bytes, void* stream)
{
    return guarded([&]() -> int32_t {
        TRTS_NEED_DRIVER();
        return check(g_drv.cuMemcpyHtoDAsync(dst, src, bytes, static_cast<CUstream>(stream)), "cuMemcpyHtoDAsync");
    });
}

extern "C" int32_t trts_cuda_dtoh_async(void* dst, uint64_t src, size_t bytes, void* stream)
{
    return guarded([&]() -> int32_t {
        TRTS_NEED_DRIVER();
        return check(g_drv.cuMemcpyDtoHAsync(dst, src, bytes, static_cast<CUstream>(stream)), "cuMemcpyDtoHAsync");
    });
}

extern "C" int32_t trts_cuda_dtod_async(uint64_t dst, uint64_t src, size_t bytes, void* stream)
{
    return guarded([&]() -> int32_t {
        TRTS_NEED_DRIVER();
        return check(g_drv.cuMemcpyDtoDAsync(dst, src, bytes, static_cast<CUstream>(stream)), "cuMemcpyDtoDAsync");
    });
}

extern "C" int32_t trts_cuda_event_create(void** event)
{
    return guarded([&]() -> int32_t {
        TRTS_NEED_DRIVER();
        CUevent e = nullptr;
        int32_t st
            = check(g_drv.cuEventCreate(&e, CU_EVENT_BLOCKING_SYNC | CU_EVENT_DISABLE_TIMING), "cuEventCreate");
        *event = e;
        return st;
    });
}

extern "C" void trts_cuda_event_destroy(void* event)
{
    guarded_void([&]() {
        if (event != nullptr && loaded())
        {
            g_drv.cuEventDestroy(static_cast<CUevent>(event));
        }
    });
}

extern "C" int32_t trts_cuda_event_record(void* event, void* stream)
{
    return guarded([&]() -> int32_t {
        TRTS_NEED_DRIVER();
        return check(g_drv.cuEventRecord(static_cast<CUevent>(event), static_cast<CUstream>(stream)), "cuEventRecord");
    });
}

extern "C" int32_t trts_cuda_event_sync(void* event)
{
    return guarded([&]() -> int32_t {
        TRTS_NEED_DRIVER();
        return check(g_drv.cuEventSynchronize(static_cast<CUevent>(event)), "cuEventSynchronize");
    });
}

extern "C" int32_t trts_cuda_capture_begin(void* stream)
{
    return guarded([&]() -> int32_t {
        TRTS_NEED_DRIVER();
        if (g_drv.cuStreamBeginCapture == nullptr || g_drv.cuStreamEndCapture == nullptr
            || g_drv.cuGraphInstantiateWithFlags == nullptr || g_drv.cuGraphLaunch == nullptr
            || g_drv.cuGraphExecDestroy == nullptr || g_drv.cuGraphDestroy == nullptr)
        {
            return trts::fail(TRTS_E_UNAVAILABLE, "the NVIDIA driver does not support CUDA graph capture");
        }
        return check(g_drv.cuStreamBeginCapture(static_cast<CUstream>(stream), CU_STREAM_CAPTURE_MODE_THREAD_LOCAL),
            "cuStreamBeginCapture");
    });
}

extern "C" int32_t trts_cuda_capture_end(void* stream, void** exec)
{
    return guarded([&]() -> int32_t {
        TRTS_NEED_DRIVER();
        *exec = nullptr;
        if (g_drv.cuStreamEndCapture == nullptr)
        {
            return trts::fail(TRTS_E_UNAVAILABLE, "the NVIDIA driver does not support CUDA graph capture");
        }
        CUgraph graph = nullptr;
        if (int32_t s = check(g_drv.cuStreamEndCapture(static_cast<CUstream>(stream), &graph), "cuStreamEndCapture"))
        {
            if (graph != nullptr)
            {
                g_drv.cuGraphDestroy(graph);
            }
            return s;
        }
        CUgraphExec e = nullptr;
        int32_t s = check(g_drv.cuGraphInstantiateWithFlags(&e, graph, 0), "cuGraphInstantiateWithFlags");
        g_drv.cuGraphDestroy(graph);
        if (s == TRTS_OK)
        {
            *exec = e;
        }
        return s;
    });
}

extern "C" int32_t trts_cuda_graph_launch(void* exec, void* stream)
{
    return guarded([&]() -> int32_t {
        TRTS_NEED_DRIVER();
        if (g_drv.cuGraphLaunch == nullptr)
        {
            return trts::fail(TRTS_E_UNAVAILABLE, "the NVIDIA driver does not support CUDA graphs");
        }
        return check(
            g_drv.cuGraphLaunch(static_cast<CUgraphExec>(exec), static_cast<CUstream>(stream)), "cuGraphLaunch");
    });
}

extern "C" void trts_cuda_graph_destroy(void* exec)
{
    guarded_void([&]() {
        if (exec != nullptr && loaded() && g_drv.cuGraphExecDestroy != nullptr)
        {
            g_drv.cuGraphExecDestroy(static_cast<CUgraphExec>(exec));
        }
    });
}
