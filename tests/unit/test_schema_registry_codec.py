"""Confluent framing on input: detection, the errors a framed record gets, and holding while the
registry cannot answer. Decoding against a real registry is in tests/integration."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryError
from harness import free_port
from hypothesis import given
from hypothesis import strategies as st

from signal_sync.agents.deliver import decoded_event
from signal_sync.agents.ingest import envelope_message_id, ingest_record, source_of_envelope
from signal_sync.codecs.events import (
    InvalidFramedEventError,
    decode_event,
    decode_framed,
    fallback_message_id,
)
from signal_sync.codecs.schema_registry import (
    HOLD_MAX_S,
    URL_FIELD,
    FramedDecoder,
    RegistryUnavailableError,
    client_config,
    frame_prefix,
    framed_outcomes,
    is_framed,
    schema_id_of,
)
from signal_sync.config import SchemaRegistrySettings
from signal_sync.errors import InvalidEventError
from signal_sync.outcomes import SourceRecord, encode
from signal_sync.streams.handoff import DecodedEvents
from tests.unit.runtime_fakes import fake_runtime

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)


@given(st.binary(min_size=4))
def test_any_value_with_a_leading_zero_and_room_for_an_id_is_framed(rest: bytes) -> None:
    raw = b"\x00" + rest
    assert is_framed(raw)
    assert schema_id_of(raw) == int.from_bytes(rest[:4], "big")


@given(st.binary(max_size=3))
def test_a_zero_without_room_for_a_schema_id_is_not_framed(rest: bytes) -> None:
    assert not is_framed(b"\x00" + rest)


@given(JSON_VALUES, st.sampled_from([b"", b" ", b"\n", b"\t\r\n "]))
def test_plain_json_is_never_taken_for_a_framed_record(value: Any, whitespace: bytes) -> None:
    assert not is_framed(whitespace + orjson.dumps(value))


@given(st.integers(0, 2**32 - 1), st.binary())
def test_the_frame_prefix_carries_the_schema_id(schema_id: int, payload: bytes) -> None:
    framed = frame_prefix(schema_id) + payload
    assert is_framed(framed) and schema_id_of(framed) == schema_id and framed[5:] == payload


@given(st.binary(min_size=4, max_size=2000))
def test_a_framed_record_without_a_registry_is_invalid_with_a_hint_naming_the_setting(rest: bytes) -> None:
    raw = b"\x00" + rest
    with pytest.raises(InvalidFramedEventError) as info:
        asyncio.run(decode_framed(raw, None))
    message = str(info.value)
    assert URL_FIELD in message and f"schema id {schema_id_of(raw)}" in message
    assert info.value.message_id == fallback_message_id(raw)


async def test_ingest_gives_a_framed_record_without_a_registry_one_invalid_outcome_per_integration() -> None:
    runtime, outputs = fake_runtime()
    assert runtime.framing is None  # no kafka.schema_registry.url
    raw = frame_prefix(7) + orjson.dumps({"type": "identify", "messageId": "m-framed", "traits": {}})
    await ingest_record(runtime, SourceRecord("signal.events", 0, 5, None, raw), None)
    outcomes = outputs.on(runtime.settings.kafka.deliveries_topic)
    assert sorted(o["integration"] for o in outcomes) == ["mailgun-news", "mautic-main"]
    for outcome in outcomes:
        assert (outcome["status"], outcome["reason"]) == ("invalid", "invalid_event")
        assert URL_FIELD in outcome["error"] and "schema id 7" in outcome["error"]
        assert outcome["message_id"] == fallback_message_id(raw)
    assert not runtime.forwarder.take(), "nothing goes on to the delivery stage"


def test_a_framed_record_over_the_size_limit_is_invalid_before_the_registry_is_asked() -> None:
    decoder = FramedDecoder(SchemaRegistrySettings(url="http://127.0.0.1:1"), client=StubClient([]))
    raw = frame_prefix(7) + b"x" * 100
    with pytest.raises(InvalidFramedEventError, match="over the 50-byte limit"):
        asyncio.run(decode_framed(raw, decoder, max_bytes=50))


class StubClient:
    """Answers ``get_schema`` from a script: each item an exception to raise or a Schema."""

    def __init__(self, script: list[Any]) -> None:
        self.script = script
        self.calls = 0

    async def get_schema(self, schema_id: int, *args: Any, **kwargs: Any) -> Schema:
        self.calls += 1
        assert self.script, "the registry was asked more often than the test expects"
        answer = self.script.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


class RecordingSleep:
    """Records the waits instead of waiting; a record held past ``limit`` waits fails the test."""

    def __init__(self, limit: int = 20) -> None:
        self.waits: list[float] = []
        self.limit = limit

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if len(self.waits) > self.limit:
            raise AssertionError(f"still held after {self.limit} waits")


def decoder_with(script: list[Any]) -> tuple[FramedDecoder, StubClient, RecordingSleep]:
    client, sleep = StubClient(script), RecordingSleep()
    decoder = FramedDecoder(SchemaRegistrySettings(url="http://127.0.0.1:1"), client=client, sleep=sleep)  # type: ignore[arg-type]
    return decoder, client, sleep


PROTOBUF = Schema('syntax = "proto3"; message E { string type = 1; }', "PROTOBUF")


def test_registry_trouble_holds_the_record_with_a_doubling_wait_until_it_answers() -> None:
    down = SchemaRegistryError(503, 50301, "unavailable")
    unauthorized = SchemaRegistryError(401, 40101, "unauthorized")
    decoder, client, sleep = decoder_with([down, unauthorized, ConnectionResetError("reset"), PROTOBUF])
    with pytest.raises(InvalidEventError, match="Protobuf-framed events are not read"):
        asyncio.run(decoder.json_of(frame_prefix(3) + b"\x00payload"))
    assert sleep.waits == [0.5, 1.0, 2.0] and client.calls == 4
    assert decoder.held_since is None  # it answered: nothing is held any more


def test_the_hold_wait_stops_doubling_at_its_cap() -> None:
    down = SchemaRegistryError(500, 50001, "error")
    decoder, _, sleep = decoder_with([down] * 10 + [PROTOBUF])
    with pytest.raises(InvalidEventError):
        asyncio.run(decoder.json_of(frame_prefix(3) + b"\x00"))
    assert max(sleep.waits) == HOLD_MAX_S and sleep.waits[-1] == HOLD_MAX_S


def test_an_unknown_schema_id_is_the_records_fault_and_is_remembered() -> None:
    decoder, client, sleep = decoder_with([SchemaRegistryError(404, 40403, "Schema 9 not found.")])
    for _ in range(3):
        with pytest.raises(
            InvalidEventError, match="schema id 9 is not in the Schema Registry at http://127.0.0.1:1"
        ):
            asyncio.run(decoder.json_of(frame_prefix(9) + b"{}"))
    assert client.calls == 1 and sleep.waits == []


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (SchemaRegistryError(404, None, None), "Confluent-compatible API's root"),  # a wrong path, not an id
        (SchemaRegistryError(403, 40301, "forbidden"), "basic_auth_password or bearer_token"),
        (SchemaRegistryError(429, 42901, "slow down"), "HTTP 429"),
    ],
)
def test_answers_other_than_schema_not_found_are_the_registrys_problem(error: Exception, says: str) -> None:
    decoder, _, _ = decoder_with([error])
    with pytest.raises(RegistryUnavailableError, match=says):
        asyncio.run(decoder.decode_once(frame_prefix(9) + b"{}"))


def test_a_registry_that_refuses_connections_is_unavailable_not_an_invalid_record() -> None:
    decoder = FramedDecoder(SchemaRegistrySettings(url=f"http://127.0.0.1:{free_port()}", timeout_s=2))
    with pytest.raises(RegistryUnavailableError, match="cannot be reached: ConnectError"):
        asyncio.run(decoder.decode_once(frame_prefix(1) + b"{}"))


def test_the_client_gets_the_configured_credentials_and_ca(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n", encoding="utf-8")
    basic = client_config(
        SchemaRegistrySettings(
            url="https://sr.example.com/", basic_auth_user="signal", basic_auth_password="pw", ssl_ca_file=ca
        )
    )
    assert basic["url"] == "https://sr.example.com"
    assert basic["basic.auth.user.info"] == "signal:pw" and basic["ssl.ca.location"] == str(ca)
    token = tmp_path / "token"
    token.write_text("tok-123\n", encoding="utf-8")
    bearer = client_config(SchemaRegistrySettings(url="https://sr.example.com", bearer_token_file=token))
    assert bearer["bearer.auth.credentials.source"] == "STATIC_TOKEN"
    assert bearer["bearer.auth.token"] == "tok-123" and "basic.auth.user.info" not in bearer


def test_framed_outcomes_are_the_prefix_then_the_outcomes_json() -> None:
    outcome = {"schema": "signal.delivery/v1", "status": "delivered", "latency_ms": 1.5}
    assert framed_outcomes(frame_prefix(258))(outcome) == b"\x00\x00\x00\x01\x02" + encode(outcome)


# --------------------------------------------------------------------------- the internal envelope

AVRO_BYTES = b"\x00\x00\x00\x00\x04\x10identify\xff\xfe"  # not UTF-8
EVENT_JSON = {"type": "identify", "messageId": "m-avro-1", "traits": {"email": "jane@example.com"}}


def framed_envelope(event: dict[str, Any], takers: int = 2) -> dict[str, Any]:
    return {
        "traits": {},
        "contact": "c" * 64,
        "src": ["signal.events", 2, 9, 1_700_000_000_000],
        "takers": takers,
        "raw_b64": base64.b64encode(AVRO_BYTES).decode("ascii"),
        "json": json.dumps(event),
    }


def test_a_framed_records_envelope_keeps_its_bytes_exactly() -> None:
    envelope = orjson.loads(orjson.dumps(framed_envelope(EVENT_JSON)))  # through the internal topic
    assert source_of_envelope(envelope).value == AVRO_BYTES
    assert envelope_message_id(envelope, source_of_envelope(envelope)) == "m-avro-1"


def test_a_framed_event_without_message_id_keeps_the_id_made_from_its_record() -> None:
    envelope = framed_envelope({"type": "page", "anonymousId": "a-1"})
    source = source_of_envelope(envelope)
    assert envelope_message_id(envelope, source) == fallback_message_id(AVRO_BYTES)
    event = decoded_event(_runtime(), envelope, source)  # type: ignore[arg-type]
    assert event.message_id == fallback_message_id(AVRO_BYTES)


def test_stage_two_decodes_a_framed_event_from_the_envelope_without_a_registry() -> None:
    runtime = _runtime()
    envelope = framed_envelope(EVENT_JSON, takers=2)
    source = source_of_envelope(envelope)
    first = decoded_event(runtime, envelope, source)  # type: ignore[arg-type]  # a miss: decoded here
    assert first == decode_event(orjson.dumps(EVENT_JSON))
    assert decoded_event(runtime, envelope, source) is first  # type: ignore[arg-type]  # left for the other


def _runtime() -> Any:
    from types import SimpleNamespace

    return SimpleNamespace(decoded=DecodedEvents(), framing=None)
