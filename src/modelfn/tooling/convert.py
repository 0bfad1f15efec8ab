"""``modelfn convert``: a scikit-learn, Keras or PyTorch function -> a verified ONNX function.

The converted function is built in a temporary folder and moved into place
only after it has been checked against the source model on the contract's
validation data: the largest absolute difference of every float output and the
agreement of labels (or of the argmax of probabilities) must pass thresholds,
or nothing is written. A report records size, accuracy and latency before and
after.
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import msgspec
import numpy as np
import yaml

from modelfn.contract import CONTRACT_FILE, Contract, compile_contract
from modelfn.errors import ContractError
from modelfn.runtime.digests import sha256_hex
from modelfn.runtime.model import LoadedModel, load_model, local_artifact
from modelfn.runtime.predictors import load_predictor, require
from modelfn.settings import Settings
from modelfn.tooling.heldout import validation_tensors, verification_inputs


class ConversionRejected(ContractError):
    """The converted model disagrees with the source beyond the thresholds."""


class Thresholds(NamedTuple):
    max_abs_diff: float
    min_agreement: float


DEFAULTS = {None: Thresholds(1e-3, 0.99), "int8": Thresholds(0.05, 0.99)}
#: The modules each framework's conversion imports (``pip install 'modelfn[convert]'``).
CONVERTERS = {
    "onnx": ("onnx",),  # quantizing or optimizing an ONNX model
    "sklearn": ("onnx", "skl2onnx"),
    "tensorflow": ("onnx", "tf2onnx"),
    "pytorch": ("onnx", "onnxscript"),
}
#: What the source framework needed and the ONNX function does not.
FRAMEWORK_DEPENDENCIES = ("scikit-learn", "skops", "tensorflow", "tensorflow-cpu", "keras", "torch")


def convert(
    folder: Path,
    out: Path,
    *,
    version: str | None = None,
    quantize: str | None = None,
    optimize: bool = False,
    thresholds: Thresholds | None = None,
    validation: Path | None = None,
) -> dict[str, Any]:
    """Convert ``folder``'s model to ONNX in ``out`` and return the report; raise if it does not verify.

    ``optimize`` saves ONNX Runtime's offline-optimized graph (see :func:`_optimize_offline`).
    ``validation``: the data to verify on instead of the contract's (for a table, a CSV with a header
    or JSON Lines of rows, see :func:`modelfn.tooling.heldout.table_rows`).
    """
    source = compile_contract(folder)
    if source.framework == "pipeline":
        raise ContractError(f"{folder} is a pipeline; convert each model it runs")
    if source.framework == "onnx" and quantize is None and not optimize:
        raise ContractError(f"{folder} is already ONNX; pass --quantize int8 or --optimize")
    if source.validation is None and validation is None:
        raise ContractError(
            f"{folder / CONTRACT_FILE}: field `validation`: needed to verify a conversion "
            "(or pass --validation FILE: for a table, a CSV with a header or JSON Lines of rows)"
        )
    for module in CONVERTERS.get(source.framework, ()):
        require(module, "convert")
    if source.framework == "sklearn":
        from modelfn.tooling.sklearn_onnx import check_convertible

        check_convertible(source)
    limits = thresholds or DEFAULTS[quantize]
    inputs, labels = validation_tensors(folder, source, validation)
    original = _load(folder, source)
    store, key = local_artifact(source, folder)
    source_bytes = store.read(key)

    if source.framework == "onnx":  # quantizing or optimizing only: start from the artifact itself
        onnx_bytes = source_bytes
    else:
        onnx_bytes = _to_onnx(source, original)
    if quantize == "int8":
        onnx_bytes = _quantize_int8(onnx_bytes)
    if optimize:
        onnx_bytes = _optimize_offline(onnx_bytes)

    done = (["onnx"] if source.framework != "onnx" else []) + ([quantize] if quantize else []) + (["opt"] * optimize)
    suffix = "".join(f"-{step}" for step in done)
    columns: dict[str, Any] = {}
    if source.table is not None and source.framework == "sklearn":  # one ONNX input of shape [-1, 1] per column
        from modelfn.runtime.predictors.categories import known_categories

        names = [spec.name for spec in source.inputs]
        known = known_categories(original.predictor.estimator, names)  # type: ignore[attr-defined]
        categories = {name: sorted(values, key=str) for name, values in known.items()}
        columns = {
            "table": msgspec.structs.replace(
                source.table, pass_as="arrays", categories={**categories, **source.table.categories}
            ),
            "inputs": [msgspec.structs.replace(spec, shape=[-1, 1]) for spec in source.inputs],
        }
    target = msgspec.structs.replace(
        source,
        version=version or f"{source.version}{suffix}",
        framework="onnx",
        artifact=msgspec.structs.replace(
            source.verified_artifact(), uri="model.onnx", sha256=sha256_hex(onnx_bytes), trusted_types=[]
        ),
        dependencies=[d for d in source.dependencies if d not in (*FRAMEWORK_DEPENDENCIES, "pandas")],
        **columns,
    )
    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.exists() else None) as scratch:
        staged = Path(scratch) / out.name
        _write_function(folder, staged, target, onnx_bytes, converted_from=source.version)
        converted = _load(staged, target)
        report = _compare(original, converted, inputs, labels, limits)
        report |= {
            "source": {"framework": source.framework, "version": source.version, "bytes": original.artifact_bytes},
            "converted": {
                "version": target.version,
                "bytes": len(onnx_bytes),
                "quantize": quantize,
                "optimized": optimize,
            },
            "load_ms": {"source": _load_ms(folder, source), "converted": _load_ms(staged, target)},
            "latency_ms": {"source": _latency(original, inputs), "converted": _latency(converted, inputs)},
        }
        (staged / "conversion-report.json").write_text(json.dumps(report, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        shutil.move(str(staged), out)
    return report


def _load(folder: Path, contract: Contract) -> LoadedModel:
    return load_model(folder, contract, Settings(), *local_artifact(contract, folder))


class Infers(Protocol):
    """What a comparison needs of a model: named tensors in, named tensors out."""

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


class _Session:
    """An ONNX model in memory, answering ``infer`` as a loaded model does (for comparisons)."""

    def __init__(self, data: bytes) -> None:
        import onnxruntime as ort

        self._session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        self._names = [output.name for output in self._session.get_outputs()]

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self._names, self._session.run(self._names, inputs), strict=True))


def quantize_verified(
    folder: Path, contract: Contract, onnx_bytes: bytes, thresholds: Thresholds | None = None
) -> tuple[bytes, dict[str, Any]]:
    """``onnx_bytes`` quantized to int8 and checked against them as ``convert --quantize int8`` checks.

    The comparison runs on the contract's ``validation`` tensors, or on what the pre hook makes of
    ``validation_requests``; :class:`ConversionRejected` when the two disagree beyond the int8
    thresholds. Returns the quantized bytes and the comparison (with both sizes).
    """
    inputs, labels = verification_inputs(folder, contract, _load(folder, contract))
    quantized = _quantize_int8(onnx_bytes)
    report = _compare(_Session(onnx_bytes), _Session(quantized), inputs, labels, thresholds or DEFAULTS["int8"])
    return quantized, report | {"bytes": {"original": len(onnx_bytes), "quantized": len(quantized)}}


def _to_onnx(contract: Contract, model: LoadedModel) -> bytes:
    if contract.framework == "sklearn":
        from modelfn.tooling.sklearn_onnx import sklearn_to_onnx

        return sklearn_to_onnx(model.predictor, contract)
    if contract.framework == "pytorch":
        from modelfn.tooling.torch_onnx import torch_to_onnx

        return torch_to_onnx(model.predictor, contract)
    from modelfn.tooling.tensorflow_onnx import tensorflow_to_onnx

    return tensorflow_to_onnx(model.predictor, contract)


def _quantize_int8(data: bytes) -> bytes:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    proto = onnx.load_from_string(data)
    if not any(opset.domain in ("", "ai.onnx") for opset in proto.opset_import):
        # skl2onnx graphs made only of ai.onnx.ml operators declare no default domain; the quantizer needs one.
        proto.opset_import.append(onnx.helper.make_opsetid("", 17))
    with tempfile.TemporaryDirectory() as scratch:
        source, target = Path(scratch) / "in.onnx", Path(scratch) / "out.onnx"
        onnx.save(proto, source)
        try:
            quantize_dynamic(source, target, weight_type=QuantType.QInt8)
        except Exception as exc:  # the quantizer raises plain ValueError/RuntimeError
            raise ContractError(f"int8 quantization failed: {exc}") from exc
        return target.read_bytes()


def _optimize_offline(data: bytes) -> bytes:
    """The graph after ONNX Runtime's basic and extended optimizations, saved once at build time.

    Drops what inference never needs (Dropout, Identity, constant sub-graphs) and fuses
    operators, so sessions start from a finished graph. Extended, not all: the layout pass
    of level all writes CPU-specific (NCHWc) kernels that run only on the CPU they were
    built on, and serverless platforms do not promise one.
    """
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as scratch:
        target = Path(scratch) / "optimized.onnx"
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(target)
        try:
            ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ContractError(f"offline graph optimization failed: {exc}") from exc
        return target.read_bytes()


def _load_ms(folder: Path, contract: Contract, runs: int = 5) -> float:
    """Median milliseconds to build the predictor from its verified file (session creation for ONNX).

    Both sides are already loaded once, so one-time costs of the process (importing the
    framework, ONNX Runtime's first session) are in neither figure; bench/ measures those.
    """
    from modelfn.runtime.artifacts import LoadPolicy, open_verified, pinned_files

    store, key = local_artifact(contract, folder)
    artifact = contract.verified_artifact()
    samples = []
    for _ in range(runs):
        with open_verified(store, pinned_files(key, artifact.digest, artifact.files), LoadPolicy(), what="model") as v:
            started = time.perf_counter()
            load_predictor(contract, v, Settings())
            samples.append(time.perf_counter() - started)
    return round(statistics.median(samples) * 1000, 2)


def _write_function(source: Path, out: Path, contract: Contract, onnx_bytes: bytes, *, converted_from: str) -> None:
    out.mkdir(parents=True)
    (out / "model.onnx").write_bytes(onnx_bytes)
    from modelfn.tooling.build import local_modules

    hooks = [ref.partition(":")[0] for ref in (contract.hooks.pre, contract.hooks.post, contract.hooks.turn) if ref]
    for name in sorted(local_modules(source, hooks)):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / name, out / name)
    for name in ("main.py", str(contract.validation)):
        if (source / name).is_file():
            shutil.copy2(source / name, out / name)
    data = msgspec.to_builtins(contract)
    data["artifact"].pop("trusted_types", None)
    header = f"# Converted from {source.name} v{converted_from} by modelfn convert.\n"
    (out / CONTRACT_FILE).write_text(header + yaml.safe_dump(data, sort_keys=False, width=100))


def _compare(
    original: Infers, converted: Infers, inputs: dict[str, np.ndarray], labels: np.ndarray | None,
    limits: Thresholds,
) -> dict[str, Any]:  # fmt: skip
    expected, actual = original.infer(inputs), converted.infer(inputs)
    outputs: dict[str, Any] = {}
    failures = []
    for name, reference in expected.items():
        got = actual[name]
        entry: dict[str, Any] = {}
        if reference.dtype.kind == "f":
            entry["max_abs_diff"] = float(np.abs(reference.astype(np.float64) - got).max()) if reference.size else 0.0
            if entry["max_abs_diff"] > limits.max_abs_diff:
                failures.append(f"{name}: max abs difference {entry['max_abs_diff']:.3g} > {limits.max_abs_diff}")
            if reference.ndim == 2:
                entry["argmax_agreement"] = float((reference.argmax(1) == got.argmax(1)).mean())
        else:
            entry["agreement"] = float((reference == got).mean())
        agreement = entry.get("agreement", entry.get("argmax_agreement"))
        if agreement is not None and agreement < limits.min_agreement:
            failures.append(f"{name}: agreement {agreement:.4f} < {limits.min_agreement}")
        outputs[name] = entry
    report: dict[str, Any] = {"validation_rows": int(next(iter(inputs.values())).shape[0]), "outputs": outputs}
    if labels is not None:
        report["accuracy"] = {"source": _accuracy(expected, labels), "converted": _accuracy(actual, labels)}
    if failures:
        raise ConversionRejected("conversion rejected, nothing written: " + "; ".join(failures))
    return report


def _accuracy(outputs: dict[str, np.ndarray], labels: np.ndarray) -> float | None:
    """Accuracy of the first output that names classes: integer labels, or per-class scores (argmax)."""
    for array in outputs.values():
        if array.ndim == 1 and array.dtype.kind in "iu":
            return round(float((array == labels).mean()), 4)
        if array.ndim == 2 and array.dtype.kind == "f":
            return round(float((array.argmax(1) == labels).mean()), 4)
    return None


def _latency(model: LoadedModel, inputs: dict[str, np.ndarray], runs: int = 200) -> float:
    """Median milliseconds of one single-row inference."""
    row = {name: array[:1] for name, array in inputs.items()}
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        model.infer(row)
        samples.append(time.perf_counter() - started)
    return round(statistics.median(samples) * 1000, 4)
