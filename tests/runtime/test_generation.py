"""Generation limits, stop texts, slots and the stream's accounting (modelfn.runtime.generation), and the
chat model's own stream in-process: a reader that stops early stops the generation and frees its slot."""

from __future__ import annotations

import orjson
import pytest
from helpers import ROOT

from modelfn.contract import Generation
from modelfn.errors import InvalidInput, TooManyGenerations
from modelfn.observability.metrics import RECORDER
from modelfn.runtime import generation

CHAT = ROOT / "functions" / "chat"
LIMITS = Generation(max_tokens=50, temperature=0.0, stop=["\n\n"])


def test_a_request_may_ask_less_never_more() -> None:
    assert generation.options(LIMITS).max_tokens == 50
    assert generation.options(LIMITS, max_tokens=10).max_tokens == 10
    assert generation.options(LIMITS, max_tokens=10**9).max_tokens == 50  # capped, as OpenAI's servers cap it
    chosen = generation.options(LIMITS, temperature=0.7, top_p=0.9, top_k=5, seed=3, stop="END")
    assert chosen == generation.Options(50, 0.7, 0.9, 5, 3, ("\n\n", "END"))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("max_tokens", 0, "max_tokens must be at least 1"),
        ("max_tokens", "9", "max_tokens must be an integer"),
        ("max_tokens", 2.5, "max_tokens must be an integer"),
        ("max_tokens", True, "max_tokens must be an integer"),
        ("temperature", 3, "temperature must be between 0 and 2"),
        ("temperature", "hot", "temperature must be a number"),
        ("top_p", 0, "top_p must be above 0"),
        ("top_k", 0, "top_k must be between 1 and 1000"),
        ("seed", -1, "seed must be between 0"),
        ("stop", ["a"] * 5, "stop must be a string or a list of at most 4"),
        ("stop", [""], "stop must be a string or a list of at most 4"),
    ],
)
def test_a_bad_setting_is_a_400_naming_it(field: str, value: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        generation.options(LIMITS, **{field: value})


def test_a_stop_text_is_never_sent_even_split_across_tokens() -> None:
    stops = generation.StopTexts(("STOP",))
    sent = [stops.feed(piece) for piece in ["Hello S", "T", "OP more"]]
    assert "".join(sent) == "Hello " and stops.stopped
    loose = generation.StopTexts(("STOP",))
    assert [loose.feed(p) for p in ["ST", "AR"]] == ["", "STAR"] and not loose.stopped
    assert loose.feed("S") == "" and loose.flush() == "S"


def _run(pieces, **settings) -> tuple[list[str], generation.Finish, list[bool]]:
    released: list[bool] = []
    finish = generation.Finish()
    opts = generation.options(Generation(max_tokens=settings.pop("max_tokens", 50), stop=settings.pop("stop", [])))
    out = list(generation.generate(iter(pieces), model="unit", opts=opts, deadline=settings.pop("deadline", None),
                                   finish=finish, release=lambda: released.append(True)))  # fmt: skip
    return out, finish, released


def test_a_generation_ends_at_its_limit_its_stop_text_or_the_model_end() -> None:
    assert _run(["a", "b", "c"], max_tokens=2)[1].reason == "length"
    out, finish, released = _run(["a", "b", "c"])
    assert out == ["a", "b", "c"] and finish.reason == "stop" and finish.tokens == 3 and released
    out, finish, _ = _run(["a", "b!", "c"], stop=["!"])
    assert "".join(out) == "ab" and finish.reason == "stop"
    out, finish, _ = _run(["a", "b"], deadline=0.0)  # a deadline already past: one token, then cut
    assert out == ["a"] and finish.reason == "length"


def test_a_reader_that_stops_early_cancels_and_frees_the_slot() -> None:
    before = RECORDER.counters.get(("generation_cancelled", ("unit",)), 0)
    slots = generation.Slots("unit", 1)
    release = slots.take()
    with pytest.raises(TooManyGenerations, match="generating 1 answers, its limit"):
        slots.take()
    finish = generation.Finish()
    stream = generation.generate(iter(["a", "b", "c"]), model="unit", opts=generation.options(LIMITS), deadline=None,
                                 finish=finish, release=release)  # fmt: skip
    assert next(stream) == "a"
    stream.close()  # what a server does when its client goes away
    assert finish.reason == "cancelled" and finish.tokens == 1
    assert RECORDER.counters[("generation_cancelled", ("unit",))] == before + 1
    slots.take()()  # the slot is free again


def test_the_chat_model_streams_in_process_and_a_closed_stream_stops(tmp_path) -> None:
    """Through the real request path: the slot is taken when the answer starts, given back when it is closed."""
    from helpers import copy_function, edit_contract

    from modelfn.adapters.dispatch import handle_request
    from modelfn.adapters.process import build_servable
    from modelfn.http import Request

    folder = copy_function(tmp_path, CHAT)
    edit_contract(folder, generation={"max_prompt_tokens": 128, "max_tokens": 96, "max_concurrent": 1,
                                      "chat_template": "chat_template.jinja"})  # fmt: skip
    function = build_servable(folder, None, None)[0]
    body = {"model": "chat", "messages": [{"role": "user", "content": "what is modelfn"}], "stream": True}
    request = Request("POST", "/openai/v1/chat/completions", orjson.dumps(body), {"Content-Type": "application/json"})
    first = handle_request(function, request)
    assert first.status == 200 and first.headers["Content-Type"] == "text/event-stream" and first.stream is not None
    assert next(first.stream).startswith(b"data: ")
    refused = handle_request(function, request)  # the one slot is streaming
    assert refused.status == 429 and "Retry-After" in refused.headers
    before = RECORDER.counters.get(("generation_cancelled", ("chat",)), 0)
    first.stream.close()
    assert RECORDER.counters[("generation_cancelled", ("chat",))] == before + 1
    again = handle_request(function, request)
    events = b"".join(again.stream or []).split(b"\n\n")
    assert events[-2] == b"data: [DONE]"
    text = "".join(orjson.loads(e[6:])["choices"][0]["delta"].get("content", "") for e in events[:-2])
    assert text.startswith("modelfn turns a trained model")
