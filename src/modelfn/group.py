"""Several models in one deployed function, each loaded on its first request.

The function folder holds one sub-folder per model (its contract, artifact and
hooks); ``main.py`` names them, so building the group reads nothing::

    handle = http_function(__file__, models=["digits", "cancer"])

``/v2/models/{name}/...``, ``/v1/models/{name}:predict`` and
``/models/{name}/predict`` route to each. A member may be a pipeline that runs
other members (:mod:`modelfn.runtime.pipeline`). Loaded models share a memory budget
(``MODELFN_MEMORY_BUDGET_MB``, counted in artifact bytes, the part of a model's
memory that grows with it): on every request the least recently used loaded
models are released until the others fit. A released model reloads on its next
request; requests already holding it finish with it.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

from modelfn.errors import NotFound
from modelfn.function import ModelFunction

if TYPE_CHECKING:
    from modelfn.runtime.cache import ModelCache
    from modelfn.settings import Settings

log = logging.getLogger("modelfn")
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


class FunctionGroup:
    """Serves the models in ``<folder>/<name>/`` for each name given."""

    def __init__(
        self, folder: str | Path, names: list[str], settings: Settings, *, cache: ModelCache | None = None
    ) -> None:
        bad = [name for name in names if not _NAME.match(name)]
        if bad or not names or len(set(names)) != len(names):
            raise ValueError(f"models must be distinct sub-folder names matching {_NAME.pattern}; got {names}")
        self.settings = settings
        self._members = {
            name: ModelFunction(Path(folder) / name, settings, cache=cache, members=self.member) for name in names
        }
        self._recent: OrderedDict[str, None] = OrderedDict((name, None) for name in names)
        self._lock = threading.Lock()

    def member(self, name: str | None, version: str | None = None) -> ModelFunction:
        if name is None:
            raise NotFound(
                f"this function serves several models ({', '.join(self._members)}); "
                "use /models/{name}/predict or /v2/models/{name}/infer"
            )
        member = self._members.get(name)
        if member is None:
            raise NotFound(f"model {name[:100]!r} not found; this function serves {', '.join(self._members)}")
        member.resolve(name, version)  # the folder's contract must carry the same name
        self._use(name)
        return member

    def prefetch(self) -> None:
        """Begin loading every model in the background; with a memory budget, only the first one listed."""
        members = list(self._members.values())
        for member in members[:1] if self.settings.memory_budget_mb > 0 else members:
            member.prefetch()

    def refresh_now(self) -> None:
        for member in self._members.values():
            member.refresh_now()

    def ready(self, *, start: bool = False) -> bool:
        """Every contract readable (models load on their first request, so this loads none)."""
        for member in self._members.values():
            member.contract()
        return True

    def catalog(self) -> dict[str, str]:
        """The models this function serves, as listed in ``main.py``, and their versions now."""
        return {name: member.contract().version for name, member in self._members.items()}

    def wedged(self) -> bool:
        """Whether any model has every call slot held past twice the deadline."""
        return any(member.wedged() for member in self._members.values())

    def _use(self, name: str) -> None:
        """Mark ``name`` most recent, then release the least recent loaded models over the budget."""
        budget = self.settings.memory_budget_mb * 1024 * 1024
        with self._lock:
            self._recent.move_to_end(name)
            if budget <= 0:
                return
            loaded = [(other, self._members[other].loaded_bytes()) for other in self._recent]
            # A loaded pipeline holds no artifact (0 bytes): releasing it would free nothing.
            sizes = {other: size for other, size in loaded if size}
            total = sum(sizes.values())
            for other in list(sizes):  # least recent first
                if total <= budget or other == name:
                    break
                self._members[other].release()
                total -= sizes[other]
                log.info("released model %s (%d bytes) to stay within the %d MB budget", other, sizes[other],
                         self.settings.memory_budget_mb)  # fmt: skip
