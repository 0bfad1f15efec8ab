"""The embedded default store: a local folder.

Writes go to a temporary file and are renamed into place, so readers never see
half an object; conditional writes hold an exclusive lock on the folder while
they compare, so two racing writers on one host cannot both win.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from modelfn._files import write_atomically
from modelfn.errors import ArtifactError, ObjectNotFound, PreconditionFailed
from modelfn.runtime.stores import ABSENT, ObjectInfo, check_key

_LOCK = ".modelfn-store.lock"


class LocalStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.uri = f"file://{self.root.resolve()}"

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def read(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(f"no object at {self.uri}/{key}") from None
        except OSError as exc:
            raise ArtifactError(f"cannot read {self.uri}/{key}: {exc.strerror or exc}") from None

    def read_range(self, key: str, start: int, length: int) -> bytes:
        try:
            with self._path(key).open("rb") as handle:
                handle.seek(start)
                return handle.read(length)
        except FileNotFoundError:
            raise ObjectNotFound(f"no object at {self.uri}/{key}") from None

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            info = self._path(key).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        # Every write renames a new file into place, so the inode changes with the content.
        return ObjectInfo(info.st_size, f"{info.st_ino}-{info.st_mtime_ns}-{info.st_size}")

    def write(self, key: str, data: bytes, *, expect: str | None = None) -> ObjectInfo:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._locked():
            if expect is not None:
                current = self.stat(key)
                if expect == ABSENT and current is not None:
                    raise PreconditionFailed(f"{self.uri}/{key} already exists")
                if expect != ABSENT and (current is None or current.token != expect):
                    raise PreconditionFailed(f"{self.uri}/{key} changed since it was read")
            write_atomically(path, data)
            written = self.stat(key)
        assert written is not None
        return written

    @contextlib.contextmanager
    def writer(self, key: str) -> Iterator[BinaryIO]:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Hidden until renamed into place (list() skips dot-files); a crash leaves only this.
        partial = target.with_name(f".{target.name}.{os.getpid()}-{threading.get_ident()}.partial")
        try:
            with partial.open("wb") as out:
                yield out
            os.replace(partial, target)  # atomic on one file system
        finally:
            partial.unlink(missing_ok=True)

    def list(self, prefix: str) -> list[str]:
        base = self.root / prefix if prefix else self.root
        if not base.is_dir():
            return []
        return sorted(
            str(path.relative_to(self.root))
            for path in base.rglob("*")
            if path.is_file() and not path.name.startswith(".")
        )

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / _LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
