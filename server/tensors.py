"""V2 tensors in and out: JSON (`data`, flat or nested, row-major) or the binary tensor data
extension (a JSON header of `Inference-Header-Content-Length` bytes, then each binary tensor's
raw little-endian bytes in order, `parameters.binary_data_size` each; BYTES elements as a
4-byte length and the bytes). Every mismatch of shape, datatype and length is a BadInput that
names the tensor."""

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy
import orjson
import pandas

from modelfly.errors import BadInput
from server.answers import Answer

DTYPES = {"FP64": numpy.dtype("<f8"), "FP32": numpy.dtype("<f4"), "INT64": numpy.dtype("<i8"),
          "INT32": numpy.dtype("<i4"), "BOOL": numpy.dtype("|b1")}
REQUEST_KEYS = {"id", "model_name", "model_version", "parameters", "inputs", "outputs"}
INPUT_KEYS = {"name", "datatype", "shape", "parameters", "data"}
INPUT_PARAMETERS = {"binary_data_size", "content_type"}
REQUEST_PARAMETERS = {"content_type", "binary_data_output"}


@dataclass(frozen=True)
class Tensor:
    """One input tensor: `values` a numpy array of its shape (numbers), or a flat list of
    strings (BYTES; None where JSON held null)."""

    name: str
    datatype: str
    shape: list[int]
    values: Any


def decode_request(body: bytes, header_length: str | None) -> tuple[dict, list[Tensor]]:
    """The request's JSON and its input tensors."""
    binary = memoryview(b"")
    if header_length is not None:
        if not header_length.isdigit():
            raise BadInput(f"Inference-Header-Content-Length {header_length[:20]!r} is not a "
                           "number of bytes")
        if int(header_length) > len(body):
            raise BadInput(f"Inference-Header-Content-Length {header_length} is past the end "
                           f"of the body ({len(body)} bytes)")
        binary = memoryview(body)[int(header_length):]
        body = body[:int(header_length)]
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError:
        try:  # NaN and Infinity, which tritonclient writes for such floats and orjson refuses
            request = json.loads(body)
        except (ValueError, RecursionError) as problem:
            raise BadInput(f"the request is not JSON: {problem}") from problem
    if not isinstance(request, dict):
        raise BadInput("the request must be a JSON object with \"inputs\"")
    refuse_unknown(request, REQUEST_KEYS, "request key(s)")
    parameters = request["parameters"] = request.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise BadInput("parameters must be an object")
    refuse_unknown(parameters, REQUEST_PARAMETERS, "request parameter(s)")
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BadInput("inputs must be a non-empty list of tensors")
    tensors, offset = [], 0
    for position, spec in enumerate(inputs):
        tensor, offset = _tensor(spec, position, binary, offset)
        tensors.append(tensor)
    if offset != len(binary):
        raise BadInput(f"{len(binary) - offset} bytes follow the last binary tensor")
    return request, tensors


def refuse_unknown(given: Any, known: set[str], what: str) -> None:
    """BadInput naming the keys of `given` that are not `known`."""
    unknown = sorted(set(given) - known)
    if unknown:
        raise BadInput(f"unknown {what} {', '.join(repr(key)[:40] for key in unknown)}; "
                       f"known: {', '.join(sorted(known))}")


def _tensor(spec: Any, position: int, binary: memoryview, offset: int) -> tuple[Tensor, int]:
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise BadInput(f"input {position} must be an object with a name")
    name = spec["name"][:60]
    refuse_unknown(spec, INPUT_KEYS, f"key(s) of input {name!r}:")
    datatype, shape = spec.get("datatype"), spec.get("shape")
    if datatype != "BYTES" and datatype not in DTYPES:
        raise BadInput(f"input {name!r}: datatype {str(datatype)[:20]!r}; expected FP64, FP32, "
                       "INT64, INT32, BOOL or BYTES")
    if not isinstance(shape, list) or not shape or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        raise BadInput(f"input {name!r}: shape must be a list of sizes, e.g. [rows, "
                       f"features]; received {str(shape)[:40]}")
    count = math.prod(shape)
    parameters = spec.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise BadInput(f"input {name!r}: parameters must be an object")
    refuse_unknown(parameters, INPUT_PARAMETERS, f"parameter(s) of input {name!r}:")
    size = parameters.get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size < 0 or offset + size > len(binary):
            raise BadInput(f"input {name!r}: binary_data_size {str(size)[:20]} is past the end "
                           f"of the binary data ({len(binary) - offset} bytes left)")
        if "data" in spec:
            raise BadInput(f"input {name!r}: both data and binary_data_size")
        raw = binary[offset:offset + size]
        values = _from_bytes(name, datatype, shape, count, raw)
        return Tensor(name, datatype, shape, values), offset + size
    if "data" not in spec:
        raise BadInput(f"input {name!r}: no data (and no binary_data_size)")
    return Tensor(name, datatype, shape, _from_json(name, datatype, shape, count,
                                                    spec["data"])), offset


def _from_bytes(name: str, datatype: str, shape: list[int], count: int,
                raw: memoryview) -> Any:
    if datatype == "BYTES":
        texts, at = [], 0
        while at < len(raw) and len(texts) < count:
            length = int.from_bytes(raw[at:at + 4], "little")
            if at + 4 + length > len(raw):
                break
            texts.append(_text(name, bytes(raw[at + 4:at + 4 + length])))
            at += 4 + length
        if len(texts) != count or at != len(raw):
            raise BadInput(f"input {name!r}: its {len(raw)} bytes are not {count} BYTES "
                           f"elements (a 4-byte length, then the bytes) for shape {shape}")
        return texts
    dtype = DTYPES[datatype]
    if len(raw) != count * dtype.itemsize:
        raise BadInput(f"input {name!r}: {len(raw)} bytes of binary data for {datatype} "
                       f"{shape}, which needs {count * dtype.itemsize}")
    return numpy.frombuffer(raw, dtype=dtype).reshape(shape)


def _from_json(name: str, datatype: str, shape: list[int], count: int, data: Any) -> Any:
    if not isinstance(data, list):
        raise BadInput(f"input {name!r}: data must be a list (flat or nested, row-major)")
    if datatype == "BYTES":
        flat = list(_flatten(data))
        if not all(item is None or isinstance(item, str) for item in flat):
            raise BadInput(f"input {name!r}: BYTES data must be strings")
        values: Any = flat
        received = len(flat)
    else:
        try:
            values = numpy.array(data, dtype=numpy.float64)
        except (TypeError, ValueError) as problem:
            raise BadInput(f"input {name!r}: {datatype} data must be numbers, in lists of "
                           "equal length") from problem
        received = values.size
        if datatype in ("INT64", "INT32") and not numpy.array_equal(values, numpy.trunc(values)):
            raise BadInput(f"input {name!r}: {datatype} data must be whole numbers")
    if received != count:
        raise BadInput(f"input {name!r}: {received} values for shape {shape}, which needs "
                       f"{count}")
    return values if datatype == "BYTES" else values.reshape(shape)


def _flatten(data: list) -> Any:
    for item in data:
        if isinstance(item, list):
            yield from _flatten(item)
        else:
            yield item


def _text(name: str, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as problem:
        raise BadInput(f"input {name!r}: a BYTES element is not UTF-8") from problem


def encode_response(head: dict, outputs: list[tuple[str, numpy.ndarray, bool, dict | None]],
                    vocabulary: numpy.ndarray | None = None,
                    codes: numpy.ndarray | None = None) -> Answer:
    """The answer with `outputs` [(name, array, binary, parameters)] after `head`;
    `vocabulary` the values a BYTES output takes and `codes` its values' places in it, if
    known (bytes_elements)."""
    described, chunks = [], []
    for name, array, binary, parameters in outputs:
        kind = array.dtype.kind
        datatype = ("FP64" if kind == "f" else "INT64" if kind in "iu" else
                    "BOOL" if kind == "b" else "BYTES")
        output = {"name": name, "datatype": datatype, "shape": list(array.shape),
                  "parameters": dict(parameters or {})}
        if datatype == "BYTES":
            if binary:
                chunks.append(bytes_elements(array.ravel(), vocabulary, codes))
            else:
                output["data"] = [str(item) for item in array.ravel().tolist()]
        elif binary:
            dtype = {"FP64": "<f8", "INT64": "<i8", "BOOL": "|b1"}[datatype]
            chunks.append(numpy.ascontiguousarray(array, dtype=dtype).tobytes())
        else:
            output["data"] = array.ravel()
        if binary:
            output["parameters"]["binary_data_size"] = len(chunks[-1])
        if not output["parameters"]:
            del output["parameters"]
        described.append(output)
    header = orjson.dumps({**head, "outputs": described}, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return 200, [("Content-Type", "application/json")], header
    return 200, [("Content-Type", "application/octet-stream"),
                 ("Inference-Header-Content-Length", str(len(header)))], [header, *chunks]


def bytes_elements(values: numpy.ndarray, vocabulary: numpy.ndarray | None = None,
                   codes: numpy.ndarray | None = None) -> bytes:
    """BYTES elements in binary: each a 4-byte little-endian length, then its UTF-8. Labels
    repeat a few values (`vocabulary`, sorted: a classifier's classes_; `codes`, if known,
    each value's place in it), so each distinct one is encoded once and the elements are laid
    out by numpy (a million iris labels: 26 ms, against 110 ms for a join of encoded
    labels)."""
    if codes is not None and vocabulary is not None:
        return _laid_out(codes, vocabulary)
    if vocabulary is not None and len(vocabulary):
        codes = numpy.searchsorted(vocabulary, values).clip(0, len(vocabulary) - 1)
        if not (vocabulary[codes] == values).all():
            codes = None
    if codes is None:
        codes, vocabulary = pandas.factorize(values)
    return _laid_out(codes, vocabulary)


def _laid_out(codes: numpy.ndarray, vocabulary: Any) -> bytes:
    elements = [len(text).to_bytes(4, "little") + text
                for text in (str(value).encode() for value in vocabulary)]
    width = max(map(len, elements))
    table = numpy.zeros((len(elements), width), dtype=numpy.uint8)
    for row, element in zip(table, elements, strict=True):
        row[:len(element)] = numpy.frombuffer(element, dtype=numpy.uint8)
    used = numpy.arange(width) < numpy.array([len(e) for e in elements])[:, None]
    return numpy.take(table, codes, axis=0)[numpy.take(used, codes, axis=0)].tobytes()
