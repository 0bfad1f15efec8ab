"""PyTorch -> ONNX with ``torch.onnx.export``, named and shaped by the contract.

An exported program (``.pt2``) goes through the exporter as it is, with its free dimensions; a
TorchScript module is traced by the same exporter with the contract's free dimensions marked
dynamic. The graph's inputs and outputs take the contract's names, in order, so the converted
function keeps the same contract.
"""

from __future__ import annotations

import io
from typing import Any

from modelfn.contract import Contract
from modelfn.errors import ContractError
from modelfn.tooling.onnx_graph import normalize_opsets, rename_outputs

OPSET = 18


def torch_to_onnx(predictor: Any, contract: Contract) -> bytes:
    import onnx
    import torch

    from modelfn.datatypes import NUMPY_DTYPES

    examples = []
    dynamic: dict[str, dict[int, Any]] = {}
    for spec in contract.inputs:
        shape = [2 if dim == -1 else dim for dim in spec.shape]
        examples.append(torch.zeros(shape, dtype=getattr(torch, NUMPY_DTYPES[spec.datatype])))
        free = {index: torch.export.Dim.AUTO for index, dim in enumerate(spec.shape) if dim == -1}
        if free:
            dynamic[spec.name] = free
    try:
        program = torch.onnx.export(
            predictor.exportable,
            tuple(examples),
            input_names=[spec.name for spec in contract.inputs],
            output_names=[spec.name for spec in contract.outputs],
            dynamic_shapes=tuple(dynamic.get(spec.name) for spec in contract.inputs),
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    except Exception as exc:  # the exporter raises many types for unsupported operators
        raise ContractError(f"torch.onnx.export cannot convert this model: {exc}") from exc
    if program is None:  # dynamo=True always gives a program; None is the legacy exporter's answer
        raise ContractError("torch.onnx.export returned no program")
    buffer = io.BytesIO()
    program.save(buffer)  # type: ignore[arg-type]  # torch writes to a file object too (onnx.save_model)
    proto = onnx.load_model_from_string(buffer.getvalue())
    names = {output.name: spec.name for output, spec in zip(proto.graph.output, contract.outputs, strict=True)}
    return rename_outputs(normalize_opsets(proto), names, keep=list(names.values())).SerializeToString()
