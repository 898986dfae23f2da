"""modelfly's served functions: `predict`, `info` and `health`.

Plain Python functions: call them in a notebook, or serve them over HTTP with the Firefly CLI
(`firefly predict.predict --bind 127.0.0.1:5000`) or the production server (`python serve.py`).
Firefly turns the keys of the posted JSON object into their keyword arguments.

    >>> from predict import predict
    >>> predict([5.9, 3.0, 5.1, 1.8])["predictions"]
    ['virginica']

Settings come from MODELFLY_* environment variables (modelfly/settings.py); models are loaded on
first use, once per process, and then reused.
"""

import logging
import threading
from typing import Any

from modelfly.card import PUBLIC_CARD_KEYS
from modelfly.errors import BadInput, ServerFault
from modelfly.features import to_rows
from modelfly.registry import Registry
from modelfly.settings import ConfigError, Settings

log = logging.getLogger("modelfly")
_registry: Registry | None = None
_registry_lock = threading.Lock()


def registry() -> Registry:
    """This process's models, set up from the environment on first use."""
    global _registry
    if _registry is None:
        with _registry_lock:
            if _registry is None:
                try:
                    _registry = Registry(Settings.from_env())
                except ConfigError as error:
                    log.error("configuration error: %s", error)
                    raise ServerFault("the server is misconfigured; see its log") from error
    return _registry


def predict(features: Any, model: str | None = None, version: str | None = None) -> dict:
    """Predict with a shipped model.

    features: one row [5.9, 3.0, 5.1, 1.8], many rows [[...], [...]], one record
        {"sepal_length": 5.9, ...} or many records [{...}, {...}]; for a model that takes
        texts alone, also one string or a list of strings.
    model: the name of a model in the models directory; the default model if omitted.
    version: one of the model's versions; its default version (the highest, unless the
        models directory pins another) if omitted.

    Returns {"model", "version", "predictions": [...]} and, for classifiers,
    "probabilities": [{class: probability}, ...]; always one entry per row.
    """
    models = registry()
    loaded = models.get(model, version)
    rows = to_rows(features, loaded.card, models.settings.max_rows,
                   models.settings.max_text_chars)
    try:
        return models.answer(loaded, rows)
    except BadInput:  # values the model has no finite answer for
        raise
    except Exception as error:
        log.exception("model %r failed on %d row(s)", loaded.card["name"], len(rows))
        raise ServerFault(
            f"model {loaded.card['name']!r} failed to predict; the details are in the server log"
        ) from error


def info(model: str | None = None, version: str | None = None) -> dict:
    """Describe a model: its features, classes, training data, metrics and an example input,
    its versions and the default one (of these, `version`'s card; the default's if omitted)."""
    models = registry()
    name = models.resolve(model)
    card = models.card(name, version)
    public = {key: card[key] for key in PUBLIC_CARD_KEYS if key in card}
    public["default"] = name == models.settings.default_model
    public["versions"] = models.catalog.versions(name)
    public["default_version"] = models.catalog.defaults[name]
    if card.get("golden"):
        public["example"] = {"features": card["golden"][0]["features"]}
    return public


def health() -> dict:
    """Liveness: the service answers, and which models it can serve."""
    models = registry()
    return {"status": "ok", "default_model": models.settings.default_model,
            "models": models.names}
