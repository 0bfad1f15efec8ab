"""``modelfn build FOLDER --target edge``: a folder for a device with Python, ``onnxruntime`` and ``numpy``.

It holds the model in ONNX Runtime's ORT format (and ``required_operators.config``, what a
minimal ONNX Runtime build for the device must include), the contract (as JSON, so no YAML
parser is needed), the Python hooks, and the runner (:mod:`modelfn.edge`) with the few modelfn
modules it imports: no functions-framework, msgspec, PyYAML or cloud SDK. ``<name>-edge.zip``
beside it is the same folder, to copy to the device.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from modelfn.errors import ContractError
from modelfn.tooling.portable import prepare, refusal

#: The modelfn modules the runner and the hooks import, and nothing else (relative to the package).
EDGE_MODULES = (
    "__init__.py", "errors.py", "upload.py", "datatypes.py", "tensors.py", "payload.py", "table.py",
    "runtime/__init__.py", "runtime/hooks.py",
    "edge/__init__.py", "edge/__main__.py", "edge/model.py", "edge/answers.py", "edge/server.py",
)  # fmt: skip
USAGE = """\
{name} v{version} on the edge: ONNX Runtime and numpy, nothing else.

    python -m pip install -r requirements.txt
    python -m modelfn.edge predict < request.json     # one POST /predict body in, its answer out
    python -m modelfn.edge serve --port 8080          # POST /predict, POST /v2/models/{name}/infer

Run them in this folder. model/ holds the model (ORT format), its contract and hooks;
required_operators.config lists the operators a minimal ONNX Runtime build must include.
"""


@dataclass
class EdgeReport:
    function: str
    output: str
    archive: str
    model_bytes: int
    onnx_bytes: int
    code_bytes: int
    total_bytes: int
    archive_bytes: int
    operators: list[str] = field(default_factory=list)
    quantization: dict[str, Any] | None = None

    def lines(self) -> list[str]:
        kib = 1024
        quantized = f" (int8; the original has {self.quantization['bytes']['original']:,})" if self.quantization else ""
        return [
            f"built     {self.function} for the edge -> {self.output}",
            f"model     model/model.ort, {self.model_bytes:,} bytes{quantized}",
            f"operators {'; '.join(_without_types(line) for line in self.operators)} "
            "(types in required_operators.config)",
            f"size      {self.total_bytes / kib:.0f} KiB ({self.code_bytes / kib:.0f} KiB of it the runner); "
            f"{Path(self.archive).name} {self.archive_bytes / kib:.0f} KiB; needs onnxruntime and numpy",
        ]


def _without_types(line: str) -> str:
    """``ai.onnx;9;Cast{"inputs": {...}, "outputs": {...}},Concat`` -> ``ai.onnx;9;Cast,Concat``."""
    kept, depth = [], 0
    for char in line:
        depth += char == "{"
        if depth == 0:
            kept.append(char)
        depth -= char == "}"
    return "".join(kept)


def build_edge(folder: Path, out: Path, *, quantize: str | None = None, thresholds: Any = None) -> EdgeReport:
    """Build the edge folder of ``folder``'s model under ``out/<name>-edge``; raise when it cannot run there."""
    import msgspec
    import onnxruntime

    import modelfn
    from modelfn.tooling.build import FunctionLayout, local_modules
    from modelfn.tooling.ort_format import CONFIG_FILE, write_operator_config

    layout = FunctionLayout.read(folder)
    if layout.is_group:
        raise ContractError(f"{folder} serves several models; build each model's folder for the edge")
    contract = layout.models[""]
    reason = refusal(folder, contract, "edge")
    if reason:
        raise ContractError(f"cannot build {contract.name} for the edge: {reason}")
    model = prepare(folder, contract, prefer="ort", quantize=quantize, thresholds=thresholds)
    root = out / f"{layout.name}-edge"
    if root.exists():
        shutil.rmtree(root)
    package = Path(modelfn.__file__).resolve().parent
    for module in EDGE_MODULES:
        (root / "modelfn" / module).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(package / module, root / "modelfn" / module)
    code_bytes = sum(p.stat().st_size for p in (root / "modelfn").rglob("*.py"))
    target = root / "model"
    target.mkdir()
    (target / "model.ort").write_bytes(model.data)
    hooks = [ref.partition(":")[0] for ref in (contract.hooks.pre, contract.hooks.post) if ref]
    for name in sorted(local_modules(folder, hooks) | set(contract.hooks.data)):
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(folder / name, target / name)
    document = msgspec.to_builtins(contract)
    document["artifact"] = {"uri": "model.ort", "format": "ort"}
    (target / "contract.json").write_text(json.dumps(document, indent=2) + "\n")
    operators = write_operator_config({"model/model.ort": target / "model.ort"}, root / CONFIG_FILE)
    runtime = ".".join(onnxruntime.__version__.split(".")[:2])
    # An ORT file is read by the release that wrote it and later ones.
    (root / "requirements.txt").write_text(f"onnxruntime>={runtime}\nnumpy>=1.26\n")
    (root / "README.txt").write_text(USAGE.format(name=contract.name, version=contract.version))
    archive = out / f"{layout.name}-edge.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as bundle:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            bundle.write(path, path.relative_to(root).as_posix())
    report = EdgeReport(
        layout.name, str(root), str(archive), len(model.data), model.onnx_bytes, code_bytes,
        sum(p.stat().st_size for p in root.rglob("*") if p.is_file()), archive.stat().st_size, operators,
        model.quantization,
    )  # fmt: skip
    (out / f"{layout.name}-edge.json").write_text(json.dumps(asdict(report), indent=2) + "\n")
    return report
