"""The artifact tiers: disk by sha256 over a real store, verified at every step."""

from __future__ import annotations

import hashlib
import os

import pytest

from modelfn.errors import ArtifactError, ObjectNotFound
from modelfn.runtime.artifacts import DiskTier, fetch_verified
from modelfn.runtime.stores import join, open_store

DATA = os.urandom(300_000)
SHA = hashlib.sha256(DATA).hexdigest()


def test_store_then_disk_and_a_second_process_reuses_the_disk(store_uri, tmp_path) -> None:
    store, prefix = open_store(store_uri)
    key = join(prefix, "m", "1", "model.onnx")
    store.write(key, DATA)
    disk = DiskTier(tmp_path / "cache")
    assert fetch_verified(store, key, SHA, disk=disk) == (DATA, "store")
    assert (tmp_path / "cache" / SHA).read_bytes() == DATA
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")]  # no temp files left
    store.write(key, b"the store changed, the disk tier must not care")
    assert fetch_verified(store, key, SHA, disk=DiskTier(tmp_path / "cache")) == (DATA, "disk")


def test_parallel_ranged_reads_reassemble_the_object(store_uri) -> None:
    store, prefix = open_store(store_uri)
    key = join(prefix, "big.onnx")
    store.write(key, DATA)
    data, tier = fetch_verified(store, key, SHA, chunk_bytes=64 * 1024)  # 5 ranges, read in parallel
    assert data == DATA and tier == "store"


def test_corrupted_bytes_are_refused_and_never_cached(store_uri, tmp_path) -> None:
    store, prefix = open_store(store_uri)
    key = join(prefix, "model.onnx")
    store.write(key, DATA[:-1] + b"!")
    disk = DiskTier(tmp_path / "cache")
    with pytest.raises(ArtifactError, match="digest mismatch"):
        fetch_verified(store, key, SHA, disk=disk)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_a_corrupt_disk_entry_is_replaced_from_the_store(tmp_path) -> None:
    store, _ = open_store(str(tmp_path / "store"))
    store.write("model.onnx", DATA)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / SHA).write_bytes(b"half a file")
    data, tier = fetch_verified(store, "model.onnx", SHA, disk=DiskTier(tmp_path / "cache"))
    assert (data, tier) == (DATA, "store") and (tmp_path / "cache" / SHA).read_bytes() == DATA


def test_a_missing_object_names_its_uri(store_uri) -> None:
    store, prefix = open_store(store_uri)
    with pytest.raises(ObjectNotFound, match=f"no object at {store.uri}/"):
        fetch_verified(store, join(prefix, "nope.onnx"), SHA)
