"""functions/digits served with monitoring on, asked 1,000 ordinary questions and then 1,000 inverted ones.

A real ``modelfn serve`` process with ``MODELFN_MONITOR_STORE`` and ``MODELFN_PAYLOAD_LOG`` on folders;
the questions are images of the training split (the model's own distribution, none of them the
reference's 360 held-out rows), one a request. ``modelfn monitor report`` then says no drift for the
first window and drift for the second, naming features, with an HTML report; the payload records
carry the requests' ids, and ``/metrics`` the drift gauges.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from helpers import DIGITS, load_train_module, running

pytestmark = pytest.mark.slow


def ask(url: str, images: np.ndarray, prefix: str) -> None:
    with requests.Session() as session:
        for n, image in enumerate(images):
            tensor = {"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": image.tolist()}
            body = {"id": f"{prefix}-{n}", "inputs": [tensor]}
            assert session.post(f"{url}/v2/models/digits/infer", json=body, timeout=60).status_code == 200


def flushed(url: str, at_least: float) -> float:
    """Wait until the server has written ``at_least`` drift summaries (a window holds the rows sent before)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = requests.get(f"{url}/metrics", timeout=30).text
        found = re.search(r'modelfn_drift_summaries_total\{model="digits",outcome="written"\} ([0-9.]+)', text)
        if found and float(found.group(1)) >= at_least:
            return float(found.group(1))
        time.sleep(0.2)
    raise AssertionError("no drift summary was written within 60 s")


def report(store: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modelfn", "monitor", "report", "digits", "--store", str(store),
                           *options], capture_output=True, text=True, timeout=120)  # fmt: skip


def test_ordinary_traffic_is_no_drift_and_inverted_images_are(tmp_path) -> None:
    x_train = load_train_module().heldout_split()[0].reshape(-1, 64).astype(np.float32)
    store, log = tmp_path / "monitor", tmp_path / "payloads"
    env = {"MODELFN_MONITOR_STORE": str(store), "MODELFN_MONITOR_FLUSH_S": "1", "MODELFN_PAYLOAD_LOG": str(log)}
    with running(DIGITS, tmp_path / "serve.log", env) as server:
        ask(server.url, x_train[:1000], "plain")
        written = flushed(server.url, 1)
        time.sleep(1.5)  # a last window, if one was still open, is written before the shift starts
        written = flushed(server.url, written)
        first = report(store)
        between = time.time()
        ask(server.url, 16 - x_train[:1000], "inverted")
        flushed(server.url, written + 1)
        metrics = requests.get(f"{server.url}/metrics", timeout=30).text
    assert first.returncode == 0 and first.stdout.rstrip().endswith("no drift"), first.stdout + first.stderr
    assert "1,000 rows" in first.stdout
    html = tmp_path / "report.html"
    second = report(store, "--since", time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(between)), "--html", str(html))
    assert second.returncode == 1 and second.stdout.rstrip().endswith("DRIFT"), second.stdout + second.stderr
    assert "1,000 rows" in second.stdout and re.search(r"^pixels\[\d+\] +wasserstein", second.stdout, re.M)
    assert re.search(r"input features drifted \(share 0\.9\d|input features drifted \(share 1\.00", second.stdout)
    page = html.read_text()
    assert page.startswith("<!doctype html>") and "<h1>Drift: digits v1</h1>" in page and page.count("<svg") >= 10
    gauges = re.findall(r'modelfn_drift_score\{feature="([^"]+)",model="digits"\} ([0-9.e+-]+)', metrics)
    assert len(gauges) >= 64 and max(float(v) for _, v in gauges) > 1  # the instance's last window: inverted
    records = [json.loads(line) for path in sorted(log.rglob("*.jsonl")) for line in path.read_text().splitlines()]
    ids = {r["id"] for r in records}
    assert {f"plain-{n}" for n in range(1000)} <= ids and {f"inverted-{n}" for n in range(1000)} <= ids
    assert "Traceback" not in server.log()
