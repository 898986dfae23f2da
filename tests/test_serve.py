"""The production server (python serve.py: gunicorn + the guard around Firefly's app), over
HTTP on free ports: same answers as the CLI, auth, probes, metrics, limits, CORS and logs."""

import asyncio
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import firefly
import pytest
import requests
import yaml
from helpers import (
    GOOD_ROW,
    ROOT,
    Server,
    free_port,
    parse_raw,
    post,
    raw_request,
    start_firefly,
    start_serve,
    workers,
)

from client import ModelClient
from modelfly.settings import ConfigError
from predict import health, info, predict
from server.settings import resolve_token

TOKEN = "prod-s3cret-token"
ORIGIN = "https://app.example.org"


@pytest.fixture(scope="module")
def prod(tmp_path_factory):
    server = start_serve(tmp_path_factory.mktemp("prod"), {"MODELFLY_CORS_ORIGINS": ORIGIN})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def prod_token(tmp_path_factory):
    server = start_serve(tmp_path_factory.mktemp("prod-token"), {"MODELFLY_TOKEN": TOKEN,
                                                                 "MODELFLY_CORS_ORIGINS": "*"})
    yield server
    server.stop()


def auth(token: str = TOKEN, scheme: str = "Token") -> dict:
    return {"Authorization": f"{scheme} {token}"}


def test_same_answers_as_the_firefly_cli(prod, tmp_path):
    cli = start_firefly(tmp_path, "-c", "firefly.yml")
    try:
        for path, body in [("/predict", {"features": GOOD_ROW}),
                           ("/predict", {"features": [[0.01] * 10], "model": "diabetes"}),
                           ("/predict", {"features": [1, 2]}),
                           ("/predict", {"features": GOOD_ROW, "model": "tulips"}),
                           ("/info", {"model": "penguins"}), ("/health", {})]:
            ours = post(prod.url + path, json.dumps(body))
            theirs = post(cli.url + path, json.dumps(body))
            assert (ours.status_code, ours.json()) == (theirs.status_code, theirs.json())
    finally:
        cli.stop()
    assert post(prod.url + "/predict", json.dumps({"features": GOOD_ROW})).json() == \
        predict(GOOD_ROW)
    assert post(prod.url + "/info", "{}").json() == info()
    assert post(prod.url + "/health", "{}").json() == health()


def test_firefly_client_works_token_included(prod, prod_token):
    assert firefly.Client(prod.url).predict(features=GOOD_ROW) == predict(GOOD_ROW)
    remote = firefly.Client(prod_token.url, auth_token=TOKEN)
    assert remote.predict(features=GOOD_ROW, model="iris") == predict(GOOD_ROW)
    assert remote.info(model="diabetes") == info("diabetes")
    with pytest.raises(firefly.client.FireflyError):
        firefly.Client(prod_token.url, auth_token="wrong").predict(features=GOOD_ROW)


@pytest.mark.parametrize("headers, status", [
    ({}, 401), (auth("wrong"), 403), (auth(TOKEN[:-1]), 403), (auth(TOKEN + "x"), 403),
    ({"Authorization": TOKEN}, 401), (auth(TOKEN, "Basic"), 401), (auth(""), 401),
    (auth(TOKEN), 200), (auth(TOKEN, "Bearer"), 200), (auth(TOKEN, "token"), 200),
])
def test_token_schemes(prod_token, headers, status):
    response = post(prod_token.url + "/predict", json.dumps({"features": GOOD_ROW}),
                    headers=headers)
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    if status != 200:
        assert set(response.json()) == {"error"}


@pytest.mark.parametrize("path, method", [("/info", "POST"), ("/health", "POST"),
                                          ("/", "GET"), ("/metrics", "GET")])
def test_everything_but_probes_needs_the_token(prod_token, path, method):
    call = requests.get if method == "GET" else requests.post
    assert call(prod_token.url + path, json={}, timeout=10).status_code == 401
    assert call(prod_token.url + path, json={}, headers=auth(), timeout=10).status_code == 200


def test_probes_need_no_token_and_reveal_nothing(prod_token):
    live = requests.get(prod_token.url + "/health", timeout=10)
    assert (live.status_code, live.json()) == (200, {"status": "ok"})
    ready = requests.get(prod_token.url + "/ready", timeout=10)
    assert (ready.status_code, ready.json()) == (
        200, {"status": "ready", "model": "iris", "version": "1.0.0"})


def test_the_token_never_reaches_the_log(prod_token):
    post(prod_token.url + "/predict", json.dumps({"features": GOOD_ROW}), headers=auth())
    post(prod_token.url + "/predict", "{}", headers=auth("a-wrong-guess"))
    time.sleep(0.2)
    text = prod_token.log.read_text()
    assert "request" in text and TOKEN not in text and "a-wrong-guess" not in text


@pytest.mark.parametrize("env, file_token, expected", [
    ({}, None, None),
    ({"MODELFLY_TOKEN": "a"}, None, "a"),
    ({"FIREFLY_TOKEN": "a"}, None, "a"),
    ({"MODELFLY_TOKEN": "a", "FIREFLY_TOKEN": "a"}, None, "a"),
    ({}, "a", "a"),
    ({"MODELFLY_TOKEN": "a"}, "a", "a"),
    ({"FIREFLY_TOKEN": " a "}, "a", "a"),
])
def test_token_mixes_that_agree(env, file_token, expected):
    assert resolve_token(env, file_token) == expected


@pytest.mark.parametrize("env, file_token, message", [
    ({"MODELFLY_TOKEN": "a", "FIREFLY_TOKEN": "b"}, None,
     "different tokens are set in MODELFLY_TOKEN and FIREFLY_TOKEN"),
    ({"MODELFLY_TOKEN": "a"}, "b", "MODELFLY_TOKEN and the Firefly config's token"),
    ({"FIREFLY_TOKEN": "a"}, "b", "FIREFLY_TOKEN and the Firefly config's token"),
    ({}, 12345, "is a YAML int, which Firefly never matches; quote it"),
    ({"MODELFLY_TOKEN": ""}, None, "MODELFLY_TOKEN is set but empty"),
    ({"FIREFLY_TOKEN": " "}, None, "FIREFLY_TOKEN is set but empty"),
])
def test_token_mixes_that_stop_the_server(env, file_token, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as refusal:
        resolve_token(env, file_token)
    assert "a" not in re.findall(r"'(\w)'", str(refusal.value))  # never the token itself


def config_with_token(tmp_path, token) -> str:
    config = yaml.safe_load((ROOT / "firefly.yml").read_text())
    config["token"] = token
    path = tmp_path / "firefly-with-token.yml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.mark.parametrize("source", ["FIREFLY_TOKEN", "MODELFLY_CONFIG", "FIREFLY_CONFIG"])
def test_each_token_source_is_enforced_by_the_server(tmp_path, source):
    env = ({source: TOKEN} if source == "FIREFLY_TOKEN"
           else {source: config_with_token(tmp_path, TOKEN)})
    server = start_serve(tmp_path, env)
    try:
        body = json.dumps({"features": GOOD_ROW})
        assert post(server.url + "/predict", body).status_code == 401
        assert post(server.url + "/predict", body, headers=auth()).status_code == 200
    finally:
        server.stop()


@pytest.mark.parametrize("env, message", [
    ({"MODELFLY_TOKEN": "a", "FIREFLY_TOKEN": "b"}, "different tokens are set"),
    ({"MODELFLY_MAX_BODY_BYTES": "1MB"}, "MODELFLY_MAX_BODY_BYTES='1MB' must be a positive int"),
    ({"MODELFLY_MAX_ROWS": "-1"}, "MODELFLY_MAX_ROWS='-1'"),
    ({"MODELFLY_DEFAULT_MODEL": "tulips"}, "MODELFLY_DEFAULT_MODEL='tulips' is not a model"),
    # a master with no worker would accept connections and never answer
    ({"WEB_CONCURRENCY": "0"}, "WEB_CONCURRENCY='0' must be a positive int"),
    ({"WEB_CONCURRENCY": "two"}, "WEB_CONCURRENCY='two' must be a positive int"),
    ({"MODELFLY_TIMEOUT": "0"}, "MODELFLY_TIMEOUT='0' must be a positive int"),
    ({"MODELFLY_GRACEFUL_TIMEOUT": "1.5"}, "MODELFLY_GRACEFUL_TIMEOUT='1.5' must be a positive"),
    ({"MODELFLY_BATCH_MAX_ROWS": "0"}, "MODELFLY_BATCH_MAX_ROWS='0' must be a positive int"),
    ({"MODELFLY_BATCH_WAIT_MS": "-2"}, "MODELFLY_BATCH_WAIT_MS='-2' must be zero or more"),
    ({"MODELFLY_READ_TIMEOUT": "soon"}, "MODELFLY_READ_TIMEOUT='soon' must be a positive float"),
    ({"MODELFLY_WORKER_CLASS": "worker.LoopWorker"},
     "MODELFLY_WORKER_CLASS='worker.LoopWorker' must be one of gunicorn's"),
    ({"MODELFLY_BIND": "127.0.0.1"}, "MODELFLY_BIND (or --bind)='127.0.0.1' must be host:port"),
])
def test_bad_configuration_stops_the_server_at_once(env, message):
    import os

    bind = [] if "MODELFLY_BIND" in env else ["--bind", "127.0.0.1:1"]
    done = subprocess.run([sys.executable, "serve.py", *bind], cwd=ROOT,
                          env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0 and message in done.stderr
    assert "Traceback" not in done.stderr


def test_ready_is_503_with_the_reason_when_the_default_model_is_refused(tmp_path, models_copy):
    with open(models_copy / "iris.joblib", "ab") as file:
        file.write(b"tampered")
    server = start_serve(tmp_path, {"MODELFLY_MODELS_DIR": str(models_copy)})
    try:
        ready = requests.get(server.url + "/ready", timeout=10)
        assert ready.status_code == 503
        assert ready.json() == {"error": "not ready: model 'iris' 1.0.0 is refused: iris.joblib "
                                         "does not match the sha256 in its card (changed or "
                                         "swapped)"}
        assert requests.get(server.url + "/health", timeout=10).json() == {"status": "ok"}
        metrics = requests.get(server.url + "/metrics", timeout=10).text
        assert 'modelfly_model_load_failures_total{model="iris",version="1.0.0"} 1.0' in metrics
        penguins = post(server.url + "/predict", json.dumps(
            {"model": "diabetes", "features": [0.0] * 10}))
        assert penguins.status_code == 200
    finally:
        server.stop()


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(name + ("{" + wanted + "}" if labels else " ")):
            return float(line.rsplit(" ", 1)[1])
        if labels and line.startswith(name + "{"):
            got = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
            if got == labels:
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_add_up_across_workers(prod):
    assert len(workers(prod)) == 2
    before = requests.get(prod.url + "/metrics", timeout=10).text
    count = metric(before, "modelfly_http_requests_total", route="/predict", method="POST",
                   status="200")
    # Fresh connections, so both workers take some of them.
    for _ in range(60):
        requests.post(prod.url + "/predict", json={"features": GOOD_ROW}, timeout=10,
                      headers={"Connection": "close"})
    after = requests.get(prod.url + "/metrics", timeout=10)
    assert after.headers["Content-Type"].startswith("text/plain")
    text = after.text
    assert metric(text, "modelfly_http_requests_total", route="/predict", method="POST",
                  status="200") == count + 60
    assert metric(text, "modelfly_http_request_duration_seconds_count", route="/predict") >= 60
    assert metric(text, "modelfly_http_requests_in_flight") == 1.0  # this scrape
    assert 0 < metric(text, "modelfly_model_load_seconds", model="iris", version="1.0.0") < 10
    assert "# TYPE modelfly_http_request_duration_seconds histogram" in text


def test_metrics_count_unknown_methods_as_other(prod):
    # methods HTTP knows (WebDAV's) reach the guard: 405, counted as "other"
    for method in ("PROPFIND", "MKCOL"):
        assert requests.request(method, prod.url + "/predict", timeout=10).status_code == 405
    # methods nobody defined are refused by the HTTP parser: 501, as RFC 9110 asks
    for method in ("BREW", "SPAM"):
        answer = requests.request(method, prod.url + "/predict", timeout=10)
        assert answer.status_code == 501 and "method" in answer.json()["error"]
    text = requests.get(prod.url + "/metrics", timeout=10).text
    assert metric(text, "modelfly_http_requests_total", route="/predict", method="other",
                  status="405") >= 2
    for method in ("PROPFIND", "MKCOL", "BREW", "SPAM"):
        assert method not in text


@pytest.mark.parametrize("method, path, headers, body, status, message", [
    ("GET", "/predict", {}, b"", 405, "/predict takes POST, received GET"),
    ("PUT", "/predict", {"Content-Type": "application/json"}, b"{}", 405, "takes POST"),
    ("DELETE", "/health", {}, b"", 405, "/health takes POST"),
    ("POST", "/ready", {}, b"", 405, "/ready takes GET"),
    ("POST", "/predict", {"Content-Type": "text/plain"}, b'{"features": [1]}', 415,
     "received 'text/plain'"),
    ("POST", "/predict", {}, b'{"features": [1]}', 415, "no content type"),
    ("POST", "/predict", {"Content-Type": "application/x-www-form-urlencoded"},
     b"features=1", 415, "Content-Type: application/json"),
    ("POST", "/predict", {"Content-Type": "application/json"}, b"", 400, "the body is empty"),
    ("GET", "/nope<script>alert(1)</script>", {}, b"", 404, "no such path"),
    ("POST", "/predict/../etc/passwd", {"Content-Type": "application/json"}, b"{}", 404,
     "no such path"),
])
def test_method_type_and_path_refusals(prod, method, path, headers, body, status, message):
    response = requests.request(method, prod.url + path, headers=headers, data=body, timeout=10)
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    assert message in response.json()["error"]
    assert "<script>" not in response.text
    if status == 405:
        assert response.headers["Allow"] in ("POST, OPTIONS", "GET")


def test_answers_with_and_without_bodies_follow_each_other_on_one_connection(prod):
    # The worker holds each head back until its body (worker.py): HEAD and 204 answers have
    # none, a 10,000-row answer is large; each must arrive whole and in order.
    host, port = prod.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    big = json.dumps({"features": [GOOD_ROW] * 10_000})
    for method, path, body, status, length in [
            ("HEAD", "/health", None, 200, 0), ("OPTIONS", "/predict", None, 204, 0),
            ("POST", "/predict", big, 200, None), ("GET", "/health", None, 200, None)]:
        headers = {"Content-Type": "application/json"} if body else {}
        connection.request(method, path, body=body, headers=headers)
        answer = connection.getresponse()
        payload = answer.read()
        assert answer.status == status, (method, path)
        assert len(payload) == (length if length is not None
                                else int(answer.headers["Content-Length"]))
        if path == "/predict" and method == "POST":
            assert len(json.loads(payload)["predictions"]) == 10_000
    connection.close()


def test_every_close_every_th_answer_of_a_worker_closes_its_connection(prod):
    # so connections opened together cannot stay on one worker for good (worker.py)
    from server.worker import CLOSE_EVERY

    host, port = prod.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    closes = 0
    for _ in range(3 * CLOSE_EVERY):
        connection.request("GET", "/health")  # reconnects if the last answer closed
        answer = connection.getresponse()
        assert answer.read() and answer.status == 200
        if answer.headers.get("Connection", "").lower() == "close":
            closes += 1
            assert connection.sock is None  # announced, and done
    # each of the two workers closes every CLOSE_EVERY-th of the answers it gave
    assert 2 <= closes <= 4
    connection.close()


def test_the_index_lists_names_and_paths_only(prod):
    index = requests.get(prod.url + "/", timeout=10).json()
    assert index == {"app": "modelfly", "functions": {
        "predict": {"path": "/predict"}, "info": {"path": "/info"},
        "health": {"path": "/health"}}}


def test_body_limit_is_enforced_before_reading(prod):
    # 50 MB announced, nothing sent: the answer comes at once, so the body was never awaited.
    started = time.monotonic()
    answer = raw_request(prod.port, b"POST /predict HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Type: application/json\r\nContent-Length: 52428800\r\n\r\n")
    status, headers, body = parse_raw(answer)
    assert status == 413 and time.monotonic() - started < 2
    assert json.loads(body)["error"].startswith("the body is 52428800 bytes; at most 1048576")


def test_chunked_bodies_are_read_and_limited(prod):
    def chunked(payload: bytes) -> bytes:
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(payload[i:i + 4096]), payload[i:i + 4096])
                          for i in range(0, len(payload), 4096))
        return (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunks + b"0\r\n\r\n")

    status, _, body = parse_raw(raw_request(prod.port, chunked(
        json.dumps({"features": GOOD_ROW}).encode())))
    assert status == 200 and json.loads(body) == predict(GOOD_ROW)
    big = json.dumps({"features": [GOOD_ROW] * 50_000}).encode()
    assert len(big) > 1 << 20
    status, _, body = parse_raw(raw_request(prod.port, chunked(big)))
    assert status == 413 and "over 1048576 bytes" in json.loads(body)["error"]


def test_content_length_that_lies(prod):
    good = json.dumps({"features": GOOD_ROW}).encode()
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    # Announces more than it sends, then stops sending.
    status, _, body = parse_raw(raw_request(
        prod.port, head + b"Content-Length: 500\r\n\r\n" + good, half_close=True))
    assert status == 400
    # (granian, under our worker, does not tell how much came)
    assert "the body ended" in json.loads(body)["error"] and "500 bytes" in body.decode()
    # Announces less than it sends: the server reads what was announced, a truncated JSON.
    status, _, body = parse_raw(raw_request(
        prod.port, head + b"Content-Length: 20\r\nConnection: close\r\n\r\n" + good))
    assert status == 400 and "error" in json.loads(body)
    assert post(prod.url + "/predict", good).status_code == 200


def test_a_sender_that_stalls_gets_a_408(tmp_path):
    server = start_serve(tmp_path, {"MODELFLY_READ_TIMEOUT": "0.5"})
    try:
        started = time.monotonic()
        answer = raw_request(server.port, b"POST /predict HTTP/1.1\r\nHost: x\r\n"
                             b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        status, _, body = parse_raw(answer)
        assert status == 408 and "did not arrive within 0.5 s" in json.loads(body)["error"]
        assert time.monotonic() - started < 3
    finally:
        server.stop()


def test_cors(prod, prod_token):
    preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization, content-type"}
    answer = requests.options(prod.url + "/predict", headers=preflight, timeout=10)
    assert answer.status_code == 204
    assert answer.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Authorization" in answer.headers["Access-Control-Allow-Headers"]
    assert "POST" in answer.headers["Access-Control-Allow-Methods"]
    # Another origin gets no CORS headers; a preflight needs no token.
    other = requests.options(prod.url + "/predict", timeout=10,
                             headers={**preflight, "Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers
    tokened = requests.options(prod_token.url + "/predict", headers=preflight, timeout=10)
    assert tokened.status_code == 204 and tokened.headers["Access-Control-Allow-Origin"] == "*"
    simple = requests.post(prod.url + "/predict", json={"features": GOOD_ROW}, timeout=10,
                           headers={"Origin": ORIGIN})
    assert simple.headers["Access-Control-Allow-Origin"] == ORIGIN


def test_cors_is_off_by_default(tmp_path):
    server = start_serve(tmp_path)
    try:
        answer = requests.post(server.url + "/predict", json={"features": GOOD_ROW},
                               headers={"Origin": ORIGIN}, timeout=10)
        assert answer.status_code == 200
        assert not [h for h in answer.headers if h.lower().startswith("access-control")]
    finally:
        server.stop()


def test_one_json_access_line_per_request_with_its_id(prod):
    answer = requests.post(prod.url + "/predict", json={"features": [6.7123, 3.1, 4.4, 1.4]},
                           headers={"X-Request-ID": "trace-42"}, timeout=10)
    assert answer.headers["X-Request-ID"] == "trace-42"
    made = requests.get(prod.url + "/health", timeout=10).headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    for odd in ("has spaces; and <html>", "x" * 200):
        answer = requests.get(prod.url + "/health", headers={"X-Request-ID": odd}, timeout=10)
        assert re.fullmatch(r"[0-9a-f]{32}", answer.headers["X-Request-ID"])
    time.sleep(0.2)
    lines = [json.loads(line) for line in prod.log.read_text().splitlines()
             if line.startswith("{")]
    access = [line for line in lines if line["logger"] == "modelfly.access"]
    mine = [line for line in access if line["request_id"] == "trace-42"]
    assert len(mine) == 1
    assert mine[0]["route"] == "/predict" and mine[0]["status"] == 200
    assert mine[0]["method"] == "POST" and mine[0]["latency_ms"] > 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", mine[0]["time"])
    assert "6.7123" not in json.dumps(access)  # no bodies
    assert [line for line in access if line["request_id"] == made][0]["route"] == "/health"


def test_an_access_line_that_cannot_be_written_does_not_fail_the_request():
    import io

    from server.logs import AccessLog

    written = io.StringIO()
    AccessLog(written)({"request_id": "r1", "status": 200})
    line = json.loads(written.getvalue())
    assert line["logger"] == "modelfly.access" and line["message"] == "request"
    assert line["request_id"] == "r1" and line["status"] == 200
    assert written.getvalue().endswith("}\n") and written.getvalue().count("\n") == 1

    closed = io.StringIO()
    closed.close()
    AccessLog(closed)({"request_id": "r2"})  # no exception: the request is answered anyway

    # on an event loop: the lines of one turn, in one write at its end
    class Writes(io.StringIO):
        count = 0

        def write(self, text: str) -> int:
            self.count += 1
            return super().write(text)

    async def one_turn(log: AccessLog, stream: Writes) -> str:
        log({"request_id": "r3"})
        log({"request_id": "r4"})
        before = stream.getvalue()
        await asyncio.sleep(0)
        return before

    stream = Writes()
    assert asyncio.run(one_turn(AccessLog(stream), stream)) == ""
    assert stream.count == 1 and stream.getvalue().count("\n") == 2


def test_model_client_against_the_production_server(prod_token):
    with ModelClient(prod_token.url, token=TOKEN) as client:
        assert client.predict(GOOD_ROW) == predict(GOOD_ROW)
        assert client.health() == health()


def test_sigterm_lets_in_flight_requests_finish_then_exits_0(tmp_path):
    import threading

    server = start_serve(tmp_path, {"MODELFLY_MAX_BODY_BYTES": str(8 << 20)})
    rows = [[4.3 + (i % 36) / 10, 2.0 + (i % 24) / 10, 1.0 + (i % 59) / 10, 0.1] for i in
            range(10_000)]
    penguins = [{"island": "Dream", "sex": None, "bill_length_mm": 40.0 + i % 20,
                 "bill_depth_mm": 18.0, "flipper_length_mm": 190.0, "body_mass_g": 3800.0}
                for i in range(10_000)]
    results = []

    def call(body):
        results.append(requests.post(server.url + "/predict", json=body, timeout=30))

    threads = [threading.Thread(target=call, args=(body,)) for body in
               [{"features": rows}, {"features": penguins, "model": "penguins"}] * 3]
    for thread in threads:
        thread.start()
    time.sleep(0.3)  # the requests are being read and answered
    server.process.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(timeout=30)
    assert server.process.wait(timeout=30) == 0
    assert [r.status_code for r in results] == [200] * 6
    assert sorted(len(r.json()["predictions"]) for r in results) == [10_000] * 6


def test_concurrent_requests_share_model_calls_and_keep_their_own_answers(prod):
    # penguins: a Pipeline on a DataFrame, a model call dear enough to be worth batching.
    from concurrent.futures import ThreadPoolExecutor

    from helpers import close_answers

    islands, sexes = ["Biscoe", "Dream", "Torgersen"], ["male", "female", None]
    records = [{"island": islands[i % 3], "sex": sexes[i % 3], "bill_length_mm": 35 + i % 20,
                "bill_depth_mm": 14 + (i % 7) * 0.8, "flipper_length_mm": 180.0 + i % 40,
                "body_mass_g": None if i % 11 == 0 else 3000.0 + i * 7} for i in range(400)]
    bodies = [{"features": record, "model": "penguins"} if i % 10
              else {"features": {**record, "island": "Atlantis"}, "model": "penguins"}
              for i, record in enumerate(records)]  # every 10th is bad
    before = requests.get(prod.url + "/metrics", timeout=10).text
    session = requests.Session()
    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(lambda body: session.post(prod.url + "/predict", json=body,
                                                          timeout=30), bodies))
    for i, answer in enumerate(answers):
        if i % 10:
            assert answer.status_code == 200
            assert close_answers(answer.json(), predict(records[i], model="penguins"))
        else:
            assert answer.status_code == 400 and "received \"Atlantis\"" in answer.json()["error"]
    after = requests.get(prod.url + "/metrics", timeout=10).text
    calls = (metric(after, "modelfly_batch_requests_count")
             - metric(before, "modelfly_batch_requests_count"))
    answered = (metric(after, "modelfly_batch_requests_sum")
                - metric(before, "modelfly_batch_requests_sum"))
    print(f"\n360 good requests at concurrency 32: {calls:.0f} model calls")
    assert answered == 360 and calls < 360


def test_batching_can_be_turned_off(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    server = start_serve(tmp_path, {"MODELFLY_BATCH_MAX_ROWS": "1"})
    try:
        rows = [[4.0 + i * 0.05, 3.0, 1.0 + (i % 30) * 0.2, 1.5] for i in range(64)]
        session = requests.Session()
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda row: session.post(
                server.url + "/predict", json={"features": row}, timeout=30), rows))
        assert [a.json()["predictions"] for a in answers] == [predict(r)["predictions"]
                                                              for r in rows]
        exposition = requests.get(server.url + "/metrics", timeout=10).text
        assert metric(exposition, "modelfly_batch_requests_count") == 0
    finally:
        server.stop()


def test_the_server_runs_with_malloc_keeping_what_it_freed(prod):
    # serve.py becomes gunicorn in the same process: its environment is the workers'
    environ = dict(entry.split("=", 1) for entry in Path(
        f"/proc/{prod.process.pid}/environ").read_bytes().decode().split("\0") if "=" in entry)
    assert environ["MALLOC_MMAP_THRESHOLD_"] == str(32 << 20)
    assert environ["MALLOC_TRIM_THRESHOLD_"] == str(512 << 20)


def _worker_holding(client: socket.socket, server_port: int, pids: list[int]) -> int:
    """The worker whose descriptors hold the server's end of this client's connection."""
    client_port = client.getsockname()[1]
    inode = next(fields[9] for fields in (line.split() for line in
                                          Path("/proc/net/tcp").read_text().splitlines()[1:])
                 if int(fields[1].split(":")[1], 16) == server_port
                 and int(fields[2].split(":")[1], 16) == client_port)
    return next(pid for pid in pids for fd in Path(f"/proc/{pid}/fd").iterdir()
                if _link(fd) == f"socket:[{inode}]")


def _wait_until_no_connections(server_port: int, timeout: float = 10) -> None:
    """Until no connection to the server's port is open on the server's side (only its
    listening socket, state 0A, is left)."""
    deadline = time.monotonic() + timeout
    while any(int(fields[1].split(":")[1], 16) == server_port and fields[3] != "0A"
              for fields in (line.split() for line in
                             Path("/proc/net/tcp").read_text().splitlines()[1:])):
        assert time.monotonic() < deadline, "the workers kept their connections open"
        time.sleep(0.02)


def _link(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:  # closed since it was listed
        return ""


def test_connections_opened_together_are_spread_over_the_workers(tmp_path):
    # a worker that has connections accepts late, so that one without any takes the next
    # (http.py): two bulk clients get a core each
    server = start_serve(tmp_path)
    spread = 0
    try:
        pids = workers(server)
        for _ in range(ROUNDS := 10):
            connections = [http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
                           for _ in range(2)]
            for connection in connections:
                connection.connect()
            for connection in connections:
                connection.request("GET", "/health")
                assert connection.getresponse().read()
            spread += len({_worker_holding(c.sock, server.port, pids) for c in connections}) == 2
            for connection in connections:
                connection.close()
            _wait_until_no_connections(server.port)  # each round starts from idle workers
    finally:
        server.stop()
    # The other worker must wake within ACCEPT_WHEN_BUSY: on a loaded machine it now and then
    # does not (once 1 round of 5 in CI); without the delay about half the rounds landed on one
    # worker, with 0.5 ms 8 of 10.
    assert spread >= 0.7 * ROUNDS


def test_a_worker_out_of_file_descriptors_accepts_again_once_some_are_free(tmp_path):
    limit = 128
    port = free_port()
    argv = [sys.executable, "-c", "import resource, runpy, sys; resource.setrlimit("
            f"resource.RLIMIT_NOFILE, ({limit}, {limit})); sys.argv = ['serve.py', '--bind', "
            f"'127.0.0.1:{port}']; runpy.run_path('serve.py', run_name='__main__')"]
    server = Server(argv, port, tmp_path / "serve.log", {"WEB_CONCURRENCY": "1"})
    held = []
    try:
        for _ in range(limit + 20):  # more than the worker has descriptors for
            held.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        deadline = time.monotonic() + 10
        while "cannot accept a connection" not in server.log.read_text():
            assert time.monotonic() < deadline, "the worker never ran out"
            time.sleep(0.05)
        for connection in held:
            connection.close()
        held.clear()
        deadline = time.monotonic() + 10
        while True:  # the connections refused in the meantime may be answered first
            try:
                answer = requests.post(f"{server.url}/predict", json={"features": GOOD_ROW},
                                       timeout=5)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert answer.status_code == 200 and answer.json()["predictions"] == predict(
            GOOD_ROW)["predictions"]
        assert server.process.poll() is None
    finally:
        for connection in held:
            connection.close()
        server.stop()
