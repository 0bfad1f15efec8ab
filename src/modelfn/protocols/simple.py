"""The plain JSON route: ``POST /predict`` runs the contract's hooks around the model.

Without a pre hook the body maps input names to (nested) values; without a
post hook the answer maps output names to values.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelfn.http import VERSION_HEADER, Request, Response, json_response, parse_json

if TYPE_CHECKING:
    from modelfn.function import ModelFunction


def predict(function: ModelFunction, request: Request) -> Response:
    payload = parse_json(request.body)
    model = function.model()
    return json_response(model.predict_json(payload), headers={VERSION_HEADER: model.contract.version})
