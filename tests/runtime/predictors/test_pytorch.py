"""The PyTorch predictor: the committed digits-torch program, TorchScript, what is refused, and conversion."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import requests
import yaml
from helpers import ROOT, near_documented, running

from modelfn.contract import load_contract
from modelfn.errors import ContractError
from modelfn.runtime.model import load_model, local_artifact
from modelfn.settings import Settings

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.slow
TORCH = ROOT / "functions" / "digits-torch"


class RunsCode:
    """Unpickling this creates ``marker``: the proof that a full unpickler ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def heldout() -> tuple[np.ndarray, np.ndarray]:
    with np.load(TORCH / "validation.npz") as data:
        return data["pixels"], data["labels"]


def load(folder: Path):
    contract = load_contract(folder)
    return load_model(folder, contract, Settings(), *local_artifact(contract, folder))


def copy_with(tmp_path: Path, artifact: Path, **contract_changes) -> Path:
    """digits-torch's contract around another artifact, pinned."""
    folder = tmp_path / "fn"
    folder.mkdir()
    shutil.copy2(artifact, folder / artifact.name)
    contract = yaml.safe_load((TORCH / "modelfn.yaml").read_text())
    contract["artifact"] = {"uri": artifact.name, "sha256": hashlib.sha256(artifact.read_bytes()).hexdigest()}
    contract.pop("validation", None)
    contract.update(contract_changes)
    (folder / "modelfn.yaml").write_text(yaml.safe_dump(contract, sort_keys=False))
    return folder


def test_the_exported_program_answers_with_its_documented_accuracy() -> None:
    x, y = heldout()
    model = load(TORCH)
    outputs = model.infer({"pixels": x})
    documented = load_contract(TORCH).docs.metrics["heldout_accuracy"]
    assert near_documented(float((outputs["label"] == y).mean()), documented, len(y))
    assert outputs["probabilities"].dtype == np.float32 and outputs["label"].dtype == np.int64
    assert np.allclose(outputs["probabilities"].sum(axis=1), 1, atol=1e-5)


def test_served_over_http_through_oip(tmp_path) -> None:
    x, y = heldout()
    with running(TORCH, tmp_path / "serve.log") as server:
        tensor = {"name": "pixels", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}
        response = requests.post(
            f"{server.url}/v2/models/digits/infer",
            json={"inputs": [tensor], "outputs": [{"name": "label"}]},
            timeout=120,
        )
        metadata = requests.get(f"{server.url}/v2/models/digits", timeout=30).json()
    assert response.status_code == 200, response.text
    (output,) = response.json()["outputs"]
    assert output["name"] == "label" and output["datatype"] == "INT64"
    accuracy = float((np.array(output["data"]) == y).mean())
    assert near_documented(accuracy, load_contract(TORCH).docs.metrics["heldout_accuracy"], len(y))
    assert metadata["platform"] == "pytorch_libtorch"


def test_torchscript_is_served_too(tmp_path) -> None:
    x, _ = heldout()
    program = torch.export.load(str(TORCH / "model.pt2")).module()
    scripted = torch.jit.trace(program, torch.from_numpy(x[:4]), check_trace=False)
    torch.jit.save(scripted, str(tmp_path / "model.pt"))
    folder = copy_with(tmp_path, tmp_path / "model.pt")
    outputs = load(folder).infer({"pixels": x[:7]})  # another batch size than the trace's
    with torch.inference_mode():
        expected, labels = program(torch.from_numpy(x[:7]))
    assert np.allclose(outputs["probabilities"], expected.numpy(), atol=1e-6)
    assert (outputs["label"] == labels.numpy()).all()


def test_a_torch_save_pickle_is_refused_before_unpickling(tmp_path) -> None:
    """``torch.save`` of a module needs a full unpickler: modelfn never runs one on a .pt."""
    marker = tmp_path / "ran"
    torch.save({"weights": torch.zeros(3), "payload": RunsCode(marker)}, str(tmp_path / "model.pt"))
    folder = copy_with(tmp_path, tmp_path / "model.pt")
    with pytest.raises(ContractError, match=r"torch\.save file, not a TorchScript archive"):
        load(folder)
    assert not marker.exists()


def test_a_program_whose_weights_are_pickles_is_refused_before_unpickling(tmp_path) -> None:
    """The .pt2 format allows pickled weights, which torch.export.load reads with a full unpickler."""
    marker = tmp_path / "ran"
    payload = io.BytesIO()
    torch.save(RunsCode(marker), payload)
    config_name = "model/data/weights/model_weights_config.json"
    with zipfile.ZipFile(TORCH / "model.pt2") as source, zipfile.ZipFile(tmp_path / "model.pt2", "w") as crafted:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == config_name:
                table = json.loads(data)
                first = next(iter(table["config"].values()))
                first["use_pickle"] = True
                data = json.dumps(table).encode()
            elif item.filename == "model/data/weights/weight_0":
                data = payload.getvalue()
            crafted.writestr(item, data)
    with pytest.raises(ContractError, match=r"stores 'features\.0\.weight' as a pickle"):
        load(copy_with(tmp_path, tmp_path / "model.pt2"))
    assert not marker.exists()


def test_a_fixed_batch_is_refused_where_the_contract_leaves_it_free(tmp_path) -> None:
    program = torch.export.load(str(TORCH / "model.pt2")).module()
    fixed = torch.export.export(program, (torch.zeros(1, 64),))  # no dynamic_shapes: batch fixed at 1
    torch.export.save(fixed, str(tmp_path / "model.pt2"))
    with pytest.raises(ContractError, match=r"dimension 0 is left free in the contract, the program fixes it at 1"):
        load(copy_with(tmp_path, tmp_path / "model.pt2"))


def test_a_wrong_datatype_is_refused_naming_the_input(tmp_path) -> None:
    folder = copy_with(tmp_path, TORCH / "model.pt2")
    contract = yaml.safe_load((folder / "modelfn.yaml").read_text())
    contract["inputs"][0]["datatype"] = "FP64"
    (folder / "modelfn.yaml").write_text(yaml.safe_dump(contract, sort_keys=False))
    with pytest.raises(ContractError, match=r"inputs\[0\]` \(pixels\): datatype FP64 declared, the program takes"):
        load(folder)


def test_conversion_to_onnx_is_verified(tmp_path) -> None:
    from modelfn.tooling.convert import convert

    report = convert(TORCH, tmp_path / "onnx")
    assert report["outputs"]["probabilities"]["argmax_agreement"] == 1.0
    assert report["outputs"]["probabilities"]["max_abs_diff"] < 1e-5
    documented = load_contract(TORCH).docs.metrics["heldout_accuracy"]
    assert report["accuracy"]["source"] == report["accuracy"]["converted"]  # both measured here
    assert near_documented(report["accuracy"]["source"], documented, report["validation_rows"])
    converted = load_contract(tmp_path / "onnx")
    assert (converted.framework, converted.version) == ("onnx", "1-torch-onnx")
    assert "torch" not in converted.dependencies
    x, _ = heldout()
    onnx_model, torch_model = load(tmp_path / "onnx"), load(TORCH)
    assert (onnx_model.infer({"pixels": x})["label"] == torch_model.infer({"pixels": x})["label"]).all()
