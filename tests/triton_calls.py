"""Calls a V2 server with tritonclient.http, as a caller of Triton or MLServer would, and prints
what it got as JSON. Run by tests/test_v2.py in .venv-clients (it imports nothing of modelfly's):

    python tests/triton_calls.py HOST:PORT INPUTS.json

INPUTS.json: {model: {"rows": [[...], ...]}} for one tensor [rows, features], or {model:
{"columns": {name: [...]}}} for a tensor per column (content_type "pd"; strings are BYTES).
"""

import json
import sys

import numpy
import tritonclient.http as http
from tritonclient.utils import InferenceServerException
from v2_inputs import tensors


def plain(array: numpy.ndarray | None) -> list | None:
    if array is None:
        return None
    return [v.decode() if isinstance(v, bytes) else v for v in array.tolist()]


def main() -> None:
    client = http.InferenceServerClient(sys.argv[1])
    inputs = json.loads(open(sys.argv[2]).read())
    got = {"live": client.is_server_live(), "ready": client.is_server_ready(),
           "model_ready": {}, "metadata": {}, "infer": {}}
    for model, spec in inputs.items():
        got["model_ready"][model] = [client.is_model_ready(model),
                                     client.is_model_ready(model, "1.0.0")]
        metadata = client.get_model_metadata(model)
        got["metadata"][model] = metadata
        names = [output["name"] for output in metadata["outputs"]]
        parameters = {"content_type": "pd"} if "columns" in spec else None
        for binary in (True, False):
            for chosen in (None, *([name] for name in names)):
                outputs = None if chosen is None else [
                    http.InferRequestedOutput(name, binary_data=binary) for name in chosen]
                result = client.infer(model, tensors(spec, binary, http.InferInput),
                                      outputs=outputs,
                                      parameters=parameters, request_id=f"{model}-{binary}")
                key = f"{'binary' if binary else 'json'} {','.join(chosen or ['all'])}"
                got["infer"].setdefault(model, {})[key] = {
                    "id": result.get_response()["id"],
                    **{name: plain(result.as_numpy(name)) for name in names}}
    try:
        client.infer("iris", tensors({"rows": [[1.0, 2.0]]}, True, http.InferInput))
    except InferenceServerException as refused:
        got["refused"] = {"status": refused.status(), "message": refused.message()}
    print(json.dumps(got))


if __name__ == "__main__":
    main()
