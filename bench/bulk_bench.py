"""Bulk scoring end to end: iris rows sent in large requests to the production server, beside
the model's own rate in process, in one run.

    python bench/bulk_bench.py                 # 1,000,000-row V2 binary requests
    python bench/bulk_bench.py --smoke         # the short run CI makes

Ways, each at concurrency 2 (two client threads, raw http.client, keep-alive):
- V2 binary: POST /v2/models/iris/infer, one FP64 tensor [rows, 4] in the binary tensor
  extension, both outputs back in binary (what tritonclient sends by default);
- V2 JSON and /predict JSON: 10,000 rows per request.
After a round unmeasured, the first answer of each way is checked against the model's in-process
answer. Prints rows/s and the ratio to the in-process rate (LoadedModel.arrays on the same rows,
made before the clock starts).
"""

import argparse
import http.client
import json
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy

sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]

from bench.servers import production  # noqa: E402
from modelfly.registry import Registry  # noqa: E402
from modelfly.settings import Settings  # noqa: E402


def rows_of(count: int) -> numpy.ndarray:
    return numpy.random.default_rng(0).uniform([4, 2, 1, 0.1], [8, 4.5, 7, 2.5],
                                               size=(count, 4)).round(1)


def binary_request(rows: numpy.ndarray) -> tuple[bytes, dict]:
    data = rows.astype("<f8").tobytes()
    header = json.dumps({"inputs": [{"name": "input-0", "shape": list(rows.shape),
                                     "datatype": "FP64",
                                     "parameters": {"binary_data_size": len(data)}}],
                         "parameters": {"binary_data_output": True}}).encode()
    return header + data, {"Content-Type": "application/octet-stream",
                           "Inference-Header-Content-Length": str(len(header))}


def v2_json_request(rows: numpy.ndarray) -> tuple[bytes, dict]:
    return json.dumps({"inputs": [{"name": "input-0", "shape": list(rows.shape),
                                   "datatype": "FP64", "data": rows.ravel().tolist()}]}
                      ).encode(), {"Content-Type": "application/json"}


def predict_request(rows: numpy.ndarray) -> tuple[bytes, dict]:
    return json.dumps({"features": rows.tolist()}).encode(), {
        "Content-Type": "application/json"}


def probabilities_of(way: str, answer: bytes, headers: http.client.HTTPMessage,
                     rows: int) -> numpy.ndarray:
    if way == "V2 binary":
        length = int(headers["Inference-Header-Content-Length"])
        head = json.loads(answer[:length])
        skip = head["outputs"][0]["parameters"]["binary_data_size"]
        return numpy.frombuffer(answer[length + skip:], dtype="<f8").reshape(rows, 3)
    body = json.loads(answer)
    if way == "V2 JSON":
        data = {o["name"]: o["data"] for o in body["outputs"]}["predict_proba"]
        return numpy.array(data).reshape(rows, 3)
    return numpy.array([list(p.values()) for p in body["probabilities"]])


def run(url: str, way: str, path: str, body: bytes, headers: dict, rows: int,
        requests_per_client: int, want: numpy.ndarray) -> float:
    """rows/s with two clients, each sending its requests one after the other."""
    host, port = url.removeprefix("http://").split(":")
    failures: list[str] = []

    def client(check: bool) -> None:
        connection = http.client.HTTPConnection(host, int(port), timeout=120)
        for i in range(requests_per_client):
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
            if response.status != 200:
                failures.append(f"{response.status} {answer[:200]!r}")
                return
            if check and i == 0 and not numpy.allclose(
                    probabilities_of(way, answer, response.headers, rows), want,
                    rtol=1e-12, atol=1e-15):
                failures.append("an answer differs from the model's in process")
        connection.close()

    threads = [threading.Thread(target=client, args=(i == 0,)) for i in range(2)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if failures:
        raise SystemExit(f"{way}: {failures[0]}")
    return 2 * requests_per_client * rows / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="small requests, few of them")
    args = parser.parse_args()
    bulk_rows, json_rows = (20_000, 1_000) if args.smoke else (1_000_000, 10_000)
    repeat = 2 if args.smoke else 5
    model = Registry(Settings()).get("iris")
    bulk = rows_of(bulk_rows)
    in_process = []
    for _ in range(repeat):
        started = time.perf_counter()
        _, want_bulk = model.arrays(bulk)
        in_process.append(bulk_rows / (time.perf_counter() - started))
    in_process_rate = statistics.median(in_process)
    _, want_json = model.arrays(rows_of(json_rows))
    server = production()
    try:
        results = []
        for way, path, make, rows, want, count in (
                ("V2 binary", "/v2/models/iris/infer", binary_request, bulk_rows, want_bulk,
                 repeat),
                ("V2 JSON", "/v2/models/iris/infer", v2_json_request, json_rows, want_json,
                 10 * repeat),
                ("/predict JSON", "/predict", predict_request, json_rows, want_json,
                 10 * repeat)):
            body, headers = make(rows_of(rows))
            # a first round, unmeasured: the workers' heaps grow to what such requests take
            run(server.url, way, path, body, headers, rows, 1, want)
            rate = run(server.url, way, path, body, headers, rows, count, want)
            results.append((way, rows, len(body), rate))
    finally:
        server.stop()
    print(f"iris, concurrency 2, this machine; in process (LoadedModel.arrays, {bulk_rows:,} "
          f"rows): {in_process_rate:,.0f} rows/s\n")
    print("| way | rows per request | request bytes | rows/s | / in process |")
    print("|---|---:|---:|---:|---:|")
    for way, rows, size, rate in results:
        print(f"| {way} | {rows:,} | {size:,} | {rate:,.0f} | {rate / in_process_rate:.3f} |")


if __name__ == "__main__":
    main()
