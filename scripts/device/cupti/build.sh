#!/usr/bin/env bash
# Builds trtv_cupti.so, the CUPTI injection library (see trtv_cupti.c), here: no GPU and no
# CUDA toolkit needed, only gcc and the CUDA 13 headers, which come from PyPI wheels.
#
# Usage: scripts/device/cupti/build.sh [OUT_DIR]     (default OUT_DIR: $CUPTI_CACHE/build)
# Writes OUT_DIR/trtv_cupti.so and prints its path.
#
# Headers, either given:
#   CUPTI_INCLUDE  folder with cupti.h
#   CUDA_INCLUDE   folder with cuda.h and crt/host_defines.h
# or fetched once with pip into CUPTI_CACHE (default $HOME/.cache/trtv-cupti) from the
# wheels nvidia-cuda-cupti (cupti*.h), nvidia-cuda-runtime (cuda.h) and nvidia-cuda-crt
# (crt/*.h), version CUPTI_WHEEL_VERSION (default 13.4.92). All three unpack into the same
# nvidia/cu13/include folder.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${CUPTI_CACHE:-$HOME/.cache/trtv-cupti}
version=${CUPTI_WHEEL_VERSION:-13.4.92}
out_dir=${1:-$cache/build}

fetch_headers() {
  local dest="$cache/headers-$version"
  if [ ! -f "$dest/.complete" ]; then
    local wheels="$cache/wheels-$version"
    mkdir -p "$wheels"
    python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$wheels" \
      "nvidia-cuda-cupti==$version" "nvidia-cuda-runtime==$version" "nvidia-cuda-crt==$version" >&2
    rm -rf "$dest"
    mkdir -p "$dest"
    # Only the include folders: the wheels also carry tens of MB of libraries.
    python3 - "$dest" "$wheels"/*.whl <<'PY'
import sys, zipfile
dest = sys.argv[1]
for wheel in sys.argv[2:]:
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if "/include/" in name and name.endswith((".h", ".hpp")):
                archive.extract(name, dest)
PY
    touch "$dest/.complete"
  fi
  local include
  include=$(dirname "$(find "$dest" -name cupti.h -path '*/include/*' | head -n1)")
  CUPTI_INCLUDE=${CUPTI_INCLUDE:-$include}
  CUDA_INCLUDE=${CUDA_INCLUDE:-$include}
}

if [ -z "${CUPTI_INCLUDE:-}" ] || [ -z "${CUDA_INCLUDE:-}" ]; then
  fetch_headers
fi
for header in "$CUPTI_INCLUDE/cupti.h" "$CUDA_INCLUDE/cuda.h" "$CUDA_INCLUDE/crt/host_defines.h"; do
  [ -f "$header" ] || { echo "cupti/build.sh: $header not found" >&2; exit 1; }
done

mkdir -p "$out_dir"
# -fvisibility=hidden: InitializeInjection is the only symbol the driver needs to see.
${CC:-gcc} -std=c11 -O2 -g0 -fPIC -shared -fvisibility=hidden -Wall -Wextra \
  -I"$CUPTI_INCLUDE" -I"$CUDA_INCLUDE" \
  -o "$out_dir/trtv_cupti.so" "$here/trtv_cupti.c" \
  -Wl,--no-undefined -Wl,-z,now -ldl -lpthread
echo "$out_dir/trtv_cupti.so"
