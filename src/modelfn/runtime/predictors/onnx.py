"""ONNX Runtime predictor: the fast default.

The session is built from the verified file by path (or by its open descriptor), which
ONNX Runtime parses without the extra copies that building it from a ``bytes`` object
costs (a 768 MB model: 0.9 s and one copy, against 2.2 s and three).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

from modelfn.datatypes import DATATYPE_OF_ONNX
from modelfn.errors import ContractError, DeadlineExceeded, InvalidInput
from modelfn.runtime.cpus import available_cpus
from modelfn.runtime.deadline import current as current_deadline
from modelfn.runtime.predictors.pinned_data import check_external_data

if TYPE_CHECKING:
    import numpy as np

    from modelfn.contract import Contract, TensorSpec
    from modelfn.runtime.artifacts import VerifiedArtifact
    from modelfn.settings import Settings

#: The longest ONNX Runtime message a caller is shown.
MESSAGE_CHARS = 300
_OPTIMIZATION = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


class OnnxPredictor:
    """Wraps one ``InferenceSession``; ``session.run`` is thread-safe."""

    #: A run can be stopped at its deadline (``RunOptions.terminate``), so it needs no thread of its own.
    interruptible = True

    def __init__(self, session: ort.InferenceSession) -> None:
        self._session = session

    @classmethod
    def from_file(cls, artifact: VerifiedArtifact, contract: Contract, settings: Settings) -> OnnxPredictor:
        """Build the session from the verified file by path: no copy of the model in Python's memory."""
        check_external_data(artifact)
        options = ort.SessionOptions()
        options.graph_optimization_level = _OPTIMIZATION[settings.ort_graph_optimization]
        options.intra_op_num_threads = intra_op_threads(settings.ort_intra_op_threads, artifact.size)
        spin = "1" if settings.ort_spin else "0"
        options.add_session_config_entry("session.intra_op.allow_spinning", spin)
        options.add_session_config_entry("session.inter_op.allow_spinning", spin)
        # Weights in a .data file are then used in place, from its map: by choice, or because the
        # instance has room for the fetched files once only (see artifacts.LoadPolicy.can_map).
        if not settings.ort_prepack or artifact.in_place:
            options.add_session_config_entry("session.disable_prepacking", "1")
        try:
            session = ort.InferenceSession(artifact.loadable_path, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ContractError(f"artifact is not a loadable ONNX model: {_without_paths(str(exc), artifact)}") from exc
        _check_signature("input", contract.inputs, session.get_inputs())
        _check_signature("output", contract.outputs, session.get_outputs())
        return cls(session)

    def predict(self, inputs: Mapping[str, np.ndarray], output_names: Sequence[str]) -> dict[str, np.ndarray]:
        _refuse_binary_strings(inputs)
        deadline = current_deadline()
        options = None
        if deadline is not None:
            options = ort.RunOptions()
            options.log_severity_level = 4  # a stopped run is answered 504 and logged once by modelfn, not by ORT
            deadline.on_expiry(lambda: setattr(options, "terminate", True))
        try:
            results = self._session.run(list(output_names), dict(inputs), options)
        except InvalidArgument as exc:
            # ONNX Runtime's own verdict on the values (an index out of range, a string it cannot parse):
            # the tensors passed the contract's checks, so the value is the caller's to fix.
            raise InvalidInput(f"the model cannot take these inputs: {_ort_message(exc)}") from exc
        except Exception:
            if deadline is not None and deadline.expired:  # ONNX Runtime stopped between two kernels, as asked
                raise DeadlineExceeded("the model did not answer within the request's deadline") from None
            raise
        return dict(zip(output_names, results, strict=True))


#: Below this size an ONNX model runs on one intra-op thread unless told otherwise: its operators are
#: too small to share, and waking a pool thread for each costs more than it saves (the 0.6 MB text
#: encoder: 0.87x of the hand-written function's req/s with two threads, 1.02x with one).
SMALL_MODEL_BYTES = 4 << 20


def intra_op_threads(configured: int, artifact_bytes: int) -> int:
    """ONNX Runtime's intra-op threads: ``configured`` if set, else one for a small model, else the CPUs
    this instance may use (not the host's cores: a CPU quota hides from ONNX Runtime's own default)."""
    if configured:
        return configured
    return 1 if artifact_bytes < SMALL_MODEL_BYTES else available_cpus()


def _ort_message(error: Exception) -> str:
    """ONNX Runtime's message without its ``[ONNXRuntimeError] : 2 : INVALID_ARGUMENT :`` prefix."""
    return str(error).rpartition("INVALID_ARGUMENT : ")[2][:MESSAGE_CHARS]


def _without_paths(message: str, artifact: VerifiedArtifact) -> str:
    """ONNX Runtime's messages name the files it read: the folder is the operator's business, not a caller's."""
    return message.replace(str(artifact.folder) + "/", "").replace(artifact.loadable_path, artifact.names[0])


def _check_signature(kind: str, declared: list[TensorSpec], actual: list[ort.NodeArg]) -> None:
    """Fail fast when the contract and the model disagree, naming the tensor and the fix."""
    model = {arg.name: arg for arg in actual}
    if kind == "input" and set(model) != {spec.name for spec in declared}:
        raise ContractError(
            f"field `inputs`: the contract declares {sorted(s.name for s in declared)}, the model takes {sorted(model)}"
        )
    for index, spec in enumerate(declared):
        arg = model.get(spec.name)
        where = f"field `{kind}s[{index}]` ({spec.name})"
        if arg is None:
            raise ContractError(f"{where}: the model has no {kind} of that name; it has {sorted(model)}")
        datatype = DATATYPE_OF_ONNX.get(arg.type)
        if datatype != spec.datatype:
            raise ContractError(f"{where}: datatype {spec.datatype} declared, the model says {arg.type}")
        if len(arg.shape) != len(spec.shape):
            raise ContractError(f"{where}: shape {spec.shape} declared, the model's rank is {len(arg.shape)}")
        for dim, (declared_dim, model_dim) in enumerate(zip(spec.shape, arg.shape, strict=True)):
            # A variable model dimension may be narrowed by the contract; a fixed one may not differ.
            if isinstance(model_dim, int) and model_dim != declared_dim:
                raise ContractError(
                    f"{where}: dimension {dim} is {declared_dim}, the model fixes it at {model_dim}; "
                    f"declare {model_dim}"
                )


def _refuse_binary_strings(inputs: Mapping[str, np.ndarray]) -> None:
    """ONNX Runtime's string tensors take text: a ``bytes`` element would reach the model as its repr."""
    for name, array in inputs.items():
        if array.dtype == object and any(isinstance(item, bytes) for item in array.flat):
            raise InvalidInput(
                f"input {name!r}: a BYTES element is binary data, not UTF-8 text; an ONNX model's string "
                "inputs take text only (send binary data to a TensorFlow or Python model, or decode it in a pre hook)"
            )
