"""Keras and SavedModel -> ONNX with tf2onnx, from a traced function with an explicit input signature.

``tf2onnx.convert.from_keras`` fails on Keras 3 Sequential models; tracing the
predictor (``model(x)``, or the SavedModel's serving signature) under a
``tf.function`` with the contract's input shapes works for every kind alike.
"""

from __future__ import annotations

from typing import Any

from modelfn.contract import Contract
from modelfn.errors import ContractError
from modelfn.tooling.onnx_graph import normalize_opsets, rename_outputs

_TF_TYPES = {"FP32": "float32", "FP64": "float64", "FP16": "float16", "INT32": "int32", "INT64": "int64",
             "UINT8": "uint8", "BOOL": "bool"}  # fmt: skip


def tensorflow_to_onnx(predictor: Any, contract: Contract) -> bytes:
    import tensorflow as tf
    import tf2onnx

    signature = []
    for spec in contract.inputs:
        if spec.datatype not in _TF_TYPES:
            raise ContractError(f"input {spec.name!r}: {spec.datatype} inputs cannot be converted from TensorFlow")
        shape = [None if dim == -1 else dim for dim in spec.shape]
        signature.append(tf.TensorSpec(shape, getattr(tf, _TF_TYPES[spec.datatype]), name=spec.name))
    function = tf.function(predictor.traceable(), input_signature=signature)
    try:
        proto, _ = tf2onnx.convert.from_function(function, input_signature=signature, opset=17)
    except Exception as exc:  # tf2onnx raises many types for unsupported layers
        raise ContractError(f"tf2onnx cannot convert this model: {exc}") from exc
    names = {output.name: spec.name for output, spec in zip(proto.graph.output, contract.outputs, strict=True)}
    return rename_outputs(normalize_opsets(proto), names, keep=list(names.values())).SerializeToString()
