"""`python serve.py`: check the configuration, then become gunicorn with server/gunicorn_conf.py.

gunicorn runs in the same process (same PID, so signals reach it): several worker processes
share the preloaded model, and the default model is loaded and checked before the port opens.
`kill -HUP` replaces the workers with new ones that read the models directory again.
"""

import argparse
import os
import shutil
import sys
import tempfile

from modelfly.catalog import check_catalog
from modelfly.settings import ROOT, ConfigError, Settings
from server.settings import ServerSettings, check_bind


def prepare_environment(env: dict) -> None:
    """Defaults the server process needs before gunicorn starts."""
    # One BLAS thread per worker: the workers already use the cores.
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(variable, "1")
    # glibc's malloc (mallopt(3)): blocks up to 32 MiB come from the heap, and freed heap is
    # kept for the next request instead of given back to the system, whose fresh pages each
    # cost a page fault when first touched: a million-row V2 request made 17,000 faults, 149
    # ms of server CPU; with these 9,300 and 113 ms. A worker keeps what its largest request
    # needed.
    env.setdefault("MALLOC_MMAP_THRESHOLD_", str(32 << 20))
    env.setdefault("MALLOC_TRIM_THRESHOLD_", str(512 << 20))
    # Metrics are summed across worker processes through files in this directory.
    directory = env.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory)
    else:
        env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="modelfly-metrics-")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python serve.py", description="Run modelfly's production server.",
        epilog="Settings: MODELFLY_* and WEB_CONCURRENCY (README, 'Running in production').")
    parser.add_argument("--bind", default=os.environ.get("MODELFLY_BIND", "127.0.0.1:8000"),
                        help="host:port to listen on (env MODELFLY_BIND; default %(default)s)")
    args = parser.parse_args(argv)
    try:
        check_bind(args.bind)
        # Checked without importing scikit-learn: gunicorn imports it once, in its master.
        check_catalog(Settings.from_env())
        ServerSettings.from_env()
    except ConfigError as error:
        sys.exit(f"modelfly: configuration error: {error}")
    prepare_environment(os.environ)
    os.chdir(ROOT)
    os.execv(sys.executable, [sys.executable, "-m", "gunicorn", "--config",
                              str(ROOT / "server" / "gunicorn_conf.py"), "--bind", args.bind,
                              "server.app:create_app()"])
