"""Requests built and answers read with MLServer's own types and codecs; run by the mlserver environment.

Usage: ``python mlserver_calls.py BASE_URL``. Prints one JSON object: each call's name, the HTTP
status and what MLServer's types made of the answer. The assertions live in
``test_peer_clients.py``.

Cases from MLServer ``tests/rest/test_endpoints.py`` (``test_live``, ``test_ready``,
``test_model_ready``, ``test_metadata``, ``test_model_metadata``, ``test_infer`` with and without a
version, ``test_infer_error``, ``test_model_repository_index``), its request
``tests/testdata/inference-request.json`` against a model shaped as its ``SumModel``
(``tests/fixtures.py``: ``input-0`` summed per row into ``total``), and the values of
``tests/rest/test_codecs.py`` (``NumpyCodec`` FP64, ``StringCodec`` strings) sent as inputs and
decoded from the answer with the same codecs.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from typing import Any

import numpy as np
from mlserver.codecs import NumpyCodec, NumpyRequestCodec, StringCodec
from mlserver.types import (
    InferenceRequest,
    InferenceResponse,
    MetadataModelResponse,
    MetadataServerResponse,
    RepositoryIndexRequest,
)

#: ``tests/testdata/inference-request.json``
INFERENCE_REQUEST = {"inputs": [{"name": "input-0", "shape": [1, 3], "datatype": "INT32", "data": [1, 2, 3]}]}


def call(url: str, method: str = "GET", body: str | None = None) -> tuple[int, Any]:
    data = None if body is None else body.encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def infer(url: str, request: InferenceRequest) -> dict[str, Any]:
    """POSTs ``request`` as MLServer serialises it; the answer is read back into an InferenceResponse."""
    status, body = call(url, "POST", request.model_dump_json())
    if status != 200:
        return {"status": status, "body": body}
    response = InferenceResponse.model_validate(body)
    outputs = {
        o.name: {"datatype": o.datatype, "shape": o.shape, "data": o.data.model_dump()} for o in response.outputs
    }
    return {"status": status, "model_name": response.model_name, "id": response.id, "outputs": outputs,
            "decoded": {o.name: _decoded(o) for o in response.outputs}}  # fmt: skip


def _decoded(output: Any) -> Any:
    codec = StringCodec if output.datatype == "BYTES" else NumpyCodec
    value = codec.decode_output(output)
    return value.tolist() if isinstance(value, np.ndarray) else value


def calls(base: str) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, path in {"live": "/v2/health/live", "ready": "/v2/health/ready",
                       "model_ready": "/v2/models/sum-model/versions/1/ready"}.items():  # fmt: skip
        results[name] = {"status": call(base + path)[0]}
    status, body = call(base + "/v2")
    server = MetadataServerResponse.model_validate(body)
    results["metadata"] = {"status": status, "name": server.name, "extensions": server.extensions}
    status, body = call(base + "/v2/models/sum-model")
    model = MetadataModelResponse.model_validate(body)
    results["model_metadata"] = {"status": status, **model.model_dump(mode="json", exclude_none=True)}
    request = InferenceRequest.model_validate(INFERENCE_REQUEST)
    results["infer"] = infer(base + "/v2/models/sum-model/infer", request)
    results["infer_version"] = infer(base + "/v2/models/sum-model/versions/1/infer", request)
    results["infer_error"] = infer(base + "/v2/models/my-model/versions/v0/infer", request)
    index = RepositoryIndexRequest(ready=None).model_dump_json(exclude_none=False)
    status, body = call(base + "/v2/repository/index", "POST", index)
    results["repository_index"] = {"status": status, "body": body}
    codecs = InferenceRequest(inputs=[NumpyCodec.encode_input("floats", np.array([21.0])),
                                      StringCodec.encode_input("texts", ["hey", "what's", "up"])])  # fmt: skip
    results["codecs"] = infer(base + "/v2/models/mlserver-echo/infer", codecs)
    # NumpyRequestCodec names its one input itself ("input-1"): a model that takes another name refuses it.
    results["request_codec"] = infer(
        base + "/v2/models/sum-model/infer", NumpyRequestCodec.encode_request(np.ones((1, 3), dtype=np.int32))
    )
    return results


if __name__ == "__main__":
    print(json.dumps(calls(sys.argv[1])))
