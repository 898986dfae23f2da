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


def test_serving_bench_smoke():
    out = subprocess.run([sys.executable, "bench/serving_bench.py", "--smoke"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, check=True).stdout
    rows = [line.split("|") for line in out.splitlines() if line.startswith(("| iris",
                                                                             "| forest"))]
    served = [row for row in rows if row[4].strip() in (
        "modelfly", "Firefly CLI", "Flask+gunicorn", "Firefly+gunicorn")]
    assert len(served) >= 8
    for row in served:  # req/s, and no answer other than 200
        assert float(row[5].replace(",", "")) > 0 and row[9].strip() == "0"
    assert "PSS with two workers / with one:" in out


def test_server_cpu_smoke():
    out = subprocess.run([sys.executable, "bench/server_cpu.py", "--pairs", "1", "--seconds",
                          "1"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         check=True).stdout
    rows = [line.split("|") for line in out.splitlines() if line.startswith(f"| {ROOT}")]
    assert len(rows) == 1
    requests_per_second, cpu_per_request = (float(rows[0][i].replace(",", "")) for i in (3, 5))
    assert requests_per_second > 0 and 0 < cpu_per_request < 100_000
    assert "µs of server CPU per request" in out


def test_jobs_bench_smoke():
    out = subprocess.run([sys.executable, "bench/jobs_bench.py", "--rows", "20000"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, check=True).stdout
    rows = [line.split("|") for line in out.splitlines() if line.startswith(("| one job",
                                                                             "| python"))]
    assert len(rows) == 2
    for row in rows:  # rows/s, and the ratio to the client's
        assert float(row[3].replace(",", "")) > 0 and row[4].strip().endswith("x")


def test_trust_bench_smoke():
    out = subprocess.run([sys.executable, "bench/trust_bench.py", "--repeat", "2"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, check=True).stdout
    rows = [line.split("|") for line in out.splitlines() if line.startswith(
        ("| iris", "| penguins", "| diabetes", "| forest"))]
    assert len(rows) == 4
    for row in rows:  # each time measured, the scan's ratio to the unpickling
        assert all(float(row[i]) > 0 for i in range(3, 8)) and row[8].strip().endswith("x")
    assert "importing model-signing" in out


def test_bulk_bench_smoke():
    out = subprocess.run([sys.executable, "bench/bulk_bench.py", "--smoke"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, check=True).stdout
    rows = [line.split("|") for line in out.splitlines() if line.startswith(
        ("| V2 binary", "| V2 JSON", "| /predict JSON"))]
    assert len(rows) == 3
    for row in rows:  # rows/s, and the ratio to the in-process rate
        assert float(row[4].replace(",", "")) > 0 and float(row[5]) > 0
    assert "in process (LoadedModel.arrays" in out


def test_v2_bench_smoke():
    out = subprocess.run([sys.executable, "bench/v2_bench.py", "--smoke"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, check=True).stdout
    rows = [line.split("|") for line in out.splitlines() if line.startswith("| modelfly")]
    assert len(rows) == 2
    for row in rows:  # req/s and rows/s
        assert float(row[4].replace(",", "")) > 0 and float(row[5].replace(",", "")) > 0
