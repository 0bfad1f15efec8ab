"""The plain JSON route: ``POST /predict`` runs the contract's hooks around the model.

Without a pre hook the body maps input names to (nested) values; without a
post hook the answer maps output names to values. A contract with ``uploads:`` also takes files
(``multipart/form-data`` or a raw body), which the pre hook receives (:mod:`modelfn.protocols.forms`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelfn.http import VERSION_HEADER, Request, Response, json_response

if TYPE_CHECKING:
    from modelfn.function import Servable


def predict(function: Servable, request: Request, name: str | None = None) -> Response:
    """``POST /predict`` (one-model functions) or ``POST /models/{name}/predict`` (any function)."""
    from modelfn.protocols.forms import read_payload

    member = function.member(name)
    # JSON, or the files the contract's `uploads:` accepts (type and size checked before parsing).
    payload = read_payload(request, member.contract().uploads, function.settings)
    model = member.model()
    answer = member.run(lambda: model.predict_json(payload), inline=model.interruptible(hooks=True))
    return json_response(answer, headers={VERSION_HEADER: model.contract.version})
