"""Amazon S3 through boto3 (``pip install 'modelfn[s3]'``).

Conditional writes use S3's ``If-None-Match: *`` (create only) and
``If-Match: <ETag>`` (replace only what was read). Credentials and the
endpoint come from boto3's standard chain (``AWS_ENDPOINT_URL`` for emulators).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, BinaryIO

from modelfn.errors import AccessDenied, ObjectNotFound, PreconditionFailed, StoreUnavailable
from modelfn.runtime.stores import ABSENT, PART_BYTES, ObjectInfo, check_key, denied, missing_sdk

try:
    import boto3
    import botocore.config
    import botocore.exceptions as bexc
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise missing_sdk("boto3", "s3", "s3://") from exc

# Our own retries (with backoff) bound the total; boto3's would multiply them.
_CONFIG = botocore.config.Config(connect_timeout=3, read_timeout=30, retries={"max_attempts": 1, "mode": "standard"})


class S3Store:
    _client: Any = None

    def __init__(self, bucket: str) -> None:
        self.uri = f"s3://{bucket}"
        self._bucket = bucket

    @property
    def _s3(self) -> Any:
        if S3Store._client is None:
            S3Store._client = boto3.client("s3", config=_CONFIG)
        return S3Store._client

    def read(self, key: str) -> bytes:
        return self._call(key, lambda: self._s3.get_object(Bucket=self._bucket, Key=check_key(key))["Body"].read())

    def read_range(self, key: str, start: int, length: int) -> bytes:
        span = f"bytes={start}-{start + length - 1}"
        return self._call(
            key, lambda: self._s3.get_object(Bucket=self._bucket, Key=check_key(key), Range=span)["Body"].read()
        )

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            head = self._call(key, lambda: self._s3.head_object(Bucket=self._bucket, Key=check_key(key)))
        except ObjectNotFound:
            return None
        return ObjectInfo(head["ContentLength"], head["ETag"])

    def write(self, key: str, data: bytes, *, expect: str | None = None) -> ObjectInfo:
        condition = {} if expect is None else ({"IfNoneMatch": "*"} if expect == ABSENT else {"IfMatch": expect})
        result = self._call(
            key, lambda: self._s3.put_object(Bucket=self._bucket, Key=check_key(key), Body=data, **condition)
        )
        return ObjectInfo(len(data), result["ETag"])

    @contextlib.contextmanager
    def writer(self, key: str) -> Iterator[BinaryIO]:
        # A multipart upload: the object appears when it is completed; an error aborts it.
        upload = _MultipartWriter(self, check_key(key))
        try:
            yield upload  # type: ignore[misc]
        except BaseException:
            upload.abort()
            raise
        upload.finish()

    def list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        paginator = self._s3.get_paginator("list_objects_v2")
        for page in self._call(prefix, lambda: list(paginator.paginate(Bucket=self._bucket, Prefix=prefix))):
            keys.extend(item["Key"] for item in page.get("Contents", []))
        return sorted(keys)

    def _call(self, key: str, operation: Any) -> Any:
        try:
            return operation()
        except bexc.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code in ("NoSuchKey", "404", "NotFound", "NoSuchBucket"):
                raise ObjectNotFound(f"no object at {self.uri}/{key}") from None
            if code in ("AccessDenied", "403", "Forbidden"):
                raise AccessDenied(denied(self.uri, key, "s3:GetObject")) from None
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                raise PreconditionFailed(f"{self.uri}/{key} changed since it was read") from None
            if status >= 500 or code in ("SlowDown", "RequestTimeout"):
                raise StoreUnavailable(f"{self.uri}: {code}") from exc
            raise
        except (
            bexc.EndpointConnectionError,
            bexc.ConnectTimeoutError,
            bexc.ReadTimeoutError,
            bexc.ConnectionClosedError,
        ) as exc:
            raise StoreUnavailable(f"{self.uri} unreachable: {type(exc).__name__}") from exc


class _MultipartWriter:
    """Buffers one part (:data:`PART_BYTES`) at a time; a small object is one plain PUT."""

    def __init__(self, store: S3Store, key: str) -> None:
        self.store, self.key = store, key
        self.buffer = bytearray()
        self.parts: list[dict[str, Any]] = []
        self.upload_id: str | None = None

    def write(self, data: bytes) -> int:
        self.buffer += data
        while len(self.buffer) >= PART_BYTES:
            self._send(bytes(self.buffer[:PART_BYTES]))
            del self.buffer[:PART_BYTES]
        return len(data)

    def _send(self, part: bytes) -> None:
        s3, bucket = self.store._s3, self.store._bucket
        if self.upload_id is None:
            started = self.store._call(self.key, lambda: s3.create_multipart_upload(Bucket=bucket, Key=self.key))
            self.upload_id = started["UploadId"]
        number = len(self.parts) + 1
        sent = self.store._call(
            self.key,
            lambda: s3.upload_part(Bucket=bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=part),
        )
        self.parts.append({"PartNumber": number, "ETag": sent["ETag"]})

    def finish(self) -> None:
        s3, bucket = self.store._s3, self.store._bucket
        if self.upload_id is None:
            body = bytes(self.buffer)
            self.store._call(self.key, lambda: s3.put_object(Bucket=bucket, Key=self.key, Body=body))
            return
        if self.buffer:
            self._send(bytes(self.buffer))
        parts = {"Parts": self.parts}
        self.store._call(
            self.key,
            lambda: s3.complete_multipart_upload(
                Bucket=bucket, Key=self.key, UploadId=self.upload_id, MultipartUpload=parts
            ),
        )

    def abort(self) -> None:
        if self.upload_id is not None:
            s3, bucket = self.store._s3, self.store._bucket
            with contextlib.suppress(Exception):  # the original error matters more; S3 expires it anyway
                s3.abort_multipart_upload(Bucket=bucket, Key=self.key, UploadId=self.upload_id)
