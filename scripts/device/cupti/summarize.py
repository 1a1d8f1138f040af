#!/usr/bin/env python3
"""Prints the trtv_cupti.so summaries (JSON, one per process) as compact tables.

Usage: summarize.py [--phase steady|warmup|total] [--frames N] [--top-kernels K]
                    [--top-api K] FILE_OR_DIR...

For each process: memcpy count and bytes by copy kind and source/destination memory kind,
memset, allocations, unified memory migrations, kernel launches (top names), the byte
arguments of explicit driver memcpy calls, and the most frequent driver and runtime API
calls. --frames N adds per-frame columns (N = frames processed in the chosen phase);
rates per second use the phase's length. A directory argument means every *.json in it.
"""
import argparse
import glob
import json
import os
import signal
import sys

MIB = 1024.0 * 1024.0


def load(paths):
    files = []
    for path in paths:
        if os.path.isdir(path):
            files.extend(sorted(glob.glob(os.path.join(path, "*.json"))))
        else:
            files.append(path)
    summaries = []
    for path in files:
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                data = json.load(handle)
        except (OSError, ValueError) as err:
            print(f"summarize.py: skipping {path}: {err}", file=sys.stderr)
            continue
        if data.get("tool") != "trtv-cupti":
            print(f"summarize.py: skipping {path}: not a trtv-cupti summary", file=sys.stderr)
            continue
        data["_path"] = path
        summaries.append(data)
    return summaries


def add_keyed(total, rows, key_fields, value_fields):
    for row in rows:
        key = tuple(row[k] for k in key_fields)
        slot = total.setdefault(key, dict({k: row[k] for k in key_fields}, **{v: 0 for v in value_fields}))
        for field in value_fields:
            slot[field] += row.get(field, 0)


def add_counts(total, counts):
    for name, count in counts.items():
        total[name] = total.get(name, 0) + count


def merge_phases(phases):
    """Sums phase dictionaries (warmup + steady gives the whole run)."""
    memcpy, memset, memory_ops, kernel_names = {}, {}, {}, {}
    unified, api_memcpy, driver, runtime = {}, {}, {}, {}
    kernels = kernel_ns = 0
    streams = {}
    for phase in phases:
        add_keyed(streams, [r for r in phase.get("kernel_streams", []) if "context" in r],
                  ("context", "stream"), ("kernels", "ns"))
        kernel_ns += phase.get("kernel_ns", 0)
        add_keyed(memcpy, phase["memcpy"], ("copy", "src", "dst"), ("count", "async", "bytes"))
        add_keyed(memset, phase["memset"], ("mem",), ("count", "bytes"))
        add_keyed(memory_ops, phase["memory_ops"], ("op", "mem"), ("count", "bytes"))
        add_keyed(kernel_names, phase["kernel_names"], ("name",), ("count", "ns"))
        add_counts(unified, phase["unified_memory"])
        for name, value in phase["api_memcpy"].items():
            slot = api_memcpy.setdefault(name, {"calls": 0, "bytes": 0})
            slot["calls"] += value["calls"]
            slot["bytes"] += value["bytes"]
        add_counts(driver, phase["driver_api"])
        add_counts(runtime, phase["runtime_api"])
        kernels += phase["kernels"]
    return {
        "memcpy": list(memcpy.values()),
        "memset": list(memset.values()),
        "memory_ops": list(memory_ops.values()),
        "kernel_names": list(kernel_names.values()),
        "unified_memory": unified,
        "api_memcpy": api_memcpy,
        "driver_api": driver,
        "runtime_api": runtime,
        "kernels": kernels,
        "kernel_ns": kernel_ns,
        "kernel_streams": list(streams.values()),
    }


def select_phase(summary, which):
    phases = summary["phases"]
    if which == "total":
        return merge_phases([phases["warmup"], phases["steady"]]), summary["wall_s"]
    if which == "warmup":
        return phases["warmup"], min(summary["start_after_s"], summary["wall_s"])
    return phases["steady"], summary["steady_s"]


class Table:
    """Right-aligned numeric columns after a left-aligned label."""

    def __init__(self, title, columns, frames, seconds):
        self.title, self.columns, self.frames, self.seconds = title, list(columns), frames, seconds
        self.rows = []

    def add(self, label, count, byte_count=None, extra=None):
        cells = [f"{count:,}"]
        if "MiB" in self.columns:
            cells.append("" if byte_count is None else f"{byte_count / MIB:,.2f}")
        if extra is not None:
            cells.append(extra)
        if self.seconds and self.seconds > 0:
            cells.append(f"{count / self.seconds:,.1f}")
            if "MiB" in self.columns:
                cells.append("" if byte_count is None else f"{byte_count / MIB / self.seconds:,.2f}")
        if self.frames:
            cells.append(f"{count / self.frames:,.2f}")
            if "MiB" in self.columns:
                cells.append("" if byte_count is None else f"{byte_count / 1024.0 / self.frames:,.1f}")
        self.rows.append((label, cells))

    def header(self):
        head = list(self.columns)
        if self.seconds and self.seconds > 0:
            head.append("count/s")
            if "MiB" in self.columns:
                head.append("MiB/s")
        if self.frames:
            head.append("count/frame")
            if "MiB" in self.columns:
                head.append("KiB/frame")
        return head

    def print(self):
        if not self.rows:
            print(f"  {self.title}: none")
            return
        head = self.header()
        label_width = max([len(self.title)] + [len(label) + 2 for label, _ in self.rows])
        widths = [max([len(h)] + [len(cells[i]) for _, cells in self.rows]) for i, h in enumerate(head)]
        print("  " + self.title.ljust(label_width) + "".join("  " + h.rjust(w) for h, w in zip(head, widths)))
        for label, cells in self.rows:
            print("    " + label.ljust(label_width - 2) + "".join("  " + c.rjust(w) for c, w in zip(cells, widths)))


def shorten(text, width):
    """One printable line of at most width characters."""
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= width else text[: width - 3] + "..."


def print_summary(summary, args):
    phase, seconds = select_phase(summary, args.phase)
    frames = args.frames
    print(f"== pid {summary['pid']} {shorten(summary.get('cmdline') or summary['argv0'], 110)}")
    print(
        f"   {summary['_path']}: wall {summary['wall_s']:.1f} s, warmup {summary['start_after_s']:.1f} s, "
        f"steady {summary['steady_s']:.1f} s; phase shown: {args.phase} ({seconds:.1f} s)"
    )
    print(
        f"   cupti {summary['cupti_version']} ({summary['cupti_lib'] or 'not loaded'}); "
        f"records {summary['records']:,}, dropped {summary['dropped_records']:,}"
    )
    failed = {k: v for k, v in summary["activity_kinds"].items() if v != "enabled"}
    if failed:
        print("   activity kinds not enabled: " + "; ".join(f"{k}: {v}" for k, v in failed.items()))
    for error in summary["errors"]:
        print(f"   error: {error}")

    table = Table(f"memcpy ({args.phase})", ("count", "MiB", "async"), frames, seconds)
    by_kind = {}
    for row in sorted(phase["memcpy"], key=lambda r: (-r["bytes"], r["copy"])):
        table.add(f"{row['copy']} {row['src']}->{row['dst']}", row["count"], row["bytes"], f"{row['async']:,}")
        slot = by_kind.setdefault(row["copy"], [0, 0, 0])
        slot[0] += row["count"]
        slot[1] += row["bytes"]
        slot[2] += row["async"]
    for kind, (count, byte_count, async_count) in sorted(by_kind.items(), key=lambda kv: -kv[1][1]):
        table.add(f"{kind} total", count, byte_count, f"{async_count:,}")
    table.print()

    table = Table("memset", ("count", "MiB"), frames, seconds)
    for row in phase["memset"]:
        table.add(row["mem"], row["count"], row["bytes"])
    table.print()

    table = Table("allocations (MEMORY2)", ("count", "MiB"), frames, seconds)
    for row in phase["memory_ops"]:
        table.add(f"{row['op']} {row['mem']}", row["count"], row["bytes"])
    table.print()

    unified = {k: v for k, v in phase["unified_memory"].items() if k != "records" and v}
    if unified:
        print("  unified memory: " + ", ".join(
            f"{k} {v / MIB:,.2f} MiB" if k.startswith("bytes") else f"{k} {v:,}" for k, v in unified.items()))
    else:
        print(f"  unified memory: none ({phase['unified_memory'].get('records', 0)} records)")

    table = Table("explicit driver memcpy arguments", ("count", "MiB"), frames, seconds)
    for name, value in phase["api_memcpy"].items():
        if value["calls"]:
            table.add(name, value["calls"], value["bytes"])
    table.print()

    table = Table(f"kernel launches, top {args.top_kernels} names by GPU time", ("count", "GPU ms"), frames, seconds)
    table.add("all kernels", phase["kernels"], extra=f"{phase.get('kernel_ns', 0) / 1e6:,.1f}")
    rows = sorted(phase["kernel_names"], key=lambda r: (-r.get("ns", 0), -r["count"]))
    for row in rows[: args.top_kernels]:
        table.add(shorten(row["name"], 90), row["count"], extra=f"{row.get('ns', 0) / 1e6:,.1f}")
    table.print()

    streams = [r for r in phase.get("kernel_streams", []) if isinstance(r.get("stream"), int)]
    if streams:
        table = Table("kernel GPU time per stream", ("count", "GPU ms"), frames, seconds)
        for row in sorted(streams, key=lambda r: -r["ns"]):
            table.add(f"context {row['context']} stream {row['stream']}", row["kernels"],
                      extra=f"{row['ns'] / 1e6:,.1f}")
        table.print()
    busy = phase.get("kernel_busy")
    if busy and busy.get("span_ns"):
        span, on, both = busy["span_ns"], busy["busy_ns"], busy["overlap_ns"]
        total = phase.get("kernel_ns", 0)
        print(f"  kernel timeline ({busy['intervals']:,} kernels, {busy['intervals_dropped']:,} not kept):"
              f" span {span / 1e6:,.1f} ms, >=1 kernel running {on / 1e6:,.1f} ms ({100.0 * on / span:.1f} %),"
              f" >=2 running {both / 1e6:,.1f} ms ({100.0 * both / span:.1f} %);"
              f" summed kernel time / busy time {total / on if on else 0:.2f}")

    for domain in ("driver_api", "runtime_api"):
        table = Table(f"{domain.replace('_', ' ')} calls, top {args.top_api}", ("count",), frames, seconds)
        for name, count in sorted(phase[domain].items(), key=lambda kv: -kv[1])[: args.top_api]:
            table.add(name, count)
        table.print()
    print()


def print_all_processes(summaries, args):
    totals = {}
    for summary in summaries:
        phase, _ = select_phase(summary, args.phase)
        for row in phase["memcpy"]:
            slot = totals.setdefault(row["copy"], [0, 0])
            slot[0] += row["count"]
            slot[1] += row["bytes"]
    cells = ", ".join(f"{kind} {count:,} copies {byte_count / MIB:,.2f} MiB"
                      + (f" ({byte_count / 1024.0 / args.frames:,.1f} KiB/frame)" if args.frames else "")
                      for kind, (count, byte_count) in sorted(totals.items(), key=lambda kv: -kv[1][1]))
    print(f"== all {len(summaries)} processes, {args.phase}: {cells or 'no copies'}")


def main():
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # quiet under `| head`
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", metavar="FILE_OR_DIR")
    parser.add_argument("--phase", choices=("steady", "warmup", "total"), default="steady")
    parser.add_argument("--frames", type=int, default=0, help="frames processed in the phase shown")
    parser.add_argument("--top-kernels", type=int, default=25)
    parser.add_argument("--top-api", type=int, default=25)
    args = parser.parse_args()
    if args.frames < 0:
        parser.error("--frames must be positive")
    summaries = load(args.paths)
    if not summaries:
        print("summarize.py: no trtv-cupti summaries found", file=sys.stderr)
        return 1
    for summary in summaries:
        print_summary(summary, args)
    if len(summaries) > 1:
        print_all_processes(summaries, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
