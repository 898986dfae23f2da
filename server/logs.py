"""The server's log: one JSON object per line on stderr, the access log's lines among them."""

import functools
import logging
import sys
import time
from typing import TextIO

import orjson


def json_line(created: float, level: str, logger: str, message: str, fields: dict) -> str:
    """One log line: time (UTC, to the millisecond), level, logger, message, then `fields`."""
    stamp = f"{_utc_second(int(created))}.{int(created * 1000) % 1000:03d}Z"
    return orjson.dumps({"time": stamp, "level": level, "logger": logger, "message": message,
                         **fields}, default=str).decode()


@functools.lru_cache(maxsize=1)
def _utc_second(second: int) -> str:
    # Lines come many to a second: the date and time are formatted once per second.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's `fields`."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", {})
        if record.exc_info:
            fields = {**fields, "exception": self.formatException(record.exc_info)}
        return json_line(record.created, record.levelname.lower(), record.name,
                         record.getMessage(), fields)


class AccessLog:
    """The guard's line per request: the same JSON as the other lines (logger
    `modelfly.access`), written straight to the stream. Through logging's records it cost
    20-35 µs a request, about a quarter of the guarded app's time for one iris row (in
    process, three interleaved pairs: 102-134 -> 82-86 µs; bench/RESULTS.md)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def __call__(self, fields: dict) -> None:
        line = json_line(time.time(), "info", "modelfly.access", "request", fields) + "\n"
        try:
            self.stream.write(line)
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stderr must not fail the request
            pass


def setup_logging() -> None:
    """modelfly's loggers (and Firefly's warnings) as JSON lines on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name, level in (("modelfly", logging.INFO), ("firefly", logging.WARNING)):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
