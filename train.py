"""Train every shipped model into models/<name>.joblib + models/<name>.json (its card).

    python train.py                 # rewrite the shipped models in models/
    python train.py --out /tmp/m    # write them elsewhere (the reproducibility test does)

Seeds and splits are fixed, so a re-run with the pinned libraries gives the same answers.
`save_model` (modelfly/card.py) is also how you ship a model of your own: see the README.
"""

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sklearn import metrics
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_diabetes, load_iris
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from modelfly.card import save_model
from modelfly.settings import DEFAULT_MODELS_DIR

SEED = 42


def numeric_features(names: list[str]) -> list[dict]:
    return [{"name": name, "type": "number"} for name in names]


def train_iris(out_dir: Path) -> dict:
    """LogisticRegression on the iris flowers; labels are the species names."""
    iris = load_iris()
    X, y = iris.data, iris.target_names[iris.target]
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, random_state=SEED, stratify=y)
    model = LogisticRegression(max_iter=1000, random_state=SEED).fit(X_train, y_train)
    return save_model(
        model, name="iris", version="1.0.0", out_dir=out_dir, flat=True,
        features=numeric_features(["sepal_length", "sepal_width", "petal_length", "petal_width"]),
        golden_inputs=[[5.9, 3.0, 5.1, 1.8], [5.1, 3.5, 1.4, 0.2], [6.0, 2.7, 4.1, 1.3],
                       X_test[:3].tolist()],
        data=_split("sklearn.datasets.load_iris", len(X), len(X_train), stratified=True),
        metrics=_classification_metrics(y_test, model.predict(X_test)),
    )


def train_penguins(out_dir: Path) -> dict:
    """A Pipeline over the palmerpenguins DataFrame: categorical columns, missing values."""
    from palmerpenguins import load_penguins

    frame = load_penguins()
    numbers = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
    categories = ["island", "sex"]
    X, y = frame[categories + numbers], frame["species"]
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, random_state=SEED, stratify=y)
    prepare = ColumnTransformer([
        ("numbers", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numbers),
        ("categories", make_pipeline(SimpleImputer(strategy="most_frequent"),
                                     OneHotEncoder(handle_unknown="ignore")), categories),
    ])
    model = Pipeline([("prepare", prepare),
                      ("classify", LogisticRegression(max_iter=1000, random_state=SEED))])
    model.fit(X_train, y_train)
    features = [{"name": column, "type": "category",
                 "categories": sorted(frame[column].dropna().unique().tolist())}
                for column in categories] + numeric_features(numbers)
    return save_model(
        model, name="penguins", version="1.0.0", out_dir=out_dir, flat=True, dataframe=True,
        missing_values=True, features=features,
        golden_inputs=[
            {"island": "Torgersen", "sex": "male", "bill_length_mm": 39.1,
             "bill_depth_mm": 18.7, "flipper_length_mm": 181.0, "body_mass_g": 3750.0},
            {"island": "Biscoe", "sex": "female", "bill_length_mm": 46.1,
             "bill_depth_mm": 13.2, "flipper_length_mm": 211.0, "body_mass_g": 4500.0},
            {"island": "Dream", "sex": None, "bill_length_mm": 50.0,
             "bill_depth_mm": 19.5, "flipper_length_mm": None, "body_mass_g": 3900.0},
        ],
        data=_split("palmerpenguins.load_penguins", len(X), len(X_train), stratified=True),
        metrics=_classification_metrics(y_test, model.predict(X_test)),
    )


def train_diabetes(out_dir: Path) -> dict:
    """A Ridge regressor of diabetes progression; answers are numbers, no probabilities."""
    diabetes = load_diabetes()
    X, y = diabetes.data, diabetes.target
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=SEED)
    model = Ridge(alpha=0.1).fit(X_train, y_train)
    return save_model(
        model, name="diabetes", version="1.0.0", out_dir=out_dir, flat=True,
        features=numeric_features(list(diabetes.feature_names)),
        golden_inputs=[row.tolist() for row in X_test[:3]],
        data=_split("sklearn.datasets.load_diabetes", len(X), len(X_train), stratified=False),
        metrics=_regression_metrics(y_test, model.predict(X_test)),
    )


def _split(source: str, rows: int, train_rows: int, stratified: bool) -> dict:
    return {"source": source, "rows": rows, "train_rows": train_rows,
            "test_rows": rows - train_rows,
            "split": f"{'stratified ' if stratified else ''}75/25, random_state={SEED}"}


def _classification_metrics(y_true: Any, y_pred: Any) -> dict:
    return {"accuracy": round(float(metrics.accuracy_score(y_true, y_pred)), 4),
            "f1_macro": round(float(metrics.f1_score(y_true, y_pred, average="macro")), 4)}


def _regression_metrics(y_true: Any, y_pred: Any) -> dict:
    return {"r2": round(float(metrics.r2_score(y_true, y_pred)), 4),
            "mae": round(float(metrics.mean_absolute_error(y_true, y_pred)), 4)}


TRAINERS: dict[str, Callable[[Path], dict]] = {
    "iris": train_iris, "penguins": train_penguins, "diabetes": train_diabetes}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_MODELS_DIR,
                        help="directory to write models and cards to (default: models/)")
    parser.add_argument("models", nargs="*", choices=[[], *TRAINERS], default=[],
                        help="models to train (default: all)")
    args = parser.parse_args(argv)
    for name in args.models or TRAINERS:
        card = TRAINERS[name](args.out)
        print(f"{name} {card['version']}: {card['metrics']} -> {args.out / (name + '.joblib')}")


if __name__ == "__main__":
    main()
