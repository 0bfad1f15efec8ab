"""Path -> handler. A known path with the wrong verb is a 405 that lists the right ones.

Routes are declared as OpenAPI path templates, so the router and ``/openapi.json``
come from one table. ``{name}`` and ``{version}`` match an allow-list pattern, so
anything else never reaches a handler (and is never used to build a path);
``[...]`` marks an optional part: ``/v2/models/{name}[/versions/{version}]/infer``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from modelfn.errors import MethodNotAllowed, NotFound
from modelfn.observability.metrics import CONTEXT

if TYPE_CHECKING:
    from modelfn.function import Servable
    from modelfn.http import Request, Response

Handler = Callable[..., "Response"]

#: What a model name or version from a URL may be; the contract's own patterns are narrower.
PARAMETERS = {
    "name": r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}",
    "version": r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}",
    # A file of the browser bundle: looked up in its list, never opened by this name.
    "asset": r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}(?:/[A-Za-z0-9][A-Za-z0-9_.-]{0,127}){0,7}",
}


class Route(NamedTuple):
    method: str
    template: str
    handler: Handler
    #: ``open``: served without credentials (health checks, the static page); ``server``: credentials,
    #: but about no model; ``model``: credentials for the model it names (or the function's default
    #: one); ``webhook``: the platform's own proof, checked by the handler (Alexa, Dialogflow).
    access: str
    #: The OpenAPI operation's summary, request body and answer (see :mod:`modelfn.protocols.openapi`).
    doc: dict[str, str]


#: Checks a request's credentials: ``(request, model name or None, whether the route is about a model)``;
#: raises 401/403.
Guard = Callable[["Request", "str | None", bool], None]


class Router:
    def __init__(self, routes: list[Route]) -> None:
        self.routes = routes
        # The routes by their path's first segment and their method, in table order: a request is
        # matched against its own few (an OIP inference against /v2's POST routes), not every route.
        self._by_segment: dict[tuple[str, str], list[Route]] = {}
        for each in routes:
            segment = _first_segment(each.template)
            if "{" in segment or "[" in segment:
                raise ValueError(f"route {each.template}: its first segment must be literal")
            self._by_segment.setdefault((segment, each.method), []).append(each)
        #: Each group's routes with their patterns, compiled when a request first needs that group: a cold
        #: start that answers one route compiles its own pattern, not all 28 (~3 ms).
        self._compiled: dict[tuple[str, str], list[tuple[re.Pattern[str], Route]]] = {}

    def _group(self, key: tuple[str, str]) -> list[tuple[re.Pattern[str], Route]]:
        group = self._compiled.get(key)
        if group is None:  # two threads may both compile a group: the same list, the last one kept
            group = [(compile_template(each.template), each) for each in self._by_segment.get(key, ())]
            self._compiled[key] = group
        return group

    def dispatch(self, function: Servable, request: Request, guard: Guard | None = None) -> Response:
        path = request.path.rstrip("/") or "/"
        segment = _first_segment(path)
        method = "GET" if request.method == "HEAD" else request.method
        for pattern, route in self._group((segment, method)):
            match = pattern.fullmatch(path)
            if match is None:
                continue
            context = CONTEXT.get()
            if context is not None:
                context.route = route.template
            params = {k: v for k, v in match.groupdict().items() if v is not None}
            if guard is not None and route.access in ("server", "model"):
                guard(request, params.get("name"), route.access == "model")
            return route.handler(function, request, **params)
        allowed = {
            other for (where, other) in self._by_segment
            if where == segment and other != method
            and any(pattern.fullmatch(path) for pattern, _ in self._group((where, other)))
        }  # fmt: skip
        if allowed:
            raise MethodNotAllowed(request.method, path, sorted(allowed))
        raise NotFound(f"no route for {request.method} {path[:200]}")


def route(method: str, template: str, handler: Handler, *, access: str = "model", **doc: str) -> Route:
    """A route from an OpenAPI-style template (see the module docstring)."""
    return Route(method, template, handler, access, doc)


def _first_segment(path: str) -> str:
    """``"v2"`` of ``/v2/models/...``; no template has a parameter or an optional part there."""
    return path[1:].partition("/")[0]


def compile_template(template: str) -> re.Pattern[str]:
    regex = re.escape(template).replace(r"\[", "(?:").replace(r"\]", ")?")
    for name, allowed in PARAMETERS.items():
        regex = regex.replace(re.escape("{" + name + "}"), f"(?P<{name}>{allowed})")
    return re.compile(regex)


def expand_template(template: str) -> list[str]:
    """The OpenAPI paths of a template: without, then with, its optional part."""
    match = re.search(r"\[(.*?)\]", template)
    if match is None:
        return [template]
    return [template[: match.start()] + template[match.end() :], template.replace("[", "").replace("]", "")]
