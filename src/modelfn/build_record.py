"""The digests ``modelfn build`` recorded for a bundle: ``<folder>/.modelfn/verified.json``.

With ``deploy.verify: build`` a cold start trusts this record for files that
still have the recorded size, and skips hashing them: the bundle (a deployed
zip, an image layer) cannot change after it was built. The record is read only
for the contract's own digests: it can spare a hash, never admit another file.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from modelfn._files import write_atomically

if TYPE_CHECKING:
    from modelfn.contract import Contract

RECORD_FILE = ".modelfn/verified.json"
log = logging.getLogger("modelfn")


def read_build_record(folder: str | Path, contract: Contract) -> dict[str, tuple[str, int]]:
    """``{file name: (sha256, size)}`` for the contract's artifact files that the record vouches for."""
    path = Path(folder) / RECORD_FILE
    try:
        entries = json.loads(path.read_bytes())["files"]
    except FileNotFoundError:
        log.warning("deploy.verify is build but %s is missing; verifying at start", path)
        return {}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("build record %s is unreadable (%s); verifying at start", path, exc)
        return {}
    artifact = contract.verified_artifact()
    pinned = {artifact.file_name: artifact.digest, **artifact.files}
    trusted = {}
    for name, digest in pinned.items():
        entry = entries.get(name) if isinstance(entries, dict) else None
        if isinstance(entry, dict) and entry.get("sha256") == digest and isinstance(entry.get("size"), int):
            trusted[name] = (digest, entry["size"])
    return trusted


def write_build_record(folder: Path, sizes: dict[str, tuple[str, int]]) -> Path:
    """Record ``{file name: (sha256, size)}`` of files that were just hashed and matched the contract."""
    path = folder / RECORD_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    files = {name: {"sha256": digest, "size": size} for name, (digest, size) in sorted(sizes.items())}
    write_atomically(path, (json.dumps({"files": files}, indent=2) + "\n").encode(), mode=0o644)
    return path
