"""The Google provider's resource schemas, read offline from the CDK prebuilt providers' jsii assemblies.

``hashicorp/google`` cannot be downloaded here, so ``terraform validate`` cannot run on the Google
module. PyPI's ``cdktn-provider-google`` and ``cdktn-provider-google-beta`` (``make tools``) are
generated from the providers' own schemas: their ``_jsii/*.jsii.tgz`` holds ``package/.jsii``, a JSON
assembly with one config struct per resource and data source, whose properties are the arguments
(camelCase) and whose struct-typed properties are the nested blocks.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: What a resource class's initializer summary says: its registry page, its provider version, its type.
_LINK = re.compile(
    r"registry\.terraform\.io/providers/hashicorp/google(?:-beta)?/(?P<version>[\d.]+)/docs/"
    r"(?P<kind>resources|data-sources)/\w+ (?P<type>\w+)\}"
)
_BASES = {"cdktn.TerraformResource": "resource", "cdktn.TerraformDataSource": "data"}


@dataclass
class Block:
    """One level of a resource's configuration: its arguments and nested blocks, each required or not."""

    arguments: dict[str, bool] = field(default_factory=dict)
    blocks: dict[str, tuple[Block, bool]] = field(default_factory=dict)


@dataclass
class ProviderSchema:
    version: str
    #: ("resource" | "data", type name) -> the top-level block
    types: dict[tuple[str, str], Block]


def snake(name: str) -> str:
    """jsii's camelCase property name back to Terraform's snake_case one."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def load(wheel: Path) -> ProviderSchema:
    with zipfile.ZipFile(wheel) as archive:
        (member,) = [name for name in archive.namelist() if name.endswith(".jsii.tgz")]
        with tarfile.open(fileobj=io.BytesIO(archive.read(member))) as tar:
            handle = tar.extractfile("package/.jsii")
            assert handle is not None
            assembly = json.load(handle)
    types: dict[str, Any] = assembly["types"]
    structs: dict[str, Block] = {}

    def struct(fqn: str) -> Block:
        if fqn in structs:
            return structs[fqn]
        block = structs[fqn] = Block()  # registered first: a struct may nest itself
        for prop in types[fqn].get("properties", []):
            nested = _struct_of(prop["type"], types)
            required = not prop.get("optional", False)
            if nested is None:
                block.arguments[snake(prop["name"])] = required
            else:
                block.blocks[snake(prop["name"])] = (struct(nested), required)
        return block

    found: dict[tuple[str, str], Block] = {}
    versions = set()
    for entry in types.values():
        kind = _BASES.get(entry.get("base", ""))
        if kind is None:
            continue
        match = _LINK.search(entry["initializer"]["docs"]["summary"])
        assert match is not None, entry["fqn"]
        versions.add(match["version"])
        (config,) = [p for p in entry["initializer"]["parameters"] if p["name"] == "config"]
        found[(kind, match["type"])] = struct(config["type"]["fqn"])
    (version,) = versions
    return ProviderSchema(version, found)


def _struct_of(type_ref: dict[str, Any], types: dict[str, Any]) -> str | None:
    """The struct a property's type is (a block), directly, in a list or in a union; None for a value."""
    fqn = type_ref.get("fqn")
    if fqn is not None:
        return fqn if types.get(fqn, {}).get("datatype") else None
    if "collection" in type_ref:
        return _struct_of(type_ref["collection"]["elementtype"], types)
    for option in type_ref.get("union", {}).get("types", []):
        found = _struct_of(option, types)
        if found is not None:
            return found
    return None
