"""Where artifact bytes come from. One small interface: :class:`Store`."""

from __future__ import annotations

from typing import Protocol


class Store(Protocol):
    """Reads whole objects. Implementations raise :class:`modelfn.errors.ArtifactError`."""

    def read(self, location: str) -> bytes: ...
