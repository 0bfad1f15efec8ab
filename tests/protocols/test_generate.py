"""Triton's generate extension on functions/chat, with the request bodies Triton documents, over real connections."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import requests
from generative import generation_counts, long_answers, serve, wait_cancelled

pytestmark = pytest.mark.slow
PROMPT = "<|user|>what is the contract<|assistant|>"


def test_generate_takes_settings_at_the_top_or_under_parameters(chat_url: str) -> None:
    url = f"{chat_url}/v2/models/chat/generate"
    top = requests.post(url, json={"text_input": PROMPT, "max_tokens": 4}, timeout=60)
    assert top.status_code == 200 and top.headers["X-Model-Version"] == "1"
    assert set(top.json()) == {"model_name", "model_version", "text_output"} and top.json()["model_name"] == "chat"
    under = requests.post(url, json={"text_input": PROMPT, "parameters": {"stream": False, "temperature": 0,
                                                                          "max_tokens": 4}}, timeout=60)  # fmt: skip
    assert under.json() == top.json()
    # TensorRT-LLM's ensemble as Triton's own quick start calls it.
    trtllm = requests.post(url, json={"text_input": PROMPT, "max_tokens": 4, "bad_words": "", "stop_words": ""},
                           timeout=60)  # fmt: skip
    assert trtllm.json() == top.json()
    whole = requests.post(f"{chat_url}/v2/models/chat/versions/1/generate", json={"text_input": PROMPT}, timeout=60)
    assert whole.json()["text_output"].startswith(top.json()["text_output"])


def test_curl_n_reads_generate_stream_as_events(chat_url: str) -> None:
    body = json.dumps({"text_input": PROMPT, "parameters": {"max_tokens": 12}})
    out = subprocess.run(["curl", "-sN", "--max-time", "60", f"{chat_url}/v2/models/chat/generate_stream", "-d", body],
                         capture_output=True, text=True, timeout=90).stdout  # fmt: skip
    events = [json.loads(event.removeprefix("data: ")) for event in out.split("\n\n") if event]
    assert len(events) >= 5 and all(e["model_name"] == "chat" and "text_output" in e for e in events)
    whole = requests.post(f"{chat_url}/v2/models/chat/generate", data=body, timeout=60).json()["text_output"]
    assert "".join(e["text_output"] for e in events) == whole


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("chat/generate", {"max_tokens": 3}, 400, "text_input must be a string"),
        ("chat/generate", {"text_input": "x " * 400}, 400, "this model takes at most 128"),
        ("chat/generate", {"text_input": PROMPT, "beams": 4}, 400, "unknown field(s) ['beams']"),
        ("chat/generate", {"text_input": PROMPT, "parameters": {"top_p": 7}}, 400, "top_p must be between"),
        ("chat/generate", {"text_input": PROMPT, "bad_words": "rude"}, 400, "bad_words is not supported"),
        ("other/generate_stream", {"text_input": PROMPT}, 404, "model 'other' not found"),
        ("chat/versions/9/generate", {"text_input": PROMPT}, 404, "has no version '9'"),
    ],
)
def test_bad_requests_are_4xx_before_any_event(chat_url: str, path: str, body: dict, status: int, message: str) -> None:
    answer = requests.post(f"{chat_url}/v2/models/{path}", json=body, timeout=60)
    assert answer.status_code == status and message in answer.json()["error"], answer.text


def test_leaving_generate_stream_stops_the_generation(tmp_path: Path) -> None:
    with serve("modelfn serve", long_answers(tmp_path), tmp_path / "server.log") as url:
        before, tokens_before = generation_counts(url)
        body = {"text_input": "<|user|>hi<|assistant|>"}
        with requests.post(f"{url}/v2/models/chat/generate_stream", json=body, timeout=60, stream=True) as stream:
            assert next(stream.iter_lines()).startswith(b"data: ")
        after, tokens_after = wait_cancelled(url, before + 1)
        assert after == before + 1 and tokens_after - tokens_before < 2000
