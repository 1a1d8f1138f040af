#!/usr/bin/env python3
"""Index of the benchmark records in bench/results/ (standard library only).

    python3 scripts/bench-index.py            write bench/README.md from the records
    python3 scripts/bench-index.py --check    exit 1 when bench/README.md is out of date, a
                                              record cited by README.md, docs/*.md,
                                              benches/README.md or engines/README.md is
                                              missing, or bench/results/ keeps a record
                                              that is neither cited nor the latest of its
                                              measurement
    python3 scripts/bench-index.py --prune    git rm the records that are neither cited nor
                                              the latest of their measurement

A record's measurement is its file name without the date and the session suffix
(`h100-8cam-nvdec-full-20261123-s14e.json` -> `h100-8cam-nvdec-full`); the latest is the one
with the greatest (date, session). Citations are paths `bench/results/NAME` in those pages,
where NAME may hold `*` and `{a,b}` (shell patterns); `YYYYMMDD` stands for any date.
"""
import argparse
import fnmatch
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results")
INDEX = os.path.join(ROOT, "bench", "README.md")
PAGES = ["README.md", "benches/README.md", "engines/README.md"]
NAME_RE = re.compile(r"^(?P<key>.+?)-(?P<date>\d{8})(?:-(?P<session>s\d+[a-z]?|[a-z]|r\d+))?(?P<rest>-[^.]*)?\.(?P<ext>\w+)$")
CITE_RE = re.compile(r"bench/results/([A-Za-z0-9_.*{},-]+)")
LOG_RE = re.compile(r"bench/device-logs/([A-Za-z0-9_./-]+[A-Za-z0-9])")
LOGS = os.path.join(ROOT, "bench", "device-logs")


def split_name(name):
    """(measurement, (date, session)) of a record file name."""
    m = NAME_RE.match(name)
    if not m:
        return os.path.splitext(name)[0], ("", "")
    key = m.group("key") + (m.group("rest") or "") + "." + m.group("ext")
    return key, (m.group("date"), m.group("session") or "")


def pages():
    out = [p for p in PAGES if os.path.isfile(os.path.join(ROOT, p))]
    docs = os.path.join(ROOT, "docs")
    if os.path.isdir(docs):
        out += sorted(os.path.join("docs", f) for f in os.listdir(docs) if f.endswith(".md"))
    return out


def expand_braces(pattern):
    m = re.search(r"\{([^{}]*)\}", pattern)
    if not m:
        return [pattern]
    return [p for alt in m.group(1).split(",")
            for p in expand_braces(pattern[:m.start()] + alt + pattern[m.end():])]


def citations():
    """[(page, pattern)] for every bench/results/ path the pages name."""
    cited = []
    for page in pages():
        with open(os.path.join(ROOT, page), encoding="utf-8") as f:
            text = f.read()
        for m in CITE_RE.finditer(text):
            raw = m.group(1).rstrip(".,")
            if not raw or raw.endswith("-"):
                continue  # a prefix in prose ("cpu-*-"), not a record
            for p in expand_braces(raw):
                cited.append((page, p.replace("YYYYMMDD", "[0-9]" * 8)))
    return cited


def records():
    return sorted(f for f in os.listdir(RESULTS) if not f.startswith("."))


def kept_set(files, cited):
    latest = {}
    for f in files:
        key, order = split_name(f)
        if key not in latest or order > latest[key][0]:
            latest[key] = (order, f)
    keep = {f for _, f in latest.values()}
    for _, pattern in cited:
        if pattern in ("*.json", "*"):
            continue  # "every record" in prose
        keep |= {f for f in files if fnmatch.fnmatchcase(f, pattern)}
    return keep


def fmt(v, digits=1):
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return str(v)


def headline(rec):
    parts = []
    if rec.get("fps_total") is not None:
        parts.append(f"{fmt(rec['fps_total'])} frames/s")
    lat = rec.get("latency_ms") or {}
    if isinstance(lat, dict) and lat.get("p50") is not None:
        parts.append(f"p50 {fmt(lat['p50'])} ms")
    if rec.get("cpu_cores") is not None:
        parts.append(f"{fmt(rec['cpu_cores'], 2)} cores")
    ref = rec.get("reference")
    if isinstance(ref, dict) and ref.get("fps_total") is not None and rec.get("ratio") is not None:
        parts.append(f"{fmt(rec['ratio'], 2)} of {ref.get('name', 'reference')}")
    h2d, d2h = rec.get("h2d_bytes_per_frame"), rec.get("d2h_bytes_per_frame")
    if isinstance(h2d, (int, float)) and isinstance(d2h, (int, float)):
        parts.append(f"PCIe {h2d / 1000:,.1f} + {d2h / 1000:,.1f} KB/frame")
    vram = rec.get("vram_mib")
    if isinstance(vram, dict) and vram.get("steady") is not None:
        parts.append(f"VRAM {fmt(vram['steady'], 0)} MiB")
    return ", ".join(parts)


def cell(s):
    return str(s).replace("|", "\\|").replace("\n", " ")


def render(files):
    lines = [
        "# Benchmark records",
        "",
        "Generated by `python3 scripts/bench-index.py` from `bench/results/` (do not edit; the",
        "test `tests/docs.rs` checks it is up to date). Every record kept is the latest of its",
        "measurement or cited by the README, `docs/` or `benches/README.md`; git history keeps",
        "the others. How the numbers are measured: `docs/measuring.md`; record format:",
        "`docs/measuring.md#records`.",
        "",
        "| file | what | device | date | commit | headline |",
        "|---|---|---|---|---|---|",
    ]
    for f in files:
        path = os.path.join(RESULTS, f)
        if not f.endswith(".json"):
            lines.append(f"| [{f}](results/{f}) | (image) | | | | |")
            continue
        try:
            with open(path, encoding="utf-8") as fh:
                rec = json.load(fh)
        except (OSError, ValueError) as e:
            raise SystemExit(f"bench-index: {path}: not a JSON record: {e}")
        if not isinstance(rec, dict):
            raise SystemExit(f"bench-index: {path}: not a JSON object")
        commit = str(rec.get("commit", ""))[:9] + (" (dirty)" if rec.get("commit_dirty") else "")
        lines.append("| " + " | ".join(cell(c) for c in [
            f"[{f}](results/{f})", rec.get("what", ""), rec.get("device", ""), rec.get("date", ""),
            commit, headline(rec)]) + " |")
    lines.append("")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--prune", action="store_true")
    a = ap.parse_args()

    files = records()
    cited = citations()
    keep = kept_set(files, cited)
    problems = []
    for page, pattern in cited:
        if not any(fnmatch.fnmatchcase(f, pattern) for f in files):
            problems.append(f"{page} cites bench/results/{pattern}, which matches no record")
    extra = [f for f in files if f not in keep]

    if a.prune:
        if extra:
            subprocess.run(["git", "rm", "-q", "--"] + [os.path.join("bench", "results", f) for f in extra],
                           cwd=ROOT, check=True)
        print(f"bench-index: removed {len(extra)} records, kept {len(files) - len(extra)}")
        files = [f for f in files if f in keep]
        extra = []

    # bench/device-logs/: only cited logs are kept, and every cited log exists.
    cited_logs = set()
    for page in pages():
        with open(os.path.join(ROOT, page), encoding="utf-8") as f:
            cited_logs |= set(LOG_RE.findall(f.read()))
    for log in sorted(cited_logs):
        if not os.path.isfile(os.path.join(LOGS, log)):
            problems.append(f"bench/device-logs/{log} is cited but missing")
    if os.path.isdir(LOGS):
        for d, _, names in os.walk(LOGS):
            for n in names:
                rel = os.path.relpath(os.path.join(d, n), LOGS)
                if rel not in cited_logs:
                    problems.append(f"bench/device-logs/{rel} is not cited by any page")

    text = render(files)
    if a.check:
        try:
            with open(INDEX, encoding="utf-8") as fh:
                current = fh.read()
        except OSError:
            current = None
        if current != text:
            problems.append("bench/README.md is out of date: run python3 scripts/bench-index.py")
        for f in extra:
            problems.append(f"bench/results/{f} is neither cited nor the latest of its measurement "
                            "(python3 scripts/bench-index.py --prune)")
        for p in problems:
            print(f"bench-index: {p}", file=sys.stderr)
        return 1 if problems else 0

    with open(INDEX, "w", encoding="utf-8") as fh:
        fh.write(text)
    for p in problems:
        print(f"bench-index: warning: {p}", file=sys.stderr)
    print(f"bench-index: wrote bench/README.md ({len(files)} records)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
