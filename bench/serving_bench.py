"""Serving benchmark: modelfly's production server against what users would pick instead.

    python bench/serving_bench.py            # 10 s per measurement (about 12 minutes)
    python bench/serving_bench.py --smoke    # 1 s per measurement, fewer of them (about 55 s)

Starts, in this one run and on free loopback ports: (a) modelfly's production server
(`python serve.py`), (b) the Firefly CLI, (c) a tutorial-style Flask app under gunicorn -w2,
(d) the bare Firefly app serving a plain function around scikit-learn's `predict` under
gunicorn -w2 (no checks, no guard, no batching); and measures the in-process limit. Outside
the smoke it also runs modelfly's app under granian's own process manager and WSGI threads
(granian is modelfly's HTTP server inside gunicorn's workers; its manager does not preload).
All servers run at once; each gets an uncounted warm-up (2 s at concurrency 1; not in the
smoke), then each measurement is taken in three rounds of 3 s, in turn on every server, and
the median of each figure is reported (median_round).
Load comes from wrk where it is installed, else a Python generator. Models: the shipped iris
LogisticRegression, the shipped penguins Pipeline (records with categories), and a
RandomForest of 100 trees trained here.
"""

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.servers import BASELINES, BIN, ROOT, Running, children_of, free_port, pss_mib  # noqa: E402

ROW = [5.9, 3.0, 5.1, 1.8]
GRANIAN = "modelfly app, granian"


def rf_models_dir() -> Path:
    """The shipped models plus `forest`, a RandomForest(100) on iris, in a temporary dir."""
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    from modelfly.card import save_model
    from train import numeric_features

    target = Path(tempfile.mkdtemp(prefix="modelfly-bench-models-"))
    for path in (ROOT / "models").iterdir():
        shutil.copy(path, target / path.name)
    iris = load_iris()
    forest = RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=1).fit(
        iris.data, iris.target_names[iris.target])
    save_model(forest, name="forest", version="bench", out_dir=target, flat=True,
               features=numeric_features(["sepal_length", "sepal_width", "petal_length",
                                          "petal_width"]),
               golden_inputs=[ROW, [5.1, 3.5, 1.4, 0.2], [6.0, 2.7, 4.1, 1.3]],
               data={"source": "sklearn.datasets.load_iris"}, metrics={})
    return target


def servers(models: Path, model: str) -> dict:
    """How to start each server for `model`, as (argv, env, working directory)."""
    env = {"MODELFLY_MODELS_DIR": str(models), "MODELFLY_DEFAULT_MODEL": model,
           "MODELFLY_MAX_BODY_BYTES": str(8 << 20), "OPENBLAS_NUM_THREADS": "1"}
    pythonpath = f"{ROOT},{ROOT / 'bench' / 'baselines'}"
    # Inside the temporary models directory, so it goes when that does (no *.json in it).
    granian_metrics = models / "granian-metrics"
    granian_metrics.mkdir(exist_ok=True)
    return {
        "modelfly": (lambda port: [sys.executable, "serve.py", "--bind", f"127.0.0.1:{port}"],
                     env, ROOT),
        "Firefly CLI": (lambda port: [str(BIN / "firefly"), "-c", "firefly.yml", "--bind",
                                      f"127.0.0.1:{port}"], env, ROOT),
        "Flask+gunicorn": (lambda port: [str(BIN / "gunicorn"), "-w", "2", "--pythonpath",
                                         pythonpath, "-b", f"127.0.0.1:{port}",
                                         "flask_app:app"],
                           {**env, "BENCH_MODEL": str(models / f"{model}.joblib")}, BASELINES),
        "Firefly+gunicorn": (lambda port: [str(BIN / "gunicorn"), "-w", "2", "--pythonpath",
                                           pythonpath, "-b", f"127.0.0.1:{port}",
                                           "firefly_app:app"], env, BASELINES),
        # Not a baseline: modelfly's guarded app under a Rust HTTP server, one request at a
        # time per worker (so no micro-batching); measured to weigh a change of server.
        GRANIAN: (lambda port: [str(BIN / "granian"), "--interface", "wsgi", "--workers", "2",
                                "--blocking-threads", "1", "--no-ws", "--host", "127.0.0.1",
                                "--port", str(port), "serve:app"],
                  {**env, "PROMETHEUS_MULTIPROC_DIR": str(granian_metrics)}, ROOT),
    }


def load(url: str, body: bytes, concurrency: int, seconds: float, path: str = "/predict"
         ) -> dict:
    """req/s, requests answered, p50 and p99 (ms) and errors of POSTing `body` to `path`
    for `seconds`."""
    if shutil.which("wrk"):
        return _wrk(url, body, concurrency, seconds, path)
    return _python_load(url, body, concurrency, seconds, path)


def _wrk(url: str, body: bytes, concurrency: int, seconds: float, path: str) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(f"wrk.method = 'POST'\nwrk.body = {json.dumps(body.decode())}\n"
                     "wrk.headers['Content-Type'] = 'application/json'\n")
    out = subprocess.run(["wrk", "-t", str(min(concurrency, 2)), "-c", str(concurrency), "-d",
                          f"{seconds}s", "--timeout", "30s", "--latency", "-s", script.name,
                          url + path],
                         capture_output=True, text=True, timeout=seconds + 60).stdout
    Path(script.name).unlink()

    def ms(label: str) -> float:
        found = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s|m)$", out, re.M)
        if not found:  # no answer at all within the run
            return float("nan")
        value, unit = found.groups()
        return float(value) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60_000}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(r"Socket errors: (.*)", out)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    answered = re.search(r"(\d+) requests in", out)
    return {"req/s": float(rate.group(1)) if rate else 0.0,
            "requests": int(answered.group(1)) if answered else 0,
            "p50": ms("50"), "p99": ms("99"),
            "errors": int(errors.group(1)) if errors else 0, "socket": bool(sockets)}


def _python_load(url: str, body: bytes, concurrency: int, seconds: float, path: str) -> dict:
    latencies, errors, lock = [], [0], threading.Lock()
    deadline = time.monotonic() + seconds

    def worker():
        session = requests.Session()
        while time.monotonic() < deadline:
            started = time.perf_counter()
            answer = session.post(url + path, data=body, timeout=30,
                                  headers={"Content-Type": "application/json"})
            with lock:
                latencies.append(time.perf_counter() - started)
                errors[0] += answer.status_code != 200

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    latencies.sort()
    return {"req/s": len(latencies) / seconds, "requests": len(latencies),
            "p50": statistics.median(latencies) * 1000,
            "p99": latencies[int(len(latencies) * 0.99) - 1] * 1000, "errors": errors[0],
            "socket": False}


def in_turn(running: dict[str, Running], body: bytes, concurrency: int, rounds: int,
            seconds: float) -> dict[str, dict]:
    """Load each server `rounds` times with `body`, in turn; its figures: median_round."""
    runs: dict[str, list[dict]] = {name: [] for name in running}
    for _ in range(rounds):
        for name, server in running.items():
            runs[name].append(load(server.url, body, concurrency, seconds))
    return {name: median_round(taken) for name, taken in runs.items()}


def median_round(runs: list[dict]) -> dict:
    """Several rounds of one measurement as one: the median of each figure, the errors of all.
    The rounds of all servers are taken in turn, so a slow spell of this shared VM falls on
    every server alike rather than on whichever ran then."""
    return {"req/s": statistics.median(run["req/s"] for run in runs),
            "p50": statistics.median(run["p50"] for run in runs),
            "p99": statistics.median(run["p99"] for run in runs),
            "errors": sum(run["errors"] for run in runs),
            "socket": any(run["socket"] for run in runs)}


def in_process(model: str, models: Path, rows: int, seconds: float) -> dict:
    """The limit: the estimator itself on a numpy array (a DataFrame for penguins), no HTTP,
    no JSON."""
    import joblib
    import numpy as np

    estimator = joblib.load(models / f"{model}.joblib")
    if model == "penguins":
        import pandas

        X = pandas.DataFrame([penguin()] * rows)
    else:
        X = np.array([ROW] * rows)
    calls, deadline = 0, time.monotonic() + seconds
    started = time.perf_counter()
    while time.monotonic() < deadline:
        estimator.predict(X)
        calls += 1
    return {"req/s": calls / (time.perf_counter() - started), "p50": 0.0, "p99": 0.0,
            "errors": 0, "socket": False}


def penguin() -> dict:
    """A penguin record from the shipped card's golden inputs."""
    card = json.loads((ROOT / "models" / "penguins.json").read_text())
    return card["golden"][0]["features"]


def request_body(model: str, rows: int) -> bytes:
    if model == "penguins":  # records through a Pipeline; served beside iris, named in the body
        return json.dumps({"features": [penguin()] * rows if rows > 1 else penguin(),
                           "model": "penguins"}).encode()
    return json.dumps({"features": [ROW] * rows if rows > 1 else ROW}).encode()


def lone_request(models: Path, rounds: int, seconds: float) -> None:
    """What micro-batching costs a request that has no company: concurrency 1, batching on and
    off, for penguins (a Pipeline: a model call dear enough for the batcher to wait for more)."""
    argv, env, cwd = servers(models, "iris")["modelfly"]
    running: dict[str, Running] = {}
    try:
        for label, batch_rows in (("batching on (default)", "1000"), ("batching off", "1")):
            port = free_port()
            running[label] = Running("modelfly", argv(port), port,
                                     {**env, "MODELFLY_BATCH_MAX_ROWS": batch_rows}, cwd)
        measured = in_turn(running, request_body("penguins", 1), 1, rounds, seconds)
    finally:
        for server in running.values():
            server.stop()
    print("\n| penguins, 1 record, concurrency 1 | req/s | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|")
    for label, r in measured.items():
        print(f"| {label} | {r['req/s']:,.0f} | {r['p50']:.2f} | {r['p99']:.2f} |")
    on, off = measured.values()
    print(f"\np50 with batching / without: {on['p50'] / off['p50']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="1 s per measurement, fewer")
    args = parser.parse_args()
    # Rounds of each measurement, taken in turn on every server (see median_round).
    rounds, seconds = (1, 1) if args.smoke else (3, 3)
    models = rf_models_dir()
    cases = [("iris", 1, 1), ("iris", 1, 16), ("iris", 100, 16), ("iris", 10_000, 2),
             ("penguins", 1, 16), ("forest", 1, 16)]
    if args.smoke:
        cases = [("iris", 1, 16), ("forest", 1, 16)]
    names = [name for name in servers(models, "iris") if name != GRANIAN]
    baselines = names[1:]
    results: dict = {}
    memory: dict = {}
    # The forest is its servers' default model; iris and penguins share theirs.
    for default in dict.fromkeys("forest" if case[0] == "forest" else "iris" for case in cases):
        served = [case for case in cases if (case[0] == "forest") == (default == "forest")]
        running: dict[str, Running] = {}
        try:
            for name, (argv, env, cwd) in servers(models, default).items():
                if name == GRANIAN and args.smoke:
                    continue
                port = free_port()
                running[name] = Running(name, argv(port), port, env, cwd)
                if not args.smoke:
                    # Not counted: the first answer can come before every worker is up, and
                    # connections opened then would stay on the first for a while (worker.py).
                    load(running[name].url, request_body(default, 1), 1, 2)
            for model, rows, concurrency in served:
                print(f"{model}, {rows} row(s), concurrency {concurrency}", file=sys.stderr)
                loaded = {name: server for name, server in running.items()
                          # the tutorial app takes rows of numbers only
                          if not (model == "penguins" and name == "Flask+gunicorn")}
                measured = in_turn(loaded, request_body(model, rows), concurrency, rounds,
                                   seconds)
                for name, figures in measured.items():
                    results[(model, rows, concurrency, name)] = figures
            for name, server in running.items():
                pids = [server.process.pid, *children_of(server.process.pid)]
                memory[(default, name)] = (server.cold_start, pss_mib(pids))
        finally:
            for server in running.values():
                server.stop()
        for model, rows, concurrency in served:
            results[(model, rows, concurrency, "in-process")] = in_process(
                model, models, rows, min(seconds, 3))
    print(f"wrk={'yes' if shutil.which('wrk') else 'no (Python load)'}; each figure is the "
          f"median of {rounds} round(s) of {seconds} s, taken in turn on every server; ratios "
          "are modelfly's req/s over the baseline's\n")
    print("| model | rows/req | conc. | server | req/s | rows/s | p50 ms | p99 ms | errors "
          "| vs CLI | vs Flask | vs Firefly+gunicorn |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for model, rows, concurrency in cases:
        ours = results[(model, rows, concurrency, "modelfly")]["req/s"]
        for name in [*names, GRANIAN, "in-process"]:
            r = results.get((model, rows, concurrency, name))
            if r is None:
                continue
            ratios = " | ".join(
                f"{ours / results[(model, rows, concurrency, b)]['req/s']:.2f}x"
                if name == "modelfly" and (model, rows, concurrency, b) in results else ""
                for b in baselines)
            print(f"| {model} | {rows} | {concurrency} | {name} | {r['req/s']:,.0f} | "
                  f"{r['req/s'] * rows:,.0f} | {r['p50']:.2f} | {r['p99']:.2f} | "
                  f"{r['errors']} | {ratios} |")
    if not args.smoke:
        lone_request(models, rounds, seconds)
    print("\n| model | server | cold start to first 200 (s) | PSS after load, all processes "
          "(MiB) |")
    print("|---|---|---:|---:|")
    for (model, name), (cold, pss) in memory.items():
        print(f"| {model} | {name} | {cold:.2f} | {pss:.0f} |")
    # The whole server is compared, master included: PSS splits each shared page among the
    # processes holding it, so the workers' own sum grows with their number even when nothing
    # is copied (1/2 of the master's pages with one worker, 2/3 with two).
    print("\n| modelfly workers | PSS, all processes (MiB) | PSS, workers only (MiB) |")
    print("|---:|---:|---:|")
    whole, workers_only = {}, {}
    for workers in (1, 2):
        argv, env, _ = servers(models, "iris")["modelfly"]
        port = free_port()
        server = Running("modelfly", argv(port), port, {**env, "WEB_CONCURRENCY": str(workers)})
        try:
            load(server.url, json.dumps({"features": ROW}).encode(), 16, min(seconds, 3))
            deadline = time.monotonic() + 20
            while len(children_of(server.process.pid)) < workers and time.monotonic() < deadline:
                time.sleep(0.1)
            children = children_of(server.process.pid)
            whole[workers] = pss_mib([server.process.pid, *children])
            workers_only[workers] = pss_mib(children)
        finally:
            server.stop()
        print(f"| {workers} | {whole[workers]:.0f} | {workers_only[workers]:.0f} |")
    print(f"\nPSS with two workers / with one: {whole[2] / whole[1]:.2f} "
          f"(workers only: {workers_only[2] / workers_only[1]:.2f})")
    shutil.rmtree(models)


if __name__ == "__main__":
    main()
