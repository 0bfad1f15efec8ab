"""A certificate authority and Alexa's signing side, made here with ``cryptography``.

Amazon's signing key is not ours, so the tests play Amazon: a root CA, an intermediate, and a
signing certificate for ``echo-api.amazon.com``, shaped like Amazon's (the Web PKI extensions a
TLS client requires), plus the broken variants each rule must refuse. :class:`ChainMirror` serves
the PEM chains over real HTTP where ``MODELFN_ALEXA_CERT_MIRROR`` points, standing in for
``https://s3.amazonaws.com/echo.api/``.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SKILL_ID = "amzn1.ask.skill.0a1b2c3d-modelfn-test"
CERT_URL = "https://s3.amazonaws.com/echo.api/echo-api-cert-13.pem"
NOW = dt.datetime.now(dt.UTC)


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "modelfn tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])  # fmt: skip


class Authority:
    """A CA certificate and its key (a root when ``issuer`` is None)."""

    def __init__(self, common_name: str, issuer: Authority | None = None) -> None:
        self.key = _key()
        signer = issuer or self
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(_name(common_name) if issuer is None else issuer.cert.subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(days=30))
            .not_valid_after(NOW + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_ca_usage(), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
        )
        if issuer is not None:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False
            )
        self.cert = builder.sign(signer.key, hashes.SHA256())

    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                         encipher_only=False, decipher_only=False)  # fmt: skip


def _signing_usage() -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                         data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                         encipher_only=False, decipher_only=False)  # fmt: skip


class Signer:
    """Alexa's side: a signing certificate issued by ``issuer``, and requests signed with its key."""

    def __init__(
        self,
        issuer: Authority,
        *,
        names: tuple[str, ...] = ("echo-api.amazon.com",),
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
    ) -> None:
        self.issuer = issuer
        self.key = _key()
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(names[0] if names else "no names"))
            .issuer_name(issuer.cert.subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or NOW - dt.timedelta(days=1))
            .not_valid_after(not_after or NOW + dt.timedelta(days=300))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_signing_usage(), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False)
            .sign(issuer.key, hashes.SHA256())
        )

    def chain_pem(self) -> bytes:
        """The signing certificate, then the intermediate: what Amazon publishes."""
        return self.cert.public_bytes(serialization.Encoding.PEM) + self.issuer.pem()

    def sign(self, body: bytes) -> str:
        return base64.b64encode(self.key.sign(body, padding.PKCS1v15(), hashes.SHA256())).decode()

    def headers(self, body: bytes, url: str = CERT_URL) -> dict[str, str]:
        return {"Content-Type": "application/json", "SignatureCertChainUrl": url, "Signature-256": self.sign(body)}


class PKI:
    """The trusted root, the intermediate under it, the good signer and the bad ones."""

    def __init__(self) -> None:
        self.root = Authority("modelfn test root")
        self.intermediate = Authority("modelfn test intermediate", self.root)
        self.signer = Signer(self.intermediate)
        self.expired = Signer(self.intermediate, not_before=NOW - dt.timedelta(days=400),
                              not_after=NOW - dt.timedelta(days=1))  # fmt: skip
        self.not_yet_valid = Signer(self.intermediate, not_before=NOW + dt.timedelta(days=1))
        self.wrong_name = Signer(self.intermediate, names=("echo-api.example.com",))
        self.wildcard = Signer(self.intermediate, names=("*.amazon.com",))
        self.untrusted = Signer(Authority("impostor intermediate", Authority("impostor root")))

    def write_trust_store(self, path: Path) -> Path:
        path.write_bytes(self.root.pem())
        return path


def envelope(
    request_type: str = "IntentRequest",
    *,
    intent: str = "AskIntent",
    slots: dict[str, Any] | None = None,
    skill_id: str = SKILL_ID,
    timestamp: dt.datetime | None = None,
) -> dict[str, Any]:
    """An Alexa request envelope in the shape of Amazon's reference."""
    stamp = (timestamp or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    request: dict[str, Any] = {"type": request_type, "requestId": "amzn1.echo-api.request.1",
                               "timestamp": stamp, "locale": "en-US"}  # fmt: skip
    if request_type == "IntentRequest":
        request["dialogState"] = "COMPLETED"
        request["intent"] = {
            "name": intent,
            "confirmationStatus": "NONE",
            "slots": {
                name: {"name": name, "value": value, "confirmationStatus": "NONE"}
                for name, value in (slots or {}).items()
            },
        }
    if request_type == "SessionEndedRequest":
        request["reason"] = "USER_INITIATED"
    application = {"applicationId": skill_id}
    return {
        "version": "1.0",
        "session": {"new": request_type == "LaunchRequest", "sessionId": "amzn1.echo-api.session.1",
                    "application": application, "attributes": {}, "user": {"userId": "amzn1.ask.account.1"}},
        "context": {"System": {"application": application, "user": {"userId": "amzn1.ask.account.1"},
                               "device": {"deviceId": "d", "supportedInterfaces": {}},
                               "apiEndpoint": "https://api.amazonalexa.com", "apiAccessToken": "t"}},
        "request": request,
    }  # fmt: skip


def body_of(value: dict[str, Any]) -> bytes:
    return orjson.dumps(value)


class ChainMirror:
    """A local HTTP server answering ``/echo.api/<file>`` with PEM chains; counts the fetches."""

    def __init__(self) -> None:
        self.chains: dict[str, bytes] = {}
        self.fetches: list[str] = []
        #: Paths whose answer waits until their event is set (a mirror that stalls).
        self.stalls: dict[str, threading.Event] = {}
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                mirror.fetches.append(self.path)
                if self.path in mirror.stalls:
                    mirror.stalls[self.path].wait(30)
                data = mirror.chains.get(self.path)
                self.send_response(200 if data is not None else 404)
                self.send_header("Content-Type", "application/x-pem-file")
                self.end_headers()
                self.wfile.write(data or b"")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def publish(self, path: str, signer: Signer) -> str:
        """Serve ``signer``'s chain at ``/echo.api/<path>``; return the Amazon URL that names it."""
        self.chains[f"/echo.api/{path}"] = signer.chain_pem()
        return f"https://s3.amazonaws.com/echo.api/{path}"


@contextmanager
def chain_mirror() -> Iterator[ChainMirror]:
    mirror = ChainMirror()
    thread = threading.Thread(target=mirror.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield mirror
    finally:
        mirror.server.shutdown()
        mirror.server.server_close()
