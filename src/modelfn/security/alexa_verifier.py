"""Verifying that a request to ``/alexa`` comes from Alexa, as Amazon requires of HTTPS endpoints.

Every check runs before anything else, and each failure is a 400 that says which one failed:

1. The ``SignatureCertChainUrl`` header: ``https``, host ``s3.amazonaws.com`` (any case), port 443
   if given, and a path under ``/echo.api/`` (that case) once ``..`` segments are resolved.
2. The certificate chain at that URL (fetched once and cached, from a mirror if
   ``MODELFN_ALEXA_CERT_MIRROR`` says so): every certificate within its validity dates, the signing
   certificate naming ``echo-api.amazon.com`` among its subject alternative names, the chain leading
   to a root of the trust store. Path building and the checks on each certificate are
   ``cryptography``'s X.509 verifier (the same Web PKI rules a TLS client applies).
3. The ``Signature-256`` header: an RSA PKCS#1 v1.5 SHA-256 signature of the raw body bytes, by
   the signing certificate's key.
4. ``request.timestamp`` within 150 s of now (an hour for ``AlexaSkillEvent`` requests, which Alexa
   may deliver late), so a captured request cannot be replayed later.
5. The skill id (``context.System.application.applicationId``) in ``MODELFN_ALEXA_SKILL_IDS``.

On Lambda, Alexa invokes the function directly (no HTTP, no signature); there the Lambda
permission limits the caller to the skill and this module checks 4 and 5 (:func:`check_envelope`).
Amazon's own verifier (``ask-sdk-webservice-support``) depends on ``oscrypto``, which fails with
OpenSSL 3; this one uses ``cryptography`` only.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import logging
import posixpath
import re
import threading
import time
import urllib.request
from collections import OrderedDict, deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

from modelfn.errors import ClientError, ContractError

if TYPE_CHECKING:
    from cryptography.x509 import Certificate
    from cryptography.x509.verification import Store

log = logging.getLogger("modelfn")

CERT_URL_HEADER = "SignatureCertChainUrl"
SIGNATURE_HEADER = "Signature-256"
CERT_HOST = "s3.amazonaws.com"
CERT_PATH = "/echo.api/"
SIGNING_NAME = "echo-api.amazon.com"
TOLERANCE_S = 150.0
SKILL_EVENT_TOLERANCE_S = 3600.0
MAX_CHAIN_BYTES = 64 * 1024
FETCH_TIMEOUT_S = 5.0
#: A verified chain is used until its first certificate expires, or a day at most, then fetched again.
CHAIN_TTL_S = 24 * 3600.0
#: Chains kept (Amazon uses one at a time; the cap keeps forged URLs from filling memory).
MAX_CACHED_CHAINS = 8
#: A URL whose chain could not be fetched or validated is refused at once for this long.
FAILURE_TTL_S = 30.0
MAX_CACHED_FAILURES = 256
#: At most this many chain fetches per minute: Alexa signs with one chain at a time, so a stream of
#: new URLs is forged requests, and each must not start outbound work.
MAX_FETCHES_PER_MINUTE = 6
#: A request whose chain another request is fetching waits at most this long, then is refused.
FETCH_WAIT_S = FETCH_TIMEOUT_S + 1.0
_URL_PATH = re.compile(r"^[A-Za-z0-9._~/-]{1,512}$")


class VerificationFailed(ClientError):
    """The request is not provably from Alexa for this skill (400, as Amazon asks)."""


class _Chain(NamedTuple):
    signing: Certificate
    expires: float


class AlexaVerifier:
    """Verifies Alexa requests for a set of skill ids against a trust store (see the module docstring)."""

    def __init__(
        self,
        skill_ids: list[str],
        trust_store: Store,
        *,
        mirror: str = "",
        clock: Any = time.time,
    ) -> None:
        if not skill_ids:
            raise ValueError("an Alexa verifier needs the skill ids it accepts")
        self.skill_ids = skill_ids
        self.trust_store = trust_store
        self.mirror = mirror.rstrip("/")
        self.clock = clock
        self._chains: OrderedDict[str, _Chain] = OrderedDict()
        self._failures: OrderedDict[str, tuple[float, str]] = OrderedDict()  # path -> (until, reason)
        self._fetches: deque[float] = deque()  # when the last fetches started (monotonic)
        self._lock = threading.Lock()  # the caches, held for lookups only: never across a fetch
        self._fetch_lock = threading.Lock()  # one fetch at a time

    def verify_signature(self, headers: Mapping[str, str], body: bytes) -> None:
        """Checks 1-3: the certificate URL, its chain, and the signature of the raw ``body``."""
        path = check_cert_url(headers.get(CERT_URL_HEADER, ""))
        signature = headers.get(SIGNATURE_HEADER, "")
        if not signature:
            raise VerificationFailed(f"the {SIGNATURE_HEADER} header is missing")
        try:
            raw_signature = base64.b64decode(signature.strip(), validate=True)
        except binascii.Error:
            raise VerificationFailed(f"the {SIGNATURE_HEADER} header is not base64") from None
        signing = self._chain(path).signing
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding, rsa

        key = signing.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise VerificationFailed("the signing certificate's key is not RSA")
        try:
            key.verify(raw_signature, body, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise VerificationFailed("the request's signature does not match its body") from None

    def check_envelope(self, envelope: Mapping[str, Any]) -> None:
        """Checks 4-5: the request's timestamp and skill id."""
        check_envelope(envelope, self.skill_ids, self.clock())

    # -- the certificate chain -------------------------------------------------
    def _chain(self, path: str) -> _Chain:
        """The validated chain of ``path``: cached, refused from the failure cache, or fetched once.

        Cached lookups never wait behind a fetch. A new URL waits for the one fetch in progress at
        most :data:`FETCH_WAIT_S`, and is refused at once past :data:`MAX_FETCHES_PER_MINUTE`.
        """
        cached = self._cached(path)
        if cached is not None:
            return cached
        if not self._fetch_lock.acquire(timeout=FETCH_WAIT_S):
            raise VerificationFailed("the signing certificate chain could not be fetched in time")
        try:
            cached = self._cached(path)  # fetched by the request this one waited for
            if cached is not None:
                return cached
            with self._lock:
                moment = time.monotonic()
                while self._fetches and self._fetches[0] < moment - 60:
                    self._fetches.popleft()
                if len(self._fetches) >= MAX_FETCHES_PER_MINUTE:
                    log.warning("refused to fetch Alexa's certificate chain from a new URL: %d fetches this minute",
                                len(self._fetches))  # fmt: skip
                    raise VerificationFailed("too many new certificate chain URLs; not fetched")
                self._fetches.append(moment)
            try:
                chain = self._fetch_and_validate(path, self.clock())
            except VerificationFailed as failed:
                with self._lock:
                    self._failures[path] = (time.monotonic() + FAILURE_TTL_S, failed.message)
                    while len(self._failures) > MAX_CACHED_FAILURES:
                        self._failures.popitem(last=False)
                raise
            with self._lock:
                self._chains[path] = chain
                while len(self._chains) > MAX_CACHED_CHAINS:
                    self._chains.popitem(last=False)
            return chain
        finally:
            self._fetch_lock.release()

    def _cached(self, path: str) -> _Chain | None:
        now = self.clock()
        with self._lock:
            chain = self._chains.get(path)
            if chain is not None and chain.expires > now:
                self._chains.move_to_end(path)
                return chain
            failure = self._failures.get(path)
            if failure is not None and failure[0] > time.monotonic():
                raise VerificationFailed(failure[1])
        return None

    def _fetch_and_validate(self, path: str, now: float) -> _Chain:
        url = f"{self.mirror or 'https://' + CERT_HOST}{path}"
        try:
            with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_S) as response:  # checked URL
                pem = response.read(MAX_CHAIN_BYTES + 1)
        except Exception as exc:  # OSError, ValueError, http.client's own: each means "no chain"
            log.warning("could not fetch Alexa's certificate chain from %s: %s", url, exc)
            raise VerificationFailed("the signing certificate chain could not be fetched") from None
        if len(pem) > MAX_CHAIN_BYTES:
            raise VerificationFailed("the signing certificate chain is too large")
        return self._validate(pem, now)

    def _validate(self, pem: bytes, now: float) -> _Chain:
        from cryptography import x509
        from cryptography.x509.verification import PolicyBuilder, VerificationError

        try:
            certificates = x509.load_pem_x509_certificates(pem)
        except ValueError:
            raise VerificationFailed("the signing certificate chain is not PEM certificates") from None
        signing, intermediates = certificates[0], certificates[1:]
        moment = dt.datetime.fromtimestamp(now, dt.UTC)
        verifier = (
            PolicyBuilder().store(self.trust_store).time(moment).build_server_verifier(x509.DNSName(SIGNING_NAME))
        )
        try:
            chain = verifier.verify(signing, intermediates)
        except VerificationError as exc:
            reason = str(exc).removeprefix("validation failed: ").split(" (encountered")[0]
            raise VerificationFailed(f"the signing certificate chain is not valid: {reason}") from None
        # Amazon requires the exact name (the verifier above would also accept a wildcard).
        names = signing.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        if SIGNING_NAME not in names.get_values_for_type(x509.DNSName):
            raise VerificationFailed(f"the signing certificate does not name {SIGNING_NAME}")
        first_expiry = min(cert.not_valid_after_utc for cert in chain).timestamp()
        return _Chain(signing, min(first_expiry, now + CHAIN_TTL_S))


def check_cert_url(url: str) -> str:
    """The normalized path of a valid ``SignatureCertChainUrl``, or :class:`VerificationFailed`."""
    if not url:
        raise VerificationFailed(f"the {CERT_URL_HEADER} header is missing")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise VerificationFailed(f"the {CERT_URL_HEADER} header is not a URL") from None
    if parts.scheme.lower() != "https":
        raise VerificationFailed("the certificate chain URL must use https")
    if (parts.hostname or "").lower() != CERT_HOST or parts.username is not None or parts.password is not None:
        raise VerificationFailed(f"the certificate chain URL must be on {CERT_HOST}")
    if port not in (None, 443):
        raise VerificationFailed("the certificate chain URL must use port 443")
    path = posixpath.normpath(parts.path) if parts.path else ""
    if not path.startswith(CERT_PATH) or parts.query or parts.fragment:
        raise VerificationFailed(f"the certificate chain URL's path must be under {CERT_PATH}")
    if not _URL_PATH.match(path):  # spaces, percent-escapes, non-ASCII: nothing Amazon's URLs hold
        raise VerificationFailed("the certificate chain URL's path holds characters a chain URL never has")
    return path


def check_envelope(envelope: Mapping[str, Any], skill_ids: list[str], now: float) -> None:
    """The request's timestamp within tolerance of ``now``, and its skill id among ``skill_ids``."""
    request = envelope.get("request")
    if not isinstance(request, dict):
        raise VerificationFailed("not an Alexa request: `request` is missing")
    stamp = request.get("timestamp")
    try:
        moment = dt.datetime.fromisoformat(stamp).timestamp() if isinstance(stamp, str) else None
    except ValueError:
        moment = None
    if moment is None:
        raise VerificationFailed("`request.timestamp` is missing or not an ISO-8601 time")
    kind = request.get("type")
    kind = kind if isinstance(kind, str) else ""
    tolerance = SKILL_EVENT_TOLERANCE_S if kind.startswith("AlexaSkillEvent.") else TOLERANCE_S
    if abs(now - moment) > tolerance:
        raise VerificationFailed(f"the request's timestamp is more than {tolerance:.0f} s from now")
    skill = _skill_id(envelope)
    # Not a secret, but compared like one: nothing about the allowed ids leaks through timing.
    if not skill or not any(hmac.compare_digest(skill.encode(), allowed.encode()) for allowed in skill_ids):
        raise VerificationFailed("the request is for a skill this function does not serve")


def _skill_id(envelope: Mapping[str, Any]) -> str:
    """``context.System.application.applicationId``, else the session's (older requests)."""
    for path in (("context", "System", "application", "applicationId"), ("session", "application", "applicationId")):
        value: Any = envelope
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, str):
            return value
    return ""


def load_trust_store(path: str = "") -> Store:
    """Root certificates from a PEM file; by default certifi's bundle, else the system's."""
    from cryptography import x509
    from cryptography.x509.verification import Store

    if not path:
        try:
            import certifi

            path = certifi.where()
        except ImportError:
            import ssl

            path = ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt"
    with open(path, "rb") as file:
        roots = x509.load_pem_x509_certificates(file.read())
    return Store(roots)


def skill_ids(setting: str) -> list[str]:
    """The skill ids of ``MODELFN_ALEXA_SKILL_IDS`` (comma-separated)."""
    return [part.strip() for part in setting.split(",") if part.strip()]


_VERIFIERS: dict[tuple[str, str, str], AlexaVerifier] = {}
_VERIFIERS_LOCK = threading.Lock()


def alexa_verifier(ids_setting: str, trust_store: str = "", mirror: str = "") -> AlexaVerifier:
    """The process's verifier for these settings (its certificate cache lives as long as the process)."""
    key = (ids_setting, trust_store, mirror)
    with _VERIFIERS_LOCK:
        verifier = _VERIFIERS.get(key)
        if verifier is None:
            try:
                store = load_trust_store(trust_store)
            except (OSError, ValueError) as exc:
                raise ContractError(f"MODELFN_ALEXA_TRUST_STORE: cannot read root certificates: {exc}") from None
            verifier = AlexaVerifier(skill_ids(ids_setting), store, mirror=mirror)
            _VERIFIERS[key] = verifier
        return verifier
