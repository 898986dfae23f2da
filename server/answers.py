"""An answer as the guard and its routes make it: (status, headers, body), the body bytes, a
list of bytes (parts of an answer whose length is known, sent one after the other: a binary V2
answer is not joined into one 38 MB copy), or, for a streamed answer, an iterator of bytes."""

import json
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

from modelfly.errors import JSON_CONTENT_TYPE

Answer = tuple[int, list[tuple[str, str]], bytes | list[bytes] | Iterator[bytes]]
JSON = ("Content-Type", JSON_CONTENT_TYPE)
STATUS_LINES = {status.value: f"{status.value} {status.phrase}" for status in HTTPStatus}


def json_answer(status: int, payload: Any, *headers: tuple[str, str]) -> Answer:
    return status, [JSON, *headers], json.dumps(payload).encode()


def error(status: int, message: str, *headers: tuple[str, str]) -> Answer:
    return json_answer(status, {"error": message}, *headers)
