"""scikit-learn predictor (``pip install 'modelfn[sklearn]'``).

Outputs follow the estimator's API: an output named ``label`` comes from
``predict``, one named ``probabilities`` from ``predict_proba``, each cast to
the contract's datatype so the same contract fits the ONNX conversion.

Loading: ``.skops`` files load without running code, trusting only skops'
safe defaults plus the contract's ``artifact.trusted_types``. Pickle and joblib
files run code when loaded; they reach this module only as bytes whose sha256
the contract pins and that matched it (the contract refuses them unpinned).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from modelfn.datatypes import NUMPY_DTYPES
from modelfn.errors import ContractError
from modelfn.runtime.predictors import require

if TYPE_CHECKING:
    import numpy as np

    from modelfn.contract import Contract

METHODS = {"label": "predict", "probabilities": "predict_proba"}


class SklearnPredictor:
    def __init__(self, estimator: Any, input_name: str, output_types: dict[str, str]) -> None:
        self._estimator = estimator
        self._input = input_name
        self._types = output_types

    @property
    def estimator(self) -> Any:
        """The fitted estimator (for conversion tooling)."""
        return self._estimator

    @classmethod
    def from_bytes(cls, data: bytes, contract: Contract) -> SklearnPredictor:
        require("sklearn", "sklearn")
        if len(contract.inputs) != 1:
            raise ContractError("field `inputs`: a scikit-learn model takes exactly one input (its feature matrix)")
        estimator = _deserialize(data, contract)
        types = {}
        for index, spec in enumerate(contract.outputs):
            method = METHODS.get(spec.name)
            if method is None:
                raise ContractError(
                    f"field `outputs[{index}].name`: scikit-learn outputs are named "
                    f"'label' (predict) or 'probabilities' (predict_proba), got {spec.name!r}"
                )
            if not callable(getattr(estimator, method, None)):
                raise ContractError(f"field `outputs[{index}]`: the estimator has no {method}()")
            types[spec.name] = NUMPY_DTYPES[spec.datatype]
        return cls(estimator, contract.inputs[0].name, types)

    def predict(self, inputs: Mapping[str, np.ndarray], output_names: Sequence[str]) -> dict[str, np.ndarray]:
        features = inputs[self._input]
        return {
            name: getattr(self._estimator, METHODS[name])(features).astype(self._types[name], copy=False)
            for name in output_names
        }


def _deserialize(data: bytes, contract: Contract) -> Any:
    artifact = contract.verified_artifact()
    fmt = artifact.format
    if fmt == "skops":
        require("skops", "sklearn")
        import skops.io

        untrusted = [t for t in skops.io.get_untrusted_types(data=data) if t not in artifact.trusted_types]
        if untrusted:
            raise ContractError(
                f"field `artifact.trusted_types`: the skops file contains types that are not trusted by default: "
                f"{untrusted}; list them there if you built this file and trust them"
            )
        return skops.io.loads(data, trusted=list(artifact.trusted_types) or None)
    # Pickle/joblib: the bytes were verified against the pinned sha256 before reaching here.
    if fmt == "joblib":
        import joblib

        return joblib.load(io.BytesIO(data))
    import pickle

    return pickle.loads(data)
