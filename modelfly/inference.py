"""A model card inferred from a fitted estimator and an example of what it takes.

Feature names and order come from the estimator (`feature_names_in_`), else from the example's
columns (checked against `n_features_in_`); each feature is a `number`, a `category`, whose
categories are the fitted encoders' where the estimator has one for it, else the example's, or
a `text`, where a text vectorizer takes the column; a Pipeline whose first step is a text
vectorizer takes texts alone (the example's one column).
Whether missing values are accepted is found by trying the estimator on them, feature by
feature. Golden inputs
are the example's first complete rows; labels, where given, give the metrics.
"""

import json
import math
from typing import Any

from modelfly.features import to_rows
from modelfly.model import LoadedModel

GOLDEN_ROWS = 3


class CannotInfer(ValueError):
    """The card cannot be inferred; the message says what to pass instead."""


def infer_card(estimator: Any, example: Any, labels: Any = None) -> dict:
    """save_model's arguments for `estimator`, from `example` (a pandas DataFrame of inputs)
    and `labels` (the true answers of its rows, or None): features, dataframe, missing_values,
    golden_inputs, metrics and data."""
    if not hasattr(example, "columns") or len(example) == 0:
        raise CannotInfer("the example must be a table (a DataFrame) of at least one row")
    names = getattr(estimator, "feature_names_in_", None)
    dataframe = names is not None
    texts_alone = _is_vectorizer(getattr(estimator, "steps", [(None, None)])[0][1])
    if texts_alone:
        if len(example.columns) != 1:
            raise CannotInfer("the estimator takes texts alone (its first step is a text "
                              "vectorizer): give an example with one column, of texts")
        names = [str(example.columns[0])]
    elif dataframe:
        names = [str(name) for name in names]
        absent = [name for name in names if name not in example.columns]
        extra = [str(column) for column in example.columns if column not in names]
        if absent or extra:
            raise CannotInfer(
                "the example's columns do not fit the estimator, which takes "
                + ", ".join(names)
                + (f"; the example lacks {', '.join(absent)}" if absent else "")
                + (f"; it has {', '.join(extra)} besides: drop them from the example, or name "
                   "the column of true answers with --labels"
                   if extra else ""))
        example = example[names]
    else:
        names = [str(column) for column in example.columns]
        expected = getattr(estimator, "n_features_in_", None)
        if expected is not None and expected != len(names):
            raise CannotInfer(f"the example has {len(names)} column(s), the estimator takes "
                              f"{expected}; give an example with one column per feature")
    fitted = {names[0]: {"type": "text"}} if texts_alone else fitted_columns(estimator)
    features = [_feature(name, example[name], fitted.get(name), dataframe) for name in names]
    kind = "text" if texts_alone else "dataframe" if dataframe else "array"
    card = {"name": "inferred", "version": "0", "features": features,
            "input": kind, "missing_values": True,
            "classes": _classes(estimator)}
    records = json.loads(example.to_json(orient="records"))
    for record in records:
        for feature in features:
            value = record[feature["name"]]
            if feature["type"] != "number" and value is not None:
                record[feature["name"]] = str(value)
    complete = [record for record in records if None not in record.values()]
    if not complete:
        raise CannotInfer("no row of the example has a value in every column; give one")
    golden = complete[:GOLDEN_ROWS]
    accepted = missing_accepted(LoadedModel(card, estimator), golden[0])
    # one flag for the card where all features agree; else each feature that takes null says so
    card["missing_values"] = missing = all(accepted.values())
    if any(accepted.values()) and not missing:
        for feature in features:
            if accepted[feature["name"]]:
                feature["missing"] = True
    metrics = {}
    if labels is not None:
        # measured on the rows the model can take
        usable = [(record, label) for record, label in zip(records, labels, strict=True)
                  if all(value is not None or accepted[name] for name, value in record.items())]
        metrics = measure(LoadedModel(card, estimator), [record for record, _ in usable],
                          [label for _, label in usable])
    return {"features": features, "input": kind, "missing_values": missing,
            "golden_inputs": golden if dataframe else [[r[n] for n in names] for r in golden],
            "metrics": metrics, "data": {"example_rows": len(records)}}


def fitted_columns(estimator: Any) -> dict[str, dict]:
    """What the ColumnTransformers of a Pipeline make of named columns: {column: {"type":
    "text"}} for a text vectorizer's, {column: {"type": "category", "categories": [...]}} for
    an encoder's (OneHotEncoder, OrdinalEncoder)."""
    found: dict[str, dict] = {}
    for step in _parts(estimator):
        for _, transformer, columns in getattr(step, "transformers_", []):
            parts = _parts(transformer)
            if isinstance(columns, str) and any(map(_is_vectorizer, parts)):
                found[columns] = {"type": "text"}
            if not isinstance(columns, (list, tuple)) or not all(
                    isinstance(c, str) for c in columns):
                continue
            for part in parts:
                categories = getattr(part, "categories_", None)
                if categories is not None and len(categories) == len(columns):
                    for column, values in zip(columns, categories, strict=True):
                        found[column] = {"type": "category", "categories": [
                            v for v in values.tolist() if not _is_nan(v)]}
    return found


def missing_accepted(model: LoadedModel, record: dict) -> dict[str, bool]:
    """{feature: whether the model answers, with finite numbers, the row without it}."""
    accepted = {}
    for feature in model.card["features"]:
        features = {**record, feature["name"]: None}
        if model.card["input"] != "dataframe":
            features = [features[f["name"]] for f in model.card["features"]]
        try:
            model.answer(to_rows(features, model.card, max_rows=1))
            accepted[feature["name"]] = True
        except Exception:  # scikit-learn refuses NaN in many ways, BadInput for non-finite
            accepted[feature["name"]] = False
    return accepted


def measure(model: LoadedModel, records: list[dict], labels: list) -> dict:
    """Accuracy and macro F1 for a classifier, R² and MAE for a regressor, on the example."""
    from sklearn import metrics

    names = [feature["name"] for feature in model.card["features"]]
    rows = to_rows([[record[name] for name in names] for record in records], model.card,
                   max_rows=len(records))
    predicted = model.answer(rows)["predictions"]
    truth = labels
    if model.classes:
        truth = [str(value) for value in truth]
        predicted = [str(value) for value in predicted]
        return {"accuracy": round(float(metrics.accuracy_score(truth, predicted)), 4),
                "f1_macro": round(float(metrics.f1_score(truth, predicted, average="macro")),
                                  4)}
    return {"r2": round(float(metrics.r2_score(truth, predicted)), 4),
            "mae": round(float(metrics.mean_absolute_error(truth, predicted)), 4)}


def _feature(name: str, column: Any, fitted: dict | None, dataframe: bool) -> dict:
    if fitted is not None and fitted["type"] == "text":
        return {"name": name, "type": "text"}
    categories = None if fitted is None else fitted["categories"]
    if categories is not None and all(isinstance(c, str) for c in categories):
        return {"name": name, "type": "category", "categories": categories}
    if categories is not None or _numeric(column):
        return {"name": name, "type": "number"}
    if not dataframe:
        raise CannotInfer(f"column {name!r} of the example is not numeric, and the estimator "
                          "takes an array of numbers")
    values = sorted({str(value) for value in column.dropna().tolist()})
    return {"name": name, "type": "category", "categories": values}


def _classes(estimator: Any) -> list[str] | None:
    classes = getattr(estimator, "classes_", None)
    return None if classes is None else [str(c) for c in classes]


def _numeric(column: Any) -> bool:
    return column.dtype.kind in "iuf"


def _is_vectorizer(step: Any) -> bool:
    """CountVectorizer, TfidfVectorizer, HashingVectorizer: they take strings."""
    return callable(getattr(step, "build_analyzer", None))


def _is_nan(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _parts(estimator: Any) -> list:
    """The estimator and, for a Pipeline, its steps."""
    return [estimator, *(step for _, step in getattr(estimator, "steps", []))]

