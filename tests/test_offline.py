"""ModelSource: what Beam's and Spark's workers load, from a function folder or a pinned registry version."""

from __future__ import annotations

import pickle

import pytest
from helpers import DIGITS, copy_function

from modelfn.errors import ContractError, ModelfnError, ObjectNotFound
from modelfn.offline import ModelSource
from modelfn.registry import Registry


@pytest.fixture
def registry(tmp_path):
    """A local registry holding digits v1 and v2 (v2 a copy under another version), prod -> v1."""
    registry = Registry.open(str(tmp_path / "registry"))
    registry.push(DIGITS)
    registry.push(copy_function(tmp_path, version="2"))
    registry.promote("digits", "1", "prod")
    return registry


def test_a_folder_loads_once_per_process_and_travels_as_a_small_value(tmp_path) -> None:
    source = ModelSource.of(copy_function(tmp_path))
    travelled = pickle.loads(pickle.dumps(source))
    assert len(pickle.dumps(source)) < 500
    first = source.load()
    assert travelled.load() is first  # the same value on a worker finds the process's loaded model
    assert first.predict_json({"image": [[0] * 8] * 8})["digit"] in range(10)


def test_an_alias_is_pinned_when_the_source_is_made(registry) -> None:
    source = ModelSource.of(f"{registry.uri}/digits@prod", folder=DIGITS)
    assert source.model.endswith("/digits/1")
    registry.promote("digits", "2", "prod")  # moves while the job would run: the job keeps v1
    assert source.load().contract.version == "1"
    assert ModelSource.of(f"{registry.uri}/digits@prod", folder=DIGITS).contract().version == "2"


def test_a_registry_model_with_hooks_needs_the_folder_that_holds_them(registry) -> None:
    with pytest.raises(ContractError, match=r"has hooks .*pass the function folder"):
        ModelSource.of(f"{registry.uri}/digits/2").load()


def test_a_corrupt_artifact_is_refused_before_anything_runs(tmp_path) -> None:
    folder = copy_function(tmp_path)
    data = bytearray((folder / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelfnError, match=r"digest mismatch .* refusing to load them"):
        ModelSource.of(folder).load()


def test_what_is_neither_a_folder_nor_a_reference_is_refused(tmp_path) -> None:
    with pytest.raises(ContractError, match="no such function folder"):
        ModelSource.of(str(tmp_path / "missing" / "digits"))
    (tmp_path / "registry" / "digits").mkdir(parents=True)
    with pytest.raises(ObjectNotFound, match="is not in the registry"):
        ModelSource.of(str(tmp_path / "registry" / "digits" / "3"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ContractError, match=r"no modelfn\.yaml"):
        ModelSource.of(tmp_path / "empty")
