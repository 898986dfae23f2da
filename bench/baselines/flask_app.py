"""Baseline: the tutorial way (seeds 000-004), a Flask app around a pickled model.

    BENCH_MODEL=models/iris.joblib gunicorn -w 2 --pythonpath bench/baselines flask_app:app

Written as the tutorials write it: load the pickle, `request.get_json()`, `model.predict`,
`jsonify`; no checks of the model or of the input.
"""

import os

import joblib
import numpy as np
from flask import Flask, jsonify, request

app = Flask(__name__)
model = joblib.load(os.environ.get("BENCH_MODEL", "models/iris.joblib"))


@app.route("/predict", methods=["POST"])
def predict():
    data = request.get_json()
    features = np.array(data["features"], ndmin=2)
    prediction = model.predict(features)
    return jsonify({"predictions": prediction.tolist()})
