"""``inference.GRPCInferenceService`` and ``grpc.health.v1.Health``, answered by the REST data plane.

Every call becomes the REST request that says the same and goes through
:func:`modelfn.adapters.dispatch.handle_request`, with the call's metadata as headers (``x-api-key``
or ``authorization: Bearer`` for credentials, a traffic policy's sticky key) and the call's deadline
as the client's. An error answers with the REST error's message and the status code below; a 503's
``Retry-After`` travels as trailing metadata.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
import orjson

from modelfn.adapters.dispatch import handle_request, refused
from modelfn.adapters.grpc_oip import codec
from modelfn.adapters.grpc_oip.messages import HEALTH_SERVICE, SERVICE, HealthCheckResponse, method_types
from modelfn.errors import ModelfnError
from modelfn.function import Servable
from modelfn.http import Headers, Request, Response

log = logging.getLogger("modelfn")

#: HTTP status -> gRPC status code, as Triton and KServe map their own errors.
STATUS_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    405: grpc.StatusCode.UNIMPLEMENTED,
    409: grpc.StatusCode.ABORTED,
    412: grpc.StatusCode.FAILED_PRECONDITION,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    500: grpc.StatusCode.INTERNAL,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}

#: Metadata that describes the gRPC message, not the request: never passed on as headers (the
#: translation sets the ones the REST path reads itself).
_NOT_HEADERS = ("content-type", "content-length", "content-encoding", "inference-header-content-length", "te")


def status_code(status: int) -> grpc.StatusCode:
    return STATUS_CODES.get(status, grpc.StatusCode.INVALID_ARGUMENT if status < 500 else grpc.StatusCode.INTERNAL)


def metadata_headers(metadata: Any) -> Headers:
    """A call's metadata as request headers (binary ``-bin`` entries and gRPC's own are left out)."""
    return Headers({
        key: value
        for key, value in metadata or ()
        if isinstance(value, str) and not key.startswith(("grpc-", ":")) and key not in _NOT_HEADERS
    })  # fmt: skip


class InferenceService:
    """The servicer: one method per RPC, each a translation to and from REST."""

    def __init__(self, servable: Servable) -> None:
        self.servable = servable
        #: Set when the server drains (SIGTERM): health checks answer NOT_SERVING.
        self.draining = threading.Event()

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        from modelfn.adapters.grpc_oip.streaming import stream_handler

        streams = {"ModelStreamInfer": stream_handler(self.servable, metadata_headers, _time_left)}
        return [
            self._generic(SERVICE, self._inference_methods(), streams),
            self._generic(HEALTH_SERVICE, {"Check": self.check}),
        ]

    def _inference_methods(self) -> dict[str, Callable[[Any, grpc.ServicerContext], Any]]:
        return {
            "ServerLive": self.server_live,
            "ServerReady": self.server_ready,
            "ModelReady": self.model_ready,
            "ServerMetadata": self.server_metadata,
            "ModelMetadata": self.model_metadata,
            "ModelInfer": self.model_infer,
            "RepositoryIndex": self.repository_index,
            "RepositoryModelLoad": self.repository_model_change,
            "RepositoryModelUnload": self.repository_model_change,
        }

    @staticmethod
    def _generic(
        service: str, methods: dict[str, Callable[..., Any]], streams: dict[str, Any] | None = None
    ) -> grpc.GenericRpcHandler:
        """The unary ``methods`` of ``service``, and its already built stream handlers."""
        types = method_types(service)
        handlers = {
            name: grpc.unary_unary_rpc_method_handler(
                _guarded(service, name, method),
                request_deserializer=types[name][0].FromString,
                response_serializer=types[name][1].SerializeToString,
            )
            for name, method in methods.items()
        }
        return grpc.method_handlers_generic_handler(service, {**handlers, **(streams or {})})

    # -- the calls -----------------------------------------------------------------------------

    def server_live(self, message: Any, context: grpc.ServicerContext) -> Any:
        response = self._call(context, "ServerLive", lambda: ("GET", "/v2/health/live", b"", {}), ok=(200, 503))
        return self._reply("ServerLive", live=orjson.loads(response.body).get("live") is True)

    def server_ready(self, message: Any, context: grpc.ServicerContext) -> Any:
        response = self._call(context, "ServerReady", lambda: ("GET", "/v2/health/ready", b"", {}), ok=(200, 503))
        return self._reply("ServerReady", ready=orjson.loads(response.body).get("ready") is True)

    def model_ready(self, message: Any, context: grpc.ServicerContext) -> Any:
        def request() -> tuple[str, str, bytes, dict[str, str]]:
            return "GET", codec.model_path(message.name, message.version, "/ready"), b"", {}

        response = self._call(context, "ModelReady", request, ok=(200, 503))
        return self._reply("ModelReady", ready=orjson.loads(response.body).get("ready") is True)

    def server_metadata(self, message: Any, context: grpc.ServicerContext) -> Any:
        answer = orjson.loads(self._call(context, "ServerMetadata", lambda: ("GET", "/v2", b"", {})).body)
        return self._reply("ServerMetadata", **answer)

    def model_metadata(self, message: Any, context: grpc.ServicerContext) -> Any:
        def request() -> tuple[str, str, bytes, dict[str, str]]:
            return "GET", codec.model_path(message.name, message.version), b"", {}

        answer = orjson.loads(self._call(context, "ModelMetadata", request).body)
        return codec.model_metadata(answer, self._response_type("ModelMetadata"))

    def model_infer(self, message: Any, context: grpc.ServicerContext) -> Any:
        def request() -> tuple[str, str, bytes, dict[str, str]]:
            return "POST", *codec.infer_request(message)

        response = self._call(context, "ModelInfer", request)
        return codec.infer_response(response.body, response.headers, self._response_type("ModelInfer"))

    def repository_index(self, message: Any, context: grpc.ServicerContext) -> Any:
        body = orjson.dumps({"ready": message.ready})
        answer = orjson.loads(
            self._call(context, "RepositoryIndex", lambda: ("POST", "/v2/repository/index", body, {})).body
        )
        return codec.repository_index(answer, self._response_type("RepositoryIndex"))

    def repository_model_change(self, message: Any, context: grpc.ServicerContext) -> Any:
        context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            "models are not loaded or unloaded through the API here: the registry's aliases decide what a "
            "function serves, and a request or a readiness check loads it",
        )

    def check(self, message: Any, context: grpc.ServicerContext) -> Any:
        """``grpc.health.v1.Health/Check``: SERVING once the models are loaded, until the server drains.

        Open, as the health routes are: the platforms' probes send no credentials. Like the
        readiness route it also starts the load, so a platform that only probes brings it up.
        """
        if message.service not in ("", SERVICE):
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {message.service[:100]!r}")
        serving = not self.draining.is_set() and self.servable.ready(start=True)
        status = HealthCheckResponse.ServingStatus.Value("SERVING" if serving else "NOT_SERVING")
        return HealthCheckResponse(status=status)

    # -- the translation -----------------------------------------------------------------------

    def _call(
        self,
        context: grpc.ServicerContext,
        method: str,
        translate: Callable[[], tuple[str, str, bytes, dict[str, str]]],
        ok: tuple[int, ...] = (200,),
    ) -> Response:
        """Answer the REST request ``translate()`` gives; abort the call with its error unless its status is ``ok``.

        A 503 in ``ok`` (a readiness answer, ``{"ready": false}``) still aborts when it is an error.
        """
        route = f"/{SERVICE}/{method}"
        headers = metadata_headers(context.invocation_metadata())
        started = time.perf_counter()
        try:
            verb, path, body, extra = translate()
        except ModelfnError as exc:
            response = refused(
                self.servable, Request("POST", route, b"", headers), exc, time.perf_counter() - started, route
            )
        else:
            request = Request(verb, path, body, Headers({**headers, **extra}) if extra else headers)
            response = handle_request(self.servable, request, deadline_s=_time_left(context), route=route)
        if response.status != 200 and (response.status not in ok or _error_message(response) is not None):
            _abort(context, response)
        return response

    def _reply(self, method: str, **fields: Any) -> Any:
        return self._response_type(method)(**fields)

    @staticmethod
    def _response_type(method: str) -> type:
        return method_types(SERVICE)[method][1]


def _guarded(service: str, name: str, method: Callable[[Any, grpc.ServicerContext], Any]) -> Callable[..., Any]:
    """``method``, with any error it did not answer itself turned into a status: never a traceback."""

    def call(message: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(message, context)
        except ModelfnError as exc:
            from modelfn.http import error_response

            _abort(context, error_response(exc))
        except Exception:
            if context.code() is not None:  # context.abort() raised: the call is answered
                raise
            log.exception("unhandled error in /%s/%s", service, name)
            context.abort(grpc.StatusCode.INTERNAL, "unhandled error")

    return call


def _time_left(context: grpc.ServicerContext) -> float | None:
    """Seconds until the call's deadline; None when the client set none (grpc says so with None or a huge value)."""
    left = context.time_remaining()
    return None if left is None or left > 1e8 else max(left, 0.0)


def _error_message(response: Response) -> str | None:
    """The ``error`` of a REST answer's JSON body, if it is an error answer."""
    try:
        answer = orjson.loads(response.body)
    except orjson.JSONDecodeError:
        return None
    error = answer.get("error") if isinstance(answer, dict) else None
    return error if isinstance(error, str) else None


def _abort(context: grpc.ServicerContext, response: Response) -> None:
    message = _error_message(response) or f"HTTP {response.status}"
    retry = Headers(response.headers).get("retry-after")
    if retry:
        context.set_trailing_metadata((("retry-after", retry),))
    context.abort(status_code(response.status), message)
