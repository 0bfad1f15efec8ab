"""A model as the browser and the edge run it: ONNX only, from the function folder, verified first.

Both targets carry the model file itself, so it must be an ONNX artifact in the folder (``modelfn
convert`` makes one of a scikit-learn, Keras or PyTorch model) and fit in one file. Its bytes
are checked against the contract's sha256, optionally quantized to int8 and verified as ``modelfn
convert`` verifies it, and turned into ONNX Runtime's ORT format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelfn.errors import ContractError

if TYPE_CHECKING:
    from modelfn.contract import Contract
    from modelfn.tooling.convert import Thresholds


@dataclass
class PortableModel:
    """The bytes to ship and what was done to them."""

    data: bytes
    format: str  # "onnx" or "ort"
    onnx_bytes: int
    ort_bytes: int
    quantization: dict[str, Any] | None = field(default=None)

    @property
    def file_name(self) -> str:
        return f"model.{self.format}"


def refusal(folder: Path, contract: Contract, target: str) -> str:
    """Why ``contract``'s model cannot be built for ``target`` (web or edge); empty when it can."""
    if contract.framework == "pipeline":
        return "a pipeline runs several models on the function; build each model's own folder instead"
    if contract.framework != "onnx":
        return (
            f"the {target} runs ONNX models only and this one is {contract.framework}; "
            f"convert it first: modelfn convert {folder} --out {folder}-onnx"
        )
    artifact = contract.verified_artifact()
    if not artifact.bundled:
        return f"the {target} bundle carries the model file, and {artifact.uri} is not in the folder"
    if artifact.files:
        return f"the model keeps its weights in {len(artifact.files)} external file(s); the {target} needs one file"
    hooks = contract.hooks
    if target == "web" and (hooks.pre or hooks.post) and hooks.javascript is None:
        return (
            "its Python hooks cannot run in a browser and it has no JavaScript twin: add hooks.js with the same "
            "pre and post functions (hooks.javascript in the contract; modelfn check compares the two)"
        )
    return ""


def prepare(
    folder: Path, contract: Contract, *, prefer: str, quantize: str | None = None, thresholds: Thresholds | None = None
) -> PortableModel:
    """The verified model, quantized if asked, in the ORT format (``prefer="ort"``) or the smaller one."""
    from modelfn.contract import resolve_local_artifact
    from modelfn.runtime.digests import same_digest, sha256_hex
    from modelfn.tooling.ort_format import to_ort

    path = resolve_local_artifact(contract, folder)
    onnx_bytes = path.read_bytes()
    if not same_digest(sha256_hex(onnx_bytes), contract.verified_artifact().digest):
        raise ContractError(f"{path}: the bytes do not match the sha256 the contract pins")
    quantization = None
    if quantize == "int8":
        from modelfn.tooling.convert import quantize_verified

        onnx_bytes, quantization = quantize_verified(folder, contract, onnx_bytes, thresholds)
    elif quantize is not None:
        raise ContractError(f"unknown quantization {quantize!r}; int8 is the one there is")
    ort_bytes = to_ort(onnx_bytes)
    use_ort = prefer == "ort" or len(ort_bytes) < len(onnx_bytes)
    return PortableModel(
        ort_bytes if use_ort else onnx_bytes, "ort" if use_ort else "onnx", len(onnx_bytes), len(ort_bytes),
        quantization,
    )  # fmt: skip
