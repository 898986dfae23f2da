"""gunicorn settings for `python serve.py`; environment variables override the defaults.

| variable                  | default                     | meaning                              |
|---------------------------|-----------------------------|--------------------------------------|
| WEB_CONCURRENCY           | 2                           | worker processes (one per core)      |
| MODELFLY_WORKER_CLASS     | worker.GranianWorker        | gunicorn worker class (worker.py)    |
| MODELFLY_TIMEOUT          | 30                          | silent worker killed after (seconds) |
| MODELFLY_GRACEFUL_TIMEOUT | 20                          | seconds in-flight requests get after |
|                           |                             | SIGTERM                              |
"""

import os

workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = os.environ.get("MODELFLY_WORKER_CLASS", "worker.GranianWorker")
worker_connections = 1000  # requests a worker reads or answers at once (idle ones aside)
preload_app = True  # the model is loaded once in the master and shared with the workers
timeout = int(os.environ.get("MODELFLY_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("MODELFLY_GRACEFUL_TIMEOUT", "20"))
keepalive = 5
accesslog = None  # the guard writes one JSON line per request instead
errorlog = "-"
loglevel = "warning"
proc_name = "modelfly"


def when_ready(server):
    # Everything loaded so far (libraries, the model) lives for the whole process: keep it out
    # of the garbage collector's scans (long full collections were the latency tail) and out
    # of the workers' copy-on-write pages.
    import gc

    gc.collect()
    gc.freeze()


def child_exit(server, worker):
    # A dead worker's live gauges must not count any more.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
