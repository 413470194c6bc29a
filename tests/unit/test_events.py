"""Decoding raw ``signal.events`` values: valid events, and a specific error for each bad one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from pydantic import ValidationError

from signal_sync.codecs.events import MAX_EVENT_BYTES, decode_event, fallback_message_id, peek_message_id
from signal_sync.errors import InvalidEventError


def dumps(value: object) -> bytes:
    return orjson.dumps(value)


def test_camel_and_snake_case_ids_decode_to_the_same_event() -> None:
    camel = decode_event(dumps({"type": "page", "messageId": "m1", "anonymousId": "a1", "userId": "u1"}))
    snake = decode_event(dumps({"type": "page", "message_id": "m1", "anonymous_id": "a1", "user_id": "u1"}))
    assert (camel.message_id, camel.anonymous_id, camel.user_id) == ("m1", "a1", "u1")
    assert camel == snake


def test_full_event_fields() -> None:
    event = decode_event(
        dumps(
            {
                "type": "track",
                "event": "Signed Up",
                "messageId": "m1",
                "timestamp": "2026-06-06T16:32:10+02:00",
                "traits": {"email": "a@b.co"},
                "properties": {"method": "email"},
                "context": {
                    "ip": "203.0.113.50",
                    "page": {"url": "https://example.com/?utm_source=x"},
                    "campaign": {"source": "newsletter", "medium": "email", "name": "spring"},
                    "consent": {"canonical": {"marketing": True, "analytics": False}},
                    "traits": {"first_name": "Jane"},
                },
                "somethingNew": {"ignored": True},
            }
        )
    )
    assert event.type == "track" and event.event == "Signed Up"
    assert event.timestamp == datetime(2026, 6, 6, 14, 32, 10, tzinfo=UTC)
    assert event.timestamp.utcoffset() == timedelta(0)  # held in UTC
    assert event.properties == {"method": "email"}
    assert event.context.ip == "203.0.113.50"
    assert event.context.page.url == "https://example.com/?utm_source=x"
    assert (event.context.campaign.source, event.context.campaign.name) == ("newsletter", "spring")
    assert event.context.consent.canonical == {"marketing": True, "analytics": False}
    assert event.context.traits == {"first_name": "Jane"}


def test_missing_message_id_gets_a_deterministic_fallback() -> None:
    raw = dumps({"type": "page", "anonymousId": "a1"})
    first, second = decode_event(raw), decode_event(raw)
    assert first.message_id == second.message_id == fallback_message_id(raw)
    assert first.message_id.startswith("sha256:")
    other = decode_event(dumps({"type": "page", "anonymousId": "a2"}))
    assert other.message_id != first.message_id


def test_given_message_id_is_kept() -> None:
    assert decode_event(dumps({"type": "identify", "messageId": "abc"})).message_id == "abc"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (None, "tombstone"),
        (b"not json at all", "not valid UTF-8 JSON"),
        (b"", "not valid UTF-8 JSON"),
        (b'{"type": "page"', "not valid UTF-8 JSON"),
        (b'{"type": "page", "traits": {"email": "\xff\xfe"}}', "not valid UTF-8"),
        (b"[1, 2]", "must be a JSON object, got list"),
        (b'"page"', "must be a JSON object, got str"),
        (b"42", "must be a JSON object, got int"),
        (b"null", "must be a JSON object"),
        (dumps({"event": "Signed Up"}), "type: "),
        (dumps({"type": "alias"}), "type: "),
        (dumps({"type": "Track", "event": "x"}), "type: "),
        (dumps({"type": "identify", "traits": ["email", "a@b.co"]}), "traits: "),
        (dumps({"type": "track", "event": "x", "properties": "method=email"}), "properties: "),
        (dumps({"type": "page", "context": []}), "context: "),
        (dumps({"type": "page", "context": {"ip": 2130706433}}), "context.ip: "),
        (dumps({"type": "page", "context": {"page": {"url": 5}}}), "context.page.url: "),
        (dumps({"type": "page", "context": {"campaign": {"source": ["x"]}}}), "context.campaign.source: "),
        (
            dumps({"type": "page", "context": {"consent": {"canonical": {"marketing": "yes"}}}}),
            "context.consent.canonical.marketing: ",
        ),
        (
            dumps({"type": "page", "context": {"consent": {"canonical": {"marketing": 1}}}}),
            "context.consent.canonical.marketing: ",
        ),
        (dumps({"type": "page", "messageId": 12345}), "messageId: "),
        (dumps({"type": "page", "userId": {"id": 1}}), "userId: "),
        (dumps({"type": "page", "timestamp": "yesterday"}), "timestamp: "),
        (dumps({"type": "track", "event": 7}), "event: "),
        (dumps({"type": "track"}), "event: a track event needs an event name"),
        (dumps({"type": "track", "event": ""}), "event: a track event needs an event name"),
    ],
)
def test_invalid_input_raises_a_specific_error(raw: bytes | None, message: str) -> None:
    with pytest.raises(InvalidEventError) as info:
        decode_event(raw)
    assert message in str(info.value)


def test_oversize_record_is_rejected_before_parsing() -> None:
    valid_but_big = b'{"type":"page","properties":{"pad":"' + b"a" * MAX_EVENT_BYTES + b'"}}'
    with pytest.raises(InvalidEventError, match=rf"over the {MAX_EVENT_BYTES}-byte limit"):
        decode_event(valid_but_big)


def test_size_limit_is_exclusive_and_configurable() -> None:
    raw = dumps({"type": "page"})
    assert decode_event(raw, max_bytes=len(raw)).type == "page"
    with pytest.raises(InvalidEventError, match=rf"record is {len(raw)} bytes, over the {len(raw) - 1}-byte"):
        decode_event(raw, max_bytes=len(raw) - 1)


@pytest.mark.parametrize("event_type", ["identify", "page"])
def test_only_track_needs_an_event_name(event_type: str) -> None:
    assert decode_event(dumps({"type": event_type})).event is None


def test_peek_message_id_of_bad_records() -> None:
    assert peek_message_id(dumps({"type": "nope", "messageId": "m-7"})) == "m-7"
    assert peek_message_id(dumps({"type": "nope", "message_id": "m-8"})) == "m-8"
    assert peek_message_id(b"garbage") == fallback_message_id(b"garbage")
    assert peek_message_id(dumps({"type": "x", "messageId": 5})) == fallback_message_id(
        dumps({"type": "x", "messageId": 5})
    )
    assert peek_message_id(None) == fallback_message_id(b"")
    assert peek_message_id(b"garbage") != peek_message_id(b"other garbage")


def test_absent_nested_parts_share_one_frozen_empty_instance() -> None:
    """A fresh empty Context/Page/Campaign/Consent per event was most of the validation time."""
    first = decode_event(b'{"type": "page", "messageId": "m1"}')
    second = decode_event(b'{"type": "page", "messageId": "m2", "context": {"ip": "203.0.113.9"}}')
    assert first.context.page is second.context.page and first.context.campaign is second.context.campaign
    assert first.context.consent.canonical == {} and second.context.ip == "203.0.113.9"
    with pytest.raises(ValidationError):  # frozen: sharing cannot leak a change from one event to another
        first.context.page.url = "https://example.com/"  # type: ignore[misc]
