"""The model card: `<name>.json` beside `<name>.joblib`, written, read and checked here.

A card names the model's features (in the estimator's order, with their types and categories),
its classes, data and metrics, the library versions it was saved with, the file's sha256 and
golden inputs with the answers they gave when it was saved. Before unpickling (a pickle runs
code when loaded) the signature must hold when keys are trusted (signatures.py), the file's
sha256 must equal the card's, the running scikit-learn and joblib must be the versions the
model was saved with and the pickle must name only what a model needs (pickle_scan.py); after
loading, the golden inputs must give the golden outputs. A model failing any check is
refused, with a message saying what differs.
"""

import hashlib
import io
import json
import logging
import math
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import joblib
import numpy
import sklearn

from modelfly.catalog import SAFE_NAME_RULE, card_file, is_safe_name, model_file
from modelfly.errors import ModelRefused
from modelfly.features import to_rows
from modelfly.inference import CannotInfer, infer_card
from modelfly.model import LoadedModel
from modelfly.pickle_scan import Scanner, UnsafePickle
from modelfly.settings import DEFAULT_MODELS_DIR
from modelfly.signatures import Verifier, sign, signature_file

log = logging.getLogger("modelfly")

# What `info` shows; the rest of the card (file hash, golden outputs) is for our own checks.
PUBLIC_CARD_KEYS = ("name", "version", "task", "estimator", "features", "missing_values",
                    "classes", "data", "metrics", "trained_with")
GOLDEN_TOLERANCE = 1e-9


def read_card(base: Path) -> dict:
    """The card of the model at `base` (catalog.py: the card is base + .json), as on disk."""
    return json.loads(card_file(base).read_text(encoding="utf-8"))


def save_model(
    estimator: Any,
    *,
    name: str,
    version: str,
    example: Any = None,
    labels: Any = None,
    out_dir: Path = DEFAULT_MODELS_DIR,
    flat: bool = False,
    features: list[dict] | None = None,
    golden_inputs: list[Any] | None = None,
    data: dict | None = None,
    metrics: dict | None = None,
    dataframe: bool | None = None,
    missing_values: bool | None = None,
    texts_alone: bool = False,
    pickle_allow: Sequence[str] = (),
    sign_key: Path | None = None,
) -> dict:
    """Save a fitted estimator and its card, then load it back through the server's checks.

    example: a pandas DataFrame of a few to a few thousand rows of what the model takes; the
        card is inferred from it and the estimator (modelfly/inference.py).
    labels: the true answers of the example's rows (a column name of it, or a sequence);
        they give the card's metrics.
    Written to out_dir/<name>/<version>.joblib and .json, beside the other versions; with flat,
    to out_dir/<name>.joblib and .json, one version per name (the shipped models' layout).
    The other arguments override what is inferred, or stand for it without an example:
    features: [{"name": "x", "type": "number"}, {"name": "c", "type": "category",
        "categories": ["a", "b"]}, ...] in the order the estimator takes them.
    golden_inputs: a few `features` values (any contract shape); their answers are recorded
        now and re-checked every time the model is loaded.
    dataframe: the estimator was fitted on a pandas DataFrame with these column names.
    texts_alone: it takes a list of strings (a Pipeline whose first step is a text vectorizer).
    pickle_allow: modules or module.names of your own the pickle may name (as
        MODELFLY_PICKLE_ALLOW, which the server must then be given too).
    sign_key: a private key file (`python -m modelfly keygen`): the model and its card are
        signed with it, beside them as <version>.sig.
    Returns the card. Raises CannotInfer (what to pass instead) or ModelRefused (the saved
    model fails its checks); then nothing is written.
    """
    kind = None if dataframe is None else "dataframe" if dataframe else "array"
    given = {"features": features, "golden_inputs": golden_inputs, "data": data,
             "metrics": metrics, "input": "text" if texts_alone else kind,
             "missing_values": missing_values}
    if example is not None:
        if isinstance(labels, str):
            if labels not in example.columns:
                raise CannotInfer(f"the example has no column {labels!r} for the labels; its "
                                  f"columns: {', '.join(map(str, example.columns))}")
            example, labels = example.drop(columns=[labels]), example[labels]
        inferred = infer_card(estimator, example, labels)
        given = {key: inferred[key] if value is None else value for key, value in given.items()}
    elif features is None or golden_inputs is None:
        raise CannotInfer("pass example= (a DataFrame of what the model takes), or features= "
                          "and golden_inputs=")
    classes = getattr(estimator, "classes_", None)
    card = {
        "name": name,
        "version": version,
        "task": "classification" if classes is not None else "regression",
        "estimator": " ".join(repr(estimator).split()),
        "input": given["input"] or "array",
        "features": given["features"],
        "missing_values": bool(given["missing_values"]),
        "classes": [str(c) for c in classes] if classes is not None else None,
        "data": given["data"] or {},
        "metrics": given["metrics"] or {},
        "trained_with": library_versions(),
    }
    model = LoadedModel(card, estimator)
    card["golden"] = [
        {"features": inputs, "expected": model.answer(to_rows(inputs, card, sys.maxsize))}
        for inputs in given["golden_inputs"]
    ]
    for part, label in ((name, "name"), (version, "version")):
        if not is_safe_name(part):
            raise CannotInfer(f"the {label} {part!r} {SAFE_NAME_RULE}")
    target = out_dir / (name if flat else f"{name}/{version}")
    new_folder = not target.parent.exists()
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written and checked aside, then moved in: a refused model leaves nothing behind.
    staging = Path(tempfile.mkdtemp(prefix=".saving-", dir=target.parent)) / target.name
    try:
        joblib.dump(estimator, model_file(staging))
        card["sha256"] = hashlib.sha256(model_file(staging).read_bytes()).hexdigest()
        card_file(staging).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
        _, reason = load_checked(staging, name, version, Scanner(pickle_allow))
        if reason is not None:
            raise ModelRefused(f"model {name!r} {version} is refused: {reason}")
        if sign_key is not None:
            sign(staging, sign_key)
        os.replace(model_file(staging), model_file(target))
        os.replace(card_file(staging), card_file(target))
        if sign_key is not None:
            os.replace(signature_file(staging), signature_file(target))
        else:  # a signature of the files this replaced would only mislead
            signature_file(target).unlink(missing_ok=True)
    except BaseException:
        if new_folder:
            shutil.rmtree(target.parent, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(staging.parent, ignore_errors=True)
    return card


def load_checked(base: Path, name: str, version: str, scanner: Scanner | None = None,
                 verifier: Verifier | None = None) -> tuple[LoadedModel | None, str | None]:
    """The model at `base` (catalog.py), which should be `name` `version`, loaded and checked
    against its card; or None and why it is refused.

    Before a byte is unpickled: the signature (with a verifier: the trusted keys), the card,
    the sha256, the library versions and the pickle's scan (scanner: the allow-list).
    """
    try:
        card_bytes = card_file(base).read_bytes()
        data = model_file(base).read_bytes()
        reason = verifier.refusal(base, data, card_bytes) if verifier else None
        if reason is not None:
            return None, reason
        card = json.loads(card_bytes)
    except (OSError, ValueError) as error:
        return None, f"its files cannot be read ({type(error).__name__})"
    if not isinstance(card, dict) or (card.get("name"), card.get("version")) != (name, version):
        return None, (f"{card_file(base).name} is not the card of {name} {version}"
                      if isinstance(card, dict) else f"{card_file(base).name} is not a card")
    if hashlib.sha256(data).hexdigest() != card.get("sha256"):
        return None, (f"{model_file(base).name} does not match the sha256 in its card "
                      "(changed or swapped)")
    reason = version_mismatch(card.get("trained_with") or {})
    if reason is not None:
        return None, reason
    try:
        (scanner or Scanner()).scan(data)
    except UnsafePickle as error:
        return None, str(error)
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


def fast_path_mismatch(model: LoadedModel) -> str | None:
    """Compare the model's fast path with scikit-learn's own call on the golden inputs, bit
    for bit; describe the first difference, or None."""
    estimator = model.estimator
    own = estimator.predict_proba if model.classes else estimator.predict
    for i, golden in enumerate(model.card.get("golden") or []):
        inputs = model.inputs(to_rows(golden["features"], model.card, max_rows=sys.maxsize))
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


def answers_match(got: Any, want: Any, tolerance: float = GOLDEN_TOLERANCE) -> bool:
    """Whether two answers agree: floats within `tolerance`, everything else exactly."""
    if isinstance(want, float) and isinstance(got, (int, float)):
        return math.isclose(got, want, rel_tol=tolerance, abs_tol=tolerance)
    if isinstance(want, list) and isinstance(got, list):
        return len(got) == len(want) and all(
            answers_match(g, w, tolerance) for g, w in zip(got, want, strict=True))
    if isinstance(want, dict) and isinstance(got, dict):
        return got.keys() == want.keys() and all(
            answers_match(got[k], want[k], tolerance) for k in want)
    return got == want
