"""The registry on a local folder, the GCS emulator and moto's S3 server."""

from __future__ import annotations

import threading

import pytest
from helpers import copy_function, edit_contract, sha256_of
from runtime.stores.test_stores import GCS_PRECONDITIONS

from modelfn.errors import ContractError, ObjectNotFound, RecordUnreadable, RegistryError
from modelfn.registry import AliasRecord, ModelRef, Registry


def version_folder(tmp_path, version: str, *, tamper: bool = False):
    folder = copy_function(tmp_path)
    if tamper:  # different bytes, honestly pinned
        (folder / "model.onnx").write_bytes((folder / "model.onnx").read_bytes() + b"\0")
    edit_contract(folder, version=version, artifact={"uri": "model.onnx", "sha256": sha256_of(folder / "model.onnx")})
    return folder


def test_push_is_immutable_and_idempotent(store_uri, tmp_path) -> None:
    registry = Registry.open(store_uri)
    first = registry.push(version_folder(tmp_path, "1"))
    assert first.created and first.version == "1"
    assert registry.push(version_folder(tmp_path, "1")).created is False  # identical bytes: no-op
    with pytest.raises(RegistryError, match=r"already exists .* with different bytes"):
        registry.push(version_folder(tmp_path, "1", tamper=True))
    registry.push(version_folder(tmp_path, "2", tamper=True))
    registry.push(version_folder(tmp_path, "10"))
    assert registry.versions("digits") == ["1", "2", "10"]
    stored = registry.contract("digits", "2")
    assert stored.artifact.uri == "model.onnx" and stored.version == "2"
    assert sha256_of_bytes(registry.store.read(registry.artifact_key(stored))) == stored.artifact.sha256


def sha256_of_bytes(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_promote_rollback_and_history(store_uri, tmp_path) -> None:
    registry = Registry.open(store_uri)
    for version in ("1", "2", "3"):
        registry.push(version_folder(tmp_path, version))
    assert registry.promote("digits", "1", "prod") == AliasRecord("1", [], registry.alias("digits", "prod").updated_at)
    registry.promote("digits", "2", "prod")
    record = registry.promote("digits", "3", "prod")
    assert (record.version, record.history) == ("3", ["2", "1"])
    assert registry.resolve(ModelRef.parse(f"{store_uri}/digits@prod")) == "3"
    record = registry.rollback("digits", "prod")
    assert (record.version, record.history) == ("2", ["1"])
    registry.promote("digits", "3", "canary")
    assert registry.aliases("digits") == {"canary": "3", "prod": "2"}
    assert registry.rollback("digits", "prod").version == "1"
    with pytest.raises(RegistryError, match="no previous version"):
        registry.rollback("digits", "prod")


def test_promote_refuses_missing_versions_and_bad_aliases(store_uri, tmp_path) -> None:
    registry = Registry.open(store_uri)
    registry.push(version_folder(tmp_path, "1"))
    with pytest.raises(ObjectNotFound, match="digits v7 is not in the registry"):
        registry.promote("digits", "7", "prod")
    assert registry.alias("digits", "prod") is None
    with pytest.raises(RegistryError, match="invalid alias"):
        registry.promote("digits", "1", "../prod")
    with pytest.raises(ObjectNotFound, match="alias digits@canary does not exist"):
        registry.resolve(ModelRef.parse(f"{store_uri}/digits@canary"))


@pytest.mark.parametrize("backend", ["file", "s3", pytest.param("gs", marks=GCS_PRECONDITIONS)])
def test_racing_promotes_lose_no_update(backend, emulators, tmp_path) -> None:
    from emulators import new_bucket

    uri = str(tmp_path / "store") if backend == "file" else f"{backend}://{new_bucket(backend)}/models"
    registry = Registry.open(uri)
    versions = [str(v) for v in range(1, 9)]
    for version in versions:
        registry.push(version_folder(tmp_path, version))
    barrier = threading.Barrier(len(versions))
    errors: list[BaseException] = []

    def promote(version: str) -> None:
        try:
            barrier.wait()
            Registry.open(uri).promote("digits", version, "prod")
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=promote, args=(v,)) for v in versions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    record = registry.alias("digits", "prod")
    # Every promote happened exactly once, in some order: the alias plus its history hold all of them.
    assert sorted([record.version, *record.history], key=int) == versions


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("gs://bucket/models/digits@prod", ("gs://bucket/models", "digits", None, "prod")),
        ("s3://bucket/models/digits/3", ("s3://bucket/models", "digits", "3", None)),
        ("/srv/registry/digits@canary", ("/srv/registry", "digits", None, "canary")),
    ],
)
def test_model_references(ref, expected) -> None:
    assert tuple(ModelRef.parse(ref)) == expected


@pytest.mark.parametrize("ref", ["gs://bucket", "digits@prod", "gs://bucket/models/digits@Prod!"])
def test_bad_model_references(ref) -> None:
    with pytest.raises(ContractError, match="model reference"):
        ModelRef.parse(ref)


def test_a_broken_alias_refuses_reads_and_edits_until_promote_or_traffic_rewrites_it(tmp_path) -> None:
    registry = Registry.open(str(tmp_path / "store"))
    for version in ("1", "2"):
        registry.push(version_folder(tmp_path, version))
    registry.promote("digits", "1", "prod")
    registry.promote("digits", "2", "prod")
    [alias_file] = (tmp_path / "store").rglob("_aliases/prod.json")
    alias_file.write_bytes(alias_file.read_bytes()[:-7])  # truncated
    with pytest.raises(RecordUnreadable, match="alias digits@prod is unreadable"):
        registry.resolve(ModelRef.parse(f"{tmp_path / 'store'}/digits@prod"))
    with pytest.raises(RecordUnreadable):
        registry.rollback("digits", "prod")  # it needs the history the damage took
    assert registry.promote("digits", "1", "prod").version == "1"
    assert registry.alias("digits", "prod").history == []
