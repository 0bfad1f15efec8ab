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


def serve_heldout(folder, images: np.ndarray, log) -> tuple[str, np.ndarray]:
    """The version and probabilities a real ``modelfn serve`` of ``folder`` answers for ``images``."""
    with running(folder, log) as server:
        tensor = {"name": "pixels", "shape": list(images.shape), "datatype": "FP32", "data": images.ravel().tolist()}
        response = requests.post(f"{server.url}/v2/models/digits/infer", json={"inputs": [tensor]}, timeout=120)
    assert response.status_code == 200, response.text
    output = response.json()["outputs"][0]
    return response.json()["model_version"], np.array(output["data"]).reshape(output["shape"])


def test_served_over_http_answers_as_keras_does(tmp_path, keras_model, heldout) -> None:
    x, y = heldout
    version, served = serve_heldout(KERAS, x, tmp_path / "serve.log")
    assert version == "1-keras"
    reference = keras_model(x, training=False).numpy()  # Keras itself, on this machine's kernels
    assert np.abs(served - reference).max() < 1e-6
    assert (served.argmax(1) == y).mean() == (reference.argmax(1) == y).mean()


def test_conversion_to_onnx_is_verified(tmp_path) -> None:
    from modelfn.tooling.convert import convert

    report = convert(KERAS, tmp_path / "onnx")
    assert report["outputs"]["probabilities"]["argmax_agreement"] == 1.0
    assert report["outputs"]["probabilities"]["max_abs_diff"] < 1e-5
    assert report["accuracy"]["source"] == report["accuracy"]["converted"] >= 0.95
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


# -- SavedModel: a folder, served from a digest-pinned archive ------------------------------------------


def archive_folder(folder, target, fmt: str) -> None:
    import shutil

    base = str(target).removesuffix(".zip").removesuffix(".tar.gz")
    made = shutil.make_archive(base, "zip" if fmt == "zip" else "gztar", root_dir=folder.parent, base_dir=folder.name)
    assert made == str(target)


@pytest.fixture(scope="module", params=["zip", "tar.gz"])
def savedmodel_function(request, tmp_path_factory, keras_model):
    """The digits network exported by Keras as a SavedModel, archived, with its contract."""
    import shutil

    root = tmp_path_factory.mktemp(f"savedmodel-{request.param}")
    keras_model.export(root / "export" / "digits", verbose=False)
    folder = root / "function"
    folder.mkdir()
    archive_folder(root / "export" / "digits", folder / f"model.{request.param}", request.param)
    shutil.copy(KERAS / "validation.npz", folder)
    shutil.copy(KERAS / "main.py", folder)
    contract = yaml.safe_load((KERAS / "modelfn.yaml").read_text())
    contract["version"] = "1-savedmodel"
    contract["artifact"] = {"uri": f"model.{request.param}", "sha256": sha_of(folder / f"model.{request.param}")}
    contract["outputs"] = [{"name": "output_0", "datatype": "FP32", "shape": [-1, 10]}]
    (folder / "modelfn.yaml").write_text(yaml.safe_dump(contract))
    return folder


def sha_of(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_savedmodel_answers_as_keras_does(savedmodel_function, keras_model, heldout) -> None:
    x, _ = heldout
    contract = load_contract(savedmodel_function)
    model = load_model(savedmodel_function, contract, Settings(), *local_artifact(contract, savedmodel_function))
    served = model.infer({"pixels": x})["output_0"]
    assert np.abs(served - keras_model(x, training=False).numpy()).max() < 1e-6


def test_a_savedmodel_over_http(savedmodel_function, heldout, keras_model, tmp_path) -> None:
    x, y = heldout
    version, served = serve_heldout(savedmodel_function, x, tmp_path / "serve.log")
    assert version == "1-savedmodel"
    reference = keras_model(x, training=False).numpy()  # the network it was exported from, on this machine
    assert (served.argmax(1) == y).mean() == (reference.argmax(1) == y).mean()


def test_a_savedmodel_converts_to_onnx(savedmodel_function, tmp_path) -> None:
    from modelfn.tooling.convert import convert

    report = convert(savedmodel_function, tmp_path / "onnx")
    assert report["outputs"]["output_0"]["argmax_agreement"] == 1.0
    assert report["outputs"]["output_0"]["max_abs_diff"] < 1e-5
    assert report["accuracy"]["source"] == report["accuracy"]["converted"] >= 0.95
    assert load_contract(tmp_path / "onnx").version == "1-savedmodel-onnx"


@pytest.mark.parametrize(
    ("field", "change", "expected"),
    [
        (
            "outputs",
            {"name": "probabilities"},
            r"outputs\[0\]` \(probabilities\): .* no such tensor; it has \['output_0'\]",
        ),
        ("outputs", {"datatype": "FP64"}, r"datatype FP64 declared, the serving_default signature says float32"),
        (
            "inputs",
            {"name": "image"},
            r"the contract declares \['image'\], the serving_default signature takes \['pixels'\]",
        ),
        ("inputs", {"shape": [-1, 8, 8]}, r"shape \[-1, 8, 8\] declared, the signature's rank is 2"),
    ],
)
def test_a_savedmodel_contract_must_match_its_signature(savedmodel_function, tmp_path, field, change, expected) -> None:
    import shutil

    folder = tmp_path / "mismatch"
    shutil.copytree(savedmodel_function, folder)
    contract = yaml.safe_load((folder / "modelfn.yaml").read_text())
    contract[field][0].update(change)
    (folder / "modelfn.yaml").write_text(yaml.safe_dump(contract))
    loaded = load_contract(folder)
    with pytest.raises(ContractError, match=expected):
        load_model(folder, loaded, Settings(), *local_artifact(loaded, folder))


def test_an_archive_that_escapes_its_folder_is_never_loaded(tmp_path) -> None:
    import zipfile

    folder = tmp_path / "evil"
    folder.mkdir()
    with zipfile.ZipFile(folder / "model.zip", "w") as archive:
        archive.writestr("digits/saved_model.pb", b"")
        archive.writestr("../../outside.txt", b"owned")
    contract = yaml.safe_load((KERAS / "modelfn.yaml").read_text())
    contract["artifact"] = {"uri": "model.zip", "sha256": sha_of(folder / "model.zip")}
    (folder / "modelfn.yaml").write_text(yaml.safe_dump(contract))
    loaded = load_contract(folder)
    with pytest.raises(ContractError, match="points outside the archive's folder"):
        load_model(folder, loaded, Settings(), *local_artifact(loaded, folder))
    assert not (tmp_path / "outside.txt").exists()


# -- Binary BYTES: an image's bytes into a tf.string input, as TF Serving's image models take them ---------


@pytest.fixture(scope="module")
def image_size_function(tmp_path_factory):
    """A SavedModel that decodes each encoded image of a ``tf.string`` batch and answers its height, width, channels."""
    import shutil

    import tensorflow as tf

    class ImageSize(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
        def serve(self, image_bytes):
            def size(encoded):
                return tf.shape(tf.io.decode_image(encoded, expand_animations=False))

            return {"size": tf.map_fn(size, image_bytes, fn_output_signature=tf.int32)}

    root = tmp_path_factory.mktemp("image-size")
    module = ImageSize()
    tf.saved_model.save(module, str(root / "export" / "sizes"), signatures={"serving_default": module.serve})
    folder = root / "function"
    folder.mkdir()
    archive_folder(root / "export" / "sizes", folder / "model.zip", "zip")
    shutil.copy(KERAS / "main.py", folder)
    contract = {
        "name": "sizes",
        "version": "1",
        "framework": "tensorflow",
        "artifact": {"uri": "model.zip", "sha256": sha_of(folder / "model.zip")},
        "inputs": [{"name": "image_bytes", "datatype": "BYTES", "shape": [-1]}],
        "outputs": [{"name": "size", "datatype": "INT32", "shape": [-1, 3]}],
        "docs": {"description": "Height, width and channels of each encoded image."},
        "warmup": "off",  # an empty string is no image
    }
    (folder / "modelfn.yaml").write_text(yaml.safe_dump(contract))
    return folder


def encoded_images() -> list[bytes]:
    import io

    from PIL import Image

    images = []
    for size, mode, fmt in (((12, 7), "L", "PNG"), ((5, 9), "RGB", "JPEG")):
        buffer = io.BytesIO()
        Image.new(mode, size, 128).save(buffer, format=fmt)
        images.append(buffer.getvalue())
    return images


def test_image_bytes_reach_a_string_input_through_b64_and_binary_bytes(image_size_function, tmp_path) -> None:
    """TF Serving's ``{"b64": ...}`` and the binary extension's BYTES carry bytes that are not text, unchanged."""
    import base64

    import tritonclient.http as triton

    png, jpeg = encoded_images()
    assert b"\xff" in jpeg or b"\x89" in png  # not UTF-8: these must not be turned into text
    expected = [[7, 12, 1], [9, 5, 3]]
    with running(image_size_function, tmp_path / "serve.log") as server:
        rows = [{"b64": base64.b64encode(image).decode()} for image in (png, jpeg)]
        by_rows = requests.post(f"{server.url}/v1/models/sizes:predict", json={"instances": rows}, timeout=120)
        assert by_rows.status_code == 200, by_rows.text
        assert by_rows.json() == {"predictions": expected}
        client = triton.InferenceServerClient(server.url.removeprefix("http://"))
        tensor = triton.InferInput("image_bytes", [2], "BYTES")
        tensor.set_data_from_numpy(np.array([png, jpeg], dtype=object), binary_data=True)
        assert client.infer("sizes", [tensor]).as_numpy("size").tolist() == expected


def test_a_model_that_cannot_take_zeros_fails_its_warm_up_with_the_way_out(image_size_function) -> None:
    import msgspec

    contract = msgspec.structs.replace(load_contract(image_size_function), warmup="zeros")
    with pytest.raises(ContractError, match=r"warm-up inference on zeros .* sets `warmup: off`"):
        load_model(image_size_function, contract, Settings(), *local_artifact(contract, image_size_function))
