"""Model loading: integrity and version checks before unpickling, golden checks after,
one load per process under threads, and what info/health reveal."""

import json
import pickle
import subprocess
import sys
import threading
from pathlib import Path

import joblib
import pytest
from helpers import ROOT

import modelfly.card as card_module
from modelfly.card import library_versions
from modelfly.errors import ModelRefused
from modelfly.registry import Registry
from modelfly.settings import ConfigError, Settings
from predict import health, info


@pytest.fixture
def unpickle_calls(monkeypatch) -> list:
    """Records every unpickling the registry does (the real joblib.load still runs)."""
    calls = []
    real_load = joblib.load

    def counting_load(*args, **kwargs):
        calls.append(threading.get_ident())
        return real_load(*args, **kwargs)

    monkeypatch.setattr(card_module.joblib, "load", counting_load)
    return calls


def edit_card(models: Path, name: str, change) -> None:
    path = models / f"{name}.json"
    card = json.loads(path.read_text())
    change(card)
    path.write_text(json.dumps(card))


def test_shipped_models_load_and_pass_their_golden_checks():
    models = Registry(Settings())
    assert models.names == ["diabetes", "iris", "penguins"]
    for name in models.names:
        assert models.get(name).card["name"] == name
    assert models.refusals == {}


def test_tampered_joblib_is_refused_before_unpickling(models_copy, unpickle_calls):
    with open(models_copy / "iris.joblib", "ab") as file:
        file.write(b"\0")
    models = Registry(Settings(models_dir=models_copy))
    with pytest.raises(ModelRefused, match="iris.joblib does not match the sha256 in its card"):
        models.get("iris")
    assert unpickle_calls == []
    assert models.get("penguins").card["name"] == "penguins"  # the others still serve


def test_a_swapped_pickle_never_runs(models_copy, tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    (models_copy / "iris.joblib").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(ModelRefused, match="sha256"):
        Registry(Settings(models_dir=models_copy)).get("iris")
    assert not marker.exists()


@pytest.mark.parametrize("library, version", [("scikit-learn", "1.0.2"), ("joblib", "1.2.0"),
                                               ("numpy", "1.26.4")])
def test_other_library_versions_are_refused(models_copy, unpickle_calls, library, version):
    edit_card(models_copy, "iris", lambda card: card["trained_with"].update({library: version}))
    with pytest.raises(ModelRefused) as refusal:
        Registry(Settings(models_dir=models_copy)).get("iris")
    running = library_versions()[library]
    assert f"saved with {library} {version} (running {running})" in str(refusal.value)
    assert unpickle_calls == []


def test_another_python_is_only_recorded(models_copy):
    edit_card(models_copy, "iris", lambda card: card["trained_with"].update(python="3.99.0"))
    assert Registry(Settings(models_dir=models_copy)).get("iris").card["name"] == "iris"


def test_wrong_golden_output_is_refused(models_copy):
    def flip(card):
        card["golden"][0]["expected"]["predictions"] = ["setosa"]

    edit_card(models_copy, "iris", flip)
    with pytest.raises(ModelRefused, match="golden input 0 gave predictions \\['virginica'\\], "
                                           "the card expects \\['setosa'\\]"):
        Registry(Settings(models_dir=models_copy)).get("iris")


def test_golden_inputs_that_raise_refuse_the_model(models_copy):
    edit_card(models_copy, "iris", lambda card: card["golden"][0].update(features=[1.0, 2.0]))
    with pytest.raises(ModelRefused, match="its golden inputs raised an error"):
        Registry(Settings(models_dir=models_copy)).get("iris")


def test_golden_probabilities_are_compared_to_1e_9(models_copy):
    def nudge(card):
        card["golden"][0]["expected"]["probabilities"][0]["setosa"] += 1e-6

    edit_card(models_copy, "iris", nudge)
    with pytest.raises(ModelRefused, match="golden input 0 gave probabilities"):
        Registry(Settings(models_dir=models_copy)).get("iris")


def test_a_refusal_is_remembered(models_copy, unpickle_calls):
    edit_card(models_copy, "iris", lambda card: card.update(sha256="0" * 64))
    models = Registry(Settings(models_dir=models_copy))
    for _ in range(3):
        with pytest.raises(ModelRefused):
            models.get("iris")
    assert list(models.refusals) == [("iris", "1.0.0")] and unpickle_calls == []


def test_sixteen_threads_load_a_model_once(unpickle_calls):
    models = Registry(Settings())
    barrier = threading.Barrier(16)
    results = []

    def first_call():
        barrier.wait()
        results.append(models.get("penguins"))

    threads = [threading.Thread(target=first_call) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 16 and len({id(r) for r in results}) == 1
    assert len(unpickle_calls) == 1


def test_sixteen_threads_first_predict_in_a_fresh_process():
    """Through predict() itself, in a new process, with unpickling slowed to widen the race."""
    script = """
import threading, time, joblib, modelfly.card, predict
calls = []
real_load = joblib.load
def slow_load(*a, **k):
    calls.append(1); time.sleep(0.2); return real_load(*a, **k)
modelfly.card.joblib.load = slow_load
barrier = threading.Barrier(16); answers = []
def call():
    barrier.wait(); answers.append(predict.predict([5.9, 3.0, 5.1, 1.8])["predictions"])
threads = [threading.Thread(target=call) for _ in range(16)]
[t.start() for t in threads]; [t.join() for t in threads]
print(len(calls), len(answers), answers[0])
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True).stdout.split()
    assert out == ["1", "16", "['virginica']"]


def test_config_is_validated_with_the_variable_named(tmp_path):
    with pytest.raises(ConfigError, match="MODELFLY_MAX_ROWS='many' must be a positive int"):
        Settings.from_env({"MODELFLY_MAX_ROWS": "many"})
    with pytest.raises(ConfigError, match="MODELFLY_MAX_ROWS='0'"):
        Settings.from_env({"MODELFLY_MAX_ROWS": "0"})
    with pytest.raises(ConfigError, match="MODELFLY_MODELS_DIR=.* is not a directory"):
        Settings.from_env({"MODELFLY_MODELS_DIR": str(tmp_path / "absent")})
    with pytest.raises(ConfigError, match="MODELFLY_DEFAULT_MODEL='tulips' is not a model"):
        Registry(Settings.from_env({"MODELFLY_DEFAULT_MODEL": "tulips"}))
    assert Settings.from_env({}) == Settings()
    assert Settings.from_env({"MODELFLY_MAX_ROWS": "7"}).max_rows == 7


def test_info_shows_the_card_without_internals():
    card = info()
    assert card["name"] == "iris" and card["default"] is True
    assert [f["name"] for f in card["features"]] == [
        "sepal_length", "sepal_width", "petal_length", "petal_width"]
    assert card["classes"] == ["setosa", "versicolor", "virginica"]
    assert card["metrics"]["accuracy"] > 0.9
    assert card["example"] == {"features": [5.9, 3.0, 5.1, 1.8]}
    assert "sha256" not in card and "golden" not in card
    assert "/" not in json.dumps({k: v for k, v in card.items() if k != "data"})
    assert info("penguins")["missing_values"] is True and info("penguins")["default"] is False
    assert info("diabetes")["task"] == "regression"


def test_health_lists_the_models():
    assert health() == {"status": "ok", "default_model": "iris",
                        "models": ["diabetes", "iris", "penguins"]}
