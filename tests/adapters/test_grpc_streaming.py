"""``ModelStreamInfer`` with tritonclient.grpc's own stream API: a generative model's text piece by piece, any other
model's one answer, errors in the stream, and a closed stream that stops its generation."""

from __future__ import annotations

import queue
import time

import numpy as np
import pytest
import tritonclient.grpc as triton
from generative import CHAT, generation_counts, long_answers
from grpc_servers import GrpcServer, pixels
from helpers import DIGITS

pytestmark = pytest.mark.slow
PROMPT = "<|user|>what is modelfn<|assistant|>"


def prompt(text: str = PROMPT) -> list[triton.InferInput]:
    tensor = triton.InferInput("text_input", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([text.encode()], dtype=object))
    return [tensor]


def streamed(client: triton.InferenceServerClient, model: str, inputs: list, **parameters) -> list:
    """Every answer of one streamed request, up to its empty final one: (text or None, error or None)."""
    answers: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        client.async_stream_infer(model, inputs, parameters=parameters or None, enable_empty_final_response=True)
        collected = []
        while True:
            result, error = answers.get(timeout=60)
            if error is not None:
                return [*collected, (None, str(error))]
            response = result.get_response()
            if response.parameters["triton_final_response"].bool_param:
                return collected
            output = result.as_numpy("text_output")
            collected.append((None if output is None else output[0].decode(), None))
    finally:
        client.stop_stream()


@pytest.fixture(scope="module")
def chat_grpc(tmp_path_factory):
    server = GrpcServer(CHAT, tmp_path_factory.mktemp("grpc") / "serve.log", {})
    server.wait_live()
    yield server
    server.stop()


def test_a_generative_model_streams_its_answer_piece_by_piece(chat_grpc) -> None:
    client = triton.InferenceServerClient(chat_grpc.address)
    pieces = streamed(client, "chat", prompt())
    assert len(pieces) >= 5 and all(error is None for _, error in pieces)
    assert "".join(text for text, _ in pieces).startswith("modelfn turns a trained model")
    short = streamed(client, "chat", prompt(), max_tokens=3)
    assert len(short) == 3  # the request's setting, as on REST
    refused = streamed(client, "chat", prompt("word " * 300))
    assert refused == [(None, refused[0][1])] and "this model takes at most 128" in refused[0][1]
    unknown = streamed(client, "chat", prompt(), beams=4)
    assert "unknown field(s) ['beams']" in unknown[0][1]
    # The stream goes on after an error: the same client streams again.
    assert len(streamed(client, "chat", prompt(), max_tokens=2)) == 2


def test_any_other_model_answers_once_in_the_stream(tmp_path) -> None:
    server = GrpcServer(DIGITS, tmp_path / "serve.log", {})
    try:
        server.wait_live()
        client = triton.InferenceServerClient(server.address)
        answers: queue.Queue = queue.Queue()
        client.start_stream(callback=lambda result, error: answers.put((result, error)))
        client.async_stream_infer("digits", [pixels(np.zeros((2, 64)))])
        result, error = answers.get(timeout=60)
        assert error is None and result.as_numpy("label").shape == (2,)
        client.async_stream_infer("digits", [pixels(np.zeros((2, 63)))])
        result, error = answers.get(timeout=60)
        assert result is None and "pixels" in str(error)
        client.stop_stream()
    finally:
        server.stop()


def test_closing_the_stream_stops_the_generation(tmp_path) -> None:
    env = {"MODELFN_METRICS_PORT": str(__import__("helpers").free_port())}
    server = GrpcServer(long_answers(tmp_path), tmp_path / "serve.log", env)
    try:
        server.wait_live()
        base = server.metrics_url.removesuffix("/metrics")
        before, tokens_before = generation_counts(base)
        client = triton.InferenceServerClient(server.address)
        answers: queue.Queue = queue.Queue()
        client.start_stream(callback=lambda result, error: answers.put((result, error)))
        client.async_stream_infer("chat", prompt("<|user|>hi<|assistant|>"))
        result, error = answers.get(timeout=60)
        assert error is None and result.as_numpy("text_output") is not None  # the first piece, mid-generation
        client.stop_stream(cancel_requests=True)
        deadline = time.monotonic() + 60
        while generation_counts(base)[0] < before + 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        after, tokens_after = generation_counts(base)
        assert after == before + 1 and tokens_after - tokens_before < 2000
    finally:
        server.stop()
