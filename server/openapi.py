"""The OpenAPI 3.1 document of GET /openapi.json, made from the cards and the server's routes.

Each model version gets its exact request and answer schemas (modelfly/schema.py) under
components; /predict takes any one of them. Every status the guard, Firefly and predict can
answer is listed, with the error schema.
"""

from typing import Any

from modelfly.jobs import FINISHED, JOB_ID, PUBLIC
from modelfly.registry import Registry
from modelfly.schema import answer_schema, features_schema
from server.settings import ServerSettings

ERROR = {"$ref": "#/components/schemas/error"}
# What a caller can get wrong on any function call, and our own failures.
CALL_ERRORS = {
    "400": "the body is not JSON, or the features do not fit the model",
    "408": "the body did not arrive within MODELFLY_READ_TIMEOUT",
    "413": "the body is over MODELFLY_MAX_BODY_BYTES, or the rows over MODELFLY_MAX_ROWS",
    "415": "the body is not sent as application/json",
    "422": "the body is not a JSON object, or holds an unknown or no required argument",
    "500": "our fault; the details are in the server log, under the request id",
}
AUTH_ERRORS = {"401": "no token was sent", "403": "the token is not this server's"}
HTML = {"text/html": {"schema": {"type": "string"}}}


def document(models: Registry, settings: ServerSettings) -> dict:
    """The OpenAPI document for the models in `models`, as served with `settings`."""
    schemas: dict[str, Any] = {"error": {
        "type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}}
    requests, answers, examples, jobs = [], [], {}, []
    for name in models.names:
        for version in models.catalog.versions(name):
            card = models.card(name, version)
            key = f"{name}-{version}"
            schemas[f"{key}.request"] = _request(card, models, name, version,
                                                 models.settings.max_rows)
            schemas[f"{key}.job"] = _request(card, models, name, version,
                                             settings.jobs.max_rows)
            schemas[f"{key}.answer"] = answer_schema(card)
            requests.append({"$ref": f"#/components/schemas/{key}.request"})
            jobs.append({"$ref": f"#/components/schemas/{key}.job"})
            answers.append({"$ref": f"#/components/schemas/{key}.answer"})
            if card.get("golden"):  # the card's own example: the docs offer it to try
                examples[key] = {"summary": f"{name} {version}", "value": {
                    "features": card["golden"][0]["features"], "model": name,
                    "version": version}}
    protected = {**AUTH_ERRORS} if settings.token else {}
    names = [*models.names, None]
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "modelfly", "version": "1",
                 "description": "scikit-learn models served as functions. Models: "
                                + ", ".join(models.names) + "."},
        "paths": {
            "/predict": {"post": _function(
                "Predict with a model (the default one if `model` is omitted)",
                {"anyOf": requests}, {"anyOf": answers}, protected,
                {"404": "unknown model or version",
                 "503": "the model failed its checks and is not served"}, examples)},
            "/info": {"post": _function(
                "Describe a model: features, classes, data, metrics, versions, an example",
                {"type": "object", "properties": {
                    "model": {"enum": names}, "version": {"type": ["string", "null"]}},
                 "additionalProperties": False},
                {"type": "object", "required": ["name", "version", "features", "versions"]},
                protected, {"404": "unknown model or version"})},
            "/health": {
                "get": _probe("Liveness: the process answers", {"type": "object"}),
                "post": _function("Liveness, with the models this server can serve",
                                  {"type": "object", "additionalProperties": False},
                                  {"type": "object", "required": ["status", "models"]},
                                  protected, {})},
            "/ready": {"get": _probe("Readiness: the default model is loaded and checked",
                                     {"type": "object", "required": ["status", "model"]},
                                     {"503": "the default model is not ready, and why"})},
            "/metrics": {"get": {
                "summary": "Prometheus metrics",
                "responses": {"200": {"description": "the metrics", "content": {
                    "text/plain": {"schema": {"type": "string"}}}}, **_errors(protected)}}},
            "/": {"get": {
                "summary": "The functions (JSON, for firefly.Client); the model list for "
                           "browsers (Accept: text/html)",
                "responses": {"200": {"description": "the functions or the page", "content": {
                    "application/json": {"schema": {"type": "object",
                                                    "required": ["functions"]}},
                    **HTML}}, **_errors(protected)}}},
            "/openapi.json": {"get": {
                "summary": "This document",
                "responses": {"200": {"description": "OpenAPI 3.1", "content": {
                    "application/json": {"schema": {"type": "object"}}}},
                              **_errors(protected)}}},
            "/docs": {"get": _page("Interactive API docs of this document")},
            **_job_paths(models, jobs, answers, protected),
            "/ui/{name}": {"get": {
                **_page("A model's page: a form made from its card",
                        {"404": {"description": "no such model", "content": HTML}}),
                "parameters": [{"name": "name", "in": "path", "required": True,
                                "schema": {"enum": models.names}}]}},
        },
        "components": {"schemas": schemas},
    }
    if settings.token:
        doc["components"]["securitySchemes"] = {"token": {
            "type": "http", "scheme": "bearer",
            "description": "MODELFLY_TOKEN, sent as 'Authorization: Bearer <token>' "
                           "(or 'Token <token>')"}}
        doc["security"] = [{"token": []}]
    return doc


def _request(card: dict, models: Registry, name: str, version: str, max_rows: int) -> dict:
    """The body naming this version: `model` may be left out (or null) for the default model,
    `version` for the default version."""
    default_model = name == models.settings.default_model
    default_version = version == models.catalog.defaults[name]
    required = ["features"]
    if not default_model:
        required.append("model")
    if not default_version:
        required.append("version")
    return {"type": "object", "properties": {
        "features": features_schema(card, max_rows, models.settings.max_text_chars),
        "model": {"enum": [name, None] if default_model else [name]},
        "version": {"enum": [version, None] if default_version else [version]}},
        "required": required, "additionalProperties": False}


def _job_paths(models: Registry, jobs: list[dict], answers: list[dict],
               protected: dict) -> dict:
    """/jobs: submit (predict's body as JSON, or a CSV with model and version in the query),
    its status, its answers, its cancellation."""
    job = {"type": "object", "required": list(PUBLIC), "properties": {
        "job_id": {"type": "string", "pattern": f"^{JOB_ID.pattern}$"},
        "status": {"enum": ["queued", "running", *FINISHED]},
        "model": {"type": "string"}, "version": {"type": "string"},
        "rows": {"type": "integer", "minimum": 1}, "rows_done": {"type": "integer", "minimum": 0},
        "created_at": {"type": "string"}, "started_at": {"type": ["string", "null"]},
        "finished_at": {"type": ["string", "null"]}, "error": {"type": ["string", "null"]},
        "deleted": {"type": "boolean"}}}
    submitted = {"type": "object", "required": ["job_id", "status", "status_url", "result_url"]}
    job_id = {"name": "job_id", "in": "path", "required": True,
              "schema": {"type": "string", "pattern": f"^{JOB_ID.pattern}$"}}
    unknown = {"404": "no such job: unknown, malformed or expired"}
    status = {"200": {"description": "the job", "content": {
        "application/json": {"schema": job}}}, **_errors({**protected, **unknown})}
    return {
        "/jobs": {"post": {
            "summary": "Submit a batch as a job: predict's body, or a CSV file with a header "
                       "row (then model and version in the query)",
            "parameters": [
                {"name": "model", "in": "query", "schema": {"enum": models.names}},
                {"name": "version", "in": "query", "schema": {"type": "string"}}],
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": {"anyOf": jobs}},
                "text/csv": {"schema": {"type": "string"}}}},
            "responses": {"202": {"description": "queued", "content": {
                "application/json": {"schema": submitted}}},
                **_errors({**CALL_ERRORS, **protected, "404": "unknown model or version",
                           "503": "the model failed its checks and is not served"})}}},
        "/jobs/{job_id}": {
            "parameters": [job_id],
            "get": {"summary": "A job's status and progress", "responses": status},
            "delete": {"summary": "Cancel a job and delete its data", "responses": status}},
        "/jobs/{job_id}/result": {"parameters": [job_id], "get": {
            "summary": "A succeeded job's answers, as predict gives them, or CSV",
            "responses": {"200": {"description": "the answers", "content": {
                "application/json": {"schema": {"anyOf": answers}},
                "text/csv": {"schema": {"type": "string"}}}},
                **_errors({**protected, **unknown, "409": "the job has not succeeded"})}}},
    }


def _function(summary: str, body: dict, answer: dict, protected: dict,
              errors: dict[str, str], examples: dict | None = None) -> dict:
    content = {"schema": body, **({"examples": examples} if examples else {})}
    return {"summary": summary,
            "requestBody": {"required": True, "content": {"application/json": content}},
            "responses": {"200": {"description": "the answer", "content": {
                "application/json": {"schema": answer}}},
                **_errors({**CALL_ERRORS, **protected, **errors})}}


def _probe(summary: str, answer: dict, errors: dict[str, str] | None = None) -> dict:
    return {"summary": summary, "security": [],
            "responses": {"200": {"description": "ok", "content": {
                "application/json": {"schema": answer}}}, **_errors(errors or {})}}


def _page(summary: str, more: dict | None = None) -> dict:
    return {"summary": summary, "security": [],
            "responses": {"200": {"description": "an HTML page", "content": HTML},
                          **(more or {})}}


def _errors(statuses: dict[str, str]) -> dict:
    return {status: {"description": description,
                     "content": {"application/json": {"schema": ERROR}}}
            for status, description in sorted(statuses.items())}
