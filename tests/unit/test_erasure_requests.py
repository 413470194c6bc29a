"""Erasure requests: reading them (any bytes give a request or an ``InvalidRequestError`` whose
text never holds the address), resolving the person's email through the identities, the keys
forgotten, the record key, ``signal-sync erase --dry-run``, the co-partitioning check and the
debugger forgetting a person's rows."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from signal_sync.cli.main import app
from signal_sync.config import KafkaSettings
from signal_sync.erasure import (
    ErasureRequest,
    InvalidRequestError,
    keys_to_forget,
    parse_request,
    request_id_for,
    resolve_email,
)
from signal_sync.errors import ConfigError
from signal_sync.observability.recent import RecentOutcomes
from signal_sync.preview import preview_lines
from signal_sync.streams.topics import check_copartitioned, created_topic_config, user_topics
from tests.unit.factories import settings

EMAIL = "jane@example.com"


def request(**fields: Any) -> bytes:
    return orjson.dumps({"request_id": "r-1", **fields})


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"email": " Jane@Example.COM "}, ErasureRequest("r-1", EMAIL)),
        ({"user_id": "u1"}, ErasureRequest("r-1", None, "u1")),
        ({"anonymousId": "a1", "userId": "u1"}, ErasureRequest("r-1", None, "u1", "a1")),
    ],
)
def test_a_request_names_a_person_by_email_or_ids(fields: dict[str, Any], expected: ErasureRequest) -> None:
    assert parse_request(request(**fields)) == expected


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (b"not json", "not a JSON document"),
        (b"[1]", "not a JSON object"),
        (None, "tombstone"),
        (request(), "names nobody"),
        (orjson.dumps({"email": EMAIL}), "request_id"),
        (request(email=EMAIL, mail="x"), "mail"),
        (request(email="jane doe@example.com"), "email:"),
        (request(email="   "), "email: is blank"),
        (request(user_id=7), "user_id"),
        (request(user_id="u\n1"), "user_id"),
    ],
)
def test_an_unusable_request_says_why_without_the_address(value: bytes | None, says: str) -> None:
    with pytest.raises(InvalidRequestError) as raised:
        parse_request(value)
    assert says in str(raised.value)
    assert "jane" not in str(raised.value).lower()


def test_an_unreadable_request_still_has_a_stable_id() -> None:
    with pytest.raises(InvalidRequestError) as raised:
        parse_request(b"{oops")
    expected = "sha256:" + hashlib.sha256(b"{oops").hexdigest()
    assert request_id_for(b"{oops", raised.value) == expected
    with pytest.raises(InvalidRequestError) as named:
        parse_request(request())
    assert request_id_for(request(), named.value) == "r-1"


@given(
    st.binary(max_size=200) | st.dictionaries(st.text(max_size=12), st.text(max_size=20)).map(orjson.dumps)
)
def test_any_record_is_a_request_or_an_invalid_one(value: bytes) -> None:
    try:
        parsed = parse_request(value)
    except InvalidRequestError:
        return
    assert parsed.email or parsed.user_id or parsed.anonymous_id
    assert parse_request(orjson.dumps(parsed.to_json())) == parsed


IDENTITIES = {
    "u:u1": {"email": "JANE@example.com", "first_name": "Jane"},
    "a:a1": {"email": "old@example.com"},
    "a:a2": {"email": EMAIL},
    "a:a3": {"email": "xjane@example.com"},
    "a:a4": {"first_name": "Jane"},
}


def stored() -> list[tuple[str, bytes]]:
    return [(key, orjson.dumps(value)) for key, value in IDENTITIES.items()]


def test_the_email_is_the_requests_else_the_one_learned_for_its_ids_user_first() -> None:
    assert resolve_email(ErasureRequest("r", "sam@example.org", "u1"), IDENTITIES) == "sam@example.org"
    assert resolve_email(ErasureRequest("r", None, "u1", "a1"), IDENTITIES) == EMAIL
    assert resolve_email(ErasureRequest("r", None, None, "a1"), IDENTITIES) == "old@example.com"
    assert resolve_email(ErasureRequest("r", None, None, "a4"), IDENTITIES) is None
    assert resolve_email(ErasureRequest("r", None, "nobody"), IDENTITIES) is None


def test_every_key_that_learned_the_email_is_forgotten_with_the_requests_own() -> None:
    keys = keys_to_forget(ErasureRequest("r", None, "u1", "a4"), EMAIL, stored())
    assert keys == ["u:u1", "a:a4", "a:a2"], "not a:a3 (another address containing it), not a:a1"
    assert keys_to_forget(ErasureRequest("r", None, "u9"), None, stored()) == ["u:u9"]


def test_a_request_is_keyed_like_its_persons_events_never_by_the_address() -> None:
    assert ErasureRequest("r", EMAIL, "u1", "a1").record_key() == b"a1"
    assert ErasureRequest("r", EMAIL, "u1").record_key() == b"u1"
    assert ErasureRequest("r", EMAIL).record_key() == hashlib.sha256(EMAIL.encode()).hexdigest().encode()


def config_file(tmp_path: Path, **kafka: Any) -> Path:
    path = tmp_path / "config.yaml"
    raw = {
        "kafka": {"bootstrap_servers": "127.0.0.1:1", **kafka},
        "integrations": [
            {
                "id": "m",
                "type": "mautic",
                "base_url": "http://127.0.0.1:8081",
                "api_user": "u",
                "api_password": "p",
            }
        ],
    }
    path.write_text(yaml.safe_dump(raw))
    return path


def test_erase_dry_run_prints_the_request_and_produces_nothing(tmp_path: Path) -> None:
    config = config_file(tmp_path, erasures_topic="signal.erasures")  # no broker listens on port 1
    args = ["erase", "-c", str(config), "--user-id", "u1", "--request-id", "r-9", "--dry-run"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    line = orjson.loads(result.output)
    assert line == {"topic": "signal.erasures", "key": "u1", "value": {"request_id": "r-9", "user_id": "u1"}}


def test_erase_refuses_without_an_erasures_topic_or_a_person(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["erase", "-c", str(config_file(tmp_path)), "--email", EMAIL])
    assert isinstance(result.exception, ConfigError) and "kafka.erasures_topic" in str(result.exception)
    config = config_file(tmp_path, erasures_topic="signal.erasures")
    result = CliRunner().invoke(app, ["erase", "-c", str(config), "--dry-run"])
    assert result.exception is not None and "names nobody" in str(result.exception)


def test_the_erasures_topic_must_be_copartitioned_with_the_source() -> None:
    kafka = KafkaSettings(erasures_topic="signal.erasures")
    check_copartitioned(kafka, {"signal.events": 6, "signal.erasures": 6})
    with pytest.raises(ConfigError, match="kafka.erasures_topic.*3 partitions.*6"):
        check_copartitioned(kafka, {"signal.events": 6, "signal.erasures": 3})
    assert user_topics(kafka)[-1] == "signal.erasures"
    assert created_topic_config(kafka, "signal.erasures")["retention.ms"] == str(kafka.retention_ms)
    assert created_topic_config(kafka, "signal.events") == {}, (
        "the source topic's retention is the operator's"
    )


def test_the_debugger_forgets_an_erased_persons_rows() -> None:
    recent = RecentOutcomes(10)
    for contact, integration in [("aaa", "m"), ("bbb", "m"), ("aaa", "g")]:
        recent.record({"integration": integration, "contact_id": contact, "status": "delivered"}, "req")
    assert recent.forget("aaa") == 2
    assert [entry.outcome["contact_id"] for entry in recent.query()] == ["bbb"]


def test_preview_shows_an_erasure_by_id_resolved_through_the_events_before_it() -> None:
    identify = orjson.dumps(
        {
            "type": "identify",
            "messageId": "m1",
            "userId": "u1",
            "traits": {"email": EMAIL},
            "context": {"consent": {"canonical": {"marketing": True}}},
        }
    )
    lines = list(preview_lines(settings(), [identify], [request(user_id="u1"), request(user_id="u1")]))
    first, second = lines[2:4], lines[4:6]
    assert [(line["operation"], line["action"]) for line in first] == [("erase", "send"), ("erase", "send")]
    assert [call["method"] for call in first[0]["calls"]] == ["DELETE", "GET"]
    assert [call["method"] for call in first[1]["calls"]] == ["DELETE"]
    assert [line["reason"] for line in second] == ["unknown_person", "unknown_person"], "then forgotten"
