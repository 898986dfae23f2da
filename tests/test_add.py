"""`python -m modelfly add`: the estimators our users bring, each added with the command, its
card inferred, then served by the production server and by the Firefly CLI with exactly the
answers the estimator gives in process; bad input refused with exit 2 and nothing written."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import joblib
import numpy
import pandas
import pytest
import requests
from helpers import ROOT, start_firefly, start_serve
from palmerpenguins import load_penguins
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier

from modelfly.card import answers_match, save_model
from modelfly.inference import CannotInfer


def add(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "modelfly", "add", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def penguin_pipeline() -> tuple[Pipeline, pandas.DataFrame]:
    """One-hot categories, imputed and scaled numbers and a text column (a field note, made
    here), fitted on a DataFrame with gaps."""
    frame = load_penguins().drop(columns=["year"])
    frame["note"] = [f"seen on {island} {'at dawn' if i % 3 else 'late'}, bill {bill}"
                     for i, (island, bill) in enumerate(zip(frame["island"],
                                                            frame["bill_length_mm"],
                                                            strict=True))]
    numbers = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
    prepare = ColumnTransformer([
        ("numbers", make_pipeline(SimpleImputer(), StandardScaler()), numbers),
        ("categories", make_pipeline(SimpleImputer(strategy="most_frequent"),
                                     OneHotEncoder(handle_unknown="ignore")), ["island", "sex"]),
        ("note", TfidfVectorizer(), "note")])
    model = Pipeline([("prepare", prepare), ("classify", LogisticRegression(max_iter=1000))])
    return model.fit(frame.drop(columns=["species"]), frame["species"]), frame


def gradient_boosting() -> tuple[HistGradientBoostingClassifier, pandas.DataFrame]:
    """Missing values in a numpy array, which HistGradientBoosting takes as they are."""
    rng = numpy.random.default_rng(0)
    X = rng.normal(size=(400, 3))
    y = numpy.where(X[:, 0] + X[:, 1] > 0, "up", "down")
    X[::5, 1] = numpy.nan
    model = HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(X, y)
    example = pandas.DataFrame(X[:60], columns=["x0", "x1", "x2"]).assign(truth=y[:60])
    return model, example


def integer_classes() -> tuple[DecisionTreeClassifier, pandas.DataFrame]:
    iris = load_iris()
    model = DecisionTreeClassifier(max_depth=3, random_state=0).fit(iris.data, iris.target)
    return model, pandas.DataFrame(iris.data[::5], columns=[f"f{i}" for i in range(4)])


def sentiment() -> tuple[Pipeline, pandas.DataFrame]:
    """A Pipeline whose first step takes strings: it takes texts alone (seed 004's API)."""
    good = ["great film", "loved it", "wonderful acting", "a joy to watch", "please respect"]
    bad = ["awful film", "hated it", "terrible acting", "a bore to watch", "no respect"]
    texts, labels = good * 4 + bad * 4, ["positive"] * 20 + ["negative"] * 20
    model = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(texts, labels)
    return model, pandas.DataFrame({"text": texts, "label": labels})


def regressor() -> tuple[Ridge, pandas.DataFrame]:
    diabetes = load_diabetes()
    model = Ridge(alpha=0.5).fit(diabetes.data, diabetes.target)
    example = pandas.DataFrame(diabetes.data[:40], columns=diabetes.feature_names)
    return model, example.assign(progression=diabetes.target[:40])


CASES = {  # name: (make, example format, labels column)
    "penguin-pipeline": (penguin_pipeline, "csv", "species"),
    "boosting": (gradient_boosting, "jsonl", "truth"),
    "tree": (integer_classes, "csv", None),
    "ridge": (regressor, "jsonl", "progression"),
    "sentiment": (sentiment, "jsonl", "label"),
}


@pytest.fixture(scope="module")
def added(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A models directory of the shipped models plus the four, each added by the command."""
    work = tmp_path_factory.mktemp("add")
    models = work / "models"
    shutil.copytree(ROOT / "models", models)
    made = {}
    for name, (make, fmt, labels) in CASES.items():
        estimator, example = make()
        joblib.dump(estimator, work / f"{name}.joblib")
        path = work / f"{name}.{fmt}"
        if fmt == "csv":
            example.to_csv(path, index=False)
        else:
            example.to_json(path, orient="records", lines=True)
        done = add(work / f"{name}.joblib", "--name", name, "--version", "2.1.0",
                   "--example", path, "--models-dir", models,
                   *(["--labels", labels] if labels else []))
        assert done.returncode == 0, done.stderr
        assert f"added {name} 2.1.0" in done.stdout and "curl -s -X POST" in done.stdout
        made[name] = (estimator, example.drop(columns=[labels]) if labels else example)
    return models, made


def test_the_inferred_cards(added):
    models, _ = added
    card = json.loads((models / "penguin-pipeline" / "2.1.0.json").read_text())
    # tried feature by feature: the imputed columns take null, the text column does not
    assert card["input"] == "dataframe" and card["missing_values"] is False
    assert [f.get("missing", False) for f in card["features"]] == [True] * 6 + [False]
    # the estimator's own order (feature_names_in_), not the ColumnTransformer's
    assert [f["name"] for f in card["features"]] == [
        "island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex",
        "note"]
    assert card["features"][1] == {"name": "bill_length_mm", "type": "number", "missing": True}
    assert {"name": "island", "type": "category", "missing": True,
            "categories": ["Biscoe", "Dream", "Torgersen"]} in card["features"]
    assert {"name": "sex", "type": "category", "categories": ["female", "male"],
            "missing": True} in card["features"]
    assert card["classes"] == ["Adelie", "Chinstrap", "Gentoo"]
    assert card["metrics"]["accuracy"] > 0.9 and "f1_macro" in card["metrics"]
    boosting = json.loads((models / "boosting" / "2.1.0.json").read_text())
    assert boosting["input"] == "array" and boosting["missing_values"] is True
    assert [f["name"] for f in boosting["features"]] == ["x0", "x1", "x2"]
    tree = json.loads((models / "tree" / "2.1.0.json").read_text())
    # tried, not guessed: scikit-learn's trees split on missing values, a Ridge refuses them
    assert tree["missing_values"] is True and tree["classes"] == ["0", "1", "2"]
    assert tree["metrics"] == {}
    ridge = json.loads((models / "ridge" / "2.1.0.json").read_text())
    assert ridge["task"] == "regression" and set(ridge["metrics"]) == {"r2", "mae"}
    assert ridge["missing_values"] is False
    assert {"name": "note", "type": "text"} in card["features"]
    texts = json.loads((models / "sentiment" / "2.1.0.json").read_text())
    assert texts["input"] == "text" and texts["features"] == [{"name": "text", "type": "text"}]
    assert texts["missing_values"] is False and texts["metrics"]["accuracy"] == 1.0
    assert len(ridge["golden"]) == 3


def expected_answer(estimator, example: pandas.DataFrame, name: str) -> dict:
    """What the estimator answers in process for the example's rows, in the contract's form."""
    if hasattr(estimator, "feature_names_in_"):
        inputs = example
    elif list(example.columns) == ["text"]:
        inputs = example["text"].tolist()
    else:
        inputs = example.to_numpy(float)
    answer = {"model": name, "version": "2.1.0",
              "predictions": estimator.predict(inputs).tolist()}
    if hasattr(estimator, "predict_proba"):
        classes = [str(c) for c in estimator.classes_]
        answer["probabilities"] = [dict(zip(classes, row, strict=True))
                                   for row in estimator.predict_proba(inputs).tolist()]
    return answer


def estimator_is_classifier(estimator) -> bool:
    return hasattr(estimator, "classes_")


def request_features(example: pandas.DataFrame, dataframe: bool) -> list:
    """The rows as records or lists, every float exact (to_json would round to 10 digits)."""
    records = example.astype(object).where(example.notna(), None).to_dict("records")
    return records if dataframe else [list(record.values()) for record in records]


@pytest.mark.parametrize("server", ["production", "firefly"])
def test_added_models_answer_what_the_estimator_answers(added, server, tmp_path):
    models, made = added
    env = {"MODELFLY_MODELS_DIR": str(models)}
    running = (start_serve(tmp_path, env) if server == "production"
               else start_firefly(tmp_path, "-c", "firefly.yml", env=env))
    try:
        for name, (estimator, example) in made.items():
            rows = example.iloc[:25]
            features = (rows["text"].tolist() if name == "sentiment"  # a list of strings
                        else request_features(rows, hasattr(estimator, "feature_names_in_")))
            body = {"model": name, "features": features}
            answer = requests.post(running.url + "/predict", json=body, timeout=30)
            assert answer.status_code == 200, answer.text
            want = expected_answer(estimator, rows, name)
            got = answer.json()
            assert got["predictions"] == want["predictions"] or (
                # a regressor's numbers: BLAS may add in another order in another process
                # (its kernels depend on the array's alignment), the last bit at most
                numpy.allclose(got["predictions"], want["predictions"], rtol=1e-14, atol=0)
                and not estimator_is_classifier(estimator)), name
            assert answers_match(got, want, tolerance=1e-14), name
    finally:
        running.stop()


@pytest.mark.parametrize("server", ["production", "firefly"])
def test_text_is_one_string_or_many_and_bounded(added, server, tmp_path):
    models, made = added
    estimator, _ = made["sentiment"]
    env = {"MODELFLY_MODELS_DIR": str(models), "MODELFLY_MAX_TEXT_CHARS": "50"}
    running = (start_serve(tmp_path, env) if server == "production"
               else start_firefly(tmp_path, "-c", "firefly.yml", env=env))

    def call(features) -> requests.Response:
        return requests.post(running.url + "/predict", timeout=30,
                             json={"model": "sentiment", "features": features})

    try:
        one = call("Please respect each other.")
        assert one.status_code == 200
        assert one.json()["predictions"] == estimator.predict(
            ["Please respect each other."]).tolist()
        assert call({"text": "what a joy"}).json()["predictions"] == ["positive"]
        too_long = call(["fine", "x" * 51])
        assert too_long.status_code == 400
        assert too_long.json()["error"] == (
            "row 1, column 'text': received a string of 51 characters; expected a string of "
            "at most 50 characters (MODELFLY_MAX_TEXT_CHARS)")
        not_text = call([["fine"], [3]])
        assert not_text.status_code == 400 and "row 1, column 'text'" in not_text.text
        assert "received 3 (a number)" in not_text.json()["error"]
    finally:
        running.stop()


def test_save_model_in_python_takes_an_example_and_the_overrides(tmp_path):
    estimator, example = regressor()
    card = save_model(estimator, name="ridge", version="1", out_dir=tmp_path,
                      example=example, labels="progression", metrics={"note": "mine"})
    assert card["metrics"] == {"note": "mine"} and card["input"] == "array"
    assert [f["name"] for f in card["features"]] == list(example.columns[:-1])
    with pytest.raises(CannotInfer, match="no column 'answers'"):
        save_model(estimator, name="r2", version="1", out_dir=tmp_path, example=example,
                   labels="answers")
    with pytest.raises(CannotInfer, match="pass example="):
        save_model(estimator, name="r3", version="1", out_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ridge"]
    assert sorted(p.name for p in (tmp_path / "ridge").iterdir()) == ["1.joblib", "1.json"]


def test_bad_input_to_add_writes_nothing(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    estimator, example = integer_classes()
    joblib.dump(estimator, tmp_path / "tree.joblib")
    example.to_csv(tmp_path / "good.csv", index=False)
    example.iloc[:, :3].to_csv(tmp_path / "narrow.csv", index=False)
    (tmp_path / "garbage.joblib").write_bytes(b"\x00 not a pickle")
    joblib.dump({"weights": [1, 2]}, tmp_path / "dict.joblib")
    good = ["--example", tmp_path / "good.csv", "--models-dir", models]
    cases = [
        ([tmp_path / "absent.joblib", "--name", "m", "--version", "1", *good], "cannot load"),
        ([tmp_path / "garbage.joblib", "--name", "m", "--version", "1", *good], "cannot load"),
        ([tmp_path / "dict.joblib", "--name", "m", "--version", "1", *good],
         "holds a dict, not an estimator"),
        ([tmp_path / "tree.joblib", "--name", "m", "--version", "1", "--example",
          tmp_path / "narrow.csv", "--models-dir", models], "the example has 3 column(s), the "
                                                           "estimator takes 4"),
        ([tmp_path / "tree.joblib", "--name", "m", "--version", "1", "--example",
          tmp_path / "absent.csv", "--models-dir", models], "cannot read the example"),
        ([tmp_path / "tree.joblib", "--name", "../x", "--version", "1", *good], "--name '../x'"),
        ([tmp_path / "tree.joblib", "--name", "a/b", "--version", "1", *good], "--name 'a/b'"),
        ([tmp_path / "tree.joblib", "--name", "", "--version", "1", *good], "--name ''"),
        ([tmp_path / "tree.joblib", "--name", "m", "--version", "../1", *good],
         "--version '../1'"),
    ]
    for args, message in cases:
        done = add(*args)
        assert done.returncode == 2 and message in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
    assert list(models.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "dict.joblib", "garbage.joblib", "good.csv", "models", "narrow.csv", "tree.joblib"]
