"""Jobs end to end: a large iris CSV submitted as one job, waited for and fetched as CSV, with
two worker processes, beside the same rows sent as 1,000-row /predict requests by `python -m
client predict --input` (the baseline), against one production server, in one run.

    python bench/jobs_bench.py                 # 1,000,000 rows
    python bench/jobs_bench.py --rows 20000    # the smoke CI runs

Prints a table: seconds and rows/s for each way, the job's phases and the ratio.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy
import requests

sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]

from bench.servers import ROOT, production  # noqa: E402

HEADER = "sepal_length,sepal_width,petal_length,petal_width"


def make_csv(path: Path, rows: int) -> None:
    values = numpy.random.default_rng(0).uniform([4, 2, 1, 0.1], [8, 4.5, 7, 2.5],
                                                 size=(rows, 4))
    with path.open("w") as out:
        out.write(HEADER + "\n")
        numpy.savetxt(out, values, delimiter=",", fmt="%.2f")


def run_job(url: str, data: bytes, rows: int) -> dict:
    started = time.perf_counter()
    answer = requests.post(f"{url}/jobs?model=iris", data=data, timeout=600,
                           headers={"Content-Type": "text/csv"})
    answer.raise_for_status()
    submitted = time.perf_counter()
    status_url = f"{url}{answer.json()['status_url']}"
    deadline = time.monotonic() + 900
    while (state := requests.get(status_url, timeout=30).json())["status"] != "succeeded":
        if state["status"] in ("failed", "cancelled") or time.monotonic() > deadline:
            raise RuntimeError(f"the job did not succeed: {state}")
        time.sleep(0.02)
    done = time.perf_counter()
    result = requests.get(f"{status_url}/result", headers={"Accept": "text/csv"}, timeout=600)
    lines = result.content.count(b"\n") - 1
    fetched = time.perf_counter()
    if lines != rows:
        raise RuntimeError(f"the job's CSV has {lines} lines for {rows} rows")
    return {"submit": submitted - started, "predict": done - submitted,
            "fetch": fetched - done, "total": fetched - started}


def run_client(url: str, path: Path, rows: int) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "client", "--url", url, "predict", "--input",
                           str(path), "--batch-size", "1000", "--output", "csv"], cwd=ROOT,
                          capture_output=True, timeout=1800, check=True)
    seconds = time.perf_counter() - started
    if done.stdout.count(b"\n") - 1 != rows:
        raise RuntimeError("the client's CSV has the wrong number of lines")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--processes", type=int, default=2, help="worker processes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        source = work / "rows.csv"
        make_csv(source, args.rows)
        os.environ["MODELFLY_DATA_DIR"] = str(work / "data")
        server = production()
        worker = subprocess.Popen([sys.executable, "-m", "modelfly", "worker", "--processes",
                                   str(args.processes)], cwd=ROOT, env=os.environ,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            run_job(server.url, f"{HEADER}\n5.9,3.0,5.1,1.8\n".encode(), 1)  # workers warm
            job = run_job(server.url, source.read_bytes(), args.rows)
            client = run_client(server.url, source, args.rows)
        finally:
            worker.terminate()
            worker.wait(timeout=60)
            server.stop()
    print(f"iris, {args.rows:,} rows of CSV, {args.processes} worker processes, "
          f"{os.cpu_count()} CPUs\n")
    print("| way | seconds | rows/s | vs client |")
    print("|---|---:|---:|---:|")
    print(f"| one job (submit {job['submit']:.2f} s, predict {job['predict']:.2f} s, fetch "
          f"CSV {job['fetch']:.2f} s) | {job['total']:.2f} | {args.rows / job['total']:,.0f} "
          f"| {client / job['total']:.2f}x |")
    print(f"| python -m client predict --input, 1,000-row requests | {client:.2f} | "
          f"{args.rows / client:,.0f} | 1.00x |")


if __name__ == "__main__":
    main()
