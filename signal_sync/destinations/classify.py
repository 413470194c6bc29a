"""The one place that turns a destination's answer into a decision.

    2xx                          → DELIVERED (201 created / 200 updated where the destination says so)
    408, 420, 425, 429, 5xx      → RETRY (honouring Retry-After / X-RateLimit-Reset, capped)
    timeouts, resets, refused,   → RETRY
    DNS failures
    400, 422, other 4xx          → FAILED for this event
    401, 403, 404                → FAULT: the integration itself is misconfigured
    404 that names a missing     → ABSENT: the contact or member the call names does not exist
    item (``absent``)              (an answer about the event, e.g. a withdrawal for an unknown person)
    403, 404 that names a        → FAILED for this event, with the reason the body gave (a Mautic
    refused item (``refused``)     segment deleted or unpublished: the segments config, not the
                                   integration, is wrong; it neither pauses nor counts as an outage)
    an exception raised while    → FAILED for this event, reason ``client_error``
    building or sending a request

The same rules apply to a whole HTTP call (``classify_status``) and to one item inside a
batch answer (``classify_item``: Mautic's ``statusCodes``). An OAuth2 token endpoint's answer
(``classify_token_answer``) is a token, an outage (RETRY) or a FAULT of the integration, never
a failure of an event; a 401 ``invalid_grant`` to a bearer token (``bearer_refused``) asks for a
new token once before the answer is classified. RETRY is also what the circuit
breaker counts: it means the destination as a whole did not take the request, whatever the
event. Nothing else in the code base looks at status codes.

A 404 is a fault unless the caller says the answer's body names a missing item (``absent``,
read by the destination module from the body's shape: Mautic's ``Item was not found.`` for a
contact id, Mailgun's JSON message for a member): a call for one contact then learns that the
contact is unknown, while a wrong base URL or a deleted list still pauses the integration.
Likewise a 403 or 404 is this event's failure when the caller says the body names the item the
call is about besides the contact (``refused``: a Mautic segment call's ``Item was not found.``,
``Contact not found.`` or ``You do not have access``); one bulk segment add's per-contact
``success`` flags are decided by ``classify_member``.
"""

from __future__ import annotations

import asyncio
import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import aiohttp

RETRYABLE_STATUSES = frozenset({408, 420, 425, 429})
"""Besides 5xx: timeout, Mailgun's sending limit ("try again after …"), too early, rate limited."""
FAULT_STATUSES = frozenset({401, 403, 404})
REFUSED_STATUSES = frozenset({403, 404})
"""The fault statuses that fail only the event when the body names the call's own item (``refused``)."""
MEMBER_REFUSED = "segment_add_refused"
MEMBER_UNKNOWN = "segment_member_unknown"
CONNECTION_ERROR = "connection_error"
CLIENT_ERROR = "client_error"
DEFAULT_RETRY_AFTER_MAX_S = 300.0


class Verdict(enum.Enum):
    DELIVERED = "delivered"
    ABSENT = "absent"
    RETRY = "retry"
    FAILED = "failed"
    FAULT = "fault"


@dataclass(frozen=True, slots=True)
class Classification:
    """A decision, how long the destination asked us to wait, the outcome's ``reason`` for a
    non-delivery, and for a delivery whether it created the record (None: not reported)."""

    verdict: Verdict
    retry_after_s: float | None = None
    reason: str | None = None
    created: bool | None = None

    @property
    def destination_down(self) -> bool:
        """The destination as a whole did not take the request: what the circuit breaker counts."""
        return self.verdict is Verdict.RETRY


def _bounded(seconds: float, max_s: float) -> float | None:
    """A wait in [0, max_s]; NaN is no usable answer."""
    if math.isnan(seconds):
        return None
    return min(max(0.0, seconds), max_s)


def retry_after(
    headers: Mapping[str, str], now: float, max_s: float = DEFAULT_RETRY_AFTER_MAX_S
) -> float | None:
    """Seconds the server asked us to wait, at most ``max_s``: ``Retry-After`` (seconds or HTTP
    date) or Mautic's ``X-RateLimit-Reset`` (a Unix time). None when absent or unreadable."""
    value = headers.get("Retry-After")
    if value:
        try:
            return _bounded(float(value), max_s)
        except ValueError:
            try:
                return _bounded(parsedate_to_datetime(value).timestamp() - now, max_s)
            except (TypeError, ValueError, OverflowError, OSError):
                return None
    reset = headers.get("X-RateLimit-Reset")
    if reset:
        try:
            return _bounded(float(reset) - now, max_s)
        except ValueError:
            return None
    return None


def created_of(status: int, reports_created: bool) -> bool | None:
    """Whether a 2xx created the record (201) or updated it (200), for destinations that say so."""
    if not reports_created:
        return None
    return {201: True, 200: False}.get(status)


def classify_status(
    status: int,
    headers: Mapping[str, str],
    now: float,
    *,
    reports_created: bool = False,
    retry_after_max_s: float = DEFAULT_RETRY_AFTER_MAX_S,
    absent: bool = False,
    refused: str | None = None,
) -> Classification:
    """Decision for an HTTP reply. ``absent``: the body names the item the call is about as missing;
    ``refused``: the event's reason when the body names the call's own item (a segment) as missing
    or out of reach."""
    if 200 <= status < 300:
        return Classification(Verdict.DELIVERED, created=created_of(status, reports_created))
    reason = f"http_{status}"
    if status in RETRYABLE_STATUSES or status >= 500:
        return Classification(Verdict.RETRY, retry_after(headers, now, retry_after_max_s), reason)
    if refused is not None and status in REFUSED_STATUSES:
        return Classification(Verdict.FAILED, reason=refused)
    if status == 404 and absent:
        return Classification(Verdict.ABSENT, reason=reason)
    if status in FAULT_STATUSES:
        return Classification(Verdict.FAULT, reason=reason)
    return Classification(Verdict.FAILED, reason=reason)


def classify_item(status: int | None, *, reports_created: bool = False) -> Classification:
    """Decision for one item of a batch the destination accepted as a whole. An item without a
    readable status is sent again (upserts are idempotent), as a lost reply would be."""
    if status is None:
        return Classification(Verdict.RETRY, reason="http_item_unknown")
    return classify_status(status, {}, 0.0, reports_created=reports_created)


def classify_member(success: bool | None) -> Classification:
    """Decision for one contact id of a bulk segment add Mautic accepted as a whole (its
    ``details`` entry): ``true`` is added, ``false`` this event's failure (the contact is gone or
    not editable; Mautic says nothing more); no readable entry is sent again on its own, as a lost
    reply would be (adding a member again changes nothing)."""
    if success is None:
        return Classification(Verdict.RETRY, reason=MEMBER_UNKNOWN)
    if success:
        return Classification(Verdict.DELIVERED)
    return Classification(Verdict.FAILED, reason=MEMBER_REFUSED)


def classify_exception(exc: BaseException) -> Classification:
    """Decision for a request that got no reply. Network trouble (timeouts, refused or reset
    connections, DNS failures, truncated bodies) is the destination's: worth a retry. Anything
    else was raised on our side while building or sending this one request (aiohttp refuses a
    header with CR/LF, a body that cannot be encoded): it fails this event only."""
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ClientConnectionError | aiohttp.ClientPayloadError):
        return Classification(Verdict.RETRY, reason=CONNECTION_ERROR)
    return Classification(Verdict.FAILED, reason=CLIENT_ERROR)


# --- OAuth2: the token endpoint's answers and a refused bearer token -----------------------

UNREADABLE_GRANT = "token_unreadable"
GRANT_CLIENT_ERROR = "token_client_error"
BEARER_REFUSED_TYPE = "invalid_grant"
"""The error type of Mautic's 401 for an expired or unknown access token."""


def classify_token_answer(
    status: int,
    headers: Mapping[str, str],
    now: float,
    *,
    readable: bool,
    retry_after_max_s: float = DEFAULT_RETRY_AFTER_MAX_S,
) -> Classification:
    """Decision for an answer of an OAuth2 token endpoint. A 2xx carrying a token is DELIVERED; a
    destination-level failure (5xx, 408/420/425/429) is RETRY as for any call; every other answer
    (400 ``invalid_client`` / ``unauthorized_client``, 401, 403, 404, a 2xx without a usable token)
    is a FAULT: the integration's credentials or setup are wrong, no event is at fault."""
    if 200 <= status < 300:
        return (
            Classification(Verdict.DELIVERED)
            if readable
            else Classification(Verdict.FAULT, reason=UNREADABLE_GRANT)
        )
    reason = f"token_http_{status}"
    if status in RETRYABLE_STATUSES or status >= 500:
        return Classification(Verdict.RETRY, retry_after(headers, now, retry_after_max_s), reason)
    return Classification(Verdict.FAULT, reason=reason)


def classify_token_exception(exc: BaseException) -> Classification:
    """Decision for a token request that got no reply: network trouble is RETRY, as for any call;
    anything else raised on our side is a FAULT of the integration (no event is at fault)."""
    classification = classify_exception(exc)
    if classification.verdict is Verdict.RETRY:
        return classification
    return Classification(Verdict.FAULT, reason=GRANT_CLIENT_ERROR)


def bearer_refused(status: int | None, body: bytes, error_type: Callable[[bytes], str | None]) -> bool:
    """Mautic's 401 ``invalid_grant`` ("The access token provided has expired." / "... is
    invalid."): the bearer token expired or was deleted, and a new token may pass. A 401
    ``access_denied`` is not this: the header never reached Mautic, a new token does not help.
    ``error_type`` reads the answer's error type (only a 401's body is read)."""
    return status == 401 and error_type(body) == BEARER_REFUSED_TYPE
