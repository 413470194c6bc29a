"""Email normalization, contact ids, event names and identity stitching."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from signal_sync.identity import (
    ResolvedEvent,
    contact_id,
    event_name,
    identity_keys,
    normalize_email,
    normalize_traits,
    own_traits,
    stitch,
)
from signal_sync.planner import remember, remembered_for
from tests.unit.factories import event


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("jane@example.com", "jane@example.com"),
        ("  Jane@Example.COM \n", "jane@example.com"),
        ("", None),
        ("   ", None),
        (None, None),
        (42, None),
        (["jane@example.com"], None),
    ],
)
def test_normalize_email(value: Any, expected: str | None) -> None:
    assert normalize_email(value) == expected


def test_contact_id_is_sha256_of_the_normalized_email() -> None:
    expected = hashlib.sha256(b"jane@example.com").hexdigest()
    assert contact_id("jane@example.com") == expected
    resolved = ResolvedEvent(event(type="page"), {"email": "  Jane@Example.com "})
    assert resolved.email == "jane@example.com"
    assert resolved.contact_id == expected
    assert ResolvedEvent(event(type="page"), {}).contact_id is None


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ({"type": "identify"}, "Identified"),
        ({"type": "page"}, "page"),
        ({"type": "track", "event": "Signed Up"}, "Signed Up"),
        ({"type": "track", "event": "Order Completed"}, "Order Completed"),
        ({"type": "identify", "event": "Signed Up"}, "Identified"),
    ],
)
def test_event_name(raw: dict[str, Any], name: str) -> None:
    assert event_name(event(**raw)) == name
    assert ResolvedEvent(event(**raw)).name == name


def test_normalize_traits_camel_to_snake_and_snake_wins() -> None:
    assert normalize_traits({"firstName": "Jane", "lastName": "Doe", "postalCode": "N1", "plan": "pro"}) == {
        "first_name": "Jane",
        "last_name": "Doe",
        "postal_code": "N1",
        "plan": "pro",
    }
    assert normalize_traits({"firstName": "Camel", "first_name": "Snake"}) == {"first_name": "Snake"}


def test_own_traits_event_traits_win_over_context_traits() -> None:
    ev = event(
        type="identify",
        traits={"email": "a@b.co", "firstName": "Top"},
        context={"traits": {"first_name": "Ctx", "phone": "123"}},
    )
    assert own_traits(ev) == {"email": "a@b.co", "first_name": "Top", "phone": "123"}


def test_identity_keys() -> None:
    assert identity_keys(event(type="page", userId="u1", anonymousId="a1")) == ["u:u1", "a:a1"]
    assert identity_keys(event(type="page", anonymous_id="a1")) == ["a:a1"]
    assert identity_keys(event(type="page")) == []


def test_stitch_by_user_id() -> None:
    remembered = {"u:user-123": {"email": "jane@example.com", "first_name": "Jane"}}
    resolved, learned = stitch(event(type="track", event="Signed Up", userId="user-123"), remembered)
    assert resolved.email == "jane@example.com"
    assert resolved.traits["first_name"] == "Jane"
    assert learned == {}


def test_stitch_by_anonymous_id() -> None:
    remembered = {"a:anon-1": {"email": "jane@example.com"}}
    resolved, _ = stitch(event(type="page", anonymousId="anon-1"), remembered)
    assert resolved.email == "jane@example.com"


def test_unknown_ids_stitch_nothing() -> None:
    remembered = {"u:someone-else": {"email": "x@example.com"}}
    resolved, learned = stitch(event(type="page", userId="user-123", anonymousId="a"), remembered)
    assert resolved.email is None and learned == {}


def test_user_traits_win_over_anonymous_traits() -> None:
    remembered = {"u:u1": {"email": "user@example.com"}, "a:a1": {"email": "anon@example.com", "plan": "pro"}}
    resolved, _ = stitch(event(type="page", userId="u1", anonymousId="a1"), remembered)
    assert resolved.email == "user@example.com"
    assert resolved.traits["plan"] == "pro"


def test_event_traits_win_over_stored_traits_and_are_learned() -> None:
    remembered = {"u:u1": {"email": "old@example.com", "first_name": "Jane", "plan": "free"}}
    ev = event(type="identify", userId="u1", traits={"email": "new@example.com", "plan": "pro"})
    resolved, learned = stitch(ev, remembered)
    assert resolved.traits == {"email": "new@example.com", "first_name": "Jane", "plan": "pro"}
    assert learned == resolved.traits


def test_camel_case_traits_are_stored_snake_case() -> None:
    store: dict[str, Any] = {}
    ev = event(type="identify", userId="u1", traits={"email": "a@b.co", "firstName": "Jane"})
    _, learned = stitch(ev, remembered_for(ev, store))
    remember(store, ev, learned)
    assert store["u:u1"] == {"email": "a@b.co", "first_name": "Jane"}


def test_remember_stores_under_both_ids_and_nothing_when_nothing_learned() -> None:
    store: dict[str, Any] = {}
    ev = event(type="identify", userId="u1", anonymousId="a1", traits={"email": "a@b.co"})
    _, learned = stitch(ev, remembered_for(ev, store))
    remember(store, ev, learned)
    assert store == {"u:u1": {"email": "a@b.co"}, "a:a1": {"email": "a@b.co"}}

    again = event(type="page", userId="u1")
    _, learned_again = stitch(again, remembered_for(again, store))
    assert learned_again == {}
    remember(store, again, learned_again)
    assert store == {"u:u1": {"email": "a@b.co"}, "a:a1": {"email": "a@b.co"}}


def test_anonymous_event_with_traits_learns_nothing_without_ids() -> None:
    _, learned = stitch(event(type="identify", traits={"email": "a@b.co"}), {})
    assert learned == {}


@pytest.mark.parametrize("blank", [None, "", "   "])
def test_blank_event_email_does_not_erase_the_known_email(blank: str | None) -> None:
    """The contract: stored traits are used "when an event has no email of its own".

    An event whose email trait is null or blank has no email of its own, so the stitched
    email must be the remembered one, and remembering the event must not forget it.
    """
    store: dict[str, Any] = {}
    first = event(type="identify", userId="u1", traits={"email": "jane@example.com"})
    _, learned = stitch(first, remembered_for(first, store))
    remember(store, first, learned)

    blank_event = event(type="track", event="Signed Up", userId="u1", traits={"email": blank, "plan": "pro"})
    resolved, learned = stitch(blank_event, remembered_for(blank_event, store))
    remember(store, blank_event, learned)
    assert resolved.email == "jane@example.com"

    later = event(type="page", userId="u1")
    resolved_later, _ = stitch(later, remembered_for(later, store))
    assert resolved_later.email == "jane@example.com"


def test_remembered_traits_are_one_copy_shared_by_the_keys_and_detached_from_the_input() -> None:
    store: dict[str, Any] = {}
    ev = event(type="identify", userId="u1", anonymousId="a1", traits={"email": "a@b.co"})
    _, learned = stitch(ev, remembered_for(ev, store))
    remember(store, ev, learned)
    assert store["u:u1"] is store["a:a1"], "one dict per contact, not one per identity key"
    learned["email"] = "changed@b.co"
    assert store["u:u1"] == {"email": "a@b.co"}
    later = event(type="identify", userId="u1", traits={"first_name": "Jane"})
    _, learned_later = stitch(later, remembered_for(later, store))
    remember(store, later, learned_later)
    assert store["a:a1"] == {"email": "a@b.co"}, "a new value replaces, never edits, the shared one"
