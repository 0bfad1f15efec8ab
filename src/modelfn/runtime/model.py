"""A loaded model: contract + predictor + hooks; its inputs are checked before every run.

:func:`load_model` is the whole cold-start work, phase by phase: fetch and
verify the artifact, build the predictor, import the hooks, run one warm-up
inference. Each phase is timed so cold starts can be explained, not guessed.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from modelfn.contract import Contract, resolve_local_artifact
from modelfn.datatypes import NUMPY_DTYPES
from modelfn.errors import ContractError, InvalidInput, ModelFault, ModelfnError
from modelfn.runtime.artifacts import LoadPolicy, open_verified, pinned_files
from modelfn.runtime.hooks import LoadedHooks, hook_namespace, load_hooks
from modelfn.runtime.predictors import Predictor, load_predictor
from modelfn.runtime.stores.local import LocalStore
from modelfn.tensors import check_signature, datatype_of, named_inputs

if TYPE_CHECKING:
    from modelfn.runtime.stores import Store
    from modelfn.settings import Settings

log = logging.getLogger("modelfn")
#: From this size on, the allocator is told to give a load's large buffers back (see ``runtime/memory``).
LARGE_MODEL_BYTES = 64 << 20


class LoadedModel(NamedTuple):
    """Immutable once built; shared by every request thread."""

    contract: Contract
    predictor: Predictor
    hooks: LoadedHooks
    #: Seconds spent per load phase: fetch(<tier>), deserialize, verify (the wait for a hash that ran
    #: beside the parse, ONNX only), hooks, warmup.
    phases: dict[str, float]
    #: Size of the artifact the model was built from (the memory budget's unit).
    artifact_bytes: int = 0
    #: A text encoder's tokenizer and pooling (``embedding:`` in the contract), else None.
    embedder: Any = None
    #: The drift watch counting this model's inputs and outputs (``MODELFN_MONITOR_STORE``), else None.
    monitor: Any = None

    def interruptible(self, *, hooks: bool) -> bool:
        """Whether a call (with this model's hooks, if ``hooks``) can be stopped at a deadline.

        Only a plain ONNX Runtime run can; hooks are Python, which nothing stops from outside.
        """
        if hooks and (self.hooks.pre is not None or self.hooks.post is not None):
            return False
        return getattr(self.predictor, "interruptible", False)

    def check_inputs(self, inputs: Mapping[str, np.ndarray]) -> None:
        """Refuse missing, unknown or mis-typed/mis-shaped inputs before the model runs."""
        check_signature(self.contract, {name: (datatype_of(array), array.shape) for name, array in inputs.items()})

    def infer(
        self,
        inputs: Mapping[str, np.ndarray],
        output_names: Sequence[str] | None = None,
        *,
        checked_against: Contract | None = None,
    ) -> dict[str, np.ndarray]:
        """Run the model on checked tensors; ``output_names`` defaults to every output.

        ``checked_against``: the contract a protocol already checked these very arrays against (their
        names, datatypes and shapes, before decoding them). When it is this model's own contract the
        check is not repeated; when an alias swap put another version here since, it is.
        """
        if output_names:
            names = list(output_names)
            unknown = [name for name in names if self.contract.output(name) is None]
            if unknown:
                raise InvalidInput(
                    f"unknown output(s) {unknown}; the model has {[s.name for s in self.contract.outputs]}"
                )
        else:  # every output: the contract's own names
            names = [spec.name for spec in self.contract.outputs]
        if checked_against is not self.contract:
            self.check_inputs(inputs)
        if self.contract.table is not None and self.contract.table.categories:
            from modelfn.table import check_declared_categories

            check_declared_categories(self.contract, inputs)
        try:
            outputs = self.predictor.predict(inputs, names)
        except InvalidInput as exc:  # the framework's own verdict on a value the contract admitted
            log.warning("model %s v%s refused its input: %s", self.contract.name, self.contract.version, exc.message)
            raise
        except ModelfnError:
            raise
        except Exception as exc:
            log.exception("model %s v%s failed during inference", self.contract.name, self.contract.version)
            raise ModelFault("the model failed while running inference") from exc
        monitor = self.monitor
        if monitor is not None:
            monitor.observe(inputs, outputs)  # counts on its bins; never raises, never waits on I/O
        return outputs

    def predict_json(self, payload: Any) -> Any:
        """The plain JSON route: pre hook -> model -> post hook."""
        inputs = self.preprocess(payload)
        return self.postprocess(self.infer(inputs), payload, inputs)

    def postprocess(
        self, outputs: dict[str, np.ndarray], payload: Any, inputs: dict[str, np.ndarray] | None = None
    ) -> Any:
        """The post-processing hook of one payload's outputs, or the outputs as they are.

        ``inputs``: the tensors the model ran on, for a post hook that declares an ``inputs`` parameter.
        """
        post = self.hooks.post
        if post is None:
            if self.embedder is not None and inputs is not None:
                return self.embedder.answer(outputs, inputs, payload)
            from modelfn.tensors import to_json_value  # strings (a BYTES output) as JSON writes them

            return {name: to_json_value(array) for name, array in outputs.items()}
        if self.hooks.post_takes_inputs:
            return self._call_hook("post", functools.partial(post, inputs=inputs), outputs, payload)
        return self._call_hook("post", post, outputs, payload)

    def preprocess(self, payload: Any) -> dict[str, np.ndarray]:
        """The pre-processing hook (or the plain ``{input name: value}`` reading) of one payload."""
        if self.hooks.pre is None:
            if self.embedder is not None:
                return self.embedder.tokenize(self.embedder.texts(payload))[0]
            if self.contract.table is not None:
                from modelfn.table import columns_from_rows

                return columns_from_rows(self.contract, payload)
            return named_inputs(self.contract, payload, "body")
        produced = self._call_hook("pre", self.hooks.pre, payload)
        try:
            return named_inputs(self.contract, produced, "pre-processing hook result")
        except InvalidInput as exc:
            # The caller cannot fix what the operator's hook produced.
            log.error("pre-processing hook of %s returned invalid tensors: %s", self.contract.name, exc)
            raise ModelFault("the pre-processing hook returned invalid tensors") from exc

    def _call_hook(self, stage: str, hook: Any, *args: Any) -> Any:
        try:
            return hook(*args)
        except ModelfnError:
            raise
        except Exception as exc:
            log.exception("%s-processing hook of %s raised", stage, self.contract.name)
            raise ModelFault(f"the {stage}-processing hook failed") from exc


def local_artifact(contract: Contract, folder: str | Path) -> tuple[Store, str]:
    """The store and key of an artifact that lives in (or under ``file://`` beside) the function folder."""
    path = resolve_local_artifact(contract, folder)
    return LocalStore(path.parent), path.name


class PhaseTimer:
    """Seconds per load phase, in order, for the log line that explains a cold start."""

    def __init__(self) -> None:
        self.phases: dict[str, float] = {}
        self._started = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.phases[phase] = now - self._started
        self._started = now


def load_model(folder: str | Path, contract: Contract, settings: Settings, store: Store, key: str) -> LoadedModel:
    """Do the whole cold-start load of one model, timing each phase.

    ``folder`` holds the hooks; the artifact is ``key`` in ``store`` (with its pinned extra files
    beside it), verified before anything parses it and never held twice in memory.
    """
    timer = PhaseTimer()
    artifact = contract.verified_artifact()
    files = pinned_files(key, artifact.digest, artifact.files)
    trusted = build_record(folder, contract) if isinstance(store, LocalStore) else None
    # Without pre-packing, ONNX Runtime computes from the .data file's own pages: the model is in memory once.
    can_map = contract.framework == "onnx" and bool(artifact.files)
    policy = load_policy(settings, in_place=can_map and not settings.ort_prepack, can_map=can_map)
    what = f"model {contract.name} v{contract.version}"
    overlap = overlaps_hash(contract)
    with open_verified(store, files, policy, what=what, trusted=trusted, overlap=overlap) as verified:
        timer.lap(f"fetch({verified.tier})")
        if verified.size >= LARGE_MODEL_BYTES:
            from modelfn.runtime.memory import return_large_blocks

            return_large_blocks(settings.malloc_mmap_threshold_kb * 1024)
        try:
            predictor = load_predictor(contract, verified, settings)
        except BaseException:
            verified.confirm()  # bytes that are not the pinned ones explain any failure to parse them
            raise
        timer.lap("deserialize")
        verified.confirm()  # nothing built from the bytes answers, the warm-up included, before they match
        size = verified.size
        embedder = None
        if contract.embedding is not None:  # its tokenizer, read from the verified folder
            from modelfn.runtime.embedding import Embedder

            embedder = Embedder(contract, (verified.folder / contract.embedding.tokenizer).read_text(encoding="utf-8"))
    if overlap:
        timer.lap("verify")
    if contract.batching is None:
        model = assemble(folder, contract, predictor, timer, artifact_bytes=size, embedder=embedder)
        return _watched(model, folder, settings)
    from modelfn.runtime.batching import MIN_SAVING_S, BatchingPredictor

    batcher = BatchingPredictor(predictor, contract.batching, model=contract.name)
    model = assemble(folder, contract, batcher, timer, artifact_bytes=size, embedder=embedder)
    saving = batcher.calibrate(sample_inputs(model), [spec.name for spec in contract.outputs])
    timer.lap("calibrate")
    state = "on" if batcher.enabled else f"off (below {MIN_SAVING_S * 1e6:.0f} us a row, calls go straight through)"
    log.info("batching %s v%s: a batch saves %.0f us a row: %s", contract.name, contract.version, saving * 1e6, state)
    return _watched(model, folder, settings)


def _watched(model: LoadedModel, folder: str | Path, settings: Settings) -> LoadedModel:
    """``model`` with its drift watch, once warmed up, where a store is set and the contract has a reference."""
    reference = model.contract.monitoring.reference
    if not settings.monitor_store or reference is None:
        return model
    from modelfn.monitoring.drift import drift_watch

    try:
        return model._replace(monitor=drift_watch(model.contract, Path(folder), settings))
    except ModelfnError as exc:  # monitoring never takes the model down; `modelfn check` refuses the file first
        log.error("model %s v%s serves without drift monitoring: %s", model.contract.name, model.contract.version,
                  exc.message)  # fmt: skip
        return model


def overlaps_hash(contract: Contract) -> bool:
    """Whether the artifact's hash may run beside the framework's parse (``deploy.verify: start``).

    Only ONNX: its parser reads a protobuf and runs no code, so the worst unverified bytes can do
    is fail the parse. A pickle, a Keras file or a SavedModel is hashed before anything reads it.
    """
    verify = "start" if contract.deploy is None else contract.deploy.verify
    return contract.framework == "onnx" and verify == "start"


def load_policy(settings: Settings, *, in_place: bool = False, can_map: bool = False) -> LoadPolicy:
    return LoadPolicy(
        settings.cache_dir, settings.disk_tier, settings.store_attempts, settings.memory_limit_mb,
        in_place=in_place, can_map=can_map,
    )  # fmt: skip


def build_record(folder: str | Path, contract: Contract) -> dict[str, tuple[str, int]] | None:
    """The digests ``modelfn build`` recorded for this bundle, if ``deploy.verify: build`` trusts them."""
    if contract.deploy is None or contract.deploy.verify != "build":
        return None
    from modelfn.build_record import read_build_record

    return read_build_record(folder, contract)


def assemble(
    folder: str | Path,
    contract: Contract,
    predictor: Predictor,
    timer: PhaseTimer,
    *,
    artifact_bytes: int = 0,
    embedder: Any = None,
) -> LoadedModel:
    """Import the hooks and warm the predictor up: the last phases of every load."""
    namespace = hook_namespace(contract.name, contract.version)
    hooks = load_hooks(folder, contract.hooks.pre, contract.hooks.post, namespace=namespace, turn=contract.hooks.turn)
    timer.lap("hooks")
    model = LoadedModel(contract, predictor, hooks, timer.phases, artifact_bytes, embedder)
    if contract.warmup == "zeros":
        _warm_up(model)
        timer.lap("warmup")
    return model


def zero_inputs(contract: Contract) -> dict[str, np.ndarray]:
    """Zeros (empty strings for BYTES) of every declared input shape, variable dimensions as 1."""
    inputs = {}
    for spec in contract.inputs:
        shape = [1 if dim == -1 else dim for dim in spec.shape]
        if spec.datatype == "BYTES":
            inputs[spec.name] = np.full(shape, "", dtype=object)
        else:
            inputs[spec.name] = np.zeros(shape, dtype=NUMPY_DTYPES[spec.datatype])
    return inputs


def _on_example(model: LoadedModel) -> bool:
    contract = model.contract
    return contract.table is not None and contract.example is not None and model.hooks.pre is None


def sample_inputs(model: LoadedModel) -> dict[str, np.ndarray]:
    """What the warm-up and the batching calibration run on: a table's example row, else zeros."""
    return model.preprocess(model.contract.example) if _on_example(model) else zero_inputs(model.contract)


def _warm_up(model: LoadedModel) -> None:
    """One inference on a batch of one, so the first real request does not pay for lazy init.

    A table warms up on its contract's example row where it has one: zeros and empty strings are
    rarely values a pipeline was fitted on (an empty plan is an unknown category).
    """
    contract = model.contract
    own = getattr(model.predictor, "warm_up", None)
    if own is not None:  # a generative model writes one token: zeros would be a whole answer to an empty prompt
        own()
        return
    what = "the contract's example row" if _on_example(model) else "zeros of the declared shapes"
    try:
        model.infer(sample_inputs(model))
    except ModelfnError as exc:
        fix = (
            "give the contract an `example:` row the model takes, or set `warmup: off`"
            if contract.table is not None
            else "a model that cannot take zeros sets `warmup: off` in its contract"
        )
        raise ContractError(f"warm-up inference on {what} failed: {exc.message} ({fix})") from exc
