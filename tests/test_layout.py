"""The layout (README, "Layout"): the root holds the product's entry points, the core loads
nothing of the server, the client nothing of the core, and the import contracts bite."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

from helpers import ROOT

SERVER_LIBRARIES = ["gunicorn", "httptools", "greenlet", "uvloop", "prometheus_client"]


def loaded_after(code: str) -> set[str]:
    """The top-level modules a fresh interpreter has loaded after running `code`."""
    script = (code + "\nimport sys, json\n"
              "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=True)
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_the_root_holds_only_the_entry_points():
    assert sorted(path.name for path in ROOT.glob("*.py")) == ["predict.py", "serve.py",
                                                              "train.py"]
    for package in ("modelfly", "server", "client"):
        assert (ROOT / package / "__init__.py").is_file()


def test_the_plain_function_loads_nothing_of_the_server():
    loaded = loaded_after("import predict\n"
                          "assert predict.predict([5.9, 3.0, 5.1, 1.8])['predictions'] == "
                          "['virginica']")
    assert "modelfly" in loaded and "sklearn" in loaded  # it did load and predict
    assert loaded.isdisjoint(["server", "client", *SERVER_LIBRARIES]), loaded


def test_the_client_loads_no_scikit_learn():
    loaded = loaded_after("import client\nimport client.__main__")
    assert "requests" in loaded
    assert loaded.isdisjoint(["sklearn", "numpy", "pandas", "modelfly", "server", "predict"])


def test_the_import_contracts_break_when_the_layout_does(tmp_path):
    for name in ("modelfly", "server", "client"):
        shutil.copytree(ROOT / name, tmp_path / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("predict.py", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    lint = [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"]
    shutil.copytree(ROOT / "tests", tmp_path / "tests",
                    ignore=shutil.ignore_patterns("__pycache__", "test_*"))
    env = {"PATH": "/usr/bin:/bin"}

    def run() -> subprocess.CompletedProcess:
        return subprocess.run(lint, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=120)

    kept = run()
    assert kept.returncode == 0 and "3 kept, 0 broken" in kept.stdout, kept.stdout
    with open(tmp_path / "modelfly" / "registry.py", "a") as core:
        core.write("\nfrom server import greenlets  # noqa\n")
    with open(tmp_path / "client" / "errors.py", "a") as client:
        client.write("\nimport modelfly.errors  # noqa\n")
    with open(tmp_path / "predict.py", "a") as function:
        function.write("\n\ndef lazily():\n    import prometheus_client  # noqa\n")
    broken = run()
    assert broken.returncode == 1 and "0 kept, 3 broken" in broken.stdout, broken.stdout
    assert "modelfly.registry -> server.greenlets" in broken.stdout
    assert "client.errors -> modelfly.errors" in broken.stdout
    assert "predict.py:" in broken.stdout and "imports prometheus_client" in broken.stdout
