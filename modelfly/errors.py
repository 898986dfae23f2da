"""The errors predict raises: each one is also the HTTP answer Firefly sends for it.

They subclass `firefly.app.HTTPError`, the one exception Firefly turns into a response of our
choosing (status, JSON body, JSON content type). Outside a server they are ordinary exceptions
whose message says what was received and what was expected.
"""

import json
import math

from firefly.app import HTTPError

JSON_CONTENT_TYPE = "application/json"  # as Firefly sends it; JSON is UTF-8 by definition


class ModelflyError(HTTPError):
    """Base class: an HTTP status and a message that is safe to send to the caller."""

    status, reason = 500, "Internal Server Error"

    def __init__(self, message: str) -> None:
        self.message = message
        body = json.dumps({"error": message})
        super().__init__(f"{self.status} {self.reason}", body, {"Content-Type": JSON_CONTENT_TYPE})

    def __str__(self) -> str:
        return self.message


class BadInput(ModelflyError):
    """The caller's features do not fit the model (shape, names, types or values)."""

    status, reason = 400, "Bad Request"


class ModelNotFound(ModelflyError):
    """The caller named a model that is not shipped in the models directory."""

    status, reason = 404, "Not Found"


class JobNotFound(ModelflyError):
    """No job has this id (it never existed, was malformed, or has expired)."""

    status, reason = 404, "Not Found"


class JobNotFinished(ModelflyError):
    """The job's answers were asked for before it succeeded."""

    status, reason = 409, "Conflict"


class TooManyRows(ModelflyError):
    """The request holds more rows than one request may carry."""

    status, reason = 413, "Payload Too Large"


class ServerFault(ModelflyError):
    """Our fault: the message is generic, the details go to the server log."""


class ModelRefused(ModelflyError):
    """A shipped model failed its integrity, version or golden checks and is not served."""

    status, reason = 503, "Service Unavailable"


_KINDS = {bool: "a boolean", int: "a number", float: "a number", str: "a string"}


def describe(value: object, limit: int = 40) -> str:
    """A short, JSON-flavoured description of a received value, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, list):
        return f"a list of {len(value)} item(s)"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    text = json.dumps(value, default=repr)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{text} ({_KINDS.get(type(value), type(value).__name__)})"
