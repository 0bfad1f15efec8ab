"""Lambda SnapStart for zip packages: what runs before the snapshot and after each restore.

With SnapStart, Lambda runs a published version's init once, snapshots the execution
environment's memory, and starts later environments from that snapshot, so a cold start skips
the imports, the fetch, the verification and the session build. Lambda's Python runtime calls
the hooks registered with its ``snapshot_restore_py`` module (present only there):

- **before the snapshot**: load and warm every model, so the snapshot holds them ready;
- **after each restore**: many environments resume from one memory image, so what must differ
  between them or may have gone stale is renewed: ``random`` is re-seeded (traffic draws),
  the store clients are dropped (their connections and credentials belong to the snapshotted
  environment; the next use makes new ones), and an alias is re-resolved at once (the snapshot
  may be hours old; a moved alias then loads its new version as usual).

Elsewhere :func:`register` does nothing.
"""

from __future__ import annotations

import logging
import random
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelfn.function import Servable
    from modelfn.settings import Settings

log = logging.getLogger("modelfn")


def register(function: Servable, settings: Settings) -> bool:
    """Register the hooks with Lambda's runtime; ``False`` where there is no SnapStart runtime."""
    try:
        import snapshot_restore_py  # Lambda's Python runtime only
    except ImportError:
        return False
    snapshot_restore_py.register_before_snapshot(lambda: before_snapshot(function, settings))
    snapshot_restore_py.register_after_restore(lambda: after_restore(function))
    return True


def before_snapshot(function: Servable, settings: Settings) -> None:
    """Load and warm the models, waiting at most ``load_wait_s``; a failure is logged, not raised."""
    from modelfn.adapters.process import load_and_wait

    started = time.monotonic()
    state = "ready" if load_and_wait(function, settings.load_wait_s) else "not ready (the first request loads it)"
    log.info("before snapshot: models %s after %.0f ms", state, (time.monotonic() - started) * 1000)


def after_restore(function: Servable) -> None:
    """Renew what one snapshot shares between environments: randomness, store clients, the alias."""
    random.seed()
    from modelfn.runtime.stores import forget_clients

    forget_clients()
    try:
        function.refresh_now()
    except Exception:  # the alias refresh of the next requests tries again
        log.exception("after restore: the alias refresh failed")
    log.info("after restore: randomness re-seeded, store clients renewed, alias refreshed")
