"""What a model file says about its inputs and outputs: names, datatypes, shapes (``-1`` where free).

``modelfn init`` writes a contract from this. Each reader loads the file the way serving does (ONNX
Runtime, Keras' ``safe_mode``, TensorFlow's SavedModel loader, skops with its safe defaults,
``torch.export.load`` behind the same pickle checks), so reading a signature never runs code that
serving would refuse. Pickle and joblib files are not read: learning their signature means
unpickling them.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

from modelfn.contract import FORMATS
from modelfn.datatypes import DATATYPE_OF_ONNX
from modelfn.errors import ContractError

#: Serialization format -> the contract's ``framework``.
FRAMEWORK_OF = {"onnx": "onnx", "keras": "tensorflow", "savedmodel": "tensorflow", "skops": "sklearn",
                "torch_export": "pytorch", "torchscript": "pytorch", "pickle": "sklearn",
                "joblib": "sklearn"}  # fmt: skip
#: numpy dtype names -> OIP datatypes (what Keras, TensorFlow and PyTorch report, through numpy).
DATATYPE_OF_NUMPY = {"float16": "FP16", "float32": "FP32", "float64": "FP64", "int8": "INT8", "int16": "INT16",
                     "int32": "INT32", "int64": "INT64", "uint8": "UINT8", "uint16": "UINT16", "uint32": "UINT32",
                     "uint64": "UINT64", "bool": "BOOL", "object": "BYTES", "str": "BYTES"}  # fmt: skip


class Tensor(NamedTuple):
    name: str
    datatype: str
    shape: list[int]


class Signature(NamedTuple):
    framework: str
    inputs: list[Tensor]
    outputs: list[Tensor]
    #: A pipeline fitted on a DataFrame, or an ONNX model with one input per column: the inputs are
    #: columns (a ``table:`` contract).
    table: bool = False
    #: skops types the user reviewed and trusts (``--trust``), for ``artifact.trusted_types``.
    trusted_types: tuple[str, ...] = ()
    #: The float and string columns the pipeline imputes: a missing value is the model's to fill
    #: (``table.nullable``).
    nullable: tuple[str, ...] = ()
    #: How the model takes the columns (``table.as``): a DataFrame (scikit-learn), or one array each (ONNX).
    table_as: str = "dataframe"


def format_of(path: Path) -> str:
    name = path.name.lower()
    fmt = next((fmt for suffix, fmt in FORMATS.items() if name.endswith(suffix)), None)
    if fmt is None:
        raise ContractError(f"{path}: not a model file modelfn serves; it serves {sorted(FORMATS)}")
    return fmt


def read_signature(path: Path, *, trusted: tuple[str, ...] = (), example: dict[str, Any] | None = None) -> Signature:
    """The signature of the model at ``path``; a :class:`ContractError` says why it cannot be read.

    ``trusted``: skops types to load beside its safe defaults; ``example``: a row of a pipeline fitted on
    a DataFrame, which types the columns its encoders do not (:mod:`modelfn.tooling.table_signature`).
    """
    fmt = format_of(path)
    if fmt in ("pickle", "joblib"):
        raise ContractError(
            f"{path}: reading a {fmt} file's signature means unpickling it, which runs its code; save the model "
            "with skops (.skops) or convert it to ONNX, or write the contract by hand"
        )
    if fmt == "torchscript":
        raise ContractError(
            f"{path}: a TorchScript archive does not record its inputs' datatypes and shapes; save the model "
            "with torch.export.save (.pt2), or write the contract by hand"
        )
    if fmt == "skops":
        return _skops(path, trusted, example)
    reader = {"onnx": _onnx, "keras": _keras, "savedmodel": _savedmodel, "torch_export": _torch}
    inputs, outputs = reader[fmt](path)
    if fmt == "onnx" and _one_input_per_column(inputs):  # a table converted to ONNX (modelfn convert, skl2onnx)
        unknown = sorted(set(example or {}) - {t.name for t in inputs})
        if unknown:
            raise ContractError(f"--example names {unknown}, which the model does not take; it takes "
                                f"{[t.name for t in inputs]}")  # fmt: skip
        return Signature(FRAMEWORK_OF[fmt], inputs, outputs, table=True, table_as="arrays")
    if example is not None:
        raise ContractError("--example is for a model that takes rows of named columns; this one takes tensors")
    return Signature(FRAMEWORK_OF[fmt], inputs, outputs)


def _one_input_per_column(inputs: list[Tensor]) -> bool:
    """Several inputs, each one value per row (``[-1, 1]`` or ``[-1]``), of more than one datatype or strings."""
    if len(inputs) < 2 or any(t.shape not in ([-1, 1], [-1]) for t in inputs):
        return False
    return len({t.datatype for t in inputs}) > 1 or any(t.datatype == "BYTES" for t in inputs)


def _dims(shape: Any) -> list[int]:
    """Free dimensions (``None``, symbols, names) as ``-1``."""
    return [dim if isinstance(dim, int) and dim >= 0 else -1 for dim in shape]


def _numpy_type(dtype: Any, where: str) -> str:
    import numpy as np

    name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if name.startswith("<U") or name.startswith("str"):
        name = "str"
    datatype = DATATYPE_OF_NUMPY.get(name)
    if datatype is None:
        raise ContractError(f"{where}: datatype {name} has no Open Inference Protocol equivalent")
    return datatype


def _onnx(path: Path) -> tuple[list[Tensor], list[Tensor]]:
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ContractError(f"{path}: not a loadable ONNX model: {exc}") from None

    def tensors(args: list[Any]) -> list[Tensor]:
        found = []
        for arg in args:
            datatype = DATATYPE_OF_ONNX.get(arg.type)
            if datatype is None:
                raise ContractError(f"{path}: tensor {arg.name!r} has type {arg.type}, which modelfn does not serve")
            found.append(Tensor(arg.name, datatype, _dims(arg.shape)))
        return found

    return tensors(session.get_inputs()), tensors(session.get_outputs())


def _keras(path: Path) -> tuple[list[Tensor], list[Tensor]]:
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    try:
        model = keras.saving.load_model(str(path), compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises ValueError/TypeError/OSError for bad files
        raise ContractError(f"{path}: not a loadable Keras model: {exc}") from None
    inputs = [Tensor(t.name, _numpy_type(t.dtype, f"input {t.name}"), _dims(t.shape)) for t in model.inputs]
    # Keras names output tensors after layers (dense_1, ...); modelfn maps them by order, so any name fits.
    names = list(getattr(model, "output_names", None) or [f"output_{i}" for i in range(len(model.outputs))])
    outputs = [
        Tensor(name, _numpy_type(t.dtype, f"output {name}"), _dims(t.shape))
        for name, t in zip(names, model.outputs, strict=True)
    ]
    return inputs, outputs


def _savedmodel(path: Path) -> tuple[list[Tensor], list[Tensor]]:
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    from modelfn.runtime.archives import unpack
    from modelfn.runtime.predictors.tensorflow import SIGNATURE, _saved_model_root

    folder = Path(tempfile.mkdtemp(prefix="modelfn-init-"))
    try:
        unpack(path.read_bytes(), folder)
        loaded = tf.saved_model.load(str(_saved_model_root(folder)))
        if SIGNATURE not in loaded.signatures:
            raise ContractError(f"{path}: the SavedModel has no {SIGNATURE!r} signature")
        signature = loaded.signatures[SIGNATURE]
        _, taken = signature.structured_input_signature
        given = signature.structured_outputs

        def tensors(specs: dict[str, Any]) -> list[Tensor]:
            return [
                Tensor(name, _numpy_type(spec.dtype.as_numpy_dtype, name), _dims(spec.shape.as_list()))
                for name, spec in sorted(specs.items())
            ]

        return tensors(taken), tensors(given)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _skops(path: Path, trusted: tuple[str, ...], example: dict[str, Any] | None) -> Signature:
    import skops.io

    data = path.read_bytes()
    untrusted = [kind for kind in skops.io.get_untrusted_types(data=data) if kind not in trusted]
    if untrusted:
        flags = " ".join(f"--trust {kind}" for kind in untrusted)
        raise ContractError(
            f"{path}: the skops file contains types that are not trusted by default: {untrusted}; review them, "
            f"then pass {flags} (they go to artifact.trusted_types)"
        )
    estimator = skops.io.loads(data, trusted=list(trusted) or None)
    width = getattr(estimator, "n_features_in_", None)
    if not isinstance(width, int):
        raise ContractError(f"{path}: the estimator does not record its number of features (n_features_in_)")
    from modelfn.tooling.table_signature import column_types, fitted_columns, imputed_columns

    columns = fitted_columns(estimator)
    table = columns is not None
    inputs = (
        [Tensor(name, datatype, [-1, 1]) for name, datatype in column_types(estimator, columns, example)]
        if columns is not None
        else [Tensor("features", "FP32", [-1, width])]
    )
    outputs = []
    if callable(getattr(estimator, "predict", None)):
        classes = getattr(estimator, "classes_", None)
        kind = _numpy_type(classes.dtype, "label") if classes is not None else "FP32"
        outputs.append(Tensor("label", "INT64" if kind.startswith(("INT", "UINT")) else kind, [-1]))
    if callable(getattr(estimator, "predict_proba", None)) and getattr(estimator, "classes_", None) is not None:
        outputs.append(Tensor("probabilities", "FP32", [-1, len(estimator.classes_)]))
    imputed = imputed_columns(estimator, columns) if columns is not None else set()
    nullable = tuple(t.name for t in inputs if t.name in imputed and t.datatype.startswith(("FP", "BYTES")))
    return Signature("sklearn", inputs, outputs, table, tuple(trusted), nullable)


def _torch(path: Path) -> tuple[list[Tensor], list[Tensor]]:
    import torch

    from modelfn.runtime.predictors.pytorch import load_program, user_inputs

    with path.open("rb") as file:
        program = load_program(file)
    inputs = []
    for name, value in user_inputs(program):
        if not isinstance(value, torch.Tensor):
            raise ContractError(f"{path}: input {name!r} is not a tensor")
        inputs.append(Tensor(name, _torch_type(value), _dims(value.shape)))
    (output_node,) = [node for node in program.graph.nodes if node.op == "output"]
    values = [node.meta.get("val") for node in output_node.args[0]]
    outputs = []
    for index, value in enumerate(values):
        if not isinstance(value, torch.Tensor):
            raise ContractError(f"{path}: output {index} is not a tensor")
        outputs.append(Tensor(f"output_{index}", _torch_type(value), _dims(value.shape)))
    return inputs, outputs


def _torch_type(value: Any) -> str:
    from modelfn.runtime.predictors.pytorch import numpy_dtype

    return _numpy_type(numpy_dtype(value.dtype), str(value.dtype))
