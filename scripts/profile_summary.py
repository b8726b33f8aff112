#!/usr/bin/env python3
"""Summarize CubeCL profiler logs (prof-*.txt.gz from scripts/gpu_device_check.sh).

CubeCL's profiler (CUBECL_DEBUG_OPTION=profile) prints summary tables (one per profiled
period: name, total duration, launches, share). For each table this prints the kernel
families (hash suffixes dropped, Burn's matmul variants as one family) by total device time.

Usage: python3 scripts/profile_summary.py prof-train4k.txt.gz [--top 25]
"""
import argparse
import collections
import gzip
import re

UNITS = {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1e3}


def millis(text):
    m = re.fullmatch(r"([0-9.]+)(ns|µs|us|ms|s)", text.strip())
    if not m:
        raise ValueError(f"not a duration: {text!r}")
    return float(m.group(1)) * UNITS[m.group(2)]


def family(name):
    name = re.sub(r"\s+", " ", name).strip()
    if name.startswith("MatmulEntry"):
        return "matmul (Burn)"
    return re.sub(r"_[0-9a-f]{8}$", "", name)


def tables(lines):
    """Yields each summary table as a list of (name, ms, launches)."""
    rows = None
    for line in lines:
        if "Num Computed" in line:
            rows = []
        elif rows is not None and line.startswith("| Total"):
            yield rows
            rows = None
        elif rows is not None and line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) >= 4 and cells[-2].isdigit():
                rows.append(("|".join(cells[:-3]), millis(cells[-3]), int(cells[-2])))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("log", help="a profiler log, plain or gzipped")
    p.add_argument("--top", type=int, default=25, help="families per table")
    args = p.parse_args()
    opener = gzip.open if args.log.endswith(".gz") else open
    with opener(args.log, "rt", errors="replace") as f:
        lines = f.read().splitlines()
    for n, rows in enumerate(tables(lines), 1):
        total = sum(ms for _, ms, _ in rows)
        launches = sum(c for _, _, c in rows)
        print(f"## table {n}: {total:.1f} ms of device time in {launches} launches")
        fams = collections.defaultdict(lambda: [0.0, 0])
        for name, ms, count in rows:
            fams[family(name)][0] += ms
            fams[family(name)][1] += count
        ranked = sorted(fams.items(), key=lambda kv: -kv[1][0])[: args.top]
        for name, (ms, count) in ranked:
            print(f"{ms:10.2f} ms {100 * ms / max(total, 1e-9):5.1f}% {count:6d}x  {name[:90]}")
        print()


if __name__ == "__main__":
    main()
