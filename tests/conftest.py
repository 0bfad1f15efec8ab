"""Fixtures: the digits function in-process and as a real server, held-out data, folder copies.

Rules every test here follows, so that the suite passes on any machine, in any order, under load:

- **Any machine.** An expectation that depends on the machine (a quantization error, a float
  tolerance, a time, a throughput) is computed on the running machine, or chosen so that every CPU
  agrees; a figure copied from one run is not an expectation. The int8 edge test, for one, measures
  the quantized model's error here first and sets its thresholds on either side of it.
- **Any order.** pytest-randomly shuffles every run; no test leans on another's state.
- **Under load.** No one-second timeouts against a server: waits are bounded by polling with
  generous deadlines (``helpers.poll_live``), and performance is measured in ``bench/``, not here.
- **Logging left as found.** ``logging.config.dictConfig`` (functions-framework calls it under
  ``LOG_EXECUTION_ID``) disables every logger that exists; a test that triggers it restores the
  state (``helpers.logging_restored``), and :func:`logging_left_as_found` fails one that does not.
- **A clean tree.** A test writes under ``tmp_path`` only; tools that keep a cache (schemathesis)
  run in a temporary folder. A run that leaves ``git status`` changed fails (:func:`pytest_sessionfinish`).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import functions_framework
import numpy as np
import pytest
import requests

sys.path.insert(0, str(Path(__file__).parent))

from emulators import S3_ENV, environment, gcs_server, new_bucket, s3_server
from helpers import DIGITS, Server, copy_function, free_port, load_train_module, running


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


@pytest.fixture(scope="session", params=["functions-framework", "modelfn serve"])
def chat_url(request, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """functions/chat served on each HTTP path a function is deployed on, once per session."""
    from generative import CHAT, serve

    with serve(request.param, CHAT, tmp_path_factory.mktemp("chat") / "server.log") as url:
        yield url


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


@pytest.fixture(scope="session")
def pubsub_emulator() -> Iterator[str]:
    """The gcloud SDK's Pub/Sub emulator (Java), reached over its REST API; skipped where it is absent."""
    import shutil
    import signal

    if shutil.which("gcloud") is None or shutil.which("java") is None:
        pytest.skip("the Pub/Sub emulator needs gcloud (with its pubsub-emulator component) and Java")
    port = free_port()
    process = subprocess.Popen(
        ["gcloud", "beta", "emulators", "pubsub", "start", f"--host-port=127.0.0.1:{port}", "--project=test"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # gcloud starts a java child: stop the whole group
    )
    url = f"http://127.0.0.1:{port}/v1/projects/test"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.skip("the Pub/Sub emulator did not start (is the pubsub-emulator component installed?)")
            try:
                requests.get(f"{url}/topics", timeout=5)
                break
            except (requests.ConnectionError, requests.Timeout):  # the JVM starting on a busy machine
                time.sleep(0.25)
        else:
            pytest.fail("the Pub/Sub emulator did not answer within 60 s")
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(10)


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


@pytest.fixture(autouse=True)
def logging_left_as_found() -> Iterator[None]:
    """Fail the test that disabled a logger: later tests' log assertions would see nothing."""
    yield
    disabled = sorted(name for name, logger in logging.Logger.manager.loggerDict.items()
                      if isinstance(logger, logging.Logger) and logger.disabled)  # fmt: skip
    if disabled:
        for name in disabled:
            logging.getLogger(name).disabled = False  # so that only this test fails
        pytest.fail(f"the test disabled loggers {disabled[:5]}...: wrap what did it in helpers.logging_restored()")


def _tree_status() -> set[str] | None:
    """``git status --porcelain`` of the checkout, or None outside a git work tree."""
    try:
        done = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=Path(__file__).parent,
                              capture_output=True, text=True, timeout=60)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return set(done.stdout.splitlines()) if done.returncode == 0 else None


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_STATUS] = _tree_status()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail a run that changed the checkout: a test must write under its ``tmp_path`` only."""
    before = session.config.stash.get(_STATUS, None)
    after = _tree_status() if before is not None else None
    changed = sorted(after - before) if after is not None and before is not None else []
    if changed and not hasattr(session.config, "workerinput"):
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("the test run changed the checkout (git status): " + ", ".join(changed), red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_STATUS = pytest.StashKey[set[str] | None]()
