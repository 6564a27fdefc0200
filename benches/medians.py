#!/usr/bin/env python3
"""Prints a Markdown table of criterion medians (with the 95% interval of the median) from
target/criterion/*/new/estimates.json, plus throughput where the benchmark declared one.

Usage: python3 benches/medians.py [TARGET_DIR]   (default: target)
"""
import json
import pathlib
import sys


def fmt_time(ns: float) -> str:
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def main() -> None:
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target") / "criterion"
    rows = []
    for est in sorted(root.glob("**/new/estimates.json")):
        bench_dir = est.parent
        meta = json.loads((bench_dir / "benchmark.json").read_text())
        median = json.loads(est.read_text())["median"]
        ns = median["point_estimate"]
        lo, hi = median["confidence_interval"]["lower_bound"], median["confidence_interval"]["upper_bound"]
        thrpt = ""
        t = meta.get("throughput") or {}
        if "Bytes" in t:
            thrpt = f"{t['Bytes'] / ns:.3g} GB/s"
        elif "Elements" in t:
            thrpt = f"{t['Elements'] / ns * 1e9:,.0f} /s"
        rows.append((meta["full_id"], fmt_time(ns), f"{fmt_time(lo)} – {fmt_time(hi)}", thrpt))
    if not rows:
        sys.exit(f"no criterion results under {root}")
    print("| benchmark | median | 95% CI of median | throughput |")
    print("|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
