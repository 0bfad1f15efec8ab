"""Serving gRPC: traffic policies on gRPC calls, and ``modelfn serve --grpc``'s drain on SIGTERM."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import tritonclient.grpc as triton
from click.testing import CliRunner
from grpc_servers import GrpcServer, pixels, slow_inputs
from helpers import DIGITS, copy_function
from models import write_slow_function

from modelfn.cli import cli
from modelfn.registry import Registry


def test_traffic_policies_apply_to_grpc_calls(tmp_path) -> None:
    """An A/B split with a sticky header: gRPC calls share the versions, and a caller's metadata keeps one."""
    registry = str(tmp_path / "registry")
    opened = Registry.open(registry)
    for version in ("1", "2"):
        opened.push(copy_function(tmp_path, DIGITS, version=version))
    opened.promote("digits", "1", "prod")
    result = CliRunner().invoke(cli, ["traffic", "digits", "--alias", "prod", "--split", "1=50,2=50",
                                      "--sticky-header", "X-User", "--registry", registry])  # fmt: skip
    assert result.exit_code == 0, result.output
    process = GrpcServer(DIGITS, tmp_path / "serve.log", {"MODELFN_MODEL": f"{registry}/digits@prod"})
    try:
        process.wait_live()
        client = triton.InferenceServerClient(process.address)
        row = [pixels(np.zeros((1, 64)))]

        def version(**headers: str) -> str:
            return client.infer("digits", row, headers=headers).get_response().model_version

        assert {version() for _ in range(60)} == {"1", "2"}  # 2**-59 that one side is never drawn
        for user in ("alice", "bob", "carol"):
            assert len({version(**{"x-user": user}) for _ in range(10)}) == 1, user
        pinned = client.infer("digits", row, model_version="2").get_response().model_version
        assert pinned == "2"
    finally:
        process.stop()


@pytest.mark.slow
def test_modelfn_serve_grpc_drains_on_sigterm(tmp_path) -> None:
    """``modelfn serve --grpc``: SIGTERM lets the call in flight finish, refuses new ones, exits 0."""
    slow = write_slow_function(tmp_path / "slow")
    process = GrpcServer(slow, tmp_path / "serve.log", {"MODELFN_LOG_FORMAT": "json"}, cli=True)
    try:
        process.wait_live()
        client = triton.InferenceServerClient(process.address)
        started = time.monotonic()
        client.infer("slow", slow_inputs(200))
        per_trip = (time.monotonic() - started) / 200
        trips = int(min(max(1.5 / max(per_trip, 1e-6), 200), 10**6))  # about 1.5 s of work
        outcome: dict[str, object] = {}

        def in_flight() -> None:
            outcome["y"] = client.infer("slow", slow_inputs(trips), client_timeout=60).as_numpy("y")

        thread = threading.Thread(target=in_flight)
        thread.start()
        time.sleep(0.3)
        process.process.terminate()
        thread.join(60)
        assert outcome["y"].shape == (256, 256)  # answered, not cut off
        assert process.process.wait(30) == 0
        log = process.log()
        assert "no new calls; finishing those in flight" in log and "stopped after draining" in log
    finally:
        process.stop()
