"""Settings of the predict function, read from environment variables and validated.

| variable                | default                       | meaning                              |
|-------------------------|-------------------------------|--------------------------------------|
| MODELFLY_MODELS_DIR     | `models/` beside this file    | where `<name>.joblib` + cards live   |
| MODELFLY_DEFAULT_MODEL  | `iris`                        | the model used when none is named    |
| MODELFLY_MAX_ROWS       | `10000`                       | most rows one request may carry      |
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

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "Settings":
        """Read the MODELFLY_* variables; raise ConfigError naming any bad one."""
        models_dir = Path(env.get("MODELFLY_MODELS_DIR") or DEFAULT_MODELS_DIR)
        if not models_dir.is_dir():
            raise ConfigError(f"MODELFLY_MODELS_DIR={str(models_dir)!r} is not a directory")
        default_model = env.get("MODELFLY_DEFAULT_MODEL") or cls.default_model
        raw_rows = env.get("MODELFLY_MAX_ROWS") or str(cls.max_rows)
        try:
            max_rows = int(raw_rows)
        except ValueError:
            max_rows = 0
        if max_rows < 1:
            raise ConfigError(f"MODELFLY_MAX_ROWS={raw_rows!r} must be a positive integer")
        return cls(models_dir=models_dir, default_model=default_model, max_rows=max_rows)
