"""Settings from environment variables, validated: the predict function's and the server's.

| variable                | default                       | meaning                              |
|-------------------------|-------------------------------|--------------------------------------|
| MODELFLY_MODELS_DIR     | `models/` beside this file    | where `<name>.joblib` + cards live   |
| MODELFLY_DEFAULT_MODEL  | `iris`                        | the model used when none is named    |
| MODELFLY_MAX_ROWS       | `10000`                       | most rows one request may carry      |
| MODELFLY_BATCH_MAX_ROWS | `1000`                        | most rows per model call; 1: off     |
| MODELFLY_BATCH_WAIT_MS  | `0`                           | extra wait for a batch to fill (ms)  |
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MODELS_DIR = Path(__file__).resolve().parent / "models"


class ConfigError(ValueError):
    """An environment variable holds a value we cannot use; the message names it."""


@dataclass(frozen=True)
class Settings:
    models_dir: Path = DEFAULT_MODELS_DIR
    default_model: str = "iris"
    max_rows: int = 10_000
    batch_max_rows: int = 1000
    batch_wait_ms: float = 0.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "Settings":
        """Read the MODELFLY_* variables; raise ConfigError naming any bad one."""
        models_dir = Path(env.get("MODELFLY_MODELS_DIR") or DEFAULT_MODELS_DIR)
        if not models_dir.is_dir():
            raise ConfigError(f"MODELFLY_MODELS_DIR={str(models_dir)!r} is not a directory")
        default_model = env.get("MODELFLY_DEFAULT_MODEL") or cls.default_model
        max_rows = _positive(env, "MODELFLY_MAX_ROWS", cls.max_rows, int)
        batch_max_rows = _positive(env, "MODELFLY_BATCH_MAX_ROWS", cls.batch_max_rows, int)
        batch_wait_ms = _positive(env, "MODELFLY_BATCH_WAIT_MS", cls.batch_wait_ms, float,
                                  zero_ok=True)
        return cls(models_dir=models_dir, default_model=default_model, max_rows=max_rows,
                   batch_max_rows=batch_max_rows, batch_wait_ms=batch_wait_ms)

    def model_names(self) -> list[str]:
        """The models in models_dir (a card beside its .joblib); ConfigError if the default
        model is not one of them."""
        names = sorted(path.stem for path in self.models_dir.glob("*.json")
                       if path.with_suffix(".joblib").is_file())
        if self.default_model not in names:
            raise ConfigError(
                f"MODELFLY_DEFAULT_MODEL={self.default_model!r} is not a model in "
                f"MODELFLY_MODELS_DIR; available: {', '.join(names) or 'none'}"
            )
        return names


@dataclass(frozen=True)
class ServerSettings:
    """Settings of the production server (serve.py), from the environment.

    | variable                  | default          | meaning                                 |
    |---------------------------|------------------|-----------------------------------------|
    | MODELFLY_TOKEN            | none (auth off)  | token every function call must carry    |
    | FIREFLY_TOKEN             | none             | honoured too; must equal MODELFLY_TOKEN |
    | MODELFLY_CONFIG           | `firefly.yml`    | the Firefly config (FIREFLY_CONFIG too) |
    | MODELFLY_MAX_BODY_BYTES   | `1048576`        | larger request bodies get a 413         |
    | MODELFLY_READ_TIMEOUT     | `10`             | seconds to receive a request body       |
    | MODELFLY_CORS_ORIGINS     | none (CORS off)  | comma-separated origins, or `*`         |
    """

    token: str | None = None
    config_path: Path = DEFAULT_MODELS_DIR.parent / "firefly.yml"
    max_body_bytes: int = 1 << 20
    read_timeout: float = 10.0
    cors_origins: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "ServerSettings":
        """Read the variables, and the token in the Firefly config if any; raise ConfigError."""
        config_path = Path(env.get("MODELFLY_CONFIG") or env.get("FIREFLY_CONFIG")
                           or cls.config_path)
        if not config_path.is_file():
            raise ConfigError(f"MODELFLY_CONFIG={str(config_path)!r} is not a file")
        origins = tuple(o.strip() for o in env.get("MODELFLY_CORS_ORIGINS", "").split(",")
                        if o.strip())
        return cls(
            token=resolve_token(env, read_config(config_path).get("token")),
            config_path=config_path,
            max_body_bytes=_positive(env, "MODELFLY_MAX_BODY_BYTES", cls.max_body_bytes, int),
            read_timeout=_positive(env, "MODELFLY_READ_TIMEOUT", cls.read_timeout, float),
            cors_origins=origins,
        )


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


def _positive(env: Mapping[str, str], name: str, default: float, kind: type,
              zero_ok: bool = False) -> float:
    raw = env.get(name) or str(default)
    try:
        value = kind(raw)
    except ValueError:
        value = -1
    if value < 0 or (value == 0 and not zero_ok):
        expected = "zero or more" if zero_ok else f"a positive {kind.__name__}"
        raise ConfigError(f"{name}={raw!r} must be {expected}")
    return value
