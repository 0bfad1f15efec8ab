"""The edge runner's requests and answers: plain JSON and the Open Inference Protocol's JSON ``infer``.

Transport-free, so ``predict`` on stdin and the HTTP server give the same answers and errors.
Errors are modelfn's own (:mod:`modelfn.errors`): each carries its HTTP status and a message for
the caller; anything else is a 500 with a generic message.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from modelfn.errors import InvalidInput, NotFound
from modelfn.table import normalize_oip_inputs
from modelfn.tensors import check_datatype, check_shape, to_array, to_json_data

from .model import EdgeModel

#: The most elements one request's tensors may hold (as the function's MODELFN_MAX_TENSOR_ELEMENTS).
MAX_ELEMENTS = 16_000_000


def parse(body: bytes) -> Any:
    """A JSON body, or a 400 that says where it broke."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(f"the body is not JSON: {str(exc)[:200]}") from exc


def dumps(value: Any) -> bytes:
    """JSON with numpy values as plain numbers and lists; NaN and infinity become null."""
    return json.dumps(value, default=_plain, allow_nan=False, separators=(",", ":")).encode()


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return [_finite(v) for v in value.tolist()] if value.ndim == 1 else [_plain(row) for row in value]
    if isinstance(value, np.generic):
        return _finite(value.item())
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(f"{type(value).__name__} is not JSON")


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def predict(model: EdgeModel, body: bytes) -> bytes:
    """``POST /predict``."""
    return dumps(model.predict(parse(body)))


def infer(model: EdgeModel, name: str, body: bytes) -> bytes:
    """``POST /v2/models/{name}/infer`` (JSON tensors; the binary extension is the function's)."""
    if name != model.name:
        raise NotFound(f"no model {name[:100]!r}; this runner serves {model.name!r}")
    request = parse(body)
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list) or not request["inputs"]:
        raise InvalidInput("an inference request is an object with a non-empty `inputs` list")
    raw = request["inputs"] if model.table is None else normalize_oip_inputs(model, request["inputs"])
    arrays = {}
    for index, tensor in enumerate(raw):
        where = f"inputs[{index}]"
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            raise InvalidInput(f"{where}: each input needs a `name`, `datatype`, `shape` and `data`")
        spec = model.input(tensor["name"])
        if spec is None:
            raise InvalidInput(f"{where}: unknown input {tensor['name'][:100]!r}")
        datatype = check_datatype(tensor.get("datatype"), where=where)
        shape = check_shape(tensor.get("shape"), where=where, max_elements=MAX_ELEMENTS)
        arrays[spec.name] = to_array(tensor.get("data"), datatype, where=where, shape=shape)
    asked = request.get("outputs")
    names: list[Any] | None = [o.get("name") for o in asked if isinstance(o, dict)] if isinstance(asked, list) else None
    outputs = model.infer(arrays)
    if names:
        unknown = [n for n in names if n not in outputs]
        if unknown:
            raise InvalidInput(f"unknown output(s) {unknown}; the model has {list(outputs)}")
        outputs = {n: outputs[n] for n in names}
    answer: dict[str, Any] = {"model_name": model.name, "model_version": model.version}
    if isinstance(request.get("id"), str):
        answer["id"] = request["id"]
    answer["outputs"] = [
        {"name": n, "datatype": model_datatype(model, n), "shape": list(a.shape), "data": to_json_data(a)}
        for n, a in outputs.items()
    ]
    return dumps(answer)


def model_datatype(model: EdgeModel, name: str) -> str:
    return next(spec.datatype for spec in model.outputs if spec.name == name)


def metadata(model: EdgeModel, name: str) -> bytes:
    """``GET /v2/models/{name}``."""
    if name != model.name:
        raise NotFound(f"no model {name[:100]!r}; this runner serves {model.name!r}")
    tensors = lambda specs: [{"name": s.name, "datatype": s.datatype, "shape": s.shape} for s in specs]  # noqa: E731
    return dumps({
        "name": model.name, "versions": [model.version], "platform": "onnx_onnxv1",
        "inputs": tensors(model.inputs), "outputs": tensors(model.outputs),
    })  # fmt: skip
