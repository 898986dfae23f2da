"""Baseline: the bare Firefly app built from firefly.yml, as a WSGI app for gunicorn.

    gunicorn --pythonpath .,bench/baselines -k gthread --threads 4 firefly_app:app

What a user gets by putting Firefly's own app behind gunicorn, with none of modelfly's
production server around it. Built here rather than through `firefly.main`, which configures
logging and reads the environment when imported.
"""

import importlib
from pathlib import Path

import yaml
from firefly.app import Firefly

ROOT = Path(__file__).resolve().parents[2]


def build(config: Path = ROOT / "firefly.yml") -> Firefly:
    app = Firefly()
    for name, spec in yaml.safe_load(config.read_text())["functions"].items():
        module, function = spec["function"].rsplit(".", 1)
        app.add_route(spec.get("path", "/" + name), getattr(importlib.import_module(module),
                                                             function), name)
    return app


app = build()
