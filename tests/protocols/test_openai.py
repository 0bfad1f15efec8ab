"""The OpenAI-compatible routes of functions/chat over real connections, with the official ``openai`` client,
on the two HTTP paths a function is deployed on: functions-framework (Cloud Functions gen2) and modelfn's
own server (``modelfn serve``, the Cloud Run image)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import openai
import pytest
import requests
from generative import PATHS, generation_counts, long_answers, serve, wait_cancelled
from helpers import ROOT

pytestmark = pytest.mark.slow

ANSWERS = set(json.loads((ROOT / "functions" / "helpdesk" / "answers.json").read_text())["answers"].values())


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/openai/v1", api_key="unused", max_retries=0, timeout=60)


def test_the_openai_client_chats_with_and_without_a_stream(chat_url: str) -> None:
    chat = client(chat_url)
    assert [model.id for model in chat.models.list()] == ["chat"]
    question = [{"role": "user", "content": "how can I deploy to aws lambda"}]
    whole = chat.chat.completions.create(model="chat", messages=question)
    answer = whole.choices[0].message.content
    assert answer in ANSWERS and whole.choices[0].finish_reason == "stop"
    assert whole.usage.completion_tokens > 5 and whole.usage.prompt_tokens > 5
    chunks = list(chat.chat.completions.create(model="chat", messages=question, stream=True,
                                               stream_options={"include_usage": True}))  # fmt: skip
    assert chunks[0].choices[0].delta.role == "assistant"
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(texts) >= 5 and "".join(texts) == answer  # several chunks, the same answer
    assert chunks[-2].choices[0].finish_reason == "stop" and chunks[-1].usage == whole.usage


def test_completions_and_max_tokens(chat_url: str) -> None:
    chat = client(chat_url)
    short = chat.completions.create(model="chat", prompt="<|user|>what is modelfn<|assistant|>", max_tokens=3)
    assert short.usage.completion_tokens == 3 and short.choices[0].finish_reason == "length"
    streamed = list(chat.completions.create(model="chat", prompt="<|user|>hello<|assistant|>", max_tokens=4,
                                            stream=True))  # fmt: skip
    assert len([c for c in streamed if c.choices[0].text]) >= 2 and streamed[-1].choices[0].finish_reason == "length"


def test_curl_reads_server_sent_events(chat_url: str) -> None:
    body = json.dumps({"model": "chat", "prompt": "<|user|>hi<|assistant|>", "stream": True})
    out = subprocess.run(["curl", "-sN", "--max-time", "60", f"{chat_url}/openai/v1/completions", "-d", body],
                         capture_output=True, text=True, timeout=90).stdout  # fmt: skip
    events = [line for line in out.split("\n\n") if line]
    assert len(events) >= 4 and all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"model": "chat", "messages": [{"role": "user", "content": "word " * 300}]}, 400,
         "this model takes at most 128"),
        ({"model": "chat", "messages": [{"role": "user", "content": "hi"}], "n": 2}, 400, "n must be 1"),
        ({"model": "chat", "messages": [{"role": "robot", "content": "hi"}]}, 400, "messages[0].role must be one of"),
        ({"model": "chat", "messages": []}, 400, "messages must be a non-empty list"),
        ({"model": "chat", "messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}, 400,
         "temperature must be a number"),
        ({"model": "other", "messages": [{"role": "user", "content": "hi"}]}, 404, "model 'other' not found"),
        ({"messages": [{"role": "user", "content": "hi"}]}, 400, "model must name the model"),
    ],
)  # fmt: skip
def test_bad_requests_are_4xx_naming_the_problem(chat_url: str, body: dict, status: int, message: str) -> None:
    answer = requests.post(f"{chat_url}/openai/v1/chat/completions", json=body, timeout=60)
    assert answer.status_code == status and message in answer.json()["error"], answer.text


@pytest.mark.parametrize("path", PATHS)
def test_the_first_chunk_comes_before_the_end_and_leaving_stops_the_generation(path: str, tmp_path: Path) -> None:
    with serve(path, long_answers(tmp_path), tmp_path / "server.log") as url:
        full = requests.post(f"{url}/openai/v1/completions", timeout=60,
                             json={"model": "chat", "prompt": "<|user|>hi<|assistant|>"}).json()  # fmt: skip
        assert full["usage"]["completion_tokens"] == 2000  # the whole answer, when nobody leaves
        before, tokens_before = generation_counts(url)
        body = {"model": "chat", "prompt": "<|user|>hi<|assistant|>", "stream": True}
        with requests.post(f"{url}/openai/v1/completions", json=body, timeout=60, stream=True) as stream:
            first = next(stream.iter_lines())
            assert first.startswith(b"data: ")  # the first event, read while the generation goes on
        after, tokens_after = wait_cancelled(url, before + 1)
        assert after == before + 1  # modelfn_generation_cancelled_total counted it
        assert tokens_after - tokens_before < 2000  # and it stopped before its end
