// status.h - error state, exception guards, dlopen helper and CUDA driver entry points of
// the shim. Needs no TensorRT or CUDA header (cuda.cpp and errors.cpp only include this).
#ifndef GST_TRTVISION_TRTS_STATUS_H
#define GST_TRTVISION_TRTS_STATUS_H

#include "trts.h"

#include <exception>
#include <new>
#include <string>
#include <vector>

namespace trts
{

// ---- errors -------------------------------------------------------------------------

//! Clears this thread's last error and the TensorRT messages captured for it.
void begin_call();
//! Sets this thread's last error (with TensorRT errors logged during this call appended)
//! and returns `status`.
int32_t fail(int32_t status, std::string const& message);
//! Remembers an error message TensorRT logged on this thread (appended by fail()).
void record_logged_error(char const* message);

//! Runs `body` (returning int32_t), converting every C++ exception into an error status.
template <typename F>
int32_t guarded(F&& body) noexcept
{
    try
    {
        begin_call();
        return body();
    }
    catch (std::bad_alloc const&)
    {
        return fail(TRTS_E_RUNTIME, "out of host memory");
    }
    catch (std::exception const& e)
    {
        return fail(TRTS_E_RUNTIME, std::string("C++ exception in TensorRT shim: ") + e.what());
    }
    catch (...)
    {
        return fail(TRTS_E_RUNTIME, "unknown C++ exception in TensorRT shim");
    }
}

//! Like guarded() for functions without a status: exceptions are swallowed.
template <typename F>
void guarded_void(F&& body) noexcept
{
    try
    {
        body();
    }
    catch (...)
    {
    }
}

// ---- libraries ----------------------------------------------------------------------

//! Opens the first loadable library among `candidates` (dlopen, never closed). On failure
//! returns nullptr and fills `tried` with the dlerror() messages.
void* open_first(std::vector<std::string> const& candidates, std::string& tried, std::string& opened);

// ---- CUDA driver (cuda.cpp) ---------------------------------------------------------

//! Loads libcuda.so.1 and runs cuInit (once per process).
int32_t cuda_load();
//! Retains the primary context of `device` and makes it current.
int32_t cuda_retain_primary(int32_t device, void** ctx);
//! Makes `ctx` current on the calling thread.
int32_t cuda_set_current(void* ctx);
//! Releases the primary context of `device`.
void cuda_release_primary(int32_t device);

} // namespace trts

#endif // GST_TRTVISION_TRTS_STATUS_H
