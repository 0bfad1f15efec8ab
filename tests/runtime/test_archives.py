"""Archive artifacts (SavedModel folders) unpack only when every entry is safe; nothing is written otherwise."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile

import pytest

from modelfn.errors import ContractError
from modelfn.runtime.archives import Limits, unpack


def zipped(entries: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return buffer.getvalue()


def tarred(entries: dict[str, bytes], special: list[tarfile.TarInfo] = ()) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
        for info in special:
            archive.addfile(info)
    return buffer.getvalue()


def link(name: str, kind: bytes, target: str = "/etc/passwd") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


GOOD = {"model/saved_model.pb": b"graph", "model/variables/variables.index": b"index"}


@pytest.mark.parametrize("pack", [zipped, tarred], ids=["zip", "tar.gz"])
def test_a_well_formed_archive_unpacks(tmp_path, pack) -> None:
    unpack(pack(GOOD), tmp_path)
    assert (tmp_path / "model/saved_model.pb").read_bytes() == b"graph"
    assert (tmp_path / "model/variables/variables.index").read_bytes() == b"index"


@pytest.mark.parametrize("pack", [zipped, tarred], ids=["zip", "tar.gz"])
@pytest.mark.parametrize("name", ["../evil.pb", "model/../../evil.pb", "/tmp/evil.pb", "C:/evil.pb", "..\\evil.pb"])
def test_entries_that_leave_the_folder_are_refused(tmp_path, pack, name) -> None:
    with pytest.raises(ContractError, match="points outside the archive's folder"):
        unpack(pack({**GOOD, name: b"x"}), tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "evil.pb").exists()


@pytest.mark.parametrize(
    "data",
    [
        zipped(GOOD, links={"model/link": "/etc/passwd"}),
        tarred(GOOD, [link("model/link", tarfile.SYMTYPE)]),
        tarred(GOOD, [link("model/hard", tarfile.LNKTYPE, "model/saved_model.pb")]),
        tarred(GOOD, [link("model/device", tarfile.CHRTYPE, "")]),
        tarred(GOOD, [link("model/fifo", tarfile.FIFOTYPE, "")]),
    ],
    ids=["zip-symlink", "tar-symlink", "tar-hardlink", "tar-device", "tar-fifo"],
)
def test_links_and_special_files_are_refused(tmp_path, data) -> None:
    with pytest.raises(ContractError, match="is a link or special file"):
        unpack(data, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("pack", [zipped, tarred], ids=["zip", "tar.gz"])
def test_a_bomb_is_refused_before_anything_is_written(tmp_path, pack) -> None:
    data = pack({"model/zeros": bytes(10 * 1024 * 1024)})
    assert len(data) < 100_000  # compresses ~1000x
    with pytest.raises(ContractError, match="unpacks to more than 1048576 bytes"):
        unpack(data, tmp_path / "out", Limits(unpacked_bytes=1024 * 1024))
    assert not (tmp_path / "out").exists()


def test_too_many_entries(tmp_path) -> None:
    with pytest.raises(ContractError, match="more than 3 entries"):
        unpack(zipped({f"f{i}": b"" for i in range(4)}), tmp_path, Limits(entries=3))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not an archive at all", "neither a zip nor a tar archive"),
        (zipped(GOOD)[:60], "not a readable zip archive"),
        (tarred(GOOD)[:40], "tar archive"),
    ],
    ids=["garbage", "truncated-zip", "truncated-tar"],
)
def test_damaged_archives_are_a_clear_error(tmp_path, data, message) -> None:
    with pytest.raises(ContractError, match=message):
        unpack(data, tmp_path)
