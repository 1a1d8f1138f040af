// errors.cpp - thread-local error state and the dlopen helper.
#include "status.h"

#include <dlfcn.h>

namespace trts
{
namespace
{

thread_local std::string t_last_error;
//! TensorRT errors logged on this thread since the start of the current API call.
thread_local std::vector<std::string> t_logged_errors;

} // namespace

void begin_call()
{
    t_last_error.clear();
    t_logged_errors.clear();
}

void record_logged_error(char const* message)
{
    try
    {
        if (message != nullptr && t_logged_errors.size() < 8)
        {
            t_logged_errors.emplace_back(message);
        }
    }
    catch (...)
    {
    }
}

int32_t fail(int32_t status, std::string const& message)
{
    try
    {
        t_last_error = message;
        if (!t_logged_errors.empty())
        {
            t_last_error += " (TensorRT: ";
            for (size_t i = 0; i < t_logged_errors.size(); ++i)
            {
                if (i > 0)
                {
                    t_last_error += "; ";
                }
                t_last_error += t_logged_errors[i];
            }
            t_last_error += ")";
        }
        t_logged_errors.clear();
    }
    catch (...)
    {
    }
    return status;
}

void* open_first(std::vector<std::string> const& candidates, std::string& tried, std::string& opened)
{
    for (std::string const& name : candidates)
    {
        // Libraries stay loaded for the life of the process: TensorRT objects and the
        // logger may be referenced from library threads until exit.
        void* handle = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
        if (handle != nullptr)
        {
            opened = name;
            return handle;
        }
        char const* err = dlerror();
        if (!tried.empty())
        {
            tried += "; ";
        }
        tried += err != nullptr ? err : name;
    }
    return nullptr;
}

} // namespace trts

extern "C" const char* trts_last_error(void)
{
    return trts::t_last_error.c_str();
}
