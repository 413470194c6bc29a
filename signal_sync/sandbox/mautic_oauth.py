"""Mautic's OAuth2 token server for the client-credentials grant, as strict as Mautic 4.0+.

Mautic serves ``/oauth/v2/token`` with FOSOAuthServerBundle over ``friendsofsymfony/oauth2-php``
(``OAuth2::grantAccessToken``); ``ApiBundle/EventListener/ApiSubscriber`` checks the request first
(the path holds ``/oauth``, so it counts as an API request) and rewrites every error into its
``{"errors": [{"message", "code", "type"}]}`` shape. What this module reproduces, in that order:

* API disabled → 403; a Basic Authorization header while Basic auth is off → 403 (so client
  credentials sent as HTTP Basic fail exactly where OAuth2 is needed: send them in the body);
* ``GET`` reads the query, ``POST`` a form or a JSON body (FOSRest's body listener); a repeated
  form or query key keeps its last value, as PHP does;
* ``grant_type`` must match oauth2-php's pattern, else 400 ``invalid_request``;
* the client from HTTP Basic (``PHP_AUTH_USER``, when not empty) or ``client_id`` / ``client_secret``
  in the parameters; no id → 400 ``invalid_client`` "Client id was not found in the headers or body";
  an unknown id or a wrong secret → 400 ``invalid_client`` "The client credentials are invalid";
* a grant the client may not use → 400 ``unauthorized_client``. Mautic clients allow
  ``authorization_code`` and ``refresh_token``, and ``client_credentials`` only when an administrator
  created them (``ClientController::newAction``); the emulator never issues codes or refresh
  tokens, so those two grants end in their ``invalid_request`` / ``invalid_grant`` errors;
* any non-empty ``scope`` → 400 ``invalid_scope`` (Mautic configures no supported scopes);
* success: ``200 {"access_token", "expires_in", "token_type": "bearer", "scope": null}`` with
  ``Cache-Control: no-store`` and ``Pragma: no-cache``; no refresh token for this grant. Every call
  issues a new token; earlier ones stay valid until they expire.

A token lives ``access_token_lifetime_s`` seconds (Mautic: ``api_oauth2_access_token_lifetime``
minutes, default 60) and counts as expired once the clock's whole seconds pass its expiry
(``time() > expiresAt``). ``TokenStore.verify`` answers for the bearer checks in ``mautic_auth``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson
from aiohttp import web

from signal_sync.sandbox.journal import (
    FORM_TYPES,
    RECORD_KEY,
    SANDBOX_PREFIX,
    Handler,
    basic_credentials,
    json_response,
)
from signal_sync.sandbox.mautic_dnc import php_string
from signal_sync.sandbox.mautic_errors import auth_error

TOKEN_PATH = "/oauth/v2/token"  # noqa: S105 - a path, not a secret
DEFAULT_ACCESS_TOKEN_LIFETIME_S = 3600
"""``api_oauth2_access_token_lifetime`` = 60 minutes (``ApiBundle/Config/config.php``)."""
TYPE_BEARER = "bearer"
GRANT_CLIENT_CREDENTIALS = "client_credentials"
GRANT_AUTHORIZATION_CODE = "authorization_code"
GRANT_REFRESH = "refresh_token"
SECRET_PARAMETERS = ("client_secret", "access_token")
"""Request parameters the journal never keeps in clear."""

ERROR_INVALID_REQUEST = "invalid_request"
ERROR_INVALID_CLIENT = "invalid_client"
ERROR_UNAUTHORIZED_CLIENT = "unauthorized_client"
ERROR_INVALID_GRANT = "invalid_grant"
ERROR_INVALID_SCOPE = "invalid_scope"

MSG_INVALID_GRANT_TYPE = "Invalid grant_type parameter or parameter missing"
MSG_NO_CLIENT_ID = "Client id was not found in the headers or body"
MSG_INVALID_CLIENT = "The client credentials are invalid"
MSG_UNAUTHORIZED_GRANT = "The grant type is unauthorized for this client_id"
MSG_UNSUPPORTED_SCOPE = "An unsupported scope was requested."
MSG_MISSING_CODE = 'Missing parameter. "code" is required'
MSG_MISSING_REDIRECT_URI = "The redirect URI parameter is required."
MSG_INVALID_CODE = "Code doesn't exist or is invalid for the client"
MSG_MISSING_REFRESH = 'No "refresh_token" parameter found'
MSG_INVALID_REFRESH = "Invalid refresh token"
MSG_BEARER_INVALID = "The access token provided is invalid."
MSG_BEARER_EXPIRED = "The access token provided has expired."

_GRANT_TYPE = re.compile(
    r"^(authorization_code|token|password|client_credentials|refresh_token|https?://.+|urn:.+)$"
)
"""``OAuth2::GRANT_TYPE_REGEXP`` (PHP's ``$`` also matches before a final newline, as Python's does)."""
_CLIENT_ID = re.compile(r"[1-9][0-9]*_[0-9a-z]+")
"""A Mautic client's public id: ``{database id}_{random id}`` (``Model\\Client::getPublicId``)."""
_TOKEN_CHARS = str.maketrans("+/", "-_")


class OAuthError(Exception):
    """An OAuth2 server error: its status, its OAuth2 error code and its description."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description

    def response(self) -> web.Response:
        """As ``ApiSubscriber`` rewrites it."""
        return auth_error(self.status, self.description, self.error)


@dataclass(frozen=True)
class OAuthClient:
    """An API credential of type OAuth2 (Settings → API Credentials).

    ``client_credentials``: whether the grant of that name is allowed, which Mautic sets only for
    credentials an administrator created; otherwise the token endpoint answers
    ``unauthorized_client``."""

    client_id: str
    client_secret: str
    client_credentials: bool = True

    def __post_init__(self) -> None:
        if not _CLIENT_ID.fullmatch(self.client_id):
            raise ValueError(
                "client_id: a Mautic client id is '<number>_<lowercase letters and digits>', "
                "e.g. '1_3bcbxmwlzlkw8oswokccwk8osk8ww0wsogs8ok08wwo4wk0ck8'"
            )
        if not self.client_secret:
            raise ValueError("client_secret: must not be empty")

    @property
    def grant_types(self) -> frozenset[str]:
        """The grants the client may use (``Client::$allowedGrantTypes``)."""
        base = {GRANT_AUTHORIZATION_CODE, GRANT_REFRESH}
        return frozenset(base | {GRANT_CLIENT_CREDENTIALS} if self.client_credentials else base)


def random_token() -> str:
    """A random id or secret as FOSOAuthServerBundle makes them: 256 random bits in base 36."""
    number = int.from_bytes(secrets.token_bytes(32), "big")
    digits = []
    while number:
        number, digit = divmod(number, 36)
        digits.append("0123456789abcdefghijklmnopqrstuvwxyz"[digit])
    return "".join(reversed(digits)) or "0"


def new_client(number: int = 1, *, client_credentials: bool = True) -> OAuthClient:
    """A client with fresh credentials in Mautic's form (for tests and the CLI)."""
    return OAuthClient(f"{number}_{random_token()}", random_token(), client_credentials)


def access_token_string() -> str:
    """A new access token as oauth2-php makes it: base64 of a sha256 hex digest, URL-safe, unpadded."""
    digest = hashlib.sha256(secrets.token_bytes(100)).hexdigest().encode()
    return base64.b64encode(digest).decode().rstrip("=").translate(_TOKEN_CHARS)


def php_empty(value: Any) -> bool:
    """PHP's ``empty()`` for a request parameter."""
    return value in (None, "", "0", 0, False) or value == [] or value == {}


def scalar_parameter(params: Mapping[str, Any], name: str) -> str | None:
    """A parameter as ``filter_var(FILTER_REQUIRE_SCALAR)`` passes it: a string, or None when it is
    absent or not a scalar."""
    value = params.get(name)
    if value is None or isinstance(value, list | dict):
        return None
    return php_string(value)


@dataclass
class IssuedToken:
    """One access token: its client and its expiry (whole Unix seconds)."""

    client_id: str
    expires_at: int


class TokenStore:
    """The configured clients and the access tokens issued to them."""

    def __init__(
        self,
        clients: Iterable[OAuthClient],
        lifetime_s: int = DEFAULT_ACCESS_TOKEN_LIFETIME_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(lifetime_s, bool) or not isinstance(lifetime_s, int) or lifetime_s < 1:
            raise ValueError("access_token_lifetime_s: a whole number of seconds, at least 1")
        self.clients = {client.client_id: client for client in clients}
        self.lifetime_s = lifetime_s
        self._clock = clock
        self.clear()

    def clear(self) -> None:
        """Forget every token (``/_sandbox/reset``)."""
        self.tokens: dict[str, IssuedToken] = {}
        self.issued = 0

    def now(self) -> int:
        return int(self._clock())

    def grant(self, params: Mapping[str, Any], basic: tuple[str, str] | None) -> dict[str, Any]:
        """``OAuth2::grantAccessToken``: the token answer, or ``OAuthError``."""
        grant_type = scalar_parameter(params, "grant_type")
        if not grant_type or _GRANT_TYPE.match(grant_type) is None:
            raise OAuthError(400, ERROR_INVALID_REQUEST, MSG_INVALID_GRANT_TYPE)
        client = self._authenticate_client(params, basic)
        if grant_type not in client.grant_types:
            raise OAuthError(400, ERROR_UNAUTHORIZED_CLIENT, MSG_UNAUTHORIZED_GRANT)
        if grant_type == GRANT_AUTHORIZATION_CODE:
            if php_empty(scalar_parameter(params, "code")):
                raise OAuthError(400, ERROR_INVALID_REQUEST, MSG_MISSING_CODE)
            if php_empty(params.get("redirect_uri")):
                raise OAuthError(400, ERROR_INVALID_REQUEST, MSG_MISSING_REDIRECT_URI)
            raise OAuthError(400, ERROR_INVALID_GRANT, MSG_INVALID_CODE)  # no code is ever issued here
        if grant_type == GRANT_REFRESH:
            if php_empty(scalar_parameter(params, "refresh_token")):
                raise OAuthError(400, ERROR_INVALID_REQUEST, MSG_MISSING_REFRESH)
            raise OAuthError(400, ERROR_INVALID_GRANT, MSG_INVALID_REFRESH)  # none is ever issued here
        if not php_empty(scalar_parameter(params, "scope")):
            raise OAuthError(400, ERROR_INVALID_SCOPE, MSG_UNSUPPORTED_SCOPE)
        token = access_token_string()
        self.tokens[token] = IssuedToken(client.client_id, self.now() + self.lifetime_s)
        self.issued += 1
        answer = {"access_token": token, "expires_in": self.lifetime_s, "token_type": TYPE_BEARER}
        return answer | {"scope": None}

    def _authenticate_client(self, params: Mapping[str, Any], basic: tuple[str, str] | None) -> OAuthClient:
        """``getClientCredentials`` then ``checkClientCredentials``: HTTP Basic wins over the body."""
        if basic is not None and not php_empty(basic[0]):
            client_id, secret = basic
        elif php_empty(params.get("client_id")):
            raise OAuthError(400, ERROR_INVALID_CLIENT, MSG_NO_CLIENT_ID)
        else:
            client_id, secret = params.get("client_id"), params.get("client_secret")
        client = self.clients.get(client_id) if isinstance(client_id, str) else None
        if client is None or not isinstance(secret, str):
            raise OAuthError(400, ERROR_INVALID_CLIENT, MSG_INVALID_CLIENT)
        if not hmac.compare_digest(secret.encode(), client.client_secret.encode()):
            raise OAuthError(400, ERROR_INVALID_CLIENT, MSG_INVALID_CLIENT)
        return client

    def verify(self, token: str) -> str | None:
        """``OAuth2::verifyAccessToken`` for a bearer token: None when it is valid, else the message of
        Mautic's 401 (unknown or revoked: invalid; past its expiry: expired)."""
        issued = self.tokens.get(token)
        if issued is None:
            return MSG_BEARER_INVALID
        if self.now() > issued.expires_at:
            return MSG_BEARER_EXPIRED
        return None

    def revoke_all(self) -> int:
        """Delete every token (as deleting the credential in Mautic does); later calls with them
        answer "invalid"."""
        count = len(self.tokens)
        self.tokens.clear()
        return count

    def expire_all(self) -> int:
        """Move every token's expiry into the past; later calls with them answer "expired"."""
        past = self.now() - 1
        for issued in self.tokens.values():
            issued.expires_at = min(issued.expires_at, past)
        return len(self.tokens)

    def snapshot(self) -> dict[str, Any]:
        """Clients and tokens without any secret: what a test may look at."""
        now = self.now()
        return {
            "clients": [
                {"client_id": client.client_id, "grant_types": sorted(client.grant_types)}
                for client in self.clients.values()
            ],
            "access_token_lifetime_s": self.lifetime_s,
            "issued": self.issued,
            "tokens": [
                {"client_id": t.client_id, "expires_at": t.expires_at, "expired": now > t.expires_at}
                for t in self.tokens.values()
            ],
        }


MAUTIC_TOKENS = web.AppKey("mautic_tokens", TokenStore)


def _last_values(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """A query or form as PHP reads it: a repeated key keeps its last value."""
    return {key: value for key, value in pairs if isinstance(value, str)}


async def token_parameters(request: web.Request) -> dict[str, Any]:
    """The token request's parameters: the query for ``GET``; for ``POST`` the form or JSON body."""
    if request.method == "GET":
        return _last_values(request.query.items())
    if request.content_type in FORM_TYPES:
        return _last_values((await request.post()).items())
    if request.content_type == "application/json":
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return {}
        return body if isinstance(body, dict) else {}
    return {}


def token_routes(subscriber_check: Callable[[web.Request], web.Response | None]) -> web.RouteTableDef:
    """``GET|POST /oauth/v2/token``, behind ``subscriber_check`` (``mautic_auth.subscriber_check``)."""
    routes = web.RouteTableDef()

    async def token_endpoint(request: web.Request) -> web.Response:
        denied = subscriber_check(request)
        if denied is not None:
            return denied
        params = await token_parameters(request)
        try:
            answer = request.app[MAUTIC_TOKENS].grant(
                params, basic_credentials(request.headers.get("Authorization"))
            )
        except OAuthError as exc:
            return exc.response()
        return json_response(answer, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    routes.get(TOKEN_PATH)(token_endpoint)
    routes.post(TOKEN_PATH)(token_endpoint)
    return routes


_SECRET_IN_TEXT = re.compile(r"((?:client_secret|access_token)=)[^&\s]*")


def _masked(name: str, value: Any) -> Any:
    return "<redacted>" if name in SECRET_PARAMETERS else value


def redact_secrets_middleware() -> Any:
    """Between the journal and the faults: the journal's copy of a request keeps no client secret
    or access token from its query or body (a faulted request is journaled too)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        record = request.get(RECORD_KEY)
        if record is not None:
            body = record.body
            if isinstance(body, dict) and not body.keys().isdisjoint(SECRET_PARAMETERS):
                record.body = {k: _masked(k, v) for k, v in body.items()}
            elif isinstance(body, str):  # a form sent without its content type
                record.body = _SECRET_IN_TEXT.sub(r"\1<redacted>", body)
            if any(name in record.query for name in SECRET_PARAMETERS):
                pairs = parse_qsl(record.query, keep_blank_values=True)
                record.query = urlencode([(k, _masked(k, v)) for k, v in pairs])
        return await handler(request)

    return middleware


def add_oauth_control_routes(app: web.Application, store: TokenStore) -> None:
    """``GET /_sandbox/oauth`` (clients and tokens, no secrets), ``POST /_sandbox/oauth/revoke``
    (delete every token) and ``POST /_sandbox/oauth/expire`` (expire every token)."""

    async def state(request: web.Request) -> web.Response:
        return json_response(store.snapshot())

    async def revoke(request: web.Request) -> web.Response:
        return json_response({"revoked": store.revoke_all()})

    async def expire(request: web.Request) -> web.Response:
        return json_response({"expired": store.expire_all()})

    app.router.add_get(SANDBOX_PREFIX + "oauth", state)
    app.router.add_post(SANDBOX_PREFIX + "oauth/revoke", revoke)
    app.router.add_post(SANDBOX_PREFIX + "oauth/expire", expire)
