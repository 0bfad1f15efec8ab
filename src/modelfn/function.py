"""The data plane of one deployed function: a folder with hooks, a model, every protocol.

The model is the folder's own contract and artifact, or a version in a
registry (``MODELFN_MODEL=gs://bucket/models/digits@prod``). Creating a
:class:`ModelFunction` does no I/O and imports nothing heavy; the first request
resolves what to serve and loads it through the process-global single-flight
cache. An alias is re-resolved every ``alias_refresh_s``: a new version loads
in the background while the old one keeps answering, then replaces it in one
assignment (blue-green inside the instance).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypeVar

from modelfn.errors import ContractError, ModelfnError, NotFound, ObjectNotFound
from modelfn.observability.metrics import CONTEXT, RECORDER
from modelfn.runtime.cache import GLOBAL_CACHE, ModelCache

if TYPE_CHECKING:
    from modelfn.contract import Contract
    from modelfn.registry import ModelRef, Registry, Traffic
    from modelfn.runtime.admission import Admission
    from modelfn.runtime.model import LoadedModel
    from modelfn.runtime.pipeline import Members
    from modelfn.runtime.stores import Store
    from modelfn.runtime.traffic import TrafficState
    from modelfn.settings import Settings

log = logging.getLogger("modelfn")
T = TypeVar("T")


class Servable(Protocol):
    """What the protocols serve: one model (:class:`ModelFunction`) or several (:class:`FunctionGroup`)."""

    settings: Settings

    def member(self, name: str | None, version: str | None = None) -> ModelFunction: ...
    def ready(self, *, start: bool = False) -> bool: ...
    def prefetch(self) -> None: ...
    def refresh_now(self) -> None: ...
    def wedged(self) -> bool: ...
    def catalog(self) -> dict[str, str]: ...


class ModelFunction:
    """Serves the model described by ``<folder>/modelfn.yaml``.

    ``members`` finds the other models of the same function, which a pipeline
    contract runs (see :mod:`modelfn.runtime.pipeline`).
    """

    def __init__(
        self,
        folder: str | Path,
        settings: Settings,
        *,
        cache: ModelCache | None = None,
        members: Members | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.settings = settings
        self._cache = GLOBAL_CACHE if cache is None else cache
        self._members = members
        self._current: _Target | None = None
        self._registry_ref: tuple[Registry, ModelRef] | None = None  # built on first use (imports msgspec)
        self._target_lock = threading.Lock()
        self._refreshing = False
        self._next_refresh = time.monotonic() + settings.alias_refresh_s
        self._admission: Admission | None = None  # built on the first model call
        #: The alias's traffic policy at work (several versions), or None (one version: ``_current``).
        self._traffic: TrafficState[_Target] | None = None
        self._policy: Traffic | None = None

    def member(self, name: str | None, version: str | None = None) -> ModelFunction:
        """This function, once ``name[/version]`` from the URL is checked against what it serves."""
        if name is not None:
            self.resolve(name, version)
        return self

    # -- what is served --------------------------------------------------------
    def contract(self) -> Contract:
        """The contract of the version served now (resolved on first use; a failure is retried)."""
        return self._target().contract

    def catalog(self) -> dict[str, str]:
        """The model this function serves, and the version it serves now."""
        contract = self.contract()
        return {contract.name: contract.version}

    def resolve(self, name: str, version: str | None = None) -> Contract:
        """The contract for ``name[/version]`` from a URL, or a 404 naming what exists.

        Under a traffic policy, a version of the split (or the shadow) named in the URL serves the request.
        """
        traffic = self._traffic
        if version is not None and traffic is not None and version in traffic.targets:
            context = CONTEXT.get()
            if context is not None:
                context.pinned = version
        contract = self.contract()
        if name != contract.name:
            raise NotFound(f"model {name[:100]!r} not found; this function serves {contract.name!r}")
        if version is not None and version != contract.version:
            available = ", ".join(repr(v) for v in (sorted(traffic.targets) if traffic else [contract.version]))
            raise NotFound(f"model {name!r} has no version {version[:100]!r}; available: {available}")
        return contract

    def model(self) -> LoadedModel:
        """The loaded model now being served; the first call loads it (once, however many callers)."""
        target = self._target()
        self._maybe_refresh()
        hit = self._cache.state(target.cache_key).is_ready
        RECORDER.count("cache", (target.contract.name, "hit" if hit else "miss"))
        if not hit:
            context = CONTEXT.get()
            if context is not None:
                context.cold = True
        return self._cache.get(target.cache_key, target.loader, self.settings.load_wait_s,
                               timeout_s=self.settings.load_timeout_s)  # fmt: skip

    def run(self, call: Callable[[], T], *, inline: bool = False, timeout: float | None = None) -> T:
        """``call()`` (a model call) within this model's call slots, queue and the request deadline.

        Beyond the slots and the queue the request is refused at once (503, ``Retry-After``); past
        ``request_timeout_s`` it gets 504 (see :mod:`modelfn.runtime.admission`). ``inline``: the
        call is a plain ONNX Runtime run that the deadline can stop (:meth:`LoadedModel.interruptible`).
        ``timeout`` shortens the deadline (a platform that gives up sooner, like a voice assistant), and
        so does the client's own deadline where its protocol sends one (gRPC).
        """
        admission = self._admission
        if admission is None:
            admission = self._make_admission()
        deadline = self.settings.request_timeout_s if timeout is None else min(timeout, self.settings.request_timeout_s)
        context = CONTEXT.get()
        if context is not None and context.deadline is not None:  # the client's own deadline counts too
            from modelfn.errors import DeadlineExceeded

            left = context.deadline - time.monotonic()
            if left <= 0:
                raise DeadlineExceeded("the request's deadline passed before the model ran")
            deadline = min(deadline, left)
        return admission.run(call, deadline, inline=inline)

    def wedged(self) -> bool:
        """Whether every call slot has been held past twice the deadline: this instance should be replaced."""
        admission = self._admission
        return admission is not None and admission.wedged(2 * self.settings.request_timeout_s)

    def _make_admission(self) -> Admission:
        from modelfn.runtime.admission import Admission

        with self._target_lock:
            if self._admission is None:
                contract = self.contract()
                slots = self.settings.max_concurrency
                if slots == 0:
                    from modelfn.runtime.cpus import available_cpus

                    slots = 2 * available_cpus()
                    if contract.batching is not None:  # batches form from concurrent calls: let a batch fill
                        batching = contract.batching
                        slots = max(slots, min(256, batching.max_batch_size * batching.max_concurrent_batches))
                self._admission = Admission(contract.name, slots, self.settings.max_queue)
            return self._admission

    def prefetch(self) -> None:
        """Begin loading in the background (no-op when loaded or loading); a pipeline loads its steps too."""
        self.ready(start=True)

    def ready(self, *, start: bool = False) -> bool:
        """Whether the model is loaded and warmed; ``start`` begins a load if none is running."""
        target = self._target()
        traffic = self._traffic
        targets = list(traffic.targets.values()) if traffic is not None else [target]  # every version of a split
        if start:
            for each in targets:
                self._cache.start(each.cache_key, each.loader, timeout_s=self.settings.load_timeout_s)
        return all(self._cache.state(each.cache_key).is_ready for each in targets)

    def loaded_bytes(self) -> int | None:
        """The loaded artifact's size, or ``None`` when no model is in memory."""
        target = self._current
        if target is None or not self._cache.state(target.cache_key).is_ready:
            return None
        return self._cache.peek(target.cache_key).artifact_bytes

    def release(self) -> None:
        """Drop the loaded model from memory; requests holding it finish, the next one reloads."""
        if self._current is not None:
            RECORDER.count("cache", (self._current.contract.name, "eviction"))
            self._cache.discard(self._current.cache_key)

    def _target(self) -> _Target:
        target = self._current
        if target is None:
            with self._target_lock:
                if self._current is None:
                    self._start_serving()
                target = self._current
                assert target is not None
        context = CONTEXT.get()
        traffic = self._traffic
        if traffic is not None:
            if context is not None and context.model == target.contract.name and context.version in traffic.targets:
                return traffic.targets[context.version]  # chosen earlier in this request: keep it
            _, target = traffic.choose(context, lambda: _sticky_value(traffic.policy, context, self.settings))
            if context is not None and not context.model:
                context.chosen = not context.pinned  # a version named in the URL is the caller's choice
                context.watch = traffic.watch
                if traffic.policy.shadow and not context.pinned:
                    context.shadow = traffic.policy.shadow
        if context is not None and not context.model:  # the model a request named (not a pipeline's steps)
            context.model, context.version = target.contract.name, target.contract.version
        return target

    def _start_serving(self) -> None:
        """Resolve what to serve on first use (lock held): the folder's model, a version, or an alias's policy."""
        ref = self._registry()[1] if self.settings.model else None
        if ref is None or ref.alias is None:
            self._current = self._build_target(None)
            return
        registry = self._registry()[0]
        record = registry.alias(ref.name, ref.alias)
        if record is None:
            raise ObjectNotFound(f"alias {ref.name}@{ref.alias} does not exist in {registry.uri}")
        stable = self._build_target(record.version)
        self._traffic = self._traffic_state(record.traffic, stable) if record.traffic else None
        self._policy = record.traffic
        self._current = stable
        if self._traffic is not None:  # every version of the split starts loading now, in the background
            for each in self._traffic.targets.values():
                self._cache.start(each.cache_key, each.loader, timeout_s=self.settings.load_timeout_s)

    def _traffic_state(self, policy: Traffic, stable: _Target) -> TrafficState[_Target]:
        from modelfn.runtime.traffic import TrafficState

        name = stable.contract.name
        versions = [*policy.split, *([policy.shadow] if policy.shadow else [])]
        targets = {v: stable if v == stable.contract.version else self._build_target(v) for v in versions}
        return TrafficState(
            self.settings.model.rsplit("/", 1)[-1],
            policy,
            targets,
            on_rollback=lambda version, reason: RECORDER.count("rollbacks", (name, version)),
        )

    def _build_target(self, version: str | None) -> _Target:
        """Resolve what to serve: the folder's own contract, or a version from the registry."""
        if not self.settings.model:
            from modelfn.contract import load_contract
            from modelfn.runtime.model import local_artifact

            contract = load_contract(self.folder)
            if contract.framework == "pipeline":
                return self._pipeline_target(contract)
            store, key = local_artifact(contract, self.folder)
            return self._make_target(contract, store, key)
        registry, ref = self._registry()
        version = version or registry.resolve(ref)
        contract = registry.contract(ref.name, version)
        return self._make_target(contract, registry.store, registry.artifact_key(contract))

    def _make_target(self, contract: Contract, store: Store, key: str) -> _Target:
        # Resolved once per target: resolve() touches the file system, requests must not.
        cache_key = f"{self.folder.resolve()}:{store.uri}/{key}:{contract.verified_artifact().sha256}"

        def load() -> LoadedModel:
            from modelfn.runtime.model import load_model

            log.info("loading model %s v%s from %s/%s", contract.name, contract.version, store.uri, key)
            return _logged(load_model(self.folder, contract, self.settings, store, key))

        return _Target(contract, cache_key, load)

    def _pipeline_target(self, contract: Contract) -> _Target:
        members = self._members
        if members is None:
            raise ContractError(
                f"{contract.name} is a pipeline: it runs models served by the same function, so serve it "
                "with http_function(__file__, models=[...]) naming it and each model of its steps"
            )

        def load() -> LoadedModel:
            from modelfn.runtime.pipeline import load_pipeline

            log.info("loading pipeline %s v%s (%s)", contract.name, contract.version,
                     " -> ".join(step.model for step in contract.steps))  # fmt: skip
            return _logged(load_pipeline(self.folder, contract, members))

        return _Target(contract, f"{self.folder.resolve()}:pipeline:{contract.version}", load)

    def _registry(self) -> tuple[Registry, ModelRef]:
        if self._registry_ref is None:
            from modelfn.registry import ModelRef, Registry

            ref = ModelRef.parse(self.settings.model)
            self._registry_ref = Registry.open(ref.registry, attempts=self.settings.store_attempts), ref
        return self._registry_ref

    # -- alias refresh: blue-green inside one instance ---------------------------
    def refresh_now(self) -> None:
        """Re-resolve the alias now, on this thread (after a SnapStart restore the snapshot may be old)."""
        if self._current is not None and self._claim_refresh(due_only=False):
            self._refresh()

    def _maybe_refresh(self) -> None:
        """Every ``alias_refresh_s``, re-resolve the alias in the background (never on the request's time)."""
        if self._claim_refresh(due_only=True):
            threading.Thread(target=self._refresh, name="modelfn-alias-refresh", daemon=True).start()

    def _claim_refresh(self, *, due_only: bool) -> bool:
        """Whether the caller is the one to refresh now (none runs, and, with ``due_only``, one is due)."""
        if self._registry_ref is None or self._registry_ref[1].alias is None:
            return False  # the folder's own model, or a pinned version: nothing can move
        now = time.monotonic()
        with self._target_lock:
            if self._refreshing or (due_only and now < self._next_refresh):
                return False
            self._refreshing = True
            self._next_refresh = now + self.settings.alias_refresh_s
        return True

    def _refresh(self) -> None:
        current = self._current
        assert current is not None
        try:
            registry, ref = self._registry()
            record = registry.alias(ref.name, ref.alias or "")
            if record is None:
                raise ObjectNotFound(f"alias {ref.name}@{ref.alias} does not exist in {registry.uri}")
            version = record.version
            if version == current.contract.version and record.traffic == self._policy:
                return
            log.info("%s now points at v%s%s; loading beside v%s", self.settings.model, version,
                     " with a traffic policy" if record.traffic else "", current.contract.version)  # fmt: skip
            target = current if version == current.contract.version else self._build_target(version)
            traffic = self._traffic_state(record.traffic, target) if record.traffic else None
            wait = max(self.settings.load_wait_s, 600.0)
            # Load in this background thread; requests keep using the old version(s) meanwhile.
            for each in traffic.targets.values() if traffic is not None else [target]:
                self._cache.get(each.cache_key, each.loader, wait)
            old = {t.cache_key for t in (self._traffic.targets.values() if self._traffic else [current])}
            with self._target_lock:  # requests see the new policy and its stable version together
                self._traffic, self._policy, self._current = traffic, record.traffic, target
            kept = {t.cache_key for t in (traffic.targets.values() if traffic else [target])}
            for key in old - kept:
                self._cache.discard(key)  # in-flight requests keep their reference
            shares = ", ".join(f"v{v} {w}%" for v, w in record.traffic.split.items()) if record.traffic else ""
            log.info("now serving %s v%s%s", target.contract.name, version, f" ({shares})" if shares else "")
        except ModelfnError as exc:
            log.warning("alias refresh failed, still serving v%s: %s", current.contract.version, exc.message)
        except Exception:
            log.exception("alias refresh crashed, still serving v%s", current.contract.version)
        finally:
            with self._target_lock:
                self._refreshing = False


def _sticky_value(policy: Traffic, context: Any, settings: Settings) -> str:
    """The request's sticky key: the policy's header, or its top-level field of a JSON body."""
    request = getattr(context, "request", None)
    if request is None:
        return ""
    if policy.sticky_header:
        return request.headers.get(policy.sticky_header, "")[:256]
    from modelfn.http import parse_json

    try:
        body = parse_json(request.body, settings)  # within the body limits; a bad body is refused later
    except ModelfnError:
        return ""
    value = body.get(policy.sticky_field) if isinstance(body, dict) else None
    return str(value)[:256] if isinstance(value, str | int) and not isinstance(value, bool) else ""


def _logged(model: LoadedModel) -> LoadedModel:
    """Log and count how long a load took and where the time went, then pass the model on."""
    contract = model.contract
    RECORDER.load(contract.name, contract.version, model.phases)
    total = sum(model.phases.values()) * 1000
    phases = ", ".join(f"{name} {seconds * 1000:.1f}" for name, seconds in model.phases.items())
    kind = "pipeline" if contract.framework == "pipeline" else "model"
    log.info("loaded %s %s v%s in %.1f ms (%s)", kind, contract.name, contract.version, total, phases)
    return model


class _Target(NamedTuple):
    """One servable version: its contract, its cache key and how to load it."""

    contract: Contract
    cache_key: str
    loader: Callable[[], LoadedModel]
