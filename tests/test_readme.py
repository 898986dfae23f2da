"""Every README example runs as written: the Python examples as doctests, each `$ command` of a
console block against the server the README last started (its output compared), and every
server command of the sh blocks, on free ports, in a copy of the repository."""

import doctest
import json
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest
import requests
from helpers import BIN, GOOD_ROW, ROOT, Server, free_port

from predict import predict

README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", README, re.S)
DEFAULT_SERVER = "firefly -c firefly.yml --bind 127.0.0.1:5000"
TOKEN = "readme-test-token"


SERVERS = ("firefly ", "python serve.py", "make run")
ADDRESS = re.compile(r"127\.0\.0\.1:(5000|8000)")


def server_commands() -> list[tuple[str, bool]]:
    """Each server command of the sh blocks, and whether its block sets MODELFLY_TOKEN."""
    return [(line.strip(), "MODELFLY_TOKEN" in text) for kind, text in BLOCKS if kind == "sh"
            for line in text.splitlines() if line.startswith(SERVERS)]


def examples() -> list[tuple[str, tuple[str, bool], str, str]]:
    """README examples in order, each (kind, the server it talks to, the doctest text or shell
    command, the expected output of a shell command). The server is the one the README last
    started on the address the example names, or the last one started at all."""
    found, latest = [], (DEFAULT_SERVER, False)
    by_address = {"5000": latest}
    for kind, text in BLOCKS:
        if kind == "sh":
            for line in text.splitlines():
                if line.startswith(SERVERS[:2]):
                    latest = (line, "MODELFLY_TOKEN" in text)
                    by_address[ADDRESS.search(line).group(1)] = latest
            continue
        chunks = [(text, "")] if kind == "python" else [
            chunk.partition("\n")[::2] for chunk in re.split(r"^\$ ", text, flags=re.M)[1:]]
        for command, output in chunks:
            named = ADDRESS.search(command)
            server = by_address[named.group(1)] if named else latest
            found.append((kind, server, command, output.strip()))
    return found


def normalized(text: str) -> list:
    """Output lines, each parsed as JSON where it is JSON; curl's `-w ' %{http_code}'`
    suffix split off into (JSON, status). Numbers are compared to 12 significant digits: the
    last bits of a probability differ between CPUs (numpy's exp takes other SIMD paths; an
    AMD EPYC gave 0.0009535210369940405 for the README's ...387)."""
    lines = []
    for line in text.strip().splitlines():
        try:
            lines.append(json.loads(line, parse_float=_twelve_digits))
            continue
        except ValueError:
            pass
        body, _, status = line.rpartition(" ")
        try:
            lines.append((json.loads(body, parse_float=_twelve_digits), status))
        except ValueError:
            lines.append(line)
    return lines


def _twelve_digits(text: str) -> float:
    return float(f"{float(text):.12g}")


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory):
    """The repository's files without virtualenvs, so README examples may write models."""
    target = tmp_path_factory.mktemp("readme") / "modelfly"
    shutil.copytree(ROOT, target, ignore=shutil.ignore_patterns(
        ".venv*", ".git", "__pycache__", ".pytest_cache", ".ruff_cache"))
    return target


def shell_env(**extra: str) -> dict:
    """The environment README commands run in: the virtualenv's python, firefly, gunicorn."""
    env = {key: value for key, value in os.environ.items() if key != "MODELFLY_TOKEN"}
    return {**env, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **extra}


def start(server: tuple[str, bool], cwd, log_dir) -> Server:
    """Run a README server command as written (through bash), on a free port."""
    command, with_token = server
    port = free_port()
    env = shell_env(**({"MODELFLY_TOKEN": TOKEN} if with_token else {}))
    argv = ["bash", "-c", "exec " + ADDRESS.sub(f"127.0.0.1:{port}", command)]
    return Server(argv, port, log_dir / f"server-{port}.log", env=env, cwd=cwd)


def test_readme_has_the_two_commands_and_ci_runs_the_second():
    assert "make run" in README and "make test" in README
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    commands = [command for command, _ in server_commands()]
    assert DEFAULT_SERVER in commands
    assert "firefly predict.predict --bind 127.0.0.1:5000" in commands
    assert "python serve.py --bind 127.0.0.1:8000" in commands


def test_python_and_console_examples(repo_copy, tmp_path, monkeypatch):
    monkeypatch.chdir(repo_copy)  # the "add your own model" example writes models/wine.*
    parser, runner, globs = doctest.DocTestParser(), doctest.DocTestRunner(), {}
    servers: dict[str, Server] = {}
    ran = {"python": 0, "console": 0}

    def address(server: tuple[str, bool]) -> str:
        if server not in servers:
            servers[server] = start(server, repo_copy, tmp_path)
        return f"127.0.0.1:{servers[server].port}"

    try:
        for kind, server_command, text, expected in examples():
            if kind == "python":
                if ADDRESS.search(text):
                    text = ADDRESS.sub(address(server_command), text)
                test = parser.get_doctest(text, globs, "README", "README.md", 0)
                assert runner.run(test).failed == 0, text
                ran["python"] += 1
                for server in servers.values():  # a model may have been added: restart
                    server.stop()
                servers.clear()
                continue
            here = address(server_command)
            env = shell_env(MODELFLY_TOKEN=TOKEN, MODELFLY_URL=f"http://{here}")
            out = subprocess.run(["bash", "-c", ADDRESS.sub(here, text)], capture_output=True,
                                 text=True, timeout=60, env=env, cwd=repo_copy).stdout
            assert normalized(out) == normalized(ADDRESS.sub(here, expected)), text
            ran["console"] += 1
    finally:
        for server in servers.values():
            server.stop()
    assert ran["python"] >= 3 and ran["console"] >= 15


@pytest.mark.parametrize("command, with_token", server_commands())
def test_server_commands_serve_the_model(command, with_token, repo_copy, tmp_path):
    if command.startswith("make run"):
        port = free_port()
        argv = ["make", "run", f"BIND=127.0.0.1:{port}", f"VENV={sys.prefix}"]
        if shutil.which("make") is None:
            pytest.skip("make is not installed")
        # make starts firefly as its child: a session of our own lets us stop both together.
        server = Server(argv, port, tmp_path / "make.log", cwd=ROOT, new_session=True)
    else:
        server = start((command, with_token), repo_copy, tmp_path)
    try:
        headers = {"Authorization": f"Token {TOKEN}"} if with_token else {}
        response = requests.post(server.url + "/predict", json={"features": GOOD_ROW},
                                 headers=headers, timeout=10)
        assert response.status_code == 200 and response.json() == predict(GOOD_ROW)
        if headers:
            assert requests.post(server.url + "/predict", json={"features": GOOD_ROW},
                                 timeout=10).status_code in (401, 403)
    finally:
        if command.startswith("make run"):
            os.killpg(server.process.pid, signal.SIGTERM)
        server.stop()
