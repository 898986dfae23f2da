"""Firefly's app for the functions of a Firefly config, each reading and writing JSON with orjson.

Firefly reads each request with `json.loads` and writes each answer with `json.dumps`: for a
10,000-row request that is most of the time the request takes (iris: 8 ms to read the body,
19 ms to write the 1.15 MB answer with its probabilities; orjson takes 2 ms and 1 ms).
Everything else stays Firefly's own: routing, argument validation (422), HTTPError, the 500
for a failing function. Where orjson refuses what the json module takes (NaN, Infinity,
integers beyond 64 bits, nesting beyond 1,024 levels, lone surrogates) Firefly's own json
decides, so those requests get exactly the answers they got before.
"""

import importlib
import inspect
import io
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
from firefly.app import Firefly, FireflyFunction
from webob import Request, Response

from server.answers import JSON, STATUS_LINES
from server.settings import read_config


def build_firefly_app(config_path: Path) -> Firefly:
    """Firefly's own app with the functions of a Firefly config, built without importing
    firefly.main (which configures logging and reads the environment when imported)."""
    app = Firefly()
    for name, spec in read_config(config_path)["functions"].items():
        module, function = spec["function"].rsplit(".", 1)
        app.mapping[spec.get("path") or "/" + name] = FastJsonFunction(
            getattr(importlib.import_module(module), function), name)
    return app


class FastJsonFunction(FireflyFunction):
    """A Firefly function whose JSON goes through orjson (see the module's docstring)."""

    def __init__(self, function: Callable, name: str) -> None:
        super().__init__(function, name)
        # Firefly checks the arguments of every call against inspect.signature(function),
        # which is worked out anew each time unless the function carries it (5 µs a call).
        function.__signature__ = KeywordsSignature.of(function)

    def get_content_type(self, request: Request) -> str:
        # from the environ: WebOb's headers view costs more than the rest of this call
        return request.environ.get("CONTENT_TYPE", "").split(";")[0]

    def get_inputs(self, request: Request) -> Any:
        if self.get_content_type(request) == "multipart/form-data":
            return super().get_inputs(request)
        stream = request.environ.get("wsgi.input")
        # The guard hands the body over read already, in a BytesIO.
        body = stream.getvalue() if isinstance(stream, io.BytesIO) else request.body
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            return super().get_inputs(request)

    def make_response(self, result: Any, status: int = 200) -> "JsonAnswer | Response":
        try:
            body = orjson.dumps(result, option=orjson.OPT_NON_STR_KEYS)
        except TypeError:  # files, and values orjson does not write: Firefly's own way
            return super().make_response(result, status)
        return JsonAnswer(body, status)


class JsonAnswer:
    """A JSON answer, in place of WebOb's Response: what Firefly uses of a function's response
    is its `headerlist` (to add its CORS headers) and its call as a WSGI app. Building a
    Response (its status, content type and charset setters) was 10-24 µs of the 190 µs of
    server CPU an iris request cost (bench/server_cpu.py)."""

    __slots__ = ("body", "status", "headerlist")

    def __init__(self, body: bytes, status: int = 200) -> None:
        self.body, self.status = body, status
        self.headerlist = [JSON]  # a list of its own: Firefly adds to it

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        start_response(STATUS_LINES[self.status], self.headerlist)
        return [self.body]


class KeywordsSignature(inspect.Signature):
    """A function's signature whose bind() of keywords alone remembers each set of names it
    has bound: Firefly binds every call's arguments only to see whether they fit, and
    Signature.bind takes 4 µs of Python for it (about 12 of the server's CPU per request).
    Only for functions without *args or **kwargs, so the sets are those of its own names."""

    __slots__ = ("_fitting",)

    @classmethod
    def of(cls, function: Callable) -> inspect.Signature:
        signature = inspect.signature(function)
        if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY)
               for p in signature.parameters.values()):
            return signature
        own = cls(list(signature.parameters.values()),
                  return_annotation=signature.return_annotation)
        own._fitting = set()
        return own

    def bind(self, /, *args: Any, **kwargs: Any) -> inspect.BoundArguments:
        names = frozenset(kwargs)
        if args or names not in self._fitting:
            bound = super().bind(*args, **kwargs)  # TypeError names what does not fit
            if not args:
                self._fitting.add(names)
            return bound
        return inspect.BoundArguments(self, {name: kwargs[name] for name in self.parameters
                                             if name in kwargs})
