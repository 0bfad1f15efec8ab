"""Protocols: each maps its wire format onto :class:`modelfn.function.ModelFunction`."""

from __future__ import annotations

from modelfn.routing import Router

_MODEL = r"(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?"


_ROUTER: Router | None = None
#: Served without an API key: the platform's health checks cannot send one.
OPEN_PATHS = frozenset({r"/v2/health/live", r"/v2/health/ready"})
#: About the server, not a model: any valid key may ask.
SERVER_PATHS = frozenset({r"/v2"})


def router() -> Router:
    """The routes, built on the first request (the protocol modules import numpy)."""
    global _ROUTER
    if _ROUTER is None:
        _ROUTER = build_router()
    return _ROUTER


def build_router() -> Router:
    """Every HTTP route of a function. Imported on the first request (it pulls numpy)."""
    from modelfn.protocols import oip, simple, tfserving

    return Router(
        [
            ("GET", r"/v2/health/live", oip.server_live),
            ("GET", r"/v2/health/ready", oip.server_ready),
            ("GET", r"/v2", oip.server_metadata),
            ("GET", rf"/v2/models/{_MODEL}", oip.model_metadata),
            ("GET", rf"/v2/models/{_MODEL}/ready", oip.model_ready),
            ("POST", rf"/v2/models/{_MODEL}/infer", oip.infer),
            ("GET", rf"/v1/models/{_MODEL}", tfserving.model_status),
            ("POST", rf"/v1/models/{_MODEL}:predict", tfserving.predict),
            ("POST", r"/predict", simple.predict),
            ("POST", r"/models/(?P<name>[^/:]+)/predict", simple.predict),
        ],
        open_paths=OPEN_PATHS,
        server_paths=SERVER_PATHS,
    )
