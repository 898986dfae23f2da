"""The deployment files: Kubernetes manifests validated offline against the Kubernetes schemas
(kubernetes-validate, strict), their promises checked, and the Procfile's command run."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import requests
import yaml
from helpers import GOOD_ROW, ROOT, Server, client_python, free_port

from modelfly.signatures import check_public_keys
from predict import predict
from server.v2 import route

DEPLOY = ROOT / "deploy"
MANIFESTS = sorted(DEPLOY.glob("*.yaml"))


def load(name: str) -> dict:
    return yaml.safe_load((DEPLOY / name).read_text())


@pytest.mark.parametrize("path", MANIFESTS, ids=[p.name for p in MANIFESTS])
@pytest.mark.parametrize("version", ["1.30.0", "1.37.0"])
def test_manifests_are_valid_kubernetes(path, version):
    for document in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(document, version, strict=True)


def test_the_deployment_keeps_its_promises():
    deployment = load("deployment.yaml")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert deployment["spec"]["replicas"] == 2
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert set(container["resources"]) == {"requests", "limits"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the Dockerfile's USER
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    token = next(e for e in container["env"] if e["name"] == "MODELFLY_TOKEN")
    assert token["valueFrom"]["secretKeyRef"] == {"name": "modelfly-token", "key": "token"}
    assert container["ports"][0]["containerPort"] == 5000  # the Dockerfile's EXPOSE
    assert "EXPOSE 5000" in (ROOT / "Dockerfile").read_text()


def test_service_and_autoscaler_point_at_the_deployment():
    service, hpa = load("service.yaml"), load("hpa.yaml")
    assert service["spec"]["selector"] == load("deployment.yaml")["spec"]["selector"][
        "matchLabels"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "modelfly"
    assert hpa["spec"]["minReplicas"] == 2
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"


def procfile() -> dict[str, str]:
    return dict(re.fullmatch(r"(\w+): (.+)", line).groups()
                for line in (ROOT / "Procfile").read_text().splitlines())


def test_the_workers_and_redis_serve_the_deployments_jobs():
    web = load("deployment.yaml")["spec"]["template"]["spec"]["containers"][0]
    worker = load("worker.yaml")["spec"]["template"]["spec"]
    service, redis = yaml.safe_load_all((DEPLOY / "redis.yaml").read_text())
    queue = {"name": "MODELFLY_QUEUE_URL", "value": "redis://modelfly-redis:6379/0"}
    assert queue in web["env"] and queue in worker["containers"][0]["env"]
    assert worker["containers"][0]["image"] == web["image"]
    assert worker["containers"][0]["command"] == ["python", "-m", "modelfly", "worker",
                                                  "--processes", "2"]
    assert worker["securityContext"]["runAsUser"] == 10001
    assert service["metadata"]["name"] == "modelfly-redis"
    assert service["spec"]["selector"] == redis["spec"]["selector"]["matchLabels"]
    assert redis["kind"] == "StatefulSet" and redis["spec"]["replicas"] == 1
    claim = redis["spec"]["volumeClaimTemplates"][0]
    mount = redis["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]
    assert mount == {"name": claim["metadata"]["name"], "mountPath": "/data"}
    assert "--appendonly" in redis["spec"]["template"]["spec"]["containers"][0]["args"]
    assert procfile()["worker"] == "python -m modelfly worker --processes 2"


def test_the_procfile_web_command_serves(tmp_path):
    command = procfile()["web"]
    port = free_port()
    # As a platform runs it, but on loopback: the platform's router is the only way in there.
    command = command.replace("0.0.0.0", "127.0.0.1")
    env = {"PORT": str(port), "PATH": f"{os.path.dirname(os.sys.executable)}:{os.environ['PATH']}"}
    server = Server(["bash", "-c", f"exec env {command}"], port, tmp_path / "procfile.log",
                    env=env)
    try:
        answer = requests.post(server.url + "/predict", json={"features": GOOD_ROW}, timeout=10)
        assert answer.json() == predict(GOOD_ROW)
    finally:
        server.stop()


@pytest.mark.parametrize("manifest", ["deployment.yaml", "worker.yaml"])
def test_the_trusted_keys_reach_the_servers_and_workers(manifest, tmp_path):
    """trusted-keys.yaml's MODELFLY_TRUSTED_KEYS names the file its key is mounted as, in the
    servers and in the workers; both optional (without the ConfigMap nothing is checked), and
    its key is one MODELFLY_TRUSTED_KEYS takes."""
    keys = load("trusted-keys.yaml")
    pod = load(manifest)["spec"]["template"]["spec"]
    container = pod["containers"][0]
    variable = next(e for e in container["env"] if e["name"] == "MODELFLY_TRUSTED_KEYS")
    reference = variable["valueFrom"]["configMapKeyRef"]
    assert reference == {"name": "modelfly-trusted-keys", "key": "MODELFLY_TRUSTED_KEYS",
                         "optional": True}
    volume = next(v for v in pod["volumes"] if v["name"] == "trusted-keys")["configMap"]
    assert volume["name"] == keys["metadata"]["name"] and volume["optional"] is True
    mount = next(m for m in container["volumeMounts"] if m["name"] == "trusted-keys")
    assert mount["readOnly"] is True
    [item] = volume["items"]
    assert keys["data"]["MODELFLY_TRUSTED_KEYS"] == f"{mount['mountPath']}/{item['path']}"
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]  # the check's
    (tmp_path / "team.pub").write_text(keys["data"][item["key"]])
    check_public_keys([tmp_path / "team.pub"])


def kserve() -> tuple[dict, dict]:
    return (yaml.safe_load((DEPLOY / "kserve" / "serving-runtime.yaml").read_text()),
            yaml.safe_load((DEPLOY / "kserve" / "inference-service.yaml").read_text()))


def kserve_schema_problems(*manifests: Path) -> dict:
    done = subprocess.run([str(client_python()), str(ROOT / "tests" / "kserve_schema.py"),
                           *map(str, manifests)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_the_kserve_manifests_fit_the_api_types_kserves_sdk_ships(tmp_path):
    """No package ships KServe's CRD files; its Python SDK ships the API types they are made
    of (kserve.models, with kubernetes.client's): every key known, every value of its type,
    nothing required left out. A broken copy shows the check can fail."""
    manifests = sorted((DEPLOY / "kserve").glob("*.yaml"))
    assert kserve_schema_problems(*manifests) == {str(m): [] for m in manifests}
    runtime, _ = kserve()
    spec = runtime["spec"]
    spec["protocolVersion"] = spec.pop("protocolVersions")
    spec["supportedModelFormats"][0]["autoSelect"] = "no"
    del spec["containers"][0]["name"]
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump(runtime))
    [found] = kserve_schema_problems(tmp_path / "broken.yaml").values()
    assert "ServingRuntime.spec: V1alpha1ServingRuntimeSpec has no key 'protocolVersion'" \
        in found
    assert "ServingRuntime.spec.supportedModelFormats[0].autoSelect: 'no' is not bool" in found
    assert any(p.startswith("ServingRuntime.spec.containers[0]:") and "name" in p
               for p in found)
    assert len(found) == 3


def test_the_kserve_manifests_fit_kserve_and_our_image():
    """What KServe's API types cannot say: the kinds and API versions KServe serves, the
    runtime's container valid as a Kubernetes container (inside a Pod, strictly), the port and
    model directory KServe gives a runtime (8080, /mnt/models), probes on our V2 health
    routes, and an InferenceService that names this runtime, the V2 protocol, one of its model
    formats and a model the models directory has."""
    runtime, service = kserve()
    assert (runtime["apiVersion"], runtime["kind"]) == ("serving.kserve.io/v1alpha1",
                                                        "ServingRuntime")
    assert (service["apiVersion"], service["kind"]) == ("serving.kserve.io/v1beta1",
                                                        "InferenceService")
    spec = runtime["spec"]
    assert "v2" in spec["protocolVersions"]
    [container] = spec["containers"]
    assert container["name"] == "kserve-container"
    web = load("deployment.yaml")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == web["image"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MODELFLY_MODELS_DIR"] == "/mnt/models"
    assert env["MODELFLY_BIND"] == "0.0.0.0:8080" and container["ports"][0]["containerPort"] \
        == 8080
    assert route(container["readinessProbe"]["httpGet"]["path"]) == "/v2/health/ready"
    assert route(container["livenessProbe"]["httpGet"]["path"]) == "/v2/health/live"
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "runtime"},
           "spec": {"containers": [container]}}
    kubernetes_validate.validate(pod, "1.37.0", strict=True)
    model = service["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"] and model["protocolVersion"] == "v2"
    assert model["modelFormat"]["name"] in {f["name"] for f in spec["supportedModelFormats"]}
    default = {e["name"]: e["value"] for e in model["env"]}["MODELFLY_DEFAULT_MODEL"]
    assert default == service["metadata"]["name"] and (ROOT / "models" / f"{default}.json"
                                                       ).is_file()


def test_the_kserve_runtime_serves_as_kserve_runs_it(tmp_path):
    """The runtime's container command with its environment, the models where KServe puts
    them and a free port in place of 8080: its probes and a V2 infer call answer."""
    runtime, service = kserve()
    container = runtime["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    env.update({e["name"]: e["value"] for e in service["spec"]["predictor"]["model"]["env"]})
    mounted = tmp_path / "mnt" / "models"
    mounted.parent.mkdir()
    shutil.copytree(ROOT / "models", mounted)
    port = free_port()
    env.update(MODELFLY_MODELS_DIR=str(mounted), MODELFLY_BIND=f"127.0.0.1:{port}")
    server = Server([sys.executable, "serve.py"], port, tmp_path / "kserve.log", env)
    try:
        for probe in ("readinessProbe", "livenessProbe"):
            answer = requests.get(server.url + container[probe]["httpGet"]["path"], timeout=10)
            assert answer.status_code == 200
        name = service["metadata"]["name"]
        answer = requests.post(f"{server.url}/v2/models/{name}/infer", timeout=10, json={
            "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": GOOD_ROW}]})
        assert answer.json()["outputs"][0]["data"] == predict(GOOD_ROW)["predictions"]
    finally:
        server.stop()
