"""Helpers for tests: free ports and real servers as subprocesses on loopback."""

import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy
import pandas
import requests
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from bench.servers import children_of as children
from bench.servers import free_port, requirements_venv
from modelfly.card import save_model

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
GOOD_ROW = [5.9, 3.0, 5.1, 1.8]

# Caller mistakes in a predict body, the status they get and part of the error message.
BAD_REQUESTS = [
    # (body, status, part of the error message)
    ('{"features": [5.9, 3.0, 5.1]}', 400, "row 0 has 3 value(s); expected 4"),
    ('{"features": [5.9, 3.0, 5.1, 1.8, 0.2]}', 400, "row 0 has 5 value(s)"),
    ('{"features": [[5.9, 3.0, 5.1, 1.8], [1, 2]]}', 400, "row 1 has 2 value(s)"),
    ('{"features": {"sepal_length": 5.9, "colour": 1}}', 400, "unknown column(s) 'colour'"),
    ('{"features": {"sepal_length": 5.9}}', 400, "missing column(s) 'sepal_width'"),
    ('{"features": [5.9, "wide", 5.1, 1.8]}', 400, 'received "wide" (a string)'),
    ('{"features": [NaN, 3.0, 5.1, 1.8]}', 400, "received NaN; expected a finite number"),
    ('{"features": [Infinity, 3.0, 5.1, 1.8]}', 400, "received Infinity"),
    ('{"features": [1e400, 3.0, 5.1, 1.8]}', 400, "received Infinity"),
    ('{"features": [null, 3.0, 5.1, 1.8]}', 400, "does not accept missing values"),
    ('{"features": []}', 400, "features is an empty list"),
    ('{"features": "5.9,3.0,5.1,1.8"}', 400, "received \"5.9,3.0,5.1,1.8\" (a string)"),
    ('{"features": [[1, 2, 3, 4], 5]}', 400, "mixes rows, records and single values"),
    ('{"features": [' + ",".join(["[1,2,3,4]"] * 10_001) + "]}", 413,
     "received 10001 rows; at most 10000"),
    ('{"features": [5.9, 3.0, 5.1, 1.8], "model": "tulips"}', 404, "unknown model \"tulips\""),
    ('{"features": [5.9, 3.0, 5.1, 1.8], "model": "../models/iris"}', 404, "available models"),
    ('{"features": [5.9, 3.0, 5.1, 1.8], "model": 7}', 404, "unknown model 7 (a number)"),
    # Firefly's own checks, before our function runs: not an object, unknown/missing arguments.
    ("[5.9, 3.0, 5.1, 1.8]", 422, "must be a mapping, not list"),
    ('"features"', 422, "must be a mapping, not str"),
    ('{"features": [5.9, 3.0, 5.1, 1.8], "colour": "red"}', 422, "unexpected keyword argument"),
    ("{}", 422, "missing a required argument: 'features'"),
    ('{"features": [5.9, 3.0', 400, "Expecting"),
]


def close_answers(got: dict, want: dict, tolerance: float = 1e-12) -> bool:
    """Answers equal up to the last bits of floats: a row answered inside a micro-batch and
    the same row answered alone can round differently (BLAS sums in another order)."""
    if got.keys() != want.keys() or got["predictions"] != want["predictions"] and not all(
            isinstance(g, float) and abs(g - w) <= tolerance * max(1.0, abs(w))
            for g, w in zip(got["predictions"], want["predictions"], strict=True)):
        return False
    return all(p.keys() == q.keys() and all(abs(p[k] - q[k]) <= tolerance for k in p)
               for p, q in zip(got.get("probabilities", []), want.get("probabilities", []),
                               strict=True))


def wait_for_port(port: int, process: subprocess.Popen, log: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {port} within {timeout} s:\n{log.read_text()}")


class Server:
    """A server subprocess on a free loopback port; stopped by its PID."""

    def __init__(self, argv: list[str], port: int, log: Path, env: dict | None = None,
                 cwd: Path = ROOT, new_session: bool = False) -> None:
        self.port, self.log = port, log
        self.url = f"http://127.0.0.1:{port}"
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})}, start_new_session=new_session)
        wait_for_port(port, self.process, log)

    def stop(self) -> int:
        self.process.terminate()
        try:
            return self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def start_firefly(tmp_path: Path, *args: str, env: dict | None = None) -> Server:
    """`firefly <args> --bind 127.0.0.1:<free port>` from the repository root."""
    port = free_port()
    argv = [str(BIN / "firefly"), *args, "--bind", f"127.0.0.1:{port}"]
    return Server(argv, port, tmp_path / f"firefly-{port}.log", env)


def post(url: str, body: bytes | str, **kwargs) -> requests.Response:
    headers = {"Content-Type": "application/json", **kwargs.pop("headers", {})}
    return requests.post(url, data=body, headers=headers, timeout=10, **kwargs)


class LittleServer:
    """A real HTTP/1.1 keep-alive server on loopback, for the client's transport tests.

    Answers every request with `answer` as JSON, except the first `fail_first`, which get
    `fail_status`, and the first `truncate_first`, whose answers break off; counts connections
    and requests.
    """

    def __init__(self, answer: dict | None = None, fail_first: int = 0,
                 fail_status: int = 503, truncate_first: int = 0) -> None:
        self.connections = self.requests = 0
        lock = threading.Lock()
        little = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            wbufsize = -1  # one write per answer: no Nagle delay between headers and body

            def setup(self) -> None:
                with lock:
                    little.connections += 1
                super().setup()

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    little.requests += 1
                    failing = little.requests <= fail_first
                    truncating = little.requests <= truncate_first
                if truncating:  # promise 100 bytes, send 7, hang up
                    self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"pred")
                    self.wfile.flush()
                    self.close_connection = True
                    return
                status = fail_status if failing else 200
                body = json.dumps({"error": "try later"} if failing else answer or {}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class SilentServer:
    """Accepts connections on loopback and never answers (a hung server)."""

    def __init__(self, hang_up_after_headers: bool = False) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.held: list[socket.socket] = []
        self.hang_up = hang_up_after_headers
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.hang_up:  # promise a body, then close: a truncated answer
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 100\r\n\r\n{\"pred")
                conn.close()
            else:
                self.held.append(conn)

    def stop(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


def start_serve(tmp_path: Path, env: dict | None = None) -> Server:
    """The production server, `python serve.py --bind 127.0.0.1:<free port>`."""
    port = free_port()
    argv = [sys.executable, "serve.py", "--bind", f"127.0.0.1:{port}"]
    return Server(argv, port, tmp_path / f"serve-{port}.log", env)


class Worker:
    """`python -m modelfly worker` in a session of its own (so that SIGKILL takes its
    processes with it), stopped by its PID."""

    def __init__(self, env: dict, log: Path, processes: int = 1) -> None:
        self.log = log
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "modelfly", "worker", "--processes", str(processes)],
                cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                return self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode


def serve_models(tmp_path: Path, models: Path, **env: str) -> Server:
    """The production server, one worker, on the models directory `models`."""
    return start_serve(tmp_path, env={"MODELFLY_MODELS_DIR": str(models),
                                      "WEB_CONCURRENCY": "1", **env})


def workers(server: Server, count: int = 2, timeout: float = 30) -> list[int]:
    """gunicorn's worker PIDs, once `count` of them run."""
    deadline = time.monotonic() + timeout
    while len(found := children(server.process.pid)) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{count} workers did not start: {found}")
        time.sleep(0.05)
    return found


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def raw_request(port: int, data: bytes, half_close: bool = False, timeout: float = 10) -> bytes:
    """Send raw bytes, return the raw answer (until the server closes or goes quiet)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        answer = b""
        try:
            while b"\r\n\r\n" not in answer or len(answer) < _expected_length(answer):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except TimeoutError:
            pass
        return answer


def _expected_length(answer: bytes) -> int:
    head, _, _ = answer.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(head) + 4 + int(line.split(b":")[1])
    return len(answer) + 1


def parse_raw(answer: bytes) -> tuple[int, dict, bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


XSS = '<img src=x onerror="document.body.dataset.pwned=1">'  # a category, shown as text
XSS_CLASS = '<svg onload="document.body.dataset.pwned=2">'  # a class label, likewise


def client_python() -> Path:
    """The Python of .venv-clients-*, where the third-party clients of
    tests/clients-requirements.txt are installed."""
    return requirements_venv(ROOT / "tests" / "clients-requirements.txt", "clients")


def showcase_models(target: Path) -> Path:
    """A models directory of the shipped models, a text model in two versions (reviews 1.0.0
    and 2.0.0, texts alone) and one whose category and class are markup (xss)."""
    shutil.copytree(ROOT / "models", target)
    good = ["great film", "loved it", "wonderful acting", "a joy to watch"]
    bad = ["awful film", "hated it", "terrible acting", "a bore to watch"]
    texts, labels = good * 3 + bad * 3, ["positive"] * 12 + ["negative"] * 12
    for version, c in (("1.0.0", 1.0), ("2.0.0", 10.0)):
        model = make_pipeline(TfidfVectorizer(), LogisticRegression(C=c)).fit(texts, labels)
        save_model(model, name="reviews", version=version, out_dir=target,
                   example=pandas.DataFrame({"review": texts}), labels=labels,
                   texts_alone=True)
    frame = pandas.DataFrame({"colour": [XSS, "plain"] * 10,
                              "size": [float(i) if i % 4 else numpy.nan for i in range(20)]})
    answers = [XSS_CLASS if colour == XSS else "ok" for colour in frame["colour"]]
    model = make_pipeline(ColumnTransformer([
        ("colour", OneHotEncoder(handle_unknown="ignore"), ["colour"]),
        ("size", SimpleImputer(), ["size"])]), LogisticRegression()).fit(frame, answers)
    save_model(model, name="xss", version="1.0.0", out_dir=target, example=frame,
               labels=answers)
    return target
