"""The protocol's message classes, built from :mod:`.descriptors` in a descriptor pool of modelfn's own.

Generated ``_pb2`` modules register their names in protobuf's default pool, and two registrations
of ``inference.ModelInferRequest`` clash ("duplicate symbol"): a process could not hold both this
server and a client's generated modules (``tritonclient.grpc``, KServe's, MLServer's). A private
pool has no such clash, and the wire format is the same.
"""

from __future__ import annotations

import base64
import functools
from typing import Any

from google.protobuf import descriptor_pool, message_factory

from modelfn.adapters.grpc_oip.descriptors import FILES

#: The service and method names clients call: ``/inference.GRPCInferenceService/ModelInfer``.
SERVICE = "inference.GRPCInferenceService"
HEALTH_SERVICE = "grpc.health.v1.Health"

POOL = descriptor_pool.DescriptorPool()
for _encoded in FILES:
    POOL.AddSerializedFile(base64.b64decode(_encoded))


def message(name: str) -> Any:
    """The class of the message type ``name`` (``inference.ModelInferRequest``).

    Typed ``Any``: the class is made at run time from the descriptor, so its fields are not known statically.
    """
    return message_factory.GetMessageClass(POOL.FindMessageTypeByName(name))


@functools.cache
def method_types(service: str) -> dict[str, tuple[Any, Any]]:
    """``{method: (request class, response class)}`` of a service in the pool."""
    found = POOL.FindServiceByName(service)
    return {
        method.name: (message(method.input_type.full_name), message(method.output_type.full_name))
        for method in found.methods
    }


ModelInferRequest = message("inference.ModelInferRequest")
ModelInferResponse = message("inference.ModelInferResponse")
InferTensorContents = message("inference.InferTensorContents")
HealthCheckResponse = message("grpc.health.v1.HealthCheckResponse")
