"""LoadedModel with the real digits ONNX model: load phases, input checks, hooks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import DIGITS

from modelfn.contract import load_contract
from modelfn.errors import ArtifactError, ContractError, InvalidInput, ModelFault
from modelfn.runtime.model import load_model, local_artifact
from modelfn.settings import Settings


def load(folder: Path = DIGITS):
    contract = load_contract(folder)
    return load_model(folder, contract, Settings(), *local_artifact(contract, folder))


@pytest.fixture(scope="module")
def digits():
    return load()


def test_load_reports_every_phase(digits) -> None:
    assert list(digits.phases) == ["fetch(local)", "deserialize", "verify", "hooks", "warmup"]
    assert all(seconds >= 0 for seconds in digits.phases.values())


def test_infer_matches_the_heldout_labels(digits, heldout) -> None:
    x, y = heldout
    outputs = digits.infer({"pixels": x})
    assert outputs["probabilities"].shape == (360, 10)
    assert np.array_equal(outputs["label"], outputs["probabilities"].argmax(axis=1))
    assert (outputs["label"] == y).mean() >= 0.95
    assert list(digits.infer({"pixels": x[:3]}, ["label"])) == ["label"]


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({}, r"missing input\(s\) \['pixels'\]"),
        ({"pixels": np.zeros((1, 64), np.float32), "extra": np.zeros(1)}, r"unknown input\(s\) \['extra'\]"),
        ({"pixels": np.zeros((1, 64), np.float64)}, "datatype FP64, the model expects FP32"),
        ({"pixels": np.zeros((1, 63), np.float32)}, r"shape \[1, 63\] does not fit the model's \[-1, 64\]"),
        ({"pixels": np.zeros(64, np.float32)}, r"shape \[64\] does not fit"),
    ],
)
def test_inputs_are_checked_before_the_model_runs(digits, inputs, message) -> None:
    with pytest.raises(InvalidInput, match=message):
        digits.infer(inputs)


def test_unknown_output_is_refused(digits) -> None:
    with pytest.raises(InvalidInput, match=r"unknown output\(s\) \['logits'\]"):
        digits.infer({"pixels": np.zeros((1, 64), np.float32)}, ["logits"])


def test_digest_mismatch_is_refused(function_copy) -> None:
    folder = function_copy(artifact={"uri": "model.onnx", "sha256": "0" * 64})
    with pytest.raises(ArtifactError, match=r"digest mismatch.*refusing to load"):
        load(folder)


def test_onnx_bytes_parsed_beside_their_hash_answer_nothing_until_it_matches(function_copy, monkeypatch) -> None:
    import modelfn.runtime.model as model_module

    parsed, warmed = [], []
    real_load, real_warm_up = model_module.load_predictor, model_module._warm_up
    monkeypatch.setattr(model_module, "load_predictor", lambda *a: parsed.append(1) or real_load(*a))
    monkeypatch.setattr(model_module, "_warm_up", lambda model: warmed.append(1) or real_warm_up(model))
    folder = function_copy(artifact={"uri": "model.onnx", "sha256": "0" * 64})
    with pytest.raises(ArtifactError, match=r"digest mismatch.*refusing to load"):
        load(folder)
    assert parsed == [1] and warmed == []  # parsed while hashed (deploy.verify: start), never run
    half = (folder / "model.onnx").read_bytes()[:2000]
    (folder / "model.onnx").write_bytes(half)  # unparseable too: the mismatch is the cause named
    with pytest.raises(ArtifactError, match="digest mismatch"):
        load(folder)
    parsed.clear()
    folder = function_copy(artifact={"uri": "model.onnx", "sha256": "0" * 64}, deploy={"verify": "before-parse"})
    with pytest.raises(ArtifactError, match="digest mismatch"):
        load(folder)
    assert parsed == []  # hashed before the parser saw a byte


def test_bytes_that_are_not_onnx_are_refused(function_copy) -> None:
    folder = function_copy()
    (folder / "model.onnx").write_bytes(b"not a model")
    import hashlib

    from helpers import edit_contract

    edit_contract(folder, artifact={"uri": "model.onnx", "sha256": hashlib.sha256(b"not a model").hexdigest()})
    with pytest.raises(ContractError, match="not a loadable ONNX model"):
        load(folder)


def test_contract_and_model_must_agree(function_copy) -> None:
    folder = function_copy(inputs=[{"name": "image", "datatype": "FP32", "shape": [-1, 64]}])
    with pytest.raises(ContractError, match=r"declares \['image'\], the model takes \['pixels'\]"):
        load(folder)
    folder = function_copy(outputs=[{"name": "label", "datatype": "INT32", "shape": [-1]}])
    with pytest.raises(ContractError, match="datatype INT32 declared, the model says tensor\\(int64\\)"):
        load(folder)


def test_predict_json_runs_the_hooks(digits, heldout) -> None:
    x, y = heldout
    answer = digits.predict_json({"image": x[0].reshape(8, 8).tolist()})
    assert answer["digit"] == y[0] and len(answer["probabilities"]) == 10


def test_hook_rejection_is_a_client_error(digits) -> None:
    with pytest.raises(InvalidInput, match="pixel values must be between 0 and 16"):
        digits.predict_json({"image": [[99] * 8] * 8})


def write_hooks(folder: Path, source: str) -> None:
    (folder / "hooks.py").write_text(source)


def test_a_crashing_hook_is_a_model_fault(function_copy) -> None:
    folder = function_copy()
    write_hooks(
        folder, "def preprocess(p):\n    raise KeyError('secret detail')\n\ndef postprocess(o, p):\n    return o\n"
    )
    with pytest.raises(ModelFault) as caught:
        load(folder).predict_json({})
    assert "secret" not in str(caught.value) and caught.value.public is False


def test_a_hook_returning_bad_tensors_is_a_model_fault(function_copy) -> None:
    folder = function_copy()
    write_hooks(folder, "def preprocess(p):\n    return {'pixels': 'oops'}\n\ndef postprocess(o, p):\n    return o\n")
    with pytest.raises(ModelFault, match="pre-processing hook returned invalid tensors"):
        load(folder).predict_json({})


def test_without_hooks_the_body_maps_input_names(function_copy) -> None:
    model = load(function_copy(hooks={}, uploads=None))  # files need a pre hook to read them
    outputs = model.predict_json({"pixels": [[0.0] * 64]})
    assert set(outputs) == {"probabilities", "label"}
    with pytest.raises(InvalidInput, match="unknown input 'image'"):
        model.predict_json({"image": [[0.0] * 64]})


@pytest.mark.parametrize(
    ("hooks", "source", "message"),
    [
        ({"pre": "sub/../../hooks.py:preprocess"}, None, "points outside the function folder"),
        ({"pre": "missing.py:preprocess"}, None, "does not exist"),
        ({"pre": "hooks.py:nope"}, None, "defines no function 'nope'"),
        ({"pre": "hooks.py:preprocess"}, "def preprocess():\n    pass\n", "must accept 1 argument"),
        ({"pre": "hooks.py:preprocess"}, "import not_a_module\n", "importing hooks.py failed"),
    ],
)
def test_bad_hooks_fail_at_load_with_the_field(function_copy, hooks, source, message) -> None:
    folder = function_copy(hooks=hooks)
    if source is not None:
        write_hooks(folder, source)
    with pytest.raises(ContractError, match=message) as caught:
        load(folder)
    assert "field `hooks.pre`" in str(caught.value)
