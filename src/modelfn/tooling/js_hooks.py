"""``modelfn check``: a model's Python hooks and their JavaScript twin (``hooks.javascript``) agree.

Both run on the same requests: the contract's example, every line of ``validation_requests`` and
a few bodies both must refuse alike. The JavaScript ``pre`` must make the tensors the Python one
makes (names, types, shapes; values within float32 rounding); the model then runs once, on the
Python tensors, and both ``post`` hooks get its outputs, as ONNX Runtime Web would hand them
(typed arrays, ``BigInt64Array`` for INT64), and must give the same answer (numbers within
:data:`ANSWER_TOLERANCE`, everything else equal). Node runs the JavaScript (``tooling/js/run_hooks.mjs``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelfn.datatypes import WEB_TYPES
from modelfn.errors import ClientError, ContractError, ModelfnError
from modelfn.tooling.heldout import requests_of

if TYPE_CHECKING:
    from modelfn.contract import Contract
    from modelfn.runtime.model import LoadedModel

RUNNER = Path(__file__).resolve().parent / "js" / "run_hooks.mjs"
#: Bodies every pair of hooks must treat alike (most refuse them; what matters is that both do).
PROBES: list[Any] = [{}, [], None, {"unexpected": 1}]
#: The largest difference allowed between two answers' numbers (the page shows 4 to 6 decimals).
ANSWER_TOLERANCE = 1e-5
NODE_TIMEOUT_S = 300


@dataclass
class Agreement:
    """How the two sets of hooks compared."""

    requests: int = 0
    refused: int = 0
    tensor_max_diff: float = 0.0
    answer_max_diff: float = 0.0
    disagreements: list[str] = field(default_factory=list)

    def line(self, source: str) -> str:
        verdict = "agree" if not self.disagreements else f"DISAGREE on {len(self.disagreements)}"
        return (
            f"browser   {source} and the Python hooks {verdict}: {self.requests} requests "
            f"({self.refused} refused by both); tensors within {self.tensor_max_diff:.1e}, "
            f"answers within {self.answer_max_diff:.1e}"
        )


def compare_hooks(folder: Path, contract: Contract, model: LoadedModel) -> Agreement:
    """Run both sets of hooks on the same requests; every difference is in ``disagreements``."""
    module = folder / str(contract.hooks.javascript)
    if not module.is_file():
        raise ContractError(f"{folder / 'modelfn.yaml'}: hooks.javascript names {module.name}, which does not exist")
    bodies = requests_of(folder, contract) + PROBES
    report = Agreement(requests=len(bodies))
    python_pre = [_python(model.preprocess, body) for body in bodies]
    javascript_pre = _pre_in_node(module, contract, bodies)
    accepted = []
    for index, (ours, theirs) in enumerate(zip(python_pre, javascript_pre, strict=True)):
        where = _where(index, bodies)
        if isinstance(ours, ModelfnError) and not isinstance(ours, ClientError):
            report.disagreements.append(f"{where}: the Python pre hook fails on it ({ours})")
            continue
        if isinstance(ours, ClientError) or "refused" in theirs:
            if not (isinstance(ours, ClientError) and "refused" in theirs):
                refused_by = "Python" if isinstance(ours, ClientError) else "JavaScript"
                report.disagreements.append(f"{where}: only the {refused_by} pre hook refuses it")
            else:
                report.refused += 1
            continue
        problem = _same_tensors(contract, ours, theirs["value"], report)
        if problem:
            report.disagreements.append(f"{where}: pre: {problem}")
            continue
        accepted.append(index)
    outputs = {index: model.infer(python_pre[index]) for index in accepted}
    if contract.hooks.post is None:
        return report
    python_post = {index: _python(model.postprocess, outputs[index], bodies[index]) for index in accepted}
    cases = [{"outputs": _web_tensors(outputs[index]), "payload": bodies[index]} for index in accepted]
    javascript_post = _node(module, "post", _function(contract.hooks.post), cases)
    for index, theirs in zip(accepted, javascript_post, strict=True):
        problem = _same_answer(python_post[index], theirs.get("value"), theirs.get("refused"), report)
        if problem:
            report.disagreements.append(f"{_where(index, bodies)}: post: {problem}")
    return report


def _pre_in_node(module: Path, contract: Contract, bodies: list[Any]) -> list[dict[str, Any]]:
    if contract.hooks.pre is None:  # no pre hook: both read the body as named tensors
        raise ContractError("hooks.javascript without a pre hook: nothing to compare before the model")
    return _node(module, "pre", _function(contract.hooks.pre), bodies)


def _function(ref: str) -> str:
    return ref.rpartition(":")[2]


def _python(hook: Any, *args: Any) -> Any:
    """The hook's result, or the error it raised (a refusal when it is the caller's fault)."""
    try:
        return hook(*args)
    except ModelfnError as exc:
        return exc


def _node(module: Path, stage: str, function: str, cases: list[Any]) -> list[dict[str, Any]]:
    node = shutil.which("node")
    if node is None:
        raise ContractError("hooks.javascript needs Node.js 20 or newer to check (node is not on PATH)")
    request = json.dumps({"module": str(module.resolve()), "stage": stage, "function": function, "cases": cases})
    try:
        done = subprocess.run(
            [node, str(RUNNER)], input=request, capture_output=True, text=True, timeout=NODE_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise ContractError(f"{module.name}: the {stage} hook ran over {NODE_TIMEOUT_S} s under Node") from exc
    if done.returncode != 0:
        raise ContractError(f"{module.name} could not run under Node: {done.stderr.strip()[-2000:]}")
    results = json.loads(done.stdout)
    if len(results) != len(cases):
        raise ContractError(f"{module.name}: Node answered {len(results)} of {len(cases)} cases")
    return results


def _same_tensors(contract: Contract, ours: dict[str, np.ndarray], theirs: Any, report: Agreement) -> str:
    if not isinstance(theirs, dict) or sorted(theirs) != sorted(ours):
        names = sorted(theirs) if isinstance(theirs, dict) else type(theirs).__name__
        return f"tensors {names} where Python makes {sorted(ours)}"
    for name, array in ours.items():
        tensor = theirs[name]
        spec = contract.input(name)
        expected_type = WEB_TYPES[spec.datatype] if spec is not None else None
        if not isinstance(tensor, dict) or tensor.get("type") != expected_type:
            return f"{name}: type {tensor.get('type') if isinstance(tensor, dict) else tensor!r}, not {expected_type}"
        if list(tensor.get("dims", [])) != list(array.shape):
            return f"{name}: dims {tensor.get('dims')} where Python makes {list(array.shape)}"
        values = np.asarray(tensor.get("data"), dtype=object if expected_type == "string" else array.dtype)
        if values.size != array.size:
            return f"{name}: {values.size} values for dims {list(array.shape)}"
        values = values.reshape(array.shape)
        if array.dtype.kind in "fc":
            difference = float(np.abs(values.astype(np.float64) - array).max()) if array.size else 0.0
            report.tensor_max_diff = max(report.tensor_max_diff, difference)
            if not np.allclose(values, array, rtol=1e-5, atol=1e-6):
                return f"{name}: values differ by up to {difference:.3g}"
        elif not np.array_equal(values, array):
            return f"{name}: values differ"
    return ""


def _web_tensors(outputs: dict[str, np.ndarray]) -> dict[str, Any]:
    """Outputs as ONNX Runtime Web hands them over: a type, dims and flat data (int64 as strings, to travel)."""
    tensors = {}
    for name, array in outputs.items():
        kind = "string" if array.dtype.kind in "OUS" else ("bool" if array.dtype == np.bool_ else str(array.dtype))
        flat = array.reshape(-1)
        data = [str(v) for v in flat] if kind in ("int64", "uint64", "string") else flat.tolist()
        tensors[name] = {"type": kind, "dims": list(array.shape), "data": data}
    return tensors


def _same_answer(ours: Any, theirs: Any, refused: str | None, report: Agreement) -> str:
    if isinstance(ours, ModelfnError) or refused is not None:
        if isinstance(ours, ClientError) and refused is not None:
            return ""
        return f"only the {'Python' if isinstance(ours, ModelfnError) else 'JavaScript'} post hook refuses it"
    return _differ(json.loads(json.dumps(_builtins(ours))), theirs, "answer", report)


def _builtins(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(key): _builtins(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_builtins(item) for item in value]
    return value


def _differ(ours: Any, theirs: Any, where: str, report: Agreement) -> str:
    if isinstance(ours, bool) or isinstance(theirs, bool) or ours is None or theirs is None:
        same = ours is theirs or (ours == theirs and type(ours) is type(theirs))
        return "" if same else f"{where}: {theirs!r} != {ours!r}"
    if isinstance(ours, int | float) and isinstance(theirs, int | float):
        difference = abs(float(ours) - float(theirs))
        report.answer_max_diff = max(report.answer_max_diff, difference)
        if isinstance(ours, int) and float(ours).is_integer() and float(theirs).is_integer():
            return "" if ours == theirs else f"{where}: {theirs!r} != {ours!r}"
        return "" if difference <= ANSWER_TOLERANCE else f"{where}: {theirs!r} != {ours!r} (by {difference:.3g})"
    if isinstance(ours, dict) and isinstance(theirs, dict):
        if sorted(ours) != sorted(theirs):
            return f"{where}: fields {sorted(theirs)} != {sorted(ours)}"
        return next((p for key in ours if (p := _differ(ours[key], theirs[key], f"{where}.{key}", report))), "")
    if isinstance(ours, list) and isinstance(theirs, list):
        if len(ours) != len(theirs):
            return f"{where}: {len(theirs)} items != {len(ours)}"
        pairs = enumerate(zip(ours, theirs, strict=True))
        return next((p for i, (a, b) in pairs if (p := _differ(a, b, f"{where}[{i}]", report))), "")
    return "" if ours == theirs else f"{where}: {theirs!r} != {ours!r}"


def _where(index: int, bodies: list[Any]) -> str:
    text = json.dumps(bodies[index])
    return f"request {index + 1} ({text[:60]}{'...' if len(text) > 60 else ''})"
