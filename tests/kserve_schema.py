"""Checks KServe manifests against the API types KServe's SDK ships (kserve.models, generated
from the OpenAPI of KServe's resources, with the Kubernetes types they hold from
kubernetes.client.models) and prints the problems of each as JSON. Run by tests/test_deploy.py
in .venv-clients (it imports nothing of modelfly's):

    python tests/kserve_schema.py MANIFEST.yaml ...

A problem is a key the type does not have, a value of the wrong JSON type, or a required field
left out (the SDK's constructors refuse it).
"""

import json
import re
import sys

import kserve.models
import kubernetes.client.models
import yaml

PRIMITIVES = {"str": str, "int": int, "bool": bool, "float": (int, float), "object": object,
              "datetime": str, "date": str}
KINDS = {"ServingRuntime": "V1alpha1ServingRuntime", "InferenceService": "V1beta1InferenceService"}


def model_class(name: str) -> type:
    return getattr(kserve.models, name, None) or getattr(kubernetes.client.models, name)


def problems(value: object, type_name: str, where: str) -> list[str]:
    if type_name in PRIMITIVES:
        wanted = PRIMITIVES[type_name]
        fits = isinstance(value, wanted) and not (wanted is int and isinstance(value, bool))
        return [] if fits else [f"{where}: {value!r} is not {type_name}"]
    if found := re.fullmatch(r"(?:list|List)\[(.+)\]", type_name):
        if not isinstance(value, list):
            return [f"{where}: not a list of {found[1]}"]
        return [p for i, item in enumerate(value) for p in problems(item, found[1],
                                                                    f"{where}[{i}]")]
    if found := re.fullmatch(r"(?:dict\(str, (.+)\)|Dict\[str, (.+)\])", type_name):
        if not isinstance(value, dict):
            return [f"{where}: not a map of {found[1] or found[2]}"]
        return [p for key, item in value.items()
                for p in problems(item, found[1] or found[2], f"{where}.{key}")]
    cls = model_class(type_name)
    if not isinstance(value, dict):
        return [f"{where}: not an object ({type_name})"]
    attributes = {key: attribute for attribute, key in cls.attribute_map.items()}
    found = [f"{where}: {type_name} has no key {key!r}" for key in value if key not in attributes]
    for key, item in value.items():
        if key in attributes:
            found += problems(item, cls.openapi_types[attributes[key]], f"{where}.{key}")
    try:  # the constructor refuses a required field left out
        cls(**{attributes[key]: item for key, item in value.items() if key in attributes})
    except ValueError as refused:
        found.append(f"{where}: {refused}")
    return found


def main() -> None:
    report = {}
    for path in sys.argv[1:]:
        with open(path) as file:
            manifest = yaml.safe_load(file)
        report[path] = problems(manifest, KINDS[manifest["kind"]], manifest["kind"])
    print(json.dumps(report))


if __name__ == "__main__":
    main()
