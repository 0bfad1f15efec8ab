"""Text generation, engine-neutral: a request's options within the contract's limits, stop texts,
the slots that bound concurrent generations, and the stream every route reads.

A generation is a Python iterator of text pieces, pulled by whoever writes the answer: a route
that streams pulls a piece, writes it, and pulls the next, so a client that goes away stops the
generation at its next token (the server closes the iterator, and its ``finally`` runs). Every
generation ends by the first of: the model's end token, a stop text, ``max_tokens``, the request's
deadline, or the client leaving. Nothing a client sends can lengthen it past the contract's limits.

The engine (:mod:`modelfn.runtime.predictors.genai`) only writes tokens; what is counted and when
a generation ends is decided here, so every route and engine behaves the same.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, NamedTuple

from modelfn.errors import InvalidInput, TooManyGenerations
from modelfn.observability.metrics import RECORDER

if TYPE_CHECKING:
    from modelfn.contract import Generation

#: Time to first token, in seconds: a small model's milliseconds to a large prompt's seconds.
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
RATE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)


class Options(NamedTuple):
    """One generation's settings, already within the contract's limits (see :func:`options`)."""

    max_tokens: int
    temperature: float
    top_p: float
    top_k: int
    seed: int | None
    stop: tuple[str, ...]


def options(
    limits: Generation,
    *,
    max_tokens: object = None,
    temperature: object = None,
    top_p: object = None,
    top_k: object = None,
    seed: object = None,
    stop: object = None,
) -> Options:
    """A request's sampling settings, checked and capped; ``None`` means the contract's default.

    ``max_tokens`` above the contract's is cut to it (OpenAI's servers cap it the same way); a value
    of the wrong type or out of range is a 400 naming the field.
    """
    tokens = limits.max_tokens
    if max_tokens is not None:
        tokens = min(int(_number(max_tokens, "max_tokens", 1, None, int)), limits.max_tokens)
    chosen_temperature = limits.temperature if temperature is None else _number(temperature, "temperature", 0, 2, float)
    chosen_top_p = limits.top_p if top_p is None else _number(top_p, "top_p", 0, 1, float)
    if chosen_top_p == 0:
        raise InvalidInput("top_p must be above 0")
    chosen_top_k = limits.top_k if top_k is None else _number(top_k, "top_k", 1, 1000, int)
    chosen_seed = None if seed is None else _number(seed, "seed", 0, 2**31 - 1, int)
    texts = _stop_texts(stop)
    return Options(int(tokens), float(chosen_temperature), float(chosen_top_p), int(chosen_top_k),
                   None if chosen_seed is None else int(chosen_seed), (*limits.stop, *texts))  # fmt: skip


def _number(value: object, field: str, low: float, high: float | None, kind: type) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and not float(value).is_integer()):
        raise InvalidInput(f"{field} must be {'an integer' if kind is int else 'a number'}, got {value!r:.40}")
    if value < low or (high is not None and value > high):
        raise InvalidInput(f"{field} must be between {low} and {high}, got {value}" if high is not None
                           else f"{field} must be at least {low}, got {value}")  # fmt: skip
    return value


def _stop_texts(stop: object) -> tuple[str, ...]:
    if stop is None:
        return ()
    texts = [stop] if isinstance(stop, str) else stop
    if not isinstance(texts, list) or len(texts) > 4 or not all(isinstance(t, str) and 0 < len(t) <= 64 for t in texts):
        raise InvalidInput("stop must be a string or a list of at most 4 strings of 1 to 64 characters")
    return tuple(texts)


class StopTexts:
    """Holds back text that may be the start of a stop text, so a stop text is never sent."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = stops
        self.pending = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        """What of ``pending + piece`` can be sent now; sets :attr:`stopped` when a stop text appears."""
        if not self.stops:
            return piece
        text = self.pending + piece
        cut = min((i for i in (text.find(stop) for stop in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped, self.pending = True, ""
            return text[:cut]
        keep = max((n for stop in self.stops for n in range(1, len(stop)) if text.endswith(stop[:n])), default=0)
        self.pending = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        rest, self.pending = self.pending, ""
        return rest


class Slots:
    """At most ``size`` generations at once; one more is refused at once (429 with ``Retry-After``).

    A generation holds its slot while it streams, however long the client takes to read: a queue
    would only add to the wait of every caller, so a full instance says so and the platform (or
    the client) tries another.
    """

    def __init__(self, model: str, size: int) -> None:
        self.model = model
        self.size = size
        self._free = threading.BoundedSemaphore(size)

    def take(self) -> Callable[[], None]:
        """A slot, and the call that gives it back (once)."""
        if not self._free.acquire(blocking=False):
            raise TooManyGenerations(f"model {self.model} is generating {self.size} answers, its limit; retry shortly")
        given_back = threading.Event()

        def release() -> None:
            if not given_back.is_set():
                given_back.set()
                self._free.release()

        return release


class Finish:
    """Why a generation ended (OpenAI's ``finish_reason``) and how many tokens it wrote; set when it ends."""

    __slots__ = ("deadline", "reason", "tokens")

    def __init__(self) -> None:
        self.reason: str | None = None
        self.tokens = 0
        #: Whether the request's deadline cut it short (its ``reason`` is then ``length``).
        self.deadline = False


class Stream:
    """A generation's text pieces (see :func:`generate`); :meth:`close` stops it, started or not.

    A plain generator that was never started runs nothing when closed, so a slot taken for it
    would never be given back: this wrapper gives it back, and counts the cancellation, either way.
    """

    def __init__(self, pieces: Iterator[str], model: str, finish: Finish, release: Callable[[], None]) -> None:
        self._pieces = pieces
        self._model = model
        self._finish = finish
        self._release = release

    def __iter__(self) -> Stream:
        return self

    def __next__(self) -> str:
        return next(self._pieces)

    def close(self) -> None:
        close = getattr(self._pieces, "close", None)
        if close is not None:
            close()
        if self._finish.reason is None:  # closed before its first piece was asked for
            self._finish.reason = "cancelled"
            RECORDER.count("generation_cancelled", (self._model,))
        self._release()

    def __del__(self) -> None:  # a reader that dropped it without closing it: the slot still comes back
        self.close()


def generate(
    tokens: Iterator[str],
    *,
    model: str,
    opts: Options,
    deadline: float | None,
    finish: Finish,
    release: Callable[[], None],
) -> Stream:
    """The text pieces of ``tokens`` (one per token, from the engine) within every limit.

    Counts the time to the first token, the tokens and their rate, and a generation the reader
    stopped (it closed this iterator, as a server does when its client disconnects) as cancelled.
    ``release`` gives the generation's slot back when it ends, however it ends; it may be called more
    than once (:meth:`Slots.take`'s is).
    """
    return Stream(_limited(tokens, model, opts, deadline, finish, release), model, finish, release)


def _limited(
    tokens: Iterator[str], model: str, opts: Options, deadline: float | None, finish: Finish,
    release: Callable[[], None],
) -> Iterator[str]:  # fmt: skip
    started = time.monotonic()
    stops = StopTexts(opts.stop)
    first = True
    try:
        for piece in tokens:
            finish.tokens += 1
            if first:
                RECORDER.observe("generation_ttft_seconds", (model,), time.monotonic() - started, TTFT_BUCKETS)
                first = False
            text = stops.feed(piece)
            if text:
                yield text
            if stops.stopped:
                finish.reason = "stop"
                break
            if finish.tokens >= opts.max_tokens:
                finish.reason = "length"
                break
            if deadline is not None and time.monotonic() >= deadline:
                finish.reason, finish.deadline = "length", True  # OpenAI's name for "cut short"
                RECORDER.count("generation_deadline", (model,))
                break
        else:
            finish.reason = "stop"  # the model's end token
        rest = stops.flush()
        if rest:
            yield rest
    except GeneratorExit:
        finish.reason = finish.reason or "cancelled"
        RECORDER.count("generation_cancelled", (model,))
        raise
    finally:
        release()
        seconds = time.monotonic() - started
        RECORDER.count("generation_tokens", (model,), finish.tokens)
        if finish.tokens > 1 and seconds > 0:
            RECORDER.observe("generation_tokens_per_second", (model,), finish.tokens / seconds, RATE_BUCKETS)


def whole_sentences(text: str) -> str:
    """``text`` up to its last complete sentence (all of it when it has none): an answer cut short by a
    deadline is said without a broken sentence at its end."""
    ends = [text.rfind(mark) for mark in (". ", "! ", "? ", ".\n", "!\n", "?\n")]
    last = max(ends)
    if text.rstrip().endswith((".", "!", "?")) or last < 0:
        return text
    return text[: last + 1]
