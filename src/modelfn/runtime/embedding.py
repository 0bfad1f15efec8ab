"""A text encoder's embeddings, as its contract declares them (``embedding:``): text in, one vector out.

The tokenizer (a Hugging Face ``tokenizer.json``, pinned in ``artifact.files`` and read from the
verified folder) turns each text into ``max_tokens`` ids and an attention mask, padded to that length
so that texts of any length batch together; a text longer than that is a 400 that names the limit
(truncating it would silently embed another text). The model's output is then pooled over the mask
(``mean``, or the first token's vector, ``cls``; ``none`` when the model pools itself) and, where
declared, scaled to unit length. ``POST /predict``, ``/openai/v1/embeddings`` and batch jobs all go
through here, so every route gives the same vector for the same text.

``tokenizers`` (Rust, no Python code in the file it reads) is imported when an encoder loads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from modelfn.errors import ContractError, InvalidInput

if TYPE_CHECKING:
    from modelfn.contract import Contract, Embedding

#: Most texts in one request.
MAX_TEXTS = 256


class Embedder:
    def __init__(self, contract: Contract, tokenizer_json: str) -> None:
        from modelfn.runtime.predictors import require

        require("tokenizers", "text")
        from tokenizers import Tokenizer

        self.spec: Embedding = contract.embedding  # type: ignore[assignment]  # set when this is built
        try:
            tokenizer = Tokenizer.from_str(tokenizer_json)
        except Exception as exc:  # the library's own error type for a file it cannot read
            raise ContractError(f"embedding.tokenizer is not a tokenizers JSON file: {str(exc)[:200]}") from None
        tokenizer.no_truncation()
        tokenizer.no_padding()  # padded here, to the contract's length
        self._tokenizer = tokenizer
        names = [spec.name for spec in contract.inputs]
        self._ids, self._mask = names[0], names[1] if len(names) > 1 else None
        self._output = self.spec.output or contract.outputs[0].name
        self.dimensions = contract.output(self._output).shape[-1]  # type: ignore[union-attr]  # validated

    def texts(self, payload: Any) -> list[str]:
        """``{"text": "..."}`` or ``{"texts": [...]}``, as ``POST /predict`` and batch lines carry them."""
        field = self.spec.input
        if isinstance(payload, dict) and isinstance(payload.get(field), str):
            return [payload[field]]
        if isinstance(payload, dict) and isinstance(payload.get(f"{field}s"), list):
            return checked_texts(payload[f"{field}s"], f"{field}s")
        raise InvalidInput(f'send {{"{field}": "..."}} or {{"{field}s": ["...", ...]}}')

    def tokenize(self, texts: Sequence[str]) -> tuple[dict[str, np.ndarray], int]:
        """The model's inputs for ``texts``, and how many tokens they hold (padding left out)."""
        length = self.spec.max_tokens
        encoded = self._tokenizer.encode_batch(list(texts))
        ids = np.zeros((len(texts), length), dtype=np.int64)
        mask = np.zeros((len(texts), length), dtype=np.int64)
        for row, each in enumerate(encoded):
            count = len(each.ids)
            if count > length:
                raise InvalidInput(f"text {row} is {count} tokens; this model takes at most {length}")
            ids[row, :count] = each.ids
            mask[row, :count] = 1
        inputs = {self._ids: ids}
        if self._mask is not None:
            inputs[self._mask] = mask
        return inputs, int(mask.sum())

    def vectors(self, outputs: Mapping[str, np.ndarray], inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """One float32 vector per text: pooled over its tokens, at unit length where declared."""
        hidden = np.asarray(outputs[self._output], dtype=np.float32)
        if self.spec.pooling == "mean":
            mask = (inputs[self._mask] if self._mask is not None else inputs[self._ids] != 0).astype(np.float32)
            pooled = (hidden * mask[..., None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1.0)
        elif self.spec.pooling == "cls":
            pooled = hidden[:, 0, :]
        else:
            pooled = hidden
        if self.spec.normalize:
            pooled = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(pooled, dtype=np.float32)

    def answer(self, outputs: Mapping[str, np.ndarray], inputs: Mapping[str, np.ndarray], payload: Any) -> Any:
        """What ``POST /predict`` answers: ``{"embedding": [...]}``, or ``{"embeddings": [...]}`` for ``texts``."""
        vectors = self.vectors(outputs, inputs)
        if isinstance(payload, dict) and isinstance(payload.get(self.spec.input), str):
            return {"embedding": vectors[0]}
        return {"embeddings": vectors}


def checked_texts(value: Any, field: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(text, str) for text in value):
        raise InvalidInput(f"{field} must be a non-empty list of strings")
    if len(value) > MAX_TEXTS:
        raise InvalidInput(f"{field} has {len(value)} texts; the limit is {MAX_TEXTS}")
    return value
