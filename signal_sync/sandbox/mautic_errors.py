"""Mautic's two error bodies and the messages the emulator answers with.

Mautic writes errors in two shapes, and a client that tells auth faults from the others sees both:

* ``errors_response``: the controllers' ``returnError`` (``FetchCommonApiController``),
  ``{"errors": [{"code", "message", "details", "type": null}]}``: not found, no permission, bad
  bodies.
* ``auth_error``: what ``ApiBundle/EventListener/ApiSubscriber`` writes for the API and auth checks
  that run before any controller (API disabled, Basic auth disabled) and what it rewrites every
  OAuth2 server error into (bad credentials, invalid or expired bearer tokens, token endpoint
  errors): ``{"errors": [{"message", "code", "type"}]}``, no ``details``, ``type`` the OAuth2
  error code (``access_denied``, ``invalid_grant``, ``invalid_client`` …). The rewritten answer is
  a new response, so it carries no ``WWW-Authenticate`` header.

Messages are Mautic's en_US translations (``ApiBundle/Translations/en_US/messages.ini``,
``CoreBundle/Translations/en_US/flashes.ini``, ``LeadBundle/Translations/en_US/messages.ini``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from signal_sync.sandbox.journal import json_response

MSG_API_DISABLED = "API disabled. You need to enable the API in the API settings of Mautic's Configuration."
MSG_BASIC_DISABLED = (
    "Basic Auth disabled. You need to enable HTTP basic auth in the API settings of Mautic's Configuration."
)
MSG_BASIC_INVALID = "Authorization denied, invalid credentials."
"""A Basic Authorization header that did not authenticate (``basic.auth.invalid.credentials``)."""
MSG_AUTH_DENIED = "API authorization denied."
"""A request without credentials Mautic could read (``auth.error.accessdenied``)."""
MSG_ACCESS_DENIED = "You do not have access to the requested area/action."
MSG_NOT_FOUND = "Item was not found."
MSG_CONTACT_NOT_FOUND = "Contact not found."
"""``mautic.contact.error.notfound``: a contact id in a segment call that matches no contact."""
MSG_BAD_REQUEST = "This is a bad request."

TYPE_API_DISABLED = "api_disabled"
TYPE_ACCESS_DENIED = "access_denied"


def errors_response(
    status: int, message: str, details: Any = None, headers: Mapping[str, str] | None = None
) -> web.Response:
    """Mautic's error body (``returnError``): ``{"errors": [{"code", "message", "details", "type"}]}``."""
    error = {"code": status, "message": message, "details": [] if details is None else details, "type": None}
    return json_response({"errors": [error]}, status=status, headers=headers)


def auth_error(status: int, message: str, error_type: str | None) -> web.Response:
    """``ApiSubscriber``'s error body: ``{"errors": [{"message", "code", "type"}]}``."""
    error = {"message": message, "code": status, "type": error_type}
    return json_response({"errors": [error]}, status=status)
