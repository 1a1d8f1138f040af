// common.cpp - TensorRT logger, run-time loading of libnvinfer / libnvonnxparser, blobs.
#include "internal.h"

#include <NvOnnxParser.h>

#include <atomic>
#include <cstring>
#include <dlfcn.h>
#include <mutex>
#include <vector>

#define TRTS_STR2(x) #x
#define TRTS_STR(x) TRTS_STR2(x)

namespace trts
{
namespace
{

std::atomic<trts_log_fn> g_log_fn{nullptr};

class Logger final : public nvinfer1::ILogger
{
public:
    void log(Severity severity, nvinfer1::AsciiChar const* msg) noexcept override
    {
        try
        {
            if (msg == nullptr)
            {
                return;
            }
            if (severity == Severity::kERROR || severity == Severity::kINTERNAL_ERROR)
            {
                record_logged_error(msg);
            }
            trts_log_fn fn = g_log_fn.load(std::memory_order_acquire);
            if (fn != nullptr)
            {
                fn(static_cast<int32_t>(severity), msg);
            }
        }
        catch (...)
        {
        }
    }
};

Logger g_logger;

std::mutex g_load_mutex;
NvInferLib g_nvinfer;
bool g_nvinfer_loaded = false;
OnnxParserLib g_onnx;
bool g_onnx_loaded = false;

std::string version_string(int32_t v)
{
    return std::to_string(v / 10000) + "." + std::to_string((v / 100) % 100) + "." + std::to_string(v % 100);
}

} // namespace

nvinfer1::ILogger& logger()
{
    return g_logger;
}

NvInferLib const* nvinfer()
{
    std::lock_guard<std::mutex> lock(g_load_mutex);
    return g_nvinfer_loaded ? &g_nvinfer : nullptr;
}

OnnxParserLib const* onnx_parser()
{
    std::lock_guard<std::mutex> lock(g_load_mutex);
    return g_onnx_loaded ? &g_onnx : nullptr;
}

} // namespace trts

using namespace trts;

extern "C" int32_t trts_header_version(void)
{
    return static_cast<int32_t>(NV_TENSORRT_VERSION);
}

extern "C" int32_t trts_load(trts_log_fn log, int32_t* lib_version)
{
    return guarded([&]() -> int32_t {
        g_log_fn.store(log, std::memory_order_release);
        {
            std::lock_guard<std::mutex> lock(g_load_mutex);
            if (!g_nvinfer_loaded)
            {
                // The library of the major version the shim was compiled for comes first;
                // the other generation is only opened to report a precise mismatch.
                std::vector<std::string> candidates{"libnvinfer.so." TRTS_STR(NV_TENSORRT_MAJOR)};
                for (char const* other : {"libnvinfer.so.11", "libnvinfer.so.10", "libnvinfer.so"})
                {
                    if (candidates.front() != other)
                    {
                        candidates.emplace_back(other);
                    }
                }
                std::string tried;
                std::string opened;
                void* handle = open_first(candidates, tried, opened);
                if (handle == nullptr)
                {
                    return fail(TRTS_E_UNAVAILABLE,
                        "libnvinfer.so." TRTS_STR(NV_TENSORRT_MAJOR) " (TensorRT " TRTS_STR(NV_TENSORRT_MAJOR)
                        ") could not be loaded: install TensorRT and add the directory holding "
                        "libnvinfer.so." TRTS_STR(NV_TENSORRT_MAJOR) " to LD_LIBRARY_PATH [" + tried + "]");
                }
                NvInferLib lib;
                lib.create_runtime
                    = reinterpret_cast<void* (*) (void*, int32_t)>(dlsym(handle, "createInferRuntime_INTERNAL"));
                lib.create_builder
                    = reinterpret_cast<void* (*) (void*, int32_t)>(dlsym(handle, "createInferBuilder_INTERNAL"));
                lib.lib_version = reinterpret_cast<int32_t (*)()>(dlsym(handle, "getInferLibVersion"));
                if (lib.create_runtime == nullptr || lib.lib_version == nullptr)
                {
                    return fail(TRTS_E_UNAVAILABLE,
                        opened + " does not export createInferRuntime_INTERNAL/getInferLibVersion: it is not a "
                                 "usable TensorRT runtime library; fix LD_LIBRARY_PATH");
                }
                int32_t const version = lib.lib_version();
                if (version / 10000 != NV_TENSORRT_MAJOR)
                {
                    return fail(TRTS_E_UNAVAILABLE,
                        "found TensorRT " + version_string(version) + " (" + opened
                            + ") but this plugin was compiled against TensorRT "
                            + version_string(NV_TENSORRT_VERSION)
                            + " headers: put libnvinfer.so." TRTS_STR(NV_TENSORRT_MAJOR)
                              " first in LD_LIBRARY_PATH or rebuild the plugin with TENSORRT_DIR pointing "
                              "at the installed TensorRT");
                }
                g_nvinfer = lib;
                g_nvinfer_loaded = true;
            }
            if (lib_version != nullptr)
            {
                *lib_version = g_nvinfer.lib_version();
            }
        }
        return cuda_load();
    });
}

extern "C" int32_t trts_load_onnx_parser(void)
{
    return guarded([&]() -> int32_t {
        std::lock_guard<std::mutex> lock(g_load_mutex);
        if (g_onnx_loaded)
        {
            return TRTS_OK;
        }
        std::vector<std::string> const candidates{
            "libnvonnxparser.so." TRTS_STR(NV_TENSORRT_MAJOR), "libnvonnxparser.so"};
        std::string tried;
        std::string opened;
        void* handle = open_first(candidates, tried, opened);
        if (handle == nullptr)
        {
            return fail(TRTS_E_UNAVAILABLE,
                "libnvonnxparser.so." TRTS_STR(NV_TENSORRT_MAJOR)
                " (TensorRT ONNX parser) could not be loaded, it is needed to build an engine from an ONNX "
                "model: install it and add its directory to LD_LIBRARY_PATH, or pass a prebuilt .engine [" + tried
                    + "]");
        }
        auto create = reinterpret_cast<void* (*) (void*, void*, int)>(dlsym(handle, "createNvOnnxParser_INTERNAL"));
        if (create == nullptr)
        {
            return fail(TRTS_E_UNAVAILABLE,
                opened + " does not export createNvOnnxParser_INTERNAL: fix LD_LIBRARY_PATH");
        }
        g_onnx.create_parser = create;
        g_onnx_loaded = true;
        return TRTS_OK;
    });
}

extern "C" const void* trts_blob_data(const trts_blob* blob)
{
    return (blob != nullptr && blob->memory != nullptr) ? blob->memory->data() : nullptr;
}

extern "C" size_t trts_blob_size(const trts_blob* blob)
{
    return (blob != nullptr && blob->memory != nullptr) ? blob->memory->size() : 0;
}

extern "C" void trts_blob_free(trts_blob* blob)
{
    guarded_void([&]() {
        if (blob != nullptr)
        {
            delete blob->memory;
            delete blob;
        }
    });
}
