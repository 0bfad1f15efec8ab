"""gRPC messages <-> the REST requests and answers that say the same.

An inference request becomes ``POST /v2/models/{name}[/versions/{version}]/infer`` in the binary
tensor data extension: ``raw_input_contents`` and ``bytes_contents`` travel as they came, typed
``*_contents`` as the JSON ``data`` REST reads, so each tensor meets the REST path's checks and
words. Outputs are always asked for as binary data and answered in ``raw_output_contents``, as
Triton answers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from modelfn.errors import InvalidInput, MalformedBody, ModelFault, NotFound
from modelfn.routing import PARAMETERS

#: The typed field of ``InferTensorContents`` that carries each datatype (FP16 and BF16 have none:
#: they travel in ``raw_input_contents``).
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
_NAME = re.compile(PARAMETERS["name"])
_VERSION = re.compile(PARAMETERS["version"])
_HEADER = "Inference-Header-Content-Length"


def model_path(name: str, version: str, suffix: str = "") -> str:
    """The REST path of a model the client named; a name that could not be one is a 404 here."""
    if not name:
        raise MalformedBody("a model name is required")
    if not _NAME.fullmatch(name):
        raise NotFound(f"model {name[:100]!r} not found")
    if version and not _VERSION.fullmatch(version):
        raise NotFound(f"model {name!r} has no version {version[:100]!r}")
    return f"/v2/models/{name}" + (f"/versions/{version}" if version else "") + suffix


def parameters(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A protobuf ``map<string, InferParameter>`` as the JSON object REST reads."""
    found = {}
    for key, value in raw.items():
        choice = value.WhichOneof("parameter_choice")
        found[key] = None if choice is None else getattr(value, choice)
    return found


def infer_request(message: Any) -> tuple[str, bytes, dict[str, str]]:
    """A ``ModelInferRequest`` -> the REST path, body and headers of the same inference."""
    path = model_path(message.model_name, message.model_version, "/infer")
    raw = message.raw_input_contents
    if raw and len(raw) != len(message.inputs):
        raise MalformedBody(
            f"raw_input_contents has {len(raw)} entries for {len(message.inputs)} inputs; send one per input, in order"
        )
    blobs: list[bytes] = []
    inputs = []
    for index, tensor in enumerate(message.inputs):
        entry: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}
        where = f"input {tensor.name[:100]!r}"
        extra = parameters(tensor.parameters)
        extra.pop("binary_data_size", None)  # the size is the bytes sent, never what the client claims
        if raw:
            if tensor.HasField("contents"):
                raise MalformedBody(f"{where}: send every input in raw_input_contents or none; this one has contents")
            blobs.append(raw[index])
            extra["binary_data_size"] = len(raw[index])
        else:
            _typed_contents(tensor, where, entry, extra, blobs)
        if extra:
            entry["parameters"] = extra
        inputs.append(entry)
    header: dict[str, Any] = {"inputs": inputs}
    if message.id:
        header["id"] = message.id
    header["parameters"] = {**parameters(message.parameters), "binary_data_output": True}
    if message.outputs:
        header["outputs"] = [
            {"name": output.name, "parameters": {**parameters(output.parameters), "binary_data": True}}
            for output in message.outputs
        ]
    encoded = orjson.dumps(header)
    return path, encoded + b"".join(blobs), {_HEADER: str(len(encoded))}


def _typed_contents(tensor: Any, where: str, entry: dict[str, Any], extra: dict[str, Any], blobs: list[bytes]) -> None:
    """A tensor's typed ``contents`` into ``entry`` (JSON ``data``; BYTES as binary data, which JSON cannot hold)."""
    field = CONTENTS_FIELD.get(tensor.datatype)
    sent = [descriptor.name for descriptor, _ in tensor.contents.ListFields()]
    if field is None:
        if tensor.datatype in ("FP16", "BF16"):
            raise MalformedBody(f"{where}: {tensor.datatype} has no typed contents; send it in raw_input_contents")
        entry["data"] = []  # the REST check names the unknown datatype
        return
    wrong = [name for name in sent if name != field]
    if wrong:
        raise InvalidInput(f"{where}: a {tensor.datatype} tensor's elements go in {field}, not {', '.join(wrong)}")
    values = getattr(tensor.contents, field)
    if tensor.datatype == "BYTES":
        blob = b"".join(len(item).to_bytes(4, "little") + item for item in values)
        blobs.append(blob)
        extra["binary_data_size"] = len(blob)
    else:
        entry["data"] = list(values)


def infer_response(body: bytes, headers: Mapping[str, str], factory: type) -> Any:
    """The REST answer to an inference (a JSON header, then the binary outputs) as a ``ModelInferResponse``."""
    length = headers.get(_HEADER)
    split = int(length) if length is not None else len(body)
    answer = orjson.loads(body[:split])
    response = factory(model_name=answer["model_name"], model_version=answer["model_version"], id=answer.get("id", ""))
    offset = split
    for output in answer["outputs"]:
        size = (output.get("parameters") or {}).get("binary_data_size")
        if size is None:  # every output is asked for as binary data: an answer without it is a fault of ours
            raise ModelFault(f"output {output['name']!r} came back without binary data")
        response.outputs.add(name=output["name"], datatype=output["datatype"], shape=output["shape"])
        response.raw_output_contents.append(body[offset : offset + size])
        offset += size
    return response


def model_metadata(answer: dict[str, Any], factory: type) -> Any:
    """``GET /v2/models/{name}``'s answer as a ``ModelMetadataResponse``."""
    response = factory(name=answer["name"], versions=answer["versions"], platform=answer["platform"])
    for kind in ("inputs", "outputs"):
        for spec in answer[kind]:
            getattr(response, kind).add(name=spec["name"], datatype=spec["datatype"], shape=spec["shape"])
    return response


def repository_index(answer: list[dict[str, Any]], factory: type) -> Any:
    """``POST /v2/repository/index``'s answer as a ``RepositoryIndexResponse``."""
    response = factory()
    for entry in answer:
        response.models.add(
            name=entry["name"], version=entry["version"], state=entry["state"], reason=entry.get("reason", "")
        )
    return response
