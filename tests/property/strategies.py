"""Hypothesis strategies for source records: arbitrary bytes, arbitrary JSON, events drawn from the
shipped JSON Schema, and events assembled from hostile parts (the categories of issue #22 and
more: CR/LF/NUL, long and huge strings, wrong types, deep nesting, IDN and fullwidth emails,
overflowing timestamps, IP lists and scope ids)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from tests.support.emails import (
    BAD_LABELS,
    BCC_INJECTION,
    MALFORMED,
    MAUTIC_REFUSED_PARTS,
    UNUSUAL_BUT_VALID,
)

EVENT_SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "schemas" / "event.schema.json"

HOSTILE_TEXT = [
    "",
    " ",
    "\r\n",
    "a\r\nX-Injected: 1",
    "\x00",
    "nul\x00byte",
    "<script>alert(1)</script>",
    "'; DROP TABLE contacts; --",
    "\u202egnp.exe",
    "\ufeffbom",
    "\u200b",
    "ｆｕｌｌｗｉｄｔｈ",
    "😀" * 20,
    "%s%n${jndi:ldap://x}",
    "../../etc/passwd",
    '\\"',
    "i" * 512,
    "i" * 513,
    "long " * 2_000,
]
HOSTILE_EMAILS = [
    *MALFORMED,
    BCC_INJECTION,
    "ja\nne@example.com",
    *BAD_LABELS,
    "jane@localhost",
    *MAUTIC_REFUSED_PARTS,
    *UNUSUAL_BUT_VALID,
    "juergen@bücher.de",
    "a@ｅｘａｍｐｌｅ.com",
    '"jane doe"@example.com',
    "jane@[203.0.113.5]",
    "Jane <jane@example.com>",
    "jane@example",
    "a@" + ("b" * 63 + ".") * 3 + "com",
    "  Jane.Doe@Example.COM  ",
    "jane@example.com.",
    "jane@example.com",
]
HOSTILE_IPS = [
    "203.0.113.50",
    "2001:db8::1",
    "2001:DB8:0:0:0:0:0:1",
    "::ffff:203.0.113.9",
    "1.2.3.4, 10.0.0.1",
    "<script>",
    "1.2.3.4\r\nX-Evil: 1",
    "1.2.3.4\x00",
    "fe80::1%eth0",
    "fe80::1%<script>\r\n",
    "01.2.3.4",
    "256.1.1.1",
    " 1.2.3.4",
    "1.2.3.4:8080",
    "[2001:db8::1]",
    "localhost",
    "",
    "1" * 5_000,
]
HOSTILE_TIMESTAMPS: list[Any] = [
    "9999-12-31T23:00:00-05:00",
    "0001-01-01T00:00:00+05:00",
    "9999-12-31T23:59:59.999999Z",
    "1000-01-01T00:00:00Z",
    "0999-12-31T23:59:59Z",
    "2026-06-06T16:32:10+02:00",
    "2026-06-06T14:32:10",
    "2026-06-06",
    "2026-06-06T14:32:10+23:59",
    "2026-06-06T14:32:10-23:59",
    "2026-06-06T14:32:10+24:00",
    "2026-13-01T00:00:00Z",
    "yesterday",
    0,
    1_780_000_000,
    1e12,
    -62_135_596_800,
    253_402_300_800,
    9e18,
    True,
]
MAPPED_NAMES = ["Signed Up", "Lead Captured", "Order Completed", "Product Viewed"]

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
text = st.text(max_size=40) | st.sampled_from(HOSTILE_TEXT)
wrong_type = st.sampled_from([None, 0, -1, 1.5, True, [], {}, ["x"], {"x": 1}])


@st.composite
def idn_emails(draw: st.DrawFn) -> str:
    """A plausible address with a Unicode local part or domain, in either letter case."""
    local = draw(st.sampled_from(["jane", "jürgen", "δοκιμή", "用户", "o'brien"]))
    domain = draw(st.sampled_from(["bücher.de", "例え.jp", "xn--bcher-kva.de", "пример.рф", "example.com"]))
    address = f"{local}@{domain}"
    return address.upper() if draw(st.booleans()) else address


@st.composite
def padded(draw: st.DrawFn, inner: st.SearchStrategy[str]) -> str:
    """A string with surrounding whitespace and case changes, as producers send emails."""
    value = draw(inner)
    value = value.upper() if draw(st.booleans()) else value
    return draw(st.sampled_from(["", " ", "\t", "\n"])) + value + draw(st.sampled_from(["", " ", "\r\n"]))


emails = (
    st.emails()
    | padded(st.emails())
    | st.sampled_from(HOSTILE_EMAILS)
    | idn_emails()
    | st.text(max_size=30)
    | wrong_type
)
ips = (
    st.ip_addresses(v=4).map(str)
    | st.ip_addresses(v=6).map(str)
    | st.sampled_from(HOSTILE_IPS)
    | st.text(max_size=30)
    | wrong_type
)
timestamps = (
    st.datetimes(timezones=st.timezones()).map(lambda value: value.isoformat())
    | st.datetimes().map(lambda value: value.isoformat())
    | st.sampled_from(HOSTILE_TIMESTAMPS)
    | text
)
ids = st.sampled_from(["u1", "u2", "anon-1", "anon-2"]) | text | wrong_type
names = st.sampled_from(MAPPED_NAMES) | text | wrong_type
consent_values = st.sampled_from([True, True, True, False]) | wrong_type
urls = (
    st.sampled_from(
        [
            "https://example.com/?utm_source=newsletter&utm_medium=email",
            "http://[::1",
            "https://example.com/\r\n?utm_source=%00",
            "javascript:alert(1)",
        ]
    )
    | text
)

traits = st.fixed_dictionaries(
    {},
    optional={
        "email": emails,
        "firstName": text,
        "first_name": text | wrong_type,
        "last_name": text,
        "name": text | wrong_type,
        "phone": text,
        "company": text,
        "plan": text | wrong_type,
        "city": text,
        "address": st.fixed_dictionaries({}, optional={"city": text, "country": text | wrong_type})
        | wrong_type,
        "extra": json_values,
    },
)
contexts = st.fixed_dictionaries(
    {},
    optional={
        "ip": ips,
        "page": st.fixed_dictionaries({}, optional={"url": urls | wrong_type}) | wrong_type,
        "campaign": st.fixed_dictionaries({}, optional={"source": text, "medium": text, "name": text}),
        "consent": st.fixed_dictionaries({"canonical": st.fixed_dictionaries({"marketing": consent_values})})
        | wrong_type,
        "traits": traits | wrong_type,
    },
)
event_dicts = st.fixed_dictionaries(
    {"type": st.sampled_from(["identify", "track", "page"]) | st.sampled_from(["screen", "Track", 1])},
    optional={
        "event": names,
        "messageId": ids,
        "message_id": ids,
        "anonymousId": ids,
        "userId": ids,
        "timestamp": timestamps | wrong_type,
        "traits": traits | wrong_type,
        "properties": st.dictionaries(
            st.sampled_from(["method", "order_id", "revenue", "url", "x"]), json_values
        )
        | wrong_type,
        "context": contexts | wrong_type,
    },
)

valid_texts = st.text(max_size=40) | st.sampled_from(HOSTILE_TEXT)
"""Values of the right type (a string) whose content may be anything."""
string_emails = (
    st.emails() | padded(st.emails()) | st.sampled_from(HOSTILE_EMAILS) | idn_emails() | st.text(max_size=30)
)
sendable_events = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["identify", "page", "track"]),
        "event": st.sampled_from(MAPPED_NAMES),
        "traits": st.fixed_dictionaries(
            {"email": string_emails},
            optional={
                "firstName": valid_texts,
                "last_name": valid_texts,
                "name": valid_texts,
                "phone": valid_texts,
                "company": valid_texts,
                "plan": valid_texts,
                "city": valid_texts,
                "address": st.fixed_dictionaries({}, optional={"city": valid_texts, "country": valid_texts}),
                "extra": json_values,
            },
        ),
        "context": st.fixed_dictionaries(
            {"consent": st.just({"canonical": {"marketing": True}})},
            optional={
                "ip": st.ip_addresses().map(str) | st.sampled_from(HOSTILE_IPS) | st.text(max_size=30),
                "page": st.fixed_dictionaries({"url": urls}),
                "campaign": st.fixed_dictionaries(
                    {}, optional={"source": valid_texts, "medium": valid_texts}
                ),
            },
        ),
    },
    optional={
        "messageId": st.sampled_from(["m1", "m2"]) | st.text(max_size=20),
        "anonymousId": st.sampled_from(["anon-1", "anon-2"]) | st.text(max_size=20),
        "userId": st.sampled_from(["u1", "u2"]) | st.text(max_size=20),
        "timestamp": st.datetimes(timezones=st.timezones()).map(lambda value: value.isoformat())
        | st.sampled_from([t for t in HOSTILE_TIMESTAMPS if isinstance(t, str)]),
        "properties": st.fixed_dictionaries(
            {},
            optional={
                "method": valid_texts,
                "order_id": valid_texts | st.integers(),
                "revenue": st.floats(allow_nan=False, allow_infinity=False) | valid_texts,
                "url": urls,
                "x": json_values,
            },
        ),
    },
)
"""Events of the right shape that a destination takes (a mapped name, an email, consent), with
content drawn from anything: these reach the request builders and the emulators."""


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"n": value}
    return value


deeply_nested_events = st.builds(
    lambda depth, where: {"type": "identify", where: {"deep": nested(depth)}},
    st.integers(min_value=55, max_value=400),
    st.sampled_from(["traits", "properties", "context"]),
)


def encode(value: Any) -> bytes:
    """JSON bytes the way some producer writes them: orjson, or the standard library (which also
    writes integers past 64 bits and nesting orjson refuses)."""
    try:
        return orjson.dumps(value)
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(value).encode("utf-8")


def schema_events() -> st.SearchStrategy[Any]:
    """Events drawn from the shipped JSON Schema of ``signal.events``."""
    return from_schema(json.loads(EVENT_SCHEMA.read_text(encoding="utf-8")))


raw_records = st.one_of(
    sendable_events.map(encode),
    sendable_events.map(encode),
    sendable_events.map(encode),
    event_dicts.map(encode),
    schema_events().map(encode),
    deeply_nested_events.map(encode),
    json_values.map(encode),
    st.binary(max_size=300),
    st.none(),  # a tombstone
    event_dicts.map(encode).flatmap(lambda raw: st.integers(0, len(raw)).map(lambda cut: raw[:cut])),
)
record_bursts = st.lists(raw_records, min_size=1, max_size=4)
"""A few records handled in order with shared state, as one contact's burst would be."""
