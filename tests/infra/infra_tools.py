"""The offline checkers the infra tests run: Terraform (the machine's), checkov and osls (``make tools``)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT

TOOLS = ROOT / ".tools"
INFRA = ROOT / "infra"


def terraform_files() -> list[Path]:
    """Every ``.tf`` file of infra/, through the link of infra/modules to the package's assets
    (``Path.rglob`` does not follow a linked folder)."""
    found = []
    for folder, _, names in os.walk(INFRA, followlinks=True):
        found += [Path(folder) / name for name in names if name.endswith(".tf")]
    return sorted(found)


def tool(name: str) -> str:
    """A checker's executable; a clear failure (not a skip) when it is missing: CI must run these."""
    local = {"checkov": TOOLS / "checkov" / "bin" / "checkov", "sls": TOOLS / "node_modules" / ".bin" / "sls"}
    path = local.get(name)
    if path is not None and path.is_file():
        return str(path)
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"{name} is not installed: `make tools` installs checkov and osls; Terraform comes with the machine"
        )
    return found


def terraform(
    args: list[str], cwd: Path, env: dict[str, str], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [tool("terraform"), args[0], "-no-color", *args[1:]],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, (
        f"terraform {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    )
    return result


def plain(value: Any) -> Any:
    """python-hcl2 8 keeps HCL's quotes on keys and strings; take them off."""
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items() if k not in ("__is_block__", "__comments__")}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value
