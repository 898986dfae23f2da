"""The Open Inference Protocol (V2) routes of the production server: tritonclient (a client
nobody here wrote, in a virtualenv of its own) and raw V2 JSON through requests, answers equal
to the estimator's in process; the bad-input corpus in V2 form answered with a 4xx that names
the problem, never a 5xx."""

import json
import math
import subprocess

import numpy
import pytest
import requests
from helpers import GOOD_ROW, ROOT, client_python, serve_models
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelfly.features import to_rows
from modelfly.registry import Registry
from modelfly.settings import Settings
from predict import predict
from server.tensors import bytes_elements

PENGUINS = {"island": ["Dream", "Biscoe", "Torgersen"], "sex": ["male", "female", "male"],
            "bill_length_mm": [50.0, 46.1, 39.0], "bill_depth_mm": [19.5, 13.2, 18.0],
            "flipper_length_mm": [196.0, 211.0, None], "body_mass_g": [3900.0, 4500.0, 3700.0]}
ROWS = {"iris": [GOOD_ROW, [5.1, 3.5, 1.4, 0.2], [6.0, 2.7, 4.1, 1.3]],
        "diabetes": [[0.01] * 10, [-0.02] * 10]}


def records() -> list[dict]:
    return [dict(zip(PENGUINS, values, strict=True)) for values in zip(*PENGUINS.values(),
                                                                        strict=True)]


def expected(model: str) -> dict:
    """The in-process answer as V2 outputs: predict, and predict_proba in the classes' order."""
    answer = predict(records() if model == "penguins" else ROWS[model], model)
    outputs = {"predict": answer["predictions"]}
    if "probabilities" in answer:
        classes = list(answer["probabilities"][0])
        outputs["predict_proba"] = [[row[c] for c in classes] for row in answer["probabilities"]]
    return outputs


def close(got, want) -> bool:
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(
            close(g, w) for g, w in zip(got, want, strict=True))
    if isinstance(want, float):
        return math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-15)
    return got == want


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = serve_models(tmp_path_factory.mktemp("v2"), ROOT / "models")
    yield running
    running.stop()


def third_party_calls(script: str, address: str, inputs: dict, tmp_path) -> dict:
    """What tests/<script> (run in the clients' virtualenv) got from our server."""
    (tmp_path / "inputs.json").write_text(json.dumps(inputs))
    done = subprocess.run([str(client_python()), str(ROOT / "tests" / script), address,
                           str(tmp_path / "inputs.json")], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def assert_answers_are_predicts(infer: dict) -> None:
    """Each model answered in binary and JSON, all outputs and each alone, as predict() does
    in process; the request id echoed; an output not asked for not sent."""
    assert set(infer) == {"iris", "diabetes", "penguins"}
    for model, calls in infer.items():
        want = expected(model)
        assert len(calls) == 2 * (1 + len(want)), model  # binary and JSON; all, then each
        for key, answer in calls.items():
            asked = key.split()[1]
            assert answer["id"] == f"{model}-{key.startswith('binary')}"
            for name, values in want.items():
                if asked in ("all", name):
                    assert close(answer[name], values), (model, key, name)
                else:
                    assert answer.get(name) is None, (model, key, name)  # not sent


def test_tritonclient_speaks_to_us(server, tmp_path):
    got = third_party_calls("triton_calls.py", server.url.removeprefix("http://"), {
        "iris": {"rows": ROWS["iris"]}, "diabetes": {"rows": ROWS["diabetes"]},
        "penguins": {"columns": PENGUINS}}, tmp_path)
    assert got["live"] is True and got["ready"] is True
    assert got["model_ready"] == {"iris": [True, True], "diabetes": [True, True],
                                  "penguins": [True, True]}
    iris = got["metadata"]["iris"]
    assert iris["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
    assert [(o["name"], o["datatype"], o["shape"]) for o in iris["outputs"]] == [
        ("predict", "BYTES", [-1]), ("predict_proba", "FP64", [-1, 3])]
    assert [o["name"] for o in got["metadata"]["diabetes"]["outputs"]] == ["predict"]
    assert {i["name"] for i in got["metadata"]["penguins"]["inputs"]} == set(PENGUINS)
    assert_answers_are_predicts(got["infer"])
    assert got["refused"]["status"] == "400"
    assert "model 'iris' takes FP64, FP32 or INT64 [rows, 4]" in got["refused"]["message"]


def test_kserves_own_client_speaks_to_us(server, tmp_path):
    """KServe's InferenceRESTClient also names the model in the request's body."""
    outputs = {model: list(expected(model)) for model in ("iris", "diabetes", "penguins")}
    got = third_party_calls("kserve_calls.py", server.url, {
        "iris": {"rows": ROWS["iris"], "outputs": outputs["iris"]},
        "diabetes": {"rows": ROWS["diabetes"], "outputs": outputs["diabetes"]},
        "penguins": {"columns": PENGUINS, "outputs": outputs["penguins"]}}, tmp_path)
    assert got["live"] is True and got["ready"] is True
    assert got["model_ready"] == {"iris": True, "diabetes": True, "penguins": True}
    assert_answers_are_predicts(got["infer"])
    assert got["refused"]["status"] == 400
    assert "model 'iris' takes FP64, FP32 or INT64 [rows, 4]" in got["refused"]["message"]


def infer(url: str, body: dict | bytes, model: str = "iris", **headers: str) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body)
    return requests.post(f"{url}/v2/models/{model}/infer", data=data, timeout=10,
                         headers={"Content-Type": "application/json", **headers})


def test_raw_v2_json_through_requests(server):
    body = {"id": "req-1", "inputs": [{"name": "rows", "shape": [3, 4], "datatype": "FP64",
                                       "data": [x for row in ROWS["iris"] for x in row]}]}
    answer = infer(server.url, body)
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "application/json"
    got = answer.json()
    assert (got["id"], got["model_name"], got["model_version"]) == ("req-1", "iris", "1.0.0")
    outputs = {o["name"]: o for o in got["outputs"]}
    want = expected("iris")
    assert outputs["predict"]["data"] == want["predict"]
    assert outputs["predict_proba"]["shape"] == [3, 3]
    assert close(numpy.array(outputs["predict_proba"]["data"]).reshape(3, 3).tolist(),
                 want["predict_proba"])
    assert outputs["predict_proba"]["parameters"]["classes"] == ["setosa", "versicolor",
                                                                 "virginica"]
    # nested data, FP32 and INT64, versions in the path, one output asked for
    for datatype, rows in (("FP32", ROWS["iris"]), ("INT64", [[6, 3, 5, 2]])):
        answer = requests.post(f"{server.url}/v2/models/iris/versions/1.0.0/infer", json={
            "inputs": [{"name": "x", "shape": [len(rows), 4], "datatype": datatype,
                        "data": rows}], "outputs": [{"name": "predict"}]}, timeout=10)
        assert answer.status_code == 200, answer.text
        [output] = answer.json()["outputs"]
        assert output["name"] == "predict"
        as_sent = numpy.array(rows, dtype=numpy.float32 if datatype == "FP32" else numpy.int64)
        assert output["data"] == predict(as_sent.astype(float).tolist())["predictions"]


def test_binary_answers_and_records_through_requests(server):
    rows = numpy.array(ROWS["iris"], dtype="<f8").tobytes()
    header = json.dumps({"inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP64",
                                     "parameters": {"binary_data_size": len(rows)}}],
                         "parameters": {"binary_data_output": True}}).encode()
    answer = infer(server.url, header + rows, **{"Inference-Header-Content-Length":
                                                 str(len(header))})
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/octet-stream"
    length = int(answer.headers["Inference-Header-Content-Length"])
    head, data = json.loads(answer.content[:length]), answer.content[length:]
    [labels, proba] = head["outputs"]
    assert labels["datatype"] == "BYTES" and proba["datatype"] == "FP64"
    raw = data[:labels["parameters"]["binary_data_size"]]
    texts, at = [], 0
    while at < len(raw):
        size = int.from_bytes(raw[at:at + 4], "little")
        texts.append(raw[at + 4:at + 4 + size].decode())
        at += 4 + size
    assert texts == expected("iris")["predict"]
    matrix = numpy.frombuffer(data[len(raw):], dtype="<f8").reshape(3, 3)
    assert close(matrix.tolist(), expected("iris")["predict_proba"])
    # records, JSON: a tensor per column, null for a missing value
    columns = [{"name": name, "shape": [3], "datatype": "BYTES" if isinstance(v[0], str)
                else "FP64", "data": v} for name, v in PENGUINS.items()]
    answer = infer(server.url, {"inputs": columns, "parameters": {"content_type": "pd"}},
                   "penguins")
    assert answer.status_code == 200, answer.text
    outputs = {o["name"]: o["data"] for o in answer.json()["outputs"]}
    assert outputs["predict"] == expected("penguins")["predict"]


def test_metadata_health_and_errors_of_the_protocol(server):
    assert requests.get(server.url + "/v2", timeout=10).json() == {
        "name": "modelfly", "version": "1.0.0", "extensions": ["binary_tensor_data"]}
    assert requests.get(server.url + "/v2/health/live", timeout=10).json() == {"live": True}
    assert requests.get(server.url + "/v2/health/ready", timeout=10).json() == {"ready": True}
    ready = requests.get(server.url + "/v2/models/penguins/versions/1.0.0/ready", timeout=10)
    assert ready.json() == {"name": "penguins", "ready": True}
    for path, status, message in (
            ("/v2/models/tulips", 404, 'unknown model "tulips" (a string); available models'),
            ("/v2/models/iris/versions/9.9.9", 404, 'unknown version "9.9.9" (a string) of model'),
            ("/v2/models/iris/infer", 405, "takes POST, received GET"),
            ("/v2/models/iris/versions", 404, "no such V2 path"),
            ("/v2/nothing", 404, "no such V2 path")):
        answer = requests.get(server.url + path, timeout=10)
        assert answer.status_code == status and message in answer.json()["error"], path
    metrics = requests.get(server.url + "/metrics", timeout=10).text
    assert 'route="/v2/models/{name}/infer"' in metrics


def v2(name: str, shape: list, datatype: str, data: list, **extra) -> dict:
    return {"inputs": [{"name": name, "shape": shape, "datatype": datatype, "data": data}],
            **extra}


BAD_V2 = [
    # (body, headers, model, status, part of the message)
    (v2("x", [1, 3], "FP64", [5.9, 3.0, 5.1]), {}, "iris", 400,
     "takes FP64, FP32 or INT64 [rows, 4]"),
    (v2("x", [1, 4], "FP64", [5.9, 3.0, 5.1]), {}, "iris", 400,
     "3 values for shape [1, 4], which needs 4"),
    (v2("x", [1, 4], "FP16", [5.9, 3.0, 5.1, 1.8]), {}, "iris", 400, "datatype 'FP16'"),
    (v2("x", [1, 4], "BYTES", ["a", "b", "c", "d"]), {}, "iris", 400, "is BYTES [1, 4]"),
    (v2("x", [1, 4], "FP64", ["wide", 3.0, 5.1, 1.8]), {}, "iris", 400, "must be numbers"),
    (v2("x", [1, 4], "INT64", [5.5, 3, 5, 1]), {}, "iris", 400, "must be whole numbers"),
    (v2("x", [1, 4], "FP64", [None, 3.0, 5.1, 1.8]), {}, "iris", 400,
     "does not accept missing values"),
    (v2("x", "1,4", "FP64", [5.9, 3.0, 5.1, 1.8]), {}, "iris", 400, "shape must be a list"),
    (v2("x", [1, 4], "FP64", [5.9, 3.0, 5.1, 1.8], outputs=[{"name": "scores"}]), {}, "iris",
     400, "unknown output 'scores'; this model has predict, predict_proba"),
    (v2("x", [1, 4], "FP64", [5.9, 3.0, 5.1, 1.8], parameters={"temperature": 2}), {},
     "iris", 400, "unknown request parameter(s) 'temperature'"),
    ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4],
                  "parameters": {"scale": 2}}]}, {}, "iris", 400, "unknown parameter(s)"),
    (v2("x", [1, 4], "FP64", [5.9, 3.0, 5.1, 1.8], colour="red"), {}, "iris", 400,
     "unknown request key(s) 'colour'"),
    (v2("x", [1, 4], "FP64", [5.9, 3.0, 5.1, 1.8], model_name="penguins"), {}, "iris", 400,
     "the request's model_name is 'penguins', but this path serves 'iris'"),
    (v2("x", [1, 4], "FP64", [5.9, 3.0, 5.1, 1.8], model_version="9"), {}, "iris", 400,
     "the request's model_version is '9', but this path serves '1.0.0'"),
    ({"inputs": []}, {}, "iris", 400, "inputs must be a non-empty list"),
    (b"[1, 2", {}, "iris", 400, "the request is not JSON"),
    (v2("x", [10001, 4], "FP64", [1.0] * 40004), {}, "iris", 413, "received 10001 rows"),
    (json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64",
                             "parameters": {"binary_data_size": 32}}]}).encode() + b"\0" * 8,
     {"Inference-Header-Content-Length": "HEADER"}, "iris", 400,
     "binary_data_size 32 is past the end of the binary data (8 bytes left)"),
    (b"{}", {"Inference-Header-Content-Length": "999"}, "iris", 400,
     "Inference-Header-Content-Length 999 is past the end of the body (2 bytes)"),
    (json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64",
                             "parameters": {"binary_data_size": 24}}]}).encode() + b"\0" * 24,
     {"Inference-Header-Content-Length": "HEADER"}, "iris", 400,
     "24 bytes of binary data for FP64 [1, 4], which needs 32"),
    (v2("island", [1], "BYTES", ["Dream"], parameters={"content_type": "pd"}), {},
     "penguins", 400, "missing sex, bill_length_mm"),
    (v2("x", [1, 6], "FP64", [1.0] * 6), {}, "penguins", 400,
     "takes categories or texts: send one tensor per column"),
]


@pytest.mark.parametrize("body, headers, model, status, message", BAD_V2,
                         ids=[f"{s}-{m[:40]}" for *_, s, m in BAD_V2])
def test_bad_v2_requests_are_refused_with_what_is_wrong(server, body, headers, model, status,
                                                        message):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    if headers.get("Inference-Header-Content-Length") == "HEADER":
        headers = {"Inference-Header-Content-Length": str(data.index(b"}]}") + 3)}
    answer = infer(server.url, data, model, **headers)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["error"], answer.json()
    assert infer(server.url, v2("x", [1, 4], "FP64", GOOD_ROW)).status_code == 200


def test_v2_needs_the_token_but_its_health_does_not(tmp_path):
    running = serve_models(tmp_path, ROOT / "models", MODELFLY_TOKEN="v2-token")
    try:
        assert requests.get(running.url + "/v2/health/ready", timeout=10).status_code == 200
        assert requests.get(running.url + "/v2/models/iris", timeout=10).status_code == 401
        assert infer(running.url, v2("x", [1, 4], "FP64", GOOD_ROW)).status_code == 401
        answer = infer(running.url, v2("x", [1, 4], "FP64", GOOD_ROW),
                       Authorization="Bearer v2-token")
        assert answer.status_code == 200
        assert answer.json()["outputs"][0]["data"] == predict(GOOD_ROW)["predictions"]
    finally:
        running.stop()


def test_a_binary_body_has_its_own_limit(tmp_path):
    running = serve_models(tmp_path, ROOT / "models", MODELFLY_MAX_BINARY_BYTES="4096")
    try:
        rows = numpy.ones((200, 4)).tobytes()  # 6,400 bytes
        header = json.dumps({"inputs": [{"name": "x", "shape": [200, 4], "datatype": "FP64",
                                         "parameters": {"binary_data_size": len(rows)}}]})
        answer = infer(running.url, header.encode() + rows,
                       **{"Inference-Header-Content-Length": str(len(header))})
        assert answer.status_code == 413
        assert "at most 4096 are accepted (MODELFLY_MAX_BINARY_BYTES)" in answer.json()["error"]
    finally:
        running.stop()


@pytest.mark.parametrize("vocabulary", [None, ["bär", "setosa", "virginica"],
                                        ["virginica", "setosa", "bär"], ["setosa"]])
def test_bytes_elements_lay_out_each_label_as_the_extension_says(vocabulary):
    labels = numpy.array(["setosa", "bär", "virginica", "setosa", ""] * 300)[:-1]
    naive = b"".join(len(t).to_bytes(4, "little") + t for t in map(str.encode, labels))
    given = None if vocabulary is None else numpy.array(vocabulary)
    assert bytes_elements(labels, given) == naive


def test_a_model_of_texts_alone_takes_one_bytes_tensor(tmp_path, showcase):
    running = serve_models(tmp_path, showcase)
    texts = ["Please respect each other.", "You are all idiots"]
    try:
        for version in ("1.0.0", "2.0.0"):
            metadata = requests.get(f"{running.url}/v2/models/reviews/versions/{version}",
                                    timeout=10).json()
            assert metadata["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
            answer = requests.post(
                f"{running.url}/v2/models/reviews/versions/{version}/infer", timeout=10,
                json={"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES",
                                  "data": texts}]})
            assert answer.status_code == 200, answer.text
            outputs = {o["name"]: o["data"] for o in answer.json()["outputs"]}
            model = Registry(Settings(models_dir=showcase)).get("reviews", version)
            want = model.answer(to_rows(texts, model.card, max_rows=10))
            assert outputs["predict"] == want["predictions"]
            assert close(outputs["predict_proba"], [p for row in want["probabilities"]
                                                    for p in row.values()])
    finally:
        running.stop()


values = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 10),
                   st.text(max_size=5), st.none(), st.booleans())
tensor = st.fixed_dictionaries(
    {"name": st.sampled_from(["x", "island", "sex", "bill_length_mm", "text"]),
     "datatype": st.sampled_from(["FP64", "FP32", "INT64", "INT32", "BOOL", "BYTES", "FP16"]),
     "shape": st.lists(st.integers(-1, 4), max_size=3),
     "data": st.recursive(st.lists(values, max_size=8), lambda inner: st.lists(inner,
                                                                                max_size=3),
                          max_leaves=16)},
    optional={"parameters": st.dictionaries(st.sampled_from(
        ["binary_data_size", "content_type", "other"]), values, max_size=2)})
v2_bodies = st.fixed_dictionaries(
    {"inputs": st.lists(tensor, max_size=3)},
    optional={"id": values, "outputs": st.lists(st.fixed_dictionaries(
        {"name": st.sampled_from(["predict", "predict_proba", "other"])}), max_size=2),
              "parameters": st.dictionaries(st.sampled_from(
                  ["content_type", "binary_data_output", "other"]),
                  st.one_of(values, st.just("pd")), max_size=2)})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=v2_bodies, model=st.sampled_from(["iris", "penguins", "diabetes"]),
       binary_tail=st.one_of(st.none(), st.binary(max_size=40)))
def test_no_v2_body_makes_a_server_error(server, body, model, binary_tail):
    """Random V2 requests, JSON or with random binary after the header: a 200 or a 4xx with
    a message, never a 5xx."""
    data = json.dumps(body).encode()
    headers = {}
    if binary_tail is not None:
        headers["Inference-Header-Content-Length"] = str(len(data))
        data += binary_tail
    answer = infer(server.url, data, model, **headers)
    assert answer.status_code < 500, (answer.status_code, answer.text)
    if answer.status_code != 200:
        assert answer.json()["error"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(st.lists(st.floats(width=64), min_size=4, max_size=4), min_size=1,
                     max_size=20), binary=st.booleans())
def test_any_iris_tensor_gets_the_models_answer_or_a_4xx(server, rows, binary):
    array = numpy.array(rows, dtype="<f8")
    if binary:
        data = array.tobytes()
        header = json.dumps({"inputs": [{"name": "x", "shape": list(array.shape),
                                         "datatype": "FP64",
                                         "parameters": {"binary_data_size": len(data)}}],
                             "parameters": {"binary_data_output": True}})
        answer = infer(server.url, header.encode() + data,
                       **{"Inference-Header-Content-Length": str(len(header))})
    else:
        answer = requests.post(f"{server.url}/v2/models/iris/infer", timeout=10, data=json.dumps(
            {"inputs": [{"name": "x", "shape": list(array.shape), "datatype": "FP64",
                         "data": rows}]}), headers={"Content-Type": "application/json"})
    if not numpy.isfinite(array).all():
        assert answer.status_code == 400 and "row " in answer.json()["error"], answer.text
        return
    try:
        want = predict(rows)
    except Exception as refused:  # the model has no finite answer: /predict's own 400
        assert answer.status_code == 400 and str(refused) in answer.json()["error"]
        return
    assert answer.status_code == 200, answer.text
    if binary:
        length = int(answer.headers["Inference-Header-Content-Length"])
        head = json.loads(answer.content[:length])
        size = head["outputs"][0]["parameters"]["binary_data_size"]
        assert bytes_elements(numpy.array(want["predictions"])) == answer.content[
            length:length + size]
    else:
        assert answer.json()["outputs"][0]["data"] == want["predictions"]
