"""Path -> handler. A known path with the wrong verb is a 405 that lists the right ones."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from modelfn.errors import MethodNotAllowed, NotFound

if TYPE_CHECKING:
    from modelfn.function import Servable
    from modelfn.http import Request, Response

Handler = Callable[..., "Response"]


class Route(NamedTuple):
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    #: ``open``: served without credentials (health checks); ``server``: credentials, but about no
    #: model; ``model``: credentials for the model it names (or the function's default one).
    access: str = "model"


#: Checks a request's credentials: ``(request, model name or None, whether the route is about a model)``;
#: raises 401/403.
Guard = Callable[["Request", "str | None", bool], None]


class Router:
    def __init__(
        self,
        routes: list[tuple[str, str, Handler]],
        open_paths: frozenset[str] = frozenset(),
        server_paths: frozenset[str] = frozenset(),
    ) -> None:
        self._routes = [
            Route(method, re.compile(pattern), handler, _access(pattern, open_paths, server_paths))
            for method, pattern, handler in routes
        ]

    def dispatch(self, function: Servable, request: Request, guard: Guard | None = None) -> Response:
        path = request.path.rstrip("/") or "/"
        allowed: list[str] = []
        for route in self._routes:
            match = route.pattern.fullmatch(path)
            if match is None:
                continue
            if route.method == request.method or (route.method == "GET" and request.method == "HEAD"):
                params = {k: v for k, v in match.groupdict().items() if v is not None}
                if guard is not None and route.access != "open":
                    guard(request, params.get("name"), route.access == "model")
                return route.handler(function, request, **params)
            allowed.append(route.method)
        if allowed:
            raise MethodNotAllowed(request.method, path, sorted(set(allowed)))
        raise NotFound(f"no route for {request.method} {path[:200]}")


def _access(pattern: str, open_paths: frozenset[str], server_paths: frozenset[str]) -> str:
    return "open" if pattern in open_paths else "server" if pattern in server_paths else "model"
