"""Reload without a restart: `kill -HUP` of `python serve.py` under load serves the models
directory as it is now, with no failed request while the workers are replaced."""

import json
import os
import shutil
import signal
import socket
import threading
import time

import pandas
import pytest
import requests
from helpers import GOOD_ROW, children, start_serve, workers
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from modelfly.card import save_model

CONCURRENCY, REQUESTS_EACH, DEADLINE = 16, 250, 120  # 4,000 requests, bounded in time


def load(url: str, results: list, stop: threading.Event) -> None:
    with requests.Session() as session:
        for _ in range(REQUESTS_EACH):
            if stop.is_set():
                return
            try:
                answer = session.post(url + "/predict", json={"features": GOOD_ROW}, timeout=30)
                results.append(answer.status_code)
            except requests.RequestException as error:
                results.append(type(error).__name__)


@pytest.mark.load
def test_hup_under_load_serves_the_new_directory_and_fails_nothing(models_copy, tmp_path):
    server = start_serve(tmp_path, {"MODELFLY_MODELS_DIR": str(models_copy)})
    results: list = []
    stop = threading.Event()
    callers = [threading.Thread(target=load, args=(server.url, results, stop))
               for _ in range(CONCURRENCY)]
    try:
        before = set(workers(server))
        for caller in callers:
            caller.start()
        while len(results) < 500:
            time.sleep(0.05)
        # while the load runs: a new iris version, a new model, a model removed
        iris = load_iris()
        frame = pandas.DataFrame(iris.data, columns=["sepal_length", "sepal_width",
                                                     "petal_length", "petal_width"])
        new = LogisticRegression(C=0.05, max_iter=1000).fit(frame, iris.target_names[
            iris.target])
        save_model(new, name="iris", version="2.0.0", out_dir=models_copy, example=frame[::10])
        save_model(new, name="blossom", version="1.0.0", out_dir=models_copy,
                   example=frame[::10])
        for suffix in (".json", ".joblib"):
            (models_copy / f"diabetes{suffix}").unlink()
        os.kill(server.process.pid, signal.SIGHUP)
        started = time.monotonic()
        while set(workers(server)) & before and time.monotonic() - started < 60:
            time.sleep(0.2)
        assert not set(workers(server)) & before, "the workers were not replaced"
        during = len(results)
        assert during < CONCURRENCY * REQUESTS_EACH  # the load went on through the reload
        for caller in callers:
            caller.join(timeout=DEADLINE)
        assert len(results) == CONCURRENCY * REQUESTS_EACH
        assert set(results) == {200}, {r: results.count(r) for r in set(results)}
        # every worker now serves the directory as it is
        for _ in range(20):
            answer = requests.post(server.url + "/predict", json={"features": GOOD_ROW},
                                   timeout=10).json()
            assert answer["version"] == "2.0.0"
            assert answer["predictions"] == new.predict(
                pandas.DataFrame([GOOD_ROW], columns=frame.columns)).tolist()
            assert requests.post(server.url + "/predict", timeout=10, json={
                "model": "blossom", "features": GOOD_ROW}).status_code == 200
            gone = requests.post(server.url + "/predict", timeout=10, json={
                "model": "diabetes", "features": [0.0] * 10})
            assert gone.status_code == 404
            assert gone.json()["error"].endswith("available models: blossom, iris, penguins")
        ready = requests.get(server.url + "/ready", timeout=10).json()
        assert ready == {"status": "ready", "model": "iris", "version": "2.0.0"}
    finally:
        stop.set()
        server.stop()
        shutil.rmtree(models_copy, ignore_errors=True)


def test_a_connection_the_old_worker_accepted_gets_its_first_request_answered(tmp_path):
    """A client connects, the workers are replaced before it sends: its request is answered
    (by the old worker, which waits for it), not cut off with the connection."""
    server = start_serve(tmp_path, {"WEB_CONCURRENCY": "1"})
    try:
        [old] = workers(server, count=1)
        body = json.dumps({"features": GOOD_ROW}).encode()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as client:
            time.sleep(0.3)  # accepted by the one worker there is
            os.kill(server.process.pid, signal.SIGHUP)
            started = time.monotonic()
            while children(server.process.pid) == [old] and time.monotonic() - started < 30:
                time.sleep(0.02)
            time.sleep(0.5)  # the old worker has been told to stop and has stopped listening
            assert old in children(server.process.pid)
            client.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: "
                           b"application/json\r\nContent-Length: %d\r\n\r\n%s"
                           % (len(body), body))
            answer = b""
            while chunk := client.recv(65536):
                answer += chunk
        head, _, text = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), answer
        assert b"\r\nConnection: close" in head  # the stopping worker's last answer
        assert json.loads(text)["predictions"] == ["virginica"]
    finally:
        server.stop()
