"""Credentials the tests make: API keys through ``modelfn keys add``, and Google-style ID tokens.

Google's token service has no local equivalent, so the tests play its part with real
cryptography: an RSA key made here signs RS256 tokens with google-auth, and a local HTTP
server publishes its certificate the way ``https://www.googleapis.com/oauth2/v1/certs`` does.
"""

from __future__ import annotations

import datetime
import http.server
import threading
import time
from pathlib import Path

import orjson
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

from modelfn.cli import cli


def add_key(keys_file: Path, key_id: str, models: str) -> str:
    result = CliRunner().invoke(cli, ["keys", "add", key_id, "--models", models, "--file", str(keys_file)])
    assert result.exit_code == 0, result.output
    return result.stdout.strip().splitlines()[0]


AUDIENCE = "https://digits-abc-uc.a.run.app"
PUSHER = "pusher@project.iam.gserviceaccount.com"


class Signer:
    """An RSA key, its self-signed certificate, and tokens signed with it."""

    def __init__(self, kid: str) -> None:
        self.kid = kid
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, kid)])
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(self.key, hashes.SHA256())
        )  # fmt: skip
        self.pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
        private = self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        self._signer = crypt.RSASigner.from_string(private, key_id=kid)

    def token(self, **changes) -> str:
        now = int(time.time())
        claims = {"iss": "https://accounts.google.com", "aud": AUDIENCE, "email": PUSHER, "email_verified": True,
                  "sub": "1234", "iat": now, "exp": now + 3600}  # fmt: skip
        claims.update(changes)
        claims = {key: value for key, value in claims.items() if value is not None}
        return jwt.encode(self._signer, claims).decode()


class CertsServer:
    """Publishes ``{kid: PEM}`` with ``Cache-Control: max-age``, counting fetches."""

    def __init__(self, signers: list[Signer]) -> None:
        body = orjson.dumps({s.kid: s.pem for s in signers})
        self.fetches = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.fetches += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", "public, max-age=19000, must-revalidate")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/oauth2/v1/certs"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
