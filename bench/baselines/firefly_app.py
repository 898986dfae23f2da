"""Baseline: the bare Firefly app built from firefly.yml, as a WSGI app for gunicorn.

    gunicorn --pythonpath .,bench/baselines -k gthread --threads 4 firefly_app:app

What a user gets by putting Firefly's own app behind gunicorn: the same functions and routes as
modelfly's production server, with none of its guard, metrics or tuning around them.
"""

from serve import ROOT, build_firefly_app

app = build_firefly_app(ROOT / "firefly.yml")
