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
from datetime import UTC, datetime
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


def summarized(store: Path, rows: int) -> None:
    """Wait until the summaries written to ``store`` hold ``rows`` rows in all."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = sum(
            json.loads(path.read_text())["rows"] for path in store.rglob("*.json") if path.name != "reference.json"
        )
        if found >= rows:
            assert found == rows
            return
        time.sleep(0.2)
    raise AssertionError(f"the summaries did not reach {rows} rows within 60 s")


def inverted_gauges(url: str) -> list[tuple[str, str]]:
    """The drift gauges, once a window of inverted images (scores far above 1) has been scored."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = requests.get(f"{url}/metrics", timeout=30).text
        gauges = re.findall(r'modelfn_drift_score\{feature="([^"]+)",model="digits"\} ([0-9.e+-]+)', text)
        if gauges and max(float(v) for _, v in gauges) > 1:
            return gauges
        time.sleep(0.2)
    raise AssertionError("no window of inverted images was scored within 60 s")


def report(store: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modelfn", "monitor", "report", "digits", "--store", str(store),
                           *options], capture_output=True, text=True, timeout=120)  # fmt: skip


def test_ordinary_traffic_is_no_drift_and_inverted_images_are(tmp_path) -> None:
    x_train = load_train_module().heldout_split()[0].reshape(-1, 64).astype(np.float32)
    store, log = tmp_path / "monitor", tmp_path / "payloads"
    env = {"MODELFN_MONITOR_STORE": str(store), "MODELFN_MONITOR_FLUSH_S": "1", "MODELFN_PAYLOAD_LOG": str(log)}
    with running(DIGITS, tmp_path / "serve.log", env) as server:
        ask(server.url, x_train[:1000], "plain")
        summarized(store, 1000)  # every ordinary row is in a written window before the shift starts
        first = report(store)
        between = time.time()
        ask(server.url, 16 - x_train[:1000], "inverted")
        gauges = inverted_gauges(server.url)
    assert first.returncode == 0 and first.stdout.rstrip().endswith("no drift"), first.stdout + first.stderr
    assert "1,000 rows" in first.stdout
    html = tmp_path / "report.html"
    second = report(store, "--since", datetime.fromtimestamp(between, UTC).isoformat(), "--html", str(html))
    assert second.returncode == 1 and second.stdout.rstrip().endswith("DRIFT"), second.stdout + second.stderr
    assert "1,000 rows" in second.stdout and re.search(r"^pixels\[\d+\] +wasserstein", second.stdout, re.M)
    assert re.search(r"input features drifted \(share 0\.9\d|input features drifted \(share 1\.00", second.stdout)
    page = html.read_text()
    assert page.startswith("<!doctype html>") and "<h1>Drift: digits v1</h1>" in page and page.count("<svg") >= 10
    assert len(gauges) >= 64  # the instance's own window of inverted images, scored
    records = [json.loads(line) for path in sorted(log.rglob("*.jsonl")) for line in path.read_text().splitlines()]
    ids = {r["id"] for r in records}
    assert {f"plain-{n}" for n in range(1000)} <= ids and {f"inverted-{n}" for n in range(1000)} <= ids
    assert "Traceback" not in server.log()
