"""``modelfn init``: a function folder written from a model file.

The artifact says most of the contract: the framework, the digest, and each input's and output's
name, datatype and shape. ``init`` copies the file into a new folder and writes ``modelfn.yaml``,
the three-line ``main.py``, a ``hooks.py`` skeleton that passes tensors through with modelfn's
input checks, and an example request of zeros shaped like the inputs. The model card's fields are
left empty for the author; ``modelfn check`` names each one still empty. It never writes into a
folder that exists.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from modelfn.contract import CONTRACT_FILE
from modelfn.errors import ContractError
from modelfn.runtime.digests import hash_path
from modelfn.tooling.signatures import Signature, Tensor, read_signature

MAIN = '''"""Entry point of {name} (Cloud Functions gen2 / Cloud Run / local: modelfn serve)."""

from modelfn.adapters.gcf import http_function

handle = http_function(__file__)
'''

HOOKS = '''"""Pre/post-processing for {name}: what POST /predict takes and answers.

Written by modelfn init: each input is taken as a nested list under its name and checked by
modelfn's tensor rules (numbers only, the declared shape); each output is answered as a list.
Change them to the payload your callers send; raise InvalidInput for a 400 that names the problem.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modelfn import InvalidInput
from modelfn.payload import field, numbers

INPUTS = {inputs!r}


def preprocess(payload: Any) -> dict[str, np.ndarray]:
    if not isinstance(payload, dict):
        raise InvalidInput(f"send a JSON object with {{sorted(INPUTS)}}")
    arrays = {{}}
    for name, (dtype, shape) in INPUTS.items():
        values = field(payload, name, list)
        if dtype == "object":  # a BYTES input: strings
            array = np.asarray(values, dtype=object)
            if array.ndim != len(shape) or not all(isinstance(value, str) for value in array.ravel()):
                raise InvalidInput(f"`{{name}}` must be {{len(shape)}}-deep lists of strings")
            arrays[name] = array
            continue
        wanted = tuple(None if dim == -1 else dim for dim in shape)
        arrays[name] = numbers(values, name, shape=wanted).astype(dtype)
    return arrays


def postprocess(outputs: dict[str, np.ndarray], payload: dict[str, Any]) -> dict[str, Any]:
    return {{name: array.tolist() for name, array in outputs.items()}}
'''

#: What ``modelfn check`` asks for once ``init`` has left it empty (``docs.description`` is required).
DOC_FIELDS = ("description", "training_data", "metrics", "limitations")


def init_function(
    artifact: Path,
    name: str,
    out: Path,
    *,
    version: str = "1",
    description: str = "",
    trusted: tuple[str, ...] = (),
    example: Path | None = None,
) -> Path:
    """Write a function folder for ``artifact`` at ``out``; refuse when ``out`` exists.

    A scikit-learn pipeline fitted on a DataFrame gets a ``table:`` contract, one input per column,
    the ``example`` row (a JSON file) as its example, and no hooks: every route takes its rows as they are.
    """
    if out.exists():
        raise ContractError(f"{out} exists; modelfn init writes a new folder only (choose another --out)")
    if artifact.is_dir() and (artifact / "genai_config.json").is_file():
        from modelfn.tooling.init_genai import init_generative

        return init_generative(artifact, name, out, version=version, description=description)
    if not artifact.is_file():
        raise ContractError(f"{artifact}: no such file")
    row = None
    if example is not None:
        from modelfn.tooling.table_signature import read_example

        row = read_example(example)
    signature = read_signature(artifact, trusted=trusted, example=row)
    if artifact.suffix.lower() == ".onnx":  # with every external-data file it names, each pinned
        from modelfn.tooling.pins import pins

        digest, files = pins(artifact)
    else:
        digest, files = hash_path(artifact)[0], {}
    out.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        shutil.copy2(artifact, staged / artifact.name)
        for relative in files:
            (staged / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(artifact.parent / relative, staged / relative)
        text = contract_text(signature, name, version, artifact.name, digest, files, description, row)
        (staged / CONTRACT_FILE).write_text(text)
        (staged / "main.py").write_text(MAIN.format(name=name))
        if not signature.table:
            (staged / "hooks.py").write_text(HOOKS.format(name=name, inputs=_hook_inputs(signature.inputs)))
        staged.rename(out)  # fails if another process made the folder meanwhile: nothing is overwritten
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return out


def contract_text(
    signature: Signature,
    name: str,
    version: str,
    file_name: str,
    digest: str,
    files: dict[str, str] | None = None,
    description: str = "",
    row: dict[str, Any] | None = None,
) -> str:
    artifact: dict[str, Any] = {"uri": file_name, "sha256": digest, **({"files": files} if files else {})}
    if signature.trusted_types:
        artifact["trusted_types"] = list(signature.trusted_types)
    contract: dict[str, Any] = {
        "name": name,
        "version": version,
        "framework": signature.framework,
        "artifact": artifact,
    }
    if signature.table:  # the columns are the inputs, the routes take rows: no hooks to write
        # A float or string column the pipeline imputes may be missing; an integer column cannot be
        # null in a contract (the DataFrame would hold floats), so it still needs a value.
        contract["table"] = {"as": signature.table_as}
        if signature.nullable:
            contract["table"]["nullable"] = list(signature.nullable)
    contract["inputs"] = [_spec(t) for t in signature.inputs]
    contract["outputs"] = [_spec(t) for t in signature.outputs]
    if signature.table:
        # ONNX records each column's type, so a row is not needed to write the contract; without one the
        # example is zeros and empty strings, which the next step asks to replace.
        contract["example"] = row if row is not None else {t.name: _blank(t) for t in signature.inputs}
    else:
        contract["hooks"] = {"pre": "hooks.py:preprocess", "post": "hooks.py:postprocess"}
        contract["example"] = {t.name: _zeros(t) for t in signature.inputs}
    contract["docs"] = {"description": description, "metrics": {}, "training_data": "", "limitations": []}
    header = (
        f"# Written by modelfn init from {file_name}. Fill in each tensor's description and the docs\n"
        '# block (modelfn check names what is still empty); see README, "The contract".\n'
    )
    return header + yaml.dump(contract, Dumper=_Dumper, sort_keys=False, width=100)


class _Dumper(yaml.SafeDumper):
    """Lists of scalars on one line (``shape: [-1, 64]``), as a contract is written by hand."""


def _list(dumper: yaml.SafeDumper, value: list[Any]) -> yaml.Node:
    flat = all(not isinstance(item, (list, dict)) for item in value)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flat)


_Dumper.add_representer(list, _list)


def _blank(tensor: Tensor) -> Any:
    return "" if tensor.datatype == "BYTES" else False if tensor.datatype == "BOOL" else 0


def _spec(tensor: Tensor) -> dict[str, Any]:
    return {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape), "description": ""}


def _zeros(tensor: Tensor) -> Any:
    """Nested lists of zeros of the tensor's shape, free dimensions as 1 ("" for BYTES)."""
    value: Any = "" if tensor.datatype == "BYTES" else (False if tensor.datatype == "BOOL" else 0)
    for dim in reversed(tensor.shape):
        value = [value] * (1 if dim == -1 else dim)
    return value


def _hook_inputs(inputs: list[Tensor]) -> dict[str, tuple[str, list[int]]]:
    from modelfn.datatypes import NUMPY_DTYPES

    return {t.name: (NUMPY_DTYPES[t.datatype], list(t.shape)) for t in inputs}


def empty_doc_fields(contract: Any) -> list[str]:
    """The model card's fields still empty (``docs.description`` first), for ``modelfn check``."""
    docs = contract.docs
    return [f"docs.{field}" for field in DOC_FIELDS if not getattr(docs, field)] + [
        f"{kind}[{index}].description ({spec.name})"
        for kind, specs in (("inputs", contract.inputs), ("outputs", contract.outputs))
        for index, spec in enumerate(specs)
        if not spec.description
    ]
