"""The data plane of one deployed function: a folder with a contract, every protocol.

Creating a :class:`ModelFunction` does no I/O and imports nothing heavy; the
contract is read on the first request, the model is loaded through the
process-global single-flight cache, and the protocol modules (which need
numpy) are imported on the first request too.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from modelfn.errors import ModelFault, ModelfnError, NotFound, UnsupportedMediaType
from modelfn.runtime.cache import GLOBAL_CACHE, ModelCache

if TYPE_CHECKING:
    from modelfn.contract import Contract
    from modelfn.http import Request, Response
    from modelfn.routing import Router
    from modelfn.runtime.model import LoadedModel
    from modelfn.runtime.stores import Store
    from modelfn.settings import Settings

log = logging.getLogger("modelfn")


class ModelFunction:
    """Serves the model described by ``<folder>/modelfn.yaml``."""

    def __init__(
        self,
        folder: str | Path,
        settings: Settings,
        *,
        cache: ModelCache | None = None,
        store: Store | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.settings = settings
        self._cache = GLOBAL_CACHE if cache is None else cache
        self._store = store
        self._contract: Contract | None = None
        self._cache_key = ""
        self._contract_lock = threading.Lock()
        self._router: Router | None = None

    # -- requests -----------------------------------------------------------
    def handle(self, request: Request) -> Response:
        """Route a request and render any error as ``{"error": ...}``; never raises."""
        from modelfn.http import error_response

        try:
            encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
            if request.body and encoding not in ("", "identity"):
                raise UnsupportedMediaType(
                    f"Content-Encoding {encoding[:40]!r} is not accepted; send the body uncompressed"
                )
            return self._routes().dispatch(self, request)
        except ModelfnError as exc:
            return error_response(exc)
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.path[:200])
            return error_response(ModelFault("unhandled error"))

    def _routes(self) -> Router:
        if self._router is None:
            from modelfn.protocols import build_router

            self._router = build_router()
        return self._router

    # -- the contract and the model ----------------------------------------
    def contract(self) -> Contract:
        """The validated contract, read once; a failed read is retried next time."""
        if self._contract is None:
            with self._contract_lock:
                if self._contract is None:
                    from modelfn.contract import load_contract

                    contract = load_contract(self.folder)
                    # Computed once: resolve() touches the file system, requests must not.
                    self._cache_key = (
                        f"{self.folder.resolve()}:{contract.name}/{contract.version}:{contract.artifact.sha256}"
                    )
                    self._contract = contract
        return self._contract

    def resolve(self, name: str, version: str | None = None) -> Contract:
        """The contract for ``name[/version]`` from a URL, or a 404 naming what exists."""
        contract = self.contract()
        if name != contract.name:
            raise NotFound(f"model {name[:100]!r} not found; this function serves {contract.name!r}")
        if version is not None and version != contract.version:
            raise NotFound(f"model {name!r} has no version {version[:100]!r}; available: {contract.version!r}")
        return contract

    def model(self) -> LoadedModel:
        """The loaded model; the first call loads it (once, however many callers)."""
        self.contract()
        return self._cache.get(self._cache_key, self._load, self.settings.load_wait_s)

    def ready(self, *, start: bool = False) -> bool:
        """Whether the model is loaded and warmed; ``start`` begins a load if none is running."""
        self.contract()
        if start:
            self._cache.start(self._cache_key, self._load)
        return self._cache.state(self._cache_key).is_ready

    def _load(self) -> LoadedModel:
        from modelfn.runtime.model import load_model
        from modelfn.runtime.stores.local import LocalStore

        contract = self.contract()
        log.info("loading model %s v%s", contract.name, contract.version)
        model = load_model(self.folder, contract, self.settings, self._store or LocalStore())
        total = sum(model.phases.values()) * 1000
        phases = ", ".join(f"{name} {seconds * 1000:.1f}" for name, seconds in model.phases.items())
        log.info("loaded model %s v%s in %.1f ms (%s)", contract.name, contract.version, total, phases)
        return model
