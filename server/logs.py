"""The server's log: modelfly's JSON lines on stderr (modelfly/logs.py), the access log's
lines among them."""

import asyncio
import logging
import time
from typing import TextIO

from modelfly.logs import json_line, json_logging


class AccessLog:
    """The guard's line per request: the same JSON as the other lines (logger
    `modelfly.access`), written straight to the stream. Through logging's records it cost
    20-35 µs a request, about a quarter of the guarded app's time for one iris row (in
    process, three interleaved pairs: 102-134 -> 82-86 µs; bench/RESULTS.md). On an event
    loop (the production worker) the lines of one turn of the loop go out in one write, at
    its end: a write per request was one system call more per request."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.pending: list[str] = []

    def __call__(self, fields: dict) -> None:
        self.pending.append(json_line(time.time(), "info", "modelfly.access", "request",
                                      fields) + "\n")
        if len(self.pending) > 1:
            return  # its write is already due
        try:
            asyncio.get_running_loop().call_soon(self.flush)
        except RuntimeError:  # no loop: any other WSGI server
            self.flush()

    def flush(self) -> None:
        lines, self.pending = "".join(self.pending), []
        try:
            self.stream.write(lines)
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stderr must not fail the request
            pass


def setup_logging() -> None:
    """modelfly's loggers (and Firefly's warnings) as JSON lines on stderr."""
    json_logging({"modelfly": logging.INFO, "firefly": logging.WARNING})
