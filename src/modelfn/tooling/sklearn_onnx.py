"""scikit-learn -> ONNX with skl2onnx, outputs named as the contract names them.

A model of one numeric matrix becomes an ONNX model of one float input. A table (a pipeline fitted on
a DataFrame, ``table:``) becomes an ONNX model with one input per column, of the contract's own
datatypes: strings stay strings (``OneHotEncoder`` and ``OrdinalEncoder`` convert to ONNX's string
encoders), and a number column of another type than FP32 is cast to float at the graph's entry,
because ONNX Runtime's imputer and scaler kernels take float, not double or a mix of int and float.
"""

from __future__ import annotations

from typing import Any

from modelfn.contract import Contract
from modelfn.errors import ContractError
from modelfn.tooling.onnx_graph import normalize_opsets, rename_outputs

#: Input datatypes skl2onnx's FloatTensorType conversion reads (the values are cast to float).
NUMERIC = frozenset({"FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"})
#: The ONNX element types of the datatypes a converted column keeps.
ONNX_TYPES = {"FP16": 10, "FP32": 1, "FP64": 11, "INT8": 3, "INT16": 5, "INT32": 6, "INT64": 7, "UINT8": 2,
              "UINT16": 4, "UINT32": 12, "UINT64": 13}  # fmt: skip


def sklearn_to_onnx(predictor: Any, contract: Contract) -> bytes:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    estimator = predictor.estimator
    if contract.table is not None:
        initial = [(spec.name, StringTensorType([None, 1]) if spec.datatype == "BYTES" else FloatTensorType([None, 1]))
                   for spec in contract.inputs]  # fmt: skip
    else:
        spec = contract.inputs[0]
        initial = [(spec.name, FloatTensorType([None, spec.shape[-1]]))]
    register_boosters(estimator)
    options = {id(estimator): {"zipmap": False}}  # plain probability tensors, not lists of dicts
    try:
        proto = convert_sklearn(
            estimator, initial_types=initial, options=options, target_opset={"": 17, "ai.onnx.ml": 3}
        )  # fmt: skip
    except Exception as exc:  # skl2onnx raises many types for unsupported estimators
        raise_unsupported(exc, estimator)
    if contract.table is not None:
        _cast_columns(proto, contract)
    names = {"output_label": "label", "output_probability": "probabilities"}
    proto = rename_outputs(normalize_opsets(proto), names, keep=[s.name for s in contract.outputs])
    return proto.SerializeToString()


def _cast_columns(proto: Any, contract: Contract) -> None:
    """Give each number column its contract's datatype at the graph's entry, cast to the float skl2onnx read."""
    from onnx import TensorProto, helper

    casts = []
    for graph_input in proto.graph.input:
        spec = contract.input(graph_input.name)
        if spec is None or spec.datatype in ("BYTES", "FP32"):
            continue
        inner = f"{spec.name}__as_float"
        for node in proto.graph.node:
            for index, name in enumerate(node.input):
                if name == spec.name:
                    node.input[index] = inner
        graph_input.type.tensor_type.elem_type = ONNX_TYPES[spec.datatype]
        casts.append(helper.make_node("Cast", [spec.name], [inner], to=TensorProto.FLOAT, name=f"{inner}_cast"))
    for position, node in enumerate(casts):
        proto.graph.node.insert(position, node)


def check_convertible(contract: Contract) -> None:
    """Refuse, before any work, a model whose inputs skl2onnx's conversion cannot take."""
    if contract.table is not None:
        texts = [
            spec.name for spec in contract.inputs if spec.datatype == "BYTES" and spec.name in contract.table.nullable
        ]
        if texts:
            raise ContractError(
                f"columns {texts}: an ONNX string tensor cannot hold a missing value, so a nullable string column "
                "is not converted; serve the model as it is (framework: sklearn)"
            )
        odd = [f"{spec.name} ({spec.datatype})" for spec in contract.inputs
               if spec.datatype != "BYTES" and spec.datatype not in NUMERIC]  # fmt: skip
        if odd:
            raise ContractError(
                f"columns {odd}: modelfn converts a table's number and string columns; declare each boolean "
                "column as INT64 (0 or 1) or serve the model as it is (framework: sklearn)"
            )
        return
    spec = contract.inputs[0]
    if spec.datatype not in NUMERIC or len(spec.shape) != 2:
        raise ContractError(
            f"input {spec.name!r} is {spec.datatype} {list(spec.shape)}: modelfn converts a scikit-learn model of "
            "one numeric feature matrix ([rows, features]), or a pipeline fitted on a DataFrame declared as a "
            "table (`table:`, one input per column); serve it as it is (framework: sklearn)"
        )


#: Gradient-boosting estimators with scikit-learn's interface that skl2onnx converts once onnxmltools'
#: converter is registered for them (the recipe of skl2onnx's own documentation).
BOOSTERS = {"LGBMClassifier": "classifier", "LGBMRegressor": "regressor"}


def register_boosters(estimator: Any) -> None:
    """Register onnxmltools' LightGBM converters with skl2onnx when the pipeline holds a LightGBM model."""
    found = {type(step) for _, step in [("", estimator), *_steps(estimator)] if type(step).__name__ in BOOSTERS}
    if not found:
        return
    try:
        from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm
    except ImportError:
        raise ContractError("converting a LightGBM model needs onnxmltools: pip install 'modelfn[convert]'") from None
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    for kind in found:
        classifier = BOOSTERS[kind.__name__] == "classifier"
        update_registered_converter(
            kind,
            f"LightGbm{kind.__name__}",
            calculate_linear_classifier_output_shapes if classifier else calculate_linear_regressor_output_shapes,
            convert_lightgbm,
            options={"nocl": [True, False], "zipmap": [True, False, "columns"]} if classifier else None,
        )


def raise_unsupported(exc: Exception, estimator: Any = None) -> None:
    step = _step_named(exc, estimator)
    where = f" (step {step})" if step else ""
    raise ContractError(f"skl2onnx cannot convert this estimator{where}: {str(exc)[:500]}") from exc


def _step_named(exc: Exception, estimator: Any) -> str | None:
    """The pipeline step whose class the converter's message names, as ``name: Class``, where one does."""
    message = str(exc)
    for name, step in _steps(estimator):
        if type(step).__name__ in message:
            return f"{name}: {type(step).__name__}"
    return None


def _steps(estimator: Any, prefix: str = "") -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    for name, step in getattr(estimator, "steps", []):
        found += [(prefix + name, step), *_steps(step, f"{prefix}{name}.")]
    for name, step, _ in getattr(estimator, "transformers_", []):
        if not isinstance(step, str):
            found += [(prefix + name, step), *_steps(step, f"{prefix}{name}.")]
    return found
