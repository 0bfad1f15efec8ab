"""Unpack a verified artifact archive (a SavedModel folder as ``.zip`` or ``.tar.gz``) safely.

Every entry is checked before anything is written: no absolute paths, no ``..``,
no links, devices or other special files, at most :data:`MAX_ENTRIES` entries and
:data:`MAX_UNPACKED_BYTES` in all (declared sizes bound what is read: zipfile
stops at an entry's declared size, and tar sizes are exact). Tar extraction also
goes through Python's own ``filter="data"``, a second, independent guard.
"""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from modelfn.errors import ContractError

MAX_ENTRIES = 10_000
MAX_UNPACKED_BYTES = 2 * 1024**3


class Limits(NamedTuple):
    entries: int = MAX_ENTRIES
    unpacked_bytes: int = MAX_UNPACKED_BYTES


def unpack(data: bytes, destination: Path, limits: Limits | None = None) -> None:
    """Unpack ``data`` (zip or gzip/plain tar, told by its first bytes) into the empty folder ``destination``.

    Nothing is written unless every entry passes the checks.
    """
    limits = limits or Limits()
    if data[:4] == b"PK\x03\x04":
        _unpack_zip(data, destination, limits)
    elif data[:2] == b"\x1f\x8b" or _is_tar(data):
        _unpack_tar(data, destination, limits)
    else:
        raise ContractError("artifact is neither a zip nor a tar archive")


def _check_name(name: str) -> None:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise ContractError(f"artifact archive entry {name[:200]!r} points outside the archive's folder")


def _check_totals(entries: int, size: int, limits: Limits) -> None:
    if entries > limits.entries:
        raise ContractError(f"artifact archive has more than {limits.entries} entries")
    if size > limits.unpacked_bytes:
        raise ContractError(f"artifact archive unpacks to more than {limits.unpacked_bytes} bytes")


def _unpack_zip(data: bytes, destination: Path, limits: Limits) -> None:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise ContractError(f"artifact is not a readable zip archive: {exc}") from exc
    with archive:
        infos = archive.infolist()
        total = 0
        for info in infos:
            _check_name(info.filename)
            kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the writer recorded no type: a plain file
            if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise ContractError(f"artifact archive entry {info.filename[:200]!r} is a link or special file")
            total += info.file_size
            _check_totals(len(infos), total, limits)
        try:
            archive.extractall(destination)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise ContractError(f"artifact zip archive could not be unpacked: {exc}") from exc


def _is_tar(data: bytes) -> bool:
    return len(data) > 262 and data[257:262] == b"ustar"


def _unpack_tar(data: bytes, destination: Path, limits: Limits) -> None:
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
            members = archive.getmembers()
            total = 0
            for member in members:
                _check_name(member.name)
                if not (member.isfile() or member.isdir()):
                    raise ContractError(f"artifact archive entry {member.name[:200]!r} is a link or special file")
                total += member.size
                _check_totals(len(members), total, limits)
            archive.extractall(destination, members=members, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ContractError(f"artifact is not a readable tar archive: {exc}") from exc
