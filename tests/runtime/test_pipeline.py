"""Inference pipelines: a chain across frameworks and a fan-out, answering as the frameworks do.

The group holds three real models trained here: a PCA (scikit-learn, converted to
ONNX with skl2onnx), a LogisticRegression fitted on its components (skops) and the
digits MLP (ONNX). The pipeline chains the first two and fans the input out to the
third; its answers must equal scikit-learn's own ``make_pipeline(pca, lr)``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import requests
import yaml
from conftest import make_client
from helpers import DIGITS, running, sha256_of

from modelfn.function import ModelFunction
from modelfn.runtime.cache import ModelCache
from modelfn.runtime.pipeline import PipelinePredictor
from modelfn.settings import Settings

COMPONENTS = 16
MEMBERS = ["pca", "classifier", "digits", "ensemble"]


def write_contract(folder: Path, **contract) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    contract.setdefault("version", "1")
    contract.setdefault("docs", {"description": f"{contract['name']}, trained in the test"})
    (folder / "modelfn.yaml").write_text(yaml.safe_dump(contract, sort_keys=False))


def tensor(name: str, datatype: str, *shape: int) -> dict:
    return {"name": name, "datatype": datatype, "shape": list(shape)}


PIPELINE = {
    "name": "ensemble",
    "framework": "pipeline",
    "inputs": [tensor("pixels", "FP32", -1, 64)],
    "outputs": [
        tensor("label", "INT64", -1),
        tensor("probabilities", "FP32", -1, 10),
        tensor("mlp_label", "INT64", -1),
    ],
    "steps": [
        {"model": "pca", "inputs": {"x": "pixels"}, "outputs": {"components": "features"}},
        {
            "model": "classifier",
            "inputs": {"features": "features"},
            "outputs": {"label": "label", "probabilities": "probabilities"},
        },
        {"model": "digits", "inputs": {"pixels": "pixels"}, "outputs": {"label": "mlp_label"}},
    ],
    "hooks": {"post": "hooks.py:agreement"},
}
HOOKS = """
def agreement(outputs, payload):
    return {"label": outputs["label"].tolist(), "agree": (outputs["label"] == outputs["mlp_label"]).tolist()}
"""


@pytest.fixture(scope="module")
def trained(heldout):
    """scikit-learn's own pipeline, fitted on the digits training split, and the held-out images."""
    from helpers import load_train_module
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    x_train, _, y_train, _ = load_train_module().heldout_split()
    pipeline = make_pipeline(PCA(COMPONENTS, random_state=0), LogisticRegression(max_iter=2000))
    pipeline.fit(x_train.astype(np.float32), y_train)
    return pipeline, heldout[0]


@pytest.fixture
def zoo(tmp_path, trained) -> Path:
    """A several-model function: the pipeline and the three models it runs, each in its folder."""
    import skops.io
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    pca, classifier = trained[0].steps[0][1], trained[0].steps[1][1]
    root = tmp_path / "zoo"
    onnx_pca = convert_sklearn(
        pca,
        initial_types=[("x", FloatTensorType([None, 64]))],
        final_types=[("components", FloatTensorType([None, COMPONENTS]))],
        target_opset=17,
    )
    (root / "pca").mkdir(parents=True)
    (root / "pca" / "model.onnx").write_bytes(onnx_pca.SerializeToString())
    write_contract(
        root / "pca",
        name="pca",
        framework="onnx",
        artifact={"uri": "model.onnx", "sha256": sha256_of(root / "pca" / "model.onnx")},
        inputs=[tensor("x", "FP32", -1, 64)],
        outputs=[tensor("components", "FP32", -1, COMPONENTS)],
    )
    (root / "classifier").mkdir()
    skops.io.dump(classifier, root / "classifier" / "model.skops")
    write_contract(
        root / "classifier",
        name="classifier",
        framework="sklearn",
        artifact={"uri": "model.skops", "sha256": sha256_of(root / "classifier" / "model.skops")},
        inputs=[tensor("features", "FP32", -1, COMPONENTS)],
        outputs=[tensor("label", "INT64", -1), tensor("probabilities", "FP32", -1, 10)],
    )
    shutil.copytree(DIGITS, root / "digits", ignore=shutil.ignore_patterns("__pycache__", ".modelfn", "train.py"))
    write_contract(root / "ensemble", **PIPELINE)
    (root / "ensemble" / "hooks.py").write_text(HOOKS)
    (root / "main.py").write_text(
        f"from modelfn.adapters.gcf import http_function\n\nhandle = http_function(__file__, models={MEMBERS})\n"
    )
    return root


def infer(client, images: np.ndarray, outputs: list[str] | None = None):
    body = {"inputs": [{"name": "pixels", "shape": list(images.shape), "datatype": "FP32", "data": images.tolist()}]}
    if outputs:
        body["outputs"] = [{"name": name} for name in outputs]
    return client.post("/v2/models/ensemble/infer", json=body)


def test_the_chain_answers_as_scikit_learn_and_the_fan_out_as_the_mlp(zoo, trained, digits_client) -> None:
    pipeline, images = trained
    answer = infer(make_client(zoo), images)
    assert answer.status_code == 200, answer.get_json()
    assert answer.headers["X-Model-Version"] == "1"
    outputs = {out["name"]: np.array(out["data"]).reshape(out["shape"]) for out in answer.get_json()["outputs"]}
    assert list(outputs) == ["label", "probabilities", "mlp_label"]
    np.testing.assert_array_equal(outputs["label"], pipeline.predict(images))
    np.testing.assert_allclose(outputs["probabilities"], pipeline.predict_proba(images), atol=1e-5)
    mlp = digits_client.post(
        "/v2/models/digits/infer",
        json={"inputs": [{"name": "pixels", "shape": list(images.shape), "datatype": "FP32", "data": images.tolist()}],
              "outputs": [{"name": "label"}]},
    ).get_json()["outputs"][0]["data"]  # fmt: skip
    np.testing.assert_array_equal(outputs["mlp_label"], mlp)
    assert (outputs["label"] == outputs["mlp_label"]).mean() > 0.9  # two different models, mostly agreeing


def test_every_protocol_and_the_hooks_reach_the_pipeline(zoo, trained) -> None:
    pipeline, images = trained
    client = make_client(zoo)
    metadata = client.get("/v2/models/ensemble").get_json()
    assert metadata["platform"] == "ensemble" and metadata["inputs"][0]["name"] == "pixels"
    plain = client.post("/models/ensemble/predict", json={"pixels": images[:5].tolist()})
    assert plain.status_code == 200
    assert plain.get_json()["label"] == pipeline.predict(images[:5]).tolist()
    assert len(plain.get_json()["agree"]) == 5
    served = client.post("/v1/models/ensemble:predict", json={"instances": images[:3].tolist()})
    assert [row["label"] for row in served.get_json()["predictions"]] == pipeline.predict(images[:3]).tolist()


def test_only_the_steps_that_requested_outputs_need_are_run(zoo) -> None:
    settings = Settings()
    cache = ModelCache()
    members = {name: ModelFunction(zoo / name, settings, cache=cache) for name in MEMBERS[:3]}
    calls: list[str] = []

    class Recorded:
        """The real step model, noting each use (the interface, wrapping the real thing)."""

        def __init__(self, name: str) -> None:
            self.name = name

        def contract(self):
            return members[self.name].contract()

        def model(self):
            calls.append(self.name)
            return members[self.name].model()

    from modelfn.contract import load_contract

    predictor = PipelinePredictor(load_contract(zoo / "ensemble"), Recorded)
    pixels = {"pixels": np.zeros((2, 64), np.float32)}
    assert list(predictor.predict(pixels, ["mlp_label"])) == ["mlp_label"]
    assert calls == ["digits"]
    calls.clear()
    assert list(predictor.predict(pixels, ["probabilities"])) == ["probabilities"]
    assert calls == ["pca", "classifier"]


def test_bad_input_is_checked_against_the_pipeline_contract(zoo) -> None:
    client = make_client(zoo)
    wrong = infer(client, np.zeros((1, 63), np.float32))
    assert wrong.status_code == 400 and "input 'pixels': shape [1, 63]" in wrong.get_json()["error"]
    unknown = infer(client, np.zeros((1, 64), np.float32), ["features"])
    assert unknown.status_code == 400 and "unknown output(s) ['features']" in unknown.get_json()["error"]


def rewire(zoo: Path, **changes) -> None:
    write_contract(zoo / "ensemble", **{**PIPELINE, **changes})


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        (  # the classifier takes 16 components, not 64 pixels
            [{"model": "classifier", "inputs": {"features": "pixels"}, "outputs": {"label": "label"}}],
            "input 'features' reads 'pixels', which is pipeline input: FP32 [-1, 64], but FP32 [-1, 16] is declared",
        ),
        (
            [{"model": "digits", "inputs": {"pixels": "pixels"}, "outputs": {"probabilities": "label"}}],
            "field `outputs[0]` (label): it is output 'probabilities' of digits: FP32 [-1, 10], but INT64 [-1]",
        ),
        (
            [{"model": "digits", "inputs": {"image": "pixels"}, "outputs": {"label": "label"}}],
            "`inputs` must map each of the model's inputs ['pixels']; unmapped ['pixels'], unknown ['image']",
        ),
        (
            [{"model": "digits", "inputs": {"pixels": "pixels"}, "outputs": {"score": "label"}}],
            "the model has no output 'score'",
        ),
        (
            [{"model": "iris", "inputs": {"pixels": "pixels"}, "outputs": {"label": "label"}}],
            "field `steps[0]` (iris): model 'iris' not found",
        ),
    ],
)
def test_wiring_that_disagrees_with_the_models_fails_the_load_by_name(zoo, steps, message) -> None:
    outputs = [tensor("label", "INT64", -1)]
    rewire(zoo, steps=steps, outputs=outputs, hooks={})
    answer = infer(make_client(zoo), np.zeros((1, 64), np.float32))
    assert answer.status_code == 503
    error = answer.get_json()["error"]
    assert error.startswith("the model could not be loaded: ")
    assert message in error


def test_a_pipeline_may_not_run_a_pipeline(zoo) -> None:
    shutil.copytree(zoo / "ensemble", zoo / "outer")
    write_contract(
        zoo / "outer",
        **{**PIPELINE, "name": "outer", "hooks": {}, "outputs": [tensor("label", "INT64", -1)],
           "steps": [{"model": "ensemble", "inputs": {"pixels": "pixels"}, "outputs": {"label": "label"}}]},
    )  # fmt: skip
    main = (zoo / "main.py").read_text()
    (zoo / "main.py").write_text(main.replace("models=[", "models=['outer', "))
    answer = make_client(zoo).post("/models/outer/predict", json={"pixels": [[0.0] * 64]})
    assert answer.status_code == 503 and "ensemble is itself a pipeline" in answer.get_json()["error"]


def test_a_pipeline_outside_a_several_model_function_says_how_to_serve_it(zoo) -> None:
    (zoo / "ensemble" / "main.py").write_text(
        "from modelfn.adapters.gcf import http_function\n\nhandle = http_function(__file__)\n"
    )
    answer = make_client(zoo / "ensemble").post("/predict", json={"pixels": [[0.0] * 64]})
    assert answer.status_code == 503 and "http_function(__file__, models=[...])" in answer.get_json()["error"]


def test_steps_released_under_the_memory_budget_are_reloaded(zoo, trained, monkeypatch) -> None:
    pipeline, images = trained
    monkeypatch.setenv("MODELFN_MEMORY_BUDGET_MB", "0.00001")  # only the model in use fits
    client = make_client(zoo)
    for _ in range(2):
        answer = client.post("/models/ensemble/predict", json={"pixels": images[:4].tolist()})
        assert answer.status_code == 200 and answer.get_json()["label"] == pipeline.predict(images[:4]).tolist()


@pytest.mark.slow
def test_a_pipeline_over_http(zoo, trained, tmp_path) -> None:
    pipeline, images = trained
    with running(zoo, tmp_path / "serve.log") as server:
        answer = requests.post(server.url + "/models/ensemble/predict", json={"pixels": images.tolist()}, timeout=60)
        assert answer.status_code == 200
        assert answer.json()["label"] == pipeline.predict(images).tolist()
        assert "loaded pipeline ensemble v1" in server.log()


# -- the tooling around a pipeline -------------------------------------------------------------------


def test_modelfn_check_loads_the_pipeline_beside_its_sibling_models(zoo) -> None:
    from test_cli import modelfn

    rewire(zoo, example={"pixels": [[0.0] * 64]})
    result = modelfn("check", str(zoo / "ensemble"))
    assert result.returncode == 0, result.stderr
    assert "ensemble v1 (pipeline)" in result.stdout and "pca -> classifier -> digits" in result.stdout
    assert '"agree"' in result.stdout and result.stdout.rstrip().endswith("ok")
    iris = [{"model": "iris", "inputs": {"pixels": "pixels"}, "outputs": {"label": "label"}}]
    rewire(zoo, steps=iris, outputs=[tensor("label", "INT64", -1)], hooks={})
    broken = modelfn("check", str(zoo / "ensemble"))
    assert broken.returncode == 1
    assert (
        "field `steps[0]` (iris): " in broken.stderr and "iris/modelfn.yaml: cannot read the contract" in broken.stderr
    )


def test_a_pipeline_is_neither_pushed_nor_converted(zoo, tmp_path) -> None:
    from modelfn.errors import ContractError, RegistryError
    from modelfn.registry import Registry
    from modelfn.tooling.convert import convert

    with pytest.raises(RegistryError, match="ensemble is a pipeline: push the models it runs"):
        Registry.open(str(tmp_path / "registry")).push(zoo / "ensemble")
    with pytest.raises(ContractError, match="is a pipeline; convert each model it runs"):
        convert(zoo / "ensemble", tmp_path / "out")
