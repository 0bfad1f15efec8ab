"""Amazon S3 through boto3 (``pip install 'modelfn[s3]'``).

Conditional writes use S3's ``If-None-Match: *`` (create only) and
``If-Match: <ETag>`` (replace only what was read). Credentials and the
endpoint come from boto3's standard chain (``AWS_ENDPOINT_URL`` for emulators).
"""

from __future__ import annotations

import os
from typing import Any

from modelfn.errors import AccessDenied, ObjectNotFound, PreconditionFailed, StoreUnavailable
from modelfn.runtime.stores import ABSENT, ObjectInfo, check_key, denied, missing_sdk

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

    def upload(self, key: str, path: str) -> ObjectInfo:
        # One PUT streamed from the file (up to 5 GB): the object appears only when it is complete.
        with open(path, "rb") as body:
            result = self._call(key, lambda: self._s3.put_object(Bucket=self._bucket, Key=check_key(key), Body=body))
        return ObjectInfo(os.path.getsize(path), result["ETag"])

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
