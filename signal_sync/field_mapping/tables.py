"""The seeds' field and event tables, as data: what each destination sends by default, which
fields signal-sync owns, and which destination field names a mapping may use.

``destinations/mautic.py`` and ``mailgun.py`` compute the default requests themselves (seed
exact, and fast); these tables describe them for validation and ``check-config``, and a unit
test keeps both in step.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DefaultField:
    """One field the default mapping sends, with its source as ``check-config`` shows it."""

    field: str
    source: str
    event: str | None = None
    """None: sent with every event the integration takes; else only with this event."""
    owned: bool = False
    """signal-sync's own field: always sent as shown, never mapped."""


@dataclass(frozen=True, slots=True)
class FieldTable:
    """One destination's default fields (in request order), default events and field-name rules."""

    destination: str
    fields: tuple[DefaultField, ...]
    events: tuple[str, ...]
    field_problem: Callable[[str], str | None]
    """Why a destination field cannot be mapped (owned, forbidden, not a field name), or None."""
    drop_only: dict[str, str]
    """Default fields that may be dropped but not taken from another source, with the reason."""

    def defaults_for(self, event: str) -> list[DefaultField]:
        """The default fields an event of this name sends, in request order."""
        return [item for item in self.fields if item.event is None or item.event == event]

    def default_names(self) -> frozenset[str]:
        """Every field the default mapping may send, for some event."""
        return frozenset(item.field for item in self.fields)


# --- Mautic (seed 000) -----------------------------------------------------------------------

_MAUTIC_OWNED = {
    "email": "the contact's key, the event's normalized email",
    "tags": "it holds the consent tag signal-marketing-consent, added and removed with marketing "
    "consent; a mapped tag would outlive a consent withdrawal",
    "ipAddress": "the visitor IP, sent also as X-Forwarded-For for Mautic's geo lookup",
}
_MAUTIC_FORBIDDEN = {
    "doNotContact": "do-not-contact entries follow consent (on_consent_withdrawn); a mapped entry would "
    "bypass a withdrawal and its re-grant",
    "overwriteWithBlank": "it lets a request blank stored fields; signal-sync never sends empty fields",
}
_MAUTIC_ALIAS = re.compile(r"^[a-z_][a-z0-9_]*$")
"""A Mautic contact field alias: Mautic cleans every alias to lowercase letters, digits and
underscores (``FieldModel::saveEntity``); the API ignores any other key."""


def _mautic_field_problem(field: str) -> str | None:
    if field in _MAUTIC_OWNED:
        return f"{field} is signal-sync's own field ({_MAUTIC_OWNED[field]}) and cannot be mapped"
    if field in _MAUTIC_FORBIDDEN:
        return f"{field} cannot be mapped: {_MAUTIC_FORBIDDEN[field]}"
    if field == "lastActive":
        return None
    if not _MAUTIC_ALIAS.match(field):
        return (
            f"{field!r} is not a Mautic contact field alias (lowercase letters, digits and underscores, "
            "as Settings > Custom Fields shows it); Mautic ignores any other key"
        )
    return None


_UTM = ("source", "medium", "campaign", "content", "term")
_UTM_CAMPAIGN_KEYS = {"campaign": "name"}

MAUTIC = FieldTable(
    destination="mautic",
    fields=(
        DefaultField("email", "traits.email (lowercased, trimmed)", owned=True),
        DefaultField("firstname", "traits.first_name"),
        DefaultField("lastname", "traits.last_name"),
        DefaultField("phone", "traits.phone"),
        DefaultField("company", "traits.company"),
        DefaultField("city", "first of [traits.city, traits.address.city]"),
        DefaultField("state", "first of [traits.state, traits.address.state]"),
        DefaultField("zipcode", "first of [traits.postal_code, traits.address.postal_code]"),
        DefaultField("country", "first of [traits.country, traits.address.country]"),
        DefaultField("ipAddress", "context.ip (normalized)", owned=True),
        DefaultField("lastActive", "the event's timestamp in UTC, as Y-m-d H:i:s"),
        *(
            DefaultField(
                f"utm_{name}",
                f"context.campaign.{_UTM_CAMPAIGN_KEYS.get(name, name)}, or utm_{name} of the page URL's "
                "query when context.campaign has no UTM value",
            )
            for name in _UTM
        ),
        DefaultField("signal_signup_method", "properties.method", event="Signed Up"),
        DefaultField(
            "signal_lead_source",
            "first of [properties.lead_source, properties.source]",
            event="Lead Captured",
        ),
        DefaultField(
            "tags",
            "context.consent.canonical.marketing: [signal-marketing-consent] when true, "
            "[-signal-marketing-consent] when false",
            owned=True,
        ),
    ),
    events=("page", "Identified", "Signed Up", "Lead Captured"),
    field_problem=_mautic_field_problem,
    drop_only={"lastActive": "it is the event's time in Mautic's Y-m-d H:i:s format"},
)


# --- Mailgun (seed 001) ----------------------------------------------------------------------

MAILGUN_VARS_PREFIX = "vars."
_MAILGUN_OWNED = {
    "address": "the member's key, the event's normalized email",
    "subscribed": "it follows context.consent.canonical.marketing and consent withdrawals",
    "upsert": "it is always true, so a repeated event updates the member",
}


def _mailgun_field_problem(field: str) -> str | None:
    if field in _MAILGUN_OWNED:
        return f"{field} is signal-sync's own field ({_MAILGUN_OWNED[field]}) and cannot be mapped"
    if field == "name":
        return None
    if field == "vars":
        return "vars holds the member's custom variables: map each as vars.<name>"
    if field.startswith(MAILGUN_VARS_PREFIX) and len(field) > len(MAILGUN_VARS_PREFIX):
        return None
    return f"{field!r} is not a Mailgun member field: map name, or a custom variable as vars.<name>"


MAILGUN = FieldTable(
    destination="mailgun",
    fields=(
        DefaultField("address", "traits.email (lowercased, trimmed)", owned=True),
        DefaultField("name", "traits.name, else traits.first_name and traits.last_name joined by a space"),
        DefaultField("subscribed", "context.consent.canonical.marketing (when present)", owned=True),
        DefaultField("vars.first_name", "traits.first_name", event="Identified"),
        DefaultField("vars.last_name", "traits.last_name", event="Identified"),
        DefaultField("vars.plan", "traits.plan", event="Identified"),
        DefaultField("vars.company", "traits.company", event="Identified"),
        DefaultField("vars.last_page_url", "first of [context.page.url, properties.url]", event="page"),
        DefaultField("vars.signup_method", "properties.method", event="Signed Up"),
        DefaultField("vars.last_order_id", "properties.order_id", event="Order Completed"),
        DefaultField("vars.last_order_revenue", "properties.revenue", event="Order Completed"),
        DefaultField("vars.last_order_currency", "properties.currency", event="Order Completed"),
        DefaultField("vars.anonymous_id", "anonymous_id"),
        DefaultField("upsert", "true", owned=True),
    ),
    events=("page", "Signed Up", "Identified", "Order Completed"),
    field_problem=_mailgun_field_problem,
    drop_only={},
)

TABLES = {"mautic": MAUTIC, "mailgun": MAILGUN}
