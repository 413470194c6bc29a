"""A small OIDC provider on 127.0.0.1 for the SASL OAUTHBEARER tests.

It implements the two endpoints a Kafka OAUTHBEARER setup touches: the token endpoint (OAuth 2.0
client credentials grant, client authentication by HTTP Basic as RFC 6749 §2.3.1 requires
servers to support; RS256 JWTs carrying ``sub`` = client id, ``aud``, ``iss``, ``iat``, ``exp``
and ``scope``) and the JWKS the broker verifies those tokens with. Errors follow RFC 6749 §5.2
(``invalid_client`` with 401, ``unsupported_grant_type``, ``invalid_scope``). It runs in a thread
(stdlib ``http.server``), so the broker, librdkafka and aiokafka can all reach it, and it records
whom it issued tokens to (client id and User-Agent: librdkafka's and Python's differ).
"""

from __future__ import annotations

import base64
import binascii
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote_plus

import orjson
from joserfc import jwt
from joserfc.jwk import RSAKey

ISSUER = "signal-sync-test-idp"
KEY_ID = "test-key-1"


@dataclass
class Provider:
    """The provider's clients, key and audience; ``url`` is set once it serves."""

    clients: dict[str, str]
    """client id → client secret."""
    audience: str = "kafka"
    lifetime_s: int = 3600
    allowed_scopes: frozenset[str] = frozenset({"kafka"})
    url: str = ""
    issued: list[tuple[str, str]] = field(default_factory=list)
    """(client id, the requester's User-Agent) of each token issued, in order."""
    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, parameters={"kid": KEY_ID}))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def token_url(self) -> str:
        return f"{self.url}/oauth2/token"

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/oauth2/jwks"

    def jwks(self) -> dict[str, object]:
        return {"keys": [{**self.key.as_dict(private=False), "use": "sig", "alg": "RS256"}]}

    def issue(self, client_id: str, scope: str | None, user_agent: str) -> dict[str, object]:
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": client_id,
            "aud": self.audience,
            "iat": now,
            "exp": now + self.lifetime_s,
            "scope": scope or "",
        }
        token = jwt.encode({"alg": "RS256", "kid": KEY_ID, "typ": "JWT"}, claims, self.key)
        with self._lock:
            self.issued.append((client_id, user_agent))
        return {"access_token": token, "token_type": "Bearer", "expires_in": self.lifetime_s}


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    if not header or not header.startswith("Basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:], validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    return (unquote_plus(client_id), unquote_plus(secret)) if sep else None


def _handler(provider: Provider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
            """Quiet: the tests read what they need from ``provider``."""

        def _reply(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
            data = orjson.dumps(body)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/oauth2/jwks":
                self._reply(200, provider.jwks())
            else:
                self._reply(404, {"error": "not_found"})

        def do_POST(self) -> None:
            if self.path != "/oauth2/token":
                self._reply(404, {"error": "not_found"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode("utf-8")).items()}
            credentials = _basic_credentials(self.headers.get("Authorization"))
            if credentials is None or provider.clients.get(credentials[0]) != credentials[1]:
                self._reply(401, {"error": "invalid_client"}, {"WWW-Authenticate": 'Basic realm="test"'})
                return
            if form.get("grant_type") != "client_credentials":
                self._reply(400, {"error": "unsupported_grant_type"})
                return
            scope = form.get("scope")
            if scope is not None and not set(scope.split()) <= provider.allowed_scopes:
                self._reply(400, {"error": "invalid_scope"})
                return
            self._reply(200, provider.issue(credentials[0], scope, self.headers.get("User-Agent", "")))

    return Handler


@contextmanager
def running(provider: Provider) -> Iterator[Provider]:
    """Serve ``provider`` on a free loopback port until the block ends."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(provider))
    server.daemon_threads = True
    provider.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="test-oidc", daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
