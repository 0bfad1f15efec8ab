"""modelfn.beam's ModelHandler in Beam's RunInference, on the local portable runner with two worker processes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from engines_env import run_script
from helpers import DIGITS

from modelfn.batch.formats import Row
from modelfn.batch.predict import ChunkPredictor, prediction_json
from modelfn.offline import ModelSource
from modelfn.registry import Registry

pytestmark = pytest.mark.slow  # a Beam pipeline in the engines' interpreter

TWO_WORKERS = ["--runner=FnApiRunner", "--direct_num_workers=2", "--direct_running_mode=multi_processing"]
BAD_PAYLOADS = {
    "bad-text": {"image": "nope"},
    "bad-shape": {"image": [[1, 2], [3, 4]]},
    "bad-number": 12345,
}


@pytest.fixture(scope="module")
def report(tmp_path_factory, heldout):
    """One pipeline over every kind of element: payloads, array rows, Open Inference Protocol bodies."""
    tmp = tmp_path_factory.mktemp("beam-handler")
    registry = Registry.open(str(tmp / "registry"))
    registry.push(DIGITS)
    registry.promote("digits", "1", "prod")
    x, _ = heldout
    payloads = [json.loads(line) for line in (DIGITS / "heldout.jsonl").read_text().splitlines()]
    elements = [[f"payload-{i}", "payload", p] for i, p in enumerate(payloads)]
    elements += [[key, "payload", value] for key, value in BAD_PAYLOADS.items()]
    elements += [[f"row-{i}", "row", x[i].tolist()] for i in range(20)]
    elements += [["row-short", "row", x[0][:63].tolist()], ["row-nan", "row", [float("nan")] * 64]]
    elements.append(["oip-good", "oip", {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [3, 64],
                                                     "data": x[:3].ravel().tolist()}]}])  # fmt: skip
    elements.append(["oip-bad", "oip", {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 63],
                                                    "data": [0.0] * 63}]}])  # fmt: skip
    (tmp / "out").mkdir()
    config = {"source": f"{registry.uri}/digits@prod", "folder": str(DIGITS), "elements": elements,
              "options": TWO_WORKERS, "out": str(tmp / "out")}  # fmt: skip
    return run_script("beam_handler", config, tmp), payloads


@pytest.fixture(scope="module")
def expected():
    return ChunkPredictor(ModelSource.of(DIGITS).load())


def test_payloads_are_answered_as_the_function_answers_them(report, expected) -> None:
    results, payloads = report[0]["results"], report[1]
    for i, payload in enumerate(payloads):
        (want,) = expected.outcomes([Row(i + 1, payload)], "jsonl")
        assert results[f"payload-{i}"]["prediction"] == json.loads(prediction_json(want)), i
    assert {results[f"payload-{i}"]["model_id"] for i in range(len(payloads))} == {"digits/1"}


def test_rows_and_protocol_bodies_reach_the_model_unchanged(report, expected, heldout) -> None:
    results = report[0]["results"]
    x, _ = heldout
    for i in range(20):
        (want,) = expected.outcomes([Row(1, x[i].astype(np.float32))], "npy")
        assert results[f"row-{i}"]["prediction"] == json.loads(prediction_json(want))
    oip = results["oip-good"]["prediction"]
    assert (oip["model_name"], oip["model_version"]) == ("digits", "1")
    outputs = {o["name"]: o for o in oip["outputs"]}
    direct = expected.model.infer({"pixels": x[:3].astype(np.float32)})
    assert outputs["label"]["data"] == direct["label"].tolist()
    assert outputs["probabilities"]["shape"] == [3, 10]
    probabilities = np.array(outputs["probabilities"]["data"], np.float32)
    np.testing.assert_array_equal(probabilities, direct["probabilities"].ravel())


def test_each_bad_element_is_a_dead_letter_with_the_functions_words(report) -> None:
    results = report[0]["results"]
    errors = {key: value["error"] for key, value in results.items() if "error" in value}
    assert errors == {
        "bad-text": "'image' must be a list, got a string",
        "bad-shape": "pixel values must be shaped Nx8x8, got 1x2x2",
        "bad-number": 'send {"image": 8x8 pixel rows} or {"images": [image, ...]}, or a PNG or JPEG file',
        "row-short": "input 'pixels': expected 64 numbers, got 63",
        "row-nan": "NaN and infinite values are not accepted",
        "oip-bad": "input 'pixels': shape [1, 63] does not fit the model's [-1, 64] (-1 = any)",
    }


def test_the_model_loads_once_per_worker_process_and_counts_its_rows(report) -> None:
    metrics = report[0]["metrics"]
    assert metrics["rows_predicted"] == 360 + 20 + 1
    assert metrics["rows_failed"] == 6
    assert 1 <= metrics["load_model_latency_milli_secs.count"] <= 2, metrics  # two processes, many bundles
