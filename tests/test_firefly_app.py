"""server/firefly_app.py's KeywordsSignature: the bind Firefly checks every call with."""

import inspect

import pytest

import predict
from server.firefly_app import KeywordsSignature


def test_remembered_binds_equal_inspects_and_unfit_calls_still_fail():
    own, plain = KeywordsSignature.of(predict.predict), inspect.signature(predict.predict)
    for _ in range(2):  # the second time from what it remembers
        assert own.bind(features=[1.0], model="iris") == plain.bind(features=[1.0],
                                                                   model="iris")
        for unfit in ({}, {"features": 1, "modell": "iris"}):
            with pytest.raises(TypeError):
                own.bind(**unfit)
    assert own._fitting == {frozenset({"features", "model"})}


def test_functions_taking_any_keywords_keep_inspects_signature():
    def anything(**kwargs):
        return kwargs

    assert type(KeywordsSignature.of(anything)) is inspect.Signature
