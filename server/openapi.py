"""The OpenAPI 3.1 document of GET /openapi.json, made from the cards and the server's routes.

Each model version gets its exact request and answer schemas (modelfly/schema.py) under
components; /predict takes any one of them. Every status the guard, Firefly and predict can
answer is listed, with the error schema.
"""

from typing import Any

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
    requests, answers, examples = [], [], {}
    for name in models.names:
        for version in models.catalog.versions(name):
            card = models.card(name, version)
            key = f"{name}-{version}"
            schemas[f"{key}.request"] = _request(card, models, name, version)
            schemas[f"{key}.answer"] = answer_schema(card)
            requests.append({"$ref": f"#/components/schemas/{key}.request"})
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


def _request(card: dict, models: Registry, name: str, version: str) -> dict:
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
        "features": features_schema(card, models.settings.max_rows,
                                    models.settings.max_text_chars),
        "model": {"enum": [name, None] if default_model else [name]},
        "version": {"enum": [version, None] if default_version else [version]}},
        "required": required, "additionalProperties": False}


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
