"""The input contract, in process: every accepted shape and every refusal."""

import math
import re

import numpy
import pytest

from modelfly.errors import BadInput, ModelNotFound, TooManyRows
from modelfly.features import to_rows
from predict import predict, registry

IRIS_NAMES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
ROW = [5.9, 3.0, 5.1, 1.8]
PENGUIN = {"island": "Dream", "sex": None, "bill_length_mm": 50.0, "bill_depth_mm": 19.5,
           "flipper_length_mm": None, "body_mass_g": 3900}


def sklearn_answer(name: str, inputs) -> tuple[list, list | None]:
    """What the estimator itself says, bypassing our code."""
    estimator = registry().get(name).estimator
    predictions = estimator.predict(inputs).tolist()
    probs = estimator.predict_proba(inputs).tolist() if hasattr(estimator, "predict_proba") \
        else None
    return predictions, probs


def test_one_row_matches_the_estimator():
    answer = predict(ROW)
    predictions, probs = sklearn_answer("iris", [ROW])
    assert answer["model"] == "iris" and answer["version"] == "1.0.0"
    assert answer["predictions"] == predictions
    assert [list(p.values()) for p in answer["probabilities"]] == probs
    assert list(answer["probabilities"][0]) == ["setosa", "versicolor", "virginica"]
    assert math.isclose(sum(answer["probabilities"][0].values()), 1.0)


def test_many_rows_keep_their_order():
    rows = [ROW, [5.1, 3.5, 1.4, 0.2], [6.0, 2.7, 4.1, 1.3]]
    answer = predict(rows)
    assert answer["predictions"] == sklearn_answer("iris", rows)[0]
    assert answer["predictions"] == ["virginica", "setosa", "versicolor"]


def test_records_equal_rows():
    record = dict(zip(IRIS_NAMES, ROW, strict=True))
    assert predict(record) == predict(ROW)
    assert predict([record, record])["predictions"] == predict([ROW, ROW])["predictions"]


def test_integers_are_numbers():
    assert predict([6, 3, 5, 2])["predictions"] == sklearn_answer("iris", [[6, 3, 5, 2]])[0]


def test_answers_are_plain_python_types():
    for value in (predict(ROW), predict(PENGUIN, model="penguins"),
                  predict([0.0] * 10, model="diabetes")):
        for prediction in value["predictions"]:
            assert type(prediction) in (str, float)
        for probs in value.get("probabilities", []):
            assert all(type(p) is float for p in probs.values())


def test_penguin_records_with_missing_values():
    import pandas

    answer = predict([PENGUIN, {**PENGUIN, "sex": "male", "island": "Biscoe"}], model="penguins")
    frame = pandas.DataFrame([PENGUIN, {**PENGUIN, "sex": "male", "island": "Biscoe"}])
    assert answer["predictions"] == sklearn_answer("penguins", frame)[0]
    assert set(answer["probabilities"][0]) == {"Adelie", "Chinstrap", "Gentoo"}


def test_regressor_answers_numbers_without_probabilities():
    rows = [[0.0] * 10, [0.05] * 10]
    answer = predict(rows, model="diabetes")
    assert answer["predictions"] == sklearn_answer("diabetes", rows)[0]
    assert "probabilities" not in answer


@pytest.mark.parametrize("features, message", [
    ([1, 2, 3], "row 0 has 3 value(s); expected 4: sepal_length"),
    ([[1, 2, 3, 4], [1, 2]], "row 1 has 2 value(s); expected 4"),
    ([], "features is an empty list"),
    ([[]], "row 0 has 0 value(s)"),
    ({}, "missing column(s) 'sepal_length'"),
    ("5.9,3.0", 'received "5.9,3.0" (a string)'),
    (5.9, "received 5.9 (a number)"),
    (None, "received null"),
    ([1, "a", 3, 4], "column 'sepal_width': received \"a\" (a string); expected a finite number"),
    (["5.9", 3, 5, 2], 'received "5.9" (a string)'),
    ([True, 3, 5, 2], "received true (a boolean)"),
    ([float("nan"), 3, 5, 2], "received NaN; expected a finite number"),
    ([float("inf"), 3, 5, 2], "received Infinity"),
    ([-float("inf"), 3, 5, 2], "received -Infinity"),
    ([None, 3, 5, 2], "model 'iris' does not accept missing values"),
    ([10**400, 3, 5, 2], "received 1000000000000000000000000000000000000... (a number)"),
    ([[1, 2], 3, 4, 5], "features mixes rows, records and single values"),
    ([[[1, 2, 3, 4]]], "row 0 has 1 value(s)"),
    ([[[1], 2, 3, 4]], "column 'sepal_length': received a list of 1 item(s)"),
    ({**dict(zip(IRIS_NAMES, ROW, strict=True)), "colour": "red"}, "unknown column(s) 'colour'"),
    ({"sepal_length": 5.9}, "missing column(s) 'sepal_width', 'petal_length', 'petal_width'"),
])
def test_bad_features_are_refused_with_what_was_received(features, message):
    with pytest.raises(BadInput) as refusal:
        predict(features)
    assert refusal.value.status == 400
    assert message in str(refusal.value)


def test_unknown_category_names_the_allowed_ones():
    with pytest.raises(BadInput, match="received \"Atlantis\" \\(a string\\); expected one of "
                                       "'Biscoe', 'Dream', 'Torgersen' or null"):
        predict({**PENGUIN, "island": "Atlantis"}, model="penguins")


def test_too_many_rows(monkeypatch):
    limit = registry().settings.max_rows
    assert limit == 10_000
    assert len(predict([ROW] * limit)["predictions"]) == limit
    with pytest.raises(TooManyRows, match="received 10001 rows; at most 10000"):
        predict([ROW] * (limit + 1))


@pytest.mark.parametrize("name", ["nope", "../models/iris", "/etc/passwd", "iris.joblib", 3, ""])
def test_only_shipped_models_can_be_named(name):
    with pytest.raises(ModelNotFound) as refusal:
        predict(ROW, model=name)
    assert refusal.value.status == 404
    assert "available models: diabetes, iris, penguins" in str(refusal.value)


def test_long_values_are_truncated_in_messages():
    with pytest.raises(BadInput) as refusal:
        predict(["x" * 10_000, 1, 2, 3])
    assert len(str(refusal.value)) < 200


@pytest.mark.parametrize("bad, message", [
    ([1, True, 3, 4], "row 7000, column 'sepal_width': received true (a boolean)"),
    ([1, 2, 3, 10**400], "row 7000, column 'petal_width': received 1000000"),
    ([1, 2, float("nan"), 4], "row 7000, column 'petal_length': received NaN"),
    ([1, 2, 3], "row 7000 has 3 value(s); expected 4"),
])
def test_a_bad_value_deep_in_a_large_batch_is_found_and_named(bad, message):
    rows = [ROW] * 9000  # checked by numpy first (VECTOR_CHECK_ROWS)
    rows[7000] = bad
    with pytest.raises(BadInput, match=re.escape(message)):
        predict(rows)


def test_many_plain_rows_come_back_as_floats():
    card = registry().card("iris")
    rows = [[5, 3, 5, 2], [5.9, 3.0, 5.1, 1.8]] * 500
    checked = to_rows(rows, card, max_rows=10_000)
    assert checked.dtype == numpy.float64 and checked.shape == (1000, 4)
    assert checked.tolist() == [[float(v) for v in row] for row in rows]


@pytest.mark.parametrize("model, rows, row", [
    ("iris", [[1e308] * 4], 0),  # NaN probabilities
    ("iris", [ROW] * 3 + [[1e308] * 4] + [ROW] * 9, 3),
    ("diabetes", [[0.0] * 10, [1e308] * 10], 1),  # an infinite prediction
])
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",
                            "ignore:invalid value encountered:RuntimeWarning")  # numpy's, expected
def test_values_the_model_has_no_finite_answer_for_are_refused(model, rows, row):
    with pytest.raises(BadInput, match=rf"^row {row}: model '{model}' has no finite answer"):
        predict(rows, model=model)


def test_text_features_and_null_taken_feature_by_feature():
    card = {"name": "m", "missing_values": False, "features": [
        {"name": "x", "type": "number", "missing": True}, {"name": "t", "type": "text"}]}
    assert to_rows({"x": None, "t": "hi"}, card, max_rows=10) == [[None, "hi"]]
    with pytest.raises(BadInput, match=re.escape(
            "row 0, column 't': received null; expected a string (model 'm' does not accept "
            "missing values in this column)")):
        to_rows({"x": 1, "t": None}, card, max_rows=10)
    with pytest.raises(BadInput, match=re.escape(
            "row 0, column 't': received a string of 6 characters; expected a string of at "
            "most 5 characters (MODELFLY_MAX_TEXT_CHARS)")):
        to_rows({"x": 1, "t": "sixsix"}, card, max_rows=10, max_text_chars=5)
    texts = {"name": "s", "input": "text", "missing_values": False,
             "features": [{"name": "text", "type": "text"}]}
    assert to_rows("one", texts, max_rows=10) == [["one"]]
    assert to_rows(["one", "two"], texts, max_rows=10) == [["one"], ["two"]]
    assert to_rows({"text": "one"}, texts, max_rows=10) == [["one"]]
    with pytest.raises(TooManyRows):
        to_rows(["a", "b", "c"], texts, max_rows=2)
