"""The model contract: ``functions/<name>/modelfn.yaml``.

A contract is pure data: what the artifact is and where, how to call it, how it
was made. It is validated once (by ``modelfn check`` and again at cold start)
and every problem names the file, the field and what was expected.

msgspec does the typed validation: it gives the same strictness as a pydantic
model at a fraction of the import cost, which matters because the contract is
read on the cold-start path of every function (see README, "Why these libraries").
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from modelfn.datatypes import Datatype
from modelfn.errors import ContractError

CONTRACT_FILE = "modelfn.yaml"

# Model names travel in URLs and become cloud resource names later: keep them tame.
ModelName = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_-]{0,62}$")]
Version = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
TensorName = Annotated[str, msgspec.Meta(pattern=r"^\S{1,256}$")]
Dim = Annotated[int, msgspec.Meta(ge=-1)]
Sha256 = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]
HookRef = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_./-]*\.py:[A-Za-z_][A-Za-z0-9_]*$")]

Framework = Literal["onnx", "tensorflow", "sklearn"]

#: OIP ``platform`` string reported in model metadata, per framework.
PLATFORMS: dict[str, str] = {
    "onnx": "onnx_onnxv1",
    "tensorflow": "tensorflow_savedmodel",
    "sklearn": "sklearn",
}


class _Strict(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Unknown keys are typos until proven otherwise."""


class TensorSpec(_Strict):
    """One named input or output tensor. ``-1`` marks a variable dimension."""

    name: TensorName
    datatype: Datatype
    shape: Annotated[list[Dim], msgspec.Meta(max_length=16)]
    description: str = ""

    def metadata(self) -> dict[str, Any]:
        """The OIP ``$metadata_tensor`` form."""
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


class Artifact(_Strict):
    """Where the model bytes are and what they must hash to."""

    #: A path relative to the function folder, or a ``file://`` URI.
    uri: Annotated[str, msgspec.Meta(min_length=1)]
    sha256: Sha256


class Hooks(_Strict):
    """Optional pre/post-processing, each ``file.py:function`` inside the function folder."""

    pre: HookRef | None = None
    post: HookRef | None = None


class Docs(_Strict):
    """The model card: what users of the endpoint need to know."""

    description: str
    metrics: dict[str, float | int | str] = {}
    training_data: str = ""
    hyperparameters: dict[str, Any] = {}
    limitations: list[str] = []


class Contract(_Strict):
    """The whole ``modelfn.yaml``."""

    name: ModelName
    version: Version
    framework: Framework
    artifact: Artifact
    inputs: Annotated[list[TensorSpec], msgspec.Meta(min_length=1)]
    outputs: Annotated[list[TensorSpec], msgspec.Meta(min_length=1)]
    docs: Docs
    hooks: Hooks = Hooks()
    #: A request body for the plain JSON route; ``modelfn check`` runs it.
    example: dict[str, Any] | None = None
    #: Extra pip requirements the hooks need (the runtime's own are implied).
    dependencies: list[str] = []

    def __post_init__(self) -> None:
        for kind, specs in (("inputs", self.inputs), ("outputs", self.outputs)):
            names = [spec.name for spec in specs]
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise ValueError(f"{kind} has duplicate tensor names: {', '.join(duplicates)}")

    @property
    def platform(self) -> str:
        return PLATFORMS[self.framework]

    def input(self, name: str) -> TensorSpec | None:
        return next((spec for spec in self.inputs if spec.name == name), None)

    def output(self, name: str) -> TensorSpec | None:
        return next((spec for spec in self.outputs if spec.name == name), None)


def load_contract(folder: str | Path) -> Contract:
    """Read and validate ``<folder>/modelfn.yaml``; raise :class:`ContractError` naming the problem."""
    path = Path(folder) / CONTRACT_FILE
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ContractError(f"{path}: cannot read the contract ({exc.strerror or exc})") from exc
    return parse_contract(raw, source=str(path))


def parse_contract(raw: bytes | str, *, source: str = CONTRACT_FILE) -> Contract:
    """Validate contract text; ``source`` names the file in error messages."""
    import msgspec.yaml  # PyYAML underneath; only needed when a contract is read

    try:
        return msgspec.yaml.decode(raw, type=Contract)
    except msgspec.ValidationError as exc:
        raise ContractError(f"{source}: {_located(str(exc))}") from None
    except msgspec.DecodeError as exc:
        detail = str(exc).replace('in "<unicode string>", ', "")
        raise ContractError(f"{source}: not valid YAML: {detail}") from None


_LOCATION = re.compile(r"^(?P<problem>.*) - at `\$(?P<path>[^`]*)`$", re.DOTALL)


def _located(message: str) -> str:
    """Turn msgspec's ``Expected X - at `$.a.b``` into ``field `a.b`: expected X``."""
    match = _LOCATION.match(message)
    if not match:
        return message[:1].lower() + message[1:]
    field = match["path"].lstrip(".") or "(top level)"
    problem = match["problem"]
    return f"field `{field}`: {problem[:1].lower()}{problem[1:]}"


def resolve_local_artifact(contract: Contract, folder: str | Path) -> Path:
    """The artifact's path for a local URI, refused if it leaves the function folder.

    ``file:///abs/path`` is taken as given (an operator's explicit choice); a
    relative path must stay inside the folder, so a contract copied from
    elsewhere cannot read arbitrary files.
    """
    uri = contract.artifact.uri
    if uri.startswith("file://"):
        path = Path(uri.removeprefix("file://"))
        if not path.is_absolute():
            raise ContractError(f"field `artifact.uri`: file:// URIs must be absolute, got {uri!r}")
        return path
    if "://" in uri:
        raise ContractError(
            f"field `artifact.uri`: expected a path relative to the function folder or a "
            f"file:// URI, got {uri!r}"
        )
    base = Path(folder).resolve()
    path = (base / uri).resolve()
    if not path.is_relative_to(base):
        raise ContractError(f"field `artifact.uri`: {uri!r} points outside the function folder")
    return path
