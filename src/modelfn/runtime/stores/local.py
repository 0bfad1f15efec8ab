"""The embedded default store: a local folder (the function's own, or ``file://``)."""

from __future__ import annotations

from pathlib import Path

from modelfn.errors import ArtifactError


class LocalStore:
    """Reads artifacts from the local file system."""

    def read(self, location: str) -> bytes:
        try:
            return Path(location).read_bytes()
        except FileNotFoundError:
            raise ArtifactError(f"artifact not found: {location}") from None
        except OSError as exc:
            raise ArtifactError(f"cannot read artifact {location}: {exc.strerror or exc}") from None
