"""SASL OAUTHBEARER for Faust's aiokafka clients: access tokens from an OIDC provider.

librdkafka (the confluent-kafka clients) runs the OAuth 2.0 client credentials grant itself
(``sasl.oauthbearer.method=oidc``); aiokafka asks a token provider object instead.
``ClientCredentialsTokenProvider`` is that object: it gets a token from
``kafka.sasl_oauthbearer_token_endpoint_url`` with the client id and secret (HTTP Basic, as
librdkafka sends them; Authlib builds the request and reads the answer), keeps it, and gets a new
one once less than ``REFRESH_LEEWAY_S`` (or a fifth of its lifetime, if shorter) remains.

aiokafka asks for a token on every new connection, from the event loop of whichever Faust client
connects (its consumer runs in a thread with a loop of its own), so the blocking request runs in a
worker thread and one lock makes every caller share one token.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
import requests
from aiokafka.abc import AbstractTokenProvider
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.requests_client import OAuth2Session

from signal_sync.config import KafkaSettings
from signal_sync.errors import ConfigError

REQUEST_TIMEOUT_S = 10.0
REFRESH_LEEWAY_S = 60.0
UNKNOWN_LIFETIME_S = 60.0
"""How long a token is kept whose lifetime neither the answer nor the token itself states."""
EXTENSIONS = "sasl.oauthbearer.extensions"
CA_LOCATION = "https.ca.location"
ERROR_FIELDS = {
    "invalid_client": "kafka.sasl_oauthbearer_client_secret",
    "unauthorized_client": "kafka.sasl_oauthbearer_client_id",
    "invalid_scope": "kafka.sasl_oauthbearer_scope",
}
"""RFC 6749 §5.2 error codes → the setting they are about."""


class ClientCredentialsTokenProvider(AbstractTokenProvider):
    """aiokafka's token provider: OAuth 2.0 client credentials, cached until close to expiry."""

    def __init__(
        self,
        token_endpoint_url: str,
        client_id: str,
        client_secret: str,
        scope: str | None = None,
        *,
        extensions: dict[str, str] | None = None,
        ca_file: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._url = token_endpoint_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._scope = scope
        self._extensions = dict(extensions or {})
        self._verify: str | bool = ca_file or True
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0
        self.fetches = 0
        """Token requests made so far."""

    @classmethod
    def for_kafka(cls, kafka: KafkaSettings) -> ClientCredentialsTokenProvider:
        """The provider for ``kafka``'s OAUTHBEARER settings; the passthrough's
        ``sasl.oauthbearer.extensions`` and ``https.ca.location`` apply as they do in librdkafka."""
        assert kafka.sasl_oauthbearer_token_endpoint_url and kafka.sasl_oauthbearer_client_id
        assert kafka.sasl_oauthbearer_client_secret is not None
        passthrough = kafka.client_config
        ca_file = passthrough.get(CA_LOCATION)
        return cls(
            kafka.sasl_oauthbearer_token_endpoint_url,
            kafka.sasl_oauthbearer_client_id,
            kafka.sasl_oauthbearer_client_secret.get_secret_value(),
            kafka.sasl_oauthbearer_scope,
            extensions=parse_extensions(str(passthrough.get(EXTENSIONS, ""))),
            ca_file=str(ca_file) if ca_file is not None else None,
        )

    async def token(self) -> str:
        """A valid access token: the kept one, or a new one from the token endpoint."""
        return await asyncio.to_thread(self.current_token)

    def extensions(self) -> dict[str, str]:
        """SASL extensions sent with the token (KIP-342), e.g. Confluent Cloud's logicalCluster."""
        return dict(self._extensions)

    def current_token(self) -> str:
        """The blocking part of ``token``: one request at a time, shared by every caller."""
        with self._lock:
            if self._token is None or self._clock() >= self._refresh_at:
                self._token, self._refresh_at = self._fetch()
            return self._token

    def _fetch(self) -> tuple[str, float]:
        self.fetches += 1
        session = OAuth2Session(
            self._client_id,
            self._client_secret,
            token_endpoint_auth_method="client_secret_basic",  # noqa: S106 - a method name
            scope=self._scope,
        )
        try:
            answer = session.fetch_token(
                self._url, grant_type="client_credentials", timeout=REQUEST_TIMEOUT_S, verify=self._verify
            )
        except AuthlibBaseError as exc:
            field = ERROR_FIELDS.get(str(exc.error), "kafka.sasl_oauthbearer_token_endpoint_url")
            raise ConfigError(
                f"{field}: the token endpoint refused to give kafka.sasl_oauthbearer_client_id "
                f"{self._client_id!r} a token: {exc.error}"
                + (f" ({exc.description})" if exc.description else "")
            ) from None
        except (requests.RequestException, ValueError) as exc:
            raise ConfigError(
                f"kafka.sasl_oauthbearer_token_endpoint_url: no access token from the token endpoint: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        finally:
            session.close()
        token = answer.get("access_token")
        if not isinstance(token, str) or not token:
            raise ConfigError("kafka.sasl_oauthbearer_token_endpoint_url: the answer holds no access_token")
        now = self._clock()
        lifetime = _lifetime(answer, token, now)
        return token, now + max(0.0, lifetime - min(REFRESH_LEEWAY_S, lifetime / 5))


def parse_extensions(text: str) -> dict[str, str]:
    """librdkafka's ``key=value,key=value`` extensions as a dict."""
    pairs = (item.split("=", 1) for item in text.split(",") if "=" in item)
    return {key.strip(): value.strip() for key, value in pairs if key.strip()}


def _lifetime(answer: dict[str, Any], token: str, now: float) -> float:
    """Seconds the token stays valid: the answer's ``expires_in``, else the JWT's ``exp``."""
    expires_in = answer.get("expires_in")
    if isinstance(expires_in, int | float) and not isinstance(expires_in, bool) and expires_in > 0:
        return float(expires_in)
    exp = _jwt_claims(token).get("exp")
    if isinstance(exp, int | float) and not isinstance(exp, bool):
        return max(0.0, float(exp) - now)
    return UNKNOWN_LIFETIME_S


def _jwt_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, unverified (only its expiry is read, to know when to refresh); ``{}``
    for a token that is not a JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        claims = orjson.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}
