"""Storage events for tests: a functions-framework server taking CloudEvents, objects in the GCS emulator."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import requests
from helpers import free_port


@contextlib.contextmanager
def ff_server(folder: Path, log: Path, env: dict[str, str], python: Path | None = None) -> Iterator[str]:
    """``functions-framework --target handle_event`` on ``folder``; yields its URL.

    ``python``: the interpreter whose functions-framework runs it (default: this one).
    """
    port = free_port()
    functions_framework = str(Path(python or sys.executable).parent / "functions-framework")
    command = [
        functions_framework,
        "--target",
        "handle_event",
        "--source",
        str(folder / "main.py"),
        "--port",
        str(port),
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env}, cwd=folder)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    requests.get(url, timeout=5)
                    break
                except (requests.ConnectionError, requests.Timeout):  # not up yet, or slow on a busy machine
                    assert process.poll() is None, log.read_text()
                    time.sleep(0.1)
            yield url
        finally:
            process.terminate()
            process.wait(10)


def upload(bucket: str, name: str, data: bytes) -> dict[str, str]:
    """Put an object in the emulator; its data as a storage event carries it (int64s as strings)."""
    from google.cloud import storage

    blob = storage.Client().bucket(bucket).blob(name)
    blob.upload_from_string(data)
    blob.reload()
    return {
        "bucket": bucket,
        "name": name,
        "generation": str(blob.generation),
        "metageneration": "1",
        "size": str(blob.size),
        "contentType": "text/csv",
        "kind": "storage#object",
        "id": f"{bucket}/{name}/{blob.generation}",
    }


def read(bucket: str, name: str) -> bytes | None:
    from google.cloud import storage

    blob = storage.Client().bucket(bucket).blob(name)
    return blob.download_as_bytes() if blob.exists() else None


def binary_event(
    url: str, data: dict[str, str], kind: str = "google.cloud.storage.object.v1.finalized"
) -> requests.Response:
    headers = {
        "ce-id": uuid.uuid4().hex,
        "ce-specversion": "1.0",
        "ce-type": kind,
        "ce-source": f"//storage.googleapis.com/projects/_/buckets/{data['bucket']}",
        "ce-subject": f"objects/{data['name']}",
        "ce-time": "2026-11-23T12:00:00Z",
        "Content-Type": "application/json",
    }
    return requests.post(url, data=json.dumps(data), headers=headers, timeout=60)
