// engine.cpp - IRuntime, engine deserialization, tensor discovery and enqueue.
#include "internal.h"

#include <cstring>

using namespace trts;

namespace
{

std::string tensor_label(char const* name)
{
    return std::string("tensor '") + (name != nullptr ? name : "(null)") + "'";
}

bool copy_dims(nvinfer1::Dims const& d, int64_t* out, int32_t* nb)
{
    if (d.nbDims < 0 || d.nbDims > TRTS_MAX_DIMS)
    {
        return false;
    }
    *nb = d.nbDims;
    for (int32_t i = 0; i < TRTS_MAX_DIMS; ++i)
    {
        out[i] = i < d.nbDims ? d.d[i] : 0;
    }
    return true;
}

} // namespace

extern "C" int32_t trts_runtime_create(int32_t device, trts_runtime** out)
{
    return guarded([&]() -> int32_t {
        *out = nullptr;
        NvInferLib const* lib = nvinfer();
        if (lib == nullptr)
        {
            return fail(TRTS_E_UNAVAILABLE, "libnvinfer is not loaded (trts_load was not called or failed)");
        }
        void* ctx = nullptr;
        if (int32_t s = cuda_retain_primary(device, &ctx))
        {
            return s;
        }
        auto* runtime
            = static_cast<nvinfer1::IRuntime*>(lib->create_runtime(&logger(), static_cast<int32_t>(NV_TENSORRT_VERSION)));
        if (runtime == nullptr)
        {
            cuda_release_primary(device);
            return fail(TRTS_E_UNAVAILABLE,
                "createInferRuntime failed: the loaded libnvinfer rejected header version "
                    + std::to_string(NV_TENSORRT_VERSION));
        }
        auto* rt = new trts_runtime;
        rt->device = device;
        rt->ctx = ctx;
        rt->runtime = runtime;
        *out = rt;
        return TRTS_OK;
    });
}

extern "C" void trts_runtime_destroy(trts_runtime* rt)
{
    guarded_void([&]() {
        if (rt == nullptr)
        {
            return;
        }
        cuda_set_current(rt->ctx);
        delete rt->runtime;
        cuda_release_primary(rt->device);
        delete rt;
    });
}

extern "C" int32_t trts_runtime_make_current(trts_runtime* rt)
{
    return guarded([&]() -> int32_t { return cuda_set_current(rt->ctx); });
}

extern "C" int32_t trts_engine_load(trts_runtime* rt, const void* plan, size_t len, trts_engine** out)
{
    return guarded([&]() -> int32_t {
        *out = nullptr;
        if (int32_t s = cuda_set_current(rt->ctx))
        {
            return s;
        }
        nvinfer1::ICudaEngine* engine = rt->runtime->deserializeCudaEngine(plan, len);
        if (engine == nullptr)
        {
            return fail(TRTS_E_DESERIALIZE,
                "TensorRT " + std::to_string(NV_TENSORRT_MAJOR) + " could not deserialize the engine ("
                    + std::to_string(len) + " bytes)");
        }
        nvinfer1::IExecutionContext* context = engine->createExecutionContext();
        if (context == nullptr)
        {
            delete engine;
            return fail(TRTS_E_RUNTIME, "createExecutionContext failed (out of GPU memory?)");
        }
        auto* e = new trts_engine;
        e->engine = engine;
        e->context = context;
        *out = e;
        return TRTS_OK;
    });
}

extern "C" void trts_engine_destroy(trts_engine* engine)
{
    guarded_void([&]() {
        if (engine == nullptr)
        {
            return;
        }
        delete engine->context;
        delete engine->engine;
        delete engine;
    });
}

extern "C" int32_t trts_engine_num_io(const trts_engine* engine)
{
    int32_t n = 0;
    guarded_void([&]() { n = engine->engine->getNbIOTensors(); });
    return n;
}

extern "C" int32_t trts_engine_io_info(const trts_engine* engine, int32_t index, trts_io_info* out)
{
    return guarded([&]() -> int32_t {
        nvinfer1::ICudaEngine const& e = *engine->engine;
        if (index < 0 || index >= e.getNbIOTensors())
        {
            return fail(TRTS_E_SHAPE, "I/O tensor index " + std::to_string(index) + " out of range");
        }
        char const* name = e.getIOTensorName(index);
        if (name == nullptr)
        {
            return fail(TRTS_E_RUNTIME, "getIOTensorName(" + std::to_string(index) + ") returned null");
        }
        std::memset(out, 0, sizeof(*out));
        out->name = name;
        out->is_input = e.getTensorIOMode(name) == nvinfer1::TensorIOMode::kINPUT ? 1 : 0;
        out->dtype = static_cast<int32_t>(e.getTensorDataType(name));
        out->linear = e.getTensorFormat(name) == nvinfer1::TensorFormat::kLINEAR ? 1 : 0;
        out->on_host = e.getTensorLocation(name) == nvinfer1::TensorLocation::kHOST ? 1 : 0;
        if (!copy_dims(e.getTensorShape(name), out->dims, &out->nb_dims))
        {
            return fail(TRTS_E_SHAPE, tensor_label(name) + " has an unsupported rank");
        }
        std::memcpy(out->min_dims, out->dims, sizeof(out->dims));
        std::memcpy(out->max_dims, out->dims, sizeof(out->dims));
        bool dynamic = false;
        for (int32_t i = 0; i < out->nb_dims; ++i)
        {
            dynamic = dynamic || out->dims[i] < 0;
        }
        if (out->is_input != 0 && dynamic && e.getNbOptimizationProfiles() > 0)
        {
            int32_t nb = 0;
            nvinfer1::Dims const mn = e.getProfileShape(name, 0, nvinfer1::OptProfileSelector::kMIN);
            nvinfer1::Dims const mx = e.getProfileShape(name, 0, nvinfer1::OptProfileSelector::kMAX);
            if (mn.nbDims == out->nb_dims && mx.nbDims == out->nb_dims)
            {
                copy_dims(mn, out->min_dims, &nb);
                copy_dims(mx, out->max_dims, &nb);
            }
        }
        return TRTS_OK;
    });
}

extern "C" int32_t trts_context_set_input_shape(trts_engine* engine, const char* name, const int64_t* dims, int32_t nb_dims)
{
    return guarded([&]() -> int32_t {
        if (nb_dims < 0 || nb_dims > TRTS_MAX_DIMS)
        {
            return fail(TRTS_E_SHAPE, tensor_label(name) + ": rank " + std::to_string(nb_dims) + " is not supported");
        }
        nvinfer1::Dims d{};
        d.nbDims = nb_dims;
        for (int32_t i = 0; i < nb_dims; ++i)
        {
            d.d[i] = dims[i];
        }
        if (!engine->context->setInputShape(name, d))
        {
            std::string shape;
            for (int32_t i = 0; i < nb_dims; ++i)
            {
                shape += (i > 0 ? "x" : "") + std::to_string(dims[i]);
            }
            return fail(TRTS_E_SHAPE,
                "TensorRT rejected shape " + shape + " for input " + tensor_label(name)
                    + " (outside the engine's optimisation profile?)");
        }
        return TRTS_OK;
    });
}

extern "C" int32_t trts_context_shape(const trts_engine* engine, const char* name, int64_t* dims, int32_t* nb_dims)
{
    return guarded([&]() -> int32_t {
        if (!copy_dims(engine->context->getTensorShape(name), dims, nb_dims))
        {
            return fail(TRTS_E_SHAPE, "TensorRT has no valid shape for " + tensor_label(name));
        }
        return TRTS_OK;
    });
}

extern "C" int32_t trts_context_set_address(trts_engine* engine, const char* name, uint64_t device_ptr)
{
    return guarded([&]() -> int32_t {
        if (!engine->context->setTensorAddress(name, reinterpret_cast<void*>(static_cast<uintptr_t>(device_ptr))))
        {
            return fail(TRTS_E_SHAPE, "TensorRT rejected the address of " + tensor_label(name));
        }
        return TRTS_OK;
    });
}

extern "C" int32_t trts_context_enqueue(trts_engine* engine, void* stream)
{
    return guarded([&]() -> int32_t {
        if (!engine->context->enqueueV3(static_cast<cudaStream_t>(stream)))
        {
            return fail(TRTS_E_RUNTIME, "enqueueV3 failed");
        }
        return TRTS_OK;
    });
}
