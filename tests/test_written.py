"""server/written.py: the answer written from the model's arrays is, byte for byte, orjson's
writing of LoadedModel.answer, for every kind of label and probability."""

import numpy
import orjson
import pytest
from sklearn.datasets import load_diabetes, load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import LinearSVR

from modelfly.features import to_rows
from modelfly.model import LoadedModel
from modelfly.registry import Registry
from modelfly.settings import Settings
from server.written import WRITTEN_FROM_ROWS, written_answer


def written(model: LoadedModel, rows) -> bytes:
    answer = written_answer(model, *model.coded_arrays(rows))
    # from WRITTEN_FROM_ROWS rows on, the lists are written from the arrays
    assert isinstance(answer["predictions"], orjson.Fragment) == (len(rows) >= WRITTEN_FROM_ROWS)
    return orjson.dumps(answer)


def plain(model: LoadedModel, rows) -> bytes:
    return orjson.dumps(model.answer(rows))


def test_the_shipped_models_golden_inputs_and_many_rows():
    registry = Registry(Settings())
    for name in registry.names:
        model = registry.get(name)
        for golden in model.card["golden"]:
            rows = to_rows(golden["features"], model.card, 100)
            assert written(model, rows) == plain(model, rows)
    iris = registry.get("iris")
    many = numpy.random.default_rng(1).uniform(-20, 20, size=(3000, 4))
    assert written(iris, many) == plain(iris, many)
    assert orjson.loads(written(iris, many))["probabilities"][7] == dict(zip(
        iris.classes, iris.estimator.predict_proba(many[7:8])[0].tolist(), strict=True))


def card(estimator, classes=None) -> dict:
    return {"name": "m", "version": "1", "input": "array", "classes": classes,
            "features": [{"name": f"x{i}", "type": "number"}
                         for i in range(estimator.n_features_in_)]}


@pytest.mark.parametrize("labels", ["integers", "booleans"])
def test_labels_that_are_not_strings_are_written_as_json_writes_them(labels):
    data, target = load_iris(return_X_y=True)
    target = target if labels == "integers" else target == 2
    estimator = LogisticRegression(max_iter=500).fit(data, target)
    model = LoadedModel(card(estimator, [str(c) for c in estimator.classes_]), estimator)
    assert written(model, data) == plain(model, data)
    assert orjson.loads(written(model, data[:1]))["predictions"] == [
        estimator.predict(data[:1]).tolist()[0]]


def test_a_classifier_whose_label_is_not_the_most_probable_class():
    data, target = load_iris(return_X_y=True)
    estimator = KNeighborsClassifier(4).fit(data, load_iris(as_frame=True).target_names[target])
    model = LoadedModel(card(estimator, list(estimator.classes_)), estimator)
    assert not model.label_is_argmax
    assert written(model, data) == plain(model, data)


@pytest.mark.parametrize("estimator", [LinearRegression(), LinearSVR()])
def test_regressors_through_the_fast_path_and_scikit_learn(estimator):
    data, target = load_diabetes(return_X_y=True)
    estimator.fit(data, target)
    model = LoadedModel(card(estimator), estimator)
    assert written(model, data) == plain(model, data)
    float32 = LoadedModel(card(estimator), estimator)
    float32.fast = lambda rows: estimator.predict(rows).astype(numpy.float32)
    assert written(float32, data[:200]) == plain(float32, data[:200])


def test_probabilities_of_every_magnitude():
    estimator = LogisticRegression(max_iter=500).fit(*load_iris(return_X_y=True))
    model = LoadedModel(card(estimator, ["a", "b", "c"]), estimator)
    extremes = numpy.array([[0.0, 1.0, 0.0], [1e-300, 1 - 1e-16, 5e-324], [1e-5, 0.5, 0.1],
                            [123.0, 1e22, 2.5e-7]])
    extremes = numpy.tile(extremes, (WRITTEN_FROM_ROWS // len(extremes), 1))
    model.fast = lambda rows: extremes[:len(rows)]
    rows = numpy.zeros((len(extremes), 4))
    assert written(model, rows) == plain(model, rows)
