"""Google-signed ID tokens: Pub/Sub push and service-to-service calls, checked by the function itself.

A caller sends ``Authorization: Bearer <ID token>``. The token passes when:

- its RS256 signature verifies against one of Google's current certificates (fetched from
  ``MODELFN_ID_TOKEN_CERTS_URL`` and kept for the lifetime the response's ``Cache-Control``
  gives, an hour at most);
- its issuer is ``accounts.google.com``; its audience is ``MODELFN_ID_TOKEN_AUDIENCE``;
  it has not expired and was not issued in the future (10 s of clock skew);
- its ``email`` is verified and is one of ``MODELFN_ID_TOKEN_EMAILS``.

The last check matters: anyone with a Google account can mint a Google-signed ID token for any
audience, so signature, issuer and audience alone admit the whole internet. Every failure is the
same 401.

No caller can make the function fetch: a token's claims (audience, email, expiry, issuer) are read
without the signature first, so junk is refused before Google's certificates are needed at all. A
fetch that fails is not retried for :data:`FAILURE_TTL_S` (every caller meanwhile gets a 503 at
once), and a request waits for a fetch in progress at most :data:`FETCH_WAIT_S`.

A token admits every model of the function: it names a service, not a client.
Verification uses google-auth (``pip install modelfn[gcs]``), imported only when configured.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import threading
import time
import urllib.request
from typing import Any

import orjson

from modelfn.errors import ModelNotReady, Unauthorized

GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
GOOGLE_ISSUERS = frozenset({"accounts.google.com", "https://accounts.google.com"})
CLOCK_SKEW_S = 10
_MAX_CACHE_S = 3600
FETCH_TIMEOUT_S = 5.0
FETCH_WAIT_S = FETCH_TIMEOUT_S + 1.0
FAILURE_TTL_S = 30.0
_JWT = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
log = logging.getLogger("modelfn")


def looks_like_jwt(token: str) -> bool:
    return len(token) < 8192 and _JWT.match(token) is not None


class IdTokenVerifier:
    """Checks Google ID tokens for one audience and a list of service-account emails; thread-safe."""

    def __init__(self, audience: str, emails: list[str], certs_url: str = GOOGLE_CERTS_URL) -> None:
        if not audience or not emails:
            raise ValueError("an ID token check needs an audience and the emails it admits")
        self.audience = audience
        self.emails = frozenset(email.strip().lower() for email in emails)
        self.certs_url = certs_url
        self._certs: dict[str, str] = {}
        self._expires = 0.0
        self._failed_until = 0.0  # after a failed fetch, no other until then
        self._lock = threading.Lock()

    def verify(self, token: str) -> str:
        """The caller's email, or 401 (503 when Google's certificates cannot be fetched)."""
        from google.auth import jwt

        refused = Unauthorized("missing or invalid credentials", headers={"WWW-Authenticate": 'Bearer realm="modelfn"'})
        if not looks_like_jwt(token) or not self._plausible(token):
            raise refused
        try:
            claims: dict[str, Any] = jwt.decode(
                token, certs=self._current_certs(), audience=self.audience, clock_skew_in_seconds=CLOCK_SKEW_S
            )
        except ModelNotReady:
            raise
        except Exception as exc:  # google-auth raises ValueError and its own exceptions for every bad token
            log.info("ID token refused: %s", str(exc)[:200])
            raise refused from None
        email = str(claims.get("email", "")).lower()
        if claims.get("iss") not in GOOGLE_ISSUERS or claims.get("email_verified") is not True:
            log.info("ID token refused: issuer %r, email verified %r", claims.get("iss"), claims.get("email_verified"))
            raise refused
        if email not in self.emails:
            log.info("ID token refused: %s is not in MODELFN_ID_TOKEN_EMAILS", email[:200])
            raise refused
        return email

    def _plausible(self, token: str) -> bool:
        """The token's own claims, read without its signature: could it pass at all? (No fetch for junk.)"""
        try:
            header, claims = (orjson.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
                              for part in token.split(".")[:2])  # fmt: skip
        except (ValueError, binascii.Error):
            log.info("ID token refused: not a JWT")
            return False
        if not isinstance(header, dict) or not isinstance(claims, dict):
            return False
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        email = claims.get("email")
        expiry = claims.get("exp")
        plausible = (
            header.get("alg") == "RS256"
            and isinstance(header.get("kid"), str)
            and self.audience in audiences
            and claims.get("iss") in GOOGLE_ISSUERS
            and isinstance(email, str)
            and email.lower() in self.emails
            and isinstance(expiry, int | float)
            and expiry > time.time() - CLOCK_SKEW_S
        )
        if not plausible:
            log.info("ID token refused before its signature: its claims cannot pass")
        return plausible

    def _current_certs(self) -> dict[str, str]:
        if time.monotonic() < self._expires:
            return self._certs
        unavailable = ModelNotReady("cannot check ID tokens: Google's certificates could not be fetched",
                                    retry_after_s=int(FAILURE_TTL_S))  # fmt: skip
        if time.monotonic() < self._failed_until:
            raise unavailable  # a recent fetch failed: answer at once, fetch nothing
        if not self._lock.acquire(timeout=FETCH_WAIT_S):
            raise unavailable
        try:
            if time.monotonic() < self._expires:
                return self._certs
            if time.monotonic() < self._failed_until:
                raise unavailable
            try:
                with urllib.request.urlopen(self.certs_url, timeout=FETCH_TIMEOUT_S) as response:  # configured URL
                    certs = orjson.loads(response.read(1 << 20))
                    max_age = _max_age(response.headers.get("Cache-Control", ""))
            except Exception as exc:  # OSError, ValueError, http.client's own: each means "no certificates"
                if self._certs:  # keep the last good set rather than lock every caller out
                    log.warning("could not refresh Google's certificates, keeping the last ones: %s", exc)
                    self._expires = time.monotonic() + 60
                    return self._certs
                log.warning("could not fetch Google's certificates (next try in %g s): %s", FAILURE_TTL_S, exc)
                self._failed_until = time.monotonic() + FAILURE_TTL_S
                raise unavailable from None
            if not isinstance(certs, dict) or not all(isinstance(v, str) for v in certs.values()):
                raise ModelNotReady("cannot check ID tokens: the certificates response is not {kid: PEM}")
            self._certs = certs
            self._expires = time.monotonic() + min(max_age, _MAX_CACHE_S)
            return certs
        finally:
            self._lock.release()


def _max_age(cache_control: str) -> int:
    match = re.search(r"max-age=(\d+)", cache_control)
    return int(match.group(1)) if match else 300


_VERIFIERS: dict[tuple[str, str, str], IdTokenVerifier] = {}
_VERIFIERS_LOCK = threading.Lock()


def id_token_verifier(audience: str, emails: str, certs_url: str) -> IdTokenVerifier:
    """One verifier (and certificate cache) per configuration per process."""
    key = (audience, emails, certs_url)
    with _VERIFIERS_LOCK:
        if key not in _VERIFIERS:
            _VERIFIERS[key] = IdTokenVerifier(audience, [e for e in emails.split(",") if e.strip()], certs_url)
        return _VERIFIERS[key]
