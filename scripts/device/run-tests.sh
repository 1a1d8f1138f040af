#!/usr/bin/env bash
# Runs the CUDA device tests on the GPU machine (Ubuntu 24.04, CUDA 13, no Rust, no
# GStreamer), from the repository root, with what scripts/device/build.sh staged:
#   carry: [".device-build", ".device"]   command: bash .device-build/run-tests.sh [FILTER...]
# Arguments go to the test binary (test-name filters, --exact, ...).
# Runs every staged test binary (.device-build/device_*: device_cuda first, then the others
# such as device_dense and device_tiler) with the same arguments. Writes to $OUT (or
# .device-out/): one <binary>.log each, bench.json (the timing lines), environment.txt
# (nvidia-smi, ldd). Exits with the first failing test binary's status (0 when all pass).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
[ -x "$root/.device-build/device_cuda" ] || root=$(cd "$here/../.." && pwd) # scripts/device/ copy
cd "$root"
out=${OUT:-$root/.device-out}
mkdir -p "$out"

if [ -f .device/gst-bundle.tar.xz ] && [ -f .device/gst-env.sh ]; then
  # shellcheck disable=SC1091
  source .device/gst-env.sh .device
else
  echo "run-tests.sh: no GStreamer bundle in .device/ (carry it): the test binary needs" \
    "libgstreamer-1.0, libgstvideo-1.0 and libgstcuda-1.0" >&2
fi
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
# On the GPU machine a missing GPU or libcuda is a failure, not a skip.
export TRTV_REQUIRE_CUDA=${TRTV_REQUIRE_CUDA:-1}
# libcuda (driver) and libnvrtc.so.13 (CUDA 13 toolkit) are loaded at run time.
for d in /usr/local/nvidia/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda/lib64; do
  [ -d "$d" ] && LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
export LD_LIBRARY_PATH

{
  nvidia-smi
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  ls -l /usr/local/cuda/lib64/libnvrtc* 2>&1
  ldd .device-build/device_cuda
} > "$out/environment.txt" 2>&1

rc=0
: > "$out/bench.json"
tests=device_cuda
for b in .device-build/device_*; do
  [ "$(basename "$b")" = device_cuda ] || tests="$tests $(basename "$b")"
done
for t in $tests; do
  [ -x ".device-build/$t" ] || { echo "run-tests.sh: .device-build/$t is missing" >&2; [ "$rc" -ne 0 ] || rc=1; continue; }
  ".device-build/$t" --include-ignored --nocapture --test-threads=1 "$@" 2>&1 | tee "$out/$t.log"
  trc=${PIPESTATUS[0]}
  grep '^{"bench"' "$out/$t.log" >> "$out/bench.json" || true
  echo "$t exited with $trc"
  [ "$rc" -ne 0 ] || rc=$trc
done
echo "logs in $out"
exit "$rc"
