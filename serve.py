"""The production server: the Firefly app of firefly.yml, behind the guard, run by gunicorn.

    python serve.py --bind 127.0.0.1:8000

checks the configuration, then becomes gunicorn (same PID, so signals reach it) with
gunicorn.conf.py: several worker processes sharing the preloaded model, the default model
loaded and checked before the port opens. `serve:app` is the WSGI app, for any WSGI server.
Settings: config.py (MODELFLY_*), gunicorn.conf.py (WEB_CONCURRENCY and the worker).
"""

import argparse
import functools
import gc
import importlib
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TextIO

import orjson

from config import ConfigError, ServerSettings, Settings, read_config

ROOT = Path(__file__).resolve().parent
log = logging.getLogger("modelfly")


def build_firefly_app(config_path: Path):
    """Firefly's own app with the functions of a Firefly config, built without importing
    firefly.main (which configures logging and reads the environment when imported); each
    function reads and writes its JSON with orjson (fast_json.py)."""
    from firefly.app import Firefly

    from fast_json import FastJsonFunction

    app = Firefly()
    for name, spec in read_config(config_path)["functions"].items():
        module, function = spec["function"].rsplit(".", 1)
        app.mapping[spec.get("path") or "/" + name] = FastJsonFunction(
            getattr(importlib.import_module(module), function), name)
    return app


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
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name, level in (("modelfly", logging.INFO), ("firefly", logging.WARNING)):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False


def create_app():
    """The guarded WSGI app; loads and checks the default model now, so a preloading server
    is ready before it opens its port."""
    # Importing scikit-learn makes objects that all live as long as the process: collecting
    # midway through is wasted time (0.1-0.2 s of the start here).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _create_app()
    finally:
        if collecting:
            gc.enable()


def _create_app():
    import predict
    from errors import ModelflyError
    from guard import Guard
    from metrics import Metrics

    setup_logging()
    settings = ServerSettings.from_env()
    models = predict.registry()
    metrics = Metrics()
    models.on_load, models.on_refusal = metrics.model_loaded, metrics.model_refused
    models.on_batch = metrics.batch_requests.observe
    firefly_app = build_firefly_app(settings.config_path)
    functions = {path: f.name for path, f in firefly_app.mapping.items() if path != "/"}

    def ready() -> tuple[bool, object]:
        name = models.settings.default_model
        try:
            loaded = models.get(name)
        except ModelflyError as refusal:
            return False, str(refusal)
        return True, {"status": "ready", "model": name, "version": loaded.card["version"]}

    ok, details = ready()
    log.info("auth is %s", "on" if settings.token else
             "OFF: anyone who can reach this port can call the model; set MODELFLY_TOKEN")
    log.info("default model %s", "ready" if ok else f"NOT ready: {details}")
    return Guard(firefly_app, functions, settings, ready, metrics, AccessLog(sys.stderr))


def __getattr__(name: str):
    # `serve:app` for WSGI servers, built on first access rather than at import.
    if name == "app":
        globals()["app"] = create_app()
        return globals()["app"]
    raise AttributeError(name)


def prepare_environment(env: dict) -> None:
    """Defaults the server process needs before gunicorn starts."""
    # One BLAS thread per worker: the workers already use the cores.
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(variable, "1")
    # Metrics are summed across worker processes through files in this directory.
    directory = env.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory)
    else:
        env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="modelfly-metrics-")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run modelfly's production server.")
    parser.add_argument("--bind", default=os.environ.get("MODELFLY_BIND", "127.0.0.1:8000"),
                        help="host:port to listen on (env MODELFLY_BIND; default %(default)s)")
    args = parser.parse_args(argv)
    try:
        # Checked without importing scikit-learn: gunicorn imports it once, in its master.
        Settings.from_env().model_names()
        ServerSettings.from_env()
    except ConfigError as error:
        sys.exit(f"modelfly: configuration error: {error}")
    prepare_environment(os.environ)
    os.chdir(ROOT)
    os.execv(sys.executable, [sys.executable, "-m", "gunicorn", "--config",
                              str(ROOT / "gunicorn.conf.py"), "--bind", args.bind,
                              "serve:create_app()"])


if __name__ == "__main__":
    main()
