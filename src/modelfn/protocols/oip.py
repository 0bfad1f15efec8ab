"""The Open Inference Protocol (KServe V2) over REST.

Shapes follow ``specification/protocol/inference_rest.md``: health, server and
model metadata, model readiness and inference with nested or flat ``data``,
every numeric datatype plus BOOL and BYTES, ``id`` echoed and an ``outputs``
filter. Readiness probes also start the model's load, so an orchestrator that
only probes still brings the function to ready.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from modelfn import __version__
from modelfn.errors import InvalidInput, MalformedBody
from modelfn.http import JSON_OPTIONS, VERSION_HEADER, Request, Response, json_response, parse_json_object
from modelfn.protocols import binary
from modelfn.tensors import (
    check_datatype,
    check_shape,
    check_shape_form,
    check_signature,
    datatype_of,
    to_array,
    to_json_data,
)

if TYPE_CHECKING:
    import numpy as np

    from modelfn.function import Servable

SERVER_NAME = "modelfn"


def server_live(function: Servable, request: Request) -> Response:
    """Live unless a model has hung in every call slot: then the platform should replace this instance."""
    if function.wedged():
        return json_response({"live": False, "reason": "a model has hung in every call slot"}, 503)
    return json_response({"live": True})


def server_ready(function: Servable, request: Request) -> Response:
    ready = function.ready(start=True)
    return json_response({"ready": ready}, 200 if ready else 503)


def server_metadata(function: Servable, request: Request) -> Response:
    return json_response(
        {"name": SERVER_NAME, "version": __version__, "extensions": [binary.EXTENSION, "classification"]}
    )


def repository_index(function: Servable, request: Request) -> Response:
    """``POST /v2/repository/index`` (Triton's model repository extension): every model, its version, its state.

    The body is optional; ``{"ready": true}`` lists only the models loaded now. It starts no load,
    as Triton's index does not; loading and unloading through the API are not offered (the
    registry's aliases decide what a function serves).
    """
    body = parse_json_object(request.body, function.settings) if request.body.strip() else {}
    only_ready = body.get("ready")
    if only_ready is None:  # absent, or null as clients that dump every optional field send it
        only_ready = False
    elif not isinstance(only_ready, bool):
        raise MalformedBody("`ready` must be true or false")
    index = []
    for name in function.catalog():
        member = function.member(name)
        contract = member.contract()
        state = "READY" if member.ready() else "UNAVAILABLE"
        if only_ready and state != "READY":
            continue
        entry = {"name": contract.name, "version": contract.version, "state": state}
        if state != "READY":
            entry["reason"] = "not loaded yet; the first request or a readiness probe loads it"
        index.append(entry)
    return json_response(index)


def model_metadata(function: Servable, request: Request, name: str, version: str | None = None) -> Response:
    contract = function.member(name, version).contract()
    return json_response(
        {
            "name": contract.name,
            "versions": [contract.version],
            "platform": contract.platform,
            "inputs": [spec.metadata() for spec in contract.inputs],
            "outputs": [spec.metadata() for spec in contract.outputs],
        }
    )


def model_ready(function: Servable, request: Request, name: str, version: str | None = None) -> Response:
    member = function.member(name, version)
    contract = member.contract()
    ready = member.ready(start=True)
    return json_response({"name": contract.name, "ready": ready}, 200 if ready else 503)


def infer(function: Servable, request: Request, name: str, version: str | None = None) -> Response:
    member = function.member(name, version)
    contract = member.contract()
    blob: memoryview | None
    declared = request.headers.get(binary.HEADER)
    if declared is None:  # plain JSON: the usual request
        body, blob = parse_json_object(request.body, function.settings), None
    elif declared.strip() == "0" and request.body:
        body, blob = _raw_binary_request(contract, request.body)
    else:
        header, blob = binary.split_body(request.body, request.headers)
        body = parse_json_object(header, function.settings)
    request_id = body.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise MalformedBody("`id` must be a string")
    parameters = _check_parameters(body, "the request")
    # Every part's form is checked before any size: a malformed request is a 400 whatever else it asks.
    # binary_data_output covers the outputs the request leaves to the server; a listed output is JSON
    # unless it says binary_data itself (Triton and KServe answer so).
    requested = _requested_outputs(body.get("outputs"))
    classify = _classifications(body.get("outputs"), contract)
    reader = None if blob is None else binary.BinaryReader(blob)
    raw_inputs = body.get("inputs")
    nullable: frozenset[str] = frozenset()
    if contract.table is not None:  # a column per input: [rows] and [rows, 1] (MLServer's pandas codec) alike
        from modelfn.table import normalize_oip_inputs

        raw_inputs = normalize_oip_inputs(contract, raw_inputs)
        nullable = frozenset(contract.table.nullable)
    inputs = decode_inputs(
        raw_inputs,
        function.settings.max_tensor_elements,
        reader,
        lambda form: check_signature(contract, form),
        nullable,
    )
    if reader is not None:
        reader.finish()

    model = member.model()
    outputs = member.run(
        lambda: model.infer(inputs, list(requested) if requested else None, checked_against=contract),
        inline=model.interruptible(hooks=False),
    )

    # The version that answered, which an alias swap may have changed since resolve().
    version = model.contract.version
    response: dict[str, Any] = {"model_name": contract.name, "model_version": version}
    if request_id is not None:
        response["id"] = request_id
    as_binary = requested if requested else dict.fromkeys(outputs, parameters.get("binary_data_output") is True)
    for output_name, count in classify.items():
        outputs[output_name] = top_classes(outputs[output_name], count)
    return _encode_response(response, outputs, as_binary, version)


def _raw_binary_request(contract: Any, body: bytes) -> tuple[dict[str, Any], memoryview]:
    """A body that is all binary data (``Inference-Header-Content-Length: 0``): the one input's bytes.

    Triton's binary extension allows it for a model with a single input whose datatype and shape
    its configuration gives; here the contract does. As Triton does: a leading free dimension (the
    batch) is 1 when another is free too, the one free dimension left is found from the body's
    length, a BYTES input takes the whole body as its one element, and every output is answered as
    binary data. The request is then the JSON one that says the same, and is checked as such.
    """
    import math

    import numpy as np

    from modelfn.datatypes import NUMPY_DTYPES

    if len(contract.inputs) != 1:
        raise MalformedBody(
            f"a raw binary request (Inference-Header-Content-Length: 0) must have 1 input to be deduced, "
            f"but the model takes {len(contract.inputs)}; send a JSON header that names each"
        )
    spec = contract.inputs[0]
    shape = list(spec.shape)
    if shape.count(-1) > 1 and shape[0] == -1:
        shape[0] = 1  # the batch: one request
    where = f"raw input {spec.name!r} ({spec.datatype} {spec.shape})"
    if spec.datatype == "BYTES":
        shape[0] = 1 if shape[0] == -1 else shape[0]
        if any(dim != 1 for dim in shape):
            raise MalformedBody(f"{where}: a BYTES input sent raw is one element, so its shape must allow [1]")
        tensor_bytes = len(body).to_bytes(4, "little") + body  # the element's length, as the extension frames it
    else:
        if shape.count(-1) > 1:
            raise MalformedBody(f"{where}: the shape cannot be deduced: more than one dimension is free")
        fixed = math.prod(dim for dim in shape if dim != -1) * np.dtype(NUMPY_DTYPES[spec.datatype]).itemsize
        if fixed == 0 or len(body) % fixed or (-1 not in shape and len(body) != fixed):
            raise MalformedBody(f"{len(body)} bytes is not a whole number of {spec.datatype} {spec.shape} tensors")
        shape = [len(body) // fixed if dim == -1 else dim for dim in shape]
        tensor_bytes = body
    tensor = {"name": spec.name, "shape": shape, "datatype": spec.datatype,
              "parameters": {"binary_data_size": len(tensor_bytes)}}  # fmt: skip
    return {"inputs": [tensor], "parameters": {"binary_data_output": True}}, memoryview(tensor_bytes)


def decode_inputs(
    raw: Any,
    max_elements: int,
    reader: binary.BinaryReader | None = None,
    expect: Callable[[dict[str, tuple[str, tuple[int, ...]]]], None] | None = None,
    nullable: frozenset[str] = frozenset(),
) -> dict[str, np.ndarray]:
    """``inputs`` of an inference request -> named arrays, each checked before it is built.

    Every tensor's form is checked first (a 400 names the first bad one), then sizes (413), then
    what ``expect`` says of the declared names, datatypes and shapes (the contract), then data.
    ``nullable``: the inputs whose JSON data may hold ``null`` (a table's nullable string columns).
    """
    if not isinstance(raw, list) or not raw:
        raise MalformedBody("`inputs` must be a non-empty list of tensors")
    checked = [_check_tensor(tensor, index) for index, tensor in enumerate(raw)]
    names = [name for name, *_ in checked]
    for name in names:
        if names.count(name) > 1:
            raise InvalidInput(f"input {name[:100]!r} appears more than once")
    shapes = [
        check_shape(tensor["shape"], where=f"input {name[:100]!r}", max_elements=max_elements, form_checked=True)
        for name, tensor, _ in checked
    ]
    if expect is not None:
        expect({name: (tensor["datatype"], shape) for (name, tensor, _), shape in zip(checked, shapes, strict=True)})
    inputs: dict[str, np.ndarray] = {}
    for (name, tensor, parameters), shape in zip(checked, shapes, strict=True):
        where = f"input {name[:100]!r}"
        if "binary_data_size" in parameters:
            if reader is None or "data" in tensor:
                raise MalformedBody(f"{where}: binary_data_size needs the {binary.HEADER} header and no `data`")
            chunk = reader.take(parameters["binary_data_size"], where)
            inputs[name] = binary.decode(chunk, tensor["datatype"], shape, where)
        else:
            inputs[name] = to_array(tensor["data"], tensor["datatype"], where=where, shape=shape,
                                    nullable=name in nullable)  # fmt: skip
    return inputs


def _check_tensor(tensor: Any, index: int) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """One input tensor's form: ``(name, tensor, parameters)``, or a 400 naming what is wrong."""
    where = f"inputs[{index}]"
    if not isinstance(tensor, dict):
        raise MalformedBody(f"{where} must be an object with name, shape, datatype and data")
    parameters = _check_parameters(tensor, where)
    is_binary = "binary_data_size" in parameters
    missing = [
        key for key in ("name", "shape", "datatype", "data") if key not in tensor and not (key == "data" and is_binary)
    ]
    if missing:
        raise MalformedBody(f"{where} is missing {', '.join(missing)}")
    name = tensor["name"]
    if not isinstance(name, str):
        raise MalformedBody(f"{where}.name must be a string")
    where = f"input {name[:100]!r}"
    check_shape_form(tensor["shape"], where=where)
    check_datatype(tensor["datatype"], where=where)
    return name, tensor, parameters


def encode_output(name: str, array: np.ndarray) -> dict[str, Any]:
    return {"name": name, "datatype": datatype_of(array), "shape": list(array.shape), "data": to_json_data(array)}


def _encode_response(
    response: dict[str, Any], outputs: dict[str, np.ndarray], as_binary: dict[str, bool], version: str
) -> Response:
    """JSON outputs inline; binary ones after the JSON, located by ``binary_data_size``."""
    blobs: list[bytes] = []
    encoded = []
    for name, array in outputs.items():
        if as_binary.get(name):
            blob = binary.encode(array)
            blobs.append(blob)
            encoded.append({"name": name, "datatype": datatype_of(array), "shape": list(array.shape),
                            "parameters": {"binary_data_size": len(blob)}})  # fmt: skip
        else:
            encoded.append(encode_output(name, array))
    response["outputs"] = encoded
    if not blobs:
        return json_response(response, headers={VERSION_HEADER: version})
    header = orjson.dumps(response, option=JSON_OPTIONS)
    headers = {"Content-Type": "application/octet-stream", binary.HEADER: str(len(header)), VERSION_HEADER: version}
    return Response(200, header + b"".join(blobs), headers)


def _requested_outputs(raw: Any) -> dict[str, bool] | None:
    """``outputs`` of a request -> {name: send as binary}; ``None`` means every output."""
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in raw):
        raise MalformedBody("`outputs` must be a list of objects with a string `name`")
    requested = {}
    for output in raw:
        parameters = _check_parameters(output, f"output {output['name'][:100]!r}", allow=("classification",))
        if output["name"] in requested:  # as KServe and Triton refuse it: which of the two options holds?
            raise InvalidInput(f"output {output['name'][:100]!r} is requested more than once")
        requested[output["name"]] = parameters.get("binary_data") is True
    return requested


def _classifications(raw: Any, contract: Any) -> dict[str, int]:
    """``{output: class count}`` for the outputs asked for as classifications (Triton's extension).

    Checked against the contract before the model runs: a float output of shape ``[classes]`` or
    ``[-1, classes]``, and a count from 1 to ``classes``.
    """
    if raw is None:
        return {}
    specs = {spec.name: spec for spec in contract.outputs}
    found = {}
    for output in raw:
        count = (output.get("parameters") or {}).get("classification")
        if count is None or count is False:
            continue
        where = f"output {output['name'][:100]!r}"
        spec = specs.get(output["name"])
        if spec is None:
            continue  # the model's own check names the unknown output
        if not spec.datatype.startswith("FP") or len(spec.shape) not in (1, 2) or spec.shape[-1] < 1:
            raise InvalidInput(f"{where}: classification needs a float output of shape [classes] or [-1, classes]")
        if type(count) is not int or not 1 <= count <= spec.shape[-1]:
            raise InvalidInput(f"{where}: classification must be a class count from 1 to {spec.shape[-1]}")
        found[output["name"]] = count
    return found


def top_classes(scores: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` highest scores of each row as Triton writes them: ``"<score>:<class index>"`` (BYTES)."""
    import numpy as np

    rows = scores.reshape(1, -1) if scores.ndim == 1 else scores
    order = np.argsort(-rows, axis=1, kind="stable")[:, :count]
    labels = np.empty(order.shape, dtype=object)
    for r, indices in enumerate(order):
        labels[r] = [f"{float(rows[r, i]):f}:{int(i)}" for i in indices]
    return labels.reshape(count) if scores.ndim == 1 else labels


#: Parameters of extensions this server does not offer: refused, never silently ignored.
_UNSUPPORTED = ("shared_memory_region", "shared_memory_byte_size", "shared_memory_offset", "classification")


def _check_parameters(obj: dict[str, Any], where: str, allow: tuple[str, ...] = ()) -> dict[str, Any]:
    """The object's ``parameters`` (``{}`` when absent), refusing extensions not offered (but ``allow``)."""
    parameters = obj.get("parameters")
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise MalformedBody(f"{where}: `parameters` must be an object")
    for key in _UNSUPPORTED:
        if key not in allow and parameters.get(key):
            raise InvalidInput(
                f"{where}: parameter {key!r} asks for an extension this server does not offer "
                "(see GET /v2 `extensions`)"
            )
    return parameters
