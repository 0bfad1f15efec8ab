"""Fetch an artifact and refuse it unless its sha256 matches the contract."""

from __future__ import annotations

import hashlib
import hmac

from modelfn.errors import ArtifactError
from modelfn.runtime.stores import Store


def fetch_verified(store: Store, location: str, expected_sha256: str) -> bytes:
    """Return the bytes at ``location`` if they hash to ``expected_sha256``.

    Nothing unverified ever reaches a deserializer: a mismatch raises before the
    bytes are handed to any predictor.
    """
    data = store.read(location)
    actual = hashlib.sha256(data).hexdigest()
    if not hmac.compare_digest(actual, expected_sha256):
        raise ArtifactError(
            f"artifact digest mismatch for {location}: the contract pins sha256 "
            f"{expected_sha256}, the bytes hash to {actual}; refusing to load them"
        )
    return data
