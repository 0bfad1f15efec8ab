"""Google Cloud Storage through google-cloud-storage (``pip install 'modelfn[gcs]'``).

Conditional writes use generation preconditions (``ifGenerationMatch``; 0 means
"must not exist"). The client comes from the SDK's standard mechanisms:
default credentials, or anonymous against ``STORAGE_EMULATOR_HOST``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, cast

from modelfn.errors import AccessDenied, ObjectNotFound, PreconditionFailed, StoreUnavailable
from modelfn.runtime.stores import ABSENT, PART_BYTES, ObjectInfo, check_key, denied, missing_sdk

try:
    from google.api_core import exceptions as gexc
    from google.cloud import storage
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise missing_sdk("google-cloud-storage", "gcs", "gs://") from exc

_TIMEOUT = (3.0, 30.0)  # connect, read: our own retries bound the total
_TRANSIENT = (gexc.ServiceUnavailable, gexc.InternalServerError, gexc.TooManyRequests, gexc.GatewayTimeout)


class GCSStore:
    _client: Any = None  # one client per process: it pools connections

    def __init__(self, bucket: str) -> None:
        self.uri = f"gs://{bucket}"
        self._bucket_name = bucket

    @property
    def _bucket(self) -> Any:
        if GCSStore._client is None:
            GCSStore._client = storage.Client()
        return GCSStore._client.bucket(self._bucket_name)

    def read(self, key: str) -> bytes:
        return self._call(
            key, lambda: self._bucket.blob(check_key(key)).download_as_bytes(timeout=_TIMEOUT, retry=None)
        )

    def read_range(self, key: str, start: int, length: int) -> bytes:
        blob = self._bucket.blob(check_key(key))
        return self._call(
            key, lambda: blob.download_as_bytes(start=start, end=start + length - 1, timeout=_TIMEOUT, retry=None)
        )

    def stat(self, key: str) -> ObjectInfo | None:
        blob = self._call(key, lambda: self._bucket.get_blob(check_key(key), timeout=_TIMEOUT, retry=None))
        return None if blob is None else ObjectInfo(blob.size, str(blob.generation))

    def write(self, key: str, data: bytes, *, expect: str | None = None) -> ObjectInfo:
        blob = self._bucket.blob(check_key(key))
        condition = {} if expect is None else {"if_generation_match": 0 if expect == ABSENT else int(expect)}
        self._call(key, lambda: blob.upload_from_string(data, timeout=_TIMEOUT, retry=None, **condition))
        return ObjectInfo(len(data), str(blob.generation))

    @contextlib.contextmanager
    def writer(self, key: str) -> Iterator[BinaryIO]:
        # A resumable upload, sent a part at a time; the object exists only once close() finalizes
        # it. On an error the session is simply abandoned (it expires), so nothing partial appears.
        blob = self._bucket.blob(check_key(key), chunk_size=PART_BYTES)
        stream = self._call(key, lambda: blob.open("wb", ignore_flush=True, retry=None))
        yield cast(BinaryIO, _Guarded(stream, lambda operation: self._call(key, operation)))  # write() and close()
        self._call(key, stream.close)

    def list(self, prefix: str) -> list[str]:
        blobs = self._call(prefix, lambda: list(self._bucket.list_blobs(prefix=prefix, timeout=_TIMEOUT, retry=None)))
        return sorted(blob.name for blob in blobs)

    def _call(self, key: str, operation: Any) -> Any:
        try:
            return operation()
        except gexc.NotFound:
            raise ObjectNotFound(f"no object at {self.uri}/{key}") from None
        except gexc.Forbidden:
            raise AccessDenied(denied(self.uri, key, "roles/storage.objectViewer")) from None
        except gexc.PreconditionFailed:
            raise PreconditionFailed(f"{self.uri}/{key} changed since it was read") from None
        except _TRANSIENT as exc:
            raise StoreUnavailable(f"{self.uri}: {type(exc).__name__}") from exc
        except (ConnectionError, OSError) as exc:
            raise StoreUnavailable(f"{self.uri} unreachable: {type(exc).__name__}") from exc
        except Exception as exc:
            # requests' connection errors are not OSError subclasses on every version.
            if type(exc).__module__.startswith(("requests", "urllib3", "google.auth")):
                raise StoreUnavailable(f"{self.uri} unreachable: {type(exc).__name__}") from exc
            raise


class _Guarded:
    """A write stream whose SDK errors become the store's (unavailable, denied...)."""

    def __init__(self, stream: Any, call: Callable[[Callable[[], Any]], Any]) -> None:
        self._stream, self._call = stream, call

    def write(self, data: bytes) -> int:
        return self._call(lambda: self._stream.write(data))
