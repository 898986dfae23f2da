"""The Dockerfile, proven: built and run on a Docker engine, answers checked against the
in-process model, non-root, token enforced, healthy, stopped within 10 s.

Uses a running engine, or installs Debian's docker.io and starts dockerd for the test (and
stops it by its PID after); where python:3.11-slim cannot be pulled, builds on a local
stand-in base made with debootstrap. Skipped, saying why, where no engine can be had.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import requests
from helpers import GOOD_ROW, ROOT, free_port

from client import ModelClient, Unauthorized
from modelfly.signatures import keygen
from predict import predict

ENGINE = ROOT / "tests" / "container_engine.sh"
TOKEN = "container-test-token"
README = (ROOT / "README.md").read_text()
README_BUILD = "docker build -t modelfly ."
README_RUN = "docker run -p 5000:5000 modelfly"
# The host's OpenBLAS settings (a machine may pin OPENBLAS_CORETYPE): the image's answers are
# compared with the host's bit for bit, so both must run the same BLAS kernels.
SAME_BLAS = " ".join(f"-e {name}" for name in sorted(os.environ) if name.startswith("OPENBLAS_"))
README_TRUSTED_RUN = ("docker run -p 5000:5000 -v $PWD/models:/app/models:ro "
                      "-v $PWD/keys/modelfly-signing.pub:/etc/modelfly/trusted-keys/team.pub:ro "
                      "-e MODELFLY_TRUSTED_KEYS=/etc/modelfly/trusted-keys/team.pub modelfly")


def docker(*args: str, timeout: float = 60) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True,
                          timeout=timeout).stdout.strip()


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    state = tmp_path_factory.mktemp("docker-engine")
    if shutil.which("docker") is None and os.geteuid() != 0:
        pytest.skip("no docker client and not root: cannot install a Docker engine")
    started = time.monotonic()
    done = subprocess.run(["bash", str(ENGINE), "start", str(state)], capture_output=True,
                          text=True, timeout=600)
    if done.returncode == 3:
        pytest.skip(f"no Docker engine can be had here: {done.stderr.strip()[-300:]}")
    assert done.returncode == 0, done.stderr[-2000:]
    print(f"\nengine: {done.stderr.strip().splitlines()[-1]} in {time.monotonic() - started:.0f} s")
    yield
    subprocess.run(["bash", str(ENGINE), "stop", str(state)], timeout=60, check=True)


@pytest.fixture(scope="module")
def image(engine):
    started = time.monotonic()
    base = subprocess.run(["bash", str(ENGINE), "base", "python:3.11-slim"], capture_output=True,
                          text=True, timeout=600)
    assert base.returncode == 0, base.stderr[-2000:]
    base_image = base.stdout.strip()
    base_seconds = time.monotonic() - started
    tag = f"modelfly-test:{uuid.uuid4().hex[:8]}"
    # The README's build command, with the base image and network this machine needs.
    command = README_BUILD.replace("-t modelfly", f"-t {tag}").split() + [
        "--network", "host", "--build-arg", f"BASE_IMAGE={base_image}"]
    started = time.monotonic()
    built = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900,
                           env={**os.environ, "DOCKER_BUILDKIT": "0"})
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    size = int(docker("image", "inspect", tag, "--format", "{{.Size}}"))
    print(f"\nimage {tag} on {base_image}: base {base_seconds:.0f} s, build "
          f"{time.monotonic() - started:.0f} s, {size / 1e6:.0f} MB")
    yield tag
    subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True, timeout=60)


def wait_until_ready(url: str, container: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(url + "/ready", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, docker("logs", container)
        time.sleep(0.2)


def test_readme_shows_the_commands_this_test_runs():
    assert README_BUILD in README and README_RUN in README and README_TRUSTED_RUN in README


@pytest.mark.container
def test_the_image_serves_checks_and_stops(image):
    port = free_port()
    # The README's run command, on the host's loopback instead of a published port.
    command = README_RUN.replace("modelfly", image).replace(
        "-p 5000:5000", f"-d --network host {SAME_BLAS} -e MODELFLY_BIND=127.0.0.1:{port} "
                        f"-e MODELFLY_TOKEN={TOKEN}").split()
    container = subprocess.run(command, capture_output=True, text=True, check=True,
                               timeout=60).stdout.strip()
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_ready(url, container)

        with ModelClient(url, token=TOKEN) as client:
            assert client.predict(GOOD_ROW) == predict(GOOD_ROW)
            records = [{"island": "Torgersen", "sex": None, "bill_length_mm": 39.0,
                        "bill_depth_mm": 18.0, "flipper_length_mm": None, "body_mass_g": 3700}]
            assert client.predict(records, "penguins") == predict(records, "penguins")
        curl = subprocess.run(
            ["curl", "-s", "-X", "POST", f"{url}/predict", "-H", f"Authorization: Token {TOKEN}",
             "-H", "Content-Type: application/json", "-d", json.dumps({"features": GOOD_ROW})],
            capture_output=True, text=True, check=True, timeout=30)
        assert json.loads(curl.stdout) == predict(GOOD_ROW)
        with pytest.raises(Unauthorized):
            ModelClient(url, token="wrong").predict(GOOD_ROW)
        for path in ("/ui/iris", "/docs", "/static/ui.js", "/docs/swagger-ui-bundle.js"):
            page = requests.get(url + path, headers={"Accept": "text/html"}, timeout=10)
            assert page.status_code == 200 and page.content, path  # the image has the pages

        pid = docker("inspect", "--format", "{{.State.Pid}}", container)
        uid_line = next(line for line in open(f"/proc/{pid}/status")
                        if line.startswith("Uid:"))
        assert uid_line.split()[1:] == ["10001"] * 4  # real, effective, saved, fs: not root

        deadline = time.monotonic() + 30
        while docker("inspect", "--format", "{{.State.Health.Status}}", container) != "healthy":
            assert time.monotonic() < deadline, "the HEALTHCHECK never passed"
            time.sleep(0.5)

        started = time.monotonic()
        docker("stop", "--time", "10", container, timeout=30)
        stopped = time.monotonic() - started
        exit_code = docker("inspect", "--format", "{{.State.ExitCode}}", container)
        print(f"\ndocker stop took {stopped:.1f} s, exit code {exit_code}")
        assert stopped < 10 and exit_code == "0"
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True, timeout=60)


def test_hadolint_finds_nothing():
    hadolint = shutil.which("hadolint") or str(ROOT / ".venv" / "bin" / "hadolint")
    done = subprocess.run([hadolint, "Dockerfile"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert (done.returncode, done.stdout) == (0, "")


@pytest.mark.container
def test_the_image_runs_a_worker_for_the_servers_jobs(image):
    """The server and `python -m modelfly worker` in two containers of the image, sharing the
    SQLite queue on a volume, as on one machine."""
    port, volume = free_port(), f"modelfly-jobs-{uuid.uuid4().hex[:8]}"
    docker("volume", "create", volume)
    shared = ["--network", "host", *SAME_BLAS.split(), "-v", f"{volume}:/var/lib/modelfly"]
    server = docker("run", "-d", *shared, "-e", f"MODELFLY_BIND=127.0.0.1:{port}", image)
    worker = docker("run", "-d", *shared, image, "python", "-m", "modelfly", "worker")
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_ready(url, server)
        rows = [GOOD_ROW, [5.1, 3.5, 1.4, 0.2]] * 5_000
        with ModelClient(url) as client:
            answer = client.submit(rows).wait(timeout=120)
        assert answer["predictions"] == predict(rows[:2])["predictions"] * 5_000
        docker("stop", "--time", "20", worker, timeout=60)
        assert docker("inspect", "--format", "{{.State.ExitCode}}", worker) == "0"
    finally:
        subprocess.run(["docker", "rm", "-f", server, worker], capture_output=True, timeout=60)
        subprocess.run(["docker", "volume", "rm", "-f", volume], capture_output=True,
                       timeout=60)


@pytest.mark.container
def test_the_image_loads_only_models_signed_by_the_mounted_key(image):
    """README_TRUSTED_RUN: the models and the team's public key mounted read-only; iris,
    signed, serves; penguins, unsigned, is refused with the reason; /ready is 200."""
    shared = Path(tempfile.mkdtemp(prefix="modelfly-signed-"))  # readable by the image's user
    try:
        models = shared / "models"
        shutil.copytree(ROOT / "models", models)
        _, public = keygen(shared / "keys")
        private = shared / "keys" / "modelfly-signing.key"
        subprocess.run([sys.executable, "-m", "modelfly", "sign", "iris", "--key", str(private),
                        "--models-dir", str(models)], cwd=ROOT, check=True, timeout=120)
        for path in [shared, *shared.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        private.chmod(0o600)
        port = free_port()
        command = (README_TRUSTED_RUN.replace("$PWD", str(shared))
                   .replace(" modelfly", f" {image}").replace("-p 5000:5000",
                   f"-d --network host {SAME_BLAS} -e MODELFLY_BIND=127.0.0.1:{port}").split())
        container = subprocess.run(command, capture_output=True, text=True, check=True,
                                   timeout=60).stdout.strip()
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until_ready(url, container)
            with ModelClient(url) as client:
                assert client.predict(GOOD_ROW) == predict(GOOD_ROW)
            refused = requests.post(url + "/predict", json={"model": "penguins", "features": {
                "island": "Dream", "sex": "male", "bill_length_mm": 50.0, "bill_depth_mm": 19.5,
                "flipper_length_mm": 196.0, "body_mass_g": 3900}}, timeout=10)
            assert refused.status_code == 503
            assert "it is not signed (no penguins.sig beside it)" in refused.json()["error"]
            logs = subprocess.run(["docker", "logs", container], capture_output=True,
                                  text=True, timeout=60)
            assert "checked against 1 trusted key(s): team.pub" in logs.stdout + logs.stderr
        finally:
            subprocess.run(["docker", "rm", "-f", container], capture_output=True, timeout=60)
    finally:
        shutil.rmtree(shared, ignore_errors=True)
