"""One plan per function folder: what the cloud needs to know of it, read from its contracts.

Every generated file (``modelfn render``: Terraform variables, the gateway's OpenAPI document,
``serverless.yml``, ``cloudbuild.yaml``, the Kubernetes manifests) is written from these plans, so
the clouds agree with each other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from modelfn.contract import Contract, Deploy
from modelfn.tooling.build import BuildError, FunctionLayout

#: Deployed name suffix of each trigger's function, and the longest a batch job may run (seconds).
TRIGGER_SUFFIX = {"storage": "batch", "messages": "messages"}
BATCH_TIMEOUT_S = 540


@dataclass(frozen=True)
class FunctionPlan:
    """What the cloud needs to know of one function folder."""

    name: str
    #: Model names the function answers to, in URLs.
    models: tuple[str, ...]
    #: A one-model function serves ``<registry>/<model>@<alias>``; a several-model one, its bundle.
    registry_model: str | None
    version: str | None
    frameworks: tuple[str, ...]
    package: str
    deploy: Deploy
    #: The function folder, whose bundle this deploys (``dist/<folder>-<target>.zip``).
    folder: str = ""
    #: None for the HTTP function; ``storage`` or ``messages`` for an event-triggered one.
    trigger: str | None = None
    #: ``grpc`` for the folder's gRPC service (``deploy.grpc``): its Cloud Run image with
    #: ``MODELFN_SERVE=grpc`` behind an ``h2c`` port; ``http`` for every other function.
    serve: str = "http"

    @property
    def timeout_s(self) -> int:
        """Batch jobs get the longest time both platforms allow an event function (GCF: 540 s)."""
        return BATCH_TIMEOUT_S if self.trigger == "storage" else self.deploy.timeout_s

    @property
    def concurrency(self) -> int:
        """A batch job keeps its instance's CPUs busy: one at a time."""
        return 1 if self.trigger == "storage" else self.deploy.concurrency

    @property
    def rest(self) -> bool:
        """The folder's REST function: neither an event function nor its gRPC service."""
        return self.trigger is None and self.serve == "http"

    @property
    def exposed(self) -> bool:
        """Routed by the shared API gateway: the REST function, unless its contract opts out."""
        return self.deploy.expose and self.rest

    @property
    def service_account_id(self) -> str:
        """A Google service account id (6..30 characters) unique to the function."""
        return f"mfn-{self.name}"[:30].rstrip("-_")

    @property
    def resource_name(self) -> str:
        """The name used for identifiers: hyphens and underscores folded to one form."""
        return re.sub(r"[^A-Za-z0-9]", "_", self.name)

    @property
    def edge(self) -> dict[str, object] | None:
        """The platform's split (``deploy.traffic``): the version this deploy pins, and every version's weight.

        Event functions and the gRPC service take no part: a platform split shares the REST endpoint's requests.
        """
        if self.deploy.traffic is None or not self.rest:
            return None
        return {"deployed": self.version, "weights": dict(sorted(self.deploy.traffic.items()))}

    @property
    def dataflow(self) -> dict[str, object] | None:
        """The storage function's Dataflow hand-off (``deploy.dataflow``): its sizes and worker identity."""
        d = self.deploy.dataflow
        if d is None or self.trigger != "storage":
            return None
        return {
            "above_mb": d.above_mb,
            "max_workers": d.max_workers,
            "machine_type": d.machine_type,
            "service_account_id": self.dataflow_account_id,
        }

    @property
    def dataflow_account_id(self) -> str:
        """The Dataflow workers' own service account (6..30 characters), beside the function's."""
        return f"mfn-{self.name}"[:27].rstrip("-_") + "-df"

    @property
    def alexa_skills(self) -> list[str]:
        """The skills that may call the HTTP function (event functions answer no skill)."""
        return list(self.deploy.alexa_skills) if self.rest else []

    def variables(self) -> dict[str, object]:
        """This function's entry in the Terraform ``functions`` variable (the same for both clouds)."""
        d = self.deploy
        return {
            "folder": self.folder,
            "models": list(self.models),
            "registry_model": self.registry_model,
            "alias": d.alias,
            "package": self.package,
            "expose": self.exposed,
            "memory_mb": d.memory_mb,
            "cpu": int(d.cpu) if float(d.cpu).is_integer() else d.cpu,  # 1, not 1.0 from a JSON round trip
            "timeout_s": self.timeout_s,
            "min_instances": d.min_instances if self.trigger is None else 0,
            "max_instances": d.max_instances,
            "concurrency": self.concurrency,
            "service_account_id": self.service_account_id,
            "trigger": None if self.trigger is None else {"type": self.trigger},
            "edge": self.edge,
            "alexa_skills": self.alexa_skills,
            # Written only when asked for, so the rendered files of other functions stay as they were.
            **({"snap_start": True} if self.snap_start else {}),
            **({"dataflow": self.dataflow} if self.dataflow else {}),
            **({"serve": self.serve} if self.serve != "http" else {}),
        }

    @property
    def site(self) -> bool:
        """A static site of the folder's models (``deploy.site``), once per folder: the HTTP function's plan."""
        return self.deploy.site and self.rest

    @property
    def snap_start(self) -> bool:
        """Lambda SnapStart: an HTTP zip function whose contract asks for it."""
        return self.deploy.snap_start and self.rest and self.package == "zip"


def plan(functions_dir: Path, *, allow_empty: bool = False) -> list[FunctionPlan]:
    """Read every function folder under ``functions_dir``; refuse plans that could not deploy together.

    ``allow_empty``: a new project's ``functions/`` has no folder yet, and plans nothing.
    """
    if not Path(functions_dir).is_dir():
        raise BuildError(f"{functions_dir}: no such folder; render reads the function folders in functions/")
    plans = [
        each
        for folder in sorted(Path(functions_dir).iterdir())
        if FunctionLayout.members(folder)
        for each in _plan(FunctionLayout.read(folder))
    ]
    if not plans and not allow_empty:
        raise BuildError(f"{functions_dir}: no function folders (a folder with modelfn.yaml, or sub-folders with one)")
    routed: dict[str, str] = {}
    accounts: dict[str, str] = {}
    for each in plans:
        for model in each.models if each.exposed else ():
            if model in routed:
                raise BuildError(
                    f"model {model!r} is served by both functions/{routed[model]} and functions/{each.name}; the "
                    f"gateway routes a model name to one function: set `deploy: {{expose: false}}` in one of them"
                )
            routed[model] = each.name
        for account in [each.service_account_id, *([each.dataflow_account_id] if each.dataflow else [])]:
            if account in accounts:
                raise BuildError(
                    f"functions/{accounts[account]} and functions/{each.name} get the same service "
                    f"account id {account!r} (30 characters at most); shorten one folder name"
                )
            accounts[account] = each.name
    return plans


def _plan(layout: FunctionLayout) -> list[FunctionPlan]:
    """The folder's HTTP function, one function per event trigger its contract declares, then its gRPC service."""
    contracts = list(layout.models.values())
    declared = [c for c in contracts if c.deploy is not None]
    if len(declared) > 1:
        raise BuildError(
            f"functions/{layout.name}: `deploy` is declared by {', '.join(c.name for c in declared)}; "
            "a function is deployed once, so declare it in one member only"
        )
    deploy = declared[0].deploy if declared else Deploy()
    assert deploy is not None
    frameworks = tuple(sorted(layout.frameworks()))
    package = deploy.package
    if package == "auto":
        package = "image" if {"tensorflow", "pytorch"} & set(frameworks) else "zip"
    single: Contract | None = None if layout.is_group else contracts[0]
    if deploy.traffic is not None and single is None:
        raise BuildError(
            f"functions/{layout.name}: `deploy.traffic` splits one model's versions; this function serves "
            f"{len(contracts)} models (split each in the function instead: modelfn traffic)"
        )
    if deploy.triggers and package != "zip":
        raise BuildError(
            f"functions/{layout.name}: event triggers are deployed as Cloud Functions and Lambda zips; "
            "this function is packaged as an image (convert the model to ONNX, or drop `triggers`)"
        )
    http = FunctionPlan(
        name=layout.name,
        models=tuple(c.name for c in contracts),
        registry_model=single.name if single else None,
        version=single.version if single else None,
        frameworks=frameworks,
        package=package,
        deploy=deploy,
        folder=layout.name,
    )
    triggered = [replace(http, name=f"{layout.name}-{TRIGGER_SUFFIX[t]}", trigger=t) for t in deploy.triggers]
    grpc = [replace(http, name=f"{layout.name}-grpc", package="image", serve="grpc")] if deploy.grpc else []
    return [http, *triggered, *grpc]
