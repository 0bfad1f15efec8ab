"""Dialogflow webhook credentials: off until configured, and CX service agent auth by Google ID token.

Basic auth and the secret header against a real server are in tests/functions/test_helpdesk.py.
Google's token service has no local equivalent: as in security/test_id_tokens.py, a key made here signs
the tokens and a local server publishes its certificate.
"""

from __future__ import annotations

import orjson
import pytest
from credentials import AUDIENCE, PUSHER, CertsServer, Signer

from modelfn.errors import NotFound, Unauthorized
from modelfn.http import Request
from modelfn.protocols.dialogflow import check_credentials
from modelfn.settings import Settings

BODY = orjson.dumps({"queryResult": {"queryText": "hi"}})


def test_the_webhook_is_off_until_credentials_are_configured() -> None:
    with pytest.raises(NotFound, match="webhook is off"):
        check_credentials(Request("POST", "/dialogflow", BODY, {}), Settings())


def test_cx_service_agent_id_tokens_are_admitted_and_forged_ones_refused() -> None:
    signer, other = Signer("kid-df"), Signer("kid-forger")
    certs = CertsServer([signer])
    try:
        settings = Settings(id_token_audience=AUDIENCE, id_token_emails=PUSHER, id_token_certs_url=certs.url)
        check_credentials(Request("POST", "/dialogflow", BODY, {"Authorization": f"Bearer {signer.token()}"}), settings)
        for token in (other.token(), signer.token(aud="https://elsewhere"), signer.token(email="x@y.z"), "abc"):
            with pytest.raises(Unauthorized):
                check_credentials(Request("POST", "/dialogflow", BODY, {"Authorization": f"Bearer {token}"}), settings)
        with pytest.raises(Unauthorized):
            check_credentials(Request("POST", "/dialogflow", BODY, {}), settings)
    finally:
        certs.server.shutdown()
