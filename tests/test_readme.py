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


def server_commands() -> list[str]:
    return [line.strip() for kind, text in BLOCKS if kind == "sh"
            for line in text.splitlines() if line.startswith(("firefly ", "make run"))]


def examples() -> list[tuple[str, str, str, str]]:
    """README examples in order, each (kind, the server the README last started, the doctest
    text or shell command, the expected output of a shell command)."""
    found, server = [], DEFAULT_SERVER
    for kind, text in BLOCKS:
        if kind == "sh":
            server = next((line for line in reversed(text.splitlines())
                           if line.startswith("firefly ")), server)
        elif kind == "python":
            found.append(("python", server, text, ""))
        elif kind == "console":
            for chunk in re.split(r"^\$ ", text, flags=re.M)[1:]:
                command, _, output = chunk.partition("\n")
                found.append(("console", server, command, output.strip()))
    return found


def normalized(text: str) -> list:
    """Output lines, each parsed as JSON where it is JSON; curl's `-w ' %{http_code}'`
    suffix split off into (JSON, status)."""
    lines = []
    for line in text.strip().splitlines():
        try:
            lines.append(json.loads(line))
            continue
        except ValueError:
            pass
        body, _, status = line.rpartition(" ")
        try:
            lines.append((json.loads(body), status))
        except ValueError:
            lines.append(line)
    return lines


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory):
    """The repository's files without virtualenvs, so README examples may write models."""
    target = tmp_path_factory.mktemp("readme") / "modelfly"
    shutil.copytree(ROOT, target, ignore=shutil.ignore_patterns(
        ".venv*", ".git", "__pycache__", ".pytest_cache", ".ruff_cache"))
    return target


def start(command: str, cwd, log_dir) -> Server:
    port = free_port()
    argv = command.replace("127.0.0.1:5000", f"127.0.0.1:{port}").replace(
        '"$MODELFLY_TOKEN"', TOKEN).split()
    argv[0] = str(BIN / "firefly")
    return Server(argv, port, log_dir / f"server-{port}.log", cwd=cwd)


def test_readme_has_the_two_commands_and_ci_runs_the_second():
    assert "make run" in README and "make test" in README
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert DEFAULT_SERVER in server_commands()
    assert "firefly predict.predict --bind 127.0.0.1:5000" in server_commands()


def test_python_and_console_examples(repo_copy, tmp_path, monkeypatch):
    monkeypatch.chdir(repo_copy)  # the "add your own model" example writes models/wine.*
    parser, runner, globs = doctest.DocTestParser(), doctest.DocTestRunner(), {}
    servers: dict[str, Server] = {}
    ran = {"python": 0, "console": 0}

    def address(server_command: str) -> str:
        if server_command not in servers:
            servers[server_command] = start(server_command, repo_copy, tmp_path)
        return f"127.0.0.1:{servers[server_command].port}"

    try:
        for kind, server_command, text, expected in examples():
            if kind == "python":
                if "127.0.0.1:5000" in text:
                    text = text.replace("127.0.0.1:5000", address(server_command))
                test = parser.get_doctest(text, globs, "README", "README.md", 0)
                assert runner.run(test).failed == 0, text
                ran["python"] += 1
                for server in servers.values():  # a model may have been added: restart
                    server.stop()
                servers.clear()
                continue
            here = address(server_command)
            env = {**os.environ, "MODELFLY_TOKEN": TOKEN, "MODELFLY_URL": f"http://{here}",
                   "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
            out = subprocess.run(["bash", "-c", text.replace("127.0.0.1:5000", here)],
                                 capture_output=True, text=True, timeout=60, env=env,
                                 cwd=repo_copy).stdout
            assert normalized(out) == normalized(expected.replace("127.0.0.1:5000", here)), text
            ran["console"] += 1
    finally:
        for server in servers.values():
            server.stop()
    assert ran["python"] >= 3 and ran["console"] >= 15


@pytest.mark.parametrize("command", server_commands())
def test_server_commands_serve_the_model(command, repo_copy, tmp_path):
    if command.startswith("make run"):
        port = free_port()
        argv = ["make", "run", f"BIND=127.0.0.1:{port}", f"VENV={sys.prefix}"]
        if shutil.which("make") is None:
            pytest.skip("make is not installed")
        # make starts firefly as its child: a session of our own lets us stop both together.
        server = Server(argv, port, tmp_path / "make.log", cwd=ROOT, new_session=True)
    else:
        server = start(command, repo_copy, tmp_path)
    try:
        headers = {"Authorization": f"Token {TOKEN}"} if "--token" in command else {}
        response = requests.post(server.url + "/predict", json={"features": GOOD_ROW},
                                 headers=headers, timeout=10)
        assert response.status_code == 200 and response.json() == predict(GOOD_ROW)
        if headers:
            assert requests.post(server.url + "/predict", json={"features": GOOD_ROW},
                                 timeout=10).status_code == 403
    finally:
        if command.startswith("make run"):
            os.killpg(server.process.pid, signal.SIGTERM)
        server.stop()
