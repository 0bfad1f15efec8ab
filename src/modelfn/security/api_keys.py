"""API keys checked by the function itself, for deployments without a gateway (Cloud Run, local).

A key looks like ``mfn_<id>_<secret>``: the id names it (and its line in the keys file), the
secret is 32 random bytes. The file (``MODELFN_API_KEYS_FILE``, a mounted secret for instance)
holds one line per key and never the secret itself::

    # id   salted SHA-256 of the secret                 models it may use
    ci     sha256:<salt hex>:<digest hex>               digits,cancer
    admin  sha256:<salt hex>:<digest hex>               *

The secret is compared in constant time. The file is re-read when it changes (checked at most
once a second), so a key is revoked by removing its line, without a redeploy. A file that is
missing, unreadable, not UTF-8, malformed or not a regular file admits no key at all (the same
401 as a wrong key, the reason in the log) until it is whole again. ``modelfn keys``
adds, lists and revokes keys. Keys travel in ``x-api-key`` or ``Authorization: Bearer``.

A SHA-256 is enough for these secrets: they are 256 random bits, not passwords, so no slow
key-derivation function is needed to resist guessing.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import stat
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from modelfn.errors import ContractError, Forbidden, Unauthorized

KEY_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
_KEY = re.compile(r"^mfn_(?P<id>[a-z0-9][a-z0-9-]{0,31})_(?P<secret>[A-Za-z0-9_-]{43})$")
_CHECK_EVERY_S = 1.0
log = logging.getLogger("modelfn")
#: Compared against when the id is unknown, so an unknown id costs what a wrong secret costs.
_DUMMY = ("00" * 16, "00" * 32)


class KeyEntry(NamedTuple):
    salt: str
    digest: str
    models: frozenset[str]  # {"*"} for every model

    def allows(self, model: str) -> bool:
        return "*" in self.models or model in self.models


def digest(salt: str, secret: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + secret.encode()).hexdigest()


def new_key(key_id: str) -> tuple[str, str, str]:
    """``(key, salt, digest)`` for a new key: hand out the key once, store the rest."""
    if not KEY_ID.match(key_id):
        raise ContractError(f"key id {key_id[:40]!r}: use 1 to 32 lowercase letters, digits and hyphens")
    secret = secrets.token_urlsafe(32)  # 43 characters
    salt = secrets.token_hex(16)
    return f"mfn_{key_id}_{secret}", salt, digest(salt, secret)


def parse_keys(text: str, where: str) -> dict[str, KeyEntry]:
    """The keys file; a malformed line is an error naming its number (a typo must not open access)."""
    entries: dict[str, KeyEntry] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) != 3 or not KEY_ID.match(fields[0]) or not fields[1].startswith("sha256:"):
            raise ContractError(f"{where}:{number}: expected `<id> sha256:<salt>:<digest> <models or *>`")
        parts = fields[1].split(":")
        if (
            len(parts) != 3
            or not re.fullmatch(r"[0-9a-f]{32}", parts[1])
            or not re.fullmatch(r"[0-9a-f]{64}", parts[2])
        ):
            raise ContractError(f"{where}:{number}: the hash must be sha256:<32 hex salt>:<64 hex digest>")
        entries[fields[0]] = KeyEntry(parts[1], parts[2], frozenset(fields[2].split(",")))
    return entries


class KeyRing:
    """The keys of a file, re-read when it changes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int, int] | None = None
        self._checked = 0.0
        self._entries: dict[str, KeyEntry] = {}
        self._failure = ""  # the reason last logged for an unusable file
        self._refresh(force=True)

    def check(self, headers: Mapping[str, str], model: str | None) -> None:
        """Pass, or raise 401 (no valid key) or 403 (a valid key for other models); never say which part was wrong."""
        presented = presented_key(headers)
        match = _KEY.match(presented or "")
        self._refresh()
        entry = self._entries.get(match.group("id")) if match else None
        salt, expected = (entry.salt, entry.digest) if entry else _DUMMY
        secret = match.group("secret") if match else ""
        valid = hmac.compare_digest(digest(salt, secret), expected) and entry is not None
        if not valid or entry is None:  # (entry is None only when not valid: for the type checker)
            raise Unauthorized("missing or invalid API key", headers={"WWW-Authenticate": 'Bearer realm="modelfn"'})
        if model is not None and not entry.allows(model):
            raise Forbidden("this API key may not use this model")

    def _refresh(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checked < _CHECK_EVERY_S:
            return
        with self._lock:
            self._checked = now
            try:
                info = os.stat(self.path)
                stamp = (info.st_ino, info.st_mtime_ns, info.st_ctime_ns, info.st_size)
                if stamp == self._stamp:
                    return
                if not stat.S_ISREG(info.st_mode):
                    raise ContractError("not a regular file")
                entries = parse_keys(self.path.read_bytes().decode("utf-8"), str(self.path))
            except (OSError, UnicodeDecodeError, ContractError) as exc:
                # Fail closed: no key is admitted until the file is whole again. Callers all get the
                # same 401 as for a wrong key; only the log says why (and where the file is).
                self._entries, self._stamp = {}, None  # re-read at the next check, however it was fixed
                reason = getattr(exc, "strerror", None) or str(exc)
                if reason != self._failure:
                    log.error("API keys file %s is unusable (%s): every request that needs a key is refused",
                              self.path, reason)  # fmt: skip
                    self._failure = reason
                return
            if not entries:
                log.warning("API keys file %s holds no keys: every request that needs a key is refused", self.path)
            elif self._failure:
                log.info("API keys file %s is usable again: %d key(s)", self.path, len(entries))
            self._entries, self._stamp, self._failure = entries, stamp, ""


def presented_key(headers: Mapping[str, str]) -> str | None:
    key = headers.get("x-api-key")
    if key:
        return key.strip()
    authorization = headers.get("Authorization", "")
    scheme, _, value = authorization.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


_RINGS: dict[str, KeyRing] = {}
_RINGS_LOCK = threading.Lock()


def keyring(path: str) -> KeyRing:
    """One ring per file per process (each request thread shares it)."""
    with _RINGS_LOCK:
        if path not in _RINGS:
            _RINGS[path] = KeyRing(os.path.abspath(path))
        return _RINGS[path]
