"""Versions side by side: several versions of a name served at once, the default the highest
unless pinned, a bad version refused on its own, and today's flat directory still loading."""

import json
import subprocess
import sys

import pandas
import pytest
import requests
from helpers import GOOD_ROW, ROOT, start_serve
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from client import ModelClient
from modelfly.card import save_model
from modelfly.catalog import Catalog, version_order
from modelfly.errors import ModelNotFound, ModelRefused
from modelfly.registry import Registry
from modelfly.settings import ConfigError, Settings

ROW = [6.0, 2.2, 5.0, 1.5]  # near the versicolor/virginica border: the versions disagree


def add_iris(models, version: str, c: float) -> LogisticRegression:
    iris = load_iris()
    frame = pandas.DataFrame(iris.data, columns=["sepal_length", "sepal_width",
                                                 "petal_length", "petal_width"])
    model = LogisticRegression(C=c, max_iter=1000).fit(iris.data, iris.target_names[iris.target])
    save_model(model, name="iris", version=version, out_dir=models, example=frame.iloc[::10])
    return model


@pytest.fixture
def versioned(models_copy):
    """The shipped models (iris 1.0.0 flat) plus iris 1.10.0 and 1.9.0 in models/iris/."""
    made = {"1.10.0": add_iris(models_copy, "1.10.0", 0.05),
            "1.9.0": add_iris(models_copy, "1.9.0", 5.0)}
    return models_copy, made


def test_semantic_order():
    assert sorted(["1.10.0", "1.9.0", "2.0.0rc1", "1.0.0", "nightly"], key=version_order) == [
        "nightly", "1.0.0", "1.9.0", "1.10.0", "2.0.0rc1"]


def test_versions_side_by_side_in_process(versioned):
    models_dir, made = versioned
    registry = Registry(Settings(models_dir=models_dir))
    assert registry.catalog.versions("iris") == ["1.0.0", "1.9.0", "1.10.0"]
    assert registry.catalog.versions("penguins") == ["1.0.0"]
    default = registry.get("iris")
    assert default.card["version"] == "1.10.0"  # the highest, semantic order
    for version, estimator in made.items():
        answer = registry.get("iris", version).answer([ROW])
        assert answer["version"] == version
        assert answer["predictions"] == estimator.predict([ROW]).tolist()
    assert registry.get("iris", "1.0.0").card["sha256"] == json.loads(
        (models_dir / "iris.json").read_text())["sha256"]
    with pytest.raises(ModelNotFound, match=r"unknown version \"3\" \(a string\) of model "
                                            r"'iris'; its versions: 1.0.0, 1.9.0, 1.10.0"):
        registry.get("iris", "3")
    with pytest.raises(ModelNotFound, match="unknown version 3 \\(a number\\)"):
        registry.get("iris", 3)


def test_a_pin_chooses_the_default_and_a_bad_pin_is_a_config_error(versioned):
    models_dir, _ = versioned
    (models_dir / "iris" / "default_version").write_text("1.9.0\n")
    assert Registry(Settings(models_dir=models_dir)).get("iris").card["version"] == "1.9.0"
    (models_dir / "iris" / "default_version").write_text("7.0.0\n")
    with pytest.raises(ConfigError, match="iris/default_version names version '7.0.0', which "
                                          "is not there"):
        Catalog.scan(models_dir)


def test_a_version_twice_is_a_config_error(versioned):
    models_dir, _ = versioned
    for suffix in (".json", ".joblib"):
        (models_dir / "iris" / f"1.0.0{suffix}").write_bytes(
            (models_dir / f"iris{suffix}").read_bytes())
    with pytest.raises(ConfigError, match="model 'iris' version '1.0.0' is both in iris/"):
        Catalog.scan(models_dir)


def test_a_bad_version_is_refused_alone(versioned):
    models_dir, _ = versioned
    with open(models_dir / "iris" / "1.9.0.joblib", "ab") as file:
        file.write(b"tampered")
    registry = Registry(Settings(models_dir=models_dir))
    with pytest.raises(ModelRefused, match="model 'iris' 1.9.0 is refused: 1.9.0.joblib does "
                                           "not match the sha256"):
        registry.get("iris", "1.9.0")
    assert registry.get("iris").answer([ROW])["version"] == "1.10.0"
    assert registry.get("iris", "1.0.0").answer([ROW])["version"] == "1.0.0"


def test_a_card_in_the_wrong_place_is_refused(versioned):
    models_dir, _ = versioned
    card = json.loads((models_dir / "iris" / "1.9.0.json").read_text())
    (models_dir / "iris" / "1.9.0.json").write_text(json.dumps({**card, "version": "2.0.0"}))
    with pytest.raises(ModelRefused, match="1.9.0.json is not the card of iris 1.9.0"):
        Registry(Settings(models_dir=models_dir)).get("iris", "1.9.0")


def test_the_production_server_serves_versions_side_by_side(versioned, tmp_path):
    models_dir, made = versioned
    with open(models_dir / "iris" / "1.9.0.joblib", "ab") as file:
        file.write(b"tampered")
    server = start_serve(tmp_path, {"MODELFLY_MODELS_DIR": str(models_dir)})

    def call(path: str, **body) -> requests.Response:
        return requests.post(server.url + path, json=body, timeout=10)

    try:
        latest = call("/predict", features=ROW)
        assert latest.status_code == 200
        assert latest.json()["version"] == "1.10.0"
        assert latest.json()["predictions"] == made["1.10.0"].predict([ROW]).tolist()
        assert call("/predict", features=GOOD_ROW, version="1.0.0").json()["version"] == "1.0.0"
        unknown = call("/predict", features=ROW, version="3")
        assert unknown.status_code == 404
        assert "its versions: 1.0.0, 1.9.0, 1.10.0" in unknown.json()["error"]
        refused = call("/predict", features=ROW, version="1.9.0")
        assert refused.status_code == 503
        assert refused.json()["error"].startswith("model 'iris' 1.9.0 is refused")
        info = call("/info", model="iris").json()
        assert info["versions"] == ["1.0.0", "1.9.0", "1.10.0"]
        assert info["default_version"] == "1.10.0" and info["version"] == "1.10.0"
        assert call("/info", model="iris", version="1.0.0").json()["version"] == "1.0.0"
        ready = requests.get(server.url + "/ready", timeout=10)
        assert ready.status_code == 200 and ready.json()["version"] == "1.10.0"
        with ModelClient(server.url) as client:
            assert client.predict(ROW, "iris", "1.0.0")["version"] == "1.0.0"
            assert client.info("iris", "1.0.0")["versions"] == info["versions"]
        done = subprocess.run([sys.executable, "-m", "client", "predict", *map(str, ROW),
                               "--version", "1.0.0", "--url", server.url], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and json.loads(done.stdout)["version"] == "1.0.0"
    finally:
        server.stop()


def test_refresh_serves_the_directory_as_it_is_and_keeps_what_did_not_change(versioned):
    models_dir, _ = versioned
    registry = Registry(Settings(models_dir=models_dir))
    kept = registry.get("iris", "1.9.0")
    newest = add_iris(models_dir, "1.11.0", 1.0)
    for suffix in (".json", ".joblib"):
        (models_dir / "iris" / f"1.10.0{suffix}").unlink()
    registry.refresh()
    assert registry.get("iris", "1.9.0") is kept  # not loaded again
    assert registry.get("iris").card["version"] == "1.11.0"
    assert registry.get("iris").answer([ROW])["predictions"] == newest.predict([ROW]).tolist()
    with pytest.raises(ModelNotFound, match="its versions: 1.0.0, 1.9.0, 1.11.0"):
        registry.get("iris", "1.10.0")
    (models_dir / "iris" / "default_version").write_text("7")
    with pytest.raises(ConfigError):
        registry.refresh()
    assert registry.get("iris").card["version"] == "1.11.0"  # an unusable directory changes nothing
