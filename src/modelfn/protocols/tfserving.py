"""TensorFlow Serving's REST predict API (also KServe V1).

``{"instances": [...]}`` (row format) -> ``{"predictions": [...]}``;
``{"inputs": ...}`` (columnar format) -> ``{"outputs": ...}``. With one input,
an instance is the input's value or an object naming it; with several, an object keyed by input
name. Binary values come as ``{"b64": "..."}`` (for BYTES inputs), and the ``NaN``, ``Infinity``
and ``-Infinity`` tokens of TF Serving's JSON are read as numbers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelfn.errors import InvalidInput, MalformedBody
from modelfn.http import VERSION_HEADER, Request, Response, json_response, parse_json_object
from modelfn.tensors import named_inputs, text_or_bytes, to_array, to_json_value

if TYPE_CHECKING:
    import numpy as np

    from modelfn.contract import Contract
    from modelfn.function import Servable


def model_status(function: Servable, request: Request, name: str, version: str | None = None) -> Response:
    """``GET /v1/models/{name}``: TF Serving's version status, exactly; or, with
    ``MODELFN_V1_MODEL_STATUS=kserve``, KServe V1's ``name``/``ready`` beside it.

    Both protocols answer at this path, and TF Serving's clients compare the body whole, so the
    default is TF Serving's; the kserve SDK's ``is_model_ready`` (protocol ``v1``) needs ``kserve``.
    """
    member = function.member(name, version)
    contract = member.contract()
    ready = member.ready(start=True)
    status = {"error_code": "OK", "error_message": ""}
    versions = [{"version": contract.version, "state": "AVAILABLE" if ready else "LOADING", "status": status}]
    if function.settings.v1_model_status == "tfserving":
        return json_response({"model_version_status": versions})
    # KServe V1: a model that is not ready answers 503, which its client reads as "not ready".
    body = {"model_version_status": versions, "name": contract.name, "ready": ready}
    return json_response(body, 200 if ready else 503)


def predict(function: Servable, request: Request, name: str, version: str | None = None) -> Response:
    member = function.member(name, version)
    contract = member.contract()
    body = parse_json_object(request.body, function.settings, non_finite=True)  # NaN and Infinity too
    signature = body.get("signature_name", "serving_default")
    if signature != "serving_default":
        raise InvalidInput(f"unknown signature_name {str(signature)[:100]!r}; this model has 'serving_default'")
    if ("instances" in body) == ("inputs" in body):
        raise MalformedBody("the body must have exactly one of `instances` (row format) or `inputs` (columnar format)")

    row_format = "instances" in body
    if row_format:
        inputs = _rows_to_inputs(contract, body["instances"])
    else:
        inputs = _columns_to_inputs(contract, body["inputs"])
        if contract.table is not None:
            from modelfn.table import with_column_shapes

            inputs = with_column_shapes(contract, inputs)
    model = member.model()
    outputs = member.run(lambda: model.infer(inputs), inline=model.interruptible(hooks=False))
    headers = {VERSION_HEADER: model.contract.version}
    if row_format:
        return json_response({"predictions": _outputs_to_rows(outputs)}, headers=headers)
    if len(outputs) == 1:
        return json_response({"outputs": to_json_value(next(iter(outputs.values())))}, headers=headers)
    return json_response({"outputs": {name: to_json_value(a) for name, a in outputs.items()}}, headers=headers)


def _values(spec: Any, data: Any) -> np.ndarray:
    """One input's values as an array; TF Serving's ``{"b64": ...}`` objects decoded for BYTES inputs."""
    where = f"input {spec.name!r}"
    if spec.datatype == "BYTES":
        data = _unwrap_b64(data, where)
    return to_array(data, spec.datatype, where=where)


def _unwrap_b64(data: Any, where: str) -> Any:
    """``{"b64": "..."}`` -> its decoded value, anywhere in nested lists (iteratively: no recursion limit).

    Text comes out as ``str``; anything else (an image's bytes) as ``bytes``, for models that take it.
    """
    import base64
    import binascii

    def decode(item: Any) -> Any:
        if not isinstance(item, dict):
            return item
        if set(item) != {"b64"} or not isinstance(item["b64"], str):
            raise InvalidInput(f'{where}: a binary value must be {{"b64": "<base64>"}}')
        try:
            return text_or_bytes(base64.b64decode(item["b64"], validate=True))
        except binascii.Error as exc:
            raise InvalidInput(f"{where}: a b64 value is not base64: {exc}") from None

    if not isinstance(data, list):
        return decode(data)
    root: list[Any] = list(data)
    stack = [root]
    while stack:
        current = stack.pop()
        for index, item in enumerate(current):
            if isinstance(item, list):
                current[index] = copy = list(item)
                stack.append(copy)
            else:
                current[index] = decode(item)
    return root


def _rows_to_inputs(contract: Contract, instances: Any) -> dict[str, np.ndarray]:
    if not isinstance(instances, list) or not instances:
        raise MalformedBody("`instances` must be a non-empty list")
    if contract.table is not None:  # an object per row, keyed by column, as a person writes it
        from modelfn.table import columns_of_rows

        return columns_of_rows(contract, instances, "`instances`", label="instances[{}]")
    objects = all(isinstance(instance, dict) and "b64" not in instance for instance in instances)
    if len(contract.inputs) == 1 and not objects:  # a value or a list per instance
        spec = contract.inputs[0]
        return {spec.name: _values(spec, instances)}
    names = [spec.name for spec in contract.inputs]
    for index, instance in enumerate(instances):
        if not isinstance(instance, dict) or set(instance) != set(names):
            raise MalformedBody(f"instances[{index}] must be an object with exactly the keys {names}")
    return {spec.name: _values(spec, [row[spec.name] for row in instances]) for spec in contract.inputs}


def _columns_to_inputs(contract: Contract, columns: Any) -> dict[str, np.ndarray]:
    if (isinstance(columns, dict) and "b64" not in columns) or len(contract.inputs) != 1:
        if isinstance(columns, dict):
            specs = {spec.name: spec for spec in contract.inputs}
            columns = {k: _unwrap_b64(v, f"input {k!r}") if k in specs and specs[k].datatype == "BYTES" else v
                       for k, v in columns.items()}  # fmt: skip
            if contract.table is not None:  # one list per column, nulls where the column may miss a value
                from modelfn.table import columns_of_lists

                return columns_of_lists(contract, columns)
        return named_inputs(contract, columns, "`inputs`")
    return {contract.inputs[0].name: _values(contract.inputs[0], columns)}


def _outputs_to_rows(outputs: dict[str, np.ndarray]) -> list[Any]:
    if len(outputs) == 1:
        return to_json_value(next(iter(outputs.values())))
    columns = {name: to_json_value(array) for name, array in outputs.items()}
    rows = {len(column) for column in columns.values()}
    if len(rows) != 1:
        raise InvalidInput("the outputs have different batch sizes; use the columnar `inputs` format")
    return [{name: column[i] for name, column in columns.items()} for i in range(rows.pop())]
