"""The Open Inference Protocol (KServe V2) over REST.

Shapes follow ``specification/protocol/inference_rest.md``: health, server and
model metadata, model readiness and inference with nested or flat ``data``,
every numeric datatype plus BOOL and BYTES, ``id`` echoed and an ``outputs``
filter. Readiness probes also start the model's load, so an orchestrator that
only probes still brings the function to ready.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelfn import __version__
from modelfn.errors import InvalidInput, MalformedBody
from modelfn.http import Request, Response, json_response, parse_json_object
from modelfn.tensors import check_shape, datatype_of, to_array, to_json_data

if TYPE_CHECKING:
    import numpy as np

    from modelfn.function import ModelFunction

SERVER_NAME = "modelfn"


def server_live(function: ModelFunction, request: Request) -> Response:
    return json_response({"live": True})


def server_ready(function: ModelFunction, request: Request) -> Response:
    ready = function.ready(start=True)
    return json_response({"ready": ready}, 200 if ready else 503)


def server_metadata(function: ModelFunction, request: Request) -> Response:
    return json_response({"name": SERVER_NAME, "version": __version__, "extensions": []})


def model_metadata(function: ModelFunction, request: Request, name: str, version: str | None = None) -> Response:
    contract = function.resolve(name, version)
    return json_response(
        {
            "name": contract.name,
            "versions": [contract.version],
            "platform": contract.platform,
            "inputs": [spec.metadata() for spec in contract.inputs],
            "outputs": [spec.metadata() for spec in contract.outputs],
        }
    )


def model_ready(function: ModelFunction, request: Request, name: str, version: str | None = None) -> Response:
    contract = function.resolve(name, version)
    ready = function.ready(start=True)
    return json_response({"name": contract.name, "ready": ready}, 200 if ready else 503)


def infer(function: ModelFunction, request: Request, name: str, version: str | None = None) -> Response:
    contract = function.resolve(name, version)
    body = parse_json_object(request.body)
    request_id = body.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise MalformedBody("`id` must be a string")
    _check_parameters(body, "the request")
    inputs = decode_inputs(body.get("inputs"), function.settings.max_tensor_elements)
    output_names = _requested_outputs(body.get("outputs"))

    outputs = function.model().infer(inputs, output_names)

    response: dict[str, Any] = {"model_name": contract.name, "model_version": contract.version}
    if request_id is not None:
        response["id"] = request_id
    response["outputs"] = [encode_output(name, array) for name, array in outputs.items()]
    return json_response(response)


def decode_inputs(raw: Any, max_elements: int) -> dict[str, np.ndarray]:
    """``inputs`` of an inference request -> named arrays, each checked before it is built."""
    if not isinstance(raw, list) or not raw:
        raise MalformedBody("`inputs` must be a non-empty list of tensors")
    inputs: dict[str, np.ndarray] = {}
    for index, tensor in enumerate(raw):
        where = f"inputs[{index}]"
        if not isinstance(tensor, dict):
            raise MalformedBody(f"{where} must be an object with name, shape, datatype and data")
        missing = [key for key in ("name", "shape", "datatype", "data") if key not in tensor]
        if missing:
            raise MalformedBody(f"{where} is missing {', '.join(missing)}")
        name = tensor["name"]
        if not isinstance(name, str):
            raise MalformedBody(f"{where}.name must be a string")
        where = f"input {name[:100]!r}"
        if name in inputs:
            raise InvalidInput(f"{where} appears more than once")
        _check_parameters(tensor, where)
        shape = check_shape(tensor["shape"], where=where, max_elements=max_elements)
        inputs[name] = to_array(tensor["data"], tensor["datatype"], where=where, shape=shape)
    return inputs


def encode_output(name: str, array: np.ndarray) -> dict[str, Any]:
    return {"name": name, "datatype": datatype_of(array), "shape": list(array.shape), "data": to_json_data(array)}


def _requested_outputs(raw: Any) -> list[str] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in raw):
        raise MalformedBody("`outputs` must be a list of objects with a string `name`")
    for output in raw:
        _check_parameters(output, f"output {output['name'][:100]!r}")
    return [output["name"] for output in raw]


def _check_parameters(obj: dict[str, Any], where: str) -> None:
    """Parameters are optional; those that change the wire format must not be silently ignored."""
    parameters = obj.get("parameters")
    if parameters is None:
        return
    if not isinstance(parameters, dict):
        raise MalformedBody(f"{where}: `parameters` must be an object")
    for key in ("binary_data_size", "binary_data", "binary_data_output", "shared_memory_region"):
        if parameters.get(key):
            raise InvalidInput(
                f"{where}: parameter {key!r} asks for an extension this server does not offer "
                "(see GET /v2 `extensions`); send tensor data as JSON"
            )
