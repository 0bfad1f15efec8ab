"""How many intra-op threads an ONNX model's session gets."""

from __future__ import annotations

import pytest
from helpers import DIGITS

from modelfn.contract import load_contract
from modelfn.runtime.cpus import available_cpus
from modelfn.runtime.model import load_model, local_artifact
from modelfn.runtime.predictors.onnx import SMALL_MODEL_BYTES, intra_op_threads
from modelfn.settings import Settings


@pytest.mark.parametrize(
    ("configured", "size", "expected"),
    [
        (0, 20_000, 1),  # a small model: one thread
        (0, SMALL_MODEL_BYTES - 1, 1),
        (0, SMALL_MODEL_BYTES, available_cpus()),  # from 4 MiB: the CPUs the instance may use
        (3, 20_000, 3),  # a setting always wins
        (1, 1 << 30, 1),
    ],
)
def test_small_models_get_one_thread_unless_told(configured: int, size: int, expected: int) -> None:
    assert intra_op_threads(configured, size) == expected


@pytest.mark.parametrize(("configured", "expected"), [(0, 1), (2, 2)])
def test_the_session_is_built_with_them(configured: int, expected: int) -> None:
    contract = load_contract(DIGITS)
    store, key = local_artifact(contract, DIGITS)
    model = load_model(DIGITS, contract, Settings(ort_intra_op_threads=configured), store, key)
    assert model.predictor._session.get_session_options().intra_op_num_threads == expected
