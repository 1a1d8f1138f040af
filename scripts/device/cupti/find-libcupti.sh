#!/usr/bin/env bash
# Prints the path of a libcupti for trtv_cupti.so (TRTV_CUPTI_LIB), or fails with a message.
# Looks, in order, in /usr/local/cuda*/extras/CUPTI/lib64, /usr/local/cuda*/targets/x86_64-linux/lib,
# and the nvidia/ tree of python3's site-packages (the nvidia-cuda-cupti wheel puts it in
# nvidia/cu13/lib). A CUDA 13 library (libcupti.so.13*) anywhere wins over any other; within
# that, the first folder in the order above wins.
set -uo pipefail

folders=()
for dir in /usr/local/cuda*/extras/CUPTI/lib64 /usr/local/cuda*/targets/x86_64-linux/lib; do
  [ -d "$dir" ] && folders+=("$dir")
done
if command -v python3 >/dev/null 2>&1; then
  while IFS= read -r site; do
    [ -d "$site/nvidia" ] && folders+=("$site/nvidia")
  done < <(python3 -c '
import site, sys
paths = list(site.getsitepackages()) if hasattr(site, "getsitepackages") else []
paths.append(site.getusersitepackages())
paths += [p for p in sys.path if p.endswith("-packages")]
seen = set()
for p in paths:
    if p not in seen:
        seen.add(p)
        print(p)
' 2>/dev/null)
fi

for pattern in 'libcupti.so.13*' 'libcupti.so*'; do
  [ "${#folders[@]}" -gt 0 ] || break
  for dir in "${folders[@]}"; do
    hit=$(find -L "$dir" -maxdepth 4 -name "$pattern" \( -type f -o -type l \) 2>/dev/null | sort | head -n1)
    if [ -n "$hit" ]; then
      echo "$hit"
      exit 0
    fi
  done
done
echo "find-libcupti.sh: no libcupti.so* in: ${folders[*]:-(no candidate folders)}" >&2
exit 1
