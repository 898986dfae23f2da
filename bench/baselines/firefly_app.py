"""Baseline: the bare Firefly app serving a plain predict function, as a WSGI app for gunicorn.

    gunicorn -w 2 --pythonpath bench/baselines firefly_app:app

What a Firefly user writes without modelfly: load the pickles, turn `features` into what the
estimator takes, call scikit-learn's `predict`. No checks, no batching, no guard around it.
MODELFLY_MODELS_DIR and MODELFLY_DEFAULT_MODEL say where the models are and which one answers.
"""

import os
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from firefly.app import Firefly

MODELS = Path(os.environ.get("MODELFLY_MODELS_DIR") or Path(__file__).parents[2] / "models")
DEFAULT_MODEL = os.environ.get("MODELFLY_DEFAULT_MODEL", "iris")
estimators = {}


def predict(features, model=None):
    name = model or DEFAULT_MODEL
    if name not in estimators:
        estimators[name] = joblib.load(MODELS / f"{name}.joblib")
    if isinstance(features, dict) or isinstance(features[0], dict):
        inputs = pd.DataFrame([features] if isinstance(features, dict) else features)
    else:
        inputs = np.array(features, ndmin=2)
    return {"predictions": estimators[name].predict(inputs).tolist()}


app = Firefly()
app.add_route("/predict", predict, "predict")
