#!/usr/bin/env python3
"""SASS of a kernel file, compiled here the way the plugin compiles it (no GPU needed).

Compiles kernels/<file>.cu with NVRTC like src/cuda/nvrtc.rs does (--fmad=false, IEEE
division; here straight to an sm_90 cubin instead of PTX), disassembles it with cuobjdump
and prints, per entry point whose name matches REGEX, the instruction count by opcode, and
with --blocks the basic blocks holding at least N global loads (the hot loops): what the
H100's instruction issue sees, for comparing kernel variants before a GPU run.

Usage: scripts/kernels/sass.py kernels/preprocess.cu 'x4_nv12rgb_inline8$' [--blocks 8]
       [--arch sm_90] [--sass-out FILE]
NVRTC, cuobjdump and nvdisasm come from PyPI wheels (nvidia-cuda-nvrtc,
nvidia-cuda-cuobjdump, nvidia-cuda-nvdisasm), downloaded once into $TRTV_SASS_CACHE
(default ~/.cache/trtv-sass).
"""
import argparse
import collections
import ctypes
import glob
import os
import re
import subprocess
import sys
import zipfile

WHEELS = ["nvidia-cuda-nvrtc==13.0.88", "nvidia-cuda-cuobjdump==13.4.92", "nvidia-cuda-nvdisasm==13.5.37"]


def tools(cache):
    """Unpacks the wheels into `cache` if needed; returns (nvrtc lib dir, bin dir)."""
    root = os.path.join(cache, "x")
    lib = os.path.join(root, "nvidia", "cu13", "lib")
    bin_ = os.path.join(root, "nvidia", "cu13", "bin")
    if not (os.path.exists(os.path.join(lib, "libnvrtc.so.13")) and os.path.exists(os.path.join(bin_, "nvdisasm"))):
        os.makedirs(cache, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", cache] + WHEELS,
                       check=True)
        for whl in glob.glob(os.path.join(cache, "*.whl")):
            with zipfile.ZipFile(whl) as z:
                z.extractall(root)
        for f in glob.glob(os.path.join(bin_, "*")):
            os.chmod(f, 0o755)
    return lib, bin_


def compile_cubin(lib_dir, source, arch, include_dir):
    # libnvrtc loads libnvrtc-builtins from the same directory through the loader path.
    ctypes.CDLL(os.path.join(lib_dir, "libnvrtc-builtins.so.13.0"), mode=ctypes.RTLD_GLOBAL)
    nvrtc = ctypes.CDLL(os.path.join(lib_dir, "libnvrtc.so.13"))
    prog = ctypes.c_void_p()
    if nvrtc.nvrtcCreateProgram(ctypes.byref(prog), source, b"kernel.cu", 0, None, None) != 0:
        sys.exit("nvrtcCreateProgram failed")
    # Kernel files include kernels/common.cuh, read here from the file's directory.
    opts = [f"--gpu-architecture={arch}".encode(), b"--fmad=false", f"--include-path={include_dir}".encode()]
    arr = (ctypes.c_char_p * len(opts))(*opts)
    rc = nvrtc.nvrtcCompileProgram(prog, len(opts), arr)
    n = ctypes.c_size_t()
    nvrtc.nvrtcGetProgramLogSize(prog, ctypes.byref(n))
    log = ctypes.create_string_buffer(n.value)
    nvrtc.nvrtcGetProgramLog(prog, log)
    if log.value.strip():
        print(log.value.decode(), file=sys.stderr)
    if rc != 0:
        sys.exit(f"NVRTC failed ({rc})")
    nvrtc.nvrtcGetCUBINSize(prog, ctypes.byref(n))
    buf = ctypes.create_string_buffer(n.value)
    nvrtc.nvrtcGetCUBIN(prog, buf)
    return buf.raw


def opcode(line):
    body = re.sub(r"^\s*/\*[0-9a-f]{4}\*/\s+(@!?U?P\w+\s+)?", "", line)
    return body.split()[0].split(".")[0] if body.split() else "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file")
    ap.add_argument("regex", nargs="?", default=".")
    ap.add_argument("--blocks", type=int, default=0, help="also list basic blocks with at least N LDG")
    ap.add_argument("--arch", default="sm_90")
    ap.add_argument("--sass-out", help="write the whole disassembly here")
    a = ap.parse_args()
    lib, bin_ = tools(os.environ.get("TRTV_SASS_CACHE", os.path.expanduser("~/.cache/trtv-sass")))
    cubin = compile_cubin(lib, open(a.file, "rb").read(), a.arch, os.path.dirname(os.path.abspath(a.file)))
    path = "/tmp/trtv-sass-%d.cubin" % os.getpid()
    open(path, "wb").write(cubin)
    env = dict(os.environ, PATH=bin_ + os.pathsep + os.environ.get("PATH", ""))
    sass = subprocess.run([os.path.join(bin_, "cuobjdump"), "-sass", path], env=env, check=True,
                          capture_output=True, text=True).stdout
    os.unlink(path)
    if a.sass_out:
        open(a.sass_out, "w").write(sass)
    for part in re.split(r"\n\s+Function : ", sass)[1:]:
        name = part.split("\n", 1)[0].strip()
        if not re.search(a.regex, name):
            continue
        lines = [l for l in part.split("\n") if re.match(r"\s+/\*[0-9a-f]{4}\*/", l)]
        c = collections.Counter(opcode(l) for l in lines)
        print(f"{name}: {len(lines)} instructions", dict(c.most_common(16)))
        if a.blocks:
            targets = {int(t, 16) for l in lines for t in re.findall(r"BRA (?:`\(.*?\) )?0x([0-9a-f]+)", l)}
            block, blocks = [], []
            for l in lines:
                addr = int(re.match(r"\s+/\*([0-9a-f]{4})\*/", l).group(1), 16)
                if addr in targets and block:
                    blocks.append(block)
                    block = []
                block.append(l)
                if re.search(r"\b(BRA|EXIT|RET)\b", l):
                    blocks.append(block)
                    block = []
            if block:
                blocks.append(block)
            for b in blocks:
                bc = collections.Counter(opcode(l) for l in b)
                if bc["LDG"] >= a.blocks:
                    print(f"  block of {len(b)}:", dict(bc.most_common(12)))


if __name__ == "__main__":
    main()
