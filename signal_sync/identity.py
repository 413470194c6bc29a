"""Who an event is about: email normalization and validation, contact ids and identity stitching.

A ``track`` often carries no traits (the seed's Signed Up example), yet the upsert needs
the email and names from an earlier ``identify``. Stitching merges the latest traits we
know for the event's ``user_id`` and ``anonymous_id`` under the event's own traits (the
event wins). This module is pure: the Faust table that remembers traits lives in the
agents, and preview keeps the same state in a dict.

An email is sent only when it is an address both destinations take exactly as given
(docs/destinations-api.md, "Email addresses"): Mautic cleans an address before validating it
(it strips spaces and other characters, so ``jane doe@example.com`` would become another
contact) and Mailgun reads ``Name <address>`` forms, so anything else is dropped with
``invalid_email`` rather than sent.
"""

from __future__ import annotations

import functools
import hashlib
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import email_validator
from email_validator import EmailNotValidError, validate_email

from signal_sync.streams.records import TRAIT_ALIASES, SignalEvent

EVENT_NAMES = {"identify": "Identified", "page": "page"}

MAX_EMAIL_CHARS = 191
"""Mautic keeps a contact's email in a VARCHAR(191) column (``SchemaDefinition::MAX_VARCHAR_LENGTH``)."""
MAUTIC_KEPT_CHARACTERS = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-=?^_`{|}~@.[]")
"""What PHP's ``FILTER_SANITIZE_EMAIL`` keeps; Mautic strips every other character before validating."""
MAUTIC_REFUSED_CHARACTERS = frozenset("^&*%")
"""Characters Mautic's ``EmailValidator::hasValidCharacters`` rejects although RFC 5322 allows them."""
EMAIL_CACHE_SIZE = 32_768
"""Normalized addresses whose verdict is kept: every event checks its email once per stage."""


def normalize_email(value: Any) -> str | None:
    """Lowercase and trim; anything that is not a non-empty string has no email."""
    if not isinstance(value, str):
        return None
    email = value.strip().lower()
    return email or None


def email_problem(email: str) -> str | None:
    """Why a normalized address is not one both destinations take as given, or None when it is.

    The syntax is RFC 5321/5322's dot-atom address, checked by ``email-validator`` (no DNS, no
    quoted local part, no IP literal, local part at most 64 characters, a domain that can receive
    mail); on top, what Mautic refuses or would rewrite: non-ASCII characters (internationalized
    domains are accepted in their ``xn--`` form), characters its cleaning strips, ``^&*%``, a
    top-level domain starting with a digit and more than 191 characters. The texts never contain
    the address. Verdicts are cached per address; a longer one is refused before the cache, so the
    cache holds at most ``EMAIL_CACHE_SIZE`` short keys whatever the input."""
    if len(email) > MAX_EMAIL_CHARS:
        return f"longer than {MAX_EMAIL_CHARS} characters"
    return _syntax_problem(email)


_LABEL = "[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){0,62}"
PLAIN_ADDRESS = re.compile(rf"[a-z0-9]+(?:[._+-][a-z0-9]+)*@(?:{_LABEL}\.)+[a-z]{{2,63}}")
"""The common shape of an address, every one of which ``email-validator`` and Mautic take: letters,
digits and single ``._+-`` between them before the @; labels of letters, digits and single hyphens
(at most 63 characters, so no ``xn--`` or other R-LDH label) and a top-level domain of letters
after it. Checking it first spares a new address the validator's character-by-character domain
checks (about 20 µs: every new contact's first event)."""


def _plain_address(email: str) -> bool:
    """Whether the address has ``PLAIN_ADDRESS``'s shape, a local part of at most 64 characters and
    no special-use domain (``email_validator.SPECIAL_USE_DOMAIN_NAMES``, read when asked)."""
    if PLAIN_ADDRESS.fullmatch(email) is None:
        return False
    local, _, domain = email.partition("@")
    if len(local) > 64:
        return False
    special = email_validator.SPECIAL_USE_DOMAIN_NAMES
    return not any(domain == name or domain.endswith("." + name) for name in special)


@functools.lru_cache(maxsize=EMAIL_CACHE_SIZE)
def _syntax_problem(email: str) -> str | None:
    return None if _plain_address(email) else _checked_problem(email)


def _checked_problem(email: str) -> str | None:
    """``email_problem``'s verdict from every check (``_plain_address`` only ever says yes sooner)."""
    if not email.isascii():
        return "contains characters outside ASCII (give an internationalized domain in its xn-- form)"
    if not MAUTIC_KEPT_CHARACTERS.issuperset(email):
        return "contains a character Mautic strips from addresses (a space, a quote, a slash, a control …)"
    if not MAUTIC_REFUSED_CHARACTERS.isdisjoint(email):
        return "contains one of ^ & * %, which Mautic refuses"
    try:
        validate_email(
            email,
            check_deliverability=False,
            allow_smtputf8=False,
            allow_quoted_local=False,
            allow_domain_literal=False,
            allow_display_name=False,
            strict=True,
        )
    except EmailNotValidError as exc:
        return str(exc)
    if not email.rpartition(".")[2][:1].isalpha():
        return "the top-level domain does not start with a letter"
    return None


CONTACT_ID_CACHE_SIZE = 4096
"""Normalized addresses whose contact id is kept: an event's id is needed in both stages and for
each of its outcomes (about five times per event, the delivery stage's within about a second)."""


@functools.lru_cache(maxsize=CONTACT_ID_CACHE_SIZE)
def contact_id(email: str) -> str:
    """sha256 of the normalized email: a stable key that is not the plaintext address."""
    return hashlib.sha256(email.encode("utf-8")).hexdigest()


def event_name(event: SignalEvent) -> str:
    """identify → Identified, page → page, track → its ``event``."""
    return EVENT_NAMES.get(event.type) or event.event or ""


def normalize_traits(traits: Mapping[str, Any]) -> dict[str, Any]:
    """camelCase trait keys become snake_case; a snake_case key given too wins."""
    result = {TRAIT_ALIASES.get(key, key): value for key, value in traits.items() if key not in TRAIT_ALIASES}
    for camel, snake in TRAIT_ALIASES.items():
        if camel in traits and snake not in traits:
            result[snake] = traits[camel]
    return result


def keys_for(user_id: str | None, anonymous_id: str | None) -> list[str]:
    """The identities table keys of a user id and an anonymous id (those given)."""
    keys = []
    if user_id:
        keys.append(f"u:{user_id}")
    if anonymous_id:
        keys.append(f"a:{anonymous_id}")
    return keys


def identity_keys(event: SignalEvent) -> list[str]:
    """Table keys this event's traits are remembered under."""
    return keys_for(event.user_id, event.anonymous_id)


@dataclass(frozen=True, slots=True, init=False)
class ResolvedEvent:
    """An event with its stitched traits and normalized email; what mapping works on.

    Made for every event in the ingest stage and again per integration in the delivery stage:
    its ``__init__`` sets the slots itself (the generated one plus ``__post_init__`` cost about
    three times as much)."""

    event: SignalEvent
    traits: dict[str, Any]
    email: str | None
    """The normalized email when it is a valid address (see ``email_problem``), else None."""
    contact_id: str | None
    """sha256 of ``email``; both are read several times per event, so they are computed once."""
    email_invalid: bool
    """The event has an email, but not one the destinations take (its ``email`` is None)."""
    name: str = field(repr=False, compare=False)
    """The mapped event name (``event_name``): the gate, the mapping and every outcome read it."""

    def __init__(self, event: SignalEvent, traits: dict[str, Any] | None = None) -> None:
        if traits is None:
            traits = {}
        email = normalize_email(traits.get("email"))
        invalid = email is not None and email_problem(email) is not None
        if invalid:
            email = None
        setter = object.__setattr__
        setter(self, "event", event)
        setter(self, "traits", traits)
        setter(self, "email", email)
        setter(self, "contact_id", contact_id(email) if email else None)
        setter(self, "email_invalid", invalid)
        setter(self, "name", event_name(event))


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def own_traits(event: SignalEvent) -> dict[str, Any]:
    """The traits the event itself carries: ``context.traits`` under ``traits``.

    Null and blank values are left out: an event that says ``email: null`` has no email of
    its own, and must neither hide nor erase the one we know.
    """
    context_traits = event.context.traits
    if not context_traits and not event.traits:  # most events: only ids (stitching adds the traits)
        return {}
    merged = {**normalize_traits(context_traits), **normalize_traits(event.traits)}
    return {key: value for key, value in merged.items() if _present(value)}


def stitch(
    event: SignalEvent, remembered: Mapping[str, Mapping[str, Any]]
) -> tuple[ResolvedEvent, dict[str, Any]]:
    """Resolve an event against remembered traits.

    ``remembered`` maps identity keys (see :func:`identity_keys`) to their latest traits.
    Returns the resolved event and the traits to remember under each of the event's
    identity keys (empty when the event taught us nothing new).
    """
    keys = identity_keys(event)
    known: dict[str, Any] = {}
    for key in reversed(keys):  # anonymous first, so user-level traits win
        known.update(remembered.get(key) or {})
    own = own_traits(event)
    merged = {**known, **own} if own else known
    resolved = ResolvedEvent(event, merged)
    if not own or not keys:
        return resolved, {}
    for key in keys:
        if remembered.get(key) != merged:
            return resolved, merged
    return resolved, {}
