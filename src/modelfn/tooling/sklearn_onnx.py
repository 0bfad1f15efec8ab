"""scikit-learn -> ONNX with skl2onnx, outputs named as the contract names them."""

from __future__ import annotations

from typing import Any

from modelfn.contract import Contract
from modelfn.errors import ContractError
from modelfn.tooling.onnx_graph import normalize_opsets, rename_outputs

#: Input datatypes skl2onnx's FloatTensorType conversion reads (the values are cast to float).
NUMERIC = frozenset({"FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"})


def sklearn_to_onnx(predictor: Any, contract: Contract) -> bytes:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    estimator = predictor.estimator
    spec = contract.inputs[0]
    options = {id(estimator): {"zipmap": False}}  # plain probability tensors, not lists of dicts
    try:
        proto = convert_sklearn(
            estimator, initial_types=[(spec.name, FloatTensorType([None, spec.shape[-1]]))], options=options,
            target_opset={"": 17, "ai.onnx.ml": 3},
        )  # fmt: skip
    except Exception as exc:  # skl2onnx raises many types for unsupported estimators
        raise_unsupported(exc)
    names = {"output_label": "label", "output_probability": "probabilities"}
    proto = rename_outputs(normalize_opsets(proto), names, keep=[s.name for s in contract.outputs])
    return proto.SerializeToString()


def check_convertible(contract: Contract) -> None:
    """Refuse, before any work, a model whose input skl2onnx's float-matrix conversion cannot take."""
    spec = contract.inputs[0]
    if spec.datatype not in NUMERIC or len(spec.shape) != 2:
        raise ContractError(
            f"input {spec.name!r} is {spec.datatype} {list(spec.shape)}: modelfn converts a scikit-learn model of "
            "one numeric feature matrix ([rows, features]); a model of strings or named, mixed-type columns "
            "(a ColumnTransformer over a DataFrame) needs one ONNX input per column, which convert does not "
            "write yet: serve it as it is (framework: sklearn)"
        )


def raise_unsupported(exc: Exception) -> None:
    raise ContractError(f"skl2onnx cannot convert this estimator: {exc}") from exc
