"""Test helpers shared by fixtures: function folders, free ports, server processes."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import requests
import yaml

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "functions" / "digits"
HELPDESK = ROOT / "functions" / "helpdesk"
#: Screenshots and other files a run leaves for people to look at.
ARTIFACTS = Path(os.environ.get("MODELFN_TEST_ARTIFACTS", ROOT / "build" / "test-artifacts"))


@contextlib.contextmanager
def logging_restored() -> Iterator[None]:
    """Undo what ``logging.config.dictConfig`` does to the process: the root's handlers and level, and
    every logger it disabled (all that existed, ``modelfn``'s included)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for logger in logging.Logger.manager.loggerDict.values():
            if isinstance(logger, logging.Logger):
                logger.disabled = False
        root.handlers[:] = handlers
        root.setLevel(level)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def load_train_module() -> Any:
    """functions/digits/train.py as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("digits_train", DIGITS / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def copy_function(dest: Path, source: Path = DIGITS, **changes: Any) -> Path:
    """Copy a function folder and apply top-level contract changes (``None`` deletes a key)."""
    folder = Path(tempfile.mkdtemp(dir=dest)) / source.name
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("__pycache__", "train.py"))
    if changes:
        edit_contract(folder, **changes)
    return folder


def edit_contract(folder: Path, **changes: Any) -> None:
    path = folder / "modelfn.yaml"
    contract = yaml.safe_load(path.read_text())
    for key, value in changes.items():
        if value is None:
            contract.pop(key, None)
        else:
            contract[key] = value
    path.write_text(yaml.safe_dump(contract, sort_keys=False))


def near_documented(measured: float, documented: float, samples: int) -> bool:
    """Whether a figure measured here matches the contract's, measured where the model was trained.

    Another CPU's kernels may tip a sample whose two best classes tie to a few ulps, so one sample
    either way is allowed (plus the rounding of the documented figure); see the rules in conftest.
    """
    return abs(measured - documented) <= 1 / samples + 5e-4


#: Source for a child process's own peak resident memory: ``peak_bytes()``. Not ``ru_maxrss``, which
#: Linux carries across exec: a child of a large pytest process starts at its parent's peak, and a
#: bound on its growth could then never fail.
PEAK_BYTES = """
def peak_bytes():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
"""


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class LoggedProcess:
    """A child process whose output goes to a log file; :meth:`stop` ends it (SIGTERM, then SIGKILL)."""

    def __init__(self, command: list[str], log_path: Path, env: dict[str, str], cwd: Path | None = None) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(command, cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


class Server(LoggedProcess):
    """A real ``modelfn serve`` process on a free port, its log captured to a file."""

    def __init__(self, folder: Path, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "modelfn", "serve", str(folder), "--port", str(self.port)]
        super().__init__(command, log_path, {**os.environ, **(env or {})})

    def wait_live(self, timeout: float = 30.0) -> None:
        def exited() -> None:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")

        if not poll_live(self.url, time.monotonic() + timeout, exited):
            raise TimeoutError(f"server not live after {timeout} s:\n{self.log()}")


def poll_live(url: str, deadline: float, check: Callable[[], None] = lambda: None) -> bool:
    """Whether ``GET url/v2/health/live`` answers 200 before the monotonic ``deadline``; ``check`` may raise."""
    while time.monotonic() < deadline:
        check()
        with contextlib.suppress(requests.ConnectionError, requests.Timeout):  # a busy machine: wait on
            if requests.get(url + "/v2/health/live", timeout=5).status_code == 200:
                return True
        time.sleep(0.05)
    return False


@contextlib.contextmanager
def running(folder: Path, log_path: Path, env: dict[str, str] | None = None) -> Iterator[Server]:
    server = Server(folder, log_path, env)
    try:
        server.wait_live()
        yield server
    finally:
        server.stop()


#: Appended to a copy of the digits hooks: ``{"sleep_s": s, ...}`` sleeps first, ``{"raise": true}`` raises.
FAULTY_HOOKS = """

import time as _time

_digits_preprocess = preprocess


def preprocess(payload):
    if isinstance(payload, dict) and payload.pop("raise", False):
        raise RuntimeError("injected fault in the pre hook")
    if isinstance(payload, dict) and "sleep_s" in payload:
        _time.sleep(min(float(payload.pop("sleep_s")), 600))
    return _digits_preprocess(payload)
"""


def faulty_function(dest: Path) -> Path:
    """A copy of the digits function whose pre hook sleeps or raises when the payload asks."""
    folder = copy_function(dest)
    with open(folder / "hooks.py", "a") as hooks:
        hooks.write(FAULTY_HOOKS)
    return folder


# -- the page's drawing pad, driven with the mouse (tests/protocols/test_page.py, tests/tooling/test_web_bundle.py)


def pad_centre(page: Any) -> tuple[float, float]:
    """The centre of the page's drawing pad, in the page's coordinates."""
    box = page.get_by_label("Drawing pad: draw a digit with the mouse or a finger").bounding_box()
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def stroke(page: Any, points: list[tuple[float, float]]) -> None:
    """One pen stroke through ``points``: press, move, release."""
    page.mouse.move(*points[0])
    page.mouse.down()
    for point in points[1:]:
        page.mouse.move(*point, steps=2)
    page.mouse.up()


def draw_zero(page: Any) -> None:
    x, y = pad_centre(page)
    stroke(
        page, [(x + 60 * math.sin(t / 30 * 2 * math.pi), y - 95 * math.cos(t / 30 * 2 * math.pi)) for t in range(31)]
    )


def draw_one(page: Any) -> None:
    x, y = pad_centre(page)
    stroke(page, [(x + 5, y - 100), (x, y), (x - 5, y + 100)])


def provider_mirror() -> Path | None:
    """A preinstalled filesystem mirror of Terraform providers, if the machine has one (it has no registry access)."""
    candidates = [os.environ.get("MODELFN_TF_MIRROR", ""), "/opt/tf-plugins", "/usr/share/terraform/plugins"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "registry.terraform.io").is_dir():
            return Path(candidate)
    return None


def terraform_env(workdir: Path) -> dict[str, str]:
    """Environment for a Terraform run that writes nothing outside ``workdir`` and phones no one."""
    env = {**os.environ, "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1", "TF_DATA_DIR": str(workdir / ".terraform")}
    mirror = provider_mirror()
    config = workdir / "terraform.rc"
    if mirror is not None:
        config.write_text(
            "provider_installation {\n"
            "  filesystem_mirror {\n"
            f'    path    = "{mirror}"\n'
            '    include = ["registry.terraform.io/hashicorp/*"]\n'
            "  }\n"
            "}\n"
        )
    else:
        config.write_text("")
    env["TF_CLI_CONFIG_FILE"] = str(config)
    return env
