"""ONNX Runtime GenAI: a generative language model, token by token (``framework: genai``).

The artifact is the folder ONNX Runtime GenAI's model builder writes: ``model.onnx`` (the contract's
``artifact.uri``) and, pinned in ``artifact.files``, its weights (``model.onnx.data``),
``genai_config.json``, the tokenizer and the chat template. Every file is verified before the
engine reads a byte of the folder, as for any model.

Why this engine: it runs a decoder with its key-value cache, sampling and the tokenizer in C++,
on the same ONNX Runtime modelfn serves everything else with, from a wheel that carries its own
runtime (no compiler at install, unlike llama.cpp's Python binding here), and its model builder
turns a model saved with ``transformers`` into that folder offline. A hand-written loop over a plain
ONNX decoder would re-implement the cache and the sampler, more slowly.

The engine writes tokens; limits, stop texts, slots and metrics are :mod:`modelfn.runtime.generation`'s.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from modelfn.errors import ContractError, DeadlineExceeded, InvalidInput
from modelfn.runtime import generation
from modelfn.runtime.deadline import current as current_deadline
from modelfn.runtime.predictors import require

if TYPE_CHECKING:
    from modelfn.contract import Contract, Generation
    from modelfn.runtime.artifacts import VerifiedArtifact
    from modelfn.runtime.chat_template import ChatTemplate
    from modelfn.settings import Settings


#: How long before a call's deadline its generation stops: the post hook and the answer still fit.
DEADLINE_MARGIN_S = 0.25
#: Prompts one non-streamed request may carry (a batch job's chunks are not limited).
MAX_PROMPTS = 16


class GenAIPredictor:
    """One ``og.Model`` and its tokenizer, shared by every generation (each has its own ``og.Generator``)."""

    #: A generation is stopped between two tokens by :func:`generation.generate`, not by ONNX Runtime.
    interruptible = False

    def __init__(self, engine: Any, model: Any, contract: Contract, template: ChatTemplate | None, context: int,
                 settings: Settings) -> None:  # fmt: skip
        self._og = engine
        self._model = model
        self._tokenizer = engine.Tokenizer(model)
        self.contract = contract
        self.limits: Generation = contract.generation  # type: ignore[assignment]  # validation requires it
        self.template = template
        #: The model's context window: prompt and answer together.
        self.context = context
        self.max_prompt_tokens = min(self.limits.max_prompt_tokens, context - 1)
        self.slots = generation.Slots(contract.name, self.limits.max_concurrent)
        self.timeout_s = settings.request_timeout_s

    @classmethod
    def from_artifact(cls, artifact: VerifiedArtifact, contract: Contract, settings: Settings) -> GenAIPredictor:
        require("onnxruntime_genai", "genai")
        import onnxruntime_genai as og

        from modelfn.runtime.predictors.pinned_data import check_external_data

        check_external_data(artifact)
        config = _read_config(artifact)
        decoder = config.get("model", {}).get("decoder", {}).get("filename")
        if decoder != artifact.names[0]:  # the engine loads what the config names: it must be the pinned model
            raise ContractError(
                f"genai_config.json names the model file {str(decoder)[:100]!r}, the contract's artifact is "
                f"{artifact.names[0]!r}; they must be the same file"
            )
        template = None
        limits = contract.generation
        if limits is not None and limits.chat_template is not None:
            from modelfn.runtime.chat_template import ChatTemplate

            source = (artifact.folder / limits.chat_template).read_text(encoding="utf-8")
            template = ChatTemplate(source, **_special_tokens(artifact))
        try:
            model = og.Model(str(artifact.folder))
        except Exception as exc:  # the engine's own untyped errors
            raise ContractError(f"artifact is not a loadable ONNX Runtime GenAI model: {str(exc)[:300]}") from exc
        context = int(config["model"].get("context_length") or 2048)
        return cls(og, model, contract, template, context, settings)

    # -- prompts -------------------------------------------------------------------------------------
    def prompt_ids(self, text: str) -> np.ndarray:
        """The tokens of ``text``; a prompt over the limit is a 400 that names the limit."""
        ids = self._tokenizer.encode(text)
        if len(ids) > self.max_prompt_tokens:
            raise InvalidInput(f"the prompt is {len(ids)} tokens; this model takes at most {self.max_prompt_tokens}")
        if len(ids) == 0:
            raise InvalidInput("the prompt is empty")
        return ids

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        if self.template is None:
            raise InvalidInput(f"model {self.contract.name} has no chat template: use the completions route")
        return self.template.render(messages)

    # -- generation ----------------------------------------------------------------------------------
    def stream(self, prompt: np.ndarray, opts: generation.Options, *, deadline: float | None,
               finish: generation.Finish) -> generation.Stream:  # fmt: skip
        """The answer's text pieces as they are generated; takes a slot (429 when none is free) at once."""
        release = self.slots.take()
        try:
            tokens = self._tokens(prompt, opts)
        except BaseException:
            release()
            raise
        return generation.generate(tokens, model=self.contract.name, opts=opts, deadline=deadline, finish=finish,
                                   release=release)  # fmt: skip

    def _tokens(self, prompt: np.ndarray, opts: generation.Options) -> Iterator[str]:
        og = self._og
        params = og.GeneratorParams(self._model)
        search: dict[str, Any] = {"max_length": min(len(prompt) + opts.max_tokens, self.context)}
        if opts.temperature > 0:
            search.update(do_sample=True, temperature=opts.temperature, top_p=opts.top_p, top_k=opts.top_k)
            if opts.seed is not None:
                search["random_seed"] = opts.seed
        else:
            search["do_sample"] = False
        params.set_search_options(**search)
        generator = og.Generator(self._model, params)
        generator.append_tokens(prompt)
        return _pieces(generator, self._tokenizer.create_stream())

    def complete(self, text: str, opts: generation.Options | None = None) -> tuple[str, generation.Finish]:
        """The whole answer to ``text`` (a prompt as the model reads it), within the request's time.

        Under a call's deadline (a voice assistant's few seconds), the generation stops a little before it,
        leaving time for the post hook and the answer, and ends at its last whole sentence.
        """
        finish = generation.Finish()
        chosen = opts or generation.options(self.limits)
        call = current_deadline()
        now = time.monotonic()
        at = now + self.timeout_s if call is None else call.at - min(DEADLINE_MARGIN_S, (call.at - now) / 10)
        answer = "".join(self.stream(self.prompt_ids(text), chosen, deadline=at, finish=finish))
        return (generation.whole_sentences(answer) if finish.deadline else answer), finish

    def predict(self, inputs: Mapping[str, np.ndarray], output_names: Sequence[str]) -> dict[str, np.ndarray]:
        """The non-streamed routes (``/v2``, ``/predict``, batch): each text in, its answer out.

        A request (it has a deadline; a batch job does not) takes at most :data:`MAX_PROMPTS` prompts,
        and stops at its deadline rather than start another: one body cannot queue unbounded generations.
        """
        (texts,) = inputs.values()
        call = current_deadline()
        if call is not None and texts.size > MAX_PROMPTS:
            raise InvalidInput(f"{texts.size} prompts in one request; the limit is {MAX_PROMPTS} (send more requests)")
        answers = []
        for item in texts.reshape(-1):
            if call is not None and time.monotonic() >= call.at:
                raise DeadlineExceeded("the request's deadline passed before every prompt was answered")
            text = item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)
            answers.append(self.complete(text)[0])
        out = np.array(answers, dtype=object).reshape(texts.shape)
        return {name: out for name in output_names}

    def warm_up(self) -> None:
        """One token from the start token: the engine's lazy set-up, paid by the load, not the first caller."""
        prompt = np.array([self._model_bos()], dtype=np.int32)
        finish = generation.Finish()
        opts = generation.options(self.limits, max_tokens=1)
        for _ in self.stream(prompt, opts, deadline=None, finish=finish):
            pass

    def _model_bos(self) -> int:
        bos = self._tokenizer.bos_token_id
        return int(bos) if bos is not None and bos >= 0 else 0


def _pieces(generator: Any, decoder: Any) -> Iterator[str]:
    """One text piece per generated token (empty while a multi-byte character is incomplete)."""
    while not generator.is_done():
        generator.generate_next_token()
        yield decoder.decode(int(generator.get_next_tokens()[0]))


def _read_config(artifact: VerifiedArtifact) -> dict[str, Any]:
    try:
        config = json.loads((artifact.folder / "genai_config.json").read_bytes())
    except (OSError, ValueError) as exc:
        raise ContractError(f"genai_config.json is not readable JSON: {exc}") from None
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise ContractError("genai_config.json has no `model` object; is it ONNX Runtime GenAI's config?")
    return config


def _special_tokens(artifact: VerifiedArtifact) -> dict[str, str]:
    """The start and end tokens a chat template may name (``tokenizer_config.json``, where pinned)."""
    if "tokenizer_config.json" not in artifact.names:
        return {}
    try:
        config = json.loads((artifact.folder / "tokenizer_config.json").read_bytes())
    except (OSError, ValueError):
        return {}
    return {key: value for key in ("bos_token", "eos_token") if isinstance(value := config.get(key), str)}
