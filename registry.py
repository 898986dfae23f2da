"""The shipped models: find them, check them before and after unpickling, load each once.

A model is `<name>.joblib` beside its card `<name>.json` in the models directory. Callers name a
model; they never give a path. Before unpickling (a pickle runs code when loaded) the file's
sha256 must equal the card's and the running scikit-learn and joblib must be the versions the
model was saved with; after loading, the card's golden inputs must give the golden outputs.
A model failing any check is refused, with a message saying what differs.
"""

import hashlib
import io
import json
import logging
import math
import platform
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import joblib
import numpy
import sklearn

import green
from batching import Batcher
from config import Settings
from errors import BadInput, ModelNotFound, ModelRefused, describe
from fast_paths import fast_path
from features import Rows, to_rows

log = logging.getLogger("modelfly")

# What `info` shows; the rest of the card (file hash, golden outputs) is for our own checks.
PUBLIC_CARD_KEYS = ("name", "version", "task", "estimator", "features", "missing_values",
                    "classes", "data", "metrics", "trained_with")
GOLDEN_TOLERANCE = 1e-9
ARGMAX_CLASSIFIERS = {"LogisticRegression", "RandomForestClassifier", "ExtraTreesClassifier",
                      "DecisionTreeClassifier"}


def library_versions() -> dict[str, str]:
    """The versions a model card records and the loader compares."""
    return {"python": platform.python_version(), "scikit-learn": sklearn.__version__,
            "numpy": numpy.__version__, "joblib": joblib.__version__}


def version_mismatch(saved_with: dict[str, str]) -> str | None:
    """Why a model saved with `saved_with` cannot be trusted here, or None if it can.

    scikit-learn and joblib must match exactly (an estimator unpickled under another
    scikit-learn can answer wrongly without an error); numpy must share the major version.
    Python is recorded only: the golden check covers what it could change.
    """
    running = library_versions()
    differences = [
        f"{lib} {saved_with.get(lib)} (running {running[lib]})"
        for lib in ("scikit-learn", "joblib")
        if saved_with.get(lib) != running[lib]
    ]
    if str(saved_with.get("numpy", "")).split(".")[0] != running["numpy"].split(".")[0]:
        differences.append(f"numpy {saved_with.get('numpy')} (running {running['numpy']})")
    if differences:
        return "saved with " + ", ".join(differences) + "; retrain it or install those versions"
    return None


class LoadedModel:
    """An estimator with its card: turns checked rows into the contract's answer."""

    def __init__(self, card: dict, estimator: Any) -> None:
        self.card = card
        self.estimator = estimator
        self.classes = [str(c) for c in card.get("classes") or []]
        final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
        # For these, scikit-learn's predict is the class of highest probability, so one
        # predict_proba call gives both answers (the golden check confirms it on each load).
        self.label_is_argmax = type(final).__name__ in ARGMAX_CLASSIFIERS
        # Kept only once it has matched scikit-learn's own answers (fast_path_mismatch).
        self.fast = fast_path(estimator) if final is estimator else None

    def answer(self, rows: Rows) -> dict:
        """Predict for rows already checked by `features.to_rows`; plain Python types only."""
        probabilities, predictions = self._predict(self._inputs(rows))
        self._refuse_non_finite(probabilities if probabilities is not None else predictions)
        answer = {"model": self.card["name"], "version": self.card["version"],
                  "predictions": predictions.tolist()}
        if probabilities is not None:
            answer["probabilities"] = per_row(self.classes, probabilities)
        return answer

    def _refuse_non_finite(self, outputs: numpy.ndarray) -> None:
        """Finite inputs can still overflow the model's arithmetic (iris at 1e308: NaN
        probabilities, where scikit-learn's own predict and its argmax disagree); such an
        answer means nothing, and JSON has no NaN or Infinity."""
        if outputs.dtype.kind != "f" or numpy.isfinite(outputs).all():
            return  # labels, or all finite: the common case in two numpy calls
        finite = numpy.isfinite(outputs).reshape(len(outputs), -1).all(axis=1)
        raise BadInput(
            f"row {int(numpy.argmin(finite))}: model {self.card['name']!r} has no finite "
            "answer for these values; they are too far outside the data it was trained on")

    def _predict(self, inputs: Any) -> tuple[numpy.ndarray | None, numpy.ndarray]:
        """(class probabilities, or None for models without them; predictions)."""
        if self.fast is not None:
            outputs = self.fast(inputs)
            if self.classes:
                return outputs, self.estimator.classes_[outputs.argmax(axis=1)]
            return None, outputs
        # features.to_rows has checked every value: scikit-learn need not check them again.
        with sklearn.config_context(assume_finite=True):
            if self.classes and hasattr(self.estimator, "predict_proba"):
                probabilities = self.estimator.predict_proba(inputs)
                if self.label_is_argmax:
                    return probabilities, self.estimator.classes_[probabilities.argmax(axis=1)]
                return probabilities, self.estimator.predict(inputs)
            return None, self.estimator.predict(inputs)

    def _inputs(self, rows: Rows) -> Any:
        if self.card.get("input") != "dataframe":
            return numpy.asarray(rows, dtype=float)
        import pandas  # only models trained on a DataFrame need it

        columns = {}
        for i, feature in enumerate(self.card["features"]):
            values = [row[i] for row in rows]
            if feature["type"] == "number":
                columns[feature["name"]] = numpy.array(
                    [math.nan if v is None else v for v in values], dtype=float)
            else:
                columns[feature["name"]] = pandas.Series(values, dtype="str")
        return pandas.DataFrame(columns)


def per_row(classes: list[str], probabilities: numpy.ndarray) -> list[dict[str, float]]:
    """[{class: probability}, ...], one dict per row, filled column by column (for 10,000 rows
    2.3 ms; a dict(zip(classes, row)) per row took 6 ms)."""
    rows: list[dict[str, float]] = [{} for _ in range(len(probabilities))]
    for name, column in zip(classes, probabilities.T.tolist(), strict=True):
        for row, value in zip(rows, column, strict=True):
            row[name] = value
    return rows


def fast_path_mismatch(model: LoadedModel) -> str | None:
    """Compare the model's fast path with scikit-learn's own call on the golden inputs, bit
    for bit; describe the first difference, or None."""
    estimator = model.estimator
    own = estimator.predict_proba if model.classes else estimator.predict
    for i, golden in enumerate(model.card.get("golden") or []):
        inputs = model._inputs(to_rows(golden["features"], model.card, max_rows=sys.maxsize))
        try:
            if not numpy.array_equal(model.fast(inputs), own(inputs)):
                return f"golden input {i}"
        except Exception as error:
            return f"golden input {i} ({type(error).__name__})"
    return None


def golden_mismatch(model: LoadedModel) -> str | None:
    """Re-run the card's golden inputs; describe the first answer that differs, or None."""
    for i, golden in enumerate(model.card.get("golden") or []):
        got = model.answer(to_rows(golden["features"], model.card, max_rows=sys.maxsize))
        expected = golden["expected"]
        for key, want in expected.items():
            if not answers_match(got.get(key), want):
                return f"golden input {i} gave {key} {got.get(key)!r}, the card expects {want!r}"
    return None


def answers_match(got: Any, want: Any) -> bool:
    if isinstance(want, float) and isinstance(got, (int, float)):
        return math.isclose(got, want, rel_tol=GOLDEN_TOLERANCE, abs_tol=GOLDEN_TOLERANCE)
    if isinstance(want, list) and isinstance(got, list):
        return len(got) == len(want) and all(map(answers_match, got, want))
    if isinstance(want, dict) and isinstance(got, dict):
        return got.keys() == want.keys() and all(answers_match(got[k], want[k]) for k in want)
    return got == want


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
        self.on_batch: Callable[[int], None] | None = None
        self._loaded: dict[str, LoadedModel] = {}
        self._batchers: dict[str, Batcher] = {}
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
        path = self.settings.models_dir / f"{self.resolve(name)}.json"
        return json.loads(path.read_text(encoding="utf-8"))

    def get(self, name: str) -> LoadedModel:
        """The checked, loaded model; loads it on first use. Raises ModelRefused if it fails."""
        name = self.resolve(name)
        loaded = self._loaded.get(name)
        if loaded is not None:
            return loaded
        with self._locks[name]:
            if name not in self._loaded and name not in self.refusals:
                started = time.perf_counter()
                model, reason = self._load(name)
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
        """The model's answer for checked rows: in the production server's greenlets (green.py)
        through the model's micro-batcher, so concurrent requests share model calls; else
        directly (also when MODELFLY_BATCH_MAX_ROWS=1: no batch could hold two requests)."""
        if self.settings.batch_max_rows <= 1 or not green.inside():
            return model.answer(rows)
        name = model.card["name"]
        if name not in self._batchers:
            self._batchers[name] = Batcher(model, self.settings.batch_max_rows,
                                           self.settings.batch_wait_ms / 1000, self.on_batch)
        return self._batchers[name].answer(rows)

    def _load(self, name: str) -> tuple[LoadedModel | None, str | None]:
        """The loaded model, or None and the reason it is refused."""
        card = self.card(name)
        data = (self.settings.models_dir / f"{name}.joblib").read_bytes()
        if hashlib.sha256(data).hexdigest() != card.get("sha256"):
            return None, f"{name}.joblib does not match the sha256 in its card (changed or swapped)"
        reason = version_mismatch(card.get("trained_with") or {})
        if reason is not None:
            return None, reason
        try:
            model = LoadedModel(card, joblib.load(io.BytesIO(data)))
        except Exception:
            log.exception("unpickling model %r failed", name)
            return None, "the file could not be unpickled"
        try:
            differs = fast_path_mismatch(model) if model.fast is not None else None
            if differs:
                log.warning("model %r: the fast path differs from scikit-learn on %s; "
                            "scikit-learn answers instead", name, differs)
                model.fast = None
            reason = golden_mismatch(model)
        except Exception:
            log.exception("golden inputs of model %r failed", name)
            reason = "its golden inputs raised an error"
        return (None, reason) if reason else (model, None)
