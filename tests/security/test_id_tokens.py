"""Google ID tokens checked by the function: signature, issuer, audience, expiry and the allowed emails.

Google's token service has no local equivalent, so the tests play its part with real
cryptography: an RSA key made here signs RS256 tokens with google-auth, and a local HTTP
server publishes its certificate the way ``https://www.googleapis.com/oauth2/v1/certs`` does.
The verifier fetches and checks them exactly as it would Google's.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator

import pytest
import requests
from credentials import AUDIENCE, PUSHER, CertsServer, Signer, add_key
from google.auth import jwt
from helpers import DIGITS, running

from modelfn.errors import ModelNotReady, Unauthorized
from modelfn.security.id_tokens import IdTokenVerifier


@pytest.fixture(scope="module")
def google() -> Iterator[tuple[Signer, CertsServer]]:
    signer = Signer("kid-1")
    server = CertsServer([signer, Signer("kid-2")])
    yield signer, server
    server.server.shutdown()


def test_a_valid_token_passes_and_the_certificates_are_fetched_once(google) -> None:
    signer, certs = google
    verifier = IdTokenVerifier(AUDIENCE, [PUSHER], certs.url)
    before = certs.fetches
    for _ in range(20):
        assert verifier.verify(signer.token()) == PUSHER
    assert certs.fetches - before == 1  # kept for max-age (capped at an hour)


@pytest.mark.parametrize(
    "changes",
    [
        {"aud": "https://other-service.a.run.app"},
        {"iss": "https://evil.example"},
        {"email": "someone@gmail.com"},  # any Google account can get a signed token for any audience
        {"email_verified": False},
        # Times as functions of "now", taken when the test runs: a run can outlast a collection-time "future".
        lambda now: {"exp": now - 60, "iat": now - 3660},
        lambda now: {"iat": now + 600},
        {"exp": None},
    ],
    ids=["audience", "issuer", "email", "unverified", "expired", "future", "no-expiry"],
)
def test_every_wrong_claim_is_the_same_401(google, changes) -> None:
    signer, certs = google
    verifier = IdTokenVerifier(AUDIENCE, [PUSHER], certs.url)
    if callable(changes):
        changes = changes(int(time.time()))
    with pytest.raises(Unauthorized) as refused:
        verifier.verify(signer.token(**changes))
    assert refused.value.message == "missing or invalid credentials"


def test_forged_and_malformed_tokens_are_refused(google) -> None:
    signer, certs = google
    verifier = IdTokenVerifier(AUDIENCE, [PUSHER], certs.url)
    stranger = Signer("kid-1")  # same key id, another key: the signature fails
    header, payload, signature = signer.token().split(".")
    unsigned = jwt._helpers.unpadded_urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').decode()
    for token in [stranger.token(), f"{unsigned}.{payload}.", f"{header}.{payload}.{signature[:-4]}AAAA", "x", ""]:
        with pytest.raises(Unauthorized):
            verifier.verify(token)


def test_without_the_certificates_the_check_is_unavailable_not_open() -> None:
    verifier = IdTokenVerifier(AUDIENCE, [PUSHER], "http://127.0.0.1:9/certs")
    with pytest.raises(ModelNotReady, match="certificates could not be fetched"):
        verifier.verify(Signer("kid-1").token())


class StallingCerts:
    """A certificates URL that accepts connections and never answers (Google unreachable behind a proxy)."""

    def __init__(self) -> None:
        self.fetches = 0
        self.release = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.fetches += 1
                outer.release.wait(30)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/certs"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_junk_tokens_start_no_fetch_and_a_failed_fetch_is_not_retried_at_once() -> None:
    stalling = StallingCerts()
    try:
        verifier = IdTokenVerifier(AUDIENCE, [PUSHER], stalling.url)
        signer = Signer("kid-1")
        junk = [signer.token(aud="https://elsewhere"), signer.token(email="x@gmail.com"), signer.token(exp=1),
                "eyJhbGciOiJub25lIn0.eyJ9.c2ln", "a.b.c"]  # fmt: skip
        for token in junk * 10:  # claims that cannot pass: refused before any certificate is needed
            with pytest.raises(Unauthorized):
                verifier.verify(token)
        assert stalling.fetches == 0
        with pytest.raises(ModelNotReady):  # a plausible token: one fetch, which times out
            verifier.verify(signer.token())
        for _ in range(20):  # within the failure's time: refused at once, nothing fetched
            with pytest.raises(ModelNotReady) as unavailable:
                verifier.verify(signer.token())
        assert stalling.fetches == 1 and unavailable.value.headers["Retry-After"] == "30"
    finally:
        stalling.release.set()
        stalling.server.shutdown()


@pytest.mark.slow
def test_a_live_server_admits_service_tokens_and_api_keys(google, tmp_path) -> None:
    signer, certs = google
    keys_file = tmp_path / "keys"
    key = add_key(keys_file, "app", "digits")
    env = {"MODELFN_API_KEYS_FILE": str(keys_file), "MODELFN_ID_TOKEN_AUDIENCE": AUDIENCE,
           "MODELFN_ID_TOKEN_EMAILS": f"{PUSHER}, other@project.iam.gserviceaccount.com",
           "MODELFN_ID_TOKEN_CERTS_URL": certs.url}  # fmt: skip
    body = {"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": [0.0] * 64}]}
    with running(DIGITS, tmp_path / "serve.log", env) as server:
        infer = f"{server.url}/v2/models/digits/infer"

        def post(token: str) -> requests.Response:
            return requests.post(infer, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10)

        assert post(signer.token()).status_code == 200
        assert post(key).status_code == 200
        assert post(signer.token(email="someone@gmail.com")).status_code == 401
        assert post(signer.token(aud="https://elsewhere")).json() == {"error": "missing or invalid credentials"}
        assert requests.post(infer, json=body, timeout=10).status_code == 401
        assert requests.get(f"{server.url}/v2/health/ready", timeout=10).status_code == 200


@pytest.mark.slow
def test_a_live_server_under_junk_tokens_while_google_hangs_fetches_nothing_and_answers_fast(tmp_path) -> None:
    stalling = StallingCerts()
    env = {"MODELFN_ID_TOKEN_AUDIENCE": AUDIENCE, "MODELFN_ID_TOKEN_EMAILS": PUSHER,
           "MODELFN_ID_TOKEN_CERTS_URL": stalling.url}  # fmt: skip
    body = {"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": [0.0] * 64}]}
    signer = Signer("kid-1")
    try:
        with running(DIGITS, tmp_path / "serve.log", env) as server:
            infer = f"{server.url}/v2/models/digits/infer"

            def post(token: str) -> requests.Response:
                return requests.post(infer, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30)

            for n in range(30):  # junk: refused with no fetch
                assert post(signer.token(aud=f"https://junk-{n}")).status_code == 401
            assert stalling.fetches == 0
            assert post(signer.token()).status_code == 503  # plausible: one fetch, bounded
            answers = [post(signer.token()).status_code for _ in range(10)]  # the failure remembered
            assert answers == [503] * 10 and stalling.fetches == 1
            assert requests.get(f"{server.url}/v2/health/live", timeout=10).status_code == 200
    finally:
        stalling.release.set()
        stalling.server.shutdown()
