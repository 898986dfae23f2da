"""A model card inferred from a fitted estimator and an example of what it takes.

Feature names and order come from the estimator (`feature_names_in_`), else from the example's
columns (checked against `n_features_in_`); each feature is a `number` or a `category`, whose
categories are the fitted encoders' where the estimator has one for it, else the example's.
Whether missing values are accepted is found by trying the estimator on them. Golden inputs
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
    if dataframe:
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
    encoded = encoder_categories(estimator)
    features = [_feature(name, example[name], encoded.get(name), dataframe) for name in names]
    card = {"name": "inferred", "version": "0", "features": features,
            "input": "dataframe" if dataframe else "array", "missing_values": True,
            "classes": _classes(estimator)}
    records = json.loads(example.to_json(orient="records"))
    for record in records:
        for feature in features:
            value = record[feature["name"]]
            if feature["type"] == "category" and value is not None:
                record[feature["name"]] = str(value)
    complete = [record for record in records if None not in record.values()]
    if not complete:
        raise CannotInfer("no row of the example has a value in every column; give one")
    golden = complete[:GOLDEN_ROWS]
    card["missing_values"] = missing = accepts_missing(LoadedModel(card, estimator), golden[0])
    metrics = {}
    if labels is not None:
        # measured on the rows the model can take: all, or the complete ones
        usable = [(record, label) for record, label in zip(records, labels, strict=True)
                  if missing or None not in record.values()]
        metrics = measure(LoadedModel(card, estimator), [record for record, _ in usable],
                          [label for _, label in usable])
    return {"features": features, "dataframe": dataframe, "missing_values": missing,
            "golden_inputs": golden if dataframe else [[r[n] for n in names] for r in golden],
            "metrics": metrics, "data": {"example_rows": len(records)}}


def encoder_categories(estimator: Any) -> dict[str, list]:
    """{column: categories} of the OneHotEncoders and OrdinalEncoders that a Pipeline's
    ColumnTransformers apply to named columns."""
    found: dict[str, list] = {}
    for step in _parts(estimator):
        for _, transformer, columns in getattr(step, "transformers_", []):
            if not isinstance(columns, (list, tuple)) or not all(
                    isinstance(c, str) for c in columns):
                continue
            for part in _parts(transformer):
                categories = getattr(part, "categories_", None)
                if categories is not None and len(categories) == len(columns):
                    for column, values in zip(columns, categories, strict=True):
                        found[column] = [v for v in values.tolist() if not _is_nan(v)]
    return found


def accepts_missing(model: LoadedModel, record: dict) -> bool:
    """Whether the model answers, with finite numbers, a row missing any one of its values."""
    for feature in model.card["features"]:
        features = {**record, feature["name"]: None}
        if model.card["input"] != "dataframe":
            features = [features[f["name"]] for f in model.card["features"]]
        try:
            model.answer(to_rows(features, model.card, max_rows=1))
        except Exception:  # scikit-learn refuses NaN in many ways, BadInput for non-finite
            return False
    return True


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


def _feature(name: str, column: Any, categories: list | None, dataframe: bool) -> dict:
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


def _is_nan(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _parts(estimator: Any) -> list:
    """The estimator and, for a Pipeline, its steps."""
    return [estimator, *(step for _, step in getattr(estimator, "steps", []))]

