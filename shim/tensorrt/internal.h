// internal.h - TensorRT-side helpers of the shim (not part of the C API).
#ifndef GST_TRTVISION_TRTS_INTERNAL_H
#define GST_TRTVISION_TRTS_INTERNAL_H

#include "status.h"

#include <NvInfer.h>
#include <NvInferVersion.h>

#if NV_TENSORRT_MAJOR < 10
#error "gst-trtvision needs TensorRT 10 or newer headers (TENSORRT_DIR)"
#endif

namespace trts
{

// ---- logging ------------------------------------------------------------------------

//! The process-wide TensorRT logger (must outlive every TensorRT object).
nvinfer1::ILogger& logger();

// ---- libraries ----------------------------------------------------------------------

//! Factory functions resolved from libnvinfer.
struct NvInferLib
{
    void* (*create_runtime)(void* logger, int32_t version) = nullptr;
    void* (*create_builder)(void* logger, int32_t version) = nullptr;
    int32_t (*lib_version)() = nullptr;
};

//! Factory function resolved from libnvonnxparser.
struct OnnxParserLib
{
    void* (*create_parser)(void* network, void* logger, int version) = nullptr;
};

//! libnvinfer, or nullptr before a successful trts_load().
NvInferLib const* nvinfer();
//! libnvonnxparser, or nullptr before a successful trts_load_onnx_parser().
OnnxParserLib const* onnx_parser();

} // namespace trts

//! Opaque runtime handle.
struct trts_runtime
{
    int32_t device = 0;
    void* ctx = nullptr;
    nvinfer1::IRuntime* runtime = nullptr;
};

//! Opaque engine handle.
struct trts_engine
{
    nvinfer1::ICudaEngine* engine = nullptr;
    nvinfer1::IExecutionContext* context = nullptr;
};

//! Opaque byte blob (serialized engine or timing cache).
struct trts_blob
{
    nvinfer1::IHostMemory* memory = nullptr;
};

#endif // GST_TRTVISION_TRTS_INTERNAL_H
