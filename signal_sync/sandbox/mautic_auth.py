"""Who may call Mautic's API: the checks every API request passes, in Mautic's order.

1. ``ApiSubscriber::onKernelRequest`` (before the firewall, also for ``/oauth/...``): API disabled
   → 403 ``api_disabled``; an Authorization header starting with ``basic`` (any case) while Basic
   auth is off → 403 ``access_denied`` "Basic Auth disabled. …". A bearer token passes this
   check whatever the Basic auth setting.
2. The ``api`` firewall: the OAuth2 listener first. A header matching ``Bearer\\s(\\S+)``
   anywhere (case-sensitive ``Bearer``, as oauth2-php's ``getBearerTokenFromHeaders``) is verified:
   an unknown token → 401 ``invalid_grant`` "The access token provided is invalid.", an expired
   one → 401 ``invalid_grant`` "The access token provided has expired.".
3. Then HTTP Basic: the right user and password pass. Anything else ends in the OAuth2 entry point,
   whose ``access_denied`` ``ApiSubscriber`` rewrites to 401 "Authorization denied, invalid
   credentials." when the header is Basic, and to 401 "API authorization denied." otherwise
   (no header, another scheme, ``bearer`` in lower case).

Tokens in the query string or a form body (which Mautic also reads) are not looked at: such a
request is answered as one without credentials.
"""

from __future__ import annotations

import re

from aiohttp import web

from signal_sync.sandbox.journal import credentials_match
from signal_sync.sandbox.mautic_errors import (
    MSG_API_DISABLED,
    MSG_AUTH_DENIED,
    MSG_BASIC_DISABLED,
    MSG_BASIC_INVALID,
    TYPE_ACCESS_DENIED,
    TYPE_API_DISABLED,
    auth_error,
)
from signal_sync.sandbox.mautic_oauth import ERROR_INVALID_GRANT, MAUTIC_TOKENS

_BEARER = re.compile(r"Bearer\s(\S+)")


def has_basic_auth(header: str | None) -> bool:
    """``RequestHelper::hasBasicAuth``: the header starts with ``basic``, in any case."""
    return (header or "").lower().startswith("basic")


def bearer_token(header: str | None) -> str | None:
    """The token of a ``Bearer`` Authorization header, None without one."""
    match = _BEARER.search(header or "")
    return match.group(1) if match else None


def subscriber_check(
    request: web.Request, *, api_enabled: bool, basic_auth_enabled: bool
) -> web.Response | None:
    """``ApiSubscriber::onKernelRequest``: the API switch, then the Basic auth switch."""
    if not api_enabled:
        return auth_error(403, MSG_API_DISABLED, TYPE_API_DISABLED)
    if not basic_auth_enabled and has_basic_auth(request.headers.get("Authorization")):
        return auth_error(403, MSG_BASIC_DISABLED, TYPE_ACCESS_DENIED)
    return None


def authenticate(
    request: web.Request, *, api_enabled: bool, basic_auth_enabled: bool, username: str, password: str
) -> web.Response | None:
    """Every check before a controller runs; None when the request may proceed."""
    denied = subscriber_check(request, api_enabled=api_enabled, basic_auth_enabled=basic_auth_enabled)
    if denied is not None:
        return denied
    header = request.headers.get("Authorization")
    token = bearer_token(header)
    if token is not None:
        problem = request.app[MAUTIC_TOKENS].verify(token)
        return None if problem is None else auth_error(401, problem, ERROR_INVALID_GRANT)
    if credentials_match(header, username, password):
        return None
    message = MSG_BASIC_INVALID if has_basic_auth(header) else MSG_AUTH_DENIED
    return auth_error(401, message, TYPE_ACCESS_DENIED)
