#!/usr/bin/env bash
# Builds here (no GPU needed: libcuda, libnvrtc, NVML and ONNX Runtime are loaded at run
# time) everything the GPU machine runs, and stages it in .device-build/ (git-ignored):
#   .device-build/libgsttrtvision.so        the plugin, --features cuda (GST_PLUGIN_PATH)
#   .device-build/trtvision-bench           pipeline benchmark (plugin linked in statically)
#   .device-build/trtvision-infer-bench     backend benchmark: CPU vs CUDA provider per batch size
#   .device-build/trtvision-promptseg-bench prompt-segmentation routes a/b/c/c1/seed (SAM3-sized model)
#   .device-build/trtvision-launch          gst-launch-1.0 -e that starts file cameras last
#   .device-tests/device_*                  the tests/device_*.rs test binaries (GPU parity and timing),
#                                           carried by call 2 and kept in /root/device-tests there
#                                           (with them .device-build would not fit call 5)
#   .device-build/engines/                  model configs, labels, the generated ONNX models and
#                                           class prompt files (.npy)
#   .device-build/gst-extra/{plugins,lib}/  pngenc + libpng, multifilesink (not in the GStreamer bundle)
#   .device-build/run-all.sh, run-tests.sh  the device-side scripts (and gpu-load.py, LOAD_TEST=1)
#   .device-build/rtsp-cameras.sh           N RTSP cameras served and received there (device_rtsp)
#   .device-build/gst-env.sh                re-exports the GStreamer bundle unpacked by call 1
#   .device-build/COMMIT                    "<sha> <dirty 0|1>" (the GPU machine has no git)
# and makes sure .device/ holds the GStreamer bundle (shared/device/make-gst-bundle.sh).
#
# Usage, from anywhere in the checkout:  scripts/device/build.sh
# NO_DEVICE_TESTS=1 leaves the device test binaries out (benchmark-only calls: a faster
# build and a smaller call 2).
# It prints the device call sequence at the end.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
out="$root/.device-build"
target=${CARGO_TARGET_DIR:-$root/target}
shared=${SHARED_DIR:-$root/../shared}

exclude="$(git rev-parse --path-format=absolute --git-common-dir)/info/exclude"
for p in /.device-build/ /.device-tests/ /.device/ /.ort/ /.devpack/; do
  grep -qxF "$p" "$exclude" 2>/dev/null || echo "$p" >> "$exclude"
done

# The ONNX models are generated (git-ignored): make them if missing or older than the
# generator (same rule as scripts/setup.sh).
if [ ! -f engines/models/.generated ] || [ engines/generate_models.py -nt engines/models/.generated ] \
  || ! ls engines/models/*.onnx >/dev/null 2>&1; then
  py=python3
  [ -x .venv/bin/python ] && py=.venv/bin/python
  "$py" engines/generate_models.py --out engines/models
  touch engines/models/.generated
fi
if [ ! -f engines/models/promptseg-full-decoder.onnx ]; then
  python3 engines/generate_promptseg_models.py --out engines/models
fi

# The plugin (with trtvision-launch) and the measurement programs of tools/.
cargo build --release --workspace --features cuda --lib --bins
device_tests=$(cd tests && ls device_*.rs | sed 's/\.rs$//')
[ -z "${NO_DEVICE_TESTS:-}" ] || device_tests=""
test_bins=
[ -z "$device_tests" ] || test_bins=$(cargo test --release -p gst-plugin-trtvision --features cuda $(printf -- '--test %s ' $device_tests) --no-run \
  --message-format=json | python3 scripts/device/test-executables.py device_)
tests_out="$root/.device-tests"
rm -rf "$out" "$tests_out"
mkdir -p "$out/engines/models" "$out/gst-extra/plugins" "$out/gst-extra/lib" "$tests_out"
for t in $device_tests; do
  bin=$(echo "$test_bins" | awk -v n="$t" '$1 == n {print $2}' | tail -n1)
  [ -n "$bin" ] && [ -x "$bin" ] || { echo "build.sh: no $t test binary was built" >&2; exit 1; }
  cp "$bin" "$tests_out/$t"
  strip --strip-debug "$tests_out/$t"
done
cp "$target/release/libgsttrtvision.so" "$target/release/trtvision-bench" \
   "$target/release/trtvision-infer-bench" "$target/release/trtvision-launch" \
   "$target/release/trtvision-promptseg-bench" "$out/"
strip --strip-debug "$out/libgsttrtvision.so"
strip "$out/trtvision-bench" "$out/trtvision-infer-bench" "$out/trtvision-launch" "$out/trtvision-promptseg-bench"
cp scripts/device/run-tests.sh scripts/device/run-all.sh scripts/device/gpu-load.py scripts/device/cameras.sh \
   scripts/device/cameras-sweep.sh scripts/device/multigpu.sh scripts/device/rtsp-cameras.sh scripts/make-camera-content.sh "$out/"
chmod +x "$out"/*.sh
# The CUPTI tracer (scripts/device/cupti/): optional, a failure only loses the trace.
if bash scripts/device/cupti/build.sh "$out/cupti" >/dev/null; then
  cp scripts/device/cupti/find-libcupti.sh scripts/device/cupti/summarize.py scripts/device/cupti/merge_copies.py "$out/cupti/"
else
  rm -rf "$out/cupti"
  echo "build.sh: warning: scripts/device/cupti/build.sh failed: no CUPTI tracer in .device-build/cupti" >&2
fi
cp engines/*.toml engines/*.txt "$out/engines/"
cp engines/models/*.onnx engines/models/*.npy "$out/engines/models/"
# The YOLO11 models (10+ MB each) are generated there by run-all.sh (engines/yolo11.py).
rm -f "$out/engines/models/bad-shape.onnx" "$out"/engines/models/yolo11*

# pngenc for the evidence frames (the bundle has no png plugin).
plugdir=/usr/lib/x86_64-linux-gnu/gstreamer-1.0
if [ -f "$plugdir/libgstpng.so" ]; then
  cp "$plugdir/libgstpng.so" "$out/gst-extra/plugins/"
  cp -L "$(ldconfig -p | awk '/libpng16.so.16 .*x86-64/{print $NF; exit}')" "$out/gst-extra/lib/libpng16.so.16" 2>/dev/null ||
    cp -L /lib/x86_64-linux-gnu/libpng16.so.16 "$out/gst-extra/lib/"
else
  echo "build.sh: $plugdir/libgstpng.so not found: no PNG frames on the device" >&2
fi
# multifilesink writes them one file per frame (its plugin needs only libraries the bundle has).
if [ -f "$plugdir/libgstmultifile.so" ]; then
  cp "$plugdir/libgstmultifile.so" "$out/gst-extra/plugins/"
else
  echo "build.sh: $plugdir/libgstmultifile.so not found: no PNG frames on the device" >&2
fi

# libgstcheck (the device test binary links gst-check; the bundle does not carry it).
cp -L /usr/lib/x86_64-linux-gnu/libgstcheck-1.0.so.0 "$out/gst-extra/lib/" 2>/dev/null ||
  echo "build.sh: libgstcheck-1.0.so.0 not found: the device test binary will not start there" >&2

# libgstrtspserver (device_rtsp serves its RTSP cameras in-process; the bundle has the
# client side: rtspsrc and the RTP/SDP/RTSP libraries).
cp -L /usr/lib/x86_64-linux-gnu/libgstrtspserver-1.0.so.0 "$out/gst-extra/lib/" 2>/dev/null ||
  echo "build.sh: libgstrtspserver-1.0.so.0 not found: device_rtsp will not start there" >&2

# gst-env.sh: skips the untar when /root/gst-bundle is already there (call 1 unpacked it).
cp "$shared/device/gst-env.sh" "$out/gst-env.sh"

sha=$(git rev-parse HEAD)
dirty=0
[ -z "$(git status --porcelain --untracked-files=no)" ] || dirty=1
echo "$sha $dirty" > "$out/COMMIT"

if [ ! -f .device/gst-bundle.tar.xz ]; then
  "$shared/device/make-gst-bundle.sh" .device
fi
[ -f .device/gst-env.sh ] || cp "$shared/device/gst-env.sh" .device/

du -sh "$out"/* "$tests_out" | sort -h

# The staged files travel xz-compressed (the device test binaries alone are ~31 MiB and an
# ONNX Runtime part ~39 MiB: uncompressed they no longer fit one call's 64 MiB):
# .devpack/devtests.tar.xz (unpacked to /root/device-tests by call 2) and
# .devpack/devbuild.tar.xz (unpacked to /root/devbuild by call 2; each later call copies
# /root/devbuild/.device-build into its repository copy).
pack="$root/.devpack"
rm -rf "$pack"
mkdir -p "$pack"
tar -C "$tests_out" -cf - . | xz -T2 -6 > "$pack/devtests.tar.xz"
tar -C "$root" -cf - .device-build | xz -T2 -6 > "$pack/devbuild.tar.xz"
pack_kib=$(du -sk "$pack" | cut -f1)
ort2_kib=$(du -sk .ort/ort2 2>/dev/null | cut -f1 || echo 0)
ort5_kib=$(du -sk .ort/ort5 2>/dev/null | cut -f1 || echo 0)
tree_kib=$(git ls-files -z | xargs -0 du -ck 2>/dev/null | tail -1 | cut -f1)
untracked_kib=$(git ls-files -z --others --exclude-standard | xargs -0 -r du -ck 2>/dev/null | tail -1 | cut -f1)
untracked_kib=${untracked_kib:-0}
call2_kib=$((pack_kib + ort2_kib + tree_kib + untracked_kib))
call5_kib=$((ort5_kib + tree_kib + untracked_kib))
echo
echo ".devpack (device tests and .device-build, xz): $((pack_kib / 1024)) MiB; call 2 carries about" \
  "$((call2_kib / 1024)) MiB, call 5 about $((call5_kib / 1024)) MiB of the 64 MiB limit"
if [ "$call2_kib" -ge $((63 * 1024)) ]; then
  echo "build.sh: call 2 (.ort/ort2 + .devpack) would exceed 64 MiB" >&2
  exit 1
fi
cat <<'MSG'

Device call sequence (device tool `run`, back to back, nothing in between: files outside the
repository copy survive only while the machine stays warm):
  1. carry [".ort/ort1", ".device"]
     command: source .ort/ort1/ort-gpu-env.sh stash .ort/ort1; source .device/gst-env.sh .device; ls /root/ortparts /root/gst-bundle/gst/bin
  2. carry [".ort/ort2", ".devpack"]
     command: source .ort/ort2/ort-gpu-env.sh stash .ort/ort2; mkdir -p /root/device-tests /root/devbuild && xz -dc .devpack/devtests.tar.xz | tar -C /root/device-tests -xf - && xz -dc .devpack/devbuild.tar.xz | tar -C /root/devbuild -xf - && ls /root/device-tests /root/devbuild/.device-build
  3. carry [".ort/ort3"]  command: source .ort/ort3/ort-gpu-env.sh stash .ort/ort3; ls /root/ortparts
  4. carry [".ort/ort4"]  command: source .ort/ort4/ort-gpu-env.sh stash .ort/ort4; ls /root/ortparts
  5. carry [".ort/ort5"]   timeout_s 600
     command: cp -r /root/devbuild/.device-build . && source .ort/ort5/ort-gpu-env.sh unpack .ort/ort5 && bash .device-build/run-all.sh
     (environment switches: see the top of run-all.sh; later calls on the warm machine start
     with the same `cp -r /root/devbuild/.device-build .`, e.g. `bash .device-build/cameras.sh ...`)
Results come back in $OUT: results.tar.gz (JSON records, flat), logs.tar.gz, frames.tar.gz, summary.txt.
MSG
