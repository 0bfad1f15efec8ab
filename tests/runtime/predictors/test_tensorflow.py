"""The Keras predictor and its conversion, with the committed digits-keras function."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import requests
import yaml
from helpers import ROOT, running

from modelfn.contract import load_contract
from modelfn.errors import ContractError
from modelfn.runtime.model import load_model, local_artifact
from modelfn.settings import Settings

pytestmark = pytest.mark.slow
KERAS = ROOT / "functions" / "digits-keras"


@pytest.fixture(scope="module")
def keras_model():
    import keras

    return keras.saving.load_model(KERAS / "model.keras", compile=False)


def test_served_over_http_answers_as_keras_does(tmp_path, keras_model, heldout) -> None:
    x, y = heldout
    with running(KERAS, tmp_path / "serve.log") as server:
        tensor = {"name": "pixels", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}
        response = requests.post(f"{server.url}/v2/models/digits/infer", json={"inputs": [tensor]}, timeout=120)
    assert response.status_code == 200, response.text
    assert response.json()["model_version"] == "1-keras"
    served = np.array(response.json()["outputs"][0]["data"]).reshape(360, 10)
    assert np.abs(served - keras_model(x, training=False).numpy()).max() < 1e-6
    assert (served.argmax(1) == y).mean() == pytest.approx(0.975)


def test_conversion_to_onnx_is_verified(tmp_path) -> None:
    from modelfn.tooling.convert import convert

    report = convert(KERAS, tmp_path / "onnx")
    assert report["outputs"]["probabilities"]["argmax_agreement"] == 1.0
    assert report["outputs"]["probabilities"]["max_abs_diff"] < 1e-5
    assert report["accuracy"] == {"source": 0.975, "converted": 0.975}
    converted = load_contract(tmp_path / "onnx")
    assert (converted.framework, converted.version) == ("onnx", "1-keras-onnx")


def test_lambda_layers_are_refused(tmp_path) -> None:
    """Keras safe_mode: a Lambda layer is arbitrary code, and modelfn will not deserialize it."""
    import keras

    inputs = keras.Input((64,), name="pixels")
    model = keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2.0)(inputs))
    folder = tmp_path / "lambda"
    folder.mkdir()
    model.save(folder / "model.keras")
    contract = yaml.safe_load((KERAS / "modelfn.yaml").read_text())
    contract["artifact"]["sha256"] = hashlib.sha256((folder / "model.keras").read_bytes()).hexdigest()
    contract["outputs"][0]["shape"] = [-1, 64]
    (folder / "modelfn.yaml").write_text(yaml.safe_dump(contract))
    loaded = load_contract(folder)
    with pytest.raises(ContractError, match="not a loadable Keras model"):
        load_model(folder, loaded, Settings(), *local_artifact(loaded, folder))
