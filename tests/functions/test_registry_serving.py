"""Serving from the registry: real `modelfn serve` processes, real GCS and S3 emulators."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter

import numpy as np
import pytest
import requests
from emulators import new_bucket, s3_server
from helpers import DIGITS, free_port, running
from test_registry import version_folder

from modelfn.registry import Registry
from modelfn.runtime.stores import open_store

pytestmark = pytest.mark.slow


def infer_body(x: np.ndarray) -> dict:
    return {"inputs": [{"name": "pixels", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}


def registry_with(uri: str, tmp_path, *versions: str) -> Registry:
    registry = Registry.open(uri)
    for version in versions:
        registry.push(version_folder(tmp_path, version))
    registry.promote("digits", versions[0], "prod")
    return registry


@pytest.mark.parametrize("scheme", ["gs", "s3"])
def test_served_from_object_storage(scheme, emulators, tmp_path, heldout) -> None:
    uri = f"{scheme}://{new_bucket(scheme)}/models"
    registry_with(uri, tmp_path, "1")
    env = {"MODELFN_MODEL": f"{uri}/digits@prod", "MODELFN_CACHE_DIR": str(tmp_path / "cache")}
    x, y = heldout
    with running(DIGITS, tmp_path / "serve.log", env) as server:
        response = requests.post(f"{server.url}/v2/models/digits/infer", json=infer_body(x), timeout=60)
        log = server.log()
    assert response.status_code == 200, response.text
    assert response.headers["X-Model-Version"] == "1" and response.json()["model_version"] == "1"
    labels = np.array(next(o for o in response.json()["outputs"] if o["name"] == "label")["data"])
    assert (labels == y).mean() >= 0.95
    assert f"from {scheme}://" in log and "fetch(store)" in log


@pytest.mark.parametrize("scheme", ["gs", "s3"])
def test_promote_and_rollback_under_load_fail_no_request(scheme, emulators, tmp_path) -> None:
    uri = f"{scheme}://{new_bucket(scheme)}/models"
    registry = registry_with(uri, tmp_path, "1", "2")
    env = {
        "MODELFN_MODEL": f"{uri}/digits@prod",
        "MODELFN_CACHE_DIR": str(tmp_path / "cache"),
        "MODELFN_ALIAS_REFRESH_S": "0.2",
    }
    body = infer_body(np.zeros((1, 64), np.float32))
    seen: list[tuple[float, int, str]] = []
    stop = threading.Event()
    with running(DIGITS, tmp_path / "serve.log", env) as server:

        def client() -> None:
            with requests.Session() as session:
                while not stop.is_set():
                    r = session.post(f"{server.url}/v2/models/digits/infer", json=body, timeout=30)
                    seen.append((time.monotonic(), r.status_code, r.headers.get("X-Model-Version", "")))

        threads = [threading.Thread(target=client) for _ in range(4)]
        for thread in threads:
            thread.start()

        def wait_for(version: str) -> float:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if seen and seen[-1][2] == version:
                    return time.monotonic()
                time.sleep(0.05)
            raise AssertionError(f"never served v{version}; last: {seen[-3:]}")

        wait_for("1")
        registry.promote("digits", "2", "prod")
        promoted = wait_for("2")
        time.sleep(0.5)
        registry.rollback("digits", "prod")
        rolled_back = wait_for("1")
        time.sleep(0.3)
        stop.set()
        for thread in threads:
            thread.join()
    statuses = Counter(status for _, status, _ in seen)
    assert statuses == {200: len(seen)}, statuses
    assert len(seen) > 50
    # Once a version took over it answered every later request until the next move.
    assert all(v == "2" for t, _, v in seen if promoted + 0.3 < t < rolled_back - 1.0)


def test_store_down_at_cold_start_then_a_loaded_model_survives_it(tmp_path) -> None:
    dead = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
        "AWS_ACCESS_KEY_ID": "t",
        "AWS_SECRET_ACCESS_KEY": "t",
    }
    env = {"MODELFN_MODEL": "s3://models/registry/digits@prod", "MODELFN_STORE_ATTEMPTS": "2", **dead}
    with running(DIGITS, tmp_path / "down.log", env) as server:
        started = time.monotonic()
        response = requests.post(f"{server.url}/v1/models/digits:predict", json={"instances": [[0] * 64]}, timeout=60)
        assert response.status_code == 503 and response.headers["Retry-After"]
        assert "did not answer after 2 attempts" in response.json()["error"]
        assert time.monotonic() - started < 20
        assert server.process.poll() is None


def test_a_loaded_model_keeps_serving_when_the_store_goes_away(tmp_path) -> None:
    from emulators import S3_ENV, environment

    from modelfn.runtime.stores.s3 import S3Store

    body = {"instances": [[0] * 64]}
    with contextlib.ExitStack() as server_scope:
        with s3_server() as url, environment({**S3_ENV, "AWS_ENDPOINT_URL": url}):
            S3Store._client = None  # this test's store lives at its own endpoint
            uri = f"s3://{new_bucket('s3')}/models"
            registry_with(uri, tmp_path, "1")
            env = {"MODELFN_MODEL": f"{uri}/digits@prod", "MODELFN_ALIAS_REFRESH_S": "0.2", "AWS_ENDPOINT_URL": url}
            server = server_scope.enter_context(running(DIGITS, tmp_path / "serve.log", env))
            assert requests.post(f"{server.url}/v1/models/digits:predict", json=body, timeout=60).status_code == 200
        S3Store._client = None
        # The emulator is stopped: alias refreshes now fail, and the loaded version keeps answering.
        deadline = time.monotonic() + 15
        while "alias refresh failed" not in server.log() and time.monotonic() < deadline:
            assert requests.post(f"{server.url}/v1/models/digits:predict", json=body, timeout=30).status_code == 200
            time.sleep(0.1)
        assert "alias refresh failed, still serving v1" in server.log()
        for _ in range(20):
            assert requests.post(f"{server.url}/v1/models/digits:predict", json=body, timeout=30).status_code == 200


def test_corrupted_artifact_is_refused_and_not_cached(emulators, tmp_path) -> None:
    uri = f"s3://{new_bucket('s3')}/models"
    registry = registry_with(uri, tmp_path, "1")
    store, _ = open_store(uri)
    key = registry.artifact_key(registry.contract("digits", "1"))
    store.write(key, store.read(key)[:-100])  # truncated in the bucket
    env = {"MODELFN_MODEL": f"{uri}/digits@prod", "MODELFN_CACHE_DIR": str(tmp_path / "cache")}
    with running(DIGITS, tmp_path / "serve.log", env) as server:
        response = requests.post(f"{server.url}/predict", json={"image": [[0] * 8] * 8}, timeout=60)
    assert response.status_code == 503 and "digest mismatch" in response.json()["error"]
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_a_second_process_reuses_the_disk_tier(emulators, tmp_path) -> None:
    uri = f"gs://{new_bucket('gs')}/models"
    registry = registry_with(uri, tmp_path, "1")
    env = {"MODELFN_MODEL": f"{uri}/digits@prod", "MODELFN_CACHE_DIR": str(tmp_path / "cache")}
    body = {"image": [[0] * 8] * 8}
    with running(DIGITS, tmp_path / "first.log", env) as first:
        assert requests.post(f"{first.url}/predict", json=body, timeout=60).status_code == 200
    # Spoil the bucket's copy: a process that downloads would now fail the digest check.
    store, _ = open_store(uri)
    store.write(registry.artifact_key(registry.contract("digits", "1")), b"spoiled")
    with running(DIGITS, tmp_path / "second.log", env) as second:
        assert requests.post(f"{second.url}/predict", json=body, timeout=60).status_code == 200
        assert "fetch(disk)" in second.log()


ALIAS_BREAKS = {
    "malformed": b'{"version": ',
    "empty": b"",
    "wrong shape": b'{"version": 3}',
    "bad traffic": b'{"version": "1", "traffic": {"split": {"1": 70, "2": 70}}}',
}


@pytest.mark.parametrize("damage", list(ALIAS_BREAKS))
def test_a_broken_alias_is_a_503_naming_it_and_a_running_function_keeps_its_version(damage, tmp_path) -> None:
    uri = str(tmp_path / "registry")
    registry = registry_with(uri, tmp_path, "1", "2")
    [alias_file] = (tmp_path / "registry").rglob("_aliases/prod.json")
    good = alias_file.read_bytes()
    alias_file.write_bytes(ALIAS_BREAKS[damage])
    env = {"MODELFN_MODEL": f"{uri}/digits@prod", "MODELFN_CACHE_DIR": str(tmp_path / "cache"),
           "MODELFN_ALIAS_REFRESH_S": "0.2"}  # fmt: skip
    body = infer_body(np.zeros((1, 64), np.float32))
    with running(DIGITS, tmp_path / "serve.log", env) as server:
        infer = f"{server.url}/v2/models/digits/infer"
        cold = requests.post(infer, json=body, timeout=60)
        assert cold.status_code == 503 and cold.headers["Retry-After"]
        assert "alias digits@prod is unreadable" in cold.json()["error"] and uri not in cold.json()["error"]

        alias_file.write_bytes(good)  # fixed: the next request loads v1
        served = requests.post(infer, json=body, timeout=60)
        assert served.status_code == 200 and served.headers["X-Model-Version"] == "1"

        alias_file.write_bytes(ALIAS_BREAKS[damage])  # broken while running: the last good version goes on
        time.sleep(1.0)
        for _ in range(5):
            kept = requests.post(infer, json=body, timeout=60)
            assert kept.status_code == 200 and kept.headers["X-Model-Version"] == "1"
        registry.promote("digits", "2", "prod")  # rewritten whole: followed again
        deadline = time.monotonic() + 30
        while requests.post(infer, json=body, timeout=60).headers.get("X-Model-Version") != "2":
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.2)
        log = server.log()
    assert "alias refresh failed, still serving v1" in log and "is unreadable" in log


class StallingProxy:
    """A TCP proxy in front of the S3 emulator that stalls the first response to a GET naming ``match``
    after 200 bytes (storage that hangs mid-read); everything else passes through."""

    def __init__(self, upstream: str, match: bytes) -> None:
        import socket

        self.upstream = upstream.removeprefix("http://").split(":")
        self.match, self.armed, self.stalled = match, True, 0
        self.release = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection((self.upstream[0], int(self.upstream[1])))
            stall = threading.Event()
            threading.Thread(target=self._requests, args=(client, upstream, stall), daemon=True).start()
            threading.Thread(target=self._responses, args=(upstream, client, stall), daemon=True).start()

    def _requests(self, client, upstream, stall: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                if self.armed and data.startswith(b"GET") and self.match in data.split(b"\r\n", 1)[0]:
                    self.armed = False
                    self.stalled += 1
                    stall.set()
                upstream.sendall(data)

    def _responses(self, upstream, client, stall: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := upstream.recv(65536):
                if stall.is_set():
                    client.sendall(data[:200])
                    self.release.wait(120)
                    return
                client.sendall(data)

    def close(self) -> None:
        self.release.set()
        self.listener.close()


def test_a_store_that_stalls_mid_read_is_abandoned_and_the_load_tried_again(emulators, tmp_path) -> None:
    uri = f"s3://{new_bucket('s3')}/models"
    registry_with(uri, tmp_path, "1")
    proxy = StallingProxy(emulators["AWS_ENDPOINT_URL"], b"model.onnx")
    env = {"MODELFN_MODEL": f"{uri}/digits@prod", "MODELFN_CACHE_DIR": str(tmp_path / "cache"),
           "AWS_ENDPOINT_URL": proxy.url, "MODELFN_LOAD_WAIT_S": "1.5", "MODELFN_LOAD_TIMEOUT_S": "3"}  # fmt: skip
    body = infer_body(np.zeros((1, 64), np.float32))
    try:
        with running(DIGITS, tmp_path / "serve.log", env) as server:
            infer = f"{server.url}/v2/models/digits/infer"
            first = requests.post(infer, json=body, timeout=60)
            assert first.status_code == 503 and "still loading" in first.json()["error"]
            deadline = time.monotonic() + 60
            while (answer := requests.post(infer, json=body, timeout=60)).status_code != 200:
                assert answer.status_code == 503 and time.monotonic() < deadline, answer.text
                time.sleep(0.2)
            log = server.log()
    finally:
        proxy.close()
    assert proxy.stalled == 1 and answer.headers["X-Model-Version"] == "1"
    assert "did not finish within 3 s: abandoned, loading again" in log
