"""The input tensors of tests/triton_calls.py and tests/kserve_calls.py, made with either
client's InferInput (both take a name, shape and datatype, then set_data_from_numpy). Plain
numpy: those scripts run in the clients' virtualenv, which has nothing of modelfly's.

A spec is {"rows": [[...], ...]} for one tensor [rows, features], or {"columns": {name:
[...]}} for a tensor per column (content_type "pd"; strings are BYTES, None a missing number).
"""

import numpy


def tensors(spec: dict, binary: bool, infer_input: type) -> list:
    if "rows" in spec:
        rows = numpy.array(spec["rows"], dtype=numpy.float64)
        tensor = infer_input("input-0", list(rows.shape), "FP64")
        tensor.set_data_from_numpy(rows, binary_data=binary)
        return [tensor]
    made = []
    for name, values in spec["columns"].items():
        texts = isinstance(values[0], str)
        array = (numpy.array([v.encode() for v in values], dtype=object) if texts
                 else numpy.array([numpy.nan if v is None else v for v in values]))
        tensor = infer_input(name, [len(values)], "BYTES" if texts else "FP64")
        tensor.set_data_from_numpy(array, binary_data=binary)
        made.append(tensor)
    return made
