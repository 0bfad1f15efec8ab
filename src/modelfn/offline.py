"""The model as a batch engine's workers load it: from a function folder or a pinned registry version.

Beam (:mod:`modelfn.beam`) and Spark (:mod:`modelfn.spark`) describe the model with a
:class:`ModelSource`, a small picklable value that travels to every worker; each worker process
loads it once through the same path a deployed function takes (the contract's digest check, its
predictor, its hooks, its warm-up) and keeps it in the process-global model cache, where every
thread of the worker shares it.

A registry alias is resolved once, where the job is launched: every worker of one job runs the
same version, even if the alias moves while the job runs. A traffic split on the alias does not
apply to batch jobs: they run its stable version.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from modelfn.contract import CONTRACT_FILE, function_members
from modelfn.errors import ContractError

if TYPE_CHECKING:
    from modelfn.contract import Contract
    from modelfn.runtime.model import LoadedModel

_loaded: dict[ModelSource, LoadedModel] = {}
_loading = threading.Lock()


@dataclass(frozen=True)
class ModelSource:
    """A model for batch work. Build it with :meth:`of`; :meth:`load` it on the workers."""

    #: The function folder: its contract and artifact, or (with ``model``) the hooks the version runs.
    folder: str = ""
    #: A registry version, pinned: ``<registry>/<name>/<version>``; empty for the folder's own model.
    model: str = ""
    #: The model to run in a several-model folder (its sub-folder's name).
    member: str | None = None

    @classmethod
    def of(cls, source: str | Path, *, folder: str | Path | None = None, member: str | None = None) -> ModelSource:
        """``source``: a function folder, or a registry reference (``gs://bucket/models/digits@prod``,
        ``s3://b/models/digits/3``, ``/srv/registry/digits@prod``), whose alias is resolved now.

        ``folder`` holds the hooks of a registry model that has them (the function's own folder).
        """
        text = str(source)
        path = Path(text)
        if "://" not in text and path.is_dir():
            if not _has_contract(path, member):
                raise ContractError(f"{path}: no {CONTRACT_FILE} in it" + (f" or in {member}/" if member else ""))
            return cls(str(path.resolve()), "", member)
        if "://" not in text and "@" not in path.name and not path.parent.is_dir():
            raise ContractError(f"{text}: no such function folder (nor a registry reference)")
        from modelfn.registry import ModelRef, Registry

        ref = ModelRef.parse(text)
        registry = Registry.open(ref.registry)
        version = ref.version or registry.resolve(ref)
        registry.contract(ref.name, version)  # it exists: a wrong reference fails here, not on the workers
        hooks = str(Path(folder).resolve()) if folder is not None else ""
        return cls(hooks, f"{ref.registry}/{ref.name}/{version}", member)

    @property
    def uri(self) -> str:
        """What the model is, for logs and summaries."""
        return self.model or self.folder + (f"/{self.member}" if self.member else "")

    def contract(self) -> Contract:
        """The model's contract, read without loading the model (where the job is launched)."""
        if not self.model:
            from modelfn.contract import load_contract

            return load_contract(Path(self.folder) / (self.member or ""))
        from modelfn.registry import ModelRef, Registry

        ref = ModelRef.parse(self.model)
        return Registry.open(ref.registry).contract(ref.name, ref.version or "")

    def load(self) -> LoadedModel:
        """The loaded, verified model; the first call in a process loads it, later ones share it."""
        model = _loaded.get(self)
        if model is not None:
            return model
        with _loading:
            model = _loaded.get(self)
            if model is None:
                model = _loaded[self] = self._load()
        return model

    def _load(self) -> LoadedModel:
        from modelfn.adapters.process import build_servable
        from modelfn.settings import Settings

        settings = Settings.from_env()
        # A worker waits for its whole load: there is no caller to answer 503 to meanwhile.
        wait = settings.load_timeout_s or 3600.0
        settings = settings._replace(model=self.model, load_wait_s=max(settings.load_wait_s, wait))
        folder = Path(self.folder) if self.folder else Path("/nonexistent-modelfn-hooks")
        members = function_members(folder) if self.folder and not self.model else []
        servable, _ = build_servable(folder, None if members in ([], [""]) else members, settings)
        function = servable.member(self.member)
        contract = function.contract()
        _check_hooks(contract, self)
        return function.model()


def _has_contract(folder: Path, member: str | None) -> bool:
    return (folder / (member or "") / CONTRACT_FILE).is_file()


def _check_hooks(contract: Contract, source: ModelSource) -> None:
    hooks = contract.hooks
    if source.model and not source.folder and (hooks.pre or hooks.post):
        raise ContractError(
            f"{contract.name} v{contract.version} has hooks ({hooks.pre or hooks.post}); pass the function folder "
            "that holds them: folder=... (or --hooks FOLDER)"
        )
