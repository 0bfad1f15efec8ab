"""Verified artifacts: in place from a folder, streamed from a store, kept by the disk tier only where it is disk."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from emulators import new_bucket
from helpers import PEAK_BYTES

from modelfn.errors import ArtifactError, ObjectNotFound
from modelfn.runtime.artifacts import LoadPolicy, open_verified, pinned_files
from modelfn.runtime.stores import join, open_store

DATA = os.urandom(300_000)
SHA = hashlib.sha256(DATA).hexdigest()
EXTRA = os.urandom(70_000)
EXTRA_SHA = hashlib.sha256(EXTRA).hexdigest()


@pytest.fixture(params=["gs", "s3"])
def remote(request, emulators):
    """A fresh bucket in one of the emulators, and the key prefix of a model version in it."""
    store, prefix = open_store(f"{request.param}://{new_bucket(request.param)}/models")
    return store, join(prefix, "m", "1")


def _policy(tmp_path: Path, **changes) -> LoadPolicy:
    return LoadPolicy(cache_dir=str(tmp_path / "cache"), **({"disk_tier": "keep"} | changes))


def _leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def test_a_store_fetch_is_kept_then_a_second_process_reuses_it(remote, tmp_path) -> None:
    store, base = remote
    key = join(base, "model.onnx")
    store.write(key, DATA)
    files = pinned_files(key, SHA, {})
    with open_verified(store, files, _policy(tmp_path), what="m") as first:
        assert first.tier == "store" and Path(first.path).read_bytes() == DATA
        assert Path(first.loadable_path).read_bytes() == DATA  # the verified file's own descriptor
    assert _leftovers(tmp_path / "cache") == [SHA]  # no partial folder left beside it
    store.write(key, b"the store changed, the disk tier must not care")
    with open_verified(store, files, _policy(tmp_path), what="m") as second:
        assert second.tier == "disk" and second.read_bytes() == DATA


def test_ranges_land_in_place_and_extra_files_come_with_the_version(remote, tmp_path) -> None:
    store, base = remote
    store.write(join(base, "model.onnx"), DATA)
    store.write(join(base, "weights/part.bin"), EXTRA)
    files = pinned_files(join(base, "model.onnx"), SHA, {"weights/part.bin": EXTRA_SHA})
    policy = _policy(tmp_path, chunk_bytes=64 * 1024)  # 5 ranges for the model, 2 for its weights
    with open_verified(store, files, policy, what="m") as artifact:
        folder = Path(artifact.folder)
        assert (folder / "model.onnx").read_bytes() == DATA
        assert (folder / "weights" / "part.bin").read_bytes() == EXTRA
        assert artifact.size == len(DATA) + len(EXTRA)
        assert artifact.loadable_path == str(folder / "model.onnx")  # its files must sit beside it
        assert (folder.stat().st_mode & 0o777) == 0o700


def test_one_wrong_file_refuses_the_version_and_nothing_is_kept(remote, tmp_path) -> None:
    store, base = remote
    store.write(join(base, "model.onnx"), DATA)
    store.write(join(base, "part.bin"), EXTRA[:-1] + b"!")
    files = pinned_files(join(base, "model.onnx"), SHA, {"part.bin": EXTRA_SHA})
    with pytest.raises(ArtifactError, match=r"digest mismatch for .*/part\.bin"):
        open_verified(store, files, _policy(tmp_path, chunk_bytes=16 * 1024), what="m")
    assert _leftovers(tmp_path / "cache") == []


def test_a_corrupt_or_special_disk_entry_is_replaced_from_the_store(remote, tmp_path) -> None:
    store, base = remote
    key = join(base, "model.onnx")
    store.write(key, DATA)
    entry = tmp_path / "cache" / SHA
    entry.mkdir(parents=True, mode=0o700)
    (tmp_path / "cache").chmod(0o700)
    (entry / "model.onnx").write_bytes(b"half a file")
    with open_verified(store, pinned_files(key, SHA, {}), _policy(tmp_path), what="m") as artifact:
        assert artifact.tier == "store"
    assert (entry / "model.onnx").read_bytes() == DATA
    (entry / "model.onnx").unlink()
    os.mkfifo(entry / "model.onnx")  # opening a FIFO for reading would wait for a writer forever
    with open_verified(store, pinned_files(key, SHA, {}), _policy(tmp_path), what="m") as artifact:
        assert artifact.tier == "store"
    assert (entry / "model.onnx").read_bytes() == DATA


def test_off_and_memory_backed_folders_keep_nothing(remote, tmp_path) -> None:
    store, base = remote
    key = join(base, "model.onnx")
    store.write(key, DATA)
    with open_verified(store, pinned_files(key, SHA, {}), _policy(tmp_path, disk_tier="off"), what="m") as artifact:
        assert Path(artifact.path).read_bytes() == DATA
    assert _leftovers(tmp_path / "cache") == []
    shm = Path("/dev/shm")
    if not shm.is_dir():
        pytest.skip("no /dev/shm (tmpfs) on this machine")
    cache = shm / f"modelfn-test-{os.getpid()}-{tmp_path.name}"
    try:
        with open_verified(store, pinned_files(key, SHA, {}), LoadPolicy(str(cache)), what="m") as artifact:
            assert artifact.tier == "store"
        assert _leftovers(cache) == []  # auto: a kept copy in memory would cost as much as the model
    finally:
        subprocess.run(["rm", "-rf", str(cache)], check=False)


def test_a_model_that_cannot_fit_the_instance_is_refused_before_any_fetch(remote, tmp_path) -> None:
    store, base = remote
    key = join(base, "model.onnx")
    store.write(key, DATA)
    with pytest.raises(ArtifactError, match=r"model digits v1 needs at least .* MiB .*raise deploy\.memory_mb"):
        open_verified(store, pinned_files(key, SHA, {}), _policy(tmp_path, memory_limit_mb=1), what="model digits v1")
    assert _leftovers(tmp_path / "cache") == []


def test_a_copy_in_memory_counts_twice_unless_the_framework_computes_from_it(emulators, tmp_path) -> None:
    """In tmpfs, a fetched file the framework copies costs double; one it maps in place (``in_place``) once."""
    from modelfn.runtime.memory import resident_bytes

    shm = Path("/dev/shm")
    if not shm.is_dir():
        pytest.skip("no /dev/shm (tmpfs) on this machine")
    store, base = open_store(f"gs://{new_bucket('gs')}/models")
    key, data = join(base, "m", "1", "model.onnx"), os.urandom(48 << 20)
    store.write(key, data)
    files = pinned_files(key, hashlib.sha256(data).hexdigest(), {})
    cache = shm / f"modelfn-test-{os.getpid()}-{tmp_path.name}"
    try:
        limit_mb = (resident_bytes() + (72 << 20)) / (1 << 20)  # room for the file once, not twice
        with pytest.raises(ArtifactError, match="needs at least 96 MiB"):
            open_verified(store, files, LoadPolicy(str(cache), memory_limit_mb=limit_mb), what="m")
        with open_verified(store, files, LoadPolicy(str(cache), memory_limit_mb=limit_mb, in_place=True), what="m"):
            pass
        # A framework that could compute in place is asked to, rather than the load refused.
        limit_mb = (resident_bytes() + (72 << 20)) / (1 << 20)  # what this process holds now, plus 72 MiB
        policy = LoadPolicy(str(cache), memory_limit_mb=limit_mb, can_map=True)
        with open_verified(store, files, policy, what="m") as artifact:
            assert artifact.in_place
        limit_mb = (resident_bytes() + (24 << 20)) / (1 << 20)
        with pytest.raises(ArtifactError, match="needs at least 48 MiB"):  # not even once: refused
            open_verified(store, files, policy._replace(memory_limit_mb=limit_mb), what="m")
    finally:
        subprocess.run(["rm", "-rf", str(cache)], check=False)


def test_a_full_disk_while_streaming_leaves_no_file_that_is_later_trusted(tmp_path) -> None:
    """RLIMIT_FSIZE stands in for a full disk: the preallocation fails with EFBIG, as ENOSPC would."""
    store, _ = open_store(str(tmp_path / "store"))
    store.write("model.onnx", DATA)
    script = textwrap.dedent(f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
        from modelfn.errors import ArtifactError
        from modelfn.runtime.artifacts import LoadPolicy, _from_store, pinned_files
        from modelfn.runtime.stores import open_store
        store, _ = open_store({str(tmp_path / "store")!r})
        try:
            policy = LoadPolicy({str(tmp_path / "cache")!r}, "keep")
            _from_store(store, pinned_files("model.onnx", {SHA!r}, {{}}), policy, "m")
        except ArtifactError as exc:
            print(exc.message)
            sys.exit(0)
        sys.exit("no error")
    """)  # fmt: skip
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "no room to write" in done.stdout
    assert _leftovers(tmp_path / "cache") == []


def test_a_missing_object_names_its_uri(remote, tmp_path) -> None:
    store, base = remote
    with pytest.raises(ObjectNotFound, match=f"no object at {store.uri}/"):
        open_verified(store, pinned_files(join(base, "nope.onnx"), SHA, {}), _policy(tmp_path), what="m")


def test_a_local_folder_is_verified_in_place(tmp_path) -> None:
    (tmp_path / "model.onnx").write_bytes(DATA)
    store, _ = open_store(str(tmp_path))
    with open_verified(store, pinned_files("model.onnx", SHA, {}), _policy(tmp_path), what="m") as artifact:
        assert artifact.tier == "local" and artifact.path == str(tmp_path.resolve() / "model.onnx")
    assert not (tmp_path / "cache").exists()  # no copy anywhere
    (tmp_path / "model.onnx").write_bytes(DATA[:-1] + b"!")
    with pytest.raises(ArtifactError, match="digest mismatch"):
        open_verified(store, pinned_files("model.onnx", SHA, {}), _policy(tmp_path), what="m")


def test_an_overlapped_hash_gives_its_verdict_at_confirm_and_close_waits_for_it(tmp_path) -> None:
    (tmp_path / "model.onnx").write_bytes(DATA)
    store, _ = open_store(str(tmp_path))
    files = pinned_files("model.onnx", SHA, {})
    with open_verified(store, files, _policy(tmp_path), what="m", overlap=True) as artifact:
        artifact.confirm()
    (tmp_path / "model.onnx").write_bytes(DATA[:-1] + b"!")
    artifact = open_verified(store, files, _policy(tmp_path), what="m", overlap=True)  # opened, not yet judged
    try:
        with pytest.raises(ArtifactError, match="digest mismatch"):
            artifact.confirm()
        with pytest.raises(ArtifactError, match="digest mismatch"):  # every later ask too
            artifact.confirm()
    finally:
        artifact.close()
    big = os.urandom(1 << 20) * 48  # long enough to be still hashing when it is closed
    (tmp_path / "big.onnx").write_bytes(big)
    pinned = pinned_files("big.onnx", hashlib.sha256(big).hexdigest(), {})
    open_verified(store, pinned, _policy(tmp_path), what="m", overlap=True).close()
    assert not [thread for thread in threading.enumerate() if thread.name == "modelfn-verify"]


def test_a_build_record_spares_the_hash_only_for_the_recorded_size(tmp_path) -> None:
    (tmp_path / "model.onnx").write_bytes(DATA)
    store, _ = open_store(str(tmp_path))
    files = pinned_files("model.onnx", SHA, {})
    trusted = {"model.onnx": (SHA, len(DATA))}
    with open_verified(store, files, _policy(tmp_path), what="m", trusted=trusted) as artifact:
        assert artifact.tier == "local, verified at build"
    (tmp_path / "model.onnx").write_bytes(DATA + b"appended")  # not the file that was built
    with pytest.raises(ArtifactError, match="digest mismatch"):
        open_verified(store, files, _policy(tmp_path), what="m", trusted=trusted)


@pytest.mark.parametrize("kind", ["fifo", "directory", "link outside"])
def test_a_local_file_that_is_not_a_regular_file_inside_the_folder_is_refused_at_once(tmp_path, kind) -> None:
    folder = tmp_path / "fn"
    folder.mkdir()
    target = folder / "model.onnx"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "directory":
        target.mkdir()
    else:
        (tmp_path / "elsewhere.onnx").write_bytes(DATA)
        target.symlink_to(tmp_path / "elsewhere.onnx")
    store, _ = open_store(str(folder))
    with pytest.raises(ArtifactError):
        open_verified(store, pinned_files("model.onnx", SHA, {}), _policy(tmp_path), what="m")


@pytest.mark.slow
def test_a_fetch_holds_one_range_per_worker_not_the_model(emulators, tmp_path) -> None:
    """Peak memory of a 128 MiB fetch from the S3 emulator, in a process of its own."""
    size = 128 << 20
    store, _ = open_store(f"s3://{new_bucket('s3')}")
    data = os.urandom(size)
    store.write("big.onnx", data)
    digest = hashlib.sha256(data).hexdigest()
    del data
    script = PEAK_BYTES + textwrap.dedent(f"""
        from modelfn.runtime.artifacts import LoadPolicy, open_verified, pinned_files
        from modelfn.runtime.stores import open_store
        store, _ = open_store("s3://{store.uri.removeprefix("s3://")}")
        store.stat("big.onnx")  # the SDK's own start-up memory, before the fetch is measured
        before = peak_bytes()
        files = pinned_files("big.onnx", {digest!r}, {{}})
        with open_verified(store, files, LoadPolicy({str(tmp_path)!r}, "off"), what="m"):
            pass
        print(peak_bytes() - before)
    """)  # fmt: skip
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, env=os.environ)
    assert done.returncode == 0, done.stderr
    growth = int(done.stdout.split()[-1])
    # Four ranges of 8 MiB in flight, the SDK's buffers and the hash buffer; joining the model would be 2x 128 MiB.
    assert growth < 80 << 20, f"peak grew by {growth / 2**20:.0f} MiB during a {size >> 20} MiB fetch"
