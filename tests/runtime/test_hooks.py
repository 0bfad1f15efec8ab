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
