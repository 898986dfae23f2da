"""The core's settings, from environment variables, validated.

| variable                | default                       | meaning                              |
|-------------------------|-------------------------------|--------------------------------------|
| MODELFLY_MODELS_DIR     | `models/` of this checkout    | where `<name>.joblib` + cards live   |
| MODELFLY_DEFAULT_MODEL  | `iris`                        | the model used when none is named    |
| MODELFLY_MAX_ROWS       | `10000`                       | most rows one request may carry      |
| MODELFLY_MAX_TEXT_CHARS | `10000`                       | longest value of a `text` feature    |
| MODELFLY_TRUSTED_KEYS   | none: signatures not checked  | public key files (comma-separated);  |
|                         |                               | a model must be signed by one        |
| MODELFLY_PICKLE_ALLOW   | none                          | your own modules or module.names     |
|                         |                               | (comma-separated) a pickle may name  |

Jobs (modelfly/jobs.py), read by the server and by `python -m modelfly worker`:

| variable                    | default              | meaning                                  |
|-----------------------------|----------------------|------------------------------------------|
| MODELFLY_DATA_DIR           | `data/` of this checkout | where the SQLite queue lives (created) |
| MODELFLY_QUEUE_URL          | none: SQLite         | `redis://host:port/db`: the queue on Redis |
| MODELFLY_JOB_MAX_ROWS       | `1000000`            | most rows one job may carry              |
| MODELFLY_JOB_MAX_BODY_BYTES | `268435456`          | the largest job body (256 MiB)           |
| MODELFLY_JOB_TTL            | `86400`              | seconds a job and its answers are kept   |
| MODELFLY_JOB_CHUNK_ROWS     | `10000`              | rows predicted between progress writes   |
| MODELFLY_JOB_STALE_SECONDS  | `60`                 | a silent running job goes back on the queue |

The production server's own settings are in server/settings.py.
"""

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODELS_DIR = ROOT / "models"
DOTTED_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


class ConfigError(ValueError):
    """An environment variable holds a value we cannot use; the message names it."""


@dataclass(frozen=True)
class Settings:
    models_dir: Path = DEFAULT_MODELS_DIR
    default_model: str = "iris"
    max_rows: int = 10_000
    max_text_chars: int = 10_000
    trusted_keys: tuple[Path, ...] = ()
    pickle_allow: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "Settings":
        """Read the MODELFLY_* variables; raise ConfigError naming any bad one."""
        models_dir = Path(env.get("MODELFLY_MODELS_DIR") or DEFAULT_MODELS_DIR)
        if not models_dir.is_dir():
            raise ConfigError(f"MODELFLY_MODELS_DIR={str(models_dir)!r} is not a directory")
        trusted_keys = tuple(Path(part) for part in listed(env, "MODELFLY_TRUSTED_KEYS"))
        if trusted_keys:
            from modelfly.signatures import check_public_keys

            check_public_keys(trusted_keys)
        return cls(models_dir=models_dir, trusted_keys=trusted_keys,
                   pickle_allow=pickle_allow(env),
                   default_model=env.get("MODELFLY_DEFAULT_MODEL") or cls.default_model,
                   max_rows=positive(env, "MODELFLY_MAX_ROWS", cls.max_rows, int),
                   max_text_chars=positive(env, "MODELFLY_MAX_TEXT_CHARS", cls.max_text_chars,
                                           int))


@dataclass(frozen=True)
class JobSettings:
    data_dir: Path = ROOT / "data"
    queue_url: str | None = None
    max_rows: int = 1_000_000
    max_body_bytes: int = 256 << 20
    ttl: int = 86_400
    chunk_rows: int = 10_000
    stale_seconds: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "JobSettings":
        """Read the job variables; raise ConfigError naming any bad one."""
        url = env.get("MODELFLY_QUEUE_URL") or None
        if url and not url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(f"MODELFLY_QUEUE_URL={url!r} must be redis://host:port/db "
                              "(or rediss://, unix://)")
        return cls(data_dir=Path(env.get("MODELFLY_DATA_DIR") or cls.data_dir), queue_url=url,
                   max_rows=positive(env, "MODELFLY_JOB_MAX_ROWS", cls.max_rows, int),
                   max_body_bytes=positive(env, "MODELFLY_JOB_MAX_BODY_BYTES",
                                           cls.max_body_bytes, int),
                   ttl=positive(env, "MODELFLY_JOB_TTL", cls.ttl, int),
                   chunk_rows=positive(env, "MODELFLY_JOB_CHUNK_ROWS", cls.chunk_rows, int),
                   stale_seconds=positive(env, "MODELFLY_JOB_STALE_SECONDS", cls.stale_seconds,
                                          float))


def listed(env: Mapping[str, str], name: str) -> list[str]:
    """A comma-separated variable's items, blanks dropped."""
    return [part.strip() for part in (env.get(name) or "").split(",") if part.strip()]


def pickle_allow(env: Mapping[str, str] = os.environ) -> tuple[str, ...]:
    """MODELFLY_PICKLE_ALLOW's modules and module.names; ConfigError for one that is not."""
    names = listed(env, "MODELFLY_PICKLE_ALLOW")
    for name in names:
        if not DOTTED_NAME.fullmatch(name):
            raise ConfigError(f"MODELFLY_PICKLE_ALLOW: {name!r} is not a module or "
                              "module.name (e.g. mypackage.features)")
    return tuple(names)


def positive(env: Mapping[str, str], name: str, default: float, kind: type,
             zero_ok: bool = False) -> float:
    """The variable `name` as a `kind` above zero (or zero, if zero_ok); ConfigError if not."""
    raw = env.get(name) or str(default)
    try:
        value = kind(raw)
    except ValueError:
        value = -1
    if value < 0 or (value == 0 and not zero_ok):
        expected = "zero or more" if zero_ok else f"a positive {kind.__name__}"
        raise ConfigError(f"{name}={raw!r} must be {expected}")
    return value
