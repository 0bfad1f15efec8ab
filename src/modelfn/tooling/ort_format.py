"""ONNX Runtime's ORT format: the model as a flatbuffer, optimized once, for the browser and the edge.

An ORT file loads without parsing protobuf and can run on ONNX Runtime's minimal builds, which
include only the operators a model uses; ``required_operators.config`` lists them (with the
types each is used with) as ``build.py --include_ops_by_config`` takes them. The graph is
optimized at the extended level, not ``all``: ``all`` adds layout (NCHWc) kernels specific to
the CPU of the build machine, and neither a browser's WebAssembly nor an edge device is that CPU.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from modelfn.errors import ContractError

CONFIG_FILE = "required_operators.config"


def to_ort(onnx_bytes: bytes) -> bytes:
    """The ORT-format bytes of an ONNX model, after ONNX Runtime's basic and extended optimizations."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as scratch:
        target = Path(scratch) / "model.ort"
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(target)
        options.add_session_config_entry("session.save_model_format", "ORT")
        try:
            ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ContractError(f"conversion to the ORT format failed: {exc}") from exc
        return target.read_bytes()


def write_operator_config(models: dict[str, Path], config: Path) -> list[str]:
    """Write the operators (and types) ``models`` use, as ``domain;opset;op,...`` lines; return them."""
    import logging

    from onnxruntime.tools.ort_format_model import create_config_from_models

    logging.getLogger("ort_format_model.utils").setLevel(logging.WARNING)  # it logs each file it writes
    create_config_from_models(list(models.values()), config, enable_type_reduction=True)
    lines = [line for line in config.read_text().splitlines() if not line.startswith("#")]
    # The tool names the files it read (temporary paths here); name the bundle's own instead.
    header = ["# The operators and types these ORT models use (a minimal ONNX Runtime build needs only these):"]
    header += [f"# - {name}" for name in sorted(models)]
    config.write_text("\n".join([*header, *lines]) + "\n")
    return lines
