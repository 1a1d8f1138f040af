#!/usr/bin/env python3
"""Reads `cargo test --no-run --message-format=json` on stdin and prints "NAME PATH" for
every test executable whose target name starts with the prefix given as argument
(default `device_`). Used by build.sh and gst128-bundle.sh."""
import json
import sys

prefix = sys.argv[1] if len(sys.argv) > 1 else "device_"
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"].startswith(prefix):
        print(m["target"]["name"], m["executable"])
