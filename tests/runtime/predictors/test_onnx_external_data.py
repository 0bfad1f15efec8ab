"""Models with external data: every file pinned, verified one by one, pushed and pulled as one version."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import edit_contract
from models import write_pinned_external_function

from modelfn.cli import cli
from modelfn.contract import load_contract
from modelfn.errors import ArtifactError, ContractError
from modelfn.registry import Registry
from modelfn.runtime.model import load_model, local_artifact
from modelfn.settings import Settings

X = np.linspace(0, 1, 2 * 64, dtype=np.float32).reshape(2, 64)
EXPECTED = X @ (np.arange(64 * 32, dtype=np.float32).reshape(64, 32) / 1000)


def _load(folder, settings: Settings | None = None):
    contract = load_contract(folder)
    return load_model(folder, contract, settings or Settings(), *local_artifact(contract, folder))


def test_a_pinned_external_file_is_verified_and_the_model_answers(tmp_path) -> None:
    model = _load(write_pinned_external_function(tmp_path / "fn"))
    np.testing.assert_allclose(model.infer({"x": X})["y"], EXPECTED, rtol=1e-5)
    assert model.artifact_bytes > 64 * 32 * 4  # the weights' file counts in the model's size


def test_a_changed_external_file_is_refused_naming_it(tmp_path) -> None:
    folder = write_pinned_external_function(tmp_path / "fn")
    data = folder / "weights" / "model.data"
    data.write_bytes(data.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(ArtifactError, match=r"digest mismatch for .*weights/model\.data"):
        _load(folder)


def test_an_external_file_the_contract_does_not_pin_is_refused(tmp_path) -> None:
    folder = write_pinned_external_function(tmp_path / "fn", pin=False)
    with pytest.raises(ContractError, match=r"\['W'\] keep their data in external files \['weights/model\.data'\]"):
        _load(folder)


@pytest.mark.parametrize("name", ["../outside.bin", "/etc/hostname", "a/../../b", ".hidden"])
def test_pinned_names_cannot_leave_the_folder(tmp_path, name) -> None:
    folder = write_pinned_external_function(tmp_path / "fn")
    contract = load_contract(folder)
    edit_contract(folder, artifact={"uri": "model.onnx", "sha256": contract.verified_artifact().sha256,
                                    "files": {name: "0" * 64}})  # fmt: skip
    with pytest.raises(ContractError, match=r"artifact\.files"):
        load_contract(folder)


def test_digests_prints_the_block_the_contract_needs(tmp_path) -> None:
    folder = write_pinned_external_function(tmp_path / "fn")
    artifact = load_contract(folder).verified_artifact()
    result = CliRunner().invoke(cli, ["digests", str(folder)])
    assert result.exit_code == 0, result.output
    assert f"sha256: {artifact.sha256}" in result.output
    assert f"weights/model.data: {artifact.files['weights/model.data']}" in result.output


def test_a_version_with_external_data_is_pushed_and_pulled_whole(store_uri, tmp_path) -> None:
    folder = write_pinned_external_function(tmp_path / "fn")
    registry = Registry.open(store_uri)
    assert registry.push(folder).created
    contract = registry.contract("pinned", "1")
    assert registry.store.stat(registry.artifact_key(contract).replace("model.onnx", "weights/model.data"))
    settings = Settings(cache_dir=str(tmp_path / "cache"), disk_tier="keep")
    model = load_model(tmp_path / "hooks", contract, settings, registry.store, registry.artifact_key(contract))
    np.testing.assert_allclose(model.infer({"x": X})["y"], EXPECTED, rtol=1e-5)
