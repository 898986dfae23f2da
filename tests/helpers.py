"""Helpers for tests: free ports and real servers as subprocesses on loopback."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
GOOD_ROW = [5.9, 3.0, 5.1, 1.8]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, log: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {port} within {timeout} s:\n{log.read_text()}")


class Server:
    """A server subprocess on a free loopback port; stopped by its PID."""

    def __init__(self, argv: list[str], port: int, log: Path, env: dict | None = None,
                 cwd: Path = ROOT, new_session: bool = False) -> None:
        self.port, self.log = port, log
        self.url = f"http://127.0.0.1:{port}"
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})}, start_new_session=new_session)
        wait_for_port(port, self.process, log)

    def stop(self) -> int:
        self.process.terminate()
        try:
            return self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def start_firefly(tmp_path: Path, *args: str, env: dict | None = None) -> Server:
    """`firefly <args> --bind 127.0.0.1:<free port>` from the repository root."""
    port = free_port()
    argv = [str(BIN / "firefly"), *args, "--bind", f"127.0.0.1:{port}"]
    return Server(argv, port, tmp_path / f"firefly-{port}.log", env)


def post(url: str, body: bytes | str, **kwargs) -> requests.Response:
    headers = {"Content-Type": "application/json", **kwargs.pop("headers", {})}
    return requests.post(url, data=body, headers=headers, timeout=10, **kwargs)
