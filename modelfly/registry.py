"""The models of one directory: named by callers (never a path), each version loaded and
checked once.

catalog.py finds the models and their versions; card.py loads each version and checks it
against its card. How checked rows become an answer is `Registry.answerer`: the model's own
call here, which the production server replaces with its micro-batcher (server/batcher.py).
"""

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelfly.card import load_checked, read_card
from modelfly.catalog import card_file, check_catalog, model_file
from modelfly.errors import ModelNotFound, ModelRefused, describe
from modelfly.features import Rows
from modelfly.model import LoadedModel
from modelfly.pickle_scan import Scanner
from modelfly.settings import Settings
from modelfly.signatures import Verifier

log = logging.getLogger("modelfly")

Answerer = Callable[[LoadedModel, Rows], dict]


class Registry:
    """The models in one directory, each version loaded at most once, safely under threads.

    >>> registry = Registry(Settings())
    >>> registry.get("iris").answer([[5.9, 3.0, 5.1, 1.8]])["predictions"]
    ['virginica']
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.catalog = check_catalog(settings)
        self.names = self.catalog.names
        self.load_seconds: dict[tuple[str, str], float] = {}
        self.refusals: dict[tuple[str, str], str] = {}
        # Told of each load and refusal (name, version, seconds or reason), e.g. by metrics.
        self.on_load: Callable[[str, str, float], None] | None = None
        self.on_refusal: Callable[[str, str, str], None] | None = None
        self.answerer: Answerer = LoadedModel.answer
        self.scanner = Scanner(settings.pickle_allow)
        self.verifier = Verifier(settings.trusted_keys) if settings.trusted_keys else None
        if self.verifier:
            log.info("model signatures are checked against %d trusted key(s): %s",
                     len(settings.trusted_keys), ", ".join(p.name for p in settings.trusted_keys))
        else:
            log.warning("model signatures are not checked (MODELFLY_TRUSTED_KEYS is not set): "
                        "every model file in the models directory is trusted")
        self._loaded: dict[tuple[str, str], LoadedModel] = {}
        self._signatures: dict[tuple[str, str], tuple] = {}
        self._locks = {(name, version): threading.Lock()
                       for name, versions in self.catalog.files.items() for version in versions}

    def resolve(self, name: Any) -> str:
        """The model a caller means: the default for None, else a shipped model's name."""
        if name is None:
            return self.settings.default_model
        if isinstance(name, str) and name in self.catalog.files:
            return name
        raise ModelNotFound(
            f"unknown model {describe(name)}; available models: {', '.join(self.names)}"
        )

    def resolve_version(self, name: str, version: Any = None) -> str:
        """The version a caller means: the model's default for None, else one it has."""
        if version is None:
            return self.catalog.defaults[name]
        if isinstance(version, str) and version in self.catalog.files[name]:
            return version
        raise ModelNotFound(f"unknown version {describe(version)} of model {name!r}; its "
                            f"versions: {', '.join(self.catalog.versions(name))}")

    def card(self, name: Any, version: Any = None) -> dict:
        name = self.resolve(name)
        return read_card(self.catalog.files[name][self.resolve_version(name, version)])

    def get(self, name: Any, version: Any = None) -> LoadedModel:
        """The checked, loaded model; loads it on first use. Raises ModelRefused if it fails."""
        name = self.resolve(name)
        key = (name, self.resolve_version(name, version))
        loaded = self._loaded.get(key)
        if loaded is not None:
            return loaded
        with self._locks[key]:
            if key not in self._loaded and key not in self.refusals:
                self._load(*key)
            if key in self.refusals:
                raise ModelRefused(f"model {name!r} {key[1]} is refused: {self.refusals[key]}")
            return self._loaded[key]

    def refresh(self) -> None:
        """Read the models directory again: added models and versions are served, removed
        ones are gone, a changed default takes effect; a version whose files are unchanged
        stays loaded. ConfigError (nothing changed) if the directory is now unusable."""
        catalog = check_catalog(self.settings)

        def unchanged(key: tuple[str, str]) -> bool:
            base = catalog.files.get(key[0], {}).get(key[1])
            return (base == self.catalog.files[key[0]][key[1]]
                    and self._signatures.get(key) == _signature(base))

        # loaded and refused versions alike: the same files give the same outcome
        self._loaded = {key: model for key, model in self._loaded.items() if unchanged(key)}
        self.refusals = {key: why for key, why in self.refusals.items() if unchanged(key)}
        self.catalog, self.names = catalog, catalog.names
        self._locks = {(name, version): self._locks.get((name, version), threading.Lock())
                       for name, versions in catalog.files.items() for version in versions}
        log.info("models directory read again: %s", ", ".join(
            f"{name} {' '.join(catalog.versions(name))}" for name in catalog.names))

    def answer(self, model: LoadedModel, rows: Rows) -> dict:
        """The model's answer for rows checked by `features.to_rows`, through the answerer."""
        return self.answerer(model, rows)

    def _load(self, name: str, version: str) -> None:
        started = time.perf_counter()
        base = self.catalog.files[name][version]
        signature = _signature(base)
        model, reason = load_checked(base, name, version, self.scanner, self.verifier)
        self._signatures[name, version] = signature
        if reason is None:
            self._loaded[name, version] = model
            seconds = self.load_seconds[name, version] = time.perf_counter() - started
            log.info("model %r %s loaded in %.3f s", name, version, seconds)
            if self.on_load:
                self.on_load(name, version, seconds)
        else:
            self.refusals[name, version] = reason
            log.error("model %r %s is refused: %s", name, version, reason)
            if self.on_refusal:
                self.on_refusal(name, version, reason)


def _signature(base: Path) -> tuple:
    """What tells that a version's files changed: their sizes and modification times."""
    stats = [path.stat() for path in (card_file(base), model_file(base))]
    return tuple((stat.st_size, stat.st_mtime_ns) for stat in stats)
