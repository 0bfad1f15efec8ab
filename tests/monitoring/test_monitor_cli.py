"""``modelfn monitor`` and ``modelfn check`` on a reference: a clear error names the fix, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from helpers import DIGITS, copy_function

from modelfn.contract import load_contract
from modelfn.monitoring.features import features


def modelfn(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modelfn", *args], capture_output=True, text=True, timeout=300)


def test_reference_then_check_and_a_broken_or_stale_reference(tmp_path) -> None:
    folder = copy_function(tmp_path, monitoring=None)
    made = modelfn("monitor", "reference", str(folder))
    assert made.returncode == 0 and "74 numeric and 1 categorical features of 360 rows" in made.stdout, made.stderr
    assert "monitoring: {reference: reference.json}" in made.stderr  # the line to add to the contract
    written = json.loads((folder / "reference.json").read_text())
    assert written == json.loads((DIGITS / "reference.json").read_text())  # the committed one is this
    path = folder / "modelfn.yaml"
    path.write_text(path.read_text() + "monitoring:\n  reference: reference.json\n")
    checked = modelfn("check", str(folder))
    assert checked.returncode == 0 and "drift     reference.json: 74 numeric" in checked.stdout, checked.stderr
    (folder / "reference.json").write_text('{"format": 1, "numeric": ')
    broken = modelfn("check", str(folder))
    assert broken.returncode == 1 and "modelfn monitor reference" in broken.stderr and "Traceback" not in broken.stderr
    written["numeric"].pop("pixels[3]")
    (folder / "reference.json").write_text(json.dumps(written))
    stale = modelfn("check", str(folder))
    assert stale.returncode == 1 and "computed for other features" in stale.stderr, stale.stderr


def test_a_report_with_nothing_to_report_says_why(tmp_path) -> None:
    empty = modelfn("monitor", "report", "digits", "--store", str(tmp_path))
    assert empty.returncode == 1 and "no drift summaries of digits" in empty.stderr and "Traceback" not in empty.stderr
    bad = modelfn("monitor", "report", "digits", "--store", str(tmp_path), "--since", "yesterday")
    assert bad.returncode == 1 and "Traceback" not in bad.stderr


def test_features_of_images_text_and_tables() -> None:
    contract = load_contract(DIGITS)
    big = {"image": np.arange(2 * 100, dtype=np.float32).reshape(2, 10, 10)}
    text = {"prompt": np.array(["hello", "a longer prompt"], dtype=object)}
    found = features(contract, {**big, **text}, {"label": np.array([3, 4]), "scores": np.zeros((2, 2))})
    assert found.names == ("image.mean", "image.std", "prompt.length", "output:scores[0]", "output:scores[1]")
    assert found.matrix[:, 0].tolist() == [49.5, 149.5] and found.matrix[:, 2].tolist() == [5.0, 15.0]
    assert found.categorical == {"output:label": ["3", "4"]} and found.rows == 2


FEATURES_HOOK = '''

def drift_features(inputs):
    """Two features of an image instead of its 64 pixels: its ink, and whether it is mostly dark."""
    import numpy

    ink = inputs["pixels"].mean(axis=1)
    return {"ink": ink, "dark": numpy.where(ink > 8, "yes", "no")}
'''


def test_a_features_hook_replaces_the_inputs_features(tmp_path) -> None:
    from helpers import load_train_module

    from modelfn.function import ModelFunction
    from modelfn.monitoring.drift import DriftWatch, read_reference
    from modelfn.monitoring.features import feature_hook
    from modelfn.monitoring.stats import score, verdict
    from modelfn.settings import Settings

    folder = copy_function(tmp_path, monitoring={"reference": "reference.json", "features": "hooks.py:drift_features"})
    (folder / "hooks.py").write_text((folder / "hooks.py").read_text() + FEATURES_HOOK)
    made = modelfn("monitor", "reference", str(folder))
    assert made.returncode == 0 and "11 numeric and 2 categorical features" in made.stdout, made.stdout + made.stderr
    assert modelfn("check", str(folder)).returncode == 0
    contract = load_contract(folder)
    model = ModelFunction(folder, Settings(request_log=False)).model()
    reference = read_reference(folder / "reference.json")
    watch = DriftWatch(
        contract, reference, Settings(monitor_store=str(tmp_path / "store")), feature_hook(folder, contract)
    )
    x_train = load_train_module().heldout_split()[0].reshape(-1, 64).astype(np.float32)
    for image in 16 - x_train[:500]:
        inputs = {"pixels": image.reshape(1, 64)}
        watch.observe(inputs, model.infer(inputs))
    watch.drain()
    scores = {s.name: s for s in score(reference, watch.counts.take())}
    assert {"ink", "dark"} <= set(scores) and scores["ink"].drifted and scores["dark"].drifted
    assert verdict(list(scores.values())).drift
    watch.close()
