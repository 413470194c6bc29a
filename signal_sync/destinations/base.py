"""What every destination module shares: the request value, drop reasons and the gate.

Mapping is pure (no I/O, no clock): ``build_request`` turns a resolved event into a
``Request`` that the delivery module sends. The gate decides, in the contract's order,
whether an event is for this integration at all.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from signal_sync.identity import ResolvedEvent

DropReason = Literal["invalid_event", "event_not_mapped", "no_email", "invalid_email", "consent_denied"]


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


def basic_auth(user: str, password: str) -> str:
    """``Authorization`` header value for HTTP Basic auth."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def consent_granted(resolved: ResolvedEvent, categories: list[str]) -> bool:
    """Every required category must be explicitly true; missing counts as not granted."""
    canonical = resolved.event.context.consent.canonical
    return all(canonical.get(category) is True for category in categories)


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
