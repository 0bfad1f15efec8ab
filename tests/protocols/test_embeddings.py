"""functions/embed: OpenAI's embeddings route with the official ``openai`` client, and POST /predict with no hook,
over a real ``modelfn serve``; the same vector from every route, and a 4xx naming each problem."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import numpy as np
import openai
import pytest
import requests
from batch_cases import EMBED
from helpers import running

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def embed_url(tmp_path_factory) -> Iterator[str]:
    with running(EMBED, tmp_path_factory.mktemp("embed") / "serve.log") as server:
        yield server.url


def test_the_openai_client_gets_unit_vectors_of_the_declared_size(embed_url: str) -> None:
    client = openai.OpenAI(base_url=f"{embed_url}/openai/v1", api_key="unused", max_retries=0, timeout=60)
    assert "embed" in [model.id for model in client.models.list()]
    questions = ["how do I deploy to cloud run", "how can I put my model on google cloud run", "thanks a lot"]
    answer = client.embeddings.create(model="embed", input=questions)  # the client asks for base64 and decodes it
    vectors = np.array([item.embedding for item in answer.data])
    assert vectors.shape == (3, 64) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert answer.usage.prompt_tokens == answer.usage.total_tokens > 3 * 3
    # Two ways to ask one thing are closer to each other than to a thank-you.
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    floats = client.embeddings.create(model="embed", input=questions[0], encoding_format="float").data[0].embedding
    assert np.allclose(floats, vectors[0], atol=1e-6)
    predicted = requests.post(f"{embed_url}/predict", json={"text": questions[0]}, timeout=60).json()["embedding"]
    assert np.allclose(predicted, vectors[0], atol=1e-6)


def test_base64_is_little_endian_float32(embed_url: str) -> None:
    body = {"model": "embed", "input": ["hello"], "encoding_format": "base64"}
    data = requests.post(f"{embed_url}/openai/v1/embeddings", json=body, timeout=60).json()["data"][0]["embedding"]
    vector = np.frombuffer(base64.b64decode(data), dtype="<f4")
    assert vector.shape == (64,) and abs(np.linalg.norm(vector) - 1) < 1e-5


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"model": "embed", "input": "word " * 40}, 400, "text 0 is 82 tokens; this model takes at most 32"),
        ({"model": "embed", "input": []}, 400, "input must be a non-empty list of strings"),
        ({"model": "embed", "input": [[101, 102]]}, 400, "input must be a non-empty list of strings"),
        ({"model": "embed", "input": ["x"] * 257}, 400, "input has 257 texts; the limit is 256"),
        ({"model": "embed", "input": "x", "dimensions": 32}, 400, "this model's vectors have 64"),
        ({"model": "embed", "input": "x", "encoding_format": "int8"}, 400, "encoding_format must be float or base64"),
        ({"model": "digits", "input": "x"}, 404, "model 'digits' not found"),
    ],
)
def test_bad_requests_are_4xx_naming_the_problem(embed_url: str, body: dict, status: int, message: str) -> None:
    answer = requests.post(f"{embed_url}/openai/v1/embeddings", json=body, timeout=60)
    assert answer.status_code == status and message in answer.json()["error"], answer.text
