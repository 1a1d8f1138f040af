#!/usr/bin/env python3
"""Runs cargo for meson: builds the plugin and copies it where meson expects it, or runs
the test suite (`--test`)."""
import os
import shutil
import subprocess
import sys


def main(argv):
    run_tests = argv and argv[0] == "--test"
    if run_tests:
        argv = argv[1:]
    cargo, src, build, profile, output, *cargo_args = argv
    env = dict(os.environ)
    cmd = [cargo, "test" if run_tests else "build", "--manifest-path", os.path.join(src, "Cargo.toml")]
    cmd += cargo_args
    if not run_tests:
        # The plugin crate only (the workspace's default members also hold tools/).
        cmd += ["--package", "gst-plugin-trtvision", "--lib"]
    res = subprocess.run(cmd, env=env)
    if res.returncode != 0 or run_tests:
        return res.returncode
    target_dir = cargo_args[cargo_args.index("--target-dir") + 1]
    built = os.path.join(target_dir, profile, "libgsttrtvision.so")
    shutil.copy2(built, output)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
