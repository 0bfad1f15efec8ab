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
    from modelfn.runtime.artifacts import VerifiedArtifact
    from modelfn.settings import Settings


class Predictor(Protocol):
    """Runs the model on named arrays; thread-safe."""

    def predict(self, inputs: Mapping[str, np.ndarray], output_names: Sequence[str]) -> dict[str, np.ndarray]: ...


def load_predictor(contract: Contract, artifact: VerifiedArtifact, settings: Settings) -> Predictor:
    """Build the predictor for ``contract.framework`` from the verified artifact.

    ONNX Runtime, Keras and PyTorch load by path; scikit-learn files and SavedModel archives (small, and
    unpacked or unpickled in memory by their libraries anyway) are read from the verified descriptor.
    """
    if contract.framework == "onnx":
        from modelfn.runtime.predictors.onnx import OnnxPredictor

        return OnnxPredictor.from_file(artifact, contract, settings)
    if contract.framework == "sklearn":
        from modelfn.runtime.predictors.sklearn import SklearnPredictor

        return SklearnPredictor.from_bytes(artifact.read_bytes(), contract)
    if contract.framework == "tensorflow":
        from modelfn.runtime.predictors.tensorflow import KerasPredictor, SavedModelPredictor

        if contract.verified_artifact().format == "savedmodel":
            return SavedModelPredictor.from_bytes(artifact.read_bytes(), contract)
        return KerasPredictor.from_path(artifact.path, contract)
    if contract.framework == "pytorch":
        from modelfn.runtime.predictors.pytorch import TorchPredictor

        return TorchPredictor.from_artifact(artifact, contract)
    if contract.framework == "genai":
        from modelfn.runtime.predictors.genai import GenAIPredictor

        return GenAIPredictor.from_artifact(artifact, contract, settings)
    raise ContractError(f"field `framework`: no predictor for {contract.framework!r}")


def require(module: str, extra: str) -> None:
    """Fail with the install hint when a framework's optional dependency is missing."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ContractError(f"this model needs {module}: pip install 'modelfn[{extra}]'")
