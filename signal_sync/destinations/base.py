"""What every destination module shares: the request value, drop reasons, operations and the gate.

Mapping is pure (no I/O, no clock): a destination module turns a resolved event into the
items and ``Request`` values that the delivery module sends. The gate decides, in the
contract's order, whether an event is for this integration at all.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from signal_sync.identity import ResolvedEvent

DropReason = Literal["invalid_event", "event_not_mapped", "no_email", "invalid_email", "consent_denied"]
Operation = Literal["upsert", "withdraw_consent", "restore_consent", "erase"]
"""What a delivery does for the contact: the upsert of a mapped event, the withdrawal of consent,
its re-grant (an upsert that also undoes what the withdrawal added), the erasure of the person."""


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request to a destination, plus the per-contact state to keep once it succeeds."""

    method: str
    url: str
    headers: dict[str, str]
    json: dict[str, Any] | list[dict[str, Any]] | None = None
    form: dict[str, str] | None = None
    state: dict[str, Any] | None = field(default=None, compare=False)
    contacts: int = field(default=1, compare=False)
    """Contacts this request upserts (more than one for a bulk request)."""
    absent: Callable[[bytes], bool] | None = field(default=None, compare=False, repr=False)
    """For a call that names one item (a contact id, a member address): reads an answer's body and
    says whether it reports that the item does not exist (an outcome), as opposed to a path or
    list the destination does not have (a fault). ``classify`` decides what the status means."""
    refused: Callable[[bytes], str | None] | None = field(default=None, compare=False, repr=False)
    """For a call about a configured item besides the contact (a Mautic segment): reads an answer's
    body and gives the event's reason when it says the item is missing or out of reach (a 403/404
    about this item fails the event, not the integration). ``classify`` decides what the status
    means."""

    def view(self) -> dict[str, Any]:
        """The request as shown to people (preview, debugger): credentials redacted, body as sent."""
        shown: dict[str, Any] = {"method": self.method, "url": self.url, "headers": self.redacted_headers()}
        if self.form is not None:
            shown["form"] = self.form
        else:
            shown["json"] = self.json
        return shown

    def redacted_headers(self) -> dict[str, str]:
        """Headers safe to print or log: the credentials are hidden."""
        return {
            k: ("Basic <redacted>" if k.lower() == "authorization" else v) for k, v in self.headers.items()
        }


class Shown(Protocol):
    """What was sent for an event, as shown to people: a ``Request``, a ``Planned`` or a ``CallLog``."""

    def view(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class CallLog:
    """The requests one event's operation made, in order, as shown to people (preview, debugger)."""

    requests: tuple[Request, ...]

    def view(self) -> dict[str, Any]:
        return {"calls": [request.view() for request in self.requests]}


@dataclass(frozen=True, slots=True)
class Planned:
    """A request shown only when someone looks: built from its item by ``build`` (a batched
    upsert travels as an item of a bulk call; this is the single request it stands for)."""

    build: Callable[[], Request]

    def view(self) -> dict[str, Any]:
        return self.build().view()


def basic_auth(user: str, password: str) -> str:
    """``Authorization`` header value for HTTP Basic auth."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def consent_granted(resolved: ResolvedEvent, categories: list[str]) -> bool:
    """Every required category must be explicitly true; missing counts as not granted. (A loop
    rather than ``all`` over a generator: it runs per event and integration, in both stages.)"""
    canonical = resolved.event.context.consent.canonical
    for category in categories:
        if canonical.get(category) is not True:
            return False
    return True


def consent_withdrawn(resolved: ResolvedEvent, categories: list[str]) -> bool:
    """Some required category is explicitly false: the person withdrew it (missing is not)."""
    canonical = resolved.event.context.consent.canonical
    if not canonical:  # no consent given at all: nothing withdrawn
        return False
    for category in categories:
        if canonical.get(category) is False:
            return True
    return False


def gate(resolved: ResolvedEvent, mapped_events: frozenset[str], consent: list[str]) -> DropReason | None:
    """The drop reason for this integration, checked in the contract's order, or None to send."""
    if resolved.name not in mapped_events:
        return "event_not_mapped"
    if not resolved.email:
        return "invalid_email" if resolved.email_invalid else "no_email"
    if not consent_granted(resolved, consent):
        return "consent_denied"
    return None


def text(value: Any) -> str | None:
    """A trait as the string a destination stores; blank and non-scalar values are omitted."""
    if value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    result = str(value).strip()
    return result or None


def first_text(source: Mapping[str, Any], *keys: str) -> str | None:
    """The first non-blank value among ``keys``."""
    for key in keys:
        value = text(source.get(key))
        if value is not None:
            return value
    return None
