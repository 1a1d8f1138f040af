/*
 * trts.h - C API of the gst-trtvision TensorRT shim.
 *
 * The shim is compiled by build.rs against NVIDIA's public TensorRT headers (TENSORRT_DIR)
 * but is NOT linked against libnvinfer / libnvonnxparser / libcuda: those are dlopen()ed at
 * run time by trts_load() and trts_load_onnx_parser(). Everything in TensorRT 10+ besides the
 * factory functions is inline wrappers over virtual interfaces, so no TensorRT symbol is
 * needed at link time.
 *
 * Conventions:
 *  - Every function returning int32_t returns a trts_status. On failure the thread-local
 *    message returned by trts_last_error() says what went wrong (valid until the next shim
 *    call on the same thread).
 *  - No C++ exception ever leaves a function of this API.
 *  - CUDA work uses the CUDA context made current by trts_runtime_create() /
 *    trts_runtime_make_current() on the calling thread.
 *  - Device pointers are CUdeviceptr values carried as uint64_t; streams, events and graphs
 *    are opaque pointers.
 */
#ifndef GST_TRTVISION_TRTS_H
#define GST_TRTVISION_TRTS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Status codes. Keep in sync with src/backend/tensorrt/ffi.rs. */
enum trts_status
{
    TRTS_OK = 0,
    /** A library, symbol, GPU or compatible version is missing. */
    TRTS_E_UNAVAILABLE = 1,
    /** The ONNX model could not be parsed or is not usable. */
    TRTS_E_INVALID_MODEL = 2,
    /** A serialized engine could not be deserialized (other GPU / TensorRT version, corrupt). */
    TRTS_E_DESERIALIZE = 3,
    /** A tensor name or shape was rejected. */
    TRTS_E_SHAPE = 4,
    /** A CUDA or TensorRT call failed at run time. */
    TRTS_E_RUNTIME = 5,
    /** The requested precision cannot be built from this model with this TensorRT. */
    TRTS_E_PRECISION = 6,
};

/** Precision requested for an ONNX build. */
enum trts_precision
{
    TRTS_PRECISION_FP32 = 0,
    TRTS_PRECISION_FP16 = 1,
    TRTS_PRECISION_INT8 = 2,
};

/** Log sink: severity is TensorRT's ILogger::Severity (0 internal error .. 4 verbose). */
typedef void (*trts_log_fn)(int32_t severity, const char* msg);

typedef struct trts_runtime trts_runtime;
typedef struct trts_engine trts_engine;
typedef struct trts_blob trts_blob;

/** Message of the last failed call on this thread ("" when none). */
const char* trts_last_error(void);

/** NV_TENSORRT_VERSION of the headers the shim was compiled with (major*10000+minor*100+patch). */
int32_t trts_header_version(void);

/**
 * Loads libnvinfer and libcuda (once per process) and installs the log sink (may be NULL).
 * Writes getInferLibVersion() of the loaded library to *lib_version.
 */
int32_t trts_load(trts_log_fn log, int32_t* lib_version);

/** Loads libnvonnxparser (once per process); needed only to build engines from ONNX. */
int32_t trts_load_onnx_parser(void);

/** Name and compute capability of CUDA device `device` (name is NUL-terminated, truncated). */
int32_t trts_device_info(int32_t device, char* name, size_t name_cap, int32_t* cc_major, int32_t* cc_minor);

/** Retains the primary context of `device`, makes it current and creates an IRuntime. */
int32_t trts_runtime_create(int32_t device, trts_runtime** out);
/** Destroys the IRuntime and releases the primary context. NULL is ignored. */
void trts_runtime_destroy(trts_runtime* rt);
/** Makes the runtime's CUDA context current on the calling thread. */
int32_t trts_runtime_make_current(trts_runtime* rt);

/** Parameters of an ONNX build. Byte ranges may be NULL/0. */
typedef struct trts_build_params
{
    const char* onnx_path;
    int32_t precision;           /* enum trts_precision */
    int64_t max_batch;           /* profile: min 1, opt = max = max_batch on dim 0 */
    uint64_t workspace_bytes;    /* 0: TensorRT default */
    const void* timing_cache;    /* previous timing cache, may be NULL */
    size_t timing_cache_len;
    const void* calib_cache;     /* INT8 calibration cache (TensorRT 10 only), may be NULL */
    size_t calib_cache_len;
} trts_build_params;

/**
 * Parses the ONNX file and builds a serialized engine. On success *plan holds the engine and
 * *timing_cache the updated timing cache (may be NULL when unavailable); free both with
 * trts_blob_free().
 */
int32_t trts_build_onnx(trts_runtime* rt, const trts_build_params* params, trts_blob** plan, trts_blob** timing_cache);

const void* trts_blob_data(const trts_blob* blob);
size_t trts_blob_size(const trts_blob* blob);
void trts_blob_free(trts_blob* blob);

/** Deserializes an engine and creates its execution context. */
int32_t trts_engine_load(trts_runtime* rt, const void* plan, size_t len, trts_engine** out);
/** Destroys context and engine. NULL is ignored. */
void trts_engine_destroy(trts_engine* engine);

/** Maximum rank handled (nvinfer1::Dims::MAX_DIMS). */
#define TRTS_MAX_DIMS 8

/** Description of one I/O tensor of an engine. */
typedef struct trts_io_info
{
    const char* name;   /* owned by the engine */
    int32_t is_input;
    int32_t dtype;      /* nvinfer1::DataType */
    int32_t linear;     /* 1 when the tensor format is kLINEAR */
    int32_t on_host;    /* 1 when TensorRT expects the tensor in host memory (shape tensors) */
    int32_t nb_dims;
    int64_t dims[TRTS_MAX_DIMS];     /* -1: dynamic */
    int64_t min_dims[TRTS_MAX_DIMS]; /* inputs: profile 0 kMIN (equals dims when static) */
    int64_t max_dims[TRTS_MAX_DIMS]; /* inputs: profile 0 kMAX (equals dims when static) */
} trts_io_info;

int32_t trts_engine_num_io(const trts_engine* engine);
int32_t trts_engine_io_info(const trts_engine* engine, int32_t index, trts_io_info* out);

int32_t trts_context_set_input_shape(trts_engine* engine, const char* name, const int64_t* dims, int32_t nb_dims);
/** Shape of a tensor for the current input shapes (outputs: -1 when data dependent). */
int32_t trts_context_shape(const trts_engine* engine, const char* name, int64_t* dims, int32_t* nb_dims);
int32_t trts_context_set_address(trts_engine* engine, const char* name, uint64_t device_ptr);
int32_t trts_context_enqueue(trts_engine* engine, void* stream);

/* ---- CUDA driver API (current context) ---- */
int32_t trts_cuda_stream_create(void** stream);
void trts_cuda_stream_destroy(void* stream);
int32_t trts_cuda_stream_sync(void* stream);
int32_t trts_cuda_malloc(uint64_t* ptr, size_t bytes);
void trts_cuda_free(uint64_t ptr);
int32_t trts_cuda_host_alloc(void** ptr, size_t bytes);
void trts_cuda_host_free(void* ptr);
int32_t trts_cuda_memset_async(uint64_t dst, uint8_t value, size_t bytes, void* stream);
int32_t trts_cuda_htod_async(uint64_t dst, const void* src, size_t bytes, void* stream);
int32_t trts_cuda_dtoh_async(void* dst, uint64_t src, size_t bytes, void* stream);
int32_t trts_cuda_dtod_async(uint64_t dst, uint64_t src, size_t bytes, void* stream);
int32_t trts_cuda_event_create(void** event);
void trts_cuda_event_destroy(void* event);
int32_t trts_cuda_event_record(void* event, void* stream);
int32_t trts_cuda_event_sync(void* event);
/** Starts a thread-local stream capture. */
int32_t trts_cuda_capture_begin(void* stream);
/** Ends the capture and instantiates it; *exec is NULL on failure (capture is always ended). */
int32_t trts_cuda_capture_end(void* stream, void** exec);
int32_t trts_cuda_graph_launch(void* exec, void* stream);
void trts_cuda_graph_destroy(void* exec);

#ifdef __cplusplus
}
#endif

#endif /* GST_TRTVISION_TRTS_H */
