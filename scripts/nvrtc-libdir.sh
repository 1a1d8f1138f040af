#!/usr/bin/env bash
# Prints the directory holding libnvrtc.so.13 of the nvidia-cuda-nvrtc wheel in .venv
# (installed by scripts/setup.sh), or nothing when it is not installed.
cd "$(dirname "$0")/.."
for lib in "$PWD"/.venv/lib/python3*/site-packages/nvidia/cu13/lib/libnvrtc.so.13; do
    [ -f "$lib" ] && dirname "$lib" && exit 0
done
exit 0
