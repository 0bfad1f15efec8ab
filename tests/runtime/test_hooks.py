"""Hook files import their siblings, each model's apart from another's; the bundle follows those imports."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelfn.errors import ContractError
from modelfn.runtime.hooks import load_hooks
from modelfn.tooling.build import local_modules


def _model_folder(root: Path, name: str, word: str) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "tokenizer.py").write_text(f"WORD = {word!r}\n")
    (folder / "hooks.py").write_text(
        "from .tokenizer import WORD\n\n\ndef pre(payload):\n    return WORD\n\n\ndef turn(turn):\n    return WORD\n"
    )
    (folder / "train.py").write_text("import tokenizer\n")
    return folder


def test_each_models_hooks_import_their_own_siblings(tmp_path: Path) -> None:
    folder = _model_folder(tmp_path, "a", "first")
    first = load_hooks(folder, "hooks.py:pre", None, namespace="a_1", turn="hooks.py:turn")
    second = load_hooks(_model_folder(tmp_path, "b", "second"), "hooks.py:pre", None, namespace="b_1")
    assert first.pre({}) == "first" and first.turn({}) == "first" and first.post is None
    assert second.pre({}) == "second" and second.turn is None


def test_a_turn_hook_must_take_one_argument(tmp_path: Path) -> None:
    folder = _model_folder(tmp_path, "c", "x")
    (folder / "bad.py").write_text("def turn(a, b):\n    return a\n")
    with pytest.raises(ContractError, match=r"turn\(turn\)"):
        load_hooks(folder, None, None, namespace="c_1", turn="bad.py:turn")


def test_the_bundle_takes_the_hooks_relative_imports_and_leaves_the_training_script(tmp_path: Path) -> None:
    folder = _model_folder(tmp_path, "d", "x")
    assert local_modules(folder, ["hooks.py"]) == {"hooks.py", "tokenizer.py"}


POST_WITH_INPUTS = """

_plain_postprocess = postprocess


def postprocess(outputs, payload, inputs):
    answer = _plain_postprocess(outputs, payload)
    answer["ink"] = float(inputs["pixels"].sum())  # what the pre hook made, not recomputed
    return answer
"""


def test_a_post_hook_that_names_inputs_gets_the_pre_hooks_tensors(tmp_path: Path) -> None:
    """digits with a post hook that declares ``inputs``: served by a real server and in a batch job, it gets the
    tensors the pre hook made (a two-argument hook is told apart by its signature)."""
    import json
    import subprocess
    import sys

    import requests
    from helpers import DIGITS, copy_function, running

    from modelfn.runtime.hooks import takes_inputs

    folder = copy_function(tmp_path, DIGITS)
    (folder / "hooks.py").write_text((folder / "hooks.py").read_text() + POST_WITH_INPUTS)
    image = [[0, 0, 5, 13, 9, 1, 0, 0]] * 8
    ink = float(sum(sum(row) for row in image))
    hooks = load_hooks(folder, "hooks.py:preprocess", "hooks.py:postprocess", namespace="with_inputs")
    assert hooks.post_takes_inputs and not takes_inputs(lambda outputs, payload: None)
    with running(folder, tmp_path / "serve.log") as server:
        answer = requests.post(f"{server.url}/predict", json={"image": image}, timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json()["ink"] == pytest.approx(ink) and "digit" in answer.json()
    (tmp_path / "in.jsonl").write_text(json.dumps({"image": image}) + "\n")
    done = subprocess.run([sys.executable, "-m", "modelfn", "batch", str(folder), str(tmp_path / "in.jsonl"),
                           "--output", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    line = json.loads((tmp_path / "out" / "in.jsonl.predictions.jsonl").read_text())
    assert line["prediction"]["ink"] == pytest.approx(ink)
