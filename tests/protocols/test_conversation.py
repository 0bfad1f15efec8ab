"""What is said back: the reply field, strings as they are, anything else as JSON, cut at a word."""

from __future__ import annotations

import numpy as np

from modelfn.protocols.conversation import reply_text, shorten


def test_reply_text_reads_the_reply_field_or_says_the_answer_as_json() -> None:
    assert reply_text("plain", "answer") == "plain"
    assert reply_text({"answer": "from the field", "intent": "x"}, "answer") == "from the field"
    assert reply_text({"digit": np.int64(7)}, "answer") == '{"digit":7}'
    assert reply_text({"answer": 3}, "answer") == '{"answer":3}'


def test_shorten_cuts_at_a_word_boundary() -> None:
    assert shorten("short", 10) == "short"
    assert shorten("one two three four", 12) == "one two…"
    assert shorten("x" * 20, 8) == "x" * 7 + "…"
