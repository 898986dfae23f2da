"""The models of one directory: named by callers (never a path), each loaded and checked once.

A model is `<name>.joblib` beside its card `<name>.json`; card.py loads it and checks it
against its card. How checked rows become an answer is `Registry.answerer`: the model's own
call here, which the production server replaces with its micro-batcher (server/batcher.py).
"""

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from modelfly.card import load_checked, read_card
from modelfly.errors import ModelNotFound, ModelRefused, describe
from modelfly.features import Rows
from modelfly.model import LoadedModel
from modelfly.settings import Settings

log = logging.getLogger("modelfly")

Answerer = Callable[[LoadedModel, Rows], dict]


class Registry:
    """The models in one directory, each loaded at most once, safely under threads.

    >>> registry = Registry(Settings())
    >>> registry.get("iris").answer([[5.9, 3.0, 5.1, 1.8]])["predictions"]
    ['virginica']
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.names = settings.model_names()
        self.load_seconds: dict[str, float] = {}
        self.refusals: dict[str, str] = {}
        # Told of each load and refusal, e.g. by the server's metrics.
        self.on_load: Callable[[str, float], None] | None = None
        self.on_refusal: Callable[[str, str], None] | None = None
        self.answerer: Answerer = LoadedModel.answer
        self._loaded: dict[str, LoadedModel] = {}
        self._locks = {name: threading.Lock() for name in self.names}

    def resolve(self, name: Any) -> str:
        """The model a caller means: the default for None, else a shipped model's name."""
        if name is None:
            return self.settings.default_model
        if isinstance(name, str) and name in self._locks:
            return name
        raise ModelNotFound(
            f"unknown model {describe(name)}; available models: {', '.join(self.names)}"
        )

    def card(self, name: str) -> dict:
        return read_card(self.settings.models_dir, self.resolve(name))

    def get(self, name: str) -> LoadedModel:
        """The checked, loaded model; loads it on first use. Raises ModelRefused if it fails."""
        name = self.resolve(name)
        loaded = self._loaded.get(name)
        if loaded is not None:
            return loaded
        with self._locks[name]:
            if name not in self._loaded and name not in self.refusals:
                started = time.perf_counter()
                model, reason = load_checked(self.settings.models_dir, name)
                if reason is None:
                    self._loaded[name] = model
                    self.load_seconds[name] = time.perf_counter() - started
                    log.info("model %r loaded in %.3f s", name, self.load_seconds[name])
                    if self.on_load:
                        self.on_load(name, self.load_seconds[name])
                else:
                    self.refusals[name] = reason
                    log.error("model %r is refused: %s", name, reason)
                    if self.on_refusal:
                        self.on_refusal(name, reason)
            if name in self.refusals:
                raise ModelRefused(f"model {name!r} is refused: {self.refusals[name]}")
            return self._loaded[name]

    def answer(self, model: LoadedModel, rows: Rows) -> dict:
        """The model's answer for rows checked by `features.to_rows`, through the answerer."""
        return self.answerer(model, rows)
