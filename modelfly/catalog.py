"""What a models directory holds: each model's versions, their files, and the default version.

Two layouts, side by side in one directory:

    models/iris.joblib, models/iris.json        one version (the card's), the shipped models
    models/churn/1.0.0.joblib, 1.0.0.json       one file pair per version
    models/churn/default_version                optional: the version served when none is
                                                asked for (else the highest, semantic order)

Only the cards' JSON is read here (no unpickling, no scikit-learn).
"""

import json
import re
from dataclasses import dataclass
from pathlib import Path

from packaging.version import InvalidVersion, Version

from modelfly.settings import ConfigError, Settings

# A name or version is a file name in the models directory: nothing that could leave it.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
PIN_FILE = "default_version"


def is_safe_name(text: str) -> bool:
    return bool(SAFE_NAME.fullmatch(text)) and ".." not in text


SAFE_NAME_RULE = ("must be letters, digits, '.', '_' or '-', starting with a letter or digit, "
                  "without '..'")


def version_order(version: str) -> tuple:
    """Sort key: semantic (PEP 440) order, versions that are not such after all others."""
    try:
        return (1, Version(version), version)
    except InvalidVersion:
        return (0, Version("0"), version)


def card_file(base: Path) -> Path:
    return base.parent / f"{base.name}.json"


def model_file(base: Path) -> Path:
    return base.parent / f"{base.name}.joblib"


@dataclass(frozen=True)
class Catalog:
    """{name: {version: base path}} (the card is base + .json, the model base + .joblib) and
    each name's default version."""

    files: dict[str, dict[str, Path]]
    defaults: dict[str, str]

    @classmethod
    def scan(cls, models_dir: Path) -> "Catalog":
        """Read the directory; ConfigError for a version found twice or a pin to nothing."""
        files: dict[str, dict[str, Path]] = {}
        for card in sorted(models_dir.glob("*.json")):
            base = card.with_suffix("")
            if model_file(base).is_file() and is_safe_name(base.name):
                files.setdefault(base.name, {})[_card_version(card)] = base
        for folder in sorted(path for path in models_dir.iterdir() if path.is_dir()):
            if not is_safe_name(folder.name):
                continue
            for card in sorted(folder.glob("*.json")):
                version = card.name[:-len(".json")]
                base = folder / version
                if not (model_file(base).is_file() and is_safe_name(version)):
                    continue
                if version in files.get(folder.name, {}):
                    raise ConfigError(f"model {folder.name!r} version {version!r} is both in "
                                      f"{folder.name}/ and beside it; keep one")
                files.setdefault(folder.name, {})[version] = base
        defaults = {}
        for name, versions in files.items():
            pin = models_dir / name / PIN_FILE
            if pin.is_file():
                pinned = pin.read_text(encoding="utf-8").strip()
                if pinned not in versions:
                    raise ConfigError(f"{name}/{PIN_FILE} names version {pinned!r}, which is not "
                                      f"there; versions: {', '.join(sorted(versions))}")
                defaults[name] = pinned
            else:
                defaults[name] = max(versions, key=version_order)
        return cls(files, defaults)

    @property
    def names(self) -> list[str]:
        return sorted(self.files)

    def versions(self, name: str) -> list[str]:
        """The versions of a model, lowest first."""
        return sorted(self.files[name], key=version_order)


def check_catalog(settings: Settings) -> Catalog:
    """The models directory's catalog; ConfigError if the default model is not in it."""
    catalog = Catalog.scan(settings.models_dir)
    if settings.default_model not in catalog.files:
        raise ConfigError(
            f"MODELFLY_DEFAULT_MODEL={settings.default_model!r} is not a model in "
            f"MODELFLY_MODELS_DIR; available: {', '.join(catalog.names) or 'none'}")
    return catalog


def _card_version(card: Path) -> str:
    """The version a flat card says it is (a card that cannot say is version '?', refused when
    it is loaded)."""
    try:
        version = json.loads(card.read_text(encoding="utf-8")).get("version")
    except (OSError, ValueError, AttributeError):
        return "?"
    return str(version) if version is not None else "?"
