"""gunicorn's settings for `python serve.py`, from server/settings.py (WEB_CONCURRENCY,
MODELFLY_WORKER_CLASS, MODELFLY_TIMEOUT, MODELFLY_GRACEFUL_TIMEOUT), checked before gunicorn
starts."""

from server.settings import ServerSettings

_settings = ServerSettings.from_env()
workers = _settings.workers
worker_class = _settings.worker_class
worker_connections = 1000  # requests a worker reads or answers at once (idle ones aside)
preload_app = True  # the model is loaded once in the master and shared with the workers
timeout = _settings.timeout
graceful_timeout = _settings.graceful_timeout
keepalive = 5
accesslog = None  # the guard writes one JSON line per request instead
errorlog = "-"
loglevel = "warning"
proc_name = "modelfly"
GC_THRESHOLD = 50_000  # new container objects between collections of the youngest ones


def when_ready(server):
    # Everything loaded so far (libraries, the model) lives for the whole process: keep it out
    # of the garbage collector's scans (long full collections were the latency tail) and out
    # of the workers' copy-on-write pages.
    import gc

    gc.collect()
    gc.freeze()
    # A collection every 700 new containers ran ~30 times in a 10,000-row request, each for
    # nothing (requests make no cycles): 15 % of its time (in process, 7.75 -> 6.57 ms).
    gc.set_threshold(GC_THRESHOLD, 20, 20)


def post_worker_init(worker):
    # Every new worker reads the models directory as it is now and checks its default model
    # before it takes a request: `kill -HUP` replaces the workers one set for another, so the
    # directory's changes are served without a restart (README, "Reload without a restart").
    import logging

    import predict
    from modelfly.errors import ModelflyError
    from modelfly.settings import ConfigError

    models = predict.registry()
    try:
        models.refresh()
        models.get(None)
    except ConfigError as error:
        logging.getLogger("modelfly").error("models directory not read again: %s", error)
    except ModelflyError:
        pass  # refused: logged by the registry, answered by /ready


def child_exit(server, worker):
    # A dead worker's live gauges must not count any more.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
