"""The Open Inference Protocol over gRPC: ``tritonclient.grpc`` (sync and aio) against a real server process.

One server for the module, started as a Cloud Run image starts it (``python -m modelfn.adapters.server``
with ``MODELFN_SERVE=grpc``), serving a several-model function: the digits model with its hooks, a
model that echoes every datatype, and one as slow as asked. API keys and Google ID tokens are on,
as are small limits (a 1 MiB message, one call slot with no queue) so that each status code can
be reached. ``tritonclient.grpc``'s generated modules and modelfn's own messages live in one process
here: modelfn's descriptors are in a pool of their own.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as triton
import tritonclient.grpc.aio as triton_aio
from credentials import AUDIENCE, PUSHER, CertsServer, Signer, add_key
from grpc_servers import GrpcServer, pixels, slow_inputs
from helpers import copy_function, free_port
from models import ONNX_TYPES, write_echo_function, write_identity_function, write_slow_function
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from modelfn.adapters.grpc_oip import messages
from modelfn.adapters.grpc_oip.codec import CONTENTS_FIELD

GROUP_MAIN = (
    "from modelfn.adapters.gcf import http_function\n\n"
    'handle = http_function(__file__, models=["digits", "echo", "slow", "typed"])\n'
)
#: The datatypes of the model that echoes typed contents (FP16 has none: it travels raw only).
TYPED = ("FP32", "INT8", "BOOL", "UINT64", "BYTES")


@pytest.fixture(scope="module")
def google() -> Iterator[tuple[Signer, CertsServer]]:
    signer = Signer("kid-1")
    certs = CertsServer([signer])
    yield signer, certs
    certs.server.shutdown()


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("group")
    shutil.move(copy_function(tmp_path_factory.mktemp("copy")), root / "digits")
    write_echo_function(root / "echo")
    write_slow_function(root / "slow")
    write_identity_function(root / "typed", "typed", {f"in_{t}": (f"out_{t}", t, [-1, 2]) for t in TYPED})
    (root / "main.py").write_text(GROUP_MAIN)
    return root


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    keys_file = tmp_path_factory.mktemp("keys") / "keys"
    return {
        "file": str(keys_file),
        "all": add_key(keys_file, "app", "*"),
        "echo": add_key(keys_file, "echo-only", "echo"),
    }


@pytest.fixture(scope="module")
def server(group, keys, google, tmp_path_factory) -> Iterator[GrpcServer]:
    _, certs = google
    env = {
        "MODELFN_API_KEYS_FILE": keys["file"],
        "MODELFN_ID_TOKEN_AUDIENCE": AUDIENCE,
        "MODELFN_ID_TOKEN_EMAILS": PUSHER,
        "MODELFN_ID_TOKEN_CERTS_URL": certs.url,
        "MODELFN_MAX_BODY_BYTES": str(1024 * 1024),
        "MODELFN_MAX_CONCURRENCY": "1",
        "MODELFN_MAX_QUEUE": "0",
        "MODELFN_REQUEST_TIMEOUT_S": "3",
        "MODELFN_LOG_FORMAT": "json",
        "MODELFN_METRICS_PORT": str(free_port()),
    }
    process = GrpcServer(group, tmp_path_factory.mktemp("grpc") / "server.log", env)
    try:
        process.wait_live()
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def client(server) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(server.address)


@pytest.fixture(scope="module")
def auth(keys) -> dict[str, str]:
    return {"x-api-key": keys["all"]}


def status_of(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(InferenceServerException) as error:
        call()
    return grpc.StatusCode[error.value.status().removeprefix("StatusCode.")], error.value.message()


# -- every call ---------------------------------------------------------------------------------


def test_health_metadata_and_the_repository_index(client, auth) -> None:
    assert client.is_server_live()  # open: the platform's probes send no credentials
    assert client.is_server_ready()  # a several-model function: its models load on their first call
    deadline = time.monotonic() + 60
    for name, version in (("digits", ""), ("echo", "1"), ("slow", "")):
        while not client.is_model_ready(name, version, headers=auth):  # and a readiness call starts the load
            assert time.monotonic() < deadline, f"{name} never ready"
            time.sleep(0.05)

    server = client.get_server_metadata(headers=auth, as_json=True)
    assert server["name"] == "modelfn" and "binary_tensor_data" in server["extensions"]
    digits = client.get_model_metadata("digits", headers=auth, as_json=True)
    assert digits["versions"] == ["1"] and digits["platform"] == "onnx_onnxv1"
    assert digits["inputs"] == [{"name": "pixels", "datatype": "FP32", "shape": ["-1", "64"]}]
    assert [o["name"] for o in digits["outputs"]] == ["probabilities", "label"]

    index = client.get_model_repository_index(headers=auth, as_json=True)["models"]
    assert [(m["name"], m["version"]) for m in index] == [("digits", "1"), ("echo", "1"), ("slow", "1"), ("typed", "1")]
    assert {m["name"]: m["state"] for m in index if m["name"] != "typed"} == dict.fromkeys(
        ("digits", "echo", "slow"), "READY"
    )
    for call in (client.load_model, client.unload_model):
        code, message = status_of(lambda call=call: call("digits", headers=auth))
        assert code == grpc.StatusCode.UNIMPLEMENTED and "registry's aliases" in message


def test_the_standard_health_service_answers_the_platforms_probes(server) -> None:
    with grpc.insecure_channel(server.address) as channel:
        check = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=lambda message: message.SerializeToString(),
            response_deserializer=messages.HealthCheckResponse.FromString,
        )
        request = messages.message("grpc.health.v1.HealthCheckRequest")
        deadline = time.monotonic() + 60
        while check(request(), timeout=10).status != messages.HealthCheckResponse.ServingStatus.Value("SERVING"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert check(request(service="inference.GRPCInferenceService"), timeout=10).status == 1
        with pytest.raises(grpc.RpcError) as unknown:
            check(request(service="other.Service"), timeout=10)
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


def test_held_out_accuracy_over_grpc_equals_rest(client, auth, heldout, digits_server) -> None:
    features, labels = heldout
    grpc_labels = []
    for row in features:  # one call per row, as an online client sends them
        result = client.infer("digits", [pixels(row[None, :])], headers=auth)
        grpc_labels.append(int(result.as_numpy("label")[0]))
    rows = features.astype(np.float32)
    tensor = {"name": "pixels", "shape": list(rows.shape), "datatype": "FP32", "data": rows.ravel().tolist()}
    url = f"{digits_server.url}/v2/models/digits/infer"
    rest = requests.post(url, json={"inputs": [tensor]}, timeout=60).json()
    rest_labels = next(o["data"] for o in rest["outputs"] if o["name"] == "label")
    assert grpc_labels == rest_labels
    accuracy = float(np.mean(np.array(grpc_labels) == labels))
    assert accuracy == float(np.mean(np.array(rest_labels) == labels)) and accuracy > 0.9

    batch = client.infer("digits", [pixels(features[:32])], headers=auth, request_id="batch-1",
                         outputs=[triton.InferRequestedOutput("probabilities", class_count=3)])  # fmt: skip
    answer = batch.get_response(as_json=True)
    assert answer["id"] == "batch-1" and answer["model_version"] == "1"
    top = batch.as_numpy("probabilities")
    assert top.shape == (32, 3)
    assert [int(item.decode().split(":")[1]) for item in top[:, 0]] == grpc_labels[:32]


def test_every_datatype_round_trips_raw_and_typed(client, server, auth) -> None:
    rng = np.random.default_rng(7)
    arrays = {
        t: (rng.random((3, 2)) > 0.5) if t == "BOOL" else
        np.array([[b"a", "é".encode()], [b"", b"z"], [b"x" * 300, b"\t"]], dtype=object) if t == "BYTES" else
        (rng.standard_normal((3, 2)) * 100).astype(t.lower().replace("fp", "float")) if t.startswith("FP") else
        rng.integers(np.iinfo(t.lower()).min, np.iinfo(t.lower()).max, (3, 2), dtype=t.lower(), endpoint=True)
        for t in ONNX_TYPES
    }  # fmt: skip
    result = client.infer("echo", inputs_of(arrays, tuple(ONNX_TYPES)), headers=auth)
    for datatype, array in arrays.items():
        assert np.array_equal(result.as_numpy(f"out_{datatype}"), array), datatype

    # Typed contents, which tritonclient never sends: through its generated stub.
    with grpc.insecure_channel(server.address) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        request = service_pb2.ModelInferRequest(model_name="typed")
        for datatype in TYPED:
            tensor = request.inputs.add(name=f"in_{datatype}", datatype=datatype, shape=[3, 2])
            getattr(tensor.contents, CONTENTS_FIELD[datatype]).extend(arrays[datatype].ravel().tolist())
            request.outputs.add(name=f"out_{datatype}")
        response = stub.ModelInfer(request, metadata=tuple(auth.items()), timeout=30)
        assert [o.name for o in response.outputs] == [f"out_{t}" for t in TYPED]
        assert len(response.raw_output_contents) == len(TYPED)  # as Triton answers: raw, whatever was sent
        fp32 = np.frombuffer(response.raw_output_contents[0], np.float32).reshape(3, 2)
        assert np.array_equal(fp32, arrays["FP32"])

        def refused(request) -> tuple[grpc.StatusCode, str]:
            with pytest.raises(grpc.RpcError) as error:
                stub.ModelInfer(request, metadata=tuple(auth.items()), timeout=30)
            return error.value.code(), error.value.details()

        def typed_request(**changes: list) -> service_pb2.ModelInferRequest:
            request = service_pb2.ModelInferRequest(model_name="typed")
            for datatype in TYPED:
                tensor = request.inputs.add(name=f"in_{datatype}", datatype=datatype, shape=[1, 2])
                field, values = changes.get(datatype, (CONTENTS_FIELD[datatype], arrays[datatype][0].tolist()))
                getattr(tensor.contents, field).extend(values)
            return request

        code, message = refused(typed_request(INT8=("int_contents", [1, 300])))
        assert (
            code == grpc.StatusCode.INVALID_ARGUMENT
            and message == "input 'in_INT8': value out of range for INT8 (-128..127)"
        )
        expected = "input 'in_FP32': a FP32 tensor's elements go in fp32_contents, not int_contents"
        assert refused(typed_request(FP32=("int_contents", [1, 2]))) == (grpc.StatusCode.INVALID_ARGUMENT, expected)
        code, message = refused(typed_request(FP32=("fp32_contents", [1.0])))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "in_FP32" in message
        half = service_pb2.ModelInferRequest(model_name="echo")
        half.inputs.add(name="in_FP16", datatype="FP16", shape=[1, 2])
        assert "raw_input_contents" in refused(half)[1]
        raw = service_pb2.ModelInferRequest(model_name="typed")
        for tensor in inputs_of(arrays, TYPED):
            raw.inputs.append(tensor._get_tensor())
            raw.raw_input_contents.append(tensor._get_content())
        del raw.raw_input_contents[-1]
        code, message = refused(raw)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "4 entries for 5 inputs" in message
        raw.raw_input_contents.append(b"\x00\x00\x00")
        assert refused(raw) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "input 'in_BYTES': binary BYTES data ends after 0 of 6 elements",
        )


def inputs_of(arrays: dict[str, np.ndarray], datatypes: tuple[str, ...]) -> list[triton.InferInput]:
    tensors = []
    for datatype in datatypes:
        tensor = triton.InferInput(f"in_{datatype}", list(arrays[datatype].shape), datatype)
        tensor.set_data_from_numpy(arrays[datatype])
        tensors.append(tensor)
    return tensors


# -- errors, each with its status code and the REST path's words ----------------------------------


def test_errors_map_to_status_codes_with_the_rest_messages(client, auth, keys) -> None:
    row = pixels(np.zeros((1, 64)))
    assert status_of(lambda: client.infer("nope", [row], headers=auth)) == (
        grpc.StatusCode.NOT_FOUND, "model 'nope' not found; this function serves digits, echo, slow, typed"
    )  # fmt: skip
    code, message = status_of(lambda: client.infer("digits", [row], model_version="9", headers=auth))
    assert code == grpc.StatusCode.NOT_FOUND and "no version '9'" in message
    code, message = status_of(lambda: client.infer("../etc", [row], headers=auth))
    assert code == grpc.StatusCode.NOT_FOUND
    assert status_of(lambda: client.infer("digits", [pixels(np.zeros((2, 3)))], headers=auth)) == (
        grpc.StatusCode.INVALID_ARGUMENT, "input 'pixels': shape [2, 3] does not fit the model's [-1, 64] (-1 = any)"
    )  # fmt: skip
    # Over the message limit: gRPC's core refuses it before any thread reads it.
    code, message = status_of(lambda: client.infer("digits", [pixels(np.zeros((5000, 64)))], headers=auth))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in message
    # Over the tensor limit: modelfn's own 413, before anything is decoded.
    huge = triton.InferInput("in_FP32", [1 << 16, 1 << 10], "FP32")
    huge._raw_content = b""  # a claimed shape, no data: the size is checked first
    code, message = status_of(lambda: client.infer("echo", [huge], headers=auth))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "the limit is" in message


def test_credentials_travel_as_metadata(client, keys, google) -> None:
    signer, _ = google
    row = pixels(np.zeros((1, 64)))
    assert status_of(lambda: client.infer("digits", [row])) == (
        grpc.StatusCode.UNAUTHENTICATED, "missing or invalid API key"
    )  # fmt: skip
    assert status_of(lambda: client.infer("digits", [row], headers={"x-api-key": "mfn_wrong"}))[0] == (
        grpc.StatusCode.UNAUTHENTICATED
    )
    assert status_of(lambda: client.infer("digits", [row], headers={"x-api-key": keys["echo"]})) == (
        grpc.StatusCode.PERMISSION_DENIED, "this API key may not use this model"
    )  # fmt: skip
    assert client.infer("digits", [row], headers={"authorization": f"Bearer {keys['all']}"}).as_numpy("label").shape
    token = signer.token()
    assert client.infer("digits", [row], headers={"authorization": f"Bearer {token}"}).as_numpy("label").shape
    code, _ = status_of(
        lambda: client.infer("digits", [row], headers={"authorization": f"Bearer {signer.token(aud='https://x')}"})
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert status_of(lambda: client.get_server_metadata())[0] == grpc.StatusCode.UNAUTHENTICATED


def test_deadlines_the_clients_and_the_servers(client, server, auth) -> None:
    # The client's deadline reaches into the model call: the server stops it and logs a 504.
    code, _ = status_of(lambda: client.infer("slow", slow_inputs(10**7), headers=auth, client_timeout=0.5))
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    deadline = time.monotonic() + 10
    while not any(
        line["route"] == "/inference.GRPCInferenceService/ModelInfer" and line["model"] == "slow"
        and line["httpRequest"]["status"] == 504 and line["latency_ms"] < 2900  # not the server's own 3 s
        for line in server.requests_logged()
    ):  # fmt: skip
        assert time.monotonic() < deadline, server.log()[-3000:]
        time.sleep(0.05)
    # Without one, the server's own deadline (MODELFN_REQUEST_TIMEOUT_S=3) answers, in its words.
    code, message = status_of(lambda: client.infer("slow", slow_inputs(10**7), headers=auth, client_timeout=60))
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED and "deadline" in message
    assert client.infer("slow", slow_inputs(1), headers=auth).as_numpy("y").shape == (256, 256)


def test_overload_is_unavailable_with_retry_after(server, auth) -> None:
    """One call slot and no queue: of four long calls at once, one runs and the others are refused at once."""
    request = service_pb2.ModelInferRequest(model_name="slow")
    for tensor in slow_inputs(10**7):  # runs until the server's 3 s deadline
        request.inputs.append(tensor._get_tensor())
        request.raw_input_contents.append(tensor._get_content())
    outcomes: list[grpc.RpcError] = []
    with grpc.insecure_channel(server.address) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)

        def call() -> None:
            try:
                stub.ModelInfer(request, metadata=tuple(auth.items()), timeout=60)
            except grpc.RpcError as error:
                outcomes.append(error)

        threads = [threading.Thread(target=call) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    codes = sorted(error.code().name for error in outcomes)
    assert codes == ["DEADLINE_EXCEEDED", "UNAVAILABLE", "UNAVAILABLE", "UNAVAILABLE"], codes
    refused = [error for error in outcomes if error.code() == grpc.StatusCode.UNAVAILABLE]
    assert all("at capacity" in error.details() for error in refused)
    assert all(dict(error.trailing_metadata())["retry-after"].isdigit() for error in refused)


def test_the_aio_client_works_unchanged(server, auth) -> None:
    async def calls() -> None:
        client = triton_aio.InferenceServerClient(server.address)
        try:
            assert await client.is_server_live()
            # A readiness probe starts the load and says not ready until it is done: in a random order this
            # may be the module's first call, so ask again, as a platform's probe does.
            deadline = time.monotonic() + 120
            while not await client.is_model_ready("digits", headers=auth):
                assert time.monotonic() < deadline, "digits never became ready"
                await asyncio.sleep(0.1)
            result = await client.infer("digits", [pixels(np.zeros((2, 64)))], headers=auth)
            assert result.as_numpy("label").shape == (2,)
            with pytest.raises(InferenceServerException) as error:
                await client.infer("digits", [pixels(np.zeros((2, 3)))], headers=auth)
            assert error.value.status() == "StatusCode.INVALID_ARGUMENT"
        finally:
            await client.close()

    asyncio.run(calls())


def test_metrics_count_the_grpc_calls_by_method(client, server, auth) -> None:
    client.infer("digits", [pixels(np.zeros((1, 64)))], headers=auth)
    status_of(lambda: client.infer("digits", [pixels(np.zeros((1, 3)))], headers=auth))
    assert requests.get(server.metrics_url, timeout=10).status_code == 401  # the same credentials as HTTP
    text = requests.get(server.metrics_url, headers=auth, timeout=10).text
    route = 'route="/inference.GRPCInferenceService/ModelInfer"'
    found = {line.split()[0]: float(line.split()[1]) for line in text.splitlines() if route in line}
    ok = next(v for k, v in found.items() if k.startswith("modelfn_requests_total") and 'code="200"' in k)
    bad = next(v for k, v in found.items() if k.startswith("modelfn_requests_total") and 'code="400"' in k)
    assert ok >= 1 and bad >= 1
    assert requests.get(server.metrics_url.replace("/metrics", "/v2"), headers=auth, timeout=10).status_code == 404


def test_the_docs_grpcurl_calls_work(server, auth) -> None:
    """Each ``grpcurl -d`` body of docs/how-to/grpc.md, read as grpcurl reads it (protobuf JSON), answers."""
    import re

    from google.protobuf import json_format

    section = (Path(__file__).parents[2] / "docs" / "how-to" / "grpc.md").read_text()
    calls = re.findall(r"-d '(\{[^']*\})'\s*(?:\\\s*)?127\.0\.0\.1:8081 inference\.GRPCInferenceService/(\w+)", section)
    assert [method for _, method in calls] == ["ModelMetadata", "ModelInfer"]
    with grpc.insecure_channel(server.address) as channel:
        for body, method in calls:
            request_type, response_type = messages.method_types(messages.SERVICE)[method]
            request = json_format.Parse(body, request_type())
            call = channel.unary_unary(
                f"/{messages.SERVICE}/{method}",
                request_serializer=request_type.SerializeToString,
                response_deserializer=response_type.FromString,
            )
            answer = call(request, metadata=tuple(auth.items()), timeout=30)
            if method == "ModelInfer":
                label = np.frombuffer(answer.raw_output_contents[1], np.int64)
                assert [o.name for o in answer.outputs] == ["probabilities", "label"] and label.tolist() == [0]
            else:
                assert answer.name == "digits"
