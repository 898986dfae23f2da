"""The production server's WSGI app: the Firefly app of firefly.yml, behind the guard, with
the micro-batcher plugged into the models' registry and the metrics told of every load."""

import gc
import logging
import sys

import predict
from modelfly.errors import ModelflyError
from modelfly.jobs import Jobs
from server.batcher import Batching
from server.firefly_app import build_firefly_app
from server.guard import Guard
from server.jobs import JobRoutes
from server.logs import AccessLog, setup_logging
from server.metrics import Metrics
from server.openapi import document
from server.pages import Pages
from server.settings import ServerSettings
from server.v2 import V2Routes

log = logging.getLogger("modelfly")
VERSION = "1.0.0"  # the image's tag (Dockerfile, deploy/): what GET /v2 reports


def create_app() -> Guard:
    """The guarded WSGI app; loads and checks the default model now, so a preloading server
    is ready before it opens its port."""
    # Importing scikit-learn makes objects that all live as long as the process: collecting
    # midway through is wasted time (0.1-0.2 s of the start here).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _create_app()
    finally:
        if collecting:
            gc.enable()


def _create_app() -> Guard:
    setup_logging()
    settings = ServerSettings.from_env()
    models = predict.registry()
    metrics = Metrics()
    models.on_load, models.on_refusal = metrics.model_loaded, metrics.model_refused
    models.answerer = Batching(settings.batch_max_rows, settings.batch_wait_ms / 1000,
                               metrics.batch_answered)
    firefly_app = build_firefly_app(settings.config_path)
    functions = {path: f.name for path, f in firefly_app.mapping.items() if path != "/"}

    def ready() -> tuple[bool, object]:
        name = models.settings.default_model
        try:
            loaded = models.get(name)
        except ModelflyError as refusal:
            return False, str(refusal)
        return True, {"status": "ready", "model": name, "version": loaded.card["version"]}

    ok, details = ready()
    log.info("auth is %s", "on" if settings.token else
             "OFF: anyone who can reach this port can call the model; set MODELFLY_TOKEN")
    log.info("default model %s", "ready" if ok else f"NOT ready: {details}")
    pages = Pages(lambda: models.names, models.settings.max_rows, settings.token is not None)
    jobs = JobRoutes(lambda: Jobs(settings.jobs, models))
    return Guard(firefly_app, functions, settings, ready, metrics, AccessLog(sys.stderr),
                 pages, lambda: document(models, settings), jobs,
                 V2Routes(models, ready, VERSION))
