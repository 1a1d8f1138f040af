#!/usr/bin/env bash
# Builds the plugin through meson (meson.build, scripts/cargo_wrapper.py) in a scratch build
# directory and checks that GStreamer loads the result, so that the meson build cannot rot.
# CI runs it after the test suite; it builds cargo's release profile into target/ (the
# dependencies the suite built are reused where their features are the same).
#
#   scripts/meson-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v meson >/dev/null || { echo "meson-check: meson is not installed (scripts/setup.sh installs it)" >&2; exit 1; }
build=$(mktemp -d "${TMPDIR:-/tmp}/trtvision-meson.XXXXXX")
trap 'rm -rf "$build"' EXIT
meson setup "$build" -Dbuildtype=release -Dcargo-target-dir="$PWD/target" -Dtests=disabled
meson compile -C "$build"
plugin="$build/libgsttrtvision.so"
[ -f "$plugin" ] || { echo "meson-check: meson compile did not produce $plugin" >&2; exit 1; }
features=$(gst-inspect-1.0 "$plugin")
for element in trtmux trtpreprocess trtinfer trtoverlay trtdemux; do
    grep -q "$element" <<<"$features" || { echo "meson-check: $element is missing from $plugin" >&2; exit 1; }
done
echo "meson-check: $plugin loads with $(grep -cE '^ +trt[a-z0-9]+: ' <<<"$features") trt elements"
