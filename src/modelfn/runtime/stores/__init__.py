"""Object stores behind one small interface, addressed by URI.

``file://`` (or a plain path) is the embedded default; ``gs://`` uses
google-cloud-storage and ``s3://`` boto3, each imported only when its scheme
is used. Credentials and endpoints come from the SDKs' own mechanisms
(``STORAGE_EMULATOR_HOST``, ``AWS_ENDPOINT_URL``, default credentials).

Every store supports conditional writes, which is what lets the registry move
aliases atomically: ``expect=ABSENT`` creates only if nothing is there,
``expect=<token>`` replaces only the version that was read (GCS generation,
S3 ETag, or a content digest under a file lock for local folders).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import BinaryIO, NamedTuple, Protocol, TypeVar

from modelfn.errors import ContractError, StoreUnavailable

T = TypeVar("T")

#: Bytes a streamed write holds before sending them (S3's parts must be at least 5 MiB).
PART_BYTES = 8 << 20
#: ``expect`` value for "create only if absent".
ABSENT = ""
#: ``expect`` value for "write unconditionally".
ANY = None

# Spaces are allowed (people name files "march sales.csv"); nothing that a shell or a URL would read.
_KEY = re.compile(r"^[A-Za-z0-9._@=+ -]+(/[A-Za-z0-9._@=+ -]+)*$")


class ObjectInfo(NamedTuple):
    size: int
    #: Changes whenever the object does: GCS generation, S3 ETag, local content digest.
    token: str


class Store(Protocol):
    """A bucket or folder. Keys are ``/``-separated; they never start with ``/`` nor contain ``..``."""

    #: The store's URI, for messages (``gs://bucket``).
    uri: str

    def read(self, key: str) -> bytes: ...
    def read_range(self, key: str, start: int, length: int) -> bytes: ...
    def stat(self, key: str) -> ObjectInfo | None: ...
    def write(self, key: str, data: bytes, *, expect: str | None = ANY) -> ObjectInfo: ...
    def list(self, prefix: str) -> list[str]: ...
    def writer(self, key: str) -> AbstractContextManager[BinaryIO]:
        """A stream that becomes the object when the block ends without error, in bounded memory.

        Readers see the whole object or none of it; if the block raises, nothing is written.
        """
        ...


def check_key(key: str) -> str:
    """Refuse keys that could escape a prefix or a folder (``..``, absolute, odd characters)."""
    if not _KEY.fullmatch(key) or any(part in (".", "..") for part in key.split("/")):
        raise ContractError(f"invalid object key {key[:200]!r}")
    return key


def join(prefix: str, *parts: str) -> str:
    return check_key("/".join(p.strip("/") for p in (prefix, *parts) if p.strip("/")))


def open_store(uri: str) -> tuple[Store, str]:
    """``(store, prefix)`` for ``gs://bucket/prefix``, ``s3://bucket/prefix``, ``file:///dir`` or a path."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        scheme, rest = "file", uri
    if scheme == "file":
        from modelfn.runtime.stores.local import LocalStore

        return LocalStore(rest), ""
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ContractError(f"{uri!r} names no bucket")
    prefix = prefix.strip("/")
    if prefix:
        check_key(prefix)
    if scheme == "gs":
        from modelfn.runtime.stores.gcs import GCSStore

        return GCSStore(bucket), prefix
    if scheme == "s3":
        from modelfn.runtime.stores.s3 import S3Store

        return S3Store(bucket), prefix
    raise ContractError(f"unsupported store scheme {scheme!r} in {uri!r}; use gs://, s3:// or file://")


def forget_clients() -> None:
    """Drop the SDK clients the stores keep per process (after a snapshot restore: stale connections
    and credentials); the next store call makes new ones. Only SDKs already imported are touched."""
    import sys

    for module, name in (("modelfn.runtime.stores.s3", "S3Store"), ("modelfn.runtime.stores.gcs", "GCSStore")):
        loaded = sys.modules.get(module)
        if loaded is not None:
            getattr(loaded, name)._client = None


def with_retries(operation: Callable[[], T], *, what: str, attempts: int = 3, base_delay_s: float = 0.2) -> T:
    """Run ``operation``; retry :class:`StoreUnavailable` with exponential backoff, then re-raise."""
    for attempt in range(1, attempts + 1):
        try:
            return operation()
        except StoreUnavailable as exc:
            if attempt == attempts:
                raise StoreUnavailable(
                    f"{what}: the store did not answer after {attempts} attempts ({exc.message})"
                ) from exc
            time.sleep(base_delay_s * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


def missing_sdk(package: str, extra: str, scheme: str) -> ContractError:
    return ContractError(f"{scheme} URIs need {package}: pip install 'modelfn[{extra}]'")


def denied(uri: str, key: str, grant: str) -> str:
    """The message of an object the function may not read: whose problem it is and what fixes it."""
    return (
        f"access denied to {uri}/{key}: this function's identity needs {grant} on the model's prefix "
        "(infra/ grants each function its own model's prefix only; S3 also reports a missing object as "
        "denied to a role that may not list the bucket)"
    )
