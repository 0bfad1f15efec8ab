"""One model as the edge bundle holds it: ``contract.json``, the ORT model and the Python hooks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from modelfn.errors import ContractError, ModelFault, ModelfnError
from modelfn.runtime.hooks import LoadedHooks, load_hooks
from modelfn.table import check_declared_categories, columns_from_rows
from modelfn.tensors import check_signature, datatype_of, named_inputs

CONTRACT_FILE = "contract.json"
MODEL_FILE = "model.ort"


class Spec(NamedTuple):
    """A tensor of the contract: what :func:`modelfn.tensors.check_signature` reads."""

    name: str
    datatype: str
    shape: list[int]


class Table(NamedTuple):
    """A tabular contract's ``table:`` (:mod:`modelfn.table` reads it): rows as people write them."""

    nullable: list[str]
    categories: dict[str, list[Any]]


class EdgeModel:
    """The model, loaded once; ``predict`` and ``infer`` are safe to call from several threads."""

    def __init__(self, folder: Path, *, threads: int = 0) -> None:
        import onnxruntime as ort

        try:
            contract = json.loads((folder / CONTRACT_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ContractError(f"{folder / CONTRACT_FILE}: cannot read the contract ({exc})") from exc
        self.name: str = contract["name"]
        self.version: str = contract["version"]
        self.inputs = [Spec(s["name"], s["datatype"], list(s["shape"])) for s in contract["inputs"]]
        self.outputs = [Spec(s["name"], s["datatype"], list(s["shape"])) for s in contract["outputs"]]
        self.example: Any = contract.get("example")
        table = contract.get("table")
        self.table = None if table is None else Table(list(table.get("nullable", [])), table.get("categories") or {})
        hooks = contract.get("hooks") or {}
        self.hooks: LoadedHooks = load_hooks(folder, hooks.get("pre"), hooks.get("post"), namespace=self.name)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self._session = ort.InferenceSession(str(folder / MODEL_FILE), options, providers=["CPUExecutionProvider"])
        self._output_names = [spec.name for spec in self.outputs]

    def input(self, name: str) -> Spec | None:
        return next((spec for spec in self.inputs if spec.name == name), None)

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on tensors checked against the contract."""
        check_signature(self, {name: (datatype_of(array), array.shape) for name, array in inputs.items()})
        if self.table is not None and self.table.categories:
            check_declared_categories(self, inputs)  # ONNX's encoders cannot say which value they refused
        try:
            return dict(zip(self._output_names, self._session.run(self._output_names, inputs), strict=True))
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelFault("the model failed while running inference") from exc

    def predict(self, payload: Any) -> Any:
        """The plain JSON route: the pre hook (or ``{input name: values}``), the model, the post hook."""
        if self.hooks.pre is None and self.table is not None:
            arrays = columns_from_rows(self, payload)
        elif self.hooks.pre is None:
            arrays = named_inputs(self, payload, "body")
        else:
            arrays = named_inputs(self, self._call(self.hooks.pre, payload), "pre-processing hook result")
        outputs = self.infer(arrays)
        if self.hooks.post is None:
            return outputs
        if self.hooks.post_takes_inputs:  # the tensors the model ran on, as the function gives them
            return self._call(self.hooks.post, outputs, payload, inputs=arrays)
        return self._call(self.hooks.post, outputs, payload)

    @staticmethod
    def _call(hook: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return hook(*args, **kwargs)
        except ModelfnError:
            raise
        except Exception as exc:
            raise ModelFault("a hook failed") from exc
