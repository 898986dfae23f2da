"""`python -m modelfly worker [--processes N]`: run the jobs of the queue (modelfly/jobs.py).

huey's consumer with N worker processes and its scheduler (the watch and expiry tasks). The
default model is loaded and checked before the processes fork, so they share it; any other is
loaded once per process, through the same checks. On SIGTERM each process finishes the chunk
in hand, hands its job back to the queue and the worker exits 0.
"""

import logging
import sys

from modelfly.jobs import Jobs
from modelfly.logs import json_logging
from modelfly.registry import Registry
from modelfly.settings import ConfigError, JobSettings, Settings

log = logging.getLogger("modelfly")


def run(processes: int) -> int:
    json_logging({"modelfly": logging.INFO, "huey": logging.INFO})
    try:
        models, settings = Registry(Settings.from_env()), JobSettings.from_env()
    except ConfigError as error:
        print(f"modelfly worker: error: {error}", file=sys.stderr)
        return 2
    jobs = Jobs(settings, models)
    try:
        models.get(None)
    except Exception as refusal:  # the default model: the others can still serve
        log.error("the default model is not loaded: %s", refusal)
    consumer = jobs.huey.create_consumer(
        workers=processes, worker_type="process", periodic=False, graceful_signal="TERM",
        initial_delay=0.02, max_delay=0.1, check_worker_health=True)
    # seam: huey's consumer stop flag, a pipe its forked workers share (huey pinned)
    jobs.stopping = consumer.stop_flag.is_set
    log.info("worker: %d process(es) on %s", processes,
             settings.queue_url or settings.data_dir / "jobs.sqlite3")
    consumer.run()
    return 0
