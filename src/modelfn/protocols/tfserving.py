"""TensorFlow Serving's REST predict API (also KServe V1).

``{"instances": [...]}`` (row format) -> ``{"predictions": [...]}``;
``{"inputs": ...}`` (columnar format) -> ``{"outputs": ...}``. With one input,
an instance is the input's value; with several, an object keyed by input name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelfn.errors import InvalidInput, MalformedBody
from modelfn.http import VERSION_HEADER, Request, Response, json_response, parse_json_object
from modelfn.runtime.model import named_inputs
from modelfn.tensors import to_array, to_json_value

if TYPE_CHECKING:
    import numpy as np

    from modelfn.contract import Contract
    from modelfn.function import Servable


def model_status(function: Servable, request: Request, name: str, version: str | None = None) -> Response:
    member = function.member(name, version)
    contract = member.contract()
    state = "AVAILABLE" if member.ready(start=True) else "LOADING"
    return json_response(
        {
            "model_version_status": [
                {"version": contract.version, "state": state, "status": {"error_code": "OK", "error_message": ""}}
            ]
        }
    )


def predict(function: Servable, request: Request, name: str, version: str | None = None) -> Response:
    member = function.member(name, version)
    contract = member.contract()
    body = parse_json_object(request.body, function.settings)
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
    model = member.model()
    outputs = member.run(lambda: model.infer(inputs), inline=model.interruptible(hooks=False))
    headers = {VERSION_HEADER: model.contract.version}
    if row_format:
        return json_response({"predictions": _outputs_to_rows(outputs)}, headers=headers)
    if len(outputs) == 1:
        return json_response({"outputs": to_json_value(next(iter(outputs.values())))}, headers=headers)
    return json_response({"outputs": {name: to_json_value(a) for name, a in outputs.items()}}, headers=headers)


def _rows_to_inputs(contract: Contract, instances: Any) -> dict[str, np.ndarray]:
    if not isinstance(instances, list) or not instances:
        raise MalformedBody("`instances` must be a non-empty list")
    if len(contract.inputs) == 1:
        spec = contract.inputs[0]
        return {spec.name: to_array(instances, spec.datatype, where=f"input {spec.name!r}")}
    names = [spec.name for spec in contract.inputs]
    for index, instance in enumerate(instances):
        if not isinstance(instance, dict) or set(instance) != set(names):
            raise MalformedBody(f"instances[{index}] must be an object with exactly the keys {names}")
    return {
        spec.name: to_array([row[spec.name] for row in instances], spec.datatype, where=f"input {spec.name!r}")
        for spec in contract.inputs
    }


def _columns_to_inputs(contract: Contract, columns: Any) -> dict[str, np.ndarray]:
    if isinstance(columns, dict) or len(contract.inputs) != 1:
        return named_inputs(contract, columns, "`inputs`")
    return {
        contract.inputs[0].name: to_array(
            columns, contract.inputs[0].datatype, where=f"input {contract.inputs[0].name!r}"
        )
    }


def _outputs_to_rows(outputs: dict[str, np.ndarray]) -> list[Any]:
    if len(outputs) == 1:
        return to_json_value(next(iter(outputs.values())))
    columns = {name: to_json_value(array) for name, array in outputs.items()}
    rows = {len(column) for column in columns.values()}
    if len(rows) != 1:
        raise InvalidInput("the outputs have different batch sizes; use the columnar `inputs` format")
    return [{name: column[i] for name, column in columns.items()} for i in range(rows.pop())]
