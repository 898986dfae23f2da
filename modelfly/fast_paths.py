"""scikit-learn's own arithmetic for a few model families, without its per-call input checks.

On every call scikit-learn re-validates its input (dataframe detection, feature names, dtype,
finiteness, fitted state): for one row that is most of the call (LogisticRegression on iris:
about 100 µs of checks around 10 µs of arithmetic; a forest of 100 trees pays a config context
and warning filters per tree). features.py has already checked every value, so for these
families the fitted attributes are applied directly, with the same operations in the same order
as scikit-learn. A loaded model keeps its path only after it has given exactly scikit-learn's own
answers (bit for bit) on the model's golden inputs; any other estimator goes through
scikit-learn.
"""

from collections.abc import Callable
from typing import Any

import numpy

# rows (float64, checked) -> predict_proba for classifiers, predict for regressors.
FastPath = Callable[[numpy.ndarray], numpy.ndarray]

LINEAR_REGRESSORS = {"LinearRegression", "Ridge", "Lasso", "ElasticNet"}
# From this many rows on, the softmax's reductions run column by column (measured).
COLUMNWISE_ROWS = 1000
FORESTS = {"RandomForestClassifier", "ExtraTreesClassifier", "RandomForestRegressor",
           "ExtraTreesRegressor"}


def fast_path(estimator: Any) -> FastPath | None:
    """The fast path for this fitted estimator, or None where scikit-learn must be called."""
    kind = type(estimator).__name__
    if kind == "LogisticRegression" and len(estimator.classes_) > 2:
        return _multinomial(estimator.coef_.T, estimator.intercept_)
    if kind in LINEAR_REGRESSORS and numpy.ndim(estimator.coef_) == 1:
        coef, intercept = estimator.coef_, estimator.intercept_
        return lambda rows: rows @ coef + intercept
    if kind in FORESTS and getattr(estimator, "n_outputs_", 1) == 1:
        return _forest(estimator)
    return None


def _multinomial(coef_t: numpy.ndarray, intercept: numpy.ndarray) -> FastPath:
    # LogisticRegression.predict_proba: decision_function, then sklearn.utils.extmath.softmax.
    def probabilities(rows: numpy.ndarray) -> numpy.ndarray:
        scores = rows @ coef_t + intercept
        if len(rows) < COLUMNWISE_ROWS:
            # ndarray.max and .sum are these reductions behind a Python wrapper; keepdims
            # spares the reshape (the same values; each numpy call counts for one row)
            scores -= numpy.maximum.reduce(scores, axis=1, keepdims=True)
            numpy.exp(scores, out=scores)
            scores /= numpy.add.reduce(scores, axis=1, keepdims=True)
            return scores
        # Many rows: a reduction along a row of a few classes runs element by element
        # (a million iris rows: 45 ms for the max); column by column it runs in vector
        # loops, and gives the same values (a maximum; a sum taken in the same order)
        columns = scores.T
        largest = columns[0].copy()
        for column in columns[1:]:
            numpy.maximum(largest, column, out=largest)
        scores -= largest[:, None]
        numpy.exp(scores, out=scores)
        total = columns[0].copy()
        for column in columns[1:]:
            total += column
        scores /= total[:, None]
        return scores

    return probabilities


def _forest(forest: Any) -> FastPath:
    # ForestClassifier.predict_proba / ForestRegressor.predict: float32 input, each tree's
    # tree_.predict added in order, divided by the number of trees.
    trees = [tree.tree_ for tree in forest.estimators_]
    classes = getattr(forest, "n_classes_", None)

    def average(rows: numpy.ndarray) -> numpy.ndarray:
        inputs = numpy.ascontiguousarray(rows, dtype=numpy.float32)
        if classes is None:
            total = numpy.zeros(len(inputs), dtype=numpy.float64)
            for tree in trees:
                total += tree.predict(inputs)[:, 0]
        else:
            total = numpy.zeros((len(inputs), classes), dtype=numpy.float64)
            for tree in trees:
                total += tree.predict(inputs)[:, :classes]
        total /= len(trees)
        return total

    return average
