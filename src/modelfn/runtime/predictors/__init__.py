"""Predictors: one per framework, each behind :class:`Predictor`.

Framework modules are imported only when a model of that framework is loaded,
so an ONNX function never imports TensorFlow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from modelfn.errors import ContractError

if TYPE_CHECKING:
    import numpy as np

    from modelfn.contract import Contract
    from modelfn.settings import Settings


class Predictor(Protocol):
    """Runs the model on named arrays; thread-safe."""

    def predict(self, inputs: Mapping[str, np.ndarray], output_names: Sequence[str]) -> dict[str, np.ndarray]: ...


def load_predictor(contract: Contract, data: bytes, settings: Settings) -> Predictor:
    """Build the predictor for ``contract.framework`` from verified artifact bytes."""
    if contract.framework == "onnx":
        from modelfn.runtime.predictors.onnx import OnnxPredictor

        return OnnxPredictor.from_bytes(data, contract, settings)
    raise ContractError(
        f"field `framework`: {contract.framework!r} models cannot be served by modelfn "
        f"{_version()} yet; convert the model to ONNX (framework: onnx)"
    )


def _version() -> str:
    from modelfn import __version__

    return __version__
