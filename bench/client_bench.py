"""Sequential predictions through three clients against the same servers, in one run.

    python bench/client_bench.py               # 1,000 calls per client and server
    python bench/client_bench.py --calls 100   # a quick smoke

Clients: ModelClient (one keep-alive Session), firefly.Client (a new connection per call) and a
bare `requests.post` per call. Servers: modelfly's production server (`python serve.py`), the
bare Firefly app under gunicorn gthread (both keep connections alive) and the Firefly CLI
(HTTP/1.0: it closes every connection).
"""

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import firefly
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.servers import firefly_cli, firefly_gunicorn, production  # noqa: E402
from client import ModelClient  # noqa: E402

ROW = [5.9, 3.0, 5.1, 1.8]


def clients(url: str) -> dict[str, Callable[[], object]]:
    model_client = ModelClient(url)
    remote = firefly.Client(url)
    return {
        "ModelClient": lambda: model_client.predict(ROW),
        "firefly.Client": lambda: remote.predict(features=ROW),
        "requests.post": lambda: requests.post(url + "/predict", json={"features": ROW},
                                               timeout=30).json(),
    }


def measure(calls_by_client: dict[str, Callable[[], object]], calls: int,
            rounds: int = 10) -> dict[str, dict]:
    """Interleave the clients in rounds so drift on the machine hits them all alike."""
    latencies: dict[str, list[float]] = {name: [] for name in calls_by_client}
    for call in calls_by_client.values():  # warm up: connections, first-call index fetches
        for _ in range(20):
            call()
    for _ in range(rounds):
        for name, call in calls_by_client.items():
            for _ in range(calls // rounds):
                begin = time.perf_counter()
                call()
                latencies[name].append(time.perf_counter() - begin)
    results = {}
    for name, times in latencies.items():
        times.sort()
        results[name] = {"calls/s": len(times) / sum(times),
                         "p50 ms": statistics.median(times) * 1000,
                         "p99 ms": times[max(0, int(len(times) * 0.99) - 1)] * 1000}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000, help="calls per client and server")
    args = parser.parse_args()
    print(f"{args.calls} sequential one-row iris predictions per client\n")
    print("| server | client | calls/s | p50 ms | p99 ms | vs firefly.Client |")
    print("|---|---|---:|---:|---:|---:|")
    for start in (production, firefly_gunicorn, firefly_cli):
        server = start()
        try:
            results = measure(clients(server.url), args.calls)
        finally:
            server.stop()
        baseline = results["firefly.Client"]["calls/s"]
        for name, result in results.items():
            print(f"| {server.name} | {name} | {result['calls/s']:,.0f} | {result['p50 ms']:.2f} "
                  f"| {result['p99 ms']:.2f} | {result['calls/s'] / baseline:.2f}x |")


if __name__ == "__main__":
    main()
