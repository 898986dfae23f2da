"""A loaded model: an estimator with its card, turning checked rows into the contract's answer."""

import math
from typing import Any

import numpy
import sklearn

from modelfly.errors import BadInput
from modelfly.fast_paths import COLUMNWISE_ROWS, fast_path
from modelfly.features import Rows

# A fast path takes many rows this many at a time, each block's arithmetic in the CPU's cache
# (a million iris rows: 37 -> 30 ms, bit for bit the same answers).
BLOCK_ROWS = 16384
ARGMAX_CLASSIFIERS = {"LogisticRegression", "RandomForestClassifier", "ExtraTreesClassifier",
                      "DecisionTreeClassifier"}


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
        # Kept only once it has matched scikit-learn's own answers (card.fast_path_mismatch);
        # the paths take float arrays, not the DataFrame of a model fitted on one.
        plain = final is estimator and card.get("input", "array") == "array"
        self.fast = fast_path(estimator) if plain else None

    def answer(self, rows: Rows) -> dict:
        """Predict for rows already checked by `features.to_rows`; plain Python types only."""
        return self.answer_of(*self.arrays(rows))

    def answer_of(self, predictions: numpy.ndarray,
                  probabilities: numpy.ndarray | None) -> dict:
        """The answer of the arrays `arrays(rows)` gives."""
        answer = {"model": self.card["name"], "version": self.card["version"],
                  "predictions": predictions.tolist()}
        if probabilities is not None:
            answer["probabilities"] = per_row(self.classes, probabilities)
        return answer

    def arrays(self, rows: Rows) -> tuple[numpy.ndarray, numpy.ndarray | None]:
        """The answer as arrays: the predictions, and the probabilities (a column per class)
        or None; BadInput if the model has no finite answer for a row."""
        predictions, probabilities, _ = self.coded_arrays(rows)
        return predictions, probabilities

    def coded_arrays(self, rows: Rows) -> tuple[numpy.ndarray, numpy.ndarray | None,
                                                numpy.ndarray | None]:
        """arrays(rows), and where each label is the class of highest probability, its place
        in the estimator's classes_ (else None): what labels are encoded from."""
        probabilities, predictions, codes = self._predict(self.inputs(rows))
        self._refuse_non_finite(probabilities if probabilities is not None else predictions)
        return predictions, probabilities, codes

    def inputs(self, rows: Rows) -> Any:
        """Checked rows as the estimator takes them: a float array, a DataFrame, or the texts
        of a model that takes texts alone."""
        kind = self.card.get("input")
        if kind == "text":
            return [row[0] for row in rows]
        if kind != "dataframe":
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

    def _predict(self, inputs: Any) -> tuple[numpy.ndarray | None, numpy.ndarray,
                                             numpy.ndarray | None]:
        """(class probabilities, or None for models without them; predictions; the labels'
        places in classes_, where they are the most probable class, or None)."""
        if self.fast is not None:
            outputs, codes = self._fast_in_blocks(inputs)
            if self.classes:
                return outputs, self.estimator.classes_[codes], codes
            return None, outputs, None
        # features.to_rows has checked every value: scikit-learn need not check them again.
        with sklearn.config_context(assume_finite=True):
            if self.classes and hasattr(self.estimator, "predict_proba"):
                probabilities = self.estimator.predict_proba(inputs)
                if self.label_is_argmax:
                    codes = most_probable(probabilities)
                    return probabilities, self.estimator.classes_[codes], codes
                return probabilities, self.estimator.predict(inputs), None
            return None, self.estimator.predict(inputs), None

    def _fast_in_blocks(self, inputs: numpy.ndarray) -> tuple[numpy.ndarray,
                                                              numpy.ndarray | None]:
        """The fast path's outputs, and for a classifier each row's most probable class."""
        if len(inputs) <= BLOCK_ROWS:
            outputs = self.fast(inputs)
            return outputs, most_probable(outputs) if self.classes else None
        outputs = codes = None
        for start in range(0, len(inputs), BLOCK_ROWS):
            block = self.fast(inputs[start:start + BLOCK_ROWS])
            if outputs is None:
                outputs = numpy.empty((len(inputs), *block.shape[1:]), dtype=block.dtype)
                codes = numpy.empty(len(inputs), dtype=numpy.intp) if self.classes else None
            outputs[start:start + len(block)] = block
            if codes is not None:
                codes[start:start + len(block)] = most_probable(block)
        return outputs, codes


def most_probable(probabilities: numpy.ndarray) -> numpy.ndarray:
    """probabilities.argmax(axis=1): the first of the highest in each row. From
    COLUMNWISE_ROWS rows on, column by column, as the fast paths' softmax does: along a row of
    a few classes argmax runs element by element (16,384 iris rows: 130 -> 66 µs). Rows with
    NaN may differ; they are refused (_refuse_non_finite)."""
    if len(probabilities) < COLUMNWISE_ROWS:
        return probabilities.argmax(axis=1)
    columns = numpy.ascontiguousarray(probabilities.T)
    codes = numpy.zeros(len(probabilities), dtype=numpy.intp)
    highest = columns[0].copy()
    higher = numpy.empty(len(probabilities), dtype=bool)
    for place, column in enumerate(columns[1:], start=1):
        numpy.greater(column, highest, out=higher)  # strictly: a tie keeps the first
        numpy.copyto(codes, place, where=higher)
        numpy.maximum(highest, column, out=highest)
    return codes


def per_row(classes: list[str], probabilities: numpy.ndarray) -> list[dict[str, float]]:
    """[{class: probability}, ...], one dict per row, filled column by column (for 10,000 rows
    2.3 ms; a dict(zip(classes, row)) per row took 6 ms)."""
    rows: list[dict[str, float]] = [{} for _ in range(len(probabilities))]
    for name, column in zip(classes, probabilities.T.tolist(), strict=True):
        for row, value in zip(rows, column, strict=True):
            row[name] = value
    return rows
