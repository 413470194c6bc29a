"""Proves the test Schema Registry speaks the Confluent API the way confluent-kafka's client uses it.

Each format (JSON Schema, Avro, Protobuf) is registered through the Confluent API, framed by
confluent-kafka's serializer (magic byte 0, 4-byte schema id, payload), sent through a real topic
and decoded on the other side with a fresh client, as a consumer that knows nothing but the
schema id would. Runs against ``SCHEMA_REGISTRY_URL`` when set, else the local Apicurio Registry
(``dev/schema_registry.py``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message
from joserfc.jwk import RSAKey

from tests.support.raw_records import read_values
from tests.support.registry_auth import REGISTRY_PASSWORD, REGISTRY_USER, bearer_token, secured_registry
from tests.support.registry_clients import TOPIC_SUBJECTS, registry_client

pytestmark = pytest.mark.integration

EVENT = {"type": "identify", "message_id": "m-1", "user_id": "u-42", "consent": ["marketing", "analytics"]}

AVRO_SCHEMA = json.dumps(
    {
        "type": "record",
        "name": "SignalEvent",
        "namespace": "io.signalsync.test",
        "fields": [
            {"name": "type", "type": "string"},
            {"name": "message_id", "type": "string"},
            {"name": "user_id", "type": ["null", "string"], "default": None},
            {"name": "consent", "type": {"type": "array", "items": "string"}},
        ],
    }
)
JSON_SCHEMA = json.dumps(
    {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "SignalEvent",
        "type": "object",
        "properties": {
            "type": {"type": "string", "enum": ["identify", "track", "page"]},
            "message_id": {"type": "string"},
            "user_id": {"type": ["string", "null"]},
            "consent": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["type", "message_id"],
    }
)


def _protobuf_event_class() -> type[Message]:
    """``io.signalsync.test.SignalEvent`` built at run time (no protoc): what a generated class holds."""
    field = descriptor_pb2.FieldDescriptorProto
    label, string, repeated = field.LABEL_OPTIONAL, field.TYPE_STRING, field.LABEL_REPEATED
    file_proto = descriptor_pb2.FileDescriptorProto(
        name="signal_event.proto", package="io.signalsync.test", syntax="proto3"
    )
    message = file_proto.message_type.add(name="SignalEvent")
    for number, name in enumerate(("type", "message_id", "user_id"), start=1):
        message.field.add(name=name, number=number, type=string, label=label)
    message.field.add(name="consent", number=4, type=string, label=repeated)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("io.signalsync.test.SignalEvent"))


def _through_topic(bootstrap: str, topic: str, value: bytes) -> bytes:
    """Produce ``value`` to ``topic`` and read it back with a new consumer group (30 s deadline)."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    producer.produce(topic, key=b"u-42", value=value)
    assert producer.flush(30) == 0, "record still in flight after 30 s"
    values = read_values(bootstrap, topic, 1, timeout=30)
    assert values, f"nothing consumed from {topic} within 30 s"
    got = values[0]
    assert got is not None
    return got


def _frame_schema_id(value: bytes) -> int:
    """The schema id of a Confluent-framed value: magic byte 0, then a big-endian 4-byte id."""
    assert value[:1] == b"\x00", f"not Confluent-framed: {value[:8]!r}"
    return int.from_bytes(value[1:5], "big")


@pytest.fixture
def registry_url(schema_registry) -> str:
    return schema_registry.url


@pytest.fixture
def fresh_client(registry_url: str) -> Callable[[], SchemaRegistryClient]:
    """A client with an empty cache, as a consumer that has seen nothing but the schema id."""
    return lambda: registry_client(registry_url)


def test_registry_serves_the_confluent_api(registry_url: str, fresh_client) -> None:
    client = registry_client(registry_url)
    subject = f"sr-smoke-{uuid.uuid4().hex[:10]}-value"
    schema = Schema(JSON_SCHEMA, "JSON")

    schema_id = client.register_schema(subject, schema)
    assert fresh_client().register_schema(subject, schema) == schema_id, "same schema, same id"

    reader = fresh_client()
    assert subject in reader.get_subjects()
    by_id = reader.get_schema(schema_id)
    assert by_id.schema_type == "JSON"
    assert json.loads(by_id.schema_str) == json.loads(JSON_SCHEMA)
    latest = reader.get_latest_version(subject)
    assert (latest.schema_id, latest.version) == (schema_id, 1)
    assert reader.lookup_schema(subject, schema).schema_id == schema_id

    with pytest.raises(SchemaRegistryError) as missing:
        reader.get_latest_version(f"sr-smoke-missing-{uuid.uuid4().hex[:10]}-value")
    assert (missing.value.http_status_code, missing.value.error_code) == (404, 40401)
    with pytest.raises(SchemaRegistryError) as invalid:
        client.register_schema(subject, Schema('{"type": "record", "name": ', "AVRO"))
    assert (invalid.value.http_status_code, invalid.value.error_code) == (422, 42201)

    assert client.delete_subject(subject) == [1]
    with pytest.raises(SchemaRegistryError) as deleted:
        fresh_client().get_latest_version(subject)
    assert deleted.value.error_code == 40401


@pytest.mark.parametrize("fmt", ["avro", "json"])
def test_framed_record_round_trips_through_kafka(
    fmt: str, registry_url: str, fresh_client, kafka_bootstrap: str, kafka_topics
) -> None:
    topic = kafka_topics(f"sr.{fmt}")
    ctx = SerializationContext(topic, MessageField.VALUE)
    producer_client = registry_client(registry_url)
    serialize: Any
    deserialize: Any
    if fmt == "avro":
        serialize = AvroSerializer(producer_client, AVRO_SCHEMA, conf=TOPIC_SUBJECTS)
        # The writer schema comes from the registry only.
        deserialize = AvroDeserializer(fresh_client(), conf=TOPIC_SUBJECTS)
    else:
        serialize = JSONSerializer(JSON_SCHEMA, producer_client, conf=TOPIC_SUBJECTS)
        deserialize = JSONDeserializer(None, schema_registry_client=fresh_client(), conf=TOPIC_SUBJECTS)

    value = _through_topic(kafka_bootstrap, topic, serialize(EVENT, ctx))

    registered = fresh_client().get_latest_version(f"{topic}-value")  # TopicNameStrategy
    assert _frame_schema_id(value) == registered.schema_id
    assert registered.schema.schema_type == {"avro": "AVRO", "json": "JSON"}[fmt]
    assert deserialize(value, ctx) == EVENT


def test_framed_protobuf_round_trips_through_kafka(
    registry_url: str, fresh_client, kafka_bootstrap: str, kafka_topics
) -> None:
    event_class = _protobuf_event_class()
    topic = kafka_topics("sr.protobuf")
    ctx = SerializationContext(topic, MessageField.VALUE)
    serialize = ProtobufSerializer(event_class, registry_client(registry_url), conf=TOPIC_SUBJECTS)

    value = _through_topic(kafka_bootstrap, topic, serialize(event_class(**EVENT), ctx))

    registered = fresh_client().get_latest_version(f"{topic}-value")
    assert _frame_schema_id(value) == registered.schema_id
    assert registered.schema.schema_type == "PROTOBUF"
    assert value[5:6] == b"\x00", "message index [0] (the file's first message) in its short form"
    decoded = ProtobufDeserializer(event_class, {})(value, ctx)  # the payload is self-describing
    assert decoded == event_class(**EVENT)


def test_protobuf_writer_schema_is_fetched_by_id(request: pytest.FixtureRequest, schema_registry) -> None:
    """A consumer with a registry client asks for the writer schema as ``?format=serialized``."""
    if schema_registry.kind == "local" or "/apis/ccompat/" in schema_registry.url:  # an Apicurio Registry
        request.applymarker(
            pytest.mark.xfail(
                strict=True,
                reason=(
                    "Apicurio Registry 3.3.3's Confluent API answers GET /schemas/ids/{id}?format=serialized "
                    "with 500 for a schema registered as a base64 descriptor (what confluent-kafka's Python "
                    "serializer registers) and with raw, not base64, bytes for a .proto text schema"
                ),
            )
        )
    event_class = _protobuf_event_class()
    topic = f"sr.protobuf-by-id-{uuid.uuid4().hex[:10]}"  # subject name only: no record is sent
    ctx = SerializationContext(topic, MessageField.VALUE)
    value = ProtobufSerializer(event_class, registry_client(schema_registry.url), conf=TOPIC_SUBJECTS)(
        event_class(**EVENT), ctx
    )
    no_retries = registry_client(schema_registry.url, {"max.retries": 0})  # a 500 is retried
    deserialize = ProtobufDeserializer(event_class, TOPIC_SUBJECTS, schema_registry_client=no_retries)
    assert deserialize(value, ctx) == event_class(**EVENT)


def test_local_registry_checks_basic_and_bearer_credentials(schema_registry, tmp_path) -> None:
    """The credentials ``kafka.schema_registry`` will send are checked by a real registry: a
    second local one with HTTP Basic and bearer tokens on (RS256, verified against a fixed key)."""
    if schema_registry.local is None:
        pytest.skip("starts a local registry with authentication on; SCHEMA_REGISTRY_URL is in use instead")
    key, stranger = RSAKey.generate_key(2048), RSAKey.generate_key(2048)

    def bearer(signer: RSAKey) -> dict[str, str]:
        # The client insists on a (Confluent Cloud) logical cluster; other registries ignore it.
        return {
            "bearer.auth.credentials.source": "STATIC_TOKEN",
            "bearer.auth.token": bearer_token(signer),
            "bearer.auth.logical.cluster": "local",
        }

    def status_of(conf: dict[str, str]) -> int:
        try:
            registry_client(registry.url, conf).get_subjects()
        except SchemaRegistryError as exc:
            return exc.http_status_code
        return 200

    with secured_registry(tmp_path, key) as registry:
        assert status_of({}) == 401
        assert status_of({"basic.auth.user.info": f"{REGISTRY_USER}:{REGISTRY_PASSWORD}"}) == 200
        assert status_of({"basic.auth.user.info": f"{REGISTRY_USER}:wrong-password"}) == 401
        assert status_of(bearer(key)) == 200
        assert status_of(bearer(stranger)) == 401
