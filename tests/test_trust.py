"""Model trust: malicious pickles refused before they run, and signed models (issue 17).

Each malicious model is a joblib whose unpickling would create a marker file, beside a card
with its correct sha256 and library versions, so that only the scan stands in its way; the
production server, the Firefly CLI and `python -m modelfly add` refuse it, name the global, and
the marker never appears. Signatures: the shipped models signed with a key made here; each way
a signature can fail is refused with its reason, the other models serve.
"""

import builtins
import copy
import hashlib
import importlib
import io
import json
import os
import pickle
import runpy
import shutil
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import joblib
import numpy
import pandas
import pytest
import requests
from helpers import GOOD_ROW, ROOT, post, serve_models, start_firefly
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import FunctionTransformer
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils import all_estimators

from modelfly.card import answers_match, save_model
from modelfly.features import to_rows
from modelfly.pickle_scan import Scanner, UnsafePickle
from modelfly.registry import Registry
from modelfly.settings import ConfigError, Settings
from modelfly.signatures import keygen
from predict import predict

PENGUIN = {"island": "Dream", "sex": "male", "bill_length_mm": 50.0, "bill_depth_mm": 19.5,
           "flipper_length_mm": 196.0, "body_mass_g": 3900}


class Reduce:
    """Pickles as the given (callable, args): what unpickling it calls. Callable itself, so
    that one Reduce can stand as another's callable (a call of a computed function)."""

    def __init__(self, *reduce: object) -> None:
        self.reduce = reduce

    def __reduce__(self) -> tuple:
        return self.reduce

    def __call__(self, *args: object) -> None:
        raise AssertionError("only ever pickled")


def payloads(marker: Path) -> dict[str, tuple[object, str]]:
    """name: (an object whose unpickling creates `marker`, the global the refusal names)."""
    touch = f"open({str(marker)!r}, 'w').close()"
    evil = Reduce(os.system, (f"touch {marker}",))
    fitted = LogisticRegression(max_iter=500).fit(*load_iris(return_X_y=True))
    after_arrays = copy.deepcopy(fitted)
    after_arrays.notes = evil  # pickled after coef_ and intercept_: after raw array bytes
    in_object_array = copy.deepcopy(fitted)
    in_object_array.notes = numpy.array([evil, "x"], dtype=object)  # a pickle in the pickle
    script = marker.parent / "modelfly_touch.py"
    script.write_text(touch + "\n")
    hidden = marker.parent / "hidden.pkl"
    hidden.write_bytes(pickle.dumps(evil))
    return {
        "os-system": (evil, "posix.system"),
        "subprocess": (Reduce(subprocess.run, (["touch", str(marker)],)), "subprocess.run"),
        "eval": (Reduce(builtins.eval, (touch,)), "builtins.eval"),
        "exec": (Reduce(builtins.exec, (touch,)), "builtins.exec"),
        "import": (Reduce(Reduce(builtins.getattr, (Reduce(builtins.__import__, ("os",)),
                                                    "system")), (f"touch {marker}",)),
                   "builtins.getattr"),
        "run-path": (Reduce(runpy.run_path, (str(script),)), "runpy.run_path"),
        "runpy": (Reduce(runpy._run_code, (touch, {})), "runpy._run_code"),
        "after-arrays": (after_arrays, "posix.system"),
        "object-array": (in_object_array, "posix.system"),
        "read-pickle": (Reduce(pandas.read_pickle, (str(hidden),)), "pandas.read_pickle"),
        # importlib's import_module, as sklearn.utils.discovery imports it
        "reexport": (global_call("sklearn.utils.discovery", "import_module", script.stem),
                     "sklearn.utils.discovery.import_module, which is "
                     "importlib.import_module"),
    }


def global_call(module: str, name: str, *args: object) -> bytes:
    """A pickle calling module.name(*args), the global named as given (pickle itself names
    a function where it is defined)."""
    return (b"\x80\x02c" + f"{module}\n{name}\n".encode() + pickle.dumps(args, 2)[2:-1]
            + b"R.")


def plant(models: Path, name: str, obj: object) -> None:
    """`name` as a flat model: the malicious joblib and iris's card with its name, version and
    this file's sha256, so the card's own checks pass."""
    if isinstance(obj, bytes):
        (models / f"{name}.joblib").write_bytes(obj)
    else:
        joblib.dump(obj, models / f"{name}.joblib")
    card = json.loads((ROOT / "models" / "iris.json").read_text())
    card.update(name=name, sha256=hashlib.sha256(
        (models / f"{name}.joblib").read_bytes()).hexdigest())
    (models / f"{name}.json").write_text(json.dumps(card))


@pytest.fixture(scope="module")
def evil(tmp_path_factory) -> tuple[Path, Path, dict]:
    """The shipped models plus every payload as a model; the marker they would create."""
    root = tmp_path_factory.mktemp("evil")
    marker = root / "pwned"
    models = root / "models"
    shutil.copytree(ROOT / "models", models)
    cases = payloads(marker)
    for name, (obj, _) in cases.items():
        plant(models, f"evil-{name}", obj)
    return models, marker, cases


def test_the_payloads_are_real(tmp_path):
    """Unpickled as joblib would, each payload creates the marker (so refusing it matters)."""
    marker = tmp_path / "pwned"
    sys.path.insert(0, str(tmp_path))  # where the re-export's module is
    try:
        for name, (obj, _) in payloads(marker).items():
            data = io.BytesIO()
            joblib.dump(obj, data) if not isinstance(obj, bytes) else data.write(obj)
            try:
                joblib.load(io.BytesIO(data.getvalue()))
            except Exception:
                pass  # some fail once they have run (os.system returns 0, not a model)
            assert marker.exists(), name
            marker.unlink()
    finally:
        sys.path.remove(str(tmp_path))


def test_the_scan_names_each_global_and_nothing_runs(evil):
    models, marker, cases = evil
    registry = Registry(Settings(models_dir=models))
    for name, (_, named) in cases.items():
        with pytest.raises(Exception) as refused:
            registry.get(f"evil-{name}")
        assert f"its pickle names {named}" in str(refused.value) or (
            f"its pickle calls {named}" in str(refused.value)), (name, refused.value)
    assert not marker.exists()
    assert registry.get("iris").answer([GOOD_ROW])["predictions"] == \
        predict(GOOD_ROW)["predictions"]


def test_the_production_server_refuses_them_and_serves_the_others(tmp_path, evil):
    models, marker, cases = evil
    server = serve_models(tmp_path, models)
    try:
        for name, (_, named) in cases.items():
            response = post(server.url + "/predict", json.dumps(
                {"model": f"evil-{name}", "features": GOOD_ROW}))
            assert response.status_code == 503, name
            assert named in response.json()["error"], response.json()
            assert "Traceback" not in response.text and str(models) not in response.text
        assert post(server.url + "/predict", json.dumps({"features": GOOD_ROW})).json() == \
            predict(GOOD_ROW)
        assert requests.get(server.url + "/ready", timeout=10).status_code == 200
        log = server.log.read_text()
        assert "model 'evil-os-system' 1.0.0 is refused: its pickle names posix.system" in log
        assert log.count("model signatures are not checked") == 1
    finally:
        server.stop()
    assert not marker.exists()


def test_ready_says_why_when_the_default_model_is_malicious(tmp_path, evil):
    models, marker, _ = evil
    server = serve_models(tmp_path, models, MODELFLY_DEFAULT_MODEL="evil-eval")
    try:
        ready = requests.get(server.url + "/ready", timeout=10)
        assert ready.status_code == 503
        assert ready.json()["error"].startswith(
            "not ready: model 'evil-eval' 1.0.0 is refused: its pickle names builtins.eval")
        assert post(server.url + "/predict", json.dumps(
            {"model": "penguins", "features": PENGUIN})).status_code == 200
    finally:
        server.stop()
    assert not marker.exists()


def test_the_firefly_cli_refuses_them(tmp_path, evil):
    models, marker, _ = evil
    server = start_firefly(tmp_path, "-c", "firefly.yml", env={"MODELFLY_MODELS_DIR": str(models)})
    try:
        for name, named in (("os-system", "posix.system"), ("after-arrays", "posix.system"),
                            ("subprocess", "subprocess.run")):
            response = post(server.url + "/predict", json.dumps(
                {"model": f"evil-{name}", "features": GOOD_ROW}))
            assert response.status_code == 503
            assert named in response.json()["error"]
        assert post(server.url + "/predict", json.dumps({"features": GOOD_ROW})).json() == \
            predict(GOOD_ROW)
    finally:
        server.stop()
    assert not marker.exists()


def test_modelfly_add_refuses_them_and_writes_nothing(tmp_path, evil):
    _, marker, cases = evil
    example = tmp_path / "iris.csv"
    load_iris(as_frame=True).data.head(20).to_csv(example, index=False)
    target = tmp_path / "added"
    for name, (obj, named) in cases.items():
        plant(tmp_path, name, obj)
        done = subprocess.run(
            [sys.executable, "-m", "modelfly", "add", str(tmp_path / f"{name}.joblib"),
             "--name", "x", "--version", "1.0.0", "--example", str(example),
             "--models-dir", str(target)], cwd=ROOT, capture_output=True, text=True,
            timeout=120)
        assert done.returncode == 2, name
        assert named in done.stderr and "cannot load" in done.stderr, done.stderr
        assert not target.exists()
    assert not marker.exists()


def test_every_estimator_scikit_learn_fits_on_iris_passes_the_scan():
    """The allow-list holds what real models need: every estimator that fits on iris with
    its defaults, saved with joblib as is, compressed and with old pickle protocols, and
    DataFrames, random states and object arrays, pass the scan and load."""
    X, y = load_iris(return_X_y=True)
    scanner, passed = Scanner(), 0

    def check(obj: object, **dump: object) -> None:
        nonlocal passed
        data = io.BytesIO()
        joblib.dump(obj, data, **dump)
        scanner.scan(data.getvalue())
        joblib.load(io.BytesIO(data.getvalue()))
        passed += 1

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _, estimator in all_estimators():
            try:
                fitted = estimator().fit(X, y)
            except Exception:
                continue  # needs arguments, or is not for this data
            check(fitted)
    tree = RandomForestClassifier(n_estimators=3,
                                  random_state=numpy.random.RandomState(0)).fit(X, y)
    for dump in ({"compress": 3}, {"compress": ("gzip", 3)}, {"compress": ("bz2", 3)},
                 {"compress": ("xz", 3)}, {"compress": ("lzma", 3)}, {"protocol": 0},
                 {"protocol": 2}):
        check(tree, **dump)
    check(pandas.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"], "c": pandas.Categorical(["p", "q"]),
                            "d": pandas.to_datetime(["2020-01-01", "2021-01-01"])}))
    check(numpy.random.default_rng(0))
    check(numpy.array(["a", None, 3], dtype=object))
    assert passed > 150


def scan(data: bytes) -> str:
    with pytest.raises(UnsafePickle) as refused:
        Scanner().scan(data)
    return str(refused.value)


def test_forms_that_hide_a_global_are_refused():
    # the module's name computed by a call (builtins.str), then STACK_GLOBAL
    computed = (b"\x80\x04\x8c\x08builtins\x8c\x03str\x93\x8c\x05posix\x85R"
                b"\x8c\x06system\x93\x8c\x04true\x85R.")
    assert "a global it computes" in scan(computed)
    assert "EXT1" in scan(b"\x80\x02\x82\x01)R.")  # copyreg's extension registry
    assert "malformed" in scan(b"\x80\x04K\x01")
    assert "lz4" in scan(b"\x04\x22\x4d\x18rest")
    data = io.BytesIO()
    joblib.dump(numpy.arange(1000.0), data)
    assert "cut short" in scan(data.getvalue()[:-100])
    assert "its pickle names numpy.load" in scan(
        pickle.dumps(Reduce(numpy.load, ("x.npy",)), protocol=4))


def test_pickle_allow_admits_ones_own_module(tmp_path):
    (tmp_path / "own_features.py").write_text("def double(x):\n    return x * 2\n")
    sys.path.insert(0, str(tmp_path))
    try:
        own = importlib.import_module("own_features")
        data = pickle.dumps(FunctionTransformer(own.double))
        assert "own_features.double, which a model does not need" in scan(data)
        Scanner(["own_features"]).scan(data)  # admitted: no UnsafePickle
        Scanner(["own_features.double"]).scan(data)
    finally:
        sys.path.remove(str(tmp_path))
    with pytest.raises(ConfigError, match="MODELFLY_PICKLE_ALLOW: 'no such' is not a module"):
        Settings.from_env({"MODELFLY_PICKLE_ALLOW": "mine, no such"})


# Signatures


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, Path]:
    ours, theirs = tmp_path_factory.mktemp("ours"), tmp_path_factory.mktemp("theirs")
    private, public = keygen(ours / "keys")
    other_private, other_public = keygen(theirs / "keys")
    return {"private": private, "public": public, "other_private": other_private,
            "other_public": other_public}


def modelfly(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "modelfly", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_keygen_writes_a_private_key_only_its_owner_reads(tmp_path):
    done = modelfly("keygen", tmp_path / "k")
    assert done.returncode == 0, done.stderr
    private, public = (tmp_path / "k" / name for name in ("modelfly-signing.key",
                                                         "modelfly-signing.pub"))
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert private.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert public.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    again = modelfly("keygen", tmp_path / "k")
    assert again.returncode == 2 and "never overwrites a key" in again.stderr
    assert private.read_text().startswith("-----BEGIN PRIVATE KEY-----")


def test_signed_models_serve_and_each_broken_signature_is_refused(tmp_path, models_copy, keys):
    for name in ("iris", "penguins", "diabetes"):
        done = modelfly("sign", name, "--key", keys["private"], "--models-dir", models_copy)
        assert done.returncode == 0 and f"signed {name} 1.0.0" in done.stdout, done.stderr
    # diabetes: made by another key; penguins: its card edited after signing (still valid
    # JSON, still its sha256); a copy of iris: unsigned; another: its joblib swapped.
    modelfly("sign", "diabetes", "--key", keys["other_private"], "--models-dir", models_copy)
    card = json.loads((models_copy / "penguins.json").read_text())
    card["metrics"]["accuracy"] = 1.0
    (models_copy / "penguins.json").write_text(json.dumps(card))
    iris = load_iris(as_frame=True)
    for name in ("unsigned", "swapped"):
        save_model(LogisticRegression(max_iter=500).fit(iris.data, iris.target), name=name,
                   version="1.0.0", example=iris.data.head(20), out_dir=models_copy, flat=True)
    assert modelfly("sign", "swapped", "--key", keys["private"], "--models-dir",
                    models_copy).returncode == 0
    # another model in its place, and the card's sha256 made to match: only the signature
    # can tell
    joblib.dump(LogisticRegression(C=0.5, max_iter=500).fit(iris.data, iris.target),
                models_copy / "swapped.joblib")
    card = json.loads((models_copy / "swapped.json").read_text())
    card["sha256"] = hashlib.sha256((models_copy / "swapped.joblib").read_bytes()).hexdigest()
    (models_copy / "swapped.json").write_text(json.dumps(card))

    server = serve_models(tmp_path, models_copy, MODELFLY_TRUSTED_KEYS=str(keys["public"]))
    try:
        assert requests.get(server.url + "/ready", timeout=10).status_code == 200
        answer = post(server.url + "/predict", json.dumps({"features": GOOD_ROW}))
        assert answer.status_code == 200 and answer.json() == predict(GOOD_ROW)
        for name, reason in (
                ("diabetes", "diabetes.sig is not signed by a trusted key"),
                ("penguins", "penguins.sig does not cover penguins.json as it is now"),
                ("unsigned", "it is not signed (no unsigned.sig beside it)"),
                ("swapped", "swapped.sig does not cover swapped.joblib and swapped.json as "
                            "they are now")):
            response = post(server.url + "/predict", json.dumps(
                {"model": name, "features": GOOD_ROW if name != "penguins" else PENGUIN}))
            assert response.status_code == 503, name
            assert response.json()["error"].startswith(
                f"model '{name}' 1.0.0 is refused: {reason}"), response.json()
        log = server.log.read_text()
        assert "checked against 1 trusted key(s): modelfly-signing.pub" in log
        assert "model 'swapped' 1.0.0 is refused: swapped.sig does not cover" in log
        assert "signatures are not checked" not in log
    finally:
        server.stop()


def test_ready_says_why_when_the_default_model_is_unsigned(tmp_path, models_copy, keys):
    server = serve_models(tmp_path, models_copy, MODELFLY_TRUSTED_KEYS=str(keys["public"]))
    try:
        ready = requests.get(server.url + "/ready", timeout=10)
        assert ready.status_code == 503
        assert ready.json() == {"error": "not ready: model 'iris' 1.0.0 is refused: it is not "
                                         "signed (no iris.sig beside it), and "
                                         "MODELFLY_TRUSTED_KEYS asks for a signature"}
    finally:
        server.stop()


def test_any_of_several_trusted_keys_will_do(models_copy, keys):
    assert modelfly("sign", "iris", "--key", keys["other_private"], "--models-dir",
                    models_copy).returncode == 0
    both = f"{keys['public']},{keys['other_public']}"
    registry = Registry(Settings.from_env({"MODELFLY_MODELS_DIR": str(models_copy),
                                           "MODELFLY_TRUSTED_KEYS": both}))
    assert registry.get("iris").answer([GOOD_ROW])["predictions"] == \
        predict(GOOD_ROW)["predictions"]


def test_a_damaged_signature_is_refused_with_its_reason(models_copy, keys):
    modelfly("sign", "iris", "--key", keys["private"], "--models-dir", models_copy)
    signature = models_copy / "iris.sig"
    bundle = json.loads(signature.read_text())
    envelope = bundle["dsseEnvelope"]["signatures"][0]
    envelope["sig"] = ("A" if envelope["sig"][0] != "A" else "B") + envelope["sig"][1:]
    signature.write_text(json.dumps(bundle))
    settings = Settings(models_dir=models_copy, trusted_keys=(keys["public"],))
    with pytest.raises(Exception, match="iris.sig names a trusted key but does not verify"):
        Registry(settings).get("iris")
    signature.write_text("not a bundle")
    with pytest.raises(Exception, match="iris.sig cannot be read as a signature"):
        Registry(settings).get("iris")


def test_add_signs_what_it_adds(tmp_path, keys):
    iris = load_iris(as_frame=True)
    model = DecisionTreeClassifier(random_state=0).fit(iris.data,
                                                        iris.target_names[iris.target])
    joblib.dump(model, tmp_path / "tree.joblib")
    iris.data.head(30).to_csv(tmp_path / "example.csv", index=False)
    done = modelfly("add", tmp_path / "tree.joblib", "--name", "tree", "--version", "2.0.0",
                    "--example", tmp_path / "example.csv", "--models-dir", tmp_path / "models",
                    "--sign-key", keys["private"])
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "models" / "tree" / "2.0.0.sig").is_file()
    settings = Settings(models_dir=tmp_path / "models", default_model="tree",
                        trusted_keys=(keys["public"],))
    answer = Registry(settings).get("tree").answer([[5.9, 3.0, 5.1, 1.8]])
    assert answer["predictions"] == list(model.predict(
        pandas.DataFrame([[5.9, 3.0, 5.1, 1.8]], columns=iris.data.columns)))
    # added again without a key: the old signature goes with the files it covered
    done = modelfly("add", tmp_path / "tree.joblib", "--name", "tree", "--version", "2.0.0",
                    "--example", tmp_path / "example.csv", "--models-dir", tmp_path / "models")
    assert done.returncode == 0 and not (tmp_path / "models" / "tree" / "2.0.0.sig").exists()


def test_bad_trusted_keys_stop_the_server_at_start(tmp_path, keys):
    for value, message in ((str(tmp_path / "nope.pub"), "cannot be read as a PEM public key"),
                           (str(keys["private"]), "cannot be read as a PEM public key")):
        done = subprocess.run([sys.executable, "serve.py", "--bind", "127.0.0.1:9"], cwd=ROOT,
                              env={**os.environ, "MODELFLY_TRUSTED_KEYS": value},
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 1
        assert f"modelfly: configuration error: MODELFLY_TRUSTED_KEYS: {value} {message}" in \
            done.stderr


def test_answers_match_after_signing(models_copy, keys):
    """Signing changes no byte of the model: the answers stay the in-process ones."""
    modelfly("sign", "penguins", "--key", keys["private"], "--models-dir", models_copy)
    settings = Settings(models_dir=models_copy, trusted_keys=(keys["public"],))
    model = Registry(settings).get("penguins")
    answer = model.answer(to_rows([PENGUIN], model.card, max_rows=10))
    want = predict(PENGUIN, model="penguins")
    assert answers_match(answer["probabilities"], want["probabilities"], 1e-12)
