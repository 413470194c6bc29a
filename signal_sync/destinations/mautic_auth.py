"""How a Mautic integration authenticates, and what Mautic's authentication errors mean.

Pure: no I/O. Basic auth travels in every request the mapping builds (``static_headers``), exactly
as the seed's examples show; an OAuth2 integration's requests carry no credentials at all, and the
sender adds ``Authorization: Bearer <token>`` at send time (``destinations/oauth2.py``), so no
request value, preview or debugger row ever holds a token.

Mautic's authentication errors are ``{"errors": [{"message", "code", "type"}]}`` (``ApiSubscriber``
rewrites the OAuth2 server's ``{"error", "error_description"}`` into that shape); the hints key on
the ``type``, because the messages are translations (docs/destinations-api.md, "Mautic
authentication").
"""

from __future__ import annotations

from typing import Any, Literal

import orjson

from signal_sync.config import MauticIntegration
from signal_sync.destinations.base import basic_auth

AuthMethod = Literal["basic", "oauth2"]

TOKEN_PATH = "/oauth/v2/token"  # noqa: S105 - a path, not a secret
GRANT_TYPE = "client_credentials"

TYPE_API_DISABLED = "api_disabled"
TYPE_ACCESS_DENIED = "access_denied"
TYPE_INVALID_GRANT = "invalid_grant"
TYPE_INVALID_CLIENT = "invalid_client"
TYPE_UNAUTHORIZED_CLIENT = "unauthorized_client"

HINT_API_DISABLED = (
    "Mautic's API is disabled: enable it in Settings > Configuration > API Settings (API enabled)."
)
HINT_BASIC_DISABLED = (
    "HTTP basic auth is disabled in Mautic's API settings: enable it in Settings > Configuration > "
    "API Settings (Enable HTTP basic auth), or authenticate with OAuth2 "
    "(auth: {type: oauth2, client_id, client_secret})."
)
HINT_BASIC_INVALID = (
    "Mautic refused the user name or password (wrong credentials): check api_user and api_password."
)
HINT_CLIENT_CREDENTIALS = (
    "API credentials must be created by an administrator and be of the client-credentials type"
)
HINT_INVALID_CLIENT = (
    "Mautic refused the OAuth2 client (wrong client): check auth.client_id and auth.client_secret "
    "against Settings > API Credentials (a deleted credential is refused too). "
    + HINT_CLIENT_CREDENTIALS
    + "."
)
HINT_UNAUTHORIZED_CLIENT = (
    "The OAuth2 client may not use the client-credentials grant (wrong client). "
    + HINT_CLIENT_CREDENTIALS
    + ": create it again as an administrator in Settings > API Credentials."
)
HINT_GRANT_REFUSED = (
    "Mautic's token endpoint refused the client-credentials request: is base_url a Mautic 4.0 or "
    "later instance?"
)
HINT_GRANT_NOT_FOUND = (
    "{base_url}/oauth/v2/token does not exist: base_url must be the bare root of a Mautic 4.0 or later "
    "instance (OAuth2 client credentials need Mautic 4.0+)."
)
HINT_GRANT_UNREADABLE = (
    "The token endpoint answered without a bearer access token and its lifetime: is base_url a "
    "Mautic instance?"
)
HINT_BEARER_NOT_RECEIVED = (
    "Mautic got no usable Authorization header although a Bearer token was sent: a proxy or the web "
    "server in front of Mautic strips the Authorization header (PHP-CGI / FastCGI: pass it through, "
    "e.g. Apache's CGIPassAuth On). A new token does not help."
)
HINT_BEARER_REFUSED = (
    "Mautic refused an access token it had just issued (401 invalid_grant): are several Mautic "
    "servers behind base_url without a shared database, or was the API credential deleted?"
)


def static_headers(integration: MauticIntegration) -> dict[str, str]:
    """The credentials a request carries as built: Basic auth's header; none for OAuth2 (the
    sender adds the bearer token at send time)."""
    if integration.oauth2 is not None:
        return {}
    return {"Authorization": basic_auth(*integration.credentials())}


def method_of(integration: MauticIntegration) -> AuthMethod:
    """``oauth2`` or ``basic``."""
    return "oauth2" if integration.oauth2 is not None else "basic"


def error_type(body: bytes) -> str | None:
    """The error's type of an authentication answer: Mautic's ``errors[0].type``, else the OAuth2
    ``error`` field; None when the body has neither."""
    try:
        data: Any = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    errors = data.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        kind = errors[0].get("type")
        if isinstance(kind, str):
            return kind
    kind = data.get("error")
    return kind if isinstance(kind, str) else None


def token_hint(status: int, kind: str | None, base_url: str) -> str | None:
    """What to do about a token endpoint's refusal (a 2xx: its answer held no usable token)."""
    if 200 <= status < 300:
        return HINT_GRANT_UNREADABLE
    if kind == TYPE_API_DISABLED:
        return HINT_API_DISABLED
    if kind == TYPE_INVALID_CLIENT:
        return HINT_INVALID_CLIENT
    if kind == TYPE_UNAUTHORIZED_CLIENT:
        return HINT_UNAUTHORIZED_CLIENT
    if status == 404:
        return HINT_GRANT_NOT_FOUND.format(base_url=base_url)
    if status < 500:
        return HINT_GRANT_REFUSED
    return None


def api_hint(status: int | None, kind: str | None, method: AuthMethod) -> str | None:
    """What to do about an API call's authentication refusal, by the error's type and the method
    the call used; None when the answer is not an authentication error (the status's own hint
    applies, e.g. a 403 for a missing permission, whose type is null)."""
    if kind == TYPE_API_DISABLED:
        return HINT_API_DISABLED
    if status == 403 and kind == TYPE_ACCESS_DENIED:
        return HINT_BASIC_DISABLED  # only a Basic header gets this 403
    if status == 401 and kind == TYPE_ACCESS_DENIED:
        return HINT_BEARER_NOT_RECEIVED if method == "oauth2" else HINT_BASIC_INVALID
    if status == 401 and kind == TYPE_INVALID_GRANT:
        return HINT_BEARER_REFUSED
    return None
