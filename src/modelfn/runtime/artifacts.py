"""Every file of a model version, verified against its pinned sha256 before anything reads it as a model.

Where the files come from decides what is done with them:

- **A local folder** (the function's own bundle, a ``file://`` registry): verified where they are, with
  no copy. Each file is opened once and checked through that descriptor; the model file is handed to
  the framework through the same descriptor (``/proc/self/fd/N``) where it can take one, so the bytes
  checked are the bytes loaded even if the name is replaced in between. A bundle whose digests
  ``modelfn build`` recorded may skip the re-hash (``deploy.verify: build``). Where the caller allows
  it (``overlap``: a format whose parser runs no code, such as ONNX), the hash runs on a thread of its
  own while the framework parses, and :meth:`VerifiedArtifact.confirm` waits for its verdict before
  the model may answer anything.
- **An object store**: each file streams into a private folder (``0700``, this user's only) with
  parallel ranged reads, hashed while it lands (:mod:`modelfn.runtime.downloads`), and the
  framework loads it by path. Nothing is joined in memory; a mismatch, a short read or a full disk
  removes the folder, so nothing half-written or unverified is ever trusted.

The disk tier (``MODELFN_CACHE_DIR``) keeps a store's files for the next process on the host, as
``<cache>/<sha256 of the model file>/<file name>``, re-verified at every use and read only if they are
regular files. It is kept where that folder is disk (Lambda, a workstation). Where it is memory
(Cloud Functions gen2, Cloud Run), a kept copy would count against the instance's memory for as long
as it runs, so the files are removed as soon as the model is loaded (:mod:`modelfn.runtime.memory`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import posixpath
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from modelfn._files import open_regular, private_directory
from modelfn.errors import ArtifactError, ObjectNotFound
from modelfn.runtime import memory
from modelfn.runtime.digests import hash_file, same_digest
from modelfn.runtime.downloads import CHUNK_BYTES, download_into
from modelfn.runtime.stores import Store, check_key, join

__all__ = ["LoadPolicy", "PinnedFile", "VerifiedArtifact", "open_verified", "pinned_files"]

log = logging.getLogger("modelfn")
_FD_PATHS = os.path.isdir("/proc/self/fd")


class PinnedFile(NamedTuple):
    """One file of a version: its name in the version's folder, its key in the store, its digest."""

    name: str
    key: str
    sha256: str


class LoadPolicy(NamedTuple):
    """How a version's files are fetched and kept (from :class:`~modelfn.settings.Settings`)."""

    cache_dir: str = "/tmp/modelfn-cache"
    #: ``auto`` (keep unless the cache folder is memory), ``keep`` or ``off``.
    disk_tier: str = "auto"
    attempts: int = 3
    memory_limit_mb: float = 0
    chunk_bytes: int = CHUNK_BYTES
    #: The framework computes from the fetched files' own pages (ONNX external data, no pre-packing),
    #: so a copy in a memory-backed folder is the model's only copy, not a second one.
    in_place: bool = False
    #: The framework could compute in place if asked (ONNX external data): a fetch into memory that
    #: fits once but not twice is then loaded that way (:attr:`VerifiedArtifact.in_place`) instead of refused.
    can_map: bool = False


def pinned_files(main_key: str, sha256: str, extra: Mapping[str, str]) -> list[PinnedFile]:
    """The model file at ``main_key`` first, then each pinned extra file beside it (``{name: sha256}``)."""
    base = posixpath.dirname(main_key)
    files = [PinnedFile(posixpath.basename(main_key), main_key, sha256)]
    files += [PinnedFile(name, join(base, name) if base else check_key(name), digest) for name, digest in extra.items()]
    return files


class _PendingHash:
    """Files hashed on a thread of their own while the framework parses them; :meth:`verdict` joins it."""

    def __init__(self, checks: Sequence[tuple[int, int, str, str]]) -> None:
        self._checks = checks  # (descriptor, size, pinned sha256, where) each
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="modelfn-verify", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        where = ""
        try:
            for fd, size, expected, where in self._checks:
                _check_digest(fd, size, expected, where)
        except EOFError as exc:
            self._error = ArtifactError(f"{where} changed while it was verified: {exc}")
        except OSError as exc:
            self._error = ArtifactError(f"cannot read {where}: {exc.strerror or exc}")
        except BaseException as exc:  # handed to the loading thread, which raises it
            self._error = exc

    def verdict(self) -> None:
        """Wait for the hash; raise its mismatch or read error."""
        self._thread.join()
        if self._error is not None:
            raise self._error


class VerifiedArtifact:
    """The files of one version, held open until the model is built from them.

    Verified when built, unless their hash still runs beside the framework's parse (``overlap``):
    then :meth:`confirm` must return before anything built from them may answer.
    """

    def __init__(
        self, folder: Path, names: Sequence[str], fds: Sequence[int], size: int, tier: str, *, remove: bool,
        in_place: bool = False, pending: _PendingHash | None = None,
    ) -> None:  # fmt: skip
        self.folder, self.names, self.size, self.tier = folder, list(names), size, tier
        self._fds, self._remove, self._pending = list(fds), remove, pending
        #: The instance has room for these files once only: the framework must compute from their pages.
        self.in_place = in_place

    def confirm(self) -> None:
        """Return once every file is verified; raise :class:`ArtifactError` if one does not match its pin."""
        if self._pending is not None:
            self._pending.verdict()

    @property
    def fd(self) -> int:
        """The open descriptor of the verified model file."""
        return self._fds[0]

    @property
    def path(self) -> str:
        """The model file's path (its extra files sit beside it, under their pinned names)."""
        return str(self.folder / self.names[0])

    @property
    def loadable_path(self) -> str:
        """A path that opens the very file that was verified: its descriptor, where it has no extra files."""
        if _FD_PATHS and len(self.names) == 1:
            return f"/proc/self/fd/{self._fds[0]}"
        return self.path

    def read_bytes(self) -> bytes:
        """The model file's verified bytes, for the frameworks that load only from memory."""
        fd = self._fds[0]
        size = os.fstat(fd).st_size
        data = bytearray(size)
        view, offset = memoryview(data), 0
        while offset < size:
            count = os.preadv(fd, [view[offset:]], offset)
            if count == 0:
                raise ArtifactError(f"{self.path} shrank after it was verified")
            offset += count
        return bytes(data)

    def close(self) -> None:
        if self._pending is not None:  # the hash reads these descriptors: never close one under it
            with contextlib.suppress(BaseException):
                self._pending.verdict()
        _close_all(self._fds)
        self._fds = []
        if self._remove:
            import shutil  # here, as in the fetches below: a local model's cold start needs neither it nor tempfile

            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> VerifiedArtifact:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def open_verified(
    store: Store,
    files: Sequence[PinnedFile],
    policy: LoadPolicy,
    *,
    what: str,
    trusted: Mapping[str, tuple[str, int]] | None = None,
    overlap: bool = False,
) -> VerifiedArtifact:
    """Verify (and, from a store, fetch) every file of a version; ``what`` names it in messages.

    ``trusted`` maps file names to the ``(sha256, size)`` that ``modelfn build`` recorded: a local
    file that still matches both is not hashed again. ``overlap``: a local folder's files are hashed
    on a thread of their own, and the caller calls :meth:`VerifiedArtifact.confirm` after parsing
    them and before anything built from them answers (only for a format whose parser runs no code:
    ONNX, never a pickle). A store's files are hashed while they stream, and a kept copy before use.
    """
    from modelfn.runtime.stores.local import LocalStore

    if isinstance(store, LocalStore):
        return _verify_in_place(Path(store.root), files, trusted or {}, overlap=overlap)
    return _from_store(store, files, policy, what)


def _check_digest(fd: int, size: int, expected: str, where: str) -> None:
    """Hash the ``size`` bytes of ``fd``; an :class:`ArtifactError` naming ``where`` unless they match ``expected``."""
    actual = hash_file(fd, size)
    if not same_digest(actual, expected):
        raise _mismatch(where, expected, actual)


def _mismatch(where: str, expected: str, actual: str) -> ArtifactError:
    return ArtifactError(
        f"artifact digest mismatch for {where}: the contract pins sha256 {expected}, "
        f"the bytes hash to {actual}; refusing to load them"
    )


def _verify_in_place(
    root: Path, files: Sequence[PinnedFile], trusted: Mapping[str, tuple[str, int]], *, overlap: bool
) -> VerifiedArtifact:
    base = (root / posixpath.dirname(files[0].key)).resolve()  # the version's folder, in a file:// registry too
    fds: list[int] = []
    deferred: list[tuple[int, int, str, str]] = []
    total, skipped = 0, 0
    try:
        for pinned in files:
            path = base / pinned.name
            if not path.resolve().is_relative_to(base):
                raise ArtifactError(f"{pinned.name} resolves outside the model's folder {base}")
            try:
                fd, size, hashed = _open_checked(path, pinned, trusted.get(pinned.name), defer=overlap)
            except FileNotFoundError:
                raise ObjectNotFound(f"no file at {path}") from None
            except OSError as exc:
                raise ArtifactError(f"cannot read {path}: {exc.strerror or exc}") from None
            fds.append(fd)
            if hashed and overlap:
                deferred.append((fd, size, pinned.sha256, str(path)))
            skipped += not hashed
            total += size
    except BaseException:
        _close_all(fds)
        raise
    tier = "local, verified at build" if skipped == len(files) else "local"
    pending = _PendingHash(deferred) if deferred else None
    return VerifiedArtifact(base, [f.name for f in files], fds, total, tier, remove=False, pending=pending)


def _from_store(store: Store, files: Sequence[PinnedFile], policy: LoadPolicy, what: str) -> VerifiedArtifact:
    import shutil
    import tempfile

    try:
        cache = private_directory(Path(policy.cache_dir))
    except OSError as exc:
        log.warning("cache folder %s is unusable (%s); using a private temporary folder", policy.cache_dir, exc)
        cache = Path(tempfile.mkdtemp(prefix="modelfn-cache-"))
    in_memory = memory.memory_backed(cache)
    keep = policy.disk_tier == "keep" or (policy.disk_tier == "auto" and not in_memory)
    final = cache / files[0].sha256
    if keep:
        kept = _verify_kept(final, files)  # hashed first: a bad copy is fetched again, not a failed load
        if kept is not None:
            return kept
    sizes = []
    for pinned in files:
        info = store.stat(pinned.key)
        if info is None:
            raise ObjectNotFound(f"no object at {store.uri}/{pinned.key}")
        sizes.append(info.size)
    total = sum(sizes)
    # The framework holds the model in memory; a copy in a memory-backed folder costs as much again,
    # unless the framework computes from that copy, which it is asked to when only one copy fits.
    in_place = False
    try:
        memory.check_fits(what, total * (2 if in_memory and not policy.in_place else 1), policy.memory_limit_mb)
    except ArtifactError:
        if not (in_memory and policy.can_map and not policy.in_place):
            raise
        memory.check_fits(what, total, policy.memory_limit_mb)
        in_place = True
        log.warning("%s fits this instance's memory once, not twice: loading it in place, without pre-packing", what)
    free = shutil.disk_usage(cache).free
    if total > free:
        raise ArtifactError(
            f"{what} needs {total / 2**20:,.0f} MiB in {cache} and {free / 2**20:,.0f} MiB are free; "
            "raise the instance's ephemeral storage (Lambda: ephemeral_storage) or point MODELFN_CACHE_DIR elsewhere"
        )
    partial = Path(tempfile.mkdtemp(prefix=f".{files[0].sha256[:16]}.", suffix=".partial", dir=cache))
    fds: list[int] = []
    try:
        for pinned, size in zip(files, sizes, strict=True):
            fds.append(_download(store, pinned, size, partial / pinned.name, policy, durable=keep))
        folder, remove = partial, True
        if keep:
            try:
                partial.rename(final)
                folder, remove = final, False
            except OSError:  # another process kept the same version first: ours goes after the load
                pass
    except BaseException:
        _close_all(fds)
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return VerifiedArtifact(folder, [f.name for f in files], fds, total, "store", remove=remove, in_place=in_place)


def _download(store: Store, pinned: PinnedFile, size: int, path: Path, policy: LoadPolicy, *, durable: bool) -> int:
    """Stream one file into ``path`` (a new file in the private folder) and verify it; return its descriptor."""
    location = f"{store.uri}/{pinned.key}"
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        try:
            if size:
                os.posix_fallocate(fd, 0, size)  # a full disk fails here, before any byte is fetched
            actual = download_into(
                store, pinned.key, fd, size, attempts=policy.attempts, chunk_bytes=policy.chunk_bytes
            )
            if durable:
                os.fsync(fd)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
                raise ArtifactError(
                    f"no room to write {location} ({size / 2**20:,.0f} MiB) in {path.parent.parent}: {exc.strerror}"
                ) from None
            raise
        if not same_digest(actual, pinned.sha256):
            raise _mismatch(location, pinned.sha256, actual)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _verify_kept(folder: Path, files: Sequence[PinnedFile]) -> VerifiedArtifact | None:
    """The disk tier's copy of a version if every file is there, regular and intact; else ``None``."""
    if not folder.is_dir() or folder.is_symlink():
        if folder.is_symlink() or folder.exists():
            log.warning("disk cache entry %s is not a folder; removing it", folder)
            _remove(folder)
        return None
    fds: list[int] = []
    total = 0
    try:
        for pinned in files:
            fd, size, _ = _open_checked(folder / pinned.name, pinned)
            fds.append(fd)
            total += size
    except (OSError, ArtifactError, EOFError) as exc:
        _close_all(fds)
        log.warning("disk cache entry %s is unusable (%s); removing it and fetching again", folder, exc)
        _remove(folder)
        return None
    return VerifiedArtifact(folder, [f.name for f in files], fds, total, "disk", remove=False)


def _open_checked(
    path: Path, pinned: PinnedFile, recorded: tuple[str, int] | None = None, *, defer: bool = False
) -> tuple[int, int, bool]:
    """``(descriptor, size, hashed)`` of ``path``, a regular file whose bytes match ``pinned``.

    A file matching ``recorded`` (the ``(sha256, size)`` ``modelfn build`` wrote) is not hashed again.
    With ``defer``, it is opened and not hashed here: ``hashed`` then says that the caller must.
    Raises ``OSError`` when it cannot be opened and :class:`ArtifactError` when it does not match.
    """
    fd = open_regular(path)
    try:
        size = os.fstat(fd).st_size
        if recorded == (pinned.sha256, size):
            return fd, size, False
        if defer:
            return fd, size, True
        _check_digest(fd, size, pinned.sha256, str(path))
    except BaseException:
        os.close(fd)
        raise
    return fd, size, True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        import shutil

        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


def _close_all(fds: Sequence[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
