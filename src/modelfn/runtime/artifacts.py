"""Fetch an artifact through the tiers and refuse it unless its sha256 matches.

Tiers: the process-memory tier is the model cache itself; below it, a local
disk tier keyed by sha256 (shared by every process on the host); below that,
the object store. Nothing unverified is ever cached or deserialized: bytes are
checked against the pinned digest before they are written to disk or handed to
a predictor, and disk files are written to a temporary name and renamed, so a
crash never leaves half a file that is later trusted.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from modelfn._files import write_atomically
from modelfn.errors import ArtifactError, ObjectNotFound
from modelfn.runtime.stores import Store, with_retries

log = logging.getLogger("modelfn")

#: Objects larger than this are fetched as parallel ranged reads of this size.
CHUNK_BYTES = 8 * 1024 * 1024
RANGE_WORKERS = 4


class DiskTier:
    """``<directory>/<sha256>`` files, verified on every read."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def get(self, sha256: str) -> bytes | None:
        path = self.directory / sha256
        try:
            data = path.read_bytes()
        except OSError:
            return None
        if _matches(data, sha256):
            return data
        log.warning("disk cache entry %s is corrupt; removing it", path)
        with contextlib.suppress(OSError):
            path.unlink()
        return None

    def put(self, sha256: str, data: bytes) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            write_atomically(self.directory / sha256, data)
        except OSError as exc:  # a full or read-only disk only loses the speed-up
            log.warning("could not write the disk cache in %s: %s", self.directory, exc)


def fetch_verified(
    store: Store,
    key: str,
    expected_sha256: str,
    *,
    disk: DiskTier | None = None,
    attempts: int = 3,
    chunk_bytes: int = CHUNK_BYTES,
) -> tuple[bytes, str]:
    """The verified bytes and the tier they came from (``"disk"`` or ``"store"``)."""
    if disk is not None:
        cached = disk.get(expected_sha256)
        if cached is not None:
            return cached, "disk"
    location = f"{store.uri}/{key}"
    data = with_retries(lambda: _download(store, key, chunk_bytes), what=f"reading {location}", attempts=attempts)
    if not _matches(data, expected_sha256):
        actual = sha256_hex(data)
        raise ArtifactError(
            f"artifact digest mismatch for {location}: the contract pins sha256 "
            f"{expected_sha256}, the bytes hash to {actual}; refusing to load them"
        )
    if disk is not None:
        disk.put(expected_sha256, data)
    return data, "store"


def _download(store: Store, key: str, chunk: int) -> bytes:
    info = store.stat(key)
    if info is None:
        raise ObjectNotFound(f"no object at {store.uri}/{key}")
    if info.size <= chunk:
        return store.read(key)
    starts = range(0, info.size, chunk)
    with ThreadPoolExecutor(RANGE_WORKERS, thread_name_prefix="modelfn-fetch") as pool:
        parts = list(pool.map(lambda start: store.read_range(key, start, min(chunk, info.size - start)), starts))
    data = b"".join(parts)
    if len(data) != info.size:
        raise ArtifactError(f"{store.uri}/{key}: read {len(data)} of {info.size} bytes")
    return data


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _matches(data: bytes, sha256: str) -> bool:
    return hmac.compare_digest(sha256_hex(data), sha256)
