"""The Open Inference Protocol beside MLServer's scikit-learn runtime: the same iris model file
and the same V2 JSON requests to both servers, in one run.

    python bench/v2_bench.py              # modelfly and MLServer (in .venv-mlserver-*, made
                                          # here from bench/mlserver-requirements.txt)
    python bench/v2_bench.py --smoke      # modelfly only, short: what CI runs

Both with two worker processes (modelfly: WEB_CONCURRENCY=2; MLServer: parallel_workers=2),
both asked for both outputs. Load from wrk (or a Python generator): one row at concurrency 16,
10,000 rows at concurrency 2. Each server's first answer is checked against the model's own in
process. Prints req/s, rows/s, p50 and p99, and modelfly's ratio to MLServer.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy
import requests

sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]

from bench.servers import ROOT, free_port, production, requirements_venv, stop  # noqa: E402
from bench.serving_bench import load  # noqa: E402
from modelfly.registry import Registry  # noqa: E402
from modelfly.settings import Settings  # noqa: E402

PATH = "/v2/models/iris/infer"


def request(rows: numpy.ndarray) -> bytes:
    return json.dumps({"inputs": [{"name": "input-0", "shape": list(rows.shape),
                                   "datatype": "FP64", "data": rows.ravel().tolist()}],
                       "outputs": [{"name": "predict"}, {"name": "predict_proba"}]}).encode()


def check(url: str, rows: numpy.ndarray) -> None:
    """The server's answer equals the model's in process (labels, and probabilities to 1e-12)."""
    answer = requests.post(url + PATH, data=request(rows), timeout=30,
                           headers={"Content-Type": "application/json"})
    answer.raise_for_status()
    outputs = {o["name"]: o["data"] for o in answer.json()["outputs"]}
    predictions, probabilities = Registry(Settings()).get("iris").arrays(rows)
    if outputs["predict"] != predictions.tolist() or not numpy.allclose(
            numpy.array(outputs["predict_proba"]).reshape(probabilities.shape), probabilities,
            rtol=1e-12, atol=1e-15):
        raise SystemExit(f"{url}: an answer differs from the model's in process")


class MLServer:
    """MLServer with the shipped iris.joblib, on free loopback ports; stopped by its PID."""

    def __init__(self, work: Path) -> None:
        python = requirements_venv(ROOT / "bench" / "mlserver-requirements.txt", "mlserver")
        port = free_port()
        (work / "iris").mkdir(parents=True)
        (work / "settings.json").write_text(json.dumps({
            "host": "127.0.0.1", "http_port": port, "grpc_port": free_port(),
            "metrics_port": free_port(), "parallel_workers": 2}))
        (work / "iris" / "model-settings.json").write_text(json.dumps({
            "name": "iris", "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": str(ROOT / "models" / "iris.joblib"), "version": "1.0.0"}}))
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen([str(python.parent / "mlserver"), "start", str(work)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(self.url + "/v2/models/iris/ready", timeout=1).ok:
                    return
            except requests.RequestException:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit("MLServer did not start")
            time.sleep(0.2)

    def stop(self) -> None:
        stop(self.process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="modelfly only, 1 s a load")
    args = parser.parse_args()
    seconds = 1 if args.smoke else 10
    rng = numpy.random.default_rng(0)
    one = rng.uniform([4, 2, 1, 0.1], [8, 4.5, 7, 2.5], size=(1, 4)).round(1)
    many = rng.uniform([4, 2, 1, 0.1], [8, 4.5, 7, 2.5], size=(10_000, 4)).round(1)
    results = {}
    servers = [("modelfly", production)]
    if not args.smoke:
        work = Path(tempfile.mkdtemp(prefix="v2-bench-"))
        servers.append(("MLServer 1.7.1", lambda: MLServer(work)))
    for name, start in servers:
        server = start()
        try:
            check(server.url, many)
            for label, rows, concurrency in (("1 row", one, 16), ("10,000 rows", many, 2)):
                measured = load(server.url, request(rows), concurrency, seconds, PATH)
                if measured["errors"] or measured["socket"]:
                    raise SystemExit(f"{name}, {label}: errors under load: {measured}")
                results[name, label] = measured | {"rows/s": measured["req/s"] * len(rows)}
        finally:
            server.stop()
    print(f"iris, V2 JSON, both outputs, two worker processes each, {seconds} s a load\n")
    print("| server | request | concurrency | req/s | rows/s | p50 ms | p99 ms | / MLServer |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for (name, label), measured in results.items():
        baseline = results.get(("MLServer 1.7.1", label))
        ratio = f"{measured['req/s'] / baseline['req/s']:.2f}x" if baseline else "-"
        concurrency = 16 if label == "1 row" else 2
        print(f"| {name} | {label} | {concurrency} | {measured['req/s']:,.0f} | "
              f"{measured['rows/s']:,.0f} | {measured['p50']:.2f} | {measured['p99']:.2f} | "
              f"{ratio} |")


if __name__ == "__main__":
    main()
