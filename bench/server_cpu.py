"""Server CPU per request: what answering costs modelfly's production server, under load.

    python bench/server_cpu.py                          # this checkout: iris, one row, c16
    python bench/server_cpu.py OLD_DIR NEW_DIR --pairs 3   # two checkouts, taken in turn

Starts each checkout's `python serve.py` on a free loopback port, warms it up, loads it with
wrk and reads the CPU time of the server's processes (user + system, /proc/<pid>/stat) before
and after. CPU per request is what a change of the server's code moves; this VM's speed
drifts (±30 % between minutes) and moves req/s with it far more. Checkouts are taken in
turn, `--pairs` times (make the second one with `git worktree add`), and the table ends with
each checkout's median.
"""

import argparse
import os
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.servers import ROOT, Running, children_of, free_port  # noqa: E402
from bench.serving_bench import load, request_body  # noqa: E402


def cpu_seconds(pids: list[int]) -> tuple[float, float]:
    """(user + system, system) CPU seconds these processes have used so far."""
    total = system = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
        system += int(fields[12])
    ticks = os.sysconf("SC_CLK_TCK")
    return total / ticks, system / ticks


def measure(checkout: Path, body: bytes, concurrency: int, seconds: int) -> dict:
    port = free_port()
    server = Running(checkout.name, [sys.executable, "serve.py", "--bind",
                                     f"127.0.0.1:{port}"], port, cwd=checkout)
    try:
        load(server.url, body, concurrency, 2)  # every worker up and warm
        pids = [server.process.pid, *children_of(server.process.pid)]
        before = cpu_seconds(pids)
        figures = load(server.url, body, concurrency, seconds)
        after = cpu_seconds(pids)
    finally:
        server.stop()
    answered = max(figures["requests"], 1)
    return {**figures, "cpu_us": (after[0] - before[0]) / answered * 1e6,
            "system_us": (after[1] - before[1]) / answered * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkouts", nargs="*", type=Path, default=[ROOT],
                        help="directories holding serve.py (default: this checkout)")
    parser.add_argument("--pairs", type=int, default=3, help="rounds of each (default 3)")
    parser.add_argument("--rows", type=int, default=1, help="iris rows per request")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=5, help="load per round")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("server_cpu: needs wrk (apt-get install wrk)")
    body = request_body("iris", args.rows)
    print(f"iris, {args.rows} row(s) per request, concurrency {args.concurrency}, "
          f"{args.seconds} s per round\n")
    print("| checkout | round | req/s | p99 | server CPU µs/request | of which system |")
    print("|---|---:|---:|---:|---:|---:|")
    cpu: dict[Path, list[float]] = {checkout: [] for checkout in args.checkouts}
    for round_number in range(1, args.pairs + 1):
        for checkout in args.checkouts:
            r = measure(checkout.resolve(), body, args.concurrency, args.seconds)
            cpu[checkout].append(r["cpu_us"])
            print(f"| {checkout} | {round_number} | {r['req/s']:,.0f} | {r['p99']:.2f} ms | "
                  f"{r['cpu_us']:.1f} | {r['system_us']:.1f} |", flush=True)
    print()
    for checkout, values in cpu.items():
        print(f"{checkout}: median {statistics.median(values):.1f} µs of server CPU per request")


if __name__ == "__main__":
    main()
