# Source this file to use the plugin built in this checkout:
#   . scripts/env.sh
# It points GStreamer at the plugin and ONNX Runtime at the library from .venv.
_trtvision_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
_trtvision_profile="${TRTVISION_PROFILE:-release}"
export GST_PLUGIN_PATH="$_trtvision_root/target/$_trtvision_profile${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"
if [ -z "${ORT_DYLIB_PATH:-}" ]; then
    for _lib in "$_trtvision_root"/.venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so*; do
        [ -f "$_lib" ] && export ORT_DYLIB_PATH="$_lib" && break
    done
fi
export PATH="$_trtvision_root/.venv/bin:$PATH"
unset _trtvision_root _trtvision_profile _lib
