"""Stream one object into a file with parallel ranged reads, hashing it while it arrives.

Each worker reads a range and writes it in place (``pwrite``) into a file
preallocated to the object's size, so the object is never held whole in
memory: at most one range per worker is. The caller's thread hashes the file
in order, range by range, as soon as each range has landed, reading it back
from the page cache; so the digest is ready when the last range is, and a
wrong byte anywhere fails the download.

Each range is retried on its own (a stalled or cut read costs one range, not
the object); a range that comes back short is an error, never a hole.
"""

from __future__ import annotations

import hashlib
from collections import deque
from typing import TYPE_CHECKING

from modelfn._files import write_all
from modelfn.errors import ArtifactError
from modelfn.runtime.digests import READ_BYTES, hash_range
from modelfn.runtime.stores import Store, with_retries

if TYPE_CHECKING:
    from concurrent.futures import Future

#: Objects larger than this are read as parallel ranges of this size.
CHUNK_BYTES = 8 * 1024 * 1024
RANGE_WORKERS = 4


def download_into(
    store: Store, key: str, fd: int, size: int, *, attempts: int = 3, chunk_bytes: int = CHUNK_BYTES
) -> str:
    """Write the ``size`` bytes of ``key`` into ``fd`` (opened read-write); return their sha256."""
    location = f"{store.uri}/{key}"
    hasher = hashlib.sha256()
    if size <= chunk_bytes:
        data = with_retries(lambda: store.read(key), what=f"reading {location}", attempts=attempts)
        _check_length(location, 0, size, len(data))
        write_all(fd, data, 0)
        hasher.update(data)
        return hasher.hexdigest()

    def fetch(start: int) -> int:
        length = min(chunk_bytes, size - start)
        data = with_retries(
            lambda: store.read_range(key, start, length), what=f"reading {location} at {start}", attempts=attempts
        )
        _check_length(location, start, length, len(data))
        write_all(fd, data, start)
        return length

    buffer = bytearray(READ_BYTES)
    starts = iter(range(0, size, chunk_bytes))
    from concurrent.futures import ThreadPoolExecutor  # a local model is never fetched in ranges

    pool = ThreadPoolExecutor(RANGE_WORKERS, thread_name_prefix="modelfn-fetch")
    pending: deque[tuple[int, Future[int]]] = deque()
    try:
        for start in starts:
            pending.append((start, pool.submit(fetch, start)))
            if len(pending) == 2 * RANGE_WORKERS:  # queued ranges hold no bytes; this bounds the bookkeeping
                break
        while pending:
            start, future = pending.popleft()
            length = future.result()
            following = next(starts, None)
            if following is not None:
                pending.append((following, pool.submit(fetch, following)))
            try:
                hash_range(fd, hasher, start, length, buffer)
            except EOFError as exc:
                raise ArtifactError(f"{location}: the downloaded file is short ({exc})") from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return hasher.hexdigest()


def _check_length(location: str, start: int, expected: int, got: int) -> None:
    if got != expected:
        raise ArtifactError(
            f"{location}: asked for {expected} bytes at offset {start}, got {got} "
            "(the object changed while it was read, or the read was cut short)"
        )
