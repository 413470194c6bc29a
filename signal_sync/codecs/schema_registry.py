"""Confluent-framed record values, read and written with a Schema Registry.

Many Kafka estates frame topic values in Confluent's wire format: magic byte 0, the schema id
as 4 big-endian bytes, then the payload (JSON, Avro binary or Protobuf). ``FramedDecoder`` turns
such a value into the JSON of the event it holds, with confluent-kafka's asynchronous Schema
Registry client and deserializers, so the event then goes through the same validation and limits
as a plain JSON record (``codecs.events``). A plain JSON record never starts with byte 0, so both
kinds share a topic.

* **JSON Schema**: the payload is validated against its writer schema and then *is* the event's
  JSON. **Avro**: decoded with its writer schema; bytes and fixed values become base64 text,
  decimals their exact decimal text, timestamps ISO 8601. **Protobuf** is not read: its
  deserializer needs the event's generated message class, which a generic consumer does not
  have, so such a record is an invalid event that says so.
* Decoding uses the writer schema only (no subject lookup): data-contract rules and schema
  migrations are not applied. Schema references are resolved.
* Schemas are cached by id (the client's cache); only a schema id seen for the first time costs a
  registry call, made on the event loop without blocking it. Ids the registry does not know are
  remembered for ``UNKNOWN_ID_TTL_S`` so a stream of them costs one call each per period.
* What is the event's fault (an id the registry does not know, a payload that does not decode or
  does not match its schema) raises ``InvalidEventError``. What is not (the registry unreachable,
  answering 5xx, refusing our credentials, or any answer but "schema not found") raises
  ``RegistryUnavailableError`` inside, and ``json_of`` waits and asks again, doubling the wait up
  to ``HOLD_MAX_S``: the record, and every record read after it, are held rather than
  dead-lettered while the registry is away.

``outcome_prefix`` registers the outcome schema under ``<deliveries_topic>-value`` at start and
returns the 5 bytes that frame every outcome: prepended to the outcome's orjson bytes they are
byte for byte what confluent-kafka's ``JSONSerializer`` writes (it uses orjson too), without its
per-record schema validation.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import orjson
from cachetools import TTLCache
from confluent_kafka.schema_registry import (
    AsyncSchemaRegistryClient,
    Schema,
    SchemaRegistryClient,
    SchemaRegistryError,
)
from confluent_kafka.schema_registry._async.avro import AsyncAvroDeserializer
from confluent_kafka.schema_registry._async.json_schema import AsyncJSONDeserializer

# The HTTP library the registry client uses (httpx2, else httpx): its transport errors are a
# registry that cannot be reached, not a bad record.
from confluent_kafka.schema_registry.common._httpx_compat import httpx as _registry_http
from confluent_kafka.serialization import SerializationError
from jsonschema import ValidationError as SchemaViolation

from signal_sync.config import SchemaRegistrySettings
from signal_sync.destinations.delivery import exception_text, short_text
from signal_sync.errors import ConfigError, InvalidEventError, SignalSyncError

log = logging.getLogger(__name__)

MAGIC_BYTE = 0
HEADER_BYTES = 5
"""Magic byte and 4-byte schema id."""
SCHEMA_NOT_FOUND = 40403
"""The Confluent API's error code for a schema id it does not know (with HTTP 404)."""
UNKNOWN_ID_TTL_S = 300.0
UNKNOWN_IDS_KEPT = 1024
HOLD_INITIAL_S = 0.5
HOLD_MAX_S = 30.0
URL_FIELD = "kafka.schema_registry.url"
NO_REGISTRY_HINT = (
    "the record is framed for a Schema Registry (magic byte 0, schema id {schema_id}) but no "
    f"registry is configured: set {URL_FIELD} to read it"
)
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (_registry_http.TransportError,)


class RegistryUnavailableError(SignalSyncError):
    """The registry could not answer a question a record depends on; not the record's fault."""


def is_framed(raw: bytes | None) -> bool:
    """Whether a record value is in Confluent's wire format: magic byte 0 and room for a schema id."""
    return raw is not None and len(raw) >= HEADER_BYTES and raw[0] == MAGIC_BYTE


def schema_id_of(raw: bytes) -> int:
    """The schema id of a framed value (``is_framed`` must hold)."""
    return int.from_bytes(raw[1:HEADER_BYTES], "big")


def frame_prefix(schema_id: int) -> bytes:
    """The 5 bytes that frame a value written with ``schema_id``."""
    return bytes([MAGIC_BYTE]) + schema_id.to_bytes(4, "big")


def client_config(settings: SchemaRegistrySettings) -> dict[str, Any]:
    """confluent-kafka's Schema Registry client configuration for ``kafka.schema_registry``."""
    assert settings.url is not None
    conf: dict[str, Any] = {
        "url": settings.url,
        "timeout": settings.timeout_s,
        "max.retries": 1,  # json_of keeps asking, with its own back-off
        "retries.wait.ms": 200,
    }
    if settings.basic_auth_user is not None:
        assert settings.basic_auth_password is not None
        password = settings.basic_auth_password.get_secret_value()
        conf["basic.auth.user.info"] = f"{settings.basic_auth_user}:{password}"
    if settings.bearer_token is not None:
        conf["bearer.auth.credentials.source"] = "STATIC_TOKEN"
        conf["bearer.auth.token"] = settings.bearer_token.get_secret_value()
        # The client insists on a logical cluster (Confluent Cloud's target-sr-cluster header);
        # other registries ignore the header.
        conf["bearer.auth.logical.cluster"] = settings.bearer_logical_cluster or "-"
    if settings.ssl_ca_file is not None:
        conf["ssl.ca.location"] = str(settings.ssl_ca_file)
    return conf


def registry_host(settings: SchemaRegistrySettings) -> str:
    """Scheme, host and port of the registry, for messages (the URL carries no credentials)."""
    parts = urlsplit(settings.url or "")
    return f"{parts.scheme}://{parts.netloc}"


def _avro_json_default(value: Any) -> Any:
    """orjson's fallback for Avro values JSON has no type for."""
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} has no JSON form")


def _unavailable(exc: BaseException) -> RegistryUnavailableError:
    """What a failed registry call means, for the log."""
    if isinstance(exc, SchemaRegistryError):
        what = f"answered HTTP {exc.http_status_code} (error code {exc.error_code}): {exc.error_message}"
        if exc.http_status_code in (401, 403):
            what += " - check kafka.schema_registry.basic_auth_user / basic_auth_password or bearer_token"
        elif exc.http_status_code == 404:
            what += f" - check that {URL_FIELD} is the Confluent-compatible API's root"
        return RegistryUnavailableError(short_text(what))
    return RegistryUnavailableError(f"cannot be reached: {exception_text(exc)}")


def _validation_failure(exc: BaseException, schema_id: int) -> str:
    """A JSON Schema violation without the offending value (it may be personal data): where, and
    which keyword of the schema it fails."""
    cause = exc.__context__
    assert isinstance(cause, SchemaViolation)
    return f"{cause.json_path}: does not match its JSON Schema (id {schema_id}): fails {cause.validator!r}"


Sleep = Callable[[float], Awaitable[None]]


class FramedDecoder:
    """Framed record values → the JSON of the event each holds, through one registry client."""

    def __init__(
        self,
        settings: SchemaRegistrySettings,
        client: AsyncSchemaRegistryClient | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.client = client if client is not None else AsyncSchemaRegistryClient(client_config(settings))
        self._sleep = sleep
        self._unknown: TTLCache[int, bool] = TTLCache(UNKNOWN_IDS_KEPT, UNKNOWN_ID_TTL_S)
        self._json: AsyncJSONDeserializer | None = None
        self._avro: AsyncAvroDeserializer | None = None
        self.held_since: float | None = None
        """Monotonic time since when records wait for the registry; None while it answers."""

    async def json_of(self, raw: bytes) -> bytes:
        """The event's JSON of a framed value; raises ``InvalidEventError`` when the record is at
        fault, and waits (backing off) for as long as the registry cannot answer."""
        wait = HOLD_INITIAL_S
        while True:
            try:
                value = await self.decode_once(raw)
            except RegistryUnavailableError as exc:
                if self.held_since is None:
                    self.held_since = time.monotonic()
                log.warning(
                    "the Schema Registry at %s %s; the source record waits (and every record after it), "
                    "asking again in %.1fs",
                    registry_host(self.settings),
                    exc,
                    wait,
                    extra={
                        "schema_id": schema_id_of(raw),
                        "held_s": round(time.monotonic() - self.held_since),
                    },
                )
                await self._sleep(wait)
                wait = min(wait * 2, HOLD_MAX_S)
                continue
            except InvalidEventError:
                self._answered()
                raise
            self._answered()
            return value

    def _answered(self) -> None:
        """The registry answered: records go on."""
        if self.held_since is not None:
            log.info(
                "the Schema Registry answers again; records held for %.0fs go on",
                time.monotonic() - self.held_since,
            )
            self.held_since = None

    async def decode_once(self, raw: bytes) -> bytes:
        """One attempt of ``json_of``: raises ``RegistryUnavailableError`` instead of waiting."""
        schema_id = schema_id_of(raw)
        schema = await self._writer_schema(schema_id)
        kind = (schema.schema_type or "AVRO").upper()
        if kind == "JSON":
            await self._deserialize(self._json_deserializer, raw, schema_id, kind)
            return raw[HEADER_BYTES:]  # validated against its schema, and already the event's JSON
        if kind == "AVRO":
            value = await self._deserialize(self._avro_deserializer, raw, schema_id, kind)
            try:
                return orjson.dumps(value, default=_avro_json_default)
            except orjson.JSONEncodeError as exc:
                raise InvalidEventError(
                    f"the Avro value (schema id {schema_id}) has no JSON form: {exc}"
                ) from None
        if kind == "PROTOBUF":
            raise InvalidEventError(
                f"schema id {schema_id} is a Protobuf schema: Protobuf-framed events are not read "
                "(frame them with JSON Schema or Avro, or send plain JSON)"
            )
        raise InvalidEventError(
            f"schema id {schema_id} is of type {kind!r}: only JSON Schema and Avro are read"
        )

    async def _writer_schema(self, schema_id: int) -> Schema:
        if schema_id in self._unknown:
            raise InvalidEventError(self._unknown_id(schema_id))
        try:
            return await self.client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404 and exc.error_code == SCHEMA_NOT_FOUND:
                self._unknown[schema_id] = True
                raise InvalidEventError(self._unknown_id(schema_id)) from None
            raise _unavailable(exc) from None
        except Exception as exc:  # refused, reset, timed out, DNS, TLS, a bad answer body
            raise _unavailable(exc) from None

    def _unknown_id(self, schema_id: int) -> str:
        return f"schema id {schema_id} is not in the Schema Registry at {registry_host(self.settings)}"

    async def _json_deserializer(self) -> AsyncJSONDeserializer:
        if self._json is None:
            self._json = await AsyncJSONDeserializer(
                None,
                schema_registry_client=self.client,
                conf={"subject.name.strategy": _no_subject},
                json_decode=orjson.loads,
            )
        return self._json

    async def _avro_deserializer(self) -> AsyncAvroDeserializer:
        if self._avro is None:
            self._avro = await AsyncAvroDeserializer(self.client, conf={"subject.name.strategy": _no_subject})
        return self._avro

    async def _deserialize(
        self, deserializer: Callable[[], Awaitable[Any]], raw: bytes, schema_id: int, kind: str
    ) -> Any:
        """Run a deserializer; registry trouble while it resolves references is not the record's."""
        try:
            return await (await deserializer())(raw, None)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                raise InvalidEventError(
                    f"schema id {schema_id} references a schema the registry does not have: "
                    f"{short_text(str(exc.error_message))}"
                ) from None
            raise _unavailable(exc) from None
        except TRANSPORT_ERRORS as exc:
            raise _unavailable(exc) from None
        except Exception as exc:
            if isinstance(exc, SerializationError) and isinstance(exc.__context__, SchemaViolation):
                raise InvalidEventError(_validation_failure(exc, schema_id)) from None
            raise InvalidEventError(
                f"the payload does not decode with its {kind} schema (id {schema_id}): {exception_text(exc)}"
            ) from None

    async def close(self) -> None:
        """Close the client's connections."""
        await self.client.aclose()


def _no_subject(ctx: Any, record_name: Any) -> None:
    """Subject name strategy: none. Records are read with their writer schema (by id) only."""
    return None


def outcome_schema_text() -> str:
    """``docs/schemas/outcome.schema.json``, exactly as ``dev/gen_docs.py`` writes it."""
    from signal_sync.reference import json_schemas  # the config reference imports config models

    return json.dumps(json_schemas()["outcome.schema.json"], indent=2) + "\n"


def outcome_prefix(settings: SchemaRegistrySettings, deliveries_topic: str) -> bytes:
    """Register the outcome schema under ``<deliveries_topic>-value`` (TopicNameStrategy) and return
    the frame prefix of every outcome; ``ConfigError`` naming ``outcomes.format`` when the registry
    refuses or cannot be reached (called at start)."""
    subject = f"{deliveries_topic}-value"
    try:
        with SchemaRegistryClient(client_config(settings)) as client:
            schema_id = client.register_schema(subject, Schema(outcome_schema_text(), "JSON"))
    except SchemaRegistryError as exc:
        raise ConfigError(
            f"outcomes.format: json_schema_registry, but the Schema Registry at {registry_host(settings)} "
            f"refused the outcome schema under subject {subject!r}: HTTP {exc.http_status_code}: "
            f"{short_text(str(exc.error_message))}"
        ) from None
    except Exception as exc:
        raise ConfigError(
            f"outcomes.format: json_schema_registry, but the outcome schema could not be registered "
            f"under subject {subject!r}: the Schema Registry at {registry_host(settings)} "
            f"{_unavailable(exc)}"
        ) from None
    return frame_prefix(schema_id)


def framed_outcomes(prefix: bytes) -> Callable[[dict[str, Any]], bytes]:
    """An outcome encoder that frames each outcome's compact JSON with ``prefix``."""
    dumps = orjson.dumps

    def encode(outcome: dict[str, Any]) -> bytes:
        return prefix + dumps(outcome)

    return encode
