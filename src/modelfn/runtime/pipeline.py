"""Inference pipelines: one contract that runs several models of the same function.

A pipeline's ``steps`` name sibling models and wire them by tensor names, the
way a Triton ensemble does: the pipeline's inputs and each step's published
outputs share one namespace, so a step can take an earlier step's output (a
chain) and several steps can read one input (a fan-out whose outputs are
returned together). The wiring is checked against the models' own contracts
when the pipeline loads: every model input fed, datatypes equal, shapes
compatible (same rank; dimensions fixed on both sides equal).

A pipeline is served like any model (every protocol, its own pre/post hooks)
because it is one: a :class:`~modelfn.runtime.model.LoadedModel` whose
predictor calls the step models. Each step model is looked up on every call,
so a step released under the memory budget or moved by an alias refresh is
simply the one in force at that moment. Only the steps that the requested
outputs need are run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol

from modelfn.errors import ContractError, InvalidInput, ModelFault, ModelfnError

if TYPE_CHECKING:
    import numpy as np

    from modelfn.contract import Contract, Step, TensorSpec
    from modelfn.runtime.model import LoadedModel

log = logging.getLogger("modelfn")


class StepModel(Protocol):
    """A model a step runs: what :class:`modelfn.function.ModelFunction` offers."""

    def contract(self) -> Contract: ...
    def model(self) -> LoadedModel: ...


#: Finds a model served by the same function by name (``NotFound`` when it is not).
Members = Callable[[str], StepModel]


class _Wire(NamedTuple):
    """Where a tensor of the pipeline's namespace comes from, and its type."""

    datatype: str
    shape: list[int]
    source: str

    @classmethod
    def of(cls, spec: TensorSpec, source: str) -> _Wire:
        return cls(spec.datatype, list(spec.shape), source)


def load_pipeline(folder: str | Path, contract: Contract, members: Members) -> LoadedModel:
    """Check the wiring against the step models' contracts, then load as any model does.

    The warm-up inference at the end loads every step model (through the shared cache).
    """
    from modelfn.runtime.model import PhaseTimer, assemble

    timer = PhaseTimer()
    predictor = PipelinePredictor(contract, members)
    timer.lap("wiring")
    return assemble(folder, contract, predictor, timer)


class PipelinePredictor:
    """Runs the steps a request's outputs need, in order; thread-safe (it keeps no state per call)."""

    def __init__(self, contract: Contract, members: Members) -> None:
        self._steps = contract.steps
        self._members = members
        self._check(contract)

    def predict(self, inputs: Mapping[str, np.ndarray], output_names: Sequence[str]) -> dict[str, np.ndarray]:
        tensors: dict[str, np.ndarray] = dict(inputs)
        needed = set(output_names)
        # Walk back from the requested outputs: a step runs only if something needed comes from it.
        plan: list[tuple[int, Step, list[str]]] = []
        for index in range(len(self._steps) - 1, -1, -1):
            step = self._steps[index]
            wanted = [output for output, published in step.outputs.items() if published in needed]
            if wanted:
                plan.append((index, step, wanted))
                needed.update(step.inputs.values())
        for index, step, wanted in reversed(plan):
            model = self._members(step.model).model()
            feed = {model_input: tensors[source] for model_input, source in step.inputs.items()}
            try:
                results = model.infer(feed, wanted)
            except InvalidInput as exc:
                if all(source in inputs for source in step.inputs.values()):
                    raise  # the step reads the caller's own tensors: its model refused one of their values
                # Tensors an earlier step produced: the wiring is at fault, not the caller.
                log.error("pipeline step %d (%s) refused its inputs: %s", index, step.model, exc.message)
                raise ModelFault(f"pipeline step {index} ({step.model}) refused the tensors it was given") from exc
            for output in wanted:
                tensors[step.outputs[output]] = results[output]
        return {name: tensors[name] for name in output_names}

    def _check(self, contract: Contract) -> None:
        """Fail the load, naming the step and tensor, wherever the wiring and the models disagree."""
        wires = {spec.name: _Wire.of(spec, "pipeline input") for spec in contract.inputs}
        for index, step in enumerate(contract.steps):
            where = f"field `steps[{index}]` ({step.model})"
            model = self._step_contract(step, where)
            declared = {spec.name: spec for spec in model.inputs}
            unfed = sorted(set(declared) - set(step.inputs))
            unknown = sorted(set(step.inputs) - set(declared))
            if unfed or unknown:
                raise ContractError(
                    f"{where}: `inputs` must map each of the model's inputs {sorted(declared)}; "
                    f"unmapped {unfed}, unknown {unknown}"
                )
            for name, source in step.inputs.items():
                _check_types(wires[source], declared[name], f"{where}: input {name!r} reads {source!r}, which")
            for name, published in step.outputs.items():
                spec = model.output(name)
                if spec is None:
                    raise ContractError(
                        f"{where}: the model has no output {name!r}; it has {[s.name for s in model.outputs]}"
                    )
                wires[published] = _Wire.of(spec, f"output {name!r} of {step.model}")
        for index, spec in enumerate(contract.outputs):
            _check_types(wires[spec.name], spec, f"field `outputs[{index}]` ({spec.name}): it")

    def _step_contract(self, step: Step, where: str) -> Contract:
        try:
            contract = self._members(step.model).contract()
        except ModelfnError as exc:
            raise ContractError(f"{where}: {exc.message}") from exc
        if contract.framework == "pipeline":
            raise ContractError(f"{where}: {step.model} is itself a pipeline; list its steps here instead")
        return contract


def _check_types(wire: _Wire, spec: TensorSpec, where: str) -> None:
    """Same datatype and rank; a dimension fixed on both sides must agree (-1 fits anything)."""
    fits = len(wire.shape) == len(spec.shape) and all(
        -1 in (have, want) or have == want for have, want in zip(wire.shape, spec.shape, strict=False)
    )
    if wire.datatype != spec.datatype or not fits:
        raise ContractError(
            f"{where} is {wire.source}: {wire.datatype} {wire.shape}, "
            f"but {spec.datatype} {list(spec.shape)} is declared (-1 = any)"
        )
