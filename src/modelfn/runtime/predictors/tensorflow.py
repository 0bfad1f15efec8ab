"""TensorFlow/Keras predictor for ``.keras`` files (``pip install 'modelfn[tensorflow]'``).

TensorFlow is imported only here, when a model with ``framework: tensorflow``
is loaded, never by an ONNX function. Models load with Keras' ``safe_mode``,
which refuses to deserialize Lambda layers (arbitrary Python code). Outputs map
to the contract's outputs in order.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from modelfn.datatypes import NUMPY_DTYPES
from modelfn.errors import ContractError
from modelfn.runtime.predictors import require

if TYPE_CHECKING:
    import numpy as np

    from modelfn.contract import Contract


class KerasPredictor:
    def __init__(self, model: Any, contract: Contract) -> None:
        self._model = model
        self._inputs = [spec.name for spec in contract.inputs]
        self._outputs = {spec.name: (index, NUMPY_DTYPES[spec.datatype]) for index, spec in enumerate(contract.outputs)}

    @property
    def model(self) -> Any:
        """The Keras model (for conversion tooling)."""
        return self._model

    @classmethod
    def from_bytes(cls, data: bytes, contract: Contract) -> KerasPredictor:
        require("keras", "tensorflow")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads: no banner per process
        import keras

        # Keras loads from a path; the verified bytes go to a private temporary file.
        with tempfile.TemporaryDirectory(prefix="modelfn-keras-") as scratch:
            path = os.path.join(scratch, "model.keras")
            with open(path, "wb") as handle:
                handle.write(data)
            try:
                model = keras.saving.load_model(path, compile=False, safe_mode=True)
            except Exception as exc:  # Keras raises ValueError/TypeError/OSError for bad files
                raise ContractError(f"artifact is not a loadable Keras model: {exc}") from exc
        if len(model.inputs) != len(contract.inputs) or len(model.outputs) != len(contract.outputs):
            raise ContractError(
                f"fields `inputs`/`outputs`: the Keras model takes {len(model.inputs)} input(s) and gives "
                f"{len(model.outputs)} output(s); the contract declares "
                f"{len(contract.inputs)} and {len(contract.outputs)}"
            )
        return cls(model, contract)

    def predict(self, inputs: Mapping[str, np.ndarray], output_names: Sequence[str]) -> dict[str, np.ndarray]:
        arguments = [inputs[name] for name in self._inputs]
        results = self._model(arguments[0] if len(arguments) == 1 else arguments, training=False)
        if not isinstance(results, (list, tuple)):
            results = [results]
        outputs = {}
        for name in output_names:
            index, dtype = self._outputs[name]
            outputs[name] = results[index].numpy().astype(dtype, copy=False)
        return outputs
