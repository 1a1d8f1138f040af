// builder.cpp - ONNX -> serialized TensorRT engine.
//
// TensorRT 10: weakly typed network, precision from BuilderFlag::kFP16 / kINT8 (with an
//              optional calibration cache replayed through an IInt8EntropyCalibrator2).
// TensorRT 11: networks are always strongly typed and the precision flags are gone: FP16
//              comes from an FP16 ONNX (engines/convert_fp16.py), INT8 from Q/DQ nodes.
#include "internal.h"

#include <NvOnnxParser.h>

#include <memory>
#include <vector>

using namespace trts;

namespace
{

template <typename T>
struct Deleter
{
    void operator()(T* p) const noexcept
    {
        delete p;
    }
};
template <typename T>
using Owned = std::unique_ptr<T, Deleter<T>>;

std::string dims_string(nvinfer1::Dims const& d)
{
    std::string s = "[";
    for (int32_t i = 0; i < d.nbDims; ++i)
    {
        s += (i > 0 ? ", " : "") + (d.d[i] < 0 ? std::string("dyn") : std::to_string(d.d[i]));
    }
    return s + "]";
}

//! Whether any network input or layer output has data type `t`.
bool network_uses_type(nvinfer1::INetworkDefinition const& net, nvinfer1::DataType t)
{
    for (int32_t i = 0; i < net.getNbInputs(); ++i)
    {
        if (net.getInput(i)->getType() == t)
        {
            return true;
        }
    }
    for (int32_t l = 0; l < net.getNbLayers(); ++l)
    {
        nvinfer1::ILayer const* layer = net.getLayer(l);
        for (int32_t o = 0; o < layer->getNbOutputs(); ++o)
        {
            nvinfer1::ITensor const* t_out = layer->getOutput(o);
            if (t_out != nullptr && t_out->getType() == t)
            {
                return true;
            }
        }
    }
    return false;
}

#if NV_TENSORRT_MAJOR < 11
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
//! Replays a calibration cache file: no calibration batches, only the cached scales.
class CacheCalibrator final : public nvinfer1::IInt8EntropyCalibrator2
{
public:
    explicit CacheCalibrator(std::vector<char> cache)
        : mCache(std::move(cache))
    {
    }
    int32_t getBatchSize() const noexcept override
    {
        return 1;
    }
    bool getBatch(void**, char const**, int32_t) noexcept override
    {
        return false;
    }
    void const* readCalibrationCache(std::size_t& length) noexcept override
    {
        length = mCache.size();
        return mCache.empty() ? nullptr : mCache.data();
    }
    void writeCalibrationCache(void const*, std::size_t) noexcept override {}

private:
    std::vector<char> mCache;
};
#pragma GCC diagnostic pop
#endif

int32_t parse_errors(nvonnxparser::IParser const& parser, char const* path)
{
    std::string msg = std::string("TensorRT could not parse ONNX model ") + path;
    int32_t const n = parser.getNbErrors();
    for (int32_t i = 0; i < n && i < 5; ++i)
    {
        nvonnxparser::IParserError const* err = parser.getError(i);
        if (err == nullptr)
        {
            continue;
        }
        msg += i == 0 ? ": " : "; ";
        if (err->nodeName() != nullptr && err->nodeName()[0] != '\0')
        {
            msg += std::string("node ") + err->nodeName();
            if (err->nodeOperator() != nullptr && err->nodeOperator()[0] != '\0')
            {
                msg += std::string(" (") + err->nodeOperator() + ")";
            }
            msg += ": ";
        }
        msg += err->desc() != nullptr ? err->desc() : "unknown error";
    }
    return fail(TRTS_E_INVALID_MODEL, msg);
}

trts_blob* make_blob(nvinfer1::IHostMemory* mem)
{
    if (mem == nullptr)
    {
        return nullptr;
    }
    auto* b = new trts_blob;
    b->memory = mem;
    return b;
}

} // namespace

extern "C" int32_t trts_build_onnx(trts_runtime* rt, const trts_build_params* p, trts_blob** plan_out, trts_blob** timing_out)
{
    return guarded([&]() -> int32_t {
        *plan_out = nullptr;
        *timing_out = nullptr;
        NvInferLib const* lib = nvinfer();
        OnnxParserLib const* onnx = onnx_parser();
        if (lib == nullptr || lib->create_builder == nullptr || onnx == nullptr)
        {
            return fail(TRTS_E_UNAVAILABLE, "libnvinfer / libnvonnxparser are not loaded");
        }
        if (int32_t s = cuda_set_current(rt->ctx))
        {
            return s;
        }
        Owned<nvinfer1::IBuilder> builder(
            static_cast<nvinfer1::IBuilder*>(lib->create_builder(&logger(), static_cast<int32_t>(NV_TENSORRT_VERSION))));
        if (!builder)
        {
            return fail(TRTS_E_UNAVAILABLE, "createInferBuilder failed (libnvinfer without builder resources?)");
        }
        // Flags 0: weakly typed on TensorRT 10 (precision flags apply), strongly typed on 11.
        Owned<nvinfer1::INetworkDefinition> network(builder->createNetworkV2(0U));
        if (!network)
        {
            return fail(TRTS_E_RUNTIME, "createNetworkV2 failed");
        }
        Owned<nvonnxparser::IParser> parser(
            static_cast<nvonnxparser::IParser*>(onnx->create_parser(network.get(), &logger(), NV_ONNX_PARSER_VERSION)));
        if (!parser)
        {
            return fail(TRTS_E_UNAVAILABLE, "createNvOnnxParser failed: libnvonnxparser does not match libnvinfer");
        }
        if (!parser->parseFromFile(p->onnx_path, static_cast<int>(nvinfer1::ILogger::Severity::kWARNING)))
        {
            return parse_errors(*parser, p->onnx_path);
        }

        Owned<nvinfer1::IBuilderConfig> config(builder->createBuilderConfig());
        if (!config)
        {
            return fail(TRTS_E_RUNTIME, "createBuilderConfig failed");
        }
        if (p->workspace_bytes > 0)
        {
            config->setMemoryPoolLimit(nvinfer1::MemoryPoolType::kWORKSPACE, static_cast<std::size_t>(p->workspace_bytes));
        }

        // One optimisation profile: batch dimension min 1, opt = max = max_batch.
        nvinfer1::IOptimizationProfile* profile = builder->createOptimizationProfile();
        bool dynamic = false;
        for (int32_t i = 0; i < network->getNbInputs(); ++i)
        {
            nvinfer1::ITensor* input = network->getInput(i);
            nvinfer1::Dims const d = input->getDimensions();
            for (int32_t k = 1; k < d.nbDims; ++k)
            {
                if (d.d[k] < 0)
                {
                    return fail(TRTS_E_SHAPE,
                        std::string("ONNX input '") + input->getName() + "' " + dims_string(d) + " has dynamic dimension "
                            + std::to_string(k)
                            + ": only the batch dimension (0) may be dynamic; re-export the model with a fixed "
                              "input size");
                }
            }
            if (d.nbDims > 0 && d.d[0] < 0)
            {
                nvinfer1::Dims mn = d;
                nvinfer1::Dims mx = d;
                mn.d[0] = 1;
                mx.d[0] = p->max_batch;
                bool ok = profile->setDimensions(input->getName(), nvinfer1::OptProfileSelector::kMIN, mn)
                    && profile->setDimensions(input->getName(), nvinfer1::OptProfileSelector::kOPT, mx)
                    && profile->setDimensions(input->getName(), nvinfer1::OptProfileSelector::kMAX, mx);
                if (!ok)
                {
                    return fail(TRTS_E_SHAPE,
                        std::string("could not set the optimisation profile of input '") + input->getName() + "'");
                }
                dynamic = true;
            }
        }
        if (dynamic && config->addOptimizationProfile(profile) < 0)
        {
            return fail(TRTS_E_SHAPE, "the optimisation profile (batch 1.." + std::to_string(p->max_batch)
                    + ") was rejected");
        }

#if NV_TENSORRT_MAJOR >= 11
        if (p->precision == TRTS_PRECISION_FP16 && !network_uses_type(*network, nvinfer1::DataType::kHALF))
        {
            return fail(TRTS_E_PRECISION,
                std::string("TensorRT ") + std::to_string(NV_TENSORRT_MAJOR)
                    + " builds strongly typed engines only, so FP16 must come from the model, but "
                    + p->onnx_path
                    + " is an FP32 model: convert it with `python3 engines/convert_fp16.py <in.onnx> <out_fp16.onnx>` "
                      "and use the FP16 model, or choose precision fp32");
        }
        if (p->precision == TRTS_PRECISION_INT8 && !network_uses_type(*network, nvinfer1::DataType::kINT8))
        {
            return fail(TRTS_E_PRECISION,
                std::string("TensorRT ") + std::to_string(NV_TENSORRT_MAJOR)
                    + " builds INT8 engines only from explicitly quantized models (QuantizeLinear/DequantizeLinear "
                      "nodes), and "
                    + p->onnx_path + " has none: quantize it (e.g. NVIDIA ModelOpt) or choose precision fp16/fp32");
        }
#else
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
        std::unique_ptr<CacheCalibrator> calibrator;
        if (p->precision == TRTS_PRECISION_FP16 || p->precision == TRTS_PRECISION_INT8)
        {
            config->setFlag(nvinfer1::BuilderFlag::kFP16);
        }
        if (p->precision == TRTS_PRECISION_INT8)
        {
            config->setFlag(nvinfer1::BuilderFlag::kINT8);
            if (p->calib_cache != nullptr && p->calib_cache_len > 0)
            {
                char const* c = static_cast<char const*>(p->calib_cache);
                calibrator = std::make_unique<CacheCalibrator>(std::vector<char>(c, c + p->calib_cache_len));
                config->setInt8Calibrator(calibrator.get());
            }
            else if (!network_uses_type(*network, nvinfer1::DataType::kINT8))
            {
                return fail(TRTS_E_PRECISION,
                    std::string("INT8 needs either a calibration cache (option int8-calibration-cache) or an "
                                "explicitly quantized model with Q/DQ nodes; ")
                        + p->onnx_path + " has no Q/DQ nodes");
            }
        }
#pragma GCC diagnostic pop
#endif

        // Timing cache: reuse the previous one when TensorRT accepts it, else start empty.
        Owned<nvinfer1::ITimingCache> timing(config->createTimingCache(
            p->timing_cache_len > 0 ? p->timing_cache : nullptr, p->timing_cache_len));
        if (timing && p->timing_cache_len > 0 && !config->setTimingCache(*timing, false))
        {
            timing.reset(config->createTimingCache(nullptr, 0));
        }
        if (!timing && p->timing_cache_len > 0)
        {
            timing.reset(config->createTimingCache(nullptr, 0));
        }
        if (timing && !config->setTimingCache(*timing, false))
        {
            timing.reset();
        }
        // A rejected old timing cache is not an error of this build: forget its messages.
        begin_call();

        Owned<nvinfer1::IHostMemory> plan(builder->buildSerializedNetwork(*network, *config));
        if (!plan || plan->size() == 0)
        {
            return fail(TRTS_E_RUNTIME, std::string("TensorRT failed to build an engine from ") + p->onnx_path);
        }
        if (timing)
        {
            *timing_out = make_blob(timing->serialize());
        }
        *plan_out = make_blob(plan.release());
        return TRTS_OK;
    });
}
