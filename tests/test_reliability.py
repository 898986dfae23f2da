"""The production server under bad input, fuzzing, slow clients, load and faults.

Loopback only; every loop is bounded in count and time. Figures are printed (pytest -s).
"""

import json
import os
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from helpers import (
    BAD_REQUESTS,
    GOOD_ROW,
    children,
    close_answers,
    parse_raw,
    post,
    raw_request,
    rss_kib,
    start_serve,
    workers,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from client import ModelClient
from predict import predict, registry

HEAD = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


@pytest.fixture(scope="module")
def prod(tmp_path_factory):
    server = start_serve(tmp_path_factory.mktemp("reliability"))
    yield server
    server.stop()


def grid_rows(count: int) -> list[list[float]]:
    """Distinct iris-like rows, so answers cannot be mixed up unnoticed."""
    return [[round(4.0 + (i % 40) * 0.1, 2), round(2.0 + (i // 40 % 25) * 0.1, 2),
             round(1.0 + (i // 1000 % 20) * 0.3, 2), round(0.1 + (i % 7) * 0.35, 2)]
            for i in range(count)]


def deep(depth: int) -> bytes:
    return b'{"features": ' + b"[" * depth + b"]" * depth + b"}"


# (raw body, status, part of the error message), beyond BAD_REQUESTS
MORE_BAD_BODIES = [
    (deep(100_000), 400, "nested too deeply"),
    (deep(2_000), 400, ""),  # Python 3.13's json parses this deep; then the shape is wrong
    (b'{"features": [5.9, 3.0, 5.1, 1.8], "model": "\xff\xfe"}', 400, "utf-8"),
    (b'{"features": [\xc3\x28, 3.0]}', 400, "utf-8"),
    (b'{"features": [1' + b"0" * 400 + b', 3.0, 5.1, 1.8]}', 400, "received 1000"),
    (b'{"features": [1' + b"0" * 5000 + b', 3.0, 5.1, 1.8]}', 400, "digits"),
    (b'{"features": [-1e400, 3.0, 5.1, 1.8]}', 400, "received -Infinity"),
    # finite values the model's arithmetic overflows on (NaN probabilities)
    (b'{"features": [1e308, 1e308, 1e308, 1e308]}', 400, "no finite answer"),
    # orjson (server/firefly_app.py) refuses these; Firefly's json takes them, and our checks decide
    (b'{"features": [NaN, 3.0, 5.1, 1.8]}', 400, "received NaN"),
    (b'{"features": [5.9, 3.0, 5.1, 1.8], "model": "\\ud800"}', 404, "unknown model"),
    ('{"f\u00eatures": [5.9, 3.0, 5.1, 1.8]}'.encode(), 422, "missing a required argument"),
    ('{"features": {"s\u00e9pal_length": 5.9}}'.encode(), 400, "unknown column(s) 's\u00e9pal"),
    ('{"features": [5.9, 3.0, 5.1, 1.8], "model": "\U0001f427"}'.encode(), 404, "unknown model"),
    (b"[]", 422, "not list"), (b"null", 422, "not NoneType"), (b"true", 422, "not bool"),
    (b"12", 422, "not int"), (b'"x"', 422, "not str"),
    (b"\x00\x01\x02", 400, "Expecting value"),
    (b'{"features": ' + json.dumps([["a"] * 4] * 10_000).encode() + b"}", 400, "received \"a\""),
    (b'{"features": [5.9, 3.0, 5.1, 1.8], "model": null}', 200, ""),
]


def test_bad_input_corpus(prod):
    pids = workers(prod)
    assert post(prod.url + "/predict", json.dumps({"features": GOOD_ROW})).status_code == 200
    rss_before = rss_kib(pids)
    corpus = [(body.encode(), status, message) for body, status, message in BAD_REQUESTS]
    corpus += MORE_BAD_BODIES
    for body, status, message in corpus:
        answer = requests.post(prod.url + "/predict", data=body, timeout=30,
                               headers={"Content-Type": "application/json"})
        assert answer.status_code == status, body[:80]
        assert answer.headers["Content-Type"] == "application/json"
        if status != 200:
            assert set(answer.json()) == {"error"} and message in answer.json()["error"]
            assert "Traceback" not in answer.text and "/work" not in answer.text
        good = post(prod.url + "/predict", json.dumps({"features": GOOD_ROW}))
        assert good.json() == predict(GOOD_ROW)

    raw_cases = [
        # a 50 MB body: refused from its Content-Length, before it is read
        (HEAD + b"Content-Length: 52428800\r\n\r\n" + b"[" * 65536, False, 413),
        # Content-Length larger than the body, then the sender stops
        (HEAD + b"Content-Length: 1000\r\n\r\n{\"features\": [5.9]}", True, 400),
        # Content-Length smaller than the body
        (HEAD + b"Content-Length: 10\r\nConnection: close\r\n\r\n{\"features\": [5.9]}", False,
         400),
        (HEAD + b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
         b"5\r\n{\"fea\r\n0\r\n\r\n", False, 400),
    ]
    for data, half_close, status in raw_cases:
        got, headers, body = parse_raw(raw_request(prod.port, data, half_close=half_close))
        assert got == status and "error" in json.loads(body), data[:120]
        assert post(prod.url + "/predict", json.dumps({"features": GOOD_ROW})).status_code == 200

    # the 50 MB body really sent: the server answers 413 and stays well
    with socket.create_connection(("127.0.0.1", prod.port), timeout=10) as sock:
        sock.sendall(HEAD + b"Content-Length: 52428800\r\n\r\n")
        try:
            for _ in range(50 * 16):
                sock.sendall(b"[" * 65536)
        except OSError:
            pass  # the server answered and closed while we were still sending
        status, _, body = parse_raw(sock.recv(65536))
        assert status == 413
    time.sleep(0.5)
    rss_after = rss_kib(children(prod.process.pid))
    print(f"\ncorpus: {len(corpus) + len(raw_cases) + 1} bad requests; worker RSS "
          f"{rss_before // 1024} MiB before, {rss_after // 1024} MiB after")
    assert children(prod.process.pid) == pids  # no worker died
    assert rss_after < rss_before + 40 * 1024


json_leaf = (st.none() | st.booleans() | st.integers() | st.text(max_size=12)
             | st.floats(allow_nan=True, allow_infinity=True))
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=6)
                          | st.dictionaries(st.text(max_size=8), inner, max_size=6),
                          max_leaves=40)
bodies = st.one_of(
    st.builds(lambda f: json.dumps({"features": f}).encode(), json_value),
    st.builds(lambda f, m: json.dumps({"features": f, "model": m}).encode(), json_value,
              json_value),
    st.builds(lambda v: json.dumps(v).encode(), json_value),
    st.binary(max_size=300),
)
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
content_types = st.sampled_from(["application/json", "application/json",
                                 "text/plain", "", "multipart/form-data; boundary=x",
                                 "application/JSON", "application/json;;"])


@pytest.mark.load
@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=bodies, content_type=content_types, authorization=header_text,
       request_id=header_text, path=st.sampled_from(["/predict", "/info", "/health", "/",
                                                     "/ready", "/metrics", "/x"]),
       method=st.sampled_from(["POST", "GET", "PUT", "OPTIONS"]))
def test_fuzzed_requests_never_get_a_5xx(prod, body, content_type, authorization, request_id,
                                         path, method):
    headers = {name: value.strip() for name, value in [
        ("Content-Type", content_type), ("Authorization", authorization),
        ("X-Request-ID", request_id)] if value.strip()}
    answer = requests.request(method, prod.url + path, data=body, headers=headers, timeout=30)
    assert answer.status_code < 500, (answer.status_code, answer.text[:200])
    if answer.status_code >= 400:
        assert "error" in answer.json()


def test_slow_clients_do_not_delay_others(prod):
    slow = []
    try:
        for _ in range(30):  # connected, silent
            slow.append(socket.create_connection(("127.0.0.1", prod.port), timeout=5))
        for _ in range(30):  # half the headers
            sock = socket.create_connection(("127.0.0.1", prod.port), timeout=5)
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Ty")
            slow.append(sock)
        for _ in range(30):  # headers, then part of the body
            sock = socket.create_connection(("127.0.0.1", prod.port), timeout=5)
            sock.sendall(HEAD + b"Content-Length: 100\r\n\r\n{\"feat")
            slow.append(sock)
        time.sleep(0.2)
        latencies = []
        for row in grid_rows(50):
            started = time.perf_counter()
            answer = requests.post(prod.url + "/predict", json={"features": row}, timeout=10,
                                   headers={"Connection": "close"})
            latencies.append(time.perf_counter() - started)
            assert answer.json() == predict(row)
        print(f"\n90 slow connections held: 50 other requests, max {max(latencies) * 1000:.1f}"
              f" ms, median {sorted(latencies)[25] * 1000:.1f} ms")
        assert max(latencies) < 0.5  # the stated bound
    finally:
        for sock in slow:
            sock.close()


def run_load(url: str, rows: list, concurrency: int, client: ModelClient,
             during=None) -> tuple[list, float]:
    """Each row in its own request; returns [(row index, answer or exception)], seconds."""
    def one(index: int):
        try:
            return index, client.predict(rows[index])
        except Exception as error:  # counted and reported by the caller
            return index, error

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        futures = [pool.submit(one, i) for i in range(len(rows))]
        if during:
            during(futures)
        results = [future.result(timeout=300) for future in futures]
    return results, time.perf_counter() - started


@pytest.mark.load
def test_load_20000_requests_at_concurrency_32(prod):
    rows = grid_rows(20_000)
    expected = registry().get("iris").answer(rows)  # in process, past the per-request limit
    log_lines = len(prod.log.read_text().splitlines())
    # Default retries, as users call it: a kept-alive connection the server closes just as
    # the client reuses it is what they are for; the server's own 5xx are counted below.
    with ModelClient(prod.url) as client:
        results, seconds = run_load(prod.url, rows, 32, client)
    errors = [r for _, r in results if isinstance(r, Exception)]
    wrong = [i for i, r in results if not isinstance(r, Exception) and not close_answers(r, {
        **r, "predictions": [expected["predictions"][i]],
        "probabilities": [expected["probabilities"][i]]})]
    time.sleep(0.5)
    server_errors = [line for line in prod.log.read_text().splitlines()[log_lines:]
                     if '"status": 5' in line]
    print(f"\nload: {len(rows)} requests at concurrency 32 in {seconds:.1f} s "
          f"({len(rows) / seconds:.0f} req/s), {len(errors)} errors, {len(wrong)} wrong, "
          f"{len(server_errors)} server 5xx")
    assert errors == [] and wrong == [] and server_errors == []


@pytest.mark.load
def test_kill_9_of_a_worker_mid_load_loses_nothing(prod):
    rows = grid_rows(4_000)
    expected = predict(rows)
    before = workers(prod)
    killed = []

    def kill_one_worker(futures):
        deadline = time.monotonic() + 60
        while sum(f.done() for f in futures) < 1_000 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(before[0], signal.SIGKILL)
        killed.append(before[0])

    with ModelClient(prod.url, retries=5, backoff=0.05) as client:
        results, seconds = run_load(prod.url, rows, 16, client, during=kill_one_worker)
    errors = [r for _, r in results if isinstance(r, Exception)]
    wrong = [i for i, r in results
             if not isinstance(r, Exception) and r["predictions"] != [expected["predictions"][i]]]
    deadline = time.monotonic() + 20
    while len(children(prod.process.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    after = children(prod.process.pid)
    print(f"\nfault: kill -9 of worker {killed[0]} during {len(rows)} requests at concurrency "
          f"16: {len(errors)} lost, {len(wrong)} wrong, in {seconds:.1f} s; workers {before} -> "
          f"{after}")
    assert killed and errors == [] and wrong == []
    assert len(after) == 2 and killed[0] not in after
    assert requests.get(prod.url + "/ready", timeout=10).status_code == 200


def test_a_worker_stuck_past_the_timeout_is_replaced(tmp_path, models_copy):
    # A model whose unpickling never ends, loaded on first use inside a worker: the worker's
    # loop stops, its heartbeat with it, and gunicorn stops it after MODELFLY_TIMEOUT; the
    # stuck request is answered with a 500 and the worker is replaced.
    import hashlib
    import sys

    import joblib

    (tmp_path / "stall.py").write_text(
        "import time\n\nclass Stall:\n"
        "    def __getstate__(self):\n        return {'seconds': 600}\n\n"
        "    def __setstate__(self, state):\n        time.sleep(state['seconds'])\n")
    sys.path.insert(0, str(tmp_path))
    try:
        from stall import Stall

        joblib.dump(Stall(), models_copy / "stuck.joblib")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("stall", None)
    card = json.loads((models_copy / "iris.json").read_text())
    card.update(name="stuck", sha256=hashlib.sha256(
        (models_copy / "stuck.joblib").read_bytes()).hexdigest())
    (models_copy / "stuck.json").write_text(json.dumps(card))
    # its own module, which the pickle's scan admits only when told (MODELFLY_PICKLE_ALLOW)
    server = start_serve(tmp_path, {"MODELFLY_MODELS_DIR": str(models_copy),
                                    "MODELFLY_TIMEOUT": "2", "PYTHONPATH": str(tmp_path),
                                    "MODELFLY_PICKLE_ALLOW": "stall"})
    try:
        before = workers(server)
        started = time.monotonic()
        stuck = requests.post(server.url + "/predict", timeout=30,
                              json={"features": GOOD_ROW, "model": "stuck"})
        stopped_after = time.monotonic() - started
        assert stuck.status_code == 500 and "ran past the server's timeout" in stuck.json()["error"]
        deadline = time.monotonic() + 20
        while (len(after := children(server.process.pid)) < 2 or set(after) == set(before)) \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(after) == 2 and len(set(after) - set(before)) == 1
        # silent for the timeout since its last heartbeat, at most a second before the request
        assert 1 <= stopped_after < 10
        assert "WORKER TIMEOUT" in server.log.read_text()
        answer = requests.post(server.url + "/predict", json={"features": GOOD_ROW}, timeout=10)
        assert answer.status_code == 200 and answer.json() == predict(GOOD_ROW)
    finally:
        server.stop()


def test_threads_do_not_mix_up_callers_across_models(prod):
    penguin = {"island": "Biscoe", "sex": "male", "bill_length_mm": 48.0,
               "bill_depth_mm": 15.0, "flipper_length_mm": 220.0, "body_mass_g": 5400.0}
    calls = [({"features": row}, predict(row)) for row in grid_rows(100)]
    calls += [({"features": [0.01 * i] * 10, "model": "diabetes"},
               predict([0.01 * i] * 10, "diabetes")) for i in range(100)]
    calls += [({"features": {**penguin, "body_mass_g": 3000.0 + 20 * i}, "model": "penguins"},
               predict({**penguin, "body_mass_g": 3000.0 + 20 * i}, "penguins"))
              for i in range(100)]
    session = requests.Session()
    lock = threading.Lock()
    wrong = []

    def one(call):
        body, want = call
        got = session.post(prod.url + "/predict", json=body, timeout=30).json()
        if not close_answers(got, want):
            with lock:
                wrong.append(body)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, calls * 3))
    assert wrong == []
