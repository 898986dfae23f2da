"""A short smoke of the benchmarks: they start their servers, measure, and print the table."""

import subprocess
import sys

from helpers import ROOT


def test_client_bench_smoke():
    out = subprocess.run([sys.executable, "bench/client_bench.py", "--calls", "50"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, check=True).stdout
    rows = [line for line in out.splitlines() if line.startswith(("| Firefly", "| modelfly"))]
    assert len(rows) == 9
    for row in rows:
        calls_per_second = float(row.split("|")[3].replace(",", ""))
        assert calls_per_second > 0
