"""The model registry on any store: immutable versions, aliases that move atomically.

Layout under the registry root::

    <name>/<version>/modelfn.json     the validated contract (its artifact.uri is the file below)
    <name>/<version>/<artifact file>  the bytes, whose sha256 the contract pins
    <name>/<version>/<pinned file>    each of its artifact.files (ONNX external data), pinned the same way
    <name>/_aliases/<alias>.json      {"version": ..., "history": [previous, ...], "traffic": {...}}

A version exists once its ``modelfn.json`` does; it is written last, so a push
that dies halfway leaves no version. Pushing different bytes under an existing
version is refused; identical bytes are a no-op. Aliases move by conditional
writes (GCS generation, S3 ETag, a file lock locally): a writer that lost a race
re-reads and tries again, so two racing promotes never corrupt the alias and
the history keeps both.

An alias may carry a traffic policy (:class:`Traffic`): a split of its requests between versions
by weight, a sticky key so a caller keeps its version, a shadow version that gets a copy of each
request, and the bounds past which a canary is rolled back automatically. The alias's ``version``
is then the stable one: the version with the largest weight.
"""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path
from typing import NamedTuple

import msgspec
import msgspec.json

from modelfn.contract import Contract, compile_contract, resolve_local_artifact
from modelfn.errors import ContractError, ObjectNotFound, PreconditionFailed, RecordUnreadable, RegistryError
from modelfn.runtime.digests import sha256_hex
from modelfn.runtime.stores import ABSENT, PART_BYTES, Store, join, open_store, with_retries

CONTRACT_OBJECT = "modelfn.json"
ALIASES = "_aliases"
ALIAS_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
HISTORY_LIMIT = 50
_CAS_ATTEMPTS = 8
#: Files larger than this are uploaded as a stream of parts instead of one buffered write.
STREAM_ABOVE_BYTES = 64 << 20


class Rollback(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """When a canary leaves the split: over the last ``window_s`` seconds, with ``min_requests`` on both."""

    window_s: float = 60.0
    min_requests: int = 20
    #: The canary's 5xx rate may exceed the stable version's by at most this much.
    max_error_rate_increase: float = 0.05
    #: The canary's p99 latency may be at most this multiple of the stable version's (and 50 ms more).
    max_p99_ratio: float = 2.0


class Traffic(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """How an alias's requests are shared between versions (see the module docstring)."""

    #: Version -> weight in percent; the weights add up to 100.
    split: dict[str, int]
    #: Keep a caller on one version: hash this request header's value (e.g. ``X-User``) ...
    sticky_header: str = ""
    #: ... or this top-level field of the JSON body (e.g. ``user_id``); else each request draws anew.
    sticky_field: str = ""
    #: A version that gets a copy of each request; its answers are compared and counted, never returned.
    shadow: str = ""
    #: Automatic rollback of the canaries (every version but the stable one); None turns it off.
    rollback: Rollback | None = Rollback()

    @property
    def stable(self) -> str:
        """The version with the largest weight (the first listed among equals)."""
        return max(self.split, key=lambda version: self.split[version])


class AliasRecord(msgspec.Struct, forbid_unknown_fields=True):
    version: str
    history: list[str] = []
    updated_at: float = 0.0
    traffic: Traffic | None = None


class PushResult(NamedTuple):
    name: str
    version: str
    sha256: str
    created: bool


class ModelRef(NamedTuple):
    """``<registry>/<name>@<alias>`` or ``<registry>/<name>/<version>``."""

    registry: str
    name: str
    version: str | None
    alias: str | None

    @classmethod
    def parse(cls, ref: str) -> ModelRef:
        head, _, last = ref.rstrip("/").rpartition("/")
        if "@" in last:
            name, _, alias = last.partition("@")
            registry = head
            version = None
        else:
            registry, _, name = head.rpartition("/")
            version, alias = last, None
        if not registry or not name or not (version or alias):
            raise ContractError(
                f"model reference {ref!r}: expected <registry>/<name>@<alias> or <registry>/<name>/<version>"
            )
        if alias is not None and not ALIAS_PATTERN.match(alias):
            raise ContractError(f"model reference {ref!r}: invalid alias {alias!r}")
        return cls(registry, name, version, alias)


class Registry:
    def __init__(self, store: Store, prefix: str = "", *, attempts: int = 3) -> None:
        self.store = store
        self.prefix = prefix
        self.attempts = attempts
        self.uri = f"{store.uri}/{prefix}".rstrip("/")

    @classmethod
    def open(cls, uri: str, *, attempts: int = 3) -> Registry:
        """The registry at ``uri``; each store operation is tried ``attempts`` times with backoff."""
        store, prefix = open_store(uri)
        return cls(store, prefix, attempts=attempts)

    # -- versions -------------------------------------------------------------
    def push(self, folder: str | Path) -> PushResult:
        """Upload a function folder's contract and artifact as an immutable version."""
        contract = compile_contract(folder)
        if contract.framework == "pipeline":
            raise RegistryError(
                f"{contract.name} is a pipeline: push the models it runs; "
                "the pipeline's contract ships with its function"
            )
        artifact = contract.verified_artifact()
        source = resolve_local_artifact(contract, folder)
        name, version = contract.name, contract.version
        contract_key = self._key(name, version, CONTRACT_OBJECT)
        existing = self._read_contract(contract_key)
        if existing is not None:
            if existing.verified_artifact().sha256 != artifact.sha256:
                raise RegistryError(
                    f"{name} v{version} already exists in {self.uri} with different bytes "
                    f"(sha256 {existing.verified_artifact().sha256}); versions are immutable, push a new version"
                )
            return PushResult(name, version, artifact.digest, created=False)
        # The model file, then each pinned file beside it, all under the version's own prefix.
        files = {source.name: (source, artifact.digest)}
        for relative, digest in artifact.files.items():
            path = (source.parent / relative).resolve()
            if not path.is_relative_to(source.parent.resolve()):
                raise ContractError(f"artifact.files: {relative!r} resolves outside the model's folder")
            files[relative] = (path, digest)
        for relative, (path, digest) in files.items():
            self._upload(self._key(name, version, relative), path, digest)
        stored = msgspec.structs.replace(contract, artifact=msgspec.structs.replace(artifact, uri=source.name))
        try:
            self._retry(lambda: self.store.write(contract_key, msgspec.json.encode(stored), expect=ABSENT), "push")
        except PreconditionFailed:  # a racing identical push won: fine if it is the same bytes
            return self.push(folder)
        return PushResult(name, version, artifact.digest, created=True)

    def versions(self, name: str) -> list[str]:
        suffix = "/" + CONTRACT_OBJECT
        base = self._key(name) + "/"
        keys = self._retry(lambda: self.store.list(base), "listing versions")
        found = [key[len(base) : -len(suffix)] for key in keys if key.endswith(suffix)]
        return sorted((v for v in found if "/" not in v), key=_version_order)

    def contract(self, name: str, version: str) -> Contract:
        contract = self._read_contract(self._key(name, version, CONTRACT_OBJECT))
        if contract is None:
            raise ObjectNotFound(f"{name} v{version} is not in the registry {self.uri}")
        return contract

    def artifact_key(self, contract: Contract) -> str:
        return self._key(contract.name, contract.version, contract.verified_artifact().uri)

    # -- aliases --------------------------------------------------------------
    def alias(self, name: str, alias: str) -> AliasRecord | None:
        record, _ = self._read_alias(name, alias)
        return record

    def aliases(self, name: str) -> dict[str, str]:
        """Every alias of ``name`` and the version it points at."""
        base = self._key(name, ALIASES) + "/"
        keys = self._retry(lambda: self.store.list(base), "listing aliases")
        found = {}
        for key in keys:
            alias = key[len(base) :].removesuffix(".json")
            record = self.alias(name, alias) if ALIAS_PATTERN.match(alias) else None
            if record is not None:
                found[alias] = record.version
        return found

    def resolve(self, ref: ModelRef) -> str:
        """The version a reference means now."""
        if ref.version is not None:
            return ref.version
        assert ref.alias is not None
        record = self.alias(ref.name, ref.alias)
        if record is None:
            raise ObjectNotFound(f"alias {ref.name}@{ref.alias} does not exist in {self.uri}")
        return record.version

    def promote(self, name: str, version: str, alias: str) -> AliasRecord:
        """Point ``alias`` at ``version`` (which must exist) with all its traffic; the old target goes to history."""
        self.contract(name, version)  # refuse aliases to versions that do not exist

        def move(current: AliasRecord | None) -> AliasRecord:
            if current is None:
                return AliasRecord(version, [], time.time())
            if current.version == version and current.traffic is None:
                return current
            if current.version == version:
                return AliasRecord(version, current.history, time.time())
            history = [current.version, *current.history][:HISTORY_LIMIT]
            return AliasRecord(version, history, time.time())

        return self._update_alias(name, alias, move, repair=True)

    def set_traffic(self, name: str, alias: str, traffic: Traffic) -> AliasRecord:
        """Give ``alias`` a traffic policy; its stable version becomes the alias's version."""
        check_traffic(traffic)
        for version in {*traffic.split, *([traffic.shadow] if traffic.shadow else [])}:
            self.contract(name, version)  # every version must exist
        stable = traffic.stable
        if len(traffic.split) == 1 and not traffic.shadow:
            return self.promote(name, stable, alias)  # all to one version: a plain alias

        def apply(current: AliasRecord | None) -> AliasRecord:
            if current is None:
                return AliasRecord(stable, [], time.time(), traffic)
            history = current.history if current.version == stable else [current.version, *current.history]
            return AliasRecord(stable, history[:HISTORY_LIMIT], time.time(), traffic)

        return self._update_alias(name, alias, apply, repair=True)

    def take_out(self, name: str, alias: str, canary: str, judged: Traffic) -> AliasRecord:
        """Take ``canary`` out of the alias's split, its weight to the stable version (a fleet's rollback).

        Only if the policy is still ``judged``, the one whose metrics condemned it: a policy changed
        in between is someone's newer decision, and is left alone.
        """
        if canary not in judged.split or canary == judged.stable:
            raise RegistryError(f"v{canary} is not a canary of {name}@{alias}")
        split = {v: w for v, w in judged.split.items() if v != canary}
        split[judged.stable] += judged.split[canary]
        remaining = msgspec.structs.replace(judged, split=split)

        def apply(current: AliasRecord | None) -> AliasRecord:
            if current is None or current.traffic != judged:
                raise RegistryError(f"{name}@{alias}'s traffic policy changed since it was judged; judge it again")
            history = current.history
            if len(split) == 1 and not judged.shadow:  # one version left: a plain alias again
                return AliasRecord(judged.stable, history, time.time())
            return AliasRecord(judged.stable, history, time.time(), remaining)

        return self._update_alias(name, alias, apply)

    def rollback(self, name: str, alias: str) -> AliasRecord:
        """Point ``alias`` back at its previous target."""

        def back(current: AliasRecord | None) -> AliasRecord:
            if current is None or not current.history:
                raise RegistryError(f"{name}@{alias} has no previous version to roll back to")
            return AliasRecord(current.history[0], current.history[1:], time.time())

        return self._update_alias(name, alias, back)

    # -- internals ------------------------------------------------------------
    def _update_alias(self, name: str, alias: str, change, *, repair: bool = False) -> AliasRecord:  # type: ignore[no-untyped-def]
        """Apply ``change`` to the alias with a conditional write; ``repair``: an unreadable record is replaced."""
        if not ALIAS_PATTERN.match(alias):
            raise RegistryError(f"invalid alias {alias!r}: expected {ALIAS_PATTERN.pattern}")
        key = self._alias_key(name, alias)
        for _ in range(_CAS_ATTEMPTS):
            current, token = self._read_alias(name, alias, repair=repair)
            updated = change(current)
            if current is not None and updated is current:
                return current
            try:
                data = msgspec.json.encode(updated)
                self._retry(lambda data=data, token=token: self.store.write(key, data, expect=token), "moving alias")
            except PreconditionFailed:
                continue  # someone else moved it in between: re-read and re-apply
            return updated
        raise RegistryError(f"{name}@{alias} kept changing under {_CAS_ATTEMPTS} attempts; try again")

    def _read_alias(self, name: str, alias: str, *, repair: bool = False) -> tuple[AliasRecord | None, str]:
        """The alias and the token of exactly those bytes (re-read if it moved while being read).

        An unreadable record is a :class:`RecordUnreadable`, or with ``repair`` (a promote, a new
        traffic policy: writes that need nothing of the old record) no record, to be overwritten.
        """
        key = self._alias_key(name, alias)
        for _ in range(_CAS_ATTEMPTS):
            info = self._retry(lambda: self.store.stat(key), "reading alias")
            if info is None:
                return None, ABSENT
            try:
                data = self._retry(lambda: self.store.read(key), "reading alias")
            except ObjectNotFound:
                return None, ABSENT
            after = self._retry(lambda: self.store.stat(key), "reading alias")
            if after is not None and after.token == info.token:
                try:
                    return _decode_alias(data, name, alias), info.token
                except RecordUnreadable:
                    if not repair:
                        raise
                    return None, info.token  # its history is lost with it
        raise RegistryError(f"{name}@{alias} kept changing while being read; try again")

    def _read_contract(self, key: str) -> Contract | None:
        try:
            data = self._retry(lambda: self.store.read(key), "reading contract")
        except ObjectNotFound:
            return None
        try:
            return msgspec.json.decode(data, type=Contract)
        except msgspec.DecodeError as exc:
            raise ContractError(f"{self.store.uri}/{key}: not a valid contract: {exc}") from None

    def _upload(self, key: str, path: Path, sha256: str) -> None:
        """Upload one verified file: small ones with a create-only write, large ones streamed in parts."""
        size = path.stat().st_size
        if size <= STREAM_ABOVE_BYTES:
            data = path.read_bytes()
            if sha256_hex(data) != sha256:
                raise ContractError(f"{path}: the bytes do not match the sha256 the contract pins")
            self._write_artifact(key, data, sha256)
            return
        present = self._retry(lambda: self.store.stat(key), "checking artifact")
        if present is not None:  # an earlier push of this version stopped after its files: check, don't rewrite
            if present.size != size or _stored_sha256(self.store, key, size) != sha256:
                raise RegistryError(f"{self.store.uri}/{key} already holds different bytes; refusing to overwrite")
            return
        hasher = hashlib.sha256()
        with self.store.writer(key) as out, path.open("rb") as source:
            while block := source.read(PART_BYTES):
                hasher.update(block)
                out.write(block)
            if hasher.hexdigest() != sha256:  # raising inside the block discards the upload
                raise ContractError(f"{path}: the bytes do not match the sha256 the contract pins")

    def _write_artifact(self, key: str, data: bytes, sha256: str) -> None:
        try:
            self._retry(lambda: self.store.write(key, data, expect=ABSENT), "uploading artifact")
        except PreconditionFailed:
            present = self._retry(lambda: self.store.read(key), "reading artifact")
            if sha256_hex(present) != sha256:
                raise RegistryError(
                    f"{self.store.uri}/{key} already holds different bytes; refusing to overwrite"
                ) from None

    def _retry(self, operation, what: str):  # type: ignore[no-untyped-def]
        return with_retries(operation, what=f"{what} in {self.uri}", attempts=self.attempts)

    def _key(self, *parts: str) -> str:
        return join(self.prefix, *parts)

    def _alias_key(self, name: str, alias: str) -> str:
        return self._key(name, ALIASES, f"{alias}.json")


def _stored_sha256(store: Store, key: str, size: int) -> str:
    """The sha256 of a stored object, read range by range in bounded memory."""
    hasher = hashlib.sha256()
    for start in range(0, size, PART_BYTES):
        hasher.update(store.read_range(key, start, min(PART_BYTES, size - start)))
    return hasher.hexdigest()


def _decode_alias(data: bytes, name: str, alias: str) -> AliasRecord:
    """An alias object, or a 503 naming the alias: a broken record must stop its model, not crash."""
    try:
        record = msgspec.json.decode(data, type=AliasRecord)
        if record.traffic is not None:
            check_traffic(record.traffic)
    except (msgspec.MsgspecError, RegistryError) as exc:
        reason = "it is empty" if not data.strip() else str(exc)[:200]
        raise RecordUnreadable(
            f"alias {name}@{alias} is unreadable ({reason}); set it again with modelfn promote or modelfn traffic",
            retry_after_s=30,
        ) from None
    return record


def check_traffic(traffic: Traffic) -> None:
    """Weights from 0 to 100 adding up to 100, a shadow outside the split, one sticky key at most."""
    if not traffic.split or any(not 0 <= weight <= 100 for weight in traffic.split.values()):
        raise RegistryError("a traffic split needs versions with weights from 0 to 100")
    if sum(traffic.split.values()) != 100:
        raise RegistryError(f"the split's weights add up to {sum(traffic.split.values())}, not 100")
    if traffic.shadow and traffic.shadow in traffic.split:
        raise RegistryError(f"v{traffic.shadow} is in the split; a shadow version gets copies, not traffic")
    if traffic.sticky_header and traffic.sticky_field:
        raise RegistryError("choose one sticky key: a header or a body field")


def _version_order(version: str) -> tuple[int, int | str]:
    return (0, int(version)) if version.isascii() and version.isdigit() else (1, version)
