"""Start and stop the servers a benchmark compares, on free loopback ports."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# Baselines run from here, with nothing of modelfly in their working directory (gunicorn reads
# a ./gunicorn.conf.py where it finds one).
BASELINES = ROOT / "bench" / "baselines"


def requirements_venv(requirements: Path, name: str) -> Path:
    """The Python of ROOT/.venv-<name>-<python version>, where `requirements` are installed
    (made, or made again when that file changes): tools that cannot share our virtualenv."""
    import hashlib
    import shutil

    venv = ROOT / f".venv-{name}-{sys.version_info.major}.{sys.version_info.minor}"
    stamp, wanted = venv / ".requirements", hashlib.sha256(requirements.read_bytes()).hexdigest()
    if not stamp.is_file() or stamp.read_text() != wanted:
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
        subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet",
                        "--disable-pip-version-check", "-r", str(requirements)], check=True,
                       timeout=900)
        stamp.write_text(wanted)
    return venv / "bin" / "python"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Running:
    """A server process; `url` once it answers a prediction, stopped by its PID."""

    def __init__(self, name: str, argv: list[str], port: int, env: dict | None = None,
                 cwd: Path = ROOT) -> None:
        self.name, self.port = name, port
        self.url = f"http://127.0.0.1:{port}"
        started = time.perf_counter()
        self.process = subprocess.Popen(argv, cwd=cwd, env={**os.environ, **(env or {})},
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{name} did not start: {' '.join(argv)}")
            try:
                answer = requests.post(self.url + "/predict", timeout=1,
                                       json={"features": [5.9, 3.0, 5.1, 1.8]})
                if answer.status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.02)
        self.cold_start = time.perf_counter() - started

    def stop(self) -> None:
        stop(self.process)


def stop(process: subprocess.Popen, timeout: float = 20) -> None:
    """Stop a server we started, by its PID: SIGTERM, then SIGKILL after `timeout` s."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def firefly_cli() -> Running:
    port = free_port()
    return Running("Firefly CLI", [str(BIN / "firefly"), "-c", "firefly.yml", "--bind",
                                   f"127.0.0.1:{port}"], port)


def firefly_gunicorn(workers: int = 2, threads: int = 4) -> Running:
    """The bare Firefly app under gunicorn's gthread worker (keep-alive capable)."""
    port = free_port()
    argv = [str(BIN / "gunicorn"), "--pythonpath", f"{ROOT},{ROOT / 'bench' / 'baselines'}",
            "-k", "gthread", "-w", str(workers), "--threads", str(threads),
            "-b", f"127.0.0.1:{port}", "firefly_app:app"]
    return Running(f"Firefly app, gunicorn gthread {workers}x{threads}", argv, port,
                   cwd=BASELINES)


def production() -> Running:
    """modelfly's production server, `python serve.py`."""
    port = free_port()
    return Running("modelfly serve.py", [sys.executable, "serve.py", "--bind",
                                         f"127.0.0.1:{port}"], port)


def children_of(pid: int) -> list[int]:
    """PIDs whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def pss_mib(pids: list[int]) -> float:
    """Proportional set size of these processes together, MiB: shared pages counted once."""
    total = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        total += int(next(line.split()[1] for line in text.splitlines()
                          if line.startswith("Pss:")))
    return total / 1024
