"""The fast paths give scikit-learn's own answers bit for bit, and one that does not is dropped
at load time rather than served."""

import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import ElasticNet, Lasso, LinearRegression, LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import modelfly.model as model_module
from modelfly.fast_paths import COLUMNWISE_ROWS, fast_path
from modelfly.registry import Registry
from modelfly.settings import Settings

IRIS, DIABETES = load_iris(), load_diabetes()
IRIS_LABELS = IRIS.target_names[IRIS.target]
CLASSIFIERS = [
    LogisticRegression(max_iter=1000).fit(IRIS.data, IRIS_LABELS),
    RandomForestClassifier(n_estimators=20, random_state=0).fit(IRIS.data, IRIS_LABELS),
    ExtraTreesClassifier(n_estimators=20, random_state=0).fit(IRIS.data, IRIS.target),
]
REGRESSORS = [
    model.fit(DIABETES.data, DIABETES.target)
    for model in (LinearRegression(), Ridge(), Lasso(alpha=0.01), ElasticNet(alpha=0.01),
                  RandomForestRegressor(n_estimators=10, random_state=0),
                  ExtraTreesRegressor(n_estimators=10, random_state=0))
]


def rows_of(width: int):
    value = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False)
    return st.lists(st.lists(value, min_size=width, max_size=width), min_size=1, max_size=40)


@pytest.mark.parametrize("model", CLASSIFIERS + REGRESSORS, ids=lambda m: type(m).__name__)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_paths_equal_scikit_learn(model, data):
    inputs = numpy.array(data.draw(rows_of(model.n_features_in_)), dtype=float)
    own = model.predict_proba if hasattr(model, "classes_") else model.predict
    assert numpy.array_equal(fast_path(model)(inputs), own(inputs))


@pytest.mark.parametrize("rows", [COLUMNWISE_ROWS - 1, COLUMNWISE_ROWS, 20_000])
def test_many_rows_take_the_columnwise_softmax_and_still_equal_scikit_learn(rows):
    rng = numpy.random.default_rng(rows)
    wide = numpy.hstack([IRIS.data, IRIS.data ** 2])
    five = LogisticRegression(max_iter=3000).fit(wide, IRIS.target * 2 + (IRIS.data[:, 0] > 5.8))
    for model, width in ((CLASSIFIERS[0], 4), (five, 8)):
        inputs = rng.uniform(-60, 60, size=(rows, width))
        assert numpy.array_equal(fast_path(model)(inputs), model.predict_proba(inputs))


def test_other_estimators_go_through_scikit_learn():
    binary = IRIS.target < 2
    assert fast_path(LogisticRegression().fit(IRIS.data[binary], IRIS.target[binary])) is None
    assert fast_path(make_pipeline(StandardScaler(), LogisticRegression()).fit(
        IRIS.data, IRIS.target)) is None
    shipped = Registry(Settings())
    assert shipped.get("iris").fast is not None
    assert shipped.get("diabetes").fast is not None
    assert shipped.get("penguins").fast is None  # a Pipeline on a DataFrame


def test_a_fast_path_that_differs_is_dropped_and_scikit_learn_answers(monkeypatch, caplog):
    def off_by_a_little(estimator):
        own = fast_path(estimator)
        return None if own is None else (lambda rows: own(rows) * (1 + 1e-15))

    monkeypatch.setattr(model_module, "fast_path", off_by_a_little)
    models = Registry(Settings())
    iris = models.get("iris")
    assert iris.fast is None
    assert "the fast path differs from scikit-learn on golden input 0" in caplog.text
    row = [[5.9, 3.0, 5.1, 1.8]]
    assert iris.answer(row)["probabilities"][0] == dict(zip(
        iris.classes, iris.estimator.predict_proba(numpy.array(row))[0].tolist(), strict=True))


def test_many_rows_go_through_a_fast_path_in_blocks_with_scikit_learns_answers():
    iris = Registry(Settings()).get("iris")
    for rows in (model_module.BLOCK_ROWS, model_module.BLOCK_ROWS * 3 + 17):
        inputs = numpy.random.default_rng(rows).uniform([4, 2, 1, 0.1], [8, 4.5, 7, 2.5],
                                                        size=(rows, 4))
        predictions, probabilities, codes = iris.coded_arrays(inputs)
        assert numpy.array_equal(probabilities, iris.estimator.predict_proba(inputs))
        assert numpy.array_equal(predictions, iris.estimator.predict(inputs))
        assert numpy.array_equal(codes, probabilities.argmax(axis=1))
    forest = REGRESSORS[4]
    loaded = model_module.LoadedModel({"name": "f", "version": "1", "input": "array"}, forest)
    inputs = numpy.random.default_rng(1).normal(size=(model_module.BLOCK_ROWS + 5, 10))
    assert numpy.array_equal(loaded.arrays(inputs)[0], forest.predict(inputs))


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 3000), st.integers(2, 6), st.integers(0, 2**32 - 1))
def test_most_probable_is_argmax_ties_included(rows, classes, seed):
    # rounded to tenths, so that many rows tie for the highest
    probabilities = numpy.random.default_rng(seed).random((rows, classes)).round(1)
    assert numpy.array_equal(model_module.most_probable(probabilities),
                             probabilities.argmax(axis=1))
