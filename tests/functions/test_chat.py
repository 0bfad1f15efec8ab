"""functions/chat in-process: POST /predict through its hooks, the Open Inference Protocol, voice and chat
platforms within their deadlines (a generation cut short ends at a whole sentence)."""

from __future__ import annotations

import json
import time

import pytest
from generative import CHAT, long_answers
from helpers import ROOT

from modelfn.adapters.process import build_servable
from modelfn.observability.metrics import RECORDER
from modelfn.protocols.conversation import Turn, converse
from modelfn.runtime import generation
from modelfn.runtime.deadline import shown

ANSWERS = json.loads((ROOT / "functions" / "helpdesk" / "answers.json").read_text())["answers"]


@pytest.fixture(scope="module")
def chat_client():
    from conftest import make_client

    return make_client(CHAT)


def test_predict_runs_the_hooks_and_the_example_is_answered(chat_client) -> None:
    answer = chat_client.post("/predict", json={"text": "how do I deploy my model to aws lambda"})
    assert answer.status_code == 200 and answer.get_json()["answer"] == ANSWERS["deploy_aws"]
    for body, message in (({}, 'send {"text": "your question"}'), ({"text": "x" * 501}, "the limit is 500")):
        refused = chat_client.post("/predict", json=body)
        assert refused.status_code == 400 and message in refused.get_json()["error"]


def test_the_open_inference_protocol_takes_prompts_as_bytes(chat_client) -> None:
    prompts = ["<|user|>hello<|assistant|>", "<|user|>thanks<|assistant|>"]
    body = {"inputs": [{"name": "text_input", "datatype": "BYTES", "shape": [2], "data": prompts}]}
    answer = chat_client.post("/v2/models/chat/infer", json=body).get_json()
    (output,) = answer["outputs"]
    assert output["name"] == "text_output" and output["datatype"] == "BYTES" and output["shape"] == [2]
    assert [text.strip() for text in output["data"]] == [ANSWERS["greeting"], ANSWERS["thanks"]]


def test_one_request_cannot_queue_unbounded_generations(chat_client) -> None:
    body = {
        "inputs": [{"name": "text_input", "datatype": "BYTES", "shape": [17], "data": ["<|user|>hi<|assistant|>"] * 17}]
    }
    refused = chat_client.post("/v2/models/chat/infer", json=body)
    assert refused.status_code == 400 and "17 prompts in one request; the limit is 16" in refused.get_json()["error"]


def test_a_voice_assistant_gets_an_answer_within_its_deadline() -> None:
    function = build_servable(CHAT, None, None)[0]
    said = converse(function, Turn("dialogflow", "", {}, "what is modelfn"), timeout=4.5)
    assert said.answered and said.text == ANSWERS["what_is_modelfn"]


def test_a_deadline_stops_the_generation_at_a_whole_sentence(tmp_path) -> None:
    function = build_servable(long_answers(tmp_path), None, None)[0]
    predictor = function.model().predictor
    before = RECORDER.counters.get(("generation_deadline", ("chat",)), 0)
    whole, finish = predictor.complete("<|user|>what is modelfn<|assistant|>")
    assert finish.tokens == 2000 and not finish.deadline  # without a deadline, it runs to max_tokens
    started = time.monotonic()
    cut, finish = shown(lambda: predictor.complete("<|user|>what is modelfn<|assistant|>"), started + 0.05)
    assert finish.deadline and finish.reason == "length" and finish.tokens < 2000
    assert time.monotonic() - started < 0.05 + 2  # it ended by itself, a token after its deadline
    assert whole.startswith(cut) and cut.endswith(".") and cut.startswith(ANSWERS["what_is_modelfn"][:40])
    assert RECORDER.counters[("generation_deadline", ("chat",))] == before + 1


def test_whole_sentences() -> None:
    assert generation.whole_sentences("One. Two is cut") == "One."
    assert generation.whole_sentences("One! Two? Three") == "One! Two?"
    assert generation.whole_sentences("No sentence end") == "No sentence end"
    assert generation.whole_sentences("Done.") == "Done."
