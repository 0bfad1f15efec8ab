"""SHA-256 of files read through a descriptor, in bounded memory, compared in constant time.

hashlib releases the GIL on large updates, so hashing one file overlaps the
threads that are still downloading the next parts of it.
"""

from __future__ import annotations

import hashlib
import hmac
import os

#: Bytes read per call while hashing: large enough for full speed, small enough to be free.
READ_BYTES = 1 << 20


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def same_digest(actual: str, expected: str) -> bool:
    return hmac.compare_digest(actual, expected)


def hash_range(fd: int, hasher: hashlib._Hash, start: int, length: int, buffer: bytearray) -> None:
    """Feed ``length`` bytes of ``fd`` from ``start`` into ``hasher``; a short file is an ``EOFError``."""
    view = memoryview(buffer)
    end = start + length
    while start < end:
        count = os.preadv(fd, [view[: min(len(view), end - start)]], start)
        if count == 0:
            raise EOFError(f"the file ended {end - start} bytes early")
        hasher.update(view[:count])
        start += count


def hash_file(fd: int, size: int) -> str:
    """The sha256 of the first ``size`` bytes of ``fd`` (its whole length, from ``fstat``)."""
    hasher = hashlib.sha256()
    hash_range(fd, hasher, 0, size, bytearray(min(READ_BYTES, max(size, 1))))
    return hasher.hexdigest()


def hash_path(path: str | os.PathLike[str]) -> tuple[str, int]:
    """``(sha256, size)`` of the file at ``path`` (for the tooling; the runtime hashes what it holds open)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        return hash_file(fd, size), size
    finally:
        os.close(fd)
