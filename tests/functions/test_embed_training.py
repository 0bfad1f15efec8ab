"""functions/embed/train.py regenerates the committed text encoder, and its figure describes that model.

Needs the `train` extra (transformers, tokenizers) and torch; `make test` installs them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import subprocess
import sys

import pytest
import yaml
from batch_cases import EMBED

pytestmark = pytest.mark.slow


def test_training_reproduces_the_committed_encoder(tmp_path) -> None:
    result = subprocess.run([sys.executable, str(EMBED / "train.py"), "--out", str(tmp_path)], capture_output=True,
                            text=True, timeout=900, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    printed = float(re.search(r"nearest training question has their intent: ([0-9.]+)", result.stdout).group(1))
    spec = importlib.util.spec_from_file_location("embed_train", EMBED / "train.py")
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)  # type: ignore[union-attr]
    by_intent, held_out = train.turns_by_intent()
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(EMBED / "tokenizer.json"))
    # The script's figure is the model it wrote; the contract's is the committed model's, measured here.
    assert printed == pytest.approx(train.nearest_intent_share(tmp_path / "model.onnx", raw, by_intent, held_out),
                                    abs=1e-4)  # fmt: skip
    committed = train.nearest_intent_share(EMBED / "model.onnx", raw, by_intent, held_out)
    documented = yaml.safe_load((EMBED / "modelfn.yaml").read_text())["docs"]["metrics"]["heldout_nearest_intent"]
    # Cosine similarities that nearly tie may rank the other way on another CPU's kernels: a question or two.
    assert abs(committed - documented) <= 2 / len(held_out) + 1e-9, (committed, documented)
    same = all(
        hashlib.sha256((tmp_path / name).read_bytes()).digest() == hashlib.sha256((EMBED / name).read_bytes()).digest()
        for name in ("model.onnx", "tokenizer.json")
    )
    # The tokenizer is the same on every machine (no float in it); the weights are on this one.
    assert (tmp_path / "tokenizer.json").read_bytes() == (EMBED / "tokenizer.json").read_bytes()
    print(f"retrained encoder is bit-for-bit identical: {same}; held-out figure {printed}")
