"""`python -m client` end to end against the real Firefly CLI, exit codes included."""

import csv
import io
import json
import subprocess
import sys
import time

import pytest
from helpers import GOOD_ROW, ROOT, SilentServer, free_port, start_firefly

from predict import info, predict


def cli(*args: str, stdin: str | None = None, env: dict | None = None):
    return subprocess.run([sys.executable, "-m", "client", *args], input=stdin, cwd=ROOT,
                          capture_output=True, text=True, timeout=60, env=env)


@pytest.fixture(scope="module")
def url(firefly_cli):
    return firefly_cli.url


def test_predict_one_row_of_values(url):
    done = cli("--url", url, "predict", "5.9", "3.0", "5.1", "1.8")
    assert done.returncode == 0 and json.loads(done.stdout) == predict(GOOD_ROW)


def test_predict_json_records_for_another_model(url):
    record = {"island": "Dream", "sex": None, "bill_length_mm": 50.0, "bill_depth_mm": 19.5,
              "flipper_length_mm": 196.0, "body_mass_g": 3900}
    done = cli("--url", url, "predict", "--model", "penguins", "--json", json.dumps([record]))
    assert done.returncode == 0 and json.loads(done.stdout) == predict([record], "penguins")


def test_csv_file_in_csv_out_in_batches_with_progress(url, tmp_path):
    rows = [[4.3 + (i % 36) / 10, 2.0 + (i % 24) / 10, 1.0 + (i % 59) / 10, 0.1 + (i % 25) / 10]
            for i in range(250)]
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    path = tmp_path / "rows.csv"
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(names)
        writer.writerows(rows)
    done = cli("--url", url, "predict", "--input", str(path), "--batch-size", "100",
               "--output", "csv")
    assert done.returncode == 0, done.stderr
    answers = list(csv.DictReader(io.StringIO(done.stdout)))
    expected = predict(rows)
    assert [a["prediction"] for a in answers] == expected["predictions"]
    assert float(answers[7]["p_setosa"]) == pytest.approx(expected["probabilities"][7]["setosa"])
    assert "250/250" in done.stderr  # the progress bar, on stderr only


def test_json_lines_from_stdin_to_json_lines(url):
    rows = [GOOD_ROW, [5.1, 3.5, 1.4, 0.2], [6.0, 2.7, 4.1, 1.3]]
    done = cli("--url", url, "predict", "--input", "-",
               stdin="".join(json.dumps(row) + "\n" for row in rows))
    assert done.returncode == 0
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    expected = predict(rows)
    assert [line["prediction"] for line in lines] == expected["predictions"]
    assert [line["probabilities"] for line in lines] == expected["probabilities"]
    assert done.stderr == ""  # small input: no progress bar


def test_csv_from_stdin_with_missing_values(url):
    text = ("island,sex,bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g\n"
            "Dream,,50.0,19.5,,3900\n")
    done = cli("--url", url, "predict", "--model", "penguins", "--input", "-",
               "--input-format", "csv", stdin=text)
    assert done.returncode == 0, done.stderr
    record = {"island": "Dream", "sex": None, "bill_length_mm": 50.0, "bill_depth_mm": 19.5,
              "flipper_length_mm": None, "body_mass_g": 3900.0}
    assert json.loads(done.stdout)["prediction"] == predict(record, "penguins")["predictions"][0]


def test_info_and_health(url):
    assert json.loads(cli("--url", url, "info", "--model", "diabetes").stdout) == info("diabetes")
    assert json.loads(cli("--url", url, "health").stdout)["status"] == "ok"


def test_url_and_token_from_the_environment(tmp_path):
    server = start_firefly(tmp_path, "-c", "firefly.yml", "--token", "s3cret")
    try:
        import os

        env = {**os.environ, "MODELFLY_URL": server.url, "MODELFLY_TOKEN": "s3cret"}
        assert cli("health", env=env).returncode == 0
        done = cli("health", env={**env, "MODELFLY_TOKEN": "wrong"})
        assert done.returncode == 4 and "403" in done.stderr
        assert cli("--token", "s3cret", "health", env={**env, "MODELFLY_TOKEN": ""}).returncode == 0
    finally:
        server.stop()


def test_server_options_go_before_or_after_every_command(tmp_path):
    server = start_firefly(tmp_path, "-c", "firefly.yml", "--token", "s3cret")
    after = ["--url", server.url, "--token", "s3cret", "--timeout", "5", "--retries", "0"]
    try:
        done = cli("predict", "5.9", "3.0", "5.1", "1.8", *after)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == predict(GOOD_ROW)
        done = cli("info", "--model", "diabetes", *after)
        assert done.returncode == 0 and json.loads(done.stdout) == info("diabetes")
        assert json.loads(cli("health", *after).stdout)["status"] == "ok"
        # given on both sides, the one after the command wins
        unreachable = f"http://127.0.0.1:{free_port()}"
        done = cli("--url", unreachable, "--token", "wrong", "health", *after)
        assert done.returncode == 0, done.stderr
        done = cli("--url", server.url, "--token", "s3cret", "health", "--token", "wrong")
        assert done.returncode == 4 and "403" in done.stderr
    finally:
        server.stop()


def test_timeout_and_retries_after_the_command_apply():
    silent = SilentServer()
    try:
        started = time.monotonic()
        done = cli("health", "--url", silent.url, "--timeout", "0.5", "--retries", "1")
        elapsed = time.monotonic() - started
        assert done.returncode == 5 and "no answer within 0.5 s" in done.stderr
        assert 1.0 <= elapsed < 1.0 + 5, elapsed  # two attempts of 0.5 s, plus the start
    finally:
        silent.stop()


def test_help_lists_the_server_options_for_each_command():
    for args in ([], ["predict"], ["info"], ["health"]):
        done = cli(*args, "--help")
        assert done.returncode == 0
        assert "server options (before or after the command)" in done.stdout
        for option in ("--url", "--token", "--timeout", "--retries"):
            assert option in done.stdout
        assert "SUPPRESS" not in done.stdout


@pytest.mark.parametrize("args, code, message", [
    (["predict", "1", "2", "3"], 3, "row 0 has 3 value(s); expected 4"),
    (["predict", "--model", "tulips", "1", "2", "3", "4"], 3, "unknown model"),
    (["predict", "--json", "[1, 2"], 2, "error:"),
    (["predict", "--input", "/nonexistent/rows.csv"], 2, "No such file"),
    (["predict"], 2, "exactly one of"),
    (["predict", "1", "--json", "[1]"], 2, "exactly one of"),
    (["predict", "one"], 2, "invalid float value"),
    (["frobnicate"], 2, "invalid choice"),
])
def test_exit_codes(url, args, code, message):
    done = cli("--url", url, *args)
    assert done.returncode == code and message in done.stderr and done.stdout == ""


def test_exit_code_unreachable():
    done = cli("--url", f"http://127.0.0.1:{free_port()}", "--retries", "0", "health")
    assert done.returncode == 5 and "connection refused" in done.stderr


def test_exit_code_server_fault(tmp_path):
    server = start_firefly(tmp_path, "-c", "firefly.yml", env={"MODELFLY_MAX_ROWS": "lots"})
    try:
        done = cli("--url", server.url, "predict", "5.9", "3.0", "5.1", "1.8")
        assert done.returncode == 6 and "500" in done.stderr
    finally:
        server.stop()
