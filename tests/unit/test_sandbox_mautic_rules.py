"""The Mautic emulator's pure rules: do-not-contact entries, PHP input casts, search parsing, LIKE."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signal_sync.sandbox.mautic import MauticSettings, MauticStore
from signal_sync.sandbox.mautic_dnc import (
    BOUNCED,
    MANUAL,
    UNSUBSCRIBED,
    DncEntry,
    add_entry,
    php_int,
    remove_entry,
    sanitize_special_chars,
    strip_tags,
)
from signal_sync.sandbox.mautic_search import (
    NotEmulated,
    Term,
    contact_filter,
    like,
    parse_search,
    parse_where,
)

COLUMNS = frozenset(
    {"id", "email", "firstname", "lastname", "company", "city", "state", "zipcode", "country"}
)


def entry(reason: int, *, channel: str = "email", comments: str = "", entry_id: int = 1) -> DncEntry:
    return DncEntry(entry_id, "2026-01-01T00:00:00+00:00", reason, comments, channel)


def add(entries: list[DncEntry], reason: int, channel_id: int | None = None) -> str:
    outcome, _ = add_entry(
        entries,
        channel="email",
        reason=reason,
        comments="ours",
        channel_id=channel_id,
        new_id=99,
        now="2026-06-01T00:00:00+00:00",
    )
    return outcome


# --- do not contact -------------------------------------------------------------------------


def test_add_creates_an_entry_when_the_channel_has_none():
    entries = [entry(BOUNCED, channel="sms")]
    assert add(entries, UNSUBSCRIBED) == "added"
    assert [(e.id, e.channel, e.reason, e.comments) for e in entries] == [
        (1, "sms", BOUNCED, ""),
        (99, "email", UNSUBSCRIBED, "ours"),
    ]


def test_add_rewrites_a_bounce_entry_in_place():
    entries = [entry(BOUNCED, comments="550 no such mailbox")]
    assert add(entries, UNSUBSCRIBED) == "updated"
    (only,) = entries
    assert (only.id, only.reason, only.comments, only.date_added) == (
        1,
        UNSUBSCRIBED,
        "ours",
        "2026-06-01T00:00:00+00:00",
    )


@pytest.mark.parametrize(("existing", "requested"), [(UNSUBSCRIBED, UNSUBSCRIBED), (UNSUBSCRIBED, MANUAL)])
def test_add_never_touches_an_unsubscribed_entry(existing, requested):
    entries = [entry(existing, comments="clicked unsubscribe")]
    assert add(entries, requested) == "unchanged"
    assert (entries[0].reason, entries[0].comments) == (existing, "clicked unsubscribe")


def test_add_with_the_same_reason_changes_nothing():
    entries = [entry(MANUAL, comments="by an admin")]
    assert add(entries, MANUAL) == "unchanged"
    assert entries[0].comments == "by an admin"


def test_add_with_a_channel_id_never_rewrites():
    entries = [entry(BOUNCED)]
    assert add(entries, UNSUBSCRIBED, channel_id=7) == "unchanged"
    assert entries[0].reason == BOUNCED


def test_remove_takes_the_first_entry_of_the_channel_whatever_its_reason():
    entries = [entry(BOUNCED, channel="sms"), entry(BOUNCED, entry_id=2)]
    removed = remove_entry(entries, "email")
    assert removed is not None and removed.id == 2
    assert remove_entry(entries, "email") is None
    assert [e.channel for e in entries] == ["sms"]


# --- PHP input handling ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, 0),
        ("", 0),
        ("abc", 0),
        ("1", 1),
        (" 2", 2),
        ("3abc", 3),
        ("1.9", 1),
        ("1e2", 100),
        ("-1", -1),
        (True, 1),
        (2.7, 2),
        ([1], 1),
        ([], 0),
    ],
)
def test_php_int(value, expected):
    assert php_int(value) == expected


@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_php_int_reads_every_decimal_integer(number):
    assert php_int(str(number)) == number


def test_comments_are_cleaned_as_the_dnc_endpoint_cleans_them():
    assert (
        strip_tags(sanitize_special_chars("a & <b>'x'</b>\n"))
        == "a &#38; &#60;b&#62;&#39;x&#39;&#60;/b&#62;&#10;"
    )
    assert strip_tags("keep <b>text</b> only") == "keep text only"


# --- search ---------------------------------------------------------------------------------


def like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@given(st.text(max_size=40))
def test_like_escaped_text_matches_itself(text):
    assert like(like_escape(text), text)


@given(st.text(alphabet=string.printable, max_size=40))
def test_like_ignores_case(text):
    assert like(like_escape(text.upper()), text.lower())


@given(st.text(max_size=20), st.text(max_size=20))
def test_like_prefix_pattern_matches_every_extension(prefix, rest):
    assert like(like_escape(prefix) + "%", prefix + rest)


def test_like_wildcards_are_not_literal():
    assert like("a_b@example.com", "axb@example.com")
    assert not like("a_b@example.com", "ab@example.com")
    assert like("jane@example.com%", "jane@example.com.au")
    assert not like("x", None)


ATEXT_NO_BANG = string.ascii_lowercase + string.digits + "#$'+-=?^_`{|}~"
local_parts = st.text(alphabet=ATEXT_NO_BANG, min_size=1, max_size=20)


@given(local_parts)
def test_strict_email_search_reads_an_address_without_bang_as_given(local):
    address = f"{local}@example.com"
    (term,) = parse_search(f"email:+{address}")
    assert term == Term(command="email", string=address.lower(), negate=False, strict=True)


@given(local_parts, st.sampled_from(["!", "a!", "ab!"]))
def test_strict_email_search_of_an_address_with_bang_is_mangled_into_a_negation(local, bang):
    address = f"{bang}{local}@example.com"
    (term,) = parse_search(f"email:+{address}")
    assert term.negate and term.strict
    assert term.string == ("+" + address)[2:]


def test_search_terms_and_refusals():
    assert parse_search("email:jane@example.com  and  London") == [
        Term("email", "jane@example.com"),
        Term("", "london"),
    ]
    assert parse_search("!email:x@example.com") == [Term("email", "x@example.com", negate=True)]
    assert parse_search("email:") == []
    for unsupported in ('"jane doe"', "(a b)", "a or b", "tag:vip", "a:b:c"):
        with pytest.raises(NotEmulated):
            contact_filter(unsupported, [], COLUMNS)


def test_where_in_is_exact_and_eq_fails_on_an_apostrophe():
    row = {"id": 1, "email": "O'Brien@example.com"}
    assert contact_filter(
        "",
        parse_where(
            {"where[0][col]": "email", "where[0][expr]": "in", "where[0][val]": "o'brien@example.com"}
        ),
        COLUMNS,
    )(row)
    assert not contact_filter(
        "",
        parse_where(
            {"where[0][col]": "email", "where[0][expr]": "eq", "where[0][val]": "o'brien@example.com"}
        ),
        COLUMNS,
    )(row)
    with pytest.raises(NotEmulated):
        contact_filter("", [{"col": "email", "expr": "between", "val": "a"}], COLUMNS)
    with pytest.raises(ValueError, match="expr"):
        contact_filter("", [{"col": "email"}], COLUMNS)


LOCALS = st.sampled_from(["ann", "Ann", "bob", "o'brien", "O'Brien", "c_d", "cxd"])
DOMAINS = st.sampled_from(["example.com", "EXAMPLE.com", "example.org"])
ADDRESSES = st.builds(lambda local, domain: f"{local}@{domain}", LOCALS, DOMAINS)


@given(
    stored=st.lists(ADDRESSES, max_size=8),
    without_email=st.integers(0, 2),
    expr=st.sampled_from(["eq", "in", "neq", "notIn", "like"]),
    wanted=st.lists(ADDRESSES, min_size=1, max_size=3),
)
def test_an_indexed_email_lookup_finds_what_reading_every_contact_finds(
    stored: list[str], without_email: int, expr: str, wanted: list[str]
) -> None:
    store = MauticStore(MauticSettings(username="u", password="p"))  # noqa: S106 (test credentials)
    for email in stored:  # a repeated address (in any case) updates its contact
        store.upsert({"email": email}, None)
    for _ in range(without_email):
        store._apply(store._create(), {"firstname": "x"}, None, created=True, clear_missing=False)
    where = [
        {"col": "email", "expr": expr, "val": ",".join(wanted) if expr in ("in", "notIn") else wanted[0]}
    ]
    matches = contact_filter("", where, store.columns)
    every = sorted(
        (c for c in store.contacts.values() if matches(store.row(c))),
        key=lambda c: (c.last_active is None, c.id),
    )
    assert [c.id for c in store.search("", where, None)] == [c.id for c in every]
