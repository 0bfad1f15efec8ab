"""A real gRPC server process for the tests (``python -m modelfn.adapters.server`` with ``MODELFN_SERVE=grpc``)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import tritonclient.grpc as triton
from helpers import LoggedProcess, free_port
from tritonclient.utils import InferenceServerException


class GrpcServer(LoggedProcess):
    """A real gRPC server of ``folder`` on a free port: the Cloud Run image's command, ``MODELFN_SERVE=grpc``."""

    def __init__(self, folder: Path, log_path: Path, env: dict[str, str], *, cli: bool = False) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        if cli:
            command = [sys.executable, "-m", "modelfn", "serve", str(folder), "--grpc", "--port", str(self.port)]
        else:
            command = [sys.executable, "-m", "modelfn.adapters.server", "--source", str(folder / "main.py"),
                       "--host", "127.0.0.1", "--port", str(self.port)]  # fmt: skip
        super().__init__(command, log_path, {**os.environ, "MODELFN_SERVE": "grpc", **env})
        self.metrics_url = (
            f"http://127.0.0.1:{env['MODELFN_METRICS_PORT']}/metrics" if "MODELFN_METRICS_PORT" in env else ""
        )

    def wait_live(self, timeout: float = 60.0) -> None:
        client = triton.InferenceServerClient(self.address)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            with contextlib.suppress(InferenceServerException):
                if client.is_server_live(client_timeout=5):
                    return
            time.sleep(0.05)
        raise TimeoutError(f"server not live after {timeout} s:\n{self.log()}")

    def requests_logged(self) -> list[dict]:
        return [json.loads(line) for line in self.log().splitlines() if '"modelfn.request"' in line]


def pixels(rows: np.ndarray) -> triton.InferInput:
    tensor = triton.InferInput("pixels", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows.astype(np.float32))
    return tensor


def slow_inputs(trips: int) -> list[triton.InferInput]:
    x = triton.InferInput("x", [256, 256], "FP32")
    x.set_data_from_numpy(np.eye(256, dtype=np.float32))
    count = triton.InferInput("trips", [1], "INT64")
    count.set_data_from_numpy(np.array([trips], dtype=np.int64))
    return [x, count]
