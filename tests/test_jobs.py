"""Jobs with the real parts: the production server, `python -m modelfly worker` and huey on
SQLite (the default) or on Debian's redis-server, each a subprocess on loopback."""

import csv
import io
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy
import pandas
import pytest
import requests
from helpers import ROOT, Server, Worker, close_answers, start_serve
from palmerpenguins import load_penguins

from bench.servers import free_port
from client import BadInput, ModelClient, NotFound
from predict import predict

TOKEN = "jobs-test-token"
IRIS_HEADER = "sepal_length,sepal_width,petal_length,petal_width"


def job_env(tmp_path: Path, **extra: str) -> dict:
    return {"MODELFLY_DATA_DIR": str(tmp_path / "data"), "MODELFLY_JOB_CHUNK_ROWS": "10000",
            **extra}


def submit(server: Server, body: bytes | str | None = None, *, json: object = None,
           query: str = "", content_type: str = "text/csv", **headers: str) -> dict:
    answer = (requests.post(f"{server.url}/jobs", json=json, headers=headers, timeout=60)
              if json is not None else
              requests.post(f"{server.url}/jobs{query}", data=body, timeout=60,
                            headers={"Content-Type": content_type, **headers}))
    assert answer.status_code == 202, answer.text
    job = answer.json()
    assert job["status"] == "queued" and job["status_url"] == f"/jobs/{job['job_id']}"
    assert job["result_url"] == f"/jobs/{job['job_id']}/result"
    assert len(job["job_id"]) == 32 and int(job["job_id"], 16) >= 0  # 128 bits, in hex
    return job


def wait_for(server: Server, job_id: str, status: str = "succeeded", seconds: float = 120,
             until=None, **headers: str) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        state = requests.get(f"{server.url}/jobs/{job_id}", headers=headers, timeout=10).json()
        if (until(state) if until else state["status"] == status):
            return state
        assert state["status"] not in ("failed", "cancelled") or state["status"] == status, state
        assert time.monotonic() < deadline, state
        time.sleep(0.05)


def iris_rows(count: int, seed: int = 0) -> list[list[float]]:
    rng = numpy.random.default_rng(seed)
    return rng.uniform([4, 2, 1, 0.1], [8, 4.5, 7, 2.5], size=(count, 4)).round(2).tolist()


def csv_of(frame: pandas.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def penguin_frame(copies: int) -> pandas.DataFrame:
    frame = load_penguins().drop(columns=["species", "year"])
    return pandas.concat([frame] * copies, ignore_index=True)


def expected(features: list, model: str = "iris") -> dict:
    """predict's answer in this process, asked 10,000 rows at a time (its limit)."""
    want = {"model": model, "version": "1.0.0", "predictions": [], "probabilities": []}
    for start in range(0, len(features), 10_000):
        part = predict(features[start:start + 10_000], model)
        want["predictions"] += part["predictions"]
        want["probabilities"] += part["probabilities"]
    return want


def records_of(frame: pandas.DataFrame) -> list[dict]:
    return [{key: None if pandas.isna(value) else value for key, value in row.items()}
            for row in frame.to_dict("records")]


@pytest.fixture(scope="module")
def sqlite_setup(tmp_path_factory) -> Iterator[tuple[Server, Worker, Path]]:
    tmp = tmp_path_factory.mktemp("sqlite-jobs")
    env = job_env(tmp)
    server = start_serve(tmp, env=env)
    worker = Worker(env, tmp / "worker.log", processes=2)
    yield server, worker, tmp
    server.stop()
    assert worker.stop() == 0


def test_a_json_job_answers_what_predict_answers(sqlite_setup):
    server, _, _ = sqlite_setup
    rows = iris_rows(25_000)
    job = submit(server, json={"features": rows})
    state = wait_for(server, job["job_id"])
    assert {key: state[key] for key in ("model", "version", "rows", "rows_done", "error")} == {
        "model": "iris", "version": "1.0.0", "rows": 25_000, "rows_done": 25_000,
        "error": None}
    assert state["created_at"] <= state["started_at"] <= state["finished_at"]
    assert state["finished_at"].endswith("Z")
    answer = requests.get(f"{server.url}/jobs/{job['job_id']}/result", timeout=60)
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "application/json"
    assert close_answers(answer.json(), expected(rows))
    as_csv = requests.get(f"{server.url}/jobs/{job['job_id']}/result",
                          headers={"Accept": "text/csv"}, timeout=60)
    assert as_csv.headers["Content-Type"] == "text/csv; charset=utf-8"
    lines = list(csv.DictReader(io.StringIO(as_csv.text)))
    want = expected(rows)
    assert [line["prediction"] for line in lines] == want["predictions"]
    assert all(abs(float(line[f"p_{label}"]) - p) < 1e-12
               for line, probabilities in zip(lines, want["probabilities"], strict=True)
               for label, p in probabilities.items())


def test_a_csv_job_with_categories_and_gaps_answers_what_predict_answers(sqlite_setup):
    server, _, _ = sqlite_setup
    frame = penguin_frame(100)  # 34,400 rows, gaps included
    job = submit(server, csv_of(frame), query="?model=penguins&version=1.0.0")
    wait_for(server, job["job_id"])
    answer = requests.get(f"{server.url}/jobs/{job['job_id']}/result", timeout=60).json()
    assert close_answers(answer, expected(records_of(frame), "penguins"))


@pytest.mark.parametrize("body, status, message", [
    (b"", 400, "the CSV is empty"),
    (f"{IRIS_HEADER}\n".encode(), 400, "the CSV has a header but no rows"),
    (f"{IRIS_HEADER}\n5.9,3.0,5.1,1.8\n5.9,3.0\n".encode(), 400,
     "line 3 of the CSV has 2 field(s); its header has 4"),
    (f"{IRIS_HEADER}\n5.9,3.0,5.1,1.8\n5.9,wide,5.1,1.8\n".encode(), 400,
     "row 1 (line 3 of the CSV), column 'sepal_width': received \"wide\" (a string); "
     "expected a finite number"),
    (b"sepal_length,sepal_width,petal_length,colour\n5.9,3.0,5.1,1\n", 400,
     "the CSV header has unknown column(s) 'colour' and missing column(s) 'petal_width'"),
    (f"{IRIS_HEADER}\n5.9,3.0,5.1,\xff\n".encode("latin-1"), 400,
     "the CSV is not UTF-8: line 2, byte 62 is 0xff"),
    ("\x18\x7f\u00b3\r\U00080419i".encode(), 400,  # schemathesis' find: a lone CR
     "the CSV header has unknown column(s)"),
])
def test_a_bad_csv_is_refused_at_submission_naming_the_row(sqlite_setup, body, status,
                                                          message):
    server, _, _ = sqlite_setup
    answer = requests.post(f"{server.url}/jobs", data=body, timeout=10,
                           headers={"Content-Type": "text/csv"})
    assert answer.status_code == status
    assert message in answer.json()["error"]


def test_what_can_never_work_gets_predicts_own_refusal(sqlite_setup):
    server, _, _ = sqlite_setup
    for body in ({"features": [5.9, 3.0, 5.1]}, {"features": [1, 2, 3, 4], "model": "tulips"},
                 {"features": [1, 2, 3, 4], "version": "9.9.9"}):
        job = requests.post(f"{server.url}/jobs", json=body, timeout=10)
        direct = requests.post(f"{server.url}/predict", json=body, timeout=10)
        assert (job.status_code, job.json()) == (direct.status_code, direct.json())
        assert job.status_code in (400, 404)
    assert requests.post(f"{server.url}/jobs", json={"features": [1, 2, 3, 4], "colour": 1},
                         timeout=10).status_code == 422
    assert requests.post(f"{server.url}/jobs", data="x", timeout=10,
                         headers={"Content-Type": "text/plain"}).status_code == 415
    for bad_id in ("nope", "0" * 32, "0" * 33, "F" * 32, "%2e%2e%2fetc"):
        answer = requests.get(f"{server.url}/jobs/{bad_id}", timeout=10)
        assert answer.status_code == 404 and "no such job" in answer.json()["error"]
    assert requests.put(f"{server.url}/jobs", timeout=10).status_code == 405


def test_limits_of_their_own(tmp_path):
    env = job_env(tmp_path, MODELFLY_JOB_MAX_ROWS="100", MODELFLY_JOB_MAX_BODY_BYTES="4000")
    server = start_serve(tmp_path, env=env)
    try:
        # a queue that cannot be read leaves the other metrics be
        (tmp_path / "down").mkdir()
        down = start_serve(tmp_path / "down", env={
            "MODELFLY_QUEUE_URL": f"redis://127.0.0.1:{free_port()}/0"})
        try:
            requests.get(f"{down.url}/health", timeout=10)
            metrics = requests.get(f"{down.url}/metrics", timeout=30)
            assert metrics.status_code == 200 and "modelfly_http_requests_total" in metrics.text
            assert "modelfly_jobs_submitted" not in metrics.text
        finally:
            down.stop()
        too_many = requests.post(f"{server.url}/jobs", json={"features": iris_rows(101)},
                                 timeout=10)
        assert too_many.status_code == 413 and "at most 100" in too_many.json()["error"]
        body = f"{IRIS_HEADER}\n" + "5.9,3.0,5.1,1.8\n" * 300
        too_big = requests.post(f"{server.url}/jobs", data=body, timeout=10,
                                headers={"Content-Type": "text/csv"})
        assert too_big.status_code == 413
        assert "MODELFLY_JOB_MAX_BODY_BYTES" in too_big.json()["error"]
        # /predict keeps its own limit (1 MiB): a job's limit is not a predict's
        ok = requests.post(f"{server.url}/jobs", json={"features": iris_rows(100)}, timeout=10)
        assert ok.status_code == 202
        pending = requests.get(f"{server.url}{ok.json()['result_url']}", timeout=10)
        assert pending.status_code == 409 and "queued" in pending.json()["error"]
    finally:
        server.stop()


def test_cancel_stops_a_job_and_deletes_its_data_and_a_short_ttl_expires_it(tmp_path):
    ttl = 10
    env = job_env(tmp_path, MODELFLY_JOB_TTL=str(ttl))
    server = start_serve(tmp_path, env=env)
    try:
        submitted_at = time.monotonic()
        queued = submit(server, json={"features": iris_rows(50)})  # no worker yet
        cancelled = requests.delete(f"{server.url}/jobs/{queued['job_id']}", timeout=10)
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        done = submit(server, json={"features": iris_rows(50, seed=1)})
        worker = Worker(env, tmp_path / "worker.log")
        try:
            wait_for(server, done["job_id"])
            state = requests.get(f"{server.url}/jobs/{queued['job_id']}", timeout=10).json()
            assert state["status"] == "cancelled" and state["rows_done"] == 0
            assert requests.get(f"{server.url}/jobs/{queued['job_id']}/result",
                                timeout=10).status_code == 409
            time.sleep(max(0.0, submitted_at + ttl + 0.5 - time.monotonic()))  # past the TTL
            for job in (queued, done):
                assert requests.get(f"{server.url}/jobs/{job['job_id']}",
                                    timeout=10).status_code == 404
                assert requests.get(f"{server.url}/jobs/{job['job_id']}/result",
                                    timeout=10).status_code == 404
        finally:
            assert worker.stop() == 0
    finally:
        server.stop()


def test_a_killed_worker_loses_nothing_and_sigterm_hands_the_job_back(tmp_path):
    env = job_env(tmp_path, MODELFLY_JOB_CHUNK_ROWS="2000", MODELFLY_JOB_STALE_SECONDS="2")
    server = start_serve(tmp_path, env=env)
    frame = penguin_frame(582)  # 200,208 rows, in 101 chunks
    try:
        job = submit(server, csv_of(frame), query="?model=penguins")
        first = Worker(env, tmp_path / "first.log")
        wait_for(server, job["job_id"], until=lambda s: s["rows_done"] >= 20_000)
        first.kill()  # SIGKILL, mid-job: its task is lost with it
        killed_at = wait_for(server, job["job_id"], until=lambda s: True)["rows_done"]
        assert killed_at < len(frame)
        second = Worker(env, tmp_path / "second.log")
        running = wait_for(server, job["job_id"],
                           until=lambda s: s["rows_done"] > killed_at + 10_000, seconds=60)
        assert running["status"] == "running"
        assert second.stop() == 0  # SIGTERM: the chunk in hand, then the job handed back
        handed_back = wait_for(server, job["job_id"], until=lambda s: True)
        assert handed_back["status"] == "queued" and handed_back["rows_done"] < len(frame)
        assert "handed back to the queue" in (tmp_path / "second.log").read_text()
        server.stop()  # and the server restarts in the middle of the job
        server = start_serve(tmp_path, env=env)
        third = Worker(env, tmp_path / "third.log")
        try:
            wait_for(server, job["job_id"], seconds=120)
        finally:
            assert third.stop() == 0
        answer = requests.get(f"{server.url}/jobs/{job['job_id']}/result", timeout=120).json()
        assert close_answers(answer, expected(records_of(frame), "penguins"))
    finally:
        server.stop()


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory) -> Iterator[str]:
    port, tmp = free_port(), tmp_path_factory.mktemp("redis")
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no", "--dir", str(tmp)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True,
                         text=True).stdout.strip() != "PONG":
        assert time.monotonic() < deadline and redis.poll() is None, "redis did not start"
        time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    redis.terminate()
    redis.wait(timeout=10)


def test_on_redis_any_server_answers_for_a_job_another_took(tmp_path, redis_url):
    env = job_env(tmp_path, MODELFLY_QUEUE_URL=redis_url, MODELFLY_TOKEN=TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
    one, two = (start_serve(tmp_path / name, env=env) for name in ("one", "two"))
    worker = Worker(env, tmp_path / "worker.log", processes=2)
    try:
        assert requests.post(f"{one.url}/jobs", json={"features": iris_rows(5)},
                             timeout=10).status_code == 401  # the job routes need the token
        rows = iris_rows(30_000, seed=2)
        job = submit(one, json={"features": rows}, **auth)
        wait_for(two, job["job_id"], **auth)
        answer = requests.get(f"{two.url}/jobs/{job['job_id']}/result", headers=auth,
                              timeout=60).json()
        assert close_answers(answer, expected(rows))
        assert not (tmp_path / "data").exists()  # nothing of it on SQLite
        cancelled = submit(two, json={"features": iris_rows(10)}, **auth)  # maybe run already
        requests.delete(f"{two.url}/jobs/{cancelled['job_id']}", headers=auth, timeout=10)
        for server in (one, two):  # the queue's totals, the same from either server
            metrics = requests.get(f"{server.url}/metrics", headers=auth, timeout=10).text
            values = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
                      for line in metrics.splitlines() if line.startswith("modelfly_job")}
            assert values["modelfly_jobs_submitted_total"] == 2
            assert values['modelfly_jobs_finished_total{status="succeeded"}'] + values[
                'modelfly_jobs_finished_total{status="cancelled"}'] == 2
            assert values["modelfly_jobs_queued"] == 0
            assert values["modelfly_job_rows_predicted_total"] in (30_000, 30_010)
        lines = [json.loads(line) for line in (tmp_path / "worker.log").read_text().splitlines()
                 if line.startswith("{")]
        assert any(line["logger"] == "modelfly" and "succeeded after 30000 of 30000 rows"
                   in line["message"] for line in lines)
    finally:
        one.stop()
        two.stop()
        assert worker.stop() == 0


def test_the_client_submits_waits_and_cancels(sqlite_setup):
    server, _, _ = sqlite_setup
    rows = iris_rows(12_000, seed=3)
    with ModelClient(server.url) as client:
        job = client.submit(rows)
        seen = []
        answer = job.wait(timeout=120, progress=seen.append)
        assert close_answers(answer, expected(rows))
        assert seen[-1]["status"] == "succeeded" and seen[-1]["rows_done"] == 12_000
        assert job.result() == answer and client.job(job.id).status()["rows"] == 12_000
        # a job the model cannot answer fails, naming the row, as predict would
        far = [[0.0] * 10] * 20_001
        far[15_003] = [1e308] * 10
        failing = client.submit(far, model="diabetes")
        with pytest.raises(BadInput, match=r"failed: row 15003: model 'diabetes' has no "
                                           r"finite answer"):
            failing.wait(timeout=120)
        with pytest.raises(BadInput) as refused:
            client.submit([1, 2, 3])
        assert refused.value.status == 400 and "expected 4" in refused.value.message
        with pytest.raises(NotFound):
            client.job("0" * 32).status()
        big = client.submit(iris_rows(100_000, seed=4))
        big.cancel()
        with pytest.raises(BadInput, match="cancelled"):
            big.wait(timeout=30)


def test_the_command_line_submits_a_file_and_prints_the_answers(sqlite_setup, tmp_path):
    server, _, _ = sqlite_setup
    rows = iris_rows(3_000, seed=5)
    source = tmp_path / "rows.csv"
    source.write_text(IRIS_HEADER + "\n" + "".join(",".join(map(str, row)) + "\n"
                                                   for row in rows))
    cli = [sys.executable, "-m", "client", "--url", server.url]
    submitted = subprocess.run([*cli, "submit", "--input", str(source)], cwd=ROOT,
                               capture_output=True, text=True, timeout=60)
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    assert len(job_id) == 32
    waited = subprocess.run([*cli, "job", job_id, "--wait", "--output", "csv"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert waited.returncode == 0, waited.stderr
    lines = list(csv.DictReader(io.StringIO(waited.stdout)))
    assert [line["prediction"] for line in lines] == expected(rows)["predictions"]
    assert "3000/3000" in waited.stderr  # the progress bar
    status = subprocess.run([*cli, "job", job_id], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert '"status": "succeeded"' in status.stdout
    missing = subprocess.run([*cli, "job", "0" * 32], cwd=ROOT, capture_output=True,
                             text=True, timeout=60)
    assert missing.returncode == 3 and "no such job" in missing.stderr


def test_a_job_leaves_the_queue_once_when_a_cancel_and_the_worker_take_it_together(tmp_path):
    # Both read the job queued; the worker starts it, then the cancel goes through: the
    # count of queued jobs goes down once (it went to -1, found by the Redis test above).
    from modelfly.jobs import Jobs
    from modelfly.registry import Registry
    from modelfly.settings import JobSettings, Settings

    jobs = Jobs(JobSettings(data_dir=tmp_path), Registry(Settings()))
    job_id = jobs.submit(iris_rows(3))["job_id"]
    seen_by_cancel = jobs.status(job_id)
    assert seen_by_cancel["status"] == "queued" and jobs.counts()["queued"] == 1
    worker_side, cancel_side = jobs._read(job_id), jobs._read(job_id)
    jobs._moved(worker_side, "running")
    jobs._moved(cancel_side, "cancelled")
    counts = jobs.counts()
    assert counts["queued"] == 0 and counts["finished"]["cancelled"] == 1
