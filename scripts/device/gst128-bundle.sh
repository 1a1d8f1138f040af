#!/usr/bin/env bash
# The GStreamer 1.28 bundle for the GPU machine (Ubuntu 24.04, glibc 2.39), built here from
# the 1.28 lane's Debian sid root (scripts/gstreamer-1.28.sh).
#
# sid's GLib needs glibc 2.43, so sid's libraries cannot run on the GPU machine's C library.
# The bundle therefore carries sid's C library and dynamic loader with everything else, and
# every program of the bundle runs through that loader:
#     <bundle>/lib/ld-linux-x86-64.so.2 --library-path <bundle>/lib:<driver dirs> PROGRAM ...
# (no chroot, no root needed). The NVIDIA driver's libcuda and CUDA's libnvrtc come from the
# machine (/usr/local/nvidia/lib64, /usr/local/cuda/lib64), after the bundle's libraries:
# they are built for older C libraries, which glibc 2.43 still serves.
#
# Contents (.device-gst128/gst128.tar.xz, unpacked to /root/gst128 by the device call):
#   lib/          sid's loader, C library and every library the programs below need
#   plugins/      GStreamer 1.28 plugins: core elements, app, videotestsrc, videoconvertscale,
#                 videoparsersbad (h264parse), isomp4, typefind, x264 and nvcodec
#                 (nvh264dec, nvh264enc, cudaupload, cudadownload, cudaconvert)
#   trtvision/    libgsttrtvision.so built in the lane with --features cuda,v1_28
#   bin/          gst-launch-1.0, gst-inspect-1.0 and the device_cuda test binary (1.28 lane,
#                 --features cuda,v1_28)
#   run.sh        runs a program of the bundle through the loader with the environment
#                 (GST_PLUGIN_SYSTEM_PATH, GST_PLUGIN_PATH, GST_REGISTRY_FORK=no: the plugin
#                 scanner would start with the machine's loader)
#   check.sh      the self-check the device call runs (see the end of this script's output)
#
# Usage, from the checkout (needs root, like scripts/gstreamer-1.28.sh):
#   scripts/device/gst128-bundle.sh            build, check here, print the device call
# Checking here is meaningful: this machine's glibc (Debian 12, 2.36) is older than sid's as
# well, so the bundle runs here exactly as it will there (without a GPU: nvcodec loads but
# registers no element).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
cd "$repo"
lane="$repo/scripts/gstreamer-1.28.sh"
ROOT="${TRTVISION_GST128_ROOT:-/var/cache/trtvision/gst-1.28-root}"
out="$repo/.device-gst128"
stage="$out/gst128"
say() { printf '[gst128-bundle] %s\n' "$*" >&2; }

exclude="$(git rev-parse --path-format=absolute --git-common-dir)/info/exclude"
grep -qxF /.device-gst128/ "$exclude" 2>/dev/null || echo /.device-gst128/ >>"$exclude"

"$lane" ensure >/dev/null
say "building the plugin and device_cuda in the 1.28 lane (--features cuda,v1_28)"
"$lane" run -- cargo build --release --features cuda,v1_28 --lib
test_bin=$("$lane" run -- cargo test --release --features cuda,v1_28 --test device_cuda --no-run \
    --message-format=json | python3 "$repo/scripts/device/test-executables.py" device_cuda \
    | awk '$1 == "device_cuda" {print $2}' | tail -n1)
[ -n "$test_bin" ] && [ -x "$test_bin" ] || { say "error: no device_cuda test binary was built"; exit 1; }

rm -rf "$out"
mkdir -p "$stage/lib" "$stage/plugins" "$stage/trtvision" "$stage/bin"
plugdir=/usr/lib/x86_64-linux-gnu/gstreamer-1.0
plugins=(coreelements app videotestsrc videoconvertscale videoparsersbad isomp4 typefindfunctions x264 nvcodec)
elves=("$ROOT/usr/bin/gst-launch-1.0" "$ROOT/usr/bin/gst-inspect-1.0")
for p in "${plugins[@]}"; do
    f="$ROOT$plugdir/libgst$p.so"
    [ -f "$f" ] || { say "error: $plugdir/libgst$p.so is not in the root"; exit 1; }
    cp "$f" "$stage/plugins/"
    elves+=("$f")
done
cp "$ROOT/usr/bin/gst-launch-1.0" "$ROOT/usr/bin/gst-inspect-1.0" "$stage/bin/"
cp target/gst-1.28/release/libgsttrtvision.so "$stage/trtvision/"
cp "$test_bin" "$stage/bin/device_cuda"
strip --strip-debug "$stage/trtvision/libgsttrtvision.so" "$stage/bin/device_cuda"

# Every library the programs and plugins need, resolved by the root's own loader (ldd in
# the root); libcuda and libnvrtc are not in the root and are loaded at run time.
in_root_paths=()
for e in "${elves[@]}"; do in_root_paths+=("${e#"$ROOT"}"); done
in_root_paths+=("$repo/target/gst-1.28/release/libgsttrtvision.so" "$test_bin")
"$lane" run -- ldd "${in_root_paths[@]}" 2>/dev/null |
    awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\/.*ld-linux/ { print $1 }' | sort -u |
    while read -r lib; do
        cp -L "$ROOT$lib" "$stage/lib/$(basename "$lib")"
    done
[ -f "$stage/lib/ld-linux-x86-64.so.2" ] || cp -L "$ROOT/lib64/ld-linux-x86-64.so.2" "$stage/lib/"
# The C library's own run-time pieces the programs may dlopen.
for lib in libnss_files.so.2 libnss_dns.so.2 libresolv.so.2; do
    [ -f "$ROOT/usr/lib/x86_64-linux-gnu/$lib" ] && cp -L "$ROOT/usr/lib/x86_64-linux-gnu/$lib" "$stage/lib/"
done
strip --strip-unneeded "$stage"/lib/*.so* 2>/dev/null || true

cat >"$stage/run.sh" <<'EOF'
#!/usr/bin/env bash
# Runs a program of the GStreamer 1.28 bundle through the bundle's loader:
#   run.sh gst-inspect-1.0 nvh264dec      (bin/ programs by name, or a path)
b=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
prog=$1; shift
[ -x "$b/bin/$prog" ] && prog="$b/bin/$prog"
libs="$b/lib"
for d in /usr/local/nvidia/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda/lib64; do
    [ -d "$d" ] && libs="$libs:$d"
done
export GST_PLUGIN_SYSTEM_PATH="$b/plugins" GST_PLUGIN_PATH="$b/trtvision${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"
export GST_REGISTRY_FORK=no GST_REGISTRY="${GST_REGISTRY_128:-/tmp/gst128-registry.bin}" LANG=C
exec "$b/lib/ld-linux-x86-64.so.2" --library-path "$libs" "$prog" "$@"
EOF
cat >"$stage/check.sh" <<'EOF'
#!/usr/bin/env bash
# Self-check on the GPU machine: versions, nvh264dec present, 1.28's nvh264dec decoding into
# CUDA memory read by the plugin, then the device_cuda tests (built against 1.28).
b=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
r="$b/run.sh"
set -x
"$r" gst-launch-1.0 --version
"$r" gst-inspect-1.0 --version
"$r" gst-inspect-1.0 nvh264dec | head -n 12 && echo "nvh264dec found" || { echo "nvh264dec NOT found"; exit 1; }
"$r" gst-inspect-1.0 trtdemux | grep -E 'meta|Filename' | head -n 4
"$r" gst-launch-1.0 -q videotestsrc num-buffers=60 ! video/x-raw,width=1280,height=720 ! x264enc ! h264parse \
    ! nvh264dec ! 'video/x-raw(memory:CUDAMemory)' ! trtmux name=m ! trtdemux name=d d.src_0 ! fakesink sync=false \
    && echo "nvh264dec -> trtmux -> trtdemux on CUDA memory: ok"
TRTV_REQUIRE_CUDA=1 "$r" device_cuda --include-ignored --test-threads=1 "$@"
EOF
chmod +x "$stage/run.sh" "$stage/check.sh"

say "checking the bundle here (glibc $(ldd --version | head -n1 | awk '{print $NF}'), no GPU)"
"$stage/run.sh" gst-inspect-1.0 --version
"$stage/run.sh" gst-inspect-1.0 trtdemux | grep -q 'meta' || { say "error: trtdemux (v1_28) does not load through the bundle"; exit 1; }
"$stage/run.sh" gst-inspect-1.0 nvcodec >/dev/null 2>&1 && say "nvcodec plugin loads (no GPU here: no elements)" ||
    say "nvcodec: gst-inspect-1.0 nvcodec failed here (expected without libcuda)"
"$stage/run.sh" gst-launch-1.0 -q videotestsrc num-buffers=10 ! video/x-raw,width=320,height=240 ! trtmux name=m \
    ! trtdemux name=d d.src_0 ! fakesink || { say "error: a 1.28 pipeline through trtmux/trtdemux failed through the bundle"; exit 1; }
"$stage/run.sh" device_cuda --list >/dev/null || { say "error: device_cuda does not start through the bundle"; exit 1; }

tar -C "$out" -cf - gst128 | xz -T2 -6 >"$out/gst128.tar.xz"
rm -rf "$stage"
size=$(du -m "$out/gst128.tar.xz" | cut -f1)
say "bundle: $out/gst128.tar.xz, $size MiB"
[ "$size" -lt 63 ] || { say "error: the bundle does not fit one device call (64 MiB)"; exit 1; }
cat <<'MSG'

Device call (device tool `run`, one call, kind nvidia-h100-x1):
  carry [".device-gst128"]   timeout_s 600
  command: mkdir -p /root/gst128 && xz -dc .device-gst128/gst128.tar.xz | tar -C /root -xf - && bash /root/gst128/check.sh 2>&1 | tee $OUT/gst128-check.log
It prints the versions, "nvh264dec found", runs nvh264dec -> trtmux -> trtdemux on CUDA
memory and then every device_cuda test built against GStreamer 1.28.
MSG
