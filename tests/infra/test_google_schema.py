"""The Google module against the google and google-beta providers' own schemas (read offline).

Every resource and data source type must exist in the provider its ``provider`` argument names;
every argument and nested block (``dynamic`` ones too) must exist at its level, and every required
argument and block must be there. The schemas are those of the providers' version that
``provider_schema`` reads, which the module's ``required_providers`` range must include.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import hcl2
import pytest
from infra_tools import INFRA, TOOLS
from provider_schema import Block, ProviderSchema, load

#: Terraform's own arguments and blocks, valid in every resource and data source.
META = {"count", "for_each", "depends_on", "provider", "lifecycle", "provisioner", "connection"}
WHEELS = {"google": "cdktn_provider_google-*.whl", "google-beta": "cdktn_provider_google_beta-*.whl"}


@pytest.fixture(scope="module")
def schemas() -> dict[str, ProviderSchema]:
    found = {}
    for provider, pattern in WHEELS.items():
        wheels = sorted((TOOLS / "google-provider").glob(pattern))
        if not wheels:
            pytest.fail(f"the {provider} provider's schema is not downloaded: `make tools` fetches it")
        found[provider] = load(wheels[-1])
    return found


def module_blocks(folder: Path) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(``resource`` | ``data``, type, name, body) for every resource and data source in ``folder``."""
    found = []
    for path in sorted(folder.glob("*.tf")):
        with path.open() as handle:
            parsed = hcl2.load(handle)
        for kind in ("resource", "data"):
            for entry in parsed.get(kind, []):
                for type_name, named in entry.items():
                    for name, body in named.items():
                        found.append((kind, type_name.strip('"'), name.strip('"'), body))
    return found


def problems(body: dict[str, Any], schema: Block, where: str, *, top: bool = True) -> list[str]:
    """Every name ``body`` uses that ``schema`` lacks, and every required one it leaves out."""
    found: list[str] = []
    present = set()
    for key, value in body.items():
        if key.startswith("__"):  # python-hcl2's markers (comments, is_block)
            continue
        if key == "dynamic":
            for entry in value:
                for block_name, spec in entry.items():
                    block_name = block_name.strip('"')
                    present.add(block_name)
                    nested = schema.blocks.get(block_name)
                    if nested is None:
                        found.append(f"{where}: no block {block_name!r}")
                        continue
                    for content in spec.get("content", []):
                        found += problems(content, nested[0], f"{where}.{block_name}", top=False)
            continue
        if top and key in META:
            continue
        present.add(key)
        if key in schema.arguments:
            continue
        if key in schema.blocks and isinstance(value, list) and all(isinstance(v, dict) for v in value):
            for occurrence in value:
                found += problems(occurrence, schema.blocks[key][0], f"{where}.{key}", top=False)
            continue
        kind = "argument" if key not in schema.blocks else "block written as an argument"
        found.append(f"{where}: no {kind} {key!r}")
    required = [n for n, r in schema.arguments.items() if r] + [n for n, (_, r) in schema.blocks.items() if r]
    found += [f"{where}: required {name!r} missing" for name in required if name not in present]
    return found


def check_module(folder: Path, schemas: dict[str, ProviderSchema]) -> list[str]:
    found = []
    for kind, type_name, name, body in module_blocks(folder):
        provider = str(body.get("provider", "google")).strip('"${}')
        schema = schemas[provider].types.get((kind, type_name))
        where = f"{'data.' if kind == 'data' else ''}{type_name}.{name}"
        if schema is None:
            found.append(f"{where}: {provider} {schemas[provider].version} has no {kind} {type_name!r}")
            continue
        found += problems(body, schema, where)
    return found


@pytest.mark.parametrize("module", ["gcp", "gcp-site"])
def test_the_google_modules_fit_the_providers_schemas(schemas, module: str) -> None:
    assert check_module(INFRA / "modules" / module, schemas) == []
    assert schemas["google"].version == schemas["google-beta"].version == "8.7.0"


def test_a_planted_typo_is_caught_at_its_level(schemas, tmp_path: Path) -> None:
    """The check can fail: a misspelled nested argument, a missing required one, a beta-only type on google."""
    text = (INFRA / "modules" / "gcp" / "main.tf").read_text()
    planted = text.replace("max_instance_request_concurrency", "max_instance_request_concurency", 1)
    planted = planted.replace('resource "google_api_gateway_api" "api" {\n  provider = google-beta\n',
                              'resource "google_api_gateway_api" "api" {\n', 1)  # fmt: skip
    topic = r'(resource "google_pubsub_topic" "requests" \{.*?)\n  name += [^\n]+'
    planted = re.sub(topic, r"\1", planted, count=1, flags=re.S)
    planted = planted.replace('attribute = "bucket"', 'atribute = "bucket"', 1)  # inside two dynamic blocks
    assert planted.count("concurency") == planted.count("atribute") == 1
    folder = tmp_path / "gcp"
    folder.mkdir()
    (folder / "main.tf").write_text(planted)
    found = check_module(folder, schemas)
    typo = "max_instance_request_concurency"
    assert f"google_cloudfunctions2_function.function.service_config: no argument {typo!r}" in found
    assert "google_api_gateway_api.api: google 8.7.0 has no resource 'google_api_gateway_api'" in found
    assert "google_pubsub_topic.requests: required 'name' missing" in found
    nested = "google_cloudfunctions2_function.function.event_trigger.event_filters"
    assert f"{nested}: no argument 'atribute'" in found and f"{nested}: required 'attribute' missing" in found
    assert len(found) == 5, found


def _parse(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


@pytest.mark.parametrize("path", ["modules/gcp/versions.tf", "modules/gcp-site/versions.tf", "gcp/main.tf"])
def test_required_providers_include_the_checked_version(path: str) -> None:
    """The ``>= X, < Y`` range of both providers must hold the version the schema check read."""
    text = (INFRA / path).read_text()
    assert re.search(r"\bgoogle = \{", text), "the google provider is required"
    for provider in ("google", "google-beta"):
        if not re.search(rf"\b{re.escape(provider)} = \{{", text):
            continue  # the site module needs no beta resource
        block = re.search(rf'\b{re.escape(provider)} = \{{[^}}]*version\s*=\s*"([^"]+)"', text)
        assert block is not None, provider
        bounds = dict(re.findall(r"(>=|<)\s*([\d.]+)", block[1]))
        assert set(bounds) == {">=", "<"}, f"{provider}: pin both ends, got {block[1]!r}"
        version = (8, 7, 0)
        assert _parse(bounds[">="]) <= version < _parse(bounds["<"]), f"{provider} {block[1]!r} excludes 8.7.0"
