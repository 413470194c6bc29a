"""Schema Registry framing through the real worker, the real broker and the real registry (Apicurio
Registry's Confluent API, ``schema_registry`` fixture).

Input: records framed by confluent-kafka's own serializers (JSON Schema, Avro) and a plain JSON record
share the source topic and reach the emulators; framed records the worker cannot read get
``invalid_event`` with a specific error; without a registry configured the error names the setting;
while the registry cannot be reached the records wait and go on once it answers. Output: with
``outcomes.format: json_schema_registry`` a fresh consumer reads the outcomes with confluent-kafka's
JSON Schema deserializer, and they are byte for byte what its serializer writes.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import (
    Schema,
    topic_record_subject_name_strategy,
)
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from harness import WorkerProcess, free_port, produce
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc.jwk import RSAKey

from signal_sync.codecs.events import decode_event
from signal_sync.codecs.schema_registry import FramedDecoder, RegistryUnavailableError, frame_prefix
from signal_sync.config import SchemaRegistrySettings
from signal_sync.errors import InvalidEventError
from signal_sync.streams.records import Outcome
from tests.integration.test_schema_registry import _protobuf_event_class
from tests.support.outcomes import consume_outcomes
from tests.support.raw_records import read_values
from tests.support.registry_auth import REGISTRY_PASSWORD, REGISTRY_USER, bearer_token, secured_registry
from tests.support.registry_clients import TOPIC_SUBJECTS, registry_client
from tests.support.tcp_relay import TcpRelay

pytestmark = pytest.mark.integration

JSON_SCHEMA = json.dumps(
    {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "SignalEvent",
        "type": "object",
        "properties": {
            "type": {"type": "string", "enum": ["identify", "track", "page"]},
            "messageId": {"type": "string"},
            "anonymousId": {"type": "string"},
            "timestamp": {"type": "string"},
            "traits": {"type": "object"},
            "context": {"type": "object"},
        },
        "required": ["type", "messageId"],
    }
)
AVRO_SCHEMA = json.dumps(
    {
        "type": "record",
        "name": "SignalEvent",
        "namespace": "io.signalsync.test",
        "fields": [
            {"name": "type", "type": "string"},
            {"name": "messageId", "type": "string"},
            {"name": "anonymousId", "type": ["null", "string"], "default": None},
            {"name": "timestamp", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {
                "name": "traits",
                "type": {
                    "type": "record",
                    "name": "Traits",
                    "fields": [
                        {"name": "email", "type": "string"},
                        {"name": "firstName", "type": "string"},
                        {"name": "avatar", "type": ["null", "bytes"], "default": None},
                    ],
                },
            },
            {
                "name": "context",
                "type": {
                    "type": "record",
                    "name": "Context",
                    "fields": [
                        {
                            "name": "consent",
                            "type": {
                                "type": "record",
                                "name": "Consent",
                                "fields": [
                                    {"name": "canonical", "type": {"type": "map", "values": "boolean"}}
                                ],
                            },
                        }
                    ],
                },
            },
        ],
    }
)
# A shop that mixes value schemas on one topic names subjects per record (TopicRecordNameStrategy).
SERIALIZER_CONF = {"subject.name.strategy": topic_record_subject_name_strategy}
CONSENTED = {"consent": {"canonical": {"marketing": True}}}


def identify(name: str, run: str) -> dict[str, Any]:
    return {
        "type": "identify",
        "messageId": f"m-{name}-{run}",
        "anonymousId": f"anon-{name}-{run}",
        "timestamp": "2026-06-06T12:00:00+00:00",
        "traits": {"email": f"{name}.{run}@example.com", "firstName": name.capitalize()},
        "context": CONSENTED,
    }


def serializers(registry_url: str, topic: str) -> tuple[Any, Any]:
    """Frame like a producer of the shop would: confluent-kafka's serializers, schemas auto-registered."""
    client = registry_client(registry_url)
    ctx = SerializationContext(topic, MessageField.VALUE)
    as_json = JSONSerializer(JSON_SCHEMA, client, conf=SERIALIZER_CONF)
    as_avro = AvroSerializer(client, AVRO_SCHEMA, conf=SERIALIZER_CONF)
    return (lambda value: as_json(value, ctx)), (lambda value: as_avro(value, ctx))


def as_protobuf(registry_url: str, topic: str, message_id: str) -> bytes:
    """A Protobuf-framed event, as confluent-kafka's serializer writes it (subject ``<topic>-value``:
    its record name is the Avro schema's, and Apicurio keeps one schema type per subject)."""
    event_class = _protobuf_event_class()
    serialize = ProtobufSerializer(
        event_class, registry_client(registry_url), conf={"use.deprecated.format": False, **TOPIC_SUBJECTS}
    )
    return serialize(
        event_class(type="identify", message_id=message_id), SerializationContext(topic, MessageField.VALUE)
    )


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as reply:  # loopback emulator
        return json.loads(reply.read())


@pytest.fixture
def start_worker(
    tmp_path: Path, write_worker_config: Callable[..., Path]
) -> Iterator[Callable[..., WorkerProcess]]:
    """``start_worker(**overrides)``: a worker on this test's topics and emulators, its config's sections
    updated by ``overrides``; stopped (and its log shown) after the test."""
    started: list[WorkerProcess] = []

    def start(**overrides: Any) -> WorkerProcess:
        started.append(WorkerProcess(write_worker_config(**overrides), tmp_path / "worker.log").start())
        return started[-1]

    yield start
    for worker in started:
        code = worker.stop()
        print(f"worker exit code {code}; log tail:\n{worker.log_tail(40)}")


def registry_overrides(url: str) -> dict[str, Any]:
    return {"kafka": {"schema_registry": {"url": url}}}  # merged into write_config's kafka section


def test_framed_json_schema_and_avro_events_share_the_topic_with_plain_json(
    kafka_bootstrap, pipeline_topics, sandboxes, schema_registry, start_worker
):
    run = uuid.uuid4().hex[:6]
    source = pipeline_topics["source"]
    as_json, as_avro = serializers(schema_registry.url, source)
    json_event, plain_event = identify("jason", run), identify("plain", run)
    avro_event = {
        **identify("avro", run),
        "timestamp": datetime(2026, 6, 6, 12, 30, tzinfo=UTC),
        "traits": {"email": f"avro.{run}@example.com", "firstName": "Avro", "avatar": b"\x00\xff\x10"},
    }
    json_framed, avro_framed = as_json(json_event), as_avro(avro_event)
    assert json_framed[:1] == avro_framed[:1] == b"\x00"
    violating = as_json({**identify("bad", run), "messageId": f"m-violating-{run}"})
    violating = violating[:5] + orjson.dumps(
        {**identify("bad", run), "messageId": 42}
    )  # same id, bad payload
    records = [
        (b"k-json", json_framed),
        (b"k-avro", avro_framed),
        (b"k-plain", orjson.dumps(plain_event)),
        (b"k-unknown", frame_prefix(2_000_000_000) + orjson.dumps(identify("unknown", run))),
        (b"k-violating", violating),
        (b"k-truncated", avro_framed[:12]),
        (b"k-protobuf", as_protobuf(schema_registry.url, source, f"m-protobuf-{run}")),
    ]
    worker = start_worker(**registry_overrides(schema_registry.url))
    produce(kafka_bootstrap, source, records)

    outcomes = consume_outcomes(kafka_bootstrap, pipeline_topics["deliveries"], 14, worker, timeout=120)
    by_id = {(o["message_id"], o["integration"]): o for o in outcomes}
    assert len(by_id) == 14, Counter((o["message_id"], o["integration"]) for o in outcomes)
    for name in ("jason", "avro", "plain"):
        for integration in ("mautic-main", "mailgun-news"):
            outcome = by_id[(f"m-{name}-{run}", integration)]
            assert outcome["status"] == "delivered", outcome
    invalid = [o for o in outcomes if o["status"] == "invalid"]
    assert {o["reason"] for o in invalid} == {"invalid_event"} and len(invalid) == 8
    errors = {o["error"] for o in invalid}
    assert "schema id 2000000000 is not in the Schema Registry at" in " ".join(errors)
    violation = next(e for e in errors if "does not match its JSON Schema" in e)
    assert violation.startswith("$.messageId: does not match its JSON Schema (id ") and "'type'" in violation
    assert any("does not decode with its AVRO schema" in e for e in errors)
    assert any("is a Protobuf schema: Protobuf-framed events are not read" in e for e in errors), errors

    contacts = {
        c["fields"]["all"]["email"]: c["fields"]["all"]
        for c in get_json(f"{sandboxes[0].url}/_sandbox/contacts")["contacts"]
    }
    assert contacts[f"avro.{run}@example.com"]["firstname"] == "Avro"
    assert contacts[f"jason.{run}@example.com"]["firstname"] == "Jason"
    assert contacts[f"plain.{run}@example.com"]["firstname"] == "Plain"


def test_a_framed_record_without_a_registry_is_invalid_with_the_setting_named(
    kafka_bootstrap, pipeline_topics, start_worker
):
    run = uuid.uuid4().hex[:6]
    framed = frame_prefix(7) + orjson.dumps(identify("framed", run))
    worker = start_worker()
    produce(
        kafka_bootstrap,
        pipeline_topics["source"],
        [(b"k", framed), (b"k", orjson.dumps(identify("plain", run)))],
    )

    outcomes = consume_outcomes(kafka_bootstrap, pipeline_topics["deliveries"], 4, worker, timeout=120)
    statuses = {(o["integration"], o["status"], o["reason"]) for o in outcomes}
    assert statuses == {
        ("mautic-main", "invalid", "invalid_event"),
        ("mailgun-news", "invalid", "invalid_event"),
        ("mautic-main", "delivered", None),
        ("mailgun-news", "delivered", None),
    }
    for outcome in outcomes:
        if outcome["status"] == "invalid":
            assert "kafka.schema_registry.url" in outcome["error"] and "schema id 7" in outcome["error"]


def test_records_wait_while_the_registry_is_unreachable_and_go_on_when_it_answers(
    kafka_bootstrap, pipeline_topics, schema_registry, start_worker
):
    run = uuid.uuid4().hex[:6]
    as_json, _ = serializers(schema_registry.url, pipeline_topics["source"])
    registry = urlsplit(schema_registry.url)
    relay = TcpRelay(free_port(), (registry.hostname or "127.0.0.1", registry.port or 80))
    relayed_url = f"http://127.0.0.1:{relay.port}{registry.path}"
    worker = start_worker(**registry_overrides(relayed_url))
    try:
        # One key: the plain record is behind the framed one in the same partition.
        produce(
            kafka_bootstrap,
            pipeline_topics["source"],
            [(b"k", as_json(identify("held", run))), (b"k", orjson.dumps(identify("behind", run)))],
        )
        wait_for_log(worker, "the source record waits", timeout=90)
        assert written(kafka_bootstrap, pipeline_topics["deliveries"]) == 0, "nothing goes on while held"
        assert written(kafka_bootstrap, pipeline_topics["dlq"]) == 0, "a held record is not dead-lettered"

        relay.open()
        outcomes = consume_outcomes(kafka_bootstrap, pipeline_topics["deliveries"], 4, worker, timeout=120)
        assert {(o["message_id"], o["status"]) for o in outcomes} == {
            (f"m-held-{run}", "delivered"),
            (f"m-behind-{run}", "delivered"),
        }
        wait_for_log(worker, "the Schema Registry answers again", timeout=30)
    finally:
        relay.close()


def test_outcomes_framed_with_the_registered_outcome_schema(
    kafka_bootstrap, pipeline_topics, schema_registry, start_worker
):
    run = uuid.uuid4().hex[:6]
    worker = start_worker(
        outcomes={"format": "json_schema_registry"}, **registry_overrides(schema_registry.url)
    )
    produce(
        kafka_bootstrap,
        pipeline_topics["source"],
        [(b"a", orjson.dumps(identify("out", run))), (b"b", b"{not json")],
    )

    deliveries = pipeline_topics["deliveries"]
    values = read_values(kafka_bootstrap, deliveries, 4, timeout=120, check=worker.assert_alive)
    assert len(values) == 4, f"{len(values)} records on {deliveries}, not 4\n{worker.log_tail()}"
    fresh = registry_client(schema_registry.url)
    registered = fresh.get_latest_version(f"{deliveries}-value")
    assert registered.schema.schema_type == "JSON"
    deserialize = JSONDeserializer(None, schema_registry_client=fresh, conf=TOPIC_SUBJECTS)
    ctx = SerializationContext(deliveries, MessageField.VALUE)
    conf = {"auto.register.schemas": False, "use.latest.version": True, **TOPIC_SUBJECTS}
    serialize = JSONSerializer(registered.schema, fresh, conf=conf)
    outcomes = []
    for value in values:
        assert value is not None and value[:5] == frame_prefix(registered.schema_id)
        outcome = deserialize(value, ctx)
        Outcome.model_validate(outcome)
        assert serialize(outcome, ctx) == value, "the serializer writes exactly these bytes"
        outcomes.append(outcome)
    assert Counter(o["status"] for o in outcomes) == {"delivered": 2, "invalid": 2}


def test_a_registry_that_refuses_the_outcome_schema_fails_the_start_naming_the_setting(
    pipeline_topics, schema_registry, start_worker
):
    subject = f"{pipeline_topics['deliveries']}-value"
    client = registry_client(schema_registry.url)
    incompatible = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {"x": {"type": "string"}},
        "required": ["x"],
        "additionalProperties": False,
    }
    client.register_schema(subject, Schema(json.dumps(incompatible), "JSON"))
    client.set_compatibility(subject, "FULL")
    worker = start_worker(
        outcomes={"format": "json_schema_registry"}, **registry_overrides(schema_registry.url)
    )
    assert worker.proc is not None
    code = worker.proc.wait(timeout=60)
    log = worker.log_tail(20)
    assert code != 0, log
    assert "ConfigError: outcomes.format: json_schema_registry, but the Schema Registry at" in log
    assert f"refused the outcome schema under subject {subject!r}: HTTP 409" in log
    assert "Traceback" not in log


@pytest.fixture(scope="module")
def registered_ids(schema_registry) -> dict[str, int]:
    client = registry_client(schema_registry.url)
    subject = f"sr-fuzz-{uuid.uuid4().hex[:8]}"
    return {
        "json": client.register_schema(f"{subject}-json", Schema(JSON_SCHEMA, "JSON")),
        "avro": client.register_schema(f"{subject}-avro", Schema(AVRO_SCHEMA, "AVRO")),
    }


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["json", "avro"]), payload=st.binary(max_size=300))
def test_any_payload_under_a_real_schema_is_an_event_or_an_invalid_event(
    schema_registry, registered_ids, kind: str, payload: bytes
) -> None:
    raw = frame_prefix(registered_ids[kind]) + payload

    async def decode() -> None:
        decoder = FramedDecoder(SchemaRegistrySettings(url=schema_registry.url))
        try:
            value = await decoder.decode_once(raw)
            decode_event(value, original=raw)
        except InvalidEventError:
            pass
        finally:
            await decoder.close()

    asyncio.run(decode())


def test_the_decoder_authenticates_with_basic_credentials_or_a_bearer_token(
    schema_registry, tmp_path
) -> None:
    """``kafka.schema_registry``'s credentials, checked by a real registry with HTTP Basic and bearer
    tokens on (a second local one: RS256 JWTs verified against a fixed key)."""
    if schema_registry.local is None:
        pytest.skip("starts a local registry with authentication on; SCHEMA_REGISTRY_URL is in use instead")
    key = RSAKey.generate_key(2048)
    event = identify("auth", uuid.uuid4().hex[:6])

    async def decode(settings: SchemaRegistrySettings, raw: bytes) -> bytes:
        decoder = FramedDecoder(settings)
        try:
            return await decoder.decode_once(raw)
        finally:
            await decoder.close()

    with secured_registry(tmp_path, key) as registry:
        credentials = {"basic.auth.user.info": f"{REGISTRY_USER}:{REGISTRY_PASSWORD}"}
        admin = registry_client(registry.url, credentials)
        raw = frame_prefix(admin.register_schema("auth-value", Schema(JSON_SCHEMA, "JSON"))) + orjson.dumps(
            event
        )
        basic = SchemaRegistrySettings(
            url=registry.url, basic_auth_user=REGISTRY_USER, basic_auth_password=REGISTRY_PASSWORD
        )
        assert orjson.loads(asyncio.run(decode(basic, raw))) == event
        bearer = SchemaRegistrySettings(url=registry.url, bearer_token=bearer_token(key))
        assert orjson.loads(asyncio.run(decode(bearer, raw))) == event
        wrong = SchemaRegistrySettings(
            url=registry.url, basic_auth_user=REGISTRY_USER, basic_auth_password="wrong-pw"
        )
        with pytest.raises(RegistryUnavailableError, match="HTTP 401.*basic_auth_password") as refused:
            asyncio.run(decode(wrong, raw))
        assert "wrong-pw" not in str(refused.value)


def wait_for_log(worker: WorkerProcess, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        worker.assert_alive()
        if text in worker.log_path.read_text(encoding="utf-8", errors="replace"):
            return
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not logged within {timeout}s:\n{worker.log_tail()}")


def written(bootstrap: str, topic: str) -> int:
    """Records written to ``topic`` so far (the sum of its partitions' high-water marks)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"marks-{uuid.uuid4().hex}"})
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in metadata.topics[topic].partitions
        )
    finally:
        consumer.close()
