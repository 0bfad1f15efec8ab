"""The digests a contract pins for a model file and every external-data file it names.

``modelfn digests FOLDER`` prints them as the ``artifact:`` block of the contract, so a model
saved with ``onnx.save_model(..., save_as_external_data=True)`` (needed past protobuf's 2 GB) is
pinned file by file without hashing by hand. Locations that leave the model's folder are refused.
"""

from __future__ import annotations

import posixpath
from pathlib import Path

from modelfn.errors import ContractError
from modelfn.runtime.digests import hash_path
from modelfn.runtime.predictors.onnx_external import MalformedModel, external_locations_in_file


def external_files(model: Path) -> list[str]:
    """The distinct external-data locations ``model`` names, normalised, in order of first use."""
    with model.open("rb") as handle:
        try:
            found = external_locations_in_file(handle.fileno())
        except MalformedModel as exc:
            raise ContractError(f"{model} is not an ONNX model: {exc}") from None
    names: list[str] = []
    for tensor, location in found:
        name = posixpath.normpath(location) if location else ""
        if not name or name.startswith(("/", "../")) or name == "..":
            raise ContractError(f"{model}: tensor {tensor!r} keeps its data at {location!r}, outside its folder")
        if name not in names:
            names.append(name)
    return names


def pins(model: Path) -> tuple[str, dict[str, str]]:
    """``(sha256 of the model file, {external file: sha256})``."""
    digests = {}
    for name in external_files(model):
        path = model.parent / name
        if not path.resolve().is_relative_to(model.parent.resolve()) or not path.is_file():
            raise ContractError(f"{model}: external data file {name!r} is missing or leaves the model's folder")
        digests[name] = hash_path(path)[0]
    return hash_path(model)[0], digests


def contract_artifact_name(contract_file: Path) -> str | None:
    """The file in the folder that a contract's ``artifact.uri`` names, or None. Read as plain YAML: a
    contract whose pins are stale, which is why one runs ``modelfn digests``, still names its file."""
    import yaml

    try:
        raw = yaml.safe_load(contract_file.read_text())
    except (OSError, yaml.YAMLError):
        return None
    artifact = raw.get("artifact") if isinstance(raw, dict) else None
    uri = artifact.get("uri") if isinstance(artifact, dict) else None
    return uri if isinstance(uri, str) and uri and "://" not in uri else None  # a file in the folder
