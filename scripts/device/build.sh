#!/usr/bin/env bash
# Builds here (no GPU needed: libcuda and libnvrtc are loaded at run time) what the CUDA
# device tests need on the GPU machine, and stages it in .device-build/ (git-ignored):
#   .device-build/device_cuda           the tests/device_cuda.rs test binary (release)
#   .device-build/libgsttrtvision.so    the plugin built with --features cuda
#   .device-build/run-tests.sh          copy of scripts/device/run-tests.sh
# and makes sure .device/ holds the GStreamer bundle (shared/device/make-gst-bundle.sh),
# which the test binary needs there (libgstreamer, libgstvideo, libgstcuda).
#
# Usage, from anywhere in the checkout:  scripts/device/build.sh
# Then run on the device (see the last lines printed).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
out="$root/.device-build"
target=${CARGO_TARGET_DIR:-$root/target}
shared=${SHARED_DIR:-$root/../shared}

exclude="$(git rev-parse --path-format=absolute --git-common-dir)/info/exclude"
for p in /.device-build/ /.device/; do
  grep -qxF "$p" "$exclude" 2>/dev/null || echo "$p" >> "$exclude"
done

cargo build --release --features cuda --lib
test_bin=$(cargo test --release --features cuda --test device_cuda --no-run --message-format=json |
  python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "device_cuda":
        print(m["executable"])
' | tail -n1)
[ -n "$test_bin" ] && [ -x "$test_bin" ] || { echo "build.sh: no device_cuda test binary was built" >&2; exit 1; }

rm -rf "$out"
mkdir -p "$out"
cp "$test_bin" "$out/device_cuda"
cp "$target/release/libgsttrtvision.so" "$out/"
cp scripts/device/run-tests.sh "$out/"
strip --strip-debug "$out/device_cuda" "$out/libgsttrtvision.so"

if [ ! -f .device/gst-bundle.tar.xz ]; then
  "$shared/device/make-gst-bundle.sh" .device
fi
[ -f .device/gst-env.sh ] || cp "$shared/device/gst-env.sh" .device/

du -sh "$out"/* .device/gst-bundle.tar.xz
cat <<MSG

Staged in .device-build/ ($(du -sh "$out" | cut -f1)) and .device/ ($(du -sh .device | cut -f1)).
On the GPU machine (device tool), from the repository root:
  run  command: bash .device-build/run-tests.sh
       carry:   [".device-build", ".device"]
Extra arguments go to the test binary, e.g. 'bash .device-build/run-tests.sh timing'.
Logs come back in \$OUT: device_cuda.log, bench.json, environment.txt.
MSG
