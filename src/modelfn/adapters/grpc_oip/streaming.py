"""``ModelStreamInfer``: Triton's streaming call, as ``tritonclient.grpc``'s ``start_stream`` speaks it.

The client sends requests on one stream and reads answers on the other. Each request is answered as
the REST path would answer it: a generative model's through ``POST /v2/models/{name}/generate_stream``
(a ``text_output`` answer per piece of text, as it is generated), any other model's through
``.../infer`` (one answer). So credentials, limits, metrics and the request log are the REST path's.
A request that fails gets an answer with ``error_message``, as Triton sends it, and the stream goes
on. A request that sets ``triton_enable_empty_final_response`` (tritonclient's
``enable_empty_final_response=True``) gets an empty last answer marked ``triton_final_response``.

A client that closes the stream stops its generation at the next token: gRPC closes this generator,
which closes the REST answer's stream.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import orjson

from modelfn.adapters.dispatch import handle_request
from modelfn.adapters.grpc_oip import codec
from modelfn.adapters.grpc_oip.messages import SERVICE, method_types
from modelfn.errors import InvalidInput, ModelfnError
from modelfn.http import Headers, Request, Response

if TYPE_CHECKING:
    import grpc

    from modelfn.function import Servable

log = logging.getLogger("modelfn")
ROUTE = f"/{SERVICE}/ModelStreamInfer"
#: Request parameters that are Triton's own, not the model's settings.
FINAL = "triton_enable_empty_final_response"


def answers(servable: Servable, requests: Iterator[Any], headers: Headers, time_left: Any) -> Iterator[Any]:
    """Every answer to every request of the stream, in order."""
    for message in requests:
        try:
            yield from _answer(servable, message, headers, time_left())
        except ModelfnError as exc:
            yield _error(exc.message if exc.public else exc.public_message)
        except Exception:
            log.exception("unhandled error in %s", ROUTE)
            yield _error("unhandled error")


def _answer(servable: Servable, message: Any, headers: Headers, deadline_s: float | None) -> Iterator[Any]:
    name, version = message.model_name, message.model_version
    parameters = codec.parameters(message.parameters)
    final = parameters.pop(FINAL, False) is True
    if servable.member(name or None).contract().framework != "genai":
        verb, path, body, extra = "POST", *codec.infer_request(message)
        request = Request(verb, path, body, Headers({**headers, **extra}) if extra else headers)
        response = handle_request(servable, request, deadline_s=deadline_s, route=ROUTE)
        if response.status != 200:
            yield _error(_message(response))
        else:
            yield _reply(infer_response=codec.infer_response(response.body, response.headers, _type("ModelInfer")))
    else:
        settings = {key: value for key, value in parameters.items() if not key.startswith("triton_")}
        body = orjson.dumps({"text_input": _text(message), "parameters": settings})
        path = codec.model_path(name, version, "/generate_stream")
        response = handle_request(servable, Request("POST", path, body, headers), deadline_s=deadline_s, route=ROUTE)
        if response.status != 200 or response.stream is None:
            yield _error(_message(response))
            return
        yield from _pieces(response, message.id)
    if final:
        yield _reply(infer_response=_type("ModelInfer")(
            model_name=name, model_version=version, id=message.id,
            parameters={"triton_final_response": _parameter(bool_param=True)},
        ))  # fmt: skip


def _pieces(response: Response, request_id: str) -> Iterator[Any]:
    """The generate_stream events of ``response`` as answers; closing this closes the generation."""
    stream = response.stream
    assert stream is not None
    try:
        for chunk in stream:
            event = orjson.loads(chunk.removeprefix(b"data: "))
            if "error" in event:
                yield _error(str(event["error"]))
                return
            output = _type("ModelInfer")(model_name=event["model_name"], model_version=event["model_version"],
                                         id=request_id)  # fmt: skip
            tensor = output.outputs.add(name="text_output", datatype="BYTES", shape=[1])
            tensor.contents.bytes_contents.append(event["text_output"].encode())
            output.parameters["triton_final_response"].bool_param = False
            yield _reply(infer_response=output)
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()


def _text(message: Any) -> str:
    """The one ``text_input`` of a request: typed contents or Triton's raw bytes (a 4-byte length, then them)."""
    for index, tensor in enumerate(message.inputs):
        if tensor.name != "text_input":
            continue
        if tensor.contents.bytes_contents:
            raw = tensor.contents.bytes_contents[0]
        elif index < len(message.raw_input_contents) and len(message.raw_input_contents[index]) >= 4:
            data = message.raw_input_contents[index]
            (length,) = struct.unpack_from("<I", data)
            raw = data[4 : 4 + length]
        else:
            break
        try:
            return bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput("text_input is not UTF-8 text") from None
    raise InvalidInput("a generative model takes one input, text_input (BYTES): the prompt")


def _message(response: Response) -> str:
    try:
        answer = orjson.loads(response.body)
    except orjson.JSONDecodeError:
        return f"HTTP {response.status}"
    error = answer.get("error") if isinstance(answer, dict) else None
    return error if isinstance(error, str) else f"HTTP {response.status}"


def _type(method: str) -> Any:
    return method_types(SERVICE)[method][1]


def _reply(**fields: Any) -> Any:
    return _type("ModelStreamInfer")(**fields)


def _error(message: str) -> Any:
    return _reply(error_message=message)


def _parameter(**value: Any) -> Any:
    from modelfn.adapters.grpc_oip.messages import message

    return message("inference.InferParameter")(**value)


def stream_handler(servable: Servable, metadata_headers: Any, time_left: Any) -> Any:
    """The gRPC handler of ``ModelStreamInfer`` (a stream of requests, a stream of answers)."""
    import grpc

    request_type, response_type = method_types(SERVICE)["ModelStreamInfer"]

    def call(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
        headers = metadata_headers(context.invocation_metadata())
        return answers(servable, requests, headers, lambda: time_left(context))

    return grpc.stream_stream_rpc_method_handler(
        call, request_deserializer=request_type.FromString, response_serializer=response_type.SerializeToString
    )
