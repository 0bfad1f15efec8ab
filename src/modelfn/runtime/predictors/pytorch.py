"""PyTorch predictor (``pip install 'modelfn[pytorch]'``): exported programs (``.pt2``) and TorchScript (``.pt``).

PyTorch is imported only here, when a model with ``framework: pytorch`` is loaded.

- ``.pt2``: a program saved with ``torch.export.save``, loaded with ``torch.export.load``, which
  rebuilds the graph from its JSON description and the weights from raw tensor files. The format
  also allows weights and constants stored as pickles, which ``torch.export.load`` reads with a
  full unpickler (code runs): modelfn reads the archive's weight and constant tables first and
  refuses such an archive, and forces every ``torch.load`` of the process to the ``weights_only``
  unpickler (``TORCH_FORCE_WEIGHTS_ONLY_LOAD``). The program's inputs are checked against the
  contract at load: count, datatype, rank, and which dimensions the export left free.
- ``.pt``: a TorchScript archive (``torch.jit.save``), loaded by TorchScript's own C++ loader,
  which runs no Python. A ``torch.save`` of a module or of a state dict is refused: it needs the
  class's Python code and a full unpickler; export it instead.

Either file reaches this module only after its sha256 matched the contract's pin. Outputs map to
the contract's outputs in order (or by key, for a program returning a dict).
"""

from __future__ import annotations

import contextlib
import json
import os
import zipfile
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from modelfn.datatypes import NUMPY_DTYPES
from modelfn.errors import ContractError
from modelfn.runtime.cpus import available_cpus
from modelfn.runtime.predictors import require

if TYPE_CHECKING:
    from modelfn.contract import Contract
    from modelfn.runtime.artifacts import VerifiedArtifact

_threads_set = False
#: Constant files ``torch.export.load`` unpickles whatever the table says (custom and opaque objects).
_PICKLED_CONSTANTS = ("custom_obj", "opaque_obj")
_MAX_CONFIG_BYTES = 64 << 20


class TorchPredictor:
    """A module called on the contract's inputs in order, in inference mode; thread-safe."""

    def __init__(self, module: Any, contract: Contract, program: Any = None) -> None:
        import torch

        self._torch = torch
        self._module = module
        self._program = program
        self._inputs = [spec.name for spec in contract.inputs]
        self._outputs = {spec.name: (index, NUMPY_DTYPES[spec.datatype]) for index, spec in enumerate(contract.outputs)}

    @property
    def exportable(self) -> Any:
        """What ``torch.onnx.export`` takes (for conversion tooling): the exported program, else the module."""
        return self._program if self._program is not None else self._module

    @classmethod
    def from_artifact(cls, artifact: VerifiedArtifact, contract: Contract) -> TorchPredictor:
        """Load the verified file through its open descriptor: the bytes checked are the bytes loaded."""
        require("torch", "pytorch")
        _weights_only()
        import torch

        _set_threads(torch, available_cpus())
        fmt = contract.verified_artifact().format
        try:
            # A private descriptor of the verified file (torch closes what it is given; the artifact keeps its own).
            with os.fdopen(os.dup(artifact.fd), "rb") as file:
                if fmt == "torch_export":
                    program = load_program(file)
                    _check_program(program, contract)
                    return cls(program.module(), contract, program)
                _require_torchscript(file)
                file.seek(0)
                module = torch.jit.load(file, map_location="cpu")
                module.eval()
        except ContractError:
            raise
        except Exception as exc:  # torch raises RuntimeError, ValueError, pickle errors... for bad files
            kind = "exported program" if fmt == "torch_export" else "TorchScript archive"
            raise ContractError(f"artifact is not a loadable PyTorch {kind}: {exc}") from exc
        return cls(module, contract)

    def predict(self, inputs: Mapping[str, np.ndarray], output_names: Sequence[str]) -> dict[str, np.ndarray]:
        torch = self._torch
        # from_numpy shares the array's memory; the arrays are the request's own, decoded for this call.
        arguments = [torch.from_numpy(np.ascontiguousarray(inputs[name])) for name in self._inputs]
        with torch.inference_mode():
            results = self._module(*arguments)
        if isinstance(results, Mapping):
            ordered = [results[name] for name in self._outputs]
        elif isinstance(results, (list, tuple)):
            ordered = list(results)
        else:
            ordered = [results]
        if len(ordered) != len(self._outputs):
            declared = len(self._outputs)
            raise ContractError(
                f"field `outputs`: the model returned {len(ordered)} output(s), the contract declares {declared}"
            )
        outputs = {}
        for name in output_names:
            index, dtype = self._outputs[name]
            outputs[name] = ordered[index].detach().cpu().numpy().astype(dtype, copy=False)
        return outputs


def _set_threads(torch: Any, threads: int) -> None:
    """Size torch's pools to the CPUs this instance may use, once (torch refuses a second inter-op call)."""
    global _threads_set
    if _threads_set:
        return
    torch.set_num_threads(max(1, threads))
    # One model call per request thread: no nested pool. Refused once inter-op work has started: keep that pool.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)
    _threads_set = True


def _weights_only() -> None:
    """Before torch reads a file: every ``torch.load`` in this process then refuses anything but tensors."""
    os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"


def load_program(file: BinaryIO) -> Any:
    """``torch.export.load`` of a ``.pt2`` file object, once its weight tables hold no pickle."""
    _weights_only()
    import torch

    _require_tensor_files(file)
    file.seek(0)
    return torch.export.load(file)


def _require_tensor_files(file: BinaryIO) -> None:
    """Refuse a ``.pt2`` whose weights or constants are pickles: ``torch.export.load`` fully unpickles those."""
    try:
        with zipfile.ZipFile(file) as archive:
            for name in archive.namelist():
                folder, _, base = name.rpartition("/")
                if folder.endswith(("data/weights", "data/constants")) and base.endswith(".pt"):
                    raise ContractError(f"the .pt2 archive keeps {name} in the legacy pickled format; save it again")
                if not base.endswith(("_weights_config.json", "_constants_config.json")):
                    continue
                if archive.getinfo(name).file_size > _MAX_CONFIG_BYTES:
                    raise ContractError(f"the .pt2 archive's {name} is over {_MAX_CONFIG_BYTES:,} bytes")
                _check_payloads(name, json.loads(archive.read(name)))
    except zipfile.BadZipFile:
        raise ContractError("artifact is not a .pt2 archive (not a zip file)") from None
    except (ValueError, TypeError, AttributeError) as exc:  # JSON that is not the expected table
        raise ContractError(f"the .pt2 archive's weight tables are malformed: {exc}") from None


def _check_payloads(name: str, table: dict[str, Any]) -> None:
    for fqn, payload in table["config"].items():
        path = str(payload.get("path_name", ""))
        if payload.get("use_pickle") or path.startswith(_PICKLED_CONSTANTS):
            raise ContractError(
                f"the .pt2 archive stores {fqn!r} as a pickle ({name}), which loading would run as code; "
                "modelfn serves programs whose weights and constants are plain tensors"
            )


def _require_torchscript(file: BinaryIO) -> None:
    """A TorchScript archive holds compiled code (``code/``); a ``torch.save`` file holds only pickles."""
    try:
        with zipfile.ZipFile(file) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile:
        raise ContractError("artifact is not a TorchScript archive (not a zip file)") from None
    if not any("/code/" in f"/{name}" for name in names):
        raise ContractError(
            "artifact is a torch.save file, not a TorchScript archive: it needs the model's Python class and "
            "a full unpickler to load; save it with torch.export.save (.pt2) or torch.jit.save (.pt) instead"
        )


def user_inputs(program: Any) -> list[tuple[str, Any]]:
    """``(name, example value)`` of each input an exported program's caller passes, in order.

    The other placeholders are the program's own parameters, buffers and constants.
    """
    placeholders = {node.name: node for node in program.graph.nodes if node.op == "placeholder"}
    return [(name, placeholders[name].meta.get("val")) for name in program.graph_signature.user_inputs]


def numpy_dtype(torch_dtype: Any) -> np.dtype:
    """The numpy dtype of a torch dtype."""
    import torch

    return torch.empty((), dtype=torch_dtype).numpy().dtype


def _check_program(program: Any, contract: Contract) -> None:
    """Inputs of an exported program against the contract: count, datatype, rank, fixed dimensions."""
    import torch

    taken = user_inputs(program)
    if len(taken) != len(contract.inputs):
        raise ContractError(
            f"field `inputs`: the exported program takes {len(taken)} input(s), the contract declares "
            f"{len(contract.inputs)}"
        )
    for index, (spec, (_, value)) in enumerate(zip(contract.inputs, taken, strict=True)):
        if not isinstance(value, torch.Tensor):
            continue
        where = f"field `inputs[{index}]` ({spec.name})"
        if numpy_dtype(value.dtype) != np.dtype(NUMPY_DTYPES[spec.datatype]):
            raise ContractError(f"{where}: datatype {spec.datatype} declared, the program takes {value.dtype}")
        if value.dim() != len(spec.shape):
            raise ContractError(f"{where}: shape {spec.shape} declared, the program's rank is {value.dim()}")
        for dim, (declared_dim, size) in enumerate(zip(spec.shape, value.shape, strict=True)):
            fixed = isinstance(size, int)
            if fixed and declared_dim != size:
                free = "left free" if declared_dim == -1 else f"declared {declared_dim}"
                raise ContractError(
                    f"{where}: dimension {dim} is {free} in the contract, the program fixes it at {size}; "
                    f"export with dynamic_shapes (torch.export.Dim) or declare {size}"
                )
