"""Real local object stores for tests: moto's S3 server and gcp-storage-emulator.

Both run in this process on free ports; the SDKs reach them through their
standard variables (AWS_ENDPOINT_URL, STORAGE_EMULATOR_HOST), which also reach
the function processes the tests start.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Iterator

from helpers import free_port

S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@contextlib.contextmanager
def s3_server() -> Iterator[str]:
    """A moto S3 server; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@contextlib.contextmanager
def gcs_server() -> Iterator[str]:
    """A gcp-storage-emulator server (in memory); yields its URL."""
    from gcp_storage_emulator.server import create_server

    logging.getLogger("gcp_storage_emulator").setLevel(logging.ERROR)
    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def new_bucket(scheme: str) -> str:
    """Create a fresh bucket in the running emulator and return its name."""
    name = f"models-{uuid.uuid4().hex[:12]}"
    if scheme == "s3":
        import boto3

        boto3.client("s3").create_bucket(Bucket=name)
    elif scheme == "gs":
        from google.cloud import storage

        storage.Client().create_bucket(name)
    return name


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
