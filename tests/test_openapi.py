"""GET /openapi.json: a valid OpenAPI 3.1 document made from the cards and the routes, whose
schemas state the input contract exactly: checked against the bad-input corpus here, and by
schemathesis against the live production server."""

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from helpers import BAD_REQUESTS, BIN, Server, serve_models
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

TOKEN = "openapi-test-token"
MAX_TEXT_CHARS = 300
# schemathesis' checks that apply to a stateless API. Left out: positive_data_acceptance (a
# model may refuse values its schema allows: "no finite answer" for 1e308, and the body limit
# is in bytes, which JSON Schema cannot state), and the stateful checks (use_after_free,
# ensure_resource_availability, object_level_authorization): nothing here is created or owned.
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_headers_conformance,response_schema_conformance,negative_data_rejection,"
          "missing_required_header,unsupported_method,allow_header_conformance")


def serve(tmp_path_factory: pytest.TempPathFactory, showcase: Path, **env: str) -> Server:
    tmp = tmp_path_factory.mktemp("serve")
    return serve_models(tmp, showcase, MODELFLY_MAX_TEXT_CHARS=str(MAX_TEXT_CHARS),
                        MODELFLY_DATA_DIR=str(tmp / "data"), **env)


@pytest.fixture(scope="module")
def server(tmp_path_factory, showcase) -> Iterator[Server]:
    server = serve(tmp_path_factory, showcase)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def token_server(tmp_path_factory, showcase) -> Iterator[Server]:
    server = serve(tmp_path_factory, showcase, MODELFLY_TOKEN=TOKEN)
    yield server
    server.stop()


def document(server: Server, token: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    answer = requests.get(server.url + "/openapi.json", headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"] == "application/json"
    return answer.json()


def test_the_document_is_valid_openapi_3_1_with_auth_where_a_token_is_set(server,
                                                                          token_server):
    plain, guarded = document(server), document(token_server, TOKEN)
    for doc in (plain, guarded):
        validate(doc)  # raises on any fault
        assert doc["openapi"] == "3.1.0"
        assert {"/predict", "/info", "/health", "/ready", "/metrics", "/", "/openapi.json",
                "/docs", "/ui/{name}", "/jobs", "/jobs/{job_id}",
                "/jobs/{job_id}/result"} == set(doc["paths"])
    assert "security" not in plain and "securitySchemes" not in plain["components"]
    assert guarded["security"] == [{"token": []}]
    assert guarded["components"]["securitySchemes"]["token"] == {
        **guarded["components"]["securitySchemes"]["token"], "type": "http", "scheme": "bearer"}
    predict_answers = guarded["paths"]["/predict"]["post"]["responses"]
    assert {"200", "400", "401", "403", "404", "408", "413", "415", "422", "500",
            "503"} == set(predict_answers)
    assert "401" not in plain["paths"]["/predict"]["post"]["responses"]
    for probe in ("/health", "/ready"):  # probes and pages need no token
        assert guarded["paths"][probe]["get"]["security"] == []
    assert guarded["paths"]["/docs"]["get"]["security"] == []
    # the document describes the models: like the cards, it needs the token
    assert requests.get(token_server.url + "/openapi.json", timeout=10).status_code == 401


def test_each_version_has_its_exact_request_and_answer(server):
    schemas = document(server)["components"]["schemas"]
    assert {"iris-1.0.0.request", "penguins-1.0.0.request", "diabetes-1.0.0.request",
            "reviews-1.0.0.request", "reviews-2.0.0.request", "xss-1.0.0.request"} <= set(schemas)
    iris = schemas["iris-1.0.0.request"]
    assert iris["required"] == ["features"]  # the default model, its default version
    assert iris["properties"]["model"] == {"enum": ["iris", None]}
    row, rows, record, records = iris["properties"]["features"]["anyOf"]
    assert row == {"type": "array", "prefixItems": [{"type": "number"}] * 4,
                   "minItems": 4, "maxItems": 4}
    assert rows == {"type": "array", "items": row, "minItems": 1, "maxItems": 10_000}
    assert record["required"] == ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    assert record["additionalProperties"] is False and records["items"] == record
    penguins = schemas["penguins-1.0.0.request"]["properties"]["features"]["anyOf"][2]
    assert penguins["properties"]["island"] == {"enum": ["Biscoe", "Dream", "Torgersen", None]}
    assert penguins["properties"]["body_mass_g"] == {"type": ["number", "null"]}
    old = schemas["reviews-1.0.0.request"]
    assert old["required"] == ["features", "model", "version"]
    assert old["properties"]["version"] == {"enum": ["1.0.0"]}
    newest = schemas["reviews-2.0.0.request"]
    assert newest["required"] == ["features", "model"]
    assert newest["properties"]["version"] == {"enum": ["2.0.0", None]}
    text = {"type": "string", "maxLength": MAX_TEXT_CHARS}
    assert text in newest["properties"]["features"]["anyOf"]  # texts alone: one text
    answer = schemas["iris-1.0.0.answer"]["properties"]
    assert answer["predictions"]["items"] == {"enum": ["setosa", "versicolor", "virginica"]}
    assert answer["probabilities"]["items"]["required"] == ["setosa", "versicolor", "virginica"]
    assert schemas["diabetes-1.0.0.answer"]["properties"]["predictions"]["items"] == {
        "type": "number"}


def predict_validator(doc: dict, part: str) -> Draft202012Validator:
    """A validator of /predict's request (`part` "request") or 200 answer ("answer"), the
    document's references resolved."""
    pointer = ("/paths/~1predict/post/requestBody/content/application~1json/schema"
               if part == "request" else
               "/paths/~1predict/post/responses/200/content/application~1json/schema")
    registry = Registry().with_resource(
        "urn:openapi", Resource.from_contents(doc, default_specification=DRAFT202012))
    return Draft202012Validator({"$ref": f"urn:openapi#{pointer}"}, registry=registry)


def strict_json(text: str):
    """The JSON value of `text`, or None for what is no JSON at all or holds a number beyond
    a float (NaN, Infinity, 1e400): a schema cannot speak of those."""
    def refuse(constant: str):
        raise ValueError(constant)
    try:
        value = json.loads(text, parse_constant=refuse)
    except ValueError:
        return None
    return None if "e400" in text else value


def test_the_schemas_refuse_what_the_server_refuses_and_take_what_it_answers(server):
    doc = document(server)
    requests_ok, answers_ok = predict_validator(doc, "request"), predict_validator(doc, "answer")
    refused = 0
    for body, _status, _message in BAD_REQUESTS:
        value = strict_json(body)
        if value is not None:
            assert not requests_ok.is_valid(value), body[:80]
            refused += 1
    assert refused >= 15
    # every golden input of every version, and the server's answer to it
    for name in ("iris", "penguins", "diabetes", "reviews", "xss"):
        info = requests.post(server.url + "/info", json={"model": name}, timeout=10).json()
        for version in info["versions"]:
            body = {"features": info["example"]["features"], "model": name, "version": version}
            assert requests_ok.is_valid(body), body
            answer = requests.post(server.url + "/predict", json=body, timeout=10)
            assert answer.status_code == 200, answer.text
            assert answers_ok.is_valid(answer.json()), answer.text
            wrong = {**body, "version": "9.9.9"}
            assert not requests_ok.is_valid(wrong)
            assert requests.post(server.url + "/predict", json=wrong,
                                 timeout=10).status_code == 404
    too_long = {"features": "x" * (MAX_TEXT_CHARS + 1), "model": "reviews"}
    assert not requests_ok.is_valid(too_long)
    assert requests.post(server.url + "/predict", json=too_long, timeout=10).status_code == 400


@pytest.mark.parametrize("auth", ["none", "token"])
def test_schemathesis_finds_nothing_against_the_production_server(server, token_server,
                                                                  auth, tmp_path):
    target = server if auth == "none" else token_server
    config = Path(__file__).parent / "schemathesis.toml"
    argv = [str(BIN / "schemathesis"), "--config-file", str(config), "run",
            target.url + "/openapi.json", "--checks",
            CHECKS + (",ignored_auth" if auth == "token" else ""),
            "--max-examples", "40", "--generation-database", "none", "--no-color"]
    if auth == "token":
        argv += ["--header", f"Authorization: Bearer {TOKEN}"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    summary = done.stdout[-3000:]
    assert done.returncode == 0, summary
    # 13 operations; its warnings (random CSV text mostly refused, job ids it cannot guess)
    # are not failures
    assert "13 passed" in summary and "failure" not in summary, summary
