"""Fixtures: the digits function in-process and as a real server, held-out data, folder copies."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import functions_framework
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from emulators import S3_ENV, environment, gcs_server, new_bucket, s3_server
from helpers import DIGITS, Server, copy_function, load_train_module, running


@pytest.fixture(scope="session")
def heldout() -> tuple[np.ndarray, np.ndarray]:
    """The 360 held-out digits images (float32, 0..16) and their labels."""
    _, x_test, _, y_test = load_train_module().heldout_split()
    return x_test, y_test


def make_client(folder: Path) -> Any:
    """functions-framework's own app for ``folder/main.py``, driven in-process."""
    return functions_framework.create_app("handle", str(folder / "main.py")).test_client()


@pytest.fixture(scope="session")
def digits_client() -> Any:
    return make_client(DIGITS)


@pytest.fixture
def function_copy(tmp_path: Path):
    """A factory: copy of the digits folder with contract changes applied."""

    def make(**changes: Any) -> Path:
        return copy_function(tmp_path, **changes)

    return make


@pytest.fixture(scope="session")
def digits_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real ``modelfn serve functions/digits`` process for the session."""
    with running(DIGITS, tmp_path_factory.mktemp("server") / "serve.log") as server:
        yield server


@pytest.fixture(scope="session")
def emulators() -> Iterator[dict[str, str]]:
    """Both emulators for the whole session, with the SDK variables set (and passed to child processes)."""
    with s3_server() as s3_url, gcs_server() as gcs_url:
        values = {
            **S3_ENV,
            "AWS_ENDPOINT_URL": s3_url,
            "STORAGE_EMULATOR_HOST": gcs_url,
            "GOOGLE_CLOUD_PROJECT": "test",
        }
        with environment(values):
            yield values


@pytest.fixture(params=["file", "gs", "s3"])
def store_uri(request, emulators, tmp_path) -> str:
    """A fresh, empty store root on each backend."""
    if request.param == "file":
        return str(tmp_path / "store")
    return f"{request.param}://{new_bucket(request.param)}/models"


@pytest.fixture(scope="session")
def lambda_tasks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """serverless.yml's zips, built for this interpreter and unpacked (once for the session)."""
    from lambda_deploy import build_tasks

    return build_tasks(tmp_path_factory.mktemp("lambda-dist"))


@pytest.fixture(scope="session")
def aws_registry(emulators) -> dict[str, str]:
    """The buckets serverless.yml names, on moto, with the models its zip functions load."""
    from lambda_deploy import make_registry

    return make_registry()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright (``make test`` installs it).

    Per module, not per session: Playwright's sync API runs an event loop in this thread while it
    is open, and a test that calls ``asyncio.run`` (tritonclient's aio client) cannot run beside it.
    """
    import shutil

    from playwright.sync_api import sync_playwright

    from modelfn.tooling.browser_timing import CHROMIUM_ARGS

    executable = shutil.which("chromium")
    assert executable, "Chromium is not installed: `make test` installs it (apt-get install chromium)"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()
