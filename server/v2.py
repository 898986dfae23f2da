"""The Open Inference Protocol (KServe V2) over the same models as /predict.

    GET  /v2                                       the server's metadata
    GET  /v2/health/live, /v2/health/ready         {"live": true}, {"ready": true}
    GET  /v2/models/<name>[/versions/<v>]          inputs and outputs, -1 for the rows
    GET  /v2/models/<name>[/versions/<v>]/ready    {"name", "ready"}
    POST /v2/models/<name>[/versions/<v>]/infer    inputs -> outputs `predict`, `predict_proba`

A model that takes plain numbers takes one tensor [rows, features] (FP64, FP32 or INT64); a
model that takes records, one tensor per column with the request's `parameters.content_type:
"pd"` (MLServer's convention; BYTES for categories and texts, NaN or null for a missing value);
a model that takes texts alone, one BYTES tensor [rows]. Every value is then checked as on
/predict: columns and texts by features.to_rows, a numeric tensor as an array (finite, or
NaN where the card takes missing values). Outputs are named as MLServer's
scikit-learn runtime names them. Tensors travel as JSON, or binary with the extension
(tensors.py). The guard checks the token (not on the health routes) and reads the body.
"""

from collections.abc import Callable
from typing import Any

import numpy

from modelfly.errors import BadInput, ModelflyError, ModelNotFound, TooManyRows
from modelfly.features import to_rows
from modelfly.registry import Registry
from server.answers import Answer, error, json_answer
from server.tensors import Tensor, decode_request, encode_response, refuse_unknown

ROUTES = {"/v2": ("GET",), "/v2/health/live": ("GET",), "/v2/health/ready": ("GET",),
          "/v2/models/{name}": ("GET",), "/v2/models/{name}/ready": ("GET",),
          "/v2/models/{name}/infer": ("POST",)}
NUMBERS = {"FP64", "FP32", "INT64"}


def route(path: str) -> str | None:
    """The metrics' route label of a /v2 path, whatever the model and version."""
    if path in ("/v2", "/v2/health/live", "/v2/health/ready"):
        return path
    if not path.startswith("/v2/models/"):
        return None
    last = path.rsplit("/", 1)[1]
    return f"/v2/models/{{name}}/{last}" if last in ("ready", "infer") else "/v2/models/{name}"


def is_public(path: str) -> bool:
    """The health routes answer without a token, as /health and /ready do."""
    return path.startswith("/v2/health/")


class V2Routes:
    """The V2 routes over the registry; ready() is the server's readiness (app.py)."""

    def __init__(self, models: Registry, ready: Callable[[], tuple[bool, Any]],
                 version: str) -> None:
        self.models, self.ready, self.version = models, ready, version

    def answer(self, environ: dict, path: str, method: str, body: bytes) -> Answer:
        label = route(path)
        allowed = ROUTES.get(label or "")
        if allowed is None:
            return error(404, "no such V2 path; see GET /v2 and /v2/models/<name>")
        if method not in allowed and not (method == "HEAD" and "GET" in allowed):
            return error(405, f"{label} takes {', '.join(allowed)}, received {method[:10]}",
                            ("Allow", ", ".join(allowed)))
        try:
            if label == "/v2":
                return json_answer(200, {"name": "modelfly", "version": self.version,
                                         "extensions": ["binary_tensor_data"]})
            if label == "/v2/health/live":
                return json_answer(200, {"live": True})
            if label == "/v2/health/ready":
                ok, details = self.ready()
                return json_answer(200, {"ready": True}) if ok else json_answer(
                    503, {"ready": False, "error": f"not ready: {details}"})
            name, version = self._model_of(path)
            if label == "/v2/models/{name}":
                return json_answer(200, self.metadata(name, version))
            model = self.models.get(name, version)
            if label == "/v2/models/{name}/ready":
                return json_answer(200, {"name": name, "ready": True})
            return self.infer(model, environ, body)
        except ModelflyError as refusal:
            if label == "/v2/models/{name}/ready" and refusal.status == 503:
                return json_answer(503, {"name": path.split("/")[3], "ready": False,
                                         "error": refusal.message})
            return error(refusal.status, refusal.message)

    def _model_of(self, path: str) -> tuple[str, str]:
        parts = path.split("/")[3:]  # name [versions v] [ready|infer]
        if parts and parts[-1] in ("ready", "infer"):
            parts = parts[:-1]
        if len(parts) not in (1, 3) or (len(parts) == 3 and parts[1] != "versions"):
            raise ModelNotFound("no such V2 path; use /v2/models/<name>[/versions/<v>]")
        name = self.models.resolve(parts[0])
        return name, self.models.resolve_version(name, parts[2] if len(parts) == 3 else None)

    def metadata(self, name: str, version: str) -> dict:
        card = self.models.card(name, version)
        numbers = all(f["type"] == "number" for f in card["features"])
        if card.get("input") == "text":
            inputs = [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
        elif numbers:
            inputs = [{"name": "input-0", "datatype": "FP64",
                       "shape": [-1, len(card["features"])]}]
        else:
            inputs = [{"name": f["name"], "datatype": "FP64" if f["type"] == "number"
                       else "BYTES", "shape": [-1], "parameters": {"content_type": "pd"}}
                      for f in card["features"]]
        outputs = [{"name": "predict", "datatype": "BYTES" if card["classes"] else "FP64",
                    "shape": [-1]}]
        if card["classes"]:
            outputs.append({"name": "predict_proba", "datatype": "FP64",
                            "shape": [-1, len(card["classes"])],
                            "parameters": {"classes": card["classes"]}})
        return {"name": name, "versions": self.models.catalog.versions(name),
                "platform": "scikit-learn", "inputs": inputs, "outputs": outputs,
                "parameters": {"version": version}}

    def infer(self, model: Any, environ: dict, body: bytes) -> Answer:
        header_length = environ.get("HTTP_INFERENCE_HEADER_CONTENT_LENGTH")
        request, tensors = decode_request(body, header_length)
        head = {"model_name": model.card["name"], "model_version": model.card["version"]}
        for key, served in head.items():  # KServe's client names the model in the body too
            if request.get(key) not in (None, served):
                raise BadInput(f"the request's {key} is {str(request[key])[:40]!r}, but this "
                               f"path serves {served!r}")
        parameters = request["parameters"]
        limit = None if header_length is not None else self.models.settings.max_rows
        rows = self._rows(model.card, tensors, parameters.get("content_type"), limit)
        predictions, probabilities, codes = model.coded_arrays(rows)
        available = {"predict": predictions}
        if probabilities is not None:
            available["predict_proba"] = probabilities
        outputs = requested_outputs(request.get("outputs"), available,
                                    bool(parameters.get("binary_data_output")))
        if "id" in request:
            head["id"] = request["id"]
        extra = {"predict_proba": {"classes": model.classes}}
        return encode_response(head, [(name, available[name], binary, extra.get(name))
                                      for name, binary in outputs],
                               getattr(model.estimator, "classes_", None), codes)

    def _rows(self, card: dict, tensors: list[Tensor], content_type: Any,
              max_rows: int | None) -> Any:
        features = card["features"]
        if content_type not in (None, "pd", "np"):
            raise BadInput(f"content_type {content_type!r}; expected 'pd' (a tensor per "
                           "column) or 'np' (one tensor)")
        if content_type == "pd":
            return self._columns(card, tensors, max_rows)
        if len(tensors) != 1:
            raise BadInput(f"received {len(tensors)} input tensors; model {card['name']!r} "
                           "takes one (or, with parameters.content_type 'pd', one per column)")
        [tensor] = tensors
        if card.get("input") == "text":
            if tensor.datatype != "BYTES" or len(tensor.shape) not in (1, 2) or (
                    len(tensor.shape) == 2 and tensor.shape[1] != 1):
                raise BadInput(f"input {tensor.name!r} is {tensor.datatype} {tensor.shape}; "
                               f"model {card['name']!r} takes texts: BYTES [rows]")
            return to_rows([[text] for text in tensor.values], card, max_rows or
                           tensor.shape[0], self.models.settings.max_text_chars)
        if not all(f["type"] == "number" for f in features):
            raise BadInput(f"model {card['name']!r} takes categories or texts: send one tensor "
                           "per column with parameters.content_type 'pd'")
        if tensor.datatype not in NUMBERS or len(tensor.shape) != 2 \
                or tensor.shape[1] != len(features):
            raise BadInput(f"input {tensor.name!r} is {tensor.datatype} {tensor.shape}; model "
                           f"{card['name']!r} takes FP64, FP32 or INT64 [rows, "
                           f"{len(features)}]")
        check_rows(tensor.shape[0], max_rows)
        rows = tensor.values.astype(numpy.float64, copy=False)
        if rows.shape[0] == 0:
            raise BadInput(f"input {tensor.name!r} has no rows")
        if not numpy.isfinite(rows).all():
            refuse_non_finite(rows, card)
        return rows

    def _columns(self, card: dict, tensors: list[Tensor], max_rows: int | None) -> list:
        names = [f["name"] for f in card["features"]]
        given = {tensor.name: tensor for tensor in tensors}
        missing = [name for name in names if name not in given]
        unknown = [name for name in given if name not in names]
        if missing or unknown or len(given) != len(tensors):
            raise BadInput(f"model {card['name']!r} takes one tensor per column: "
                           f"{', '.join(names)}" + (f"; missing {', '.join(missing)}"
                                                    if missing else "")
                           + (f"; unknown {', '.join(unknown)}" if unknown else "")
                           + ("; a column sent twice" if len(given) != len(tensors) else ""))
        columns = []
        lengths = set()
        for feature in card["features"]:
            tensor = given[feature["name"]]
            if len(tensor.shape) not in (1, 2) or (len(tensor.shape) == 2
                                                  and tensor.shape[1] != 1):
                raise BadInput(f"column {tensor.name!r} has shape {tensor.shape}; expected "
                               "[rows] or [rows, 1]")
            lengths.add(tensor.shape[0])
            if tensor.datatype == "BYTES":
                columns.append(tensor.values)
            elif tensor.datatype in NUMBERS:
                values = tensor.values.reshape(-1).astype(numpy.float64, copy=False)
                column: list = values.tolist()
                if not numpy.isfinite(values).all():
                    column = [None if value != value else value for value in column]
                columns.append(column)
            else:
                raise BadInput(f"column {tensor.name!r} is {tensor.datatype}; expected FP64, "
                               "FP32, INT64 or BYTES")
        if len(lengths) != 1:
            raise BadInput(f"the columns have different numbers of rows: "
                           f"{', '.join(map(str, sorted(lengths)))}")
        return to_rows([list(row) for row in zip(*columns, strict=True)], card,
                       max_rows or lengths.pop(), self.models.settings.max_text_chars)


def check_rows(count: int, max_rows: int | None) -> None:
    if max_rows is not None and count > max_rows:
        raise TooManyRows(f"received {count} rows; at most {max_rows} are accepted per JSON "
                          "request (MODELFLY_MAX_ROWS; binary tensors are bounded by "
                          "MODELFLY_MAX_BINARY_BYTES)")


def refuse_non_finite(rows: numpy.ndarray, card: dict) -> None:
    """Infinity is refused; NaN (or JSON's null) stands for a missing value, refused where the
    card takes none; each with its first row and column, as /predict refuses them."""
    bad = [(numpy.isinf(rows), "expected a finite number")]
    if not card.get("missing_values"):
        bad.append((numpy.isnan(rows),
                    f"a missing value; model {card['name']!r} does not accept missing values"))
    for where, why in bad:
        if where.any():
            row, column = map(int, numpy.argwhere(where)[0])
            raise BadInput(f"row {row}, column {card['features'][column]['name']!r}: "
                           f"received {rows[row, column]}, {why}")


def requested_outputs(requested: Any, available: dict, binary_default: bool) -> list:
    """[(name, binary)]: the outputs asked for, else all of them."""
    if requested is None:
        return [(name, binary_default) for name in available]
    if not isinstance(requested, list) or not requested:
        raise BadInput("outputs must be a non-empty list of {\"name\": ...}")
    chosen = []
    for output in requested:
        if not isinstance(output, dict) or not isinstance(output.get("name"), str):
            raise BadInput("each output must be an object with a name")
        name, parameters = output["name"], output.get("parameters") or {}
        if name not in available:
            raise BadInput(f"unknown output {name[:60]!r}; this model has "
                           f"{', '.join(available)}")
        if not isinstance(parameters, dict):
            raise BadInput(f"output {name!r}: parameters must be an object")
        refuse_unknown(parameters, {"binary_data"}, f"parameter(s) of output {name!r}:")
        chosen.append((name, bool(parameters.get("binary_data", binary_default))))
    return chosen
