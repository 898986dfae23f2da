"""modelfly's log lines: one JSON object per line on stderr, for the server and the worker."""

import functools
import logging
import sys
import time

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


def json_logging(levels: dict[str, int]) -> None:
    """The loggers named in `levels`, at those levels, as JSON lines on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name, level in levels.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
