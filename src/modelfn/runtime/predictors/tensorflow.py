"""TensorFlow predictors (``pip install 'modelfn[tensorflow]'``): Keras files and SavedModels.

TensorFlow is imported only here, when a model with ``framework: tensorflow``
is loaded, never by an ONNX function.

- ``.keras`` files load with Keras' ``safe_mode``, which refuses to deserialize
  Lambda layers (arbitrary Python code). Outputs map to the contract's outputs in order.
- A SavedModel is a folder, so its artifact is a ``.zip`` or ``.tar.gz`` of it,
  unpacked by :mod:`modelfn.runtime.archives` (no entry may leave the folder) after
  its digest matched. Its ``serving_default`` signature is called with the
  contract's named inputs; outputs are taken by name.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelfn.datatypes import NUMPY_DTYPES
from modelfn.errors import ContractError
from modelfn.runtime.predictors import require

if TYPE_CHECKING:
    from modelfn.contract import Contract


class KerasPredictor:
    def __init__(self, model: Any, contract: Contract) -> None:
        self._model = model
        self._inputs = [spec.name for spec in contract.inputs]
        self._outputs = {spec.name: (index, NUMPY_DTYPES[spec.datatype]) for index, spec in enumerate(contract.outputs)}

    def traceable(self) -> Callable[..., Any]:
        """The model as a function of its input tensors in contract order (for conversion tooling)."""
        single = len(self._inputs) == 1
        return lambda *args: self._model(args[0] if single else list(args), training=False)

    @classmethod
    def from_path(cls, path: str, contract: Contract) -> KerasPredictor:
        """Load a verified ``.keras`` file where it is (in the bundle, or the private download folder)."""
        require("keras", "tensorflow")
        _quiet_tensorflow()
        import keras

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


#: The signature a SavedModel is served through (TF Serving's default too).
SIGNATURE = "serving_default"


class SavedModelPredictor:
    """A SavedModel's ``serving_default`` signature, called with named inputs; thread-safe."""

    def __init__(self, loaded: Any, contract: Contract) -> None:
        # The loaded object owns the variables the signature reads: keep it alive with the signature.
        self._loaded = loaded
        self._signature = loaded.signatures[SIGNATURE]
        self._inputs = [spec.name for spec in contract.inputs]
        self._outputs = {spec.name: NUMPY_DTYPES[spec.datatype] for spec in contract.outputs}

    def traceable(self) -> Callable[..., Any]:
        """The signature as a function of its input tensors in contract order (for conversion tooling)."""

        def call(*args: Any) -> list[Any]:
            results = self._signature(**dict(zip(self._inputs, args, strict=True)))  # once, whatever the outputs
            return [results[name] for name in self._outputs]

        return call

    @classmethod
    def from_bytes(cls, data: bytes, contract: Contract) -> SavedModelPredictor:
        require("tensorflow", "tensorflow")
        _quiet_tensorflow()
        import tensorflow as tf

        from modelfn.runtime.archives import unpack

        folder = Path(tempfile.mkdtemp(prefix="modelfn-savedmodel-"))
        try:
            unpack(data, folder)
            try:
                loaded = tf.saved_model.load(str(_saved_model_root(folder)))
            except Exception as exc:  # TensorFlow raises many types for bad SavedModels
                raise ContractError(f"artifact is not a loadable SavedModel: {exc}") from exc
            if SIGNATURE not in loaded.signatures:
                raise ContractError(
                    f"the SavedModel has no {SIGNATURE!r} signature; it has {sorted(loaded.signatures)}"
                )
            _check_signature(loaded.signatures[SIGNATURE], contract)
            predictor = cls(loaded, contract)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        # Assets (vocabularies...) may be read after load: the files live as long as the predictor.
        weakref.finalize(predictor, shutil.rmtree, folder, True)
        return predictor

    def predict(self, inputs: Mapping[str, np.ndarray], output_names: Sequence[str]) -> dict[str, np.ndarray]:
        results = self._signature(**inputs)
        return {name: results[name].numpy().astype(self._outputs[name], copy=False) for name in output_names}


def _saved_model_root(folder: Path) -> Path:
    """The folder holding ``saved_model.pb``: the archive's top, or its one top-level folder."""
    if (folder / "saved_model.pb").is_file():
        return folder
    found = [path.parent for path in folder.glob("*/saved_model.pb")]
    if len(found) != 1:
        raise ContractError("the archive holds no saved_model.pb at its top or in its one top-level folder")
    return found[0]


def _check_signature(signature: Any, contract: Contract) -> None:
    """Fail fast, naming the tensor, where the signature and the contract disagree."""
    _, taken = signature.structured_input_signature
    given = signature.structured_outputs
    declared = {spec.name for spec in contract.inputs}
    if set(taken) != declared:
        raise ContractError(
            f"field `inputs`: the contract declares {sorted(declared)}, the {SIGNATURE} signature takes {sorted(taken)}"
        )
    for kind, specs, actual in (("inputs", contract.inputs, taken), ("outputs", contract.outputs, given)):
        for index, spec in enumerate(specs):
            where = f"field `{kind}[{index}]` ({spec.name})"
            tensor = actual.get(spec.name)
            if tensor is None:
                raise ContractError(f"{where}: the {SIGNATURE} signature has no such tensor; it has {sorted(actual)}")
            if np.dtype(tensor.dtype.as_numpy_dtype).name != NUMPY_DTYPES[spec.datatype]:
                raise ContractError(
                    f"{where}: datatype {spec.datatype} declared, the {SIGNATURE} signature says {tensor.dtype.name}"
                )
            rank = tensor.shape.rank
            if rank is not None and rank != len(spec.shape):
                raise ContractError(f"{where}: shape {spec.shape} declared, the signature's rank is {rank}")


def _quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads: no banner per process
