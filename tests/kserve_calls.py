"""Calls a V2 server with KServe's own Python client (kserve.InferenceRESTClient), as a caller of
a KServe InferenceService would, and prints what it got as JSON, in triton_calls.py's form.
Run by tests/test_v2.py in .venv-clients (it imports nothing of modelfly's):

    python tests/kserve_calls.py URL INPUTS.json      (INPUTS.json as for triton_calls.py)

KServe's REST client has no call for a model's metadata: the outputs' names are given in
INPUTS.json ({model: {..., "outputs": [names]}}).
"""

import asyncio
import json
import sys

import httpx
import numpy
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.infer_type import RequestedOutput
from v2_inputs import tensors


def plain(array: numpy.ndarray) -> list:
    return [v.decode() if isinstance(v, bytes) else v for v in array.tolist()]


async def calls(url: str, inputs: dict) -> dict:
    client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
    got = {"live": await client.is_server_live(url), "ready": await client.is_server_ready(url),
           "model_ready": {}, "infer": {}}
    for model, spec in inputs.items():
        got["model_ready"][model] = await client.is_model_ready(url, model)
        parameters = {"content_type": "pd"} if "columns" in spec else {}
        for binary in (True, False):
            for chosen in (None, *([name] for name in spec["outputs"])):
                outputs = None if chosen is None else [
                    RequestedOutput(name, {"binary_data": binary}) for name in chosen]
                request = InferRequest(model, tensors(spec, binary, InferInput),
                                       f"{model}-{binary}",
                                       parameters={**parameters, "binary_data_output": binary},
                                       request_outputs=outputs)
                result = await client.infer(url, request, model_name=model)
                key = f"{'binary' if binary else 'json'} {','.join(chosen or ['all'])}"
                got["infer"].setdefault(model, {})[key] = {
                    "id": result.id, **{output.name: plain(output.as_numpy())
                                        for output in result.outputs}}
    try:
        wrong = InferRequest("iris", tensors({"rows": [[1.0, 2.0]]}, True, InferInput))
        await client.infer(url, wrong, model_name="iris")
    except httpx.HTTPStatusError as refused:
        got["refused"] = {"status": refused.response.status_code, "message": str(refused)}
    await client.close()
    return got


if __name__ == "__main__":
    print(json.dumps(asyncio.run(calls(sys.argv[1], json.loads(open(sys.argv[2]).read())))))
