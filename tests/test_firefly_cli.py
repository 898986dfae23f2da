"""The real Firefly CLI on a free port: good answers, and every caller mistake refused with a
JSON 4xx that says what was received and expected, the server answering well after each."""

import json
import math
import shutil
import subprocess

import pytest
import requests
from helpers import BAD_REQUESTS, GOOD_ROW, post, start_firefly

from predict import predict


def assert_good_answer(url: str) -> None:
    response = post(url + "/predict", json.dumps({"features": GOOD_ROW}))
    assert response.status_code == 200
    assert response.json() == predict(GOOD_ROW)


@pytest.mark.parametrize("body, status, message", BAD_REQUESTS,
                         ids=[f"{s}-{m[:30]}" for _, s, m in BAD_REQUESTS])
def test_bad_request_is_refused_then_server_still_answers(firefly_cli, body, status, message):
    response = post(firefly_cli.url + "/predict", body)
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("application/json")
    assert message in response.json()["error"]
    assert "Traceback" not in response.text and "/work" not in response.text
    assert_good_answer(firefly_cli.url)


@pytest.mark.parametrize("features, model", [
    (GOOD_ROW, None),
    ([GOOD_ROW, [5.1, 3.5, 1.4, 0.2], [6.0, 2.7, 4.1, 1.3]], None),
    ({"sepal_length": 5.9, "sepal_width": 3.0, "petal_length": 5.1, "petal_width": 1.8}, "iris"),
    ([{"island": "Biscoe", "sex": None, "bill_length_mm": 46.1, "bill_depth_mm": 13.2,
       "flipper_length_mm": 211.0, "body_mass_g": None}], "penguins"),
    ([[0.01] * 10, [-0.02] * 10], "diabetes"),
])
def test_answers_equal_the_in_process_model(firefly_cli, features, model):
    body = {"features": features, **({"model": model} if model else {})}
    response = requests.post(firefly_cli.url + "/predict", json=body, timeout=10)
    assert response.status_code == 200
    answer = response.json()
    expected = predict(features, model)
    assert answer["predictions"] == expected["predictions"]
    for got, want in zip(answer.get("probabilities", []), expected.get("probabilities", []),
                         strict=True):
        assert got.keys() == want.keys()
        assert all(math.isclose(got[k], want[k], rel_tol=1e-12) for k in want)


def test_info_and_health_over_http(firefly_cli):
    info = post(firefly_cli.url + "/info", '{"model": "penguins"}').json()
    assert info["name"] == "penguins" and "sha256" not in info
    health = post(firefly_cli.url + "/health", "{}").json()
    assert health["status"] == "ok" and health["models"] == ["diabetes", "iris", "penguins"]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_as_the_readme_types_it(firefly_cli):
    out = subprocess.run(
        ["curl", "-s", "-X", "POST", f"127.0.0.1:{firefly_cli.port}/predict",
         "-H", "Content-Type: application/json", "-d", '{"features": [5.9, 3.0, 5.1, 1.8]}'],
        capture_output=True, text=True, timeout=10, check=True).stdout
    assert json.loads(out) == predict(GOOD_ROW)


def test_the_bare_function_form_serves_predict(tmp_path):
    server = start_firefly(tmp_path, "predict.predict")
    try:
        assert_good_answer(server.url)
        response = post(server.url + "/predict", '{"features": [1, 2]}')
        assert response.status_code == 400 and "expected 4" in response.json()["error"]
    finally:
        server.stop()


def test_a_tampered_model_is_a_503_without_paths(tmp_path, models_copy):
    (models_copy / "iris.joblib").write_bytes(b"not a pickle")
    server = start_firefly(tmp_path, "-c", "firefly.yml",
                           env={"MODELFLY_MODELS_DIR": str(models_copy)})
    try:
        response = post(server.url + "/predict", json.dumps({"features": GOOD_ROW}))
        assert response.status_code == 503
        assert response.json() == {"error": "model 'iris' 1.0.0 is refused: iris.joblib does "
                                            "not match the sha256 in its card (changed or "
                                            "swapped)"}
        penguin = {"island": "Dream", "sex": "male", "bill_length_mm": 50.0,
                   "bill_depth_mm": 19.5, "flipper_length_mm": 196.0, "body_mass_g": 3900}
        response = post(server.url + "/predict",
                        json.dumps({"features": penguin, "model": "penguins"}))
        assert response.status_code == 200
    finally:
        server.stop()


def test_a_misconfigured_server_says_so_without_details(tmp_path):
    server = start_firefly(tmp_path, "-c", "firefly.yml", env={"MODELFLY_MAX_ROWS": "lots"})
    try:
        response = post(server.url + "/predict", json.dumps({"features": GOOD_ROW}))
        assert response.status_code == 500
        assert response.json() == {"error": "the server is misconfigured; see its log"}
        assert "MODELFLY_MAX_ROWS='lots' must be a positive int" in server.log.read_text()
    finally:
        server.stop()
