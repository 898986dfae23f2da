"""The guard: WSGI middleware that fixes, around Firefly's app, what Firefly gets wrong.

Auth that is never silently off (constant-time compare, `Token` and `Bearer`), POST-only
function paths with a JSON content type, a body limit enforced before reading, deep JSON and
every other failure answered as JSON `{"error": ...}`, a JSON 404 that does not echo the path,
GET /health, /ready and /metrics, CORS, request ids and one JSON access-log line per request.
In front of the functions: the pages (pages.py), which need no token, and /openapi.json,
which does.
"""

import hmac
import io
import logging
import random
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

from server.answers import STATUS_LINES, Answer, error, json_answer
from server.jobs import JobRoutes
from server.jobs import route as job_route
from server.metrics import Metrics
from server.pages import Pages
from server.settings import ServerSettings
from server.v2 import V2Routes, is_public
from server.v2 import route as v2_route

log = logging.getLogger("modelfly")

REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
PROBES = ("/health", "/ready")
# On every answer: a browser must take each one as the type it is sent as.
NOSNIFF = ("X-Content-Type-Options", "nosniff")
# Methods counted by name in the metrics; any other is counted as "other", so a client cannot
# add series at will.
METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


class BodyTimeout(Exception):
    """The client did not send its whole body within the read timeout: raised by the input
    stream of our worker (worker.py), which reads bodies under MODELFLY_READ_TIMEOUT; other
    WSGI servers apply their own socket timeouts."""


class BodyCutShort(Exception):
    """The client stopped sending before the end its Content-Length announced, and what it
    sent is not known (raised by our worker's input stream)."""


def call_wsgi(app: Callable, environ: dict) -> Answer:
    """A WSGI app's answer to `environ`: status code, headers and body (bytes, or the list of
    parts the app returned; when the app streams, not a list, its iterable as it is)."""
    answer: dict = {}

    def start_response(status: str, headers: list, exc_info: Any = None) -> None:
        answer["status"], answer["headers"] = int(status[:3]), headers

    chunks = app(environ, start_response)
    if not isinstance(chunks, list):  # a streamed answer: read by whoever sends it
        return answer["status"], answer["headers"], chunks
    return answer["status"], answer["headers"], (chunks[0] if len(chunks) == 1 else
                                                 chunks if chunks else b"")


class Guard:
    """Wraps the Firefly `app` serving `functions` ({path: name}).

    ready() says whether the default model is loaded and checked: (True, details) or
    (False, reason); api_document() is the OpenAPI document; access_log(fields) writes the
    line of each request.
    """

    def __init__(self, app: Callable, functions: dict[str, str], settings: ServerSettings,
                 ready: Callable[[], tuple[bool, Any]], metrics: Metrics,
                 access_log: Callable[[dict], None], pages: Pages,
                 api_document: Callable[[], dict], job_routes: JobRoutes,
                 v2_routes: V2Routes) -> None:
        self.app, self.functions, self.settings = app, functions, settings
        self.ready, self.metrics, self.access_log = ready, metrics, access_log
        self.pages, self.api_document, self.job_routes = pages, api_document, job_routes
        self.v2_routes = v2_routes
        self.token = settings.token.encode() if settings.token else None
        self.known = {*functions, "/", "/metrics", "/openapi.json", *PROBES}

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        started = time.perf_counter()
        path, method = environ.get("PATH_INFO") or "/", environ["REQUEST_METHOD"]
        route = path if path in self.known else (
            Pages.route(path) or job_route(path) or v2_route(path) or "other")
        given_id = environ.get("HTTP_X_REQUEST_ID", "")
        # 128 random bits, as uuid4 has, without its read of os.urandom per request (random
        # is reseeded in each forked worker)
        request_id = (given_id if REQUEST_ID.fullmatch(given_id)
                      else f"{random.getrandbits(128):032x}")
        self.metrics.started()
        try:
            status, headers, body = self._answer(environ, path, method)
        except Exception:
            log.exception("request %s to %s failed", request_id, route)
            status, headers, body = error(500, f"internal error; request id {request_id}")
        headers = [*headers, ("X-Request-ID", request_id), NOSNIFF, *self._cors(environ)]
        parts = [body] if isinstance(body, bytes) else body if isinstance(body, list) else None
        streamed = parts is None  # a job's answers, written as they are read
        size = None if streamed else sum(map(len, parts))
        if not streamed:
            headers.append(("Content-Length", str(size)))
        start_response(STATUS_LINES.get(status) or f"{status} Unknown", headers)
        seconds = time.perf_counter() - started
        self.metrics.observe_request(route, method if method in METHODS else "other", status,
                                     seconds)
        self.access_log({"request_id": request_id, "method": method, "route": route,
                         "status": status, "latency_ms": round(seconds * 1000, 3),
                         "bytes": size})
        return body if streamed else parts

    def _answer(self, environ: dict, path: str, method: str) -> Answer:
        if method == "OPTIONS" and (path in self.functions or path in PROBES):
            return 204, [], b""  # a CORS preflight: no token, by design of CORS
        if path in PROBES and method in ("GET", "HEAD"):
            if path == "/health":
                return json_answer(200, {"status": "ok"})
            ok, details = self.ready()
            return json_answer(200, details) if ok else error(503, f"not ready: {details}")
        if path == "/v2" or path.startswith("/v2/"):
            return self._v2(environ, path, method)
        if path not in self.functions and method in ("GET", "HEAD"):
            page = self.pages.answer(path, environ)
            if page is not None:
                return page
        elif Pages.route(path):
            return error(405, f"{path[:40]} takes GET, received {method[:10]}", ("Allow", "GET"))
        if job_route(path):
            return self._job(environ, path, method)
        if path not in self.known:
            return error(404, "no such path; the functions are listed at GET /")
        if path in self.functions and method != "POST":
            return error(405, f"{path} takes POST, received {method[:10]}",
                         ("Allow", "POST, OPTIONS"))
        if path not in self.functions and method not in ("GET", "HEAD"):
            return error(405, f"{path} takes GET, received {method[:10]}", ("Allow", "GET"))
        refusal = self._check_token(environ)
        if refusal:
            return refusal
        if path == "/metrics":
            return 200, [("Content-Type", self.metrics.content_type)], self.metrics.exposition(
                self.job_routes.counts)
        if path == "/openapi.json":
            return json_answer(200, self.api_document())
        if path == "/":
            # The function names and paths firefly.Client needs; no docstrings, no defaults.
            return json_answer(200, {"app": "modelfly", "functions": {
                name: {"path": p} for p, name in self.functions.items()}}, ("Vary", "Accept"))
        return self._call_function(environ)

    def _job(self, environ: dict, path: str, method: str) -> Answer:
        refusal = self._check_token(environ)
        if refusal:
            return refusal
        body = b""
        if path == "/jobs" and method == "POST":
            body = self._read_body(environ)
            if isinstance(body, tuple):
                return body
        return self.job_routes.answer(environ, path, method, body)

    def _v2(self, environ: dict, path: str, method: str) -> Answer:
        refusal = None if is_public(path) else self._check_token(environ)
        if refusal:
            return refusal
        body = b""
        if method == "POST":
            body = self._read_body(environ)
            if isinstance(body, tuple):
                return body
        return self.v2_routes.answer(environ, path, method, body)

    def _check_token(self, environ: dict) -> Answer | None:
        if self.token is None:
            return None
        scheme, _, given = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() not in ("token", "bearer") or not given.strip():
            return error(401, "this server needs a token: send 'Authorization: Token <token>'",
                         ("WWW-Authenticate", 'Bearer realm="modelfly"'))
        if not hmac.compare_digest(given.strip().encode(), self.token):
            return error(403, "invalid token")
        return None

    def _call_function(self, environ: dict) -> Answer:
        content_type = environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return error(415, f"send JSON with 'Content-Type: application/json'; received "
                              f"{content_type[:60] or 'no content type'!r}")
        body = self._read_body(environ)
        if isinstance(body, tuple):
            return body
        if not body:
            return error(400, 'the body is empty; send a JSON object such as {"features": [...]}')
        # The body is read already: WebOb (under Firefly) may seek it instead of copying it.
        inner = {**environ, "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)),
                 "webob.is_body_seekable": True}
        inner.pop("HTTP_TRANSFER_ENCODING", None)
        try:
            status, headers, payload = call_wsgi(self.app, inner)
        except RecursionError:  # Firefly's json.loads on deeply nested input
            return error(400, "the JSON body is nested too deeply")
        return status, [(k, v) for k, v in headers if k.lower() != "content-length"], payload

    def _read_body(self, environ: dict) -> bytes | Answer:
        limit, variable = self.settings.body_limit(environ)
        declared = environ.get("CONTENT_LENGTH") or ""
        if declared and not declared.isdigit():
            return error(400, f"invalid Content-Length {declared[:20]!r}")
        if declared and int(declared) > limit:
            return error(413, f"the body is {declared} bytes; at most {limit} are accepted "
                              f"({variable})")
        stream = environ["wsgi.input"]
        try:
            # Without a Content-Length (chunked), read one byte past the limit to see it.
            body = stream.read(int(declared)) if declared else stream.read(limit + 1)
        except BodyTimeout:
            return error(408, f"the body did not arrive within {self.settings.read_timeout} s")
        except BodyCutShort:
            return error(400, f"the body ended before the {declared} bytes its Content-Length "
                              "announced")
        if len(body) > limit:
            return error(413, f"the body is over {limit} bytes ({variable})")
        if declared and len(body) < int(declared):
            return error(400, f"the body ended after {len(body)} of the {declared} bytes its "
                              "Content-Length announced")
        return body

    def _cors(self, environ: dict) -> list[tuple[str, str]]:
        origin = environ.get("HTTP_ORIGIN")
        allowed = self.settings.cors_origins
        if not origin or not allowed or ("*" not in allowed and origin not in allowed):
            return []
        return [("Access-Control-Allow-Origin", "*" if "*" in allowed else origin),
                ("Access-Control-Allow-Methods", "GET, POST, OPTIONS"),
                ("Access-Control-Allow-Headers", "Content-Type, Authorization, X-Request-ID"),
                ("Access-Control-Expose-Headers", "X-Request-ID"),
                ("Access-Control-Max-Age", "600"), ("Vary", "Origin")]

