"""Every function folder passes `modelfn check`: its contract is valid, its model loads, its example answers."""

import subprocess
import sys
from pathlib import Path

import pytest

FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"
FOLDERS = sorted(path.parent for path in FUNCTIONS.glob("*/modelfn.yaml"))


@pytest.mark.parametrize("folder", FOLDERS, ids=[folder.name for folder in FOLDERS])
def test_modelfn_check(folder: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "modelfn", "check", str(folder)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_project_has_a_function() -> None:
    assert FOLDERS, "functions/ has no function yet: modelfn init MODEL --name NAME --description TEXT"
