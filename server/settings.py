"""The production server's settings, from environment variables, validated at start.

| variable                  | default                       | meaning                          |
|---------------------------|-------------------------------|----------------------------------|
| MODELFLY_TOKEN            | none (auth off)               | token every call must carry      |
| FIREFLY_TOKEN             | none                          | honoured; must equal the above   |
| MODELFLY_CONFIG           | `firefly.yml`                 | Firefly config; or FIREFLY_CONFIG |
| MODELFLY_MAX_BODY_BYTES   | `1048576`                     | larger request bodies get a 413  |
| MODELFLY_MAX_BINARY_BYTES | `67108864`                    | the same, for V2 binary tensors  |
| MODELFLY_READ_TIMEOUT     | `10`                          | seconds to receive a head; a body |
| MODELFLY_CORS_ORIGINS     | none (CORS off)               | comma-separated origins, or `*`  |
| MODELFLY_BATCH_MAX_ROWS   | `1000`                        | most rows per model call; 1: off |
| MODELFLY_BATCH_WAIT_MS    | `0`                           | extra wait for a batch (ms)      |
| WEB_CONCURRENCY           | `2`                           | worker processes (one per core)  |
| MODELFLY_WORKER_CLASS     | `server.worker.LoopWorker`    | gunicorn worker class            |
| MODELFLY_TIMEOUT          | `30`                          | silent worker replaced after (s) |
| MODELFLY_GRACEFUL_TIMEOUT | `20`                          | seconds requests get after SIGTERM |

The core's own (MODELFLY_MODELS_DIR, MODELFLY_DEFAULT_MODEL, MODELFLY_MAX_ROWS) are in
modelfly/settings.py.
"""

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from modelfly.settings import ROOT, ConfigError, JobSettings, positive

# gunicorn's own worker classes, which it names without a module
GUNICORN_WORKERS = {"sync", "gthread", "gevent", "eventlet", "tornado"}


@dataclass(frozen=True)
class ServerSettings:
    token: str | None = None
    config_path: Path = ROOT / "firefly.yml"
    max_body_bytes: int = 1 << 20
    max_binary_bytes: int = 64 << 20
    read_timeout: float = 10.0
    cors_origins: tuple[str, ...] = ()
    batch_max_rows: int = 1000
    batch_wait_ms: float = 0.0
    workers: int = 2
    worker_class: str = "server.worker.LoopWorker"
    timeout: int = 30
    graceful_timeout: int = 20
    jobs: JobSettings = field(default_factory=JobSettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "ServerSettings":
        """Read the variables, and the token in the Firefly config if any; raise ConfigError
        naming any bad one."""
        config_path = Path(env.get("MODELFLY_CONFIG") or env.get("FIREFLY_CONFIG")
                           or cls.config_path)
        if not config_path.is_file():
            raise ConfigError(f"MODELFLY_CONFIG={str(config_path)!r} is not a file")
        origins = tuple(o.strip() for o in env.get("MODELFLY_CORS_ORIGINS", "").split(",")
                        if o.strip())
        return cls(
            token=resolve_token(env, read_config(config_path).get("token")),
            config_path=config_path,
            max_body_bytes=positive(env, "MODELFLY_MAX_BODY_BYTES", cls.max_body_bytes, int),
            max_binary_bytes=positive(env, "MODELFLY_MAX_BINARY_BYTES", cls.max_binary_bytes,
                                      int),
            read_timeout=positive(env, "MODELFLY_READ_TIMEOUT", cls.read_timeout, float),
            cors_origins=origins,
            batch_max_rows=positive(env, "MODELFLY_BATCH_MAX_ROWS", cls.batch_max_rows, int),
            batch_wait_ms=positive(env, "MODELFLY_BATCH_WAIT_MS", cls.batch_wait_ms, float,
                                   zero_ok=True),
            workers=positive(env, "WEB_CONCURRENCY", cls.workers, int),
            worker_class=worker_class(env.get("MODELFLY_WORKER_CLASS") or cls.worker_class),
            timeout=positive(env, "MODELFLY_TIMEOUT", cls.timeout, int),
            graceful_timeout=positive(env, "MODELFLY_GRACEFUL_TIMEOUT", cls.graceful_timeout,
                                      int),
            jobs=JobSettings.from_env(env),
        )


    def body_limit(self, environ: dict) -> tuple[int, str]:
        """The most bytes this request's body may have, and the variable that says so: a
        job's, a V2 request's with binary tensors, or any other's."""
        if environ.get("PATH_INFO") == "/jobs":
            return self.jobs.max_body_bytes, "MODELFLY_JOB_MAX_BODY_BYTES"
        if "HTTP_INFERENCE_HEADER_CONTENT_LENGTH" in environ:
            return self.max_binary_bytes, "MODELFLY_MAX_BINARY_BYTES"
        return self.max_body_bytes, "MODELFLY_MAX_BODY_BYTES"


def worker_class(name: str) -> str:
    """A gunicorn worker class gunicorn can find: one of its own, or `module.Class` of a module
    that exists (found without importing it)."""
    module, _, attribute = name.rpartition(".")
    if name in GUNICORN_WORKERS:
        return name
    try:
        found = bool(module and attribute) and importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise ConfigError(f"MODELFLY_WORKER_CLASS={name!r} must be one of gunicorn's "
                          f"({', '.join(sorted(GUNICORN_WORKERS))}) or module.Class of an "
                          "importable module")
    return name


def check_bind(bind: str) -> str:
    """`host:port` (port 0-65535; IPv6 hosts in brackets) or `unix:PATH`; ConfigError if not."""
    host, _, port = bind.rpartition(":")
    if bind.startswith("unix:") or (host and port.isdigit() and int(port) <= 65535):
        return bind
    raise ConfigError(f"MODELFLY_BIND (or --bind)={bind!r} must be host:port or unix:PATH")


def read_config(path: Path) -> dict:
    """The Firefly YAML config as a dict; ConfigError if it is not one."""
    import yaml

    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"cannot read the Firefly config {path.name}: {error}") from error
    if not isinstance(config, dict) or not isinstance(config.get("functions"), dict):
        raise ConfigError(f"the Firefly config {path.name} has no 'functions' mapping")
    return config


def resolve_token(env: Mapping[str, str], file_token: object = None) -> str | None:
    """The one token auth uses, from MODELFLY_TOKEN, FIREFLY_TOKEN and the config's `token:`.

    Never silently dropped: every place that sets one is honoured, and places that disagree,
    an empty variable or a token YAML read as a number stop the server with a message saying
    which (never the token itself).
    """
    if file_token is not None and not isinstance(file_token, str):
        raise ConfigError(
            f"the token in the Firefly config is a YAML {type(file_token).__name__}, which "
            "Firefly never matches; quote it, or better, move it to MODELFLY_TOKEN")
    found = {}
    for name in ("MODELFLY_TOKEN", "FIREFLY_TOKEN"):
        if name in env:
            if not env[name].strip():
                raise ConfigError(f"{name} is set but empty; unset it to run without auth")
            found[name] = env[name].strip()
    if file_token is not None:
        found["the Firefly config's token"] = file_token.strip()
    if len(set(found.values())) > 1:
        raise ConfigError("different tokens are set in " + " and ".join(found)
                          + "; set one, MODELFLY_TOKEN")
    return next(iter(found.values()), None)
