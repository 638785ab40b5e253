#!/usr/bin/env python3
"""Sums the kernel times of one profiled training step by kernel name (bench/gpu.sh's profile section).

Reads the CSV that `ncu --csv --metrics gpu__time_duration.sum` prints on stdin and prints a markdown table,
the costliest kernels first, with each one's share of the step.
"""
import csv
import sys
from collections import defaultdict

TO_US = {"nsecond": 1e-3, "ns": 1e-3, "usecond": 1.0, "us": 1.0, "msecond": 1e3, "ms": 1e3, "second": 1e6, "s": 1e6}

rows = csv.DictReader(line for line in sys.stdin if line.startswith('"'))
total_us = defaultdict(float)
launches = defaultdict(int)
for row in rows:
    if row.get("Metric Name") != "gpu__time_duration.sum":
        continue
    name = row["Kernel Name"]
    # template arguments make every instantiation its own row, which is what we want; only long signatures are cut
    name = name if len(name) <= 110 else name[:107] + "..."
    total_us[name] += float(row["Metric Value"].replace(",", "")) * TO_US[row["Metric Unit"]]
    launches[name] += 1

step_us = sum(total_us.values())
print(f"### kernels of one training step (bf16, 8 x 1024): {step_us / 1e3:.2f} ms of kernel time, "
      f"{sum(launches.values())} launches\n")
print("| kernel | launches | total ms | share |")
print("| --- | --- | --- | --- |")
for name, us in sorted(total_us.items(), key=lambda kv: -kv[1]):
    print(f"| `{name}` | {launches[name]} | {us / 1e3:.3f} | {100 * us / step_us:.1f}% |")
