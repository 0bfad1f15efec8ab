"""functions/chat served for tests: on functions-framework (Cloud Functions gen2) or ``modelfn serve`` (the
Cloud Run image's server), a copy whose answers always run to ``max_tokens``, and its generation metrics."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import requests
import yaml
from helpers import ROOT, copy_function, edit_contract, free_port, poll_live, running

CHAT = ROOT / "functions" / "chat"
PATHS = ["functions-framework", "modelfn serve"]


@contextlib.contextmanager
def functions_framework(folder: Path, log: Path) -> Iterator[str]:
    """``functions-framework --target handle`` on ``folder``, as Cloud Functions gen2 runs it; yields its URL."""
    port = free_port()
    command = [str(Path(sys.executable).parent / "functions-framework"), "--target", "handle", "--source",
               str(folder / "main.py"), "--port", str(port)]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ), cwd=folder)
        url = f"http://127.0.0.1:{port}"
        try:
            assert poll_live(url, time.monotonic() + 60, lambda: None), log.read_text()
            yield url
        finally:
            process.terminate()
            process.wait(10)


@contextlib.contextmanager
def serve(path: str, folder: Path, log: Path) -> Iterator[str]:
    """``folder`` served on ``path`` (one of :data:`PATHS`); yields its URL."""
    if path == "functions-framework":
        with functions_framework(folder, log) as url:
            yield url
    else:
        with running(folder, log) as server:
            yield server.url


def long_answers(dest: Path, max_tokens: int = 2000) -> Path:
    """functions/chat with its end token moved to one the model never writes: every answer runs to max_tokens."""
    folder = copy_function(dest, CHAT)
    config_path = folder / "model" / "genai_config.json"
    config = json.loads(config_path.read_text())
    config["model"]["eos_token_id"] = 0  # <|pad|>: never a training target
    config_path.write_text(json.dumps(config))
    contract = yaml.safe_load((folder / "modelfn.yaml").read_text())
    contract["artifact"]["files"]["genai_config.json"] = hashlib.sha256(config_path.read_bytes()).hexdigest()
    limits = {**contract["generation"], "max_prompt_tokens": 16, "max_tokens": max_tokens}
    edit_contract(folder, artifact=contract["artifact"], generation=limits)
    return folder


def generation_counts(url: str) -> tuple[float, float]:
    """``(modelfn_generation_cancelled_total, modelfn_generation_tokens_total)`` of chat, from ``/metrics``."""
    values = {"cancelled": 0.0, "tokens": 0.0}
    for line in requests.get(f"{url}/metrics", timeout=60).text.splitlines():
        for name in values:
            if line.startswith(f'modelfn_generation_{name}_total{{model="chat"}}'):
                values[name] = float(line.split()[-1])
    return values["cancelled"], values["tokens"]


def wait_cancelled(url: str, at_least: float) -> tuple[float, float]:
    deadline = time.monotonic() + 60
    while generation_counts(url)[0] < at_least and time.monotonic() < deadline:
        time.sleep(0.05)
    return generation_counts(url)
