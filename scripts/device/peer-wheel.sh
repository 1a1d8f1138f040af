#!/usr/bin/env bash
# Fetches NVIDIA's PyNvVideoCodec wheel for the GPU machine's Python (cp312, manylinux_2_28
# x86_64) into .peer/ (git-ignored through .git/info/exclude; never committed), for the GPU
# peer (benches/baseline/gpu_peer.py, run there by scripts/device/peer.sh).
# Usage, from anywhere in the checkout:  scripts/device/peer-wheel.sh [VERSION]   (default 2.2.4)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
version=${1:-2.2.4}
exclude="$(git rev-parse --path-format=absolute --git-common-dir)/info/exclude"
grep -qxF /.peer/ "$exclude" 2>/dev/null || echo /.peer/ >> "$exclude"
mkdir -p .peer
pip=pip3
[ -x .venv/bin/pip ] && pip=.venv/bin/pip
if ! ls .peer/pynvvideocodec-"$version"-cp312-*.whl >/dev/null 2>&1; then
  "$pip" download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 \
    "pynvvideocodec==$version" -d .peer
fi
ls -la .peer
