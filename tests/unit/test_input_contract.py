"""The accepted input (README "Contracts" -> Input): timestamps, ids, nesting, the visitor IP and
the email rule, each at its edges, as the decoder and the planner apply them."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import assume, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from signal_sync.codecs.events import (
    MAX_JSON_DEPTH,
    decode_event,
    fallback_message_id,
    nesting_depth_over,
    peek_message_id,
)
from signal_sync.destinations.base import gate
from signal_sync.errors import InvalidEventError
from signal_sync.identity import (
    MAX_EMAIL_CHARS,
    PLAIN_ADDRESS,
    ResolvedEvent,
    _checked_problem,
    _plain_address,
    email_problem,
)
from signal_sync.outcomes import event_timestamp
from signal_sync.preview import Previewer
from signal_sync.streams.records import MAX_ID_CHARS, usable_ip
from tests.unit.factories import Pipeline, consent, event, mailgun, mautic, settings

GRANTED = consent(marketing=True)


def decode(value: dict[str, Any]) -> Any:
    return decode_event(orjson.dumps(value))


def invalid(value: dict[str, Any] | bytes) -> str:
    """The decoder's error text for a record it refuses."""
    with pytest.raises(InvalidEventError) as info:
        decode_event(value if isinstance(value, bytes) else orjson.dumps(value))
    return str(info.value)


# --- timestamps ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stamp",
    [
        "9999-12-31T23:00:00-05:00",  # 10000-01-01T04:00Z: past the last instant Python holds
        "0001-01-01T00:00:00+05:00",  # 0000-12-31T19:00Z: before the first
        "0999-12-31T23:59:59Z",  # representable, but before MySQL's DATETIME range
        "1000-01-01T00:59:59+01:00",  # 0999-12-31T23:59:59Z
    ],
)
def test_timestamp_outside_the_accepted_range_is_an_invalid_event_naming_the_field(stamp: str) -> None:
    message = invalid({"type": "page", "timestamp": stamp})
    assert message.startswith("timestamp: ") and "accepted range" in message


@pytest.mark.parametrize(
    ("stamp", "utc"),
    [
        ("1000-01-01T00:00:00Z", datetime(1000, 1, 1, tzinfo=UTC)),
        ("9999-12-31T23:59:59.999999Z", datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)),
        ("9999-12-31T18:59:59-05:00", datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
        ("2026-06-06T16:32:10+02:00", datetime(2026, 6, 6, 14, 32, 10, tzinfo=UTC)),
        ("2026-06-06T14:32:10", datetime(2026, 6, 6, 14, 32, 10, tzinfo=UTC)),  # naive means UTC
    ],
)
def test_timestamps_in_range_are_held_in_utc(stamp: str, utc: datetime) -> None:
    decoded = decode({"type": "page", "timestamp": stamp})
    assert decoded.timestamp == utc and decoded.timestamp.utcoffset().total_seconds() == 0


def test_edge_timestamps_reach_mautic_and_the_outcome_without_error() -> None:
    for stamp, last_active in (
        ("9999-12-31T18:59:59-05:00", "9999-12-31 23:59:59"),
        ("1000-01-01T05:00:00+05:00", "1000-01-01 00:00:00"),
    ):
        raw = {"type": "identify", "timestamp": stamp, "traits": {"email": "jane@example.com"}}
        request = Pipeline(mautic(consent=[])).send(raw, "mautic-main")
        assert request.json is not None and request.json["lastActive"] == last_active
        assert event_timestamp(decode(raw)) == last_active.replace(" ", "T") + "Z"


# --- ids, names, nesting ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "attribute"),
    [
        ("messageId", "message_id"),
        ("message_id", "message_id"),
        ("anonymousId", "anonymous_id"),
        ("userId", "user_id"),
        ("event", "event"),
    ],
)
def test_ids_and_event_names_are_bounded(field: str, attribute: str) -> None:
    ok = decode({"type": "track", "event": "x", field: "i" * MAX_ID_CHARS})
    assert getattr(ok, attribute) == "i" * MAX_ID_CHARS
    message = invalid({"type": "track", "event": "x", field: "i" * (MAX_ID_CHARS + 1)})
    assert message.startswith(f"{field}: ") and "at most 512 characters" in message


@pytest.mark.parametrize("bad", ["a\r\nb", "nul\x00", "tab\tid", "del\x7f", "\n"])
@pytest.mark.parametrize("field", ["messageId", "anonymousId", "userId", "event"])
def test_ids_and_event_names_refuse_control_characters(field: str, bad: str) -> None:
    message = invalid({"type": "track", "event": "x", field: bad})
    assert message.startswith(f"{field}: ") and "control characters" in message
    assert not any(char in message for char in "\r\n\x00\x7f\t")


@pytest.mark.parametrize("odd", ["no\u00a0break", "line\u2028sep", "soft\u00adhyphen", "\u200b", "\x80c1"])
@pytest.mark.parametrize("field", ["messageId", "anonymousId", "userId", "event"])
def test_ids_with_characters_that_are_not_printable_but_not_control_characters_are_taken(
    field: str, odd: str
) -> None:
    ok = decode({"type": "track", "event": "x", field: odd})
    assert odd in {ok.message_id, ok.anonymous_id, ok.user_id, ok.event}


def test_an_empty_message_id_gets_the_fallback_id() -> None:
    raw = orjson.dumps({"type": "page", "messageId": ""})
    assert decode_event(raw).message_id == fallback_message_id(raw)


def test_peek_message_id_never_returns_an_oversized_or_control_id() -> None:
    huge = orjson.dumps({"type": 5, "messageId": "m" * 900_000})
    assert peek_message_id(huge) == fallback_message_id(huge)
    crlf = orjson.dumps({"type": 5, "messageId": "m\r\n"})
    assert peek_message_id(crlf) == fallback_message_id(crlf)
    assert peek_message_id(orjson.dumps({"type": 5, "messageId": "m-1"})) == "m-1"


def test_error_texts_quote_keys_short_and_escaped() -> None:
    key = "k\r\n" + "x" * 10_000
    message = invalid({"type": "page", "context": {"consent": {"canonical": {key: "yes"}}}})
    assert len(message) < 300 and "\r" not in message and "\n" not in message
    assert message.startswith("context.consent.canonical.k\\r\\nxxx")


def nested(depth: int) -> Any:
    """A value of ``depth`` levels of arrays inside a one-level event object."""
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def test_nesting_is_bounded() -> None:
    ok = decode({"type": "page", "properties": {"x": nested(MAX_JSON_DEPTH - 2)}})
    assert ok.properties["x"] == nested(MAX_JSON_DEPTH - 2)
    # orjson reads 300 levels but refuses to write more than 254: the event must not get past decode.
    for depth in (MAX_JSON_DEPTH - 1, 300):
        raw = json.dumps({"type": "page", "properties": {"x": nested(depth)}}).encode()
        assert invalid(raw) == f"objects and arrays nest deeper than {MAX_JSON_DEPTH} levels"


def test_nesting_depth_counts_objects_and_arrays_and_ignores_bracket_text() -> None:
    assert nesting_depth_over({"a": [{"b": []}]}, 3)
    assert not nesting_depth_over({"a": [{"b": []}]}, 4)
    flat = {"type": "page", "properties": {"s": "[" * 500}}
    assert decode(flat).properties["s"] == "[" * 500


# --- the visitor IP -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        ("203.0.113.50", "203.0.113.50"),
        ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
        ("::ffff:203.0.113.9", "203.0.113.9"),
        ("1.2.3.4, 10.0.0.1", None),
        ("<script>", None),
        ("1.2.3.4\r\nX-Evil: 1", None),
        ("1.2.3.4\x00", None),
        ("fe80::1%eth0", None),
        ("fe80::1%<script>", None),
        ("01.2.3.4", None),
        (" 1.2.3.4", None),
        ("1.2.3.4:8080", None),
        ("localhost", None),
        ("", None),
        ("1" * 10_000, None),
    ],
)
def test_visitor_ip_is_parsed_and_only_a_usable_one_is_sent(given: str, sent: str | None) -> None:
    assert usable_ip(given) == sent
    raw = {"type": "identify", "traits": {"email": "jane@example.com"}, "context": {"ip": given}}
    request = Pipeline(mautic(consent=[])).send(raw, "mautic-main")
    assert request.json is not None
    assert request.json.get("ipAddress") == sent
    assert request.headers.get("X-Forwarded-For") == sent


def test_header_takes_only_a_normalized_ip_whatever_the_body_holds() -> None:
    from signal_sync.destinations.mautic import single_request

    for body_ip in ("1.2.3.4\r\nX-Evil: 1", "2001:DB8::1", ["1.2.3.4"]):
        request = single_request(mautic(), {"email": "a@example.com", "ipAddress": body_ip})
        assert "X-Forwarded-For" not in request.headers


# --- the email rule -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "not-an-email",
        "x@",
        "@example.com",
        "a@b@c.com",
        "jane doe@example.com",
        "jane\uff20example.com",  # fullwidth at sign
        "ja\r\nne@example.com",
        "jane@example.com\r\nbcc: x@example.org",
        "jane@exa\x00mple.com",
        "jürgen@bücher.de",  # non-ASCII local part: Mautic refuses it
        "juergen@bücher.de",  # IDN in its U-label form: give the xn-- form
        "a@ｅｘａｍｐｌｅ.com",  # fullwidth letters in the domain
        '"jane doe"@example.com',
        "jane@[203.0.113.5]",
        "jane <jane@example.com>",
        "jane@localhost",
        "jane@example",
        "jane@example.test",  # special-use name: cannot receive mail
        "a/b@example.com",  # Mautic strips the slash: it would store ab@example.com
        "a%b@example.com",  # Mautic refuses ^ & * %
        "a..b@example.com",
        ".a@example.com",
        "a@-example.com",
        "a@exa_mple.com",
        "a@example.1c",
        "x" * 65 + "@example.com",
        "a@" + "b" * 64 + ".com",
        "a@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 63 + ".com",  # over 191 characters
    ],
)
def test_invalid_email_is_dropped_right_after_no_email(address: str) -> None:
    raw = {"type": "identify", "traits": {"email": address}, "context": GRANTED}
    assert Pipeline().run(raw) == {"mautic-main": "invalid_email", "mailgun-news": "invalid_email"}


@pytest.mark.parametrize(
    "address",
    [
        "jane.doe@example.com",
        "  Jane.Doe@Example.COM ",
        "user+tag@example.co.uk",
        "o'brien@example.ie",
        "a!#$'+-=?_`{|}~z@example.com",
        "jane@xn--bcher-kva.de",
        "a@123.example.com",
        "x" * 64 + "@example.com",
    ],
)
def test_valid_email_is_sent_as_normalized_and_keeps_its_contact_id(address: str) -> None:
    normalized = address.strip().lower()
    result = Pipeline().run({"type": "identify", "traits": {"email": address}, "context": GRANTED})
    mautic_request, mailgun_request = result["mautic-main"], result["mailgun-news"]
    assert not isinstance(mautic_request, str) and not isinstance(mailgun_request, str)
    assert mautic_request.json is not None and mautic_request.json["email"] == normalized
    assert mailgun_request.form is not None and mailgun_request.form["address"] == normalized
    resolved = ResolvedEvent(event(type="identify"), {"email": address})
    assert resolved.contact_id == hashlib.sha256(normalized.encode()).hexdigest()


def test_email_of_the_maximum_length_is_valid_and_one_more_is_not() -> None:
    longest = "x" * 64 + "@" + "d" * 60 + "." + "d" * 60 + "." + "c" * 4
    assert len(longest) == MAX_EMAIL_CHARS and email_problem(longest) is None
    assert email_problem("x" + longest) == f"longer than {MAX_EMAIL_CHARS} characters"


def test_reason_order_is_no_email_then_invalid_email_then_consent() -> None:
    mapped = frozenset({"Identified"})
    bad = ResolvedEvent(event(type="identify"), {"email": "not-an-email"})
    assert bad.email is None and bad.contact_id is None and bad.email_invalid
    assert gate(bad, mapped, ["marketing"]) == "invalid_email"  # before consent_denied
    assert gate(bad, frozenset({"page"}), ["marketing"]) == "event_not_mapped"  # after mapping
    none = ResolvedEvent(event(type="identify"), {})
    assert gate(none, mapped, ["marketing"]) == "no_email" and not none.email_invalid


def test_an_invalid_own_email_wins_over_a_remembered_valid_one() -> None:
    pipeline = Pipeline(mautic(), mailgun())
    pipeline.run({"type": "identify", "userId": "u1", "traits": {"email": "jane@example.com"}})
    later = {"type": "identify", "userId": "u1", "traits": {"email": "jane@"}, "context": GRANTED}
    assert set(pipeline.run(later).values()) == {"invalid_email"}


def test_email_problem_texts_never_hold_the_address() -> None:
    for address in ("secret.person@example.test", "secret person@example.com", "secret@" + "x" * 200):
        problem = email_problem(address)
        assert problem is not None and "secret" not in problem


def test_preview_shows_invalid_email_drops_with_why() -> None:
    line = {"type": "identify", "messageId": "m1", "traits": {"email": "jane doe@example.com"}}
    lines = list(Previewer(settings().integrations).preview(orjson.dumps(line)))
    assert [(entry["action"], entry["reason"]) for entry in lines] == [("drop", "invalid_email")] * 2
    assert all(entry["request"] is None and "jane" not in entry["error"] for entry in lines)


def test_a_page_url_urlsplit_refuses_gives_no_utm_and_the_event_still_goes() -> None:
    raw = {
        "type": "page",
        "traits": {"email": "jane@example.com"},
        "context": {"page": {"url": "http://[::1"}},
    }
    request = Pipeline(mautic(consent=[])).send(raw, "mautic-main")
    assert request.json is not None and not any(key.startswith("utm_") for key in request.json)


def test_the_email_verdict_cache_never_keeps_a_long_address() -> None:
    from signal_sync.identity import _syntax_problem

    _syntax_problem.cache_clear()
    for n in range(3):
        assert email_problem(f"{n}" + "x" * 900_000 + "@example.com") == "longer than 191 characters"
    assert _syntax_problem.cache_info().currsize == 0
    assert email_problem("jane@example.com") is None and _syntax_problem.cache_info().currsize == 1


ADDRESS_CHARACTERS = "ab09-._+@"


@hypothesis_settings(max_examples=400, deadline=None)
@given(
    address=st.one_of(
        st.from_regex(PLAIN_ADDRESS, fullmatch=True),
        st.text(ADDRESS_CHARACTERS, min_size=3, max_size=40),
        st.builds(
            "{}@{}.{}".format,
            st.text(ADDRESS_CHARACTERS[:-1], min_size=1, max_size=70),
            st.text("ab09-.", min_size=1, max_size=70),
            st.sampled_from(["com", "test", "localhost", "local", "onion", "invalid", "arpa", "c0m", "x"]),
        ),
    )
)
def test_an_address_of_the_plain_shape_is_one_every_check_takes(address: str) -> None:
    assume(len(address) <= MAX_EMAIL_CHARS)
    if _plain_address(address):
        assert _checked_problem(address) is None
    assert (email_problem(address) is None) == (_checked_problem(address) is None)


@pytest.mark.parametrize(
    "address", ["jane@mail.test", "jane@printer.local", "jane@x.onion", "jane@host.localhost", "j@a.invalid"]
)
def test_a_plain_address_at_a_special_use_domain_is_still_refused(address: str) -> None:
    assert PLAIN_ADDRESS.fullmatch(address) and email_problem(address) is not None
