"""``signal-sync erase``: produce an erasure request to ``kafka.erasures_topic``.

The request is checked as the worker checks it (``erasure.parse_request``) before anything is
produced, and keyed as the source topic's events are (``ErasureRequest.record_key``) with the
Java client's partitioner, so it is read on the partition of the same number as its person's
events. ``--dry-run`` prints the record and produces nothing.
"""

from __future__ import annotations

import uuid
from typing import Annotated

import orjson
import typer
from confluent_kafka import KafkaError, Producer

from signal_sync.cli.options import ConfigOption
from signal_sync.config import load_settings
from signal_sync.erasure import ErasureRequest, InvalidRequestError, parse_request
from signal_sync.errors import ConfigError, SignalSyncError
from signal_sync.streams.client_properties import KEYED_PRODUCER
from signal_sync.streams.clients import unwritten
from signal_sync.streams.topics import client_config, cluster_metadata

FLUSH_TIMEOUT_S = 30.0


def build_request(
    request_id: str | None, email: str | None, user_id: str | None, anonymous_id: str | None
) -> ErasureRequest:
    """The request the options describe, checked as the worker will check it."""
    fields = {
        "request_id": request_id or f"erase-{uuid.uuid4()}",
        "email": email,
        "user_id": user_id,
        "anonymous_id": anonymous_id,
    }
    try:
        return parse_request(orjson.dumps({name: value for name, value in fields.items() if value}))
    except InvalidRequestError as exc:
        raise SignalSyncError(f"not a valid erasure request: {exc}") from None


def register(app: typer.Typer) -> None:
    """Attach the subcommand to the CLI."""

    @app.command("erase")
    def erase(
        config: ConfigOption,
        email: Annotated[str | None, typer.Option("--email", help="The person's email.")] = None,
        user_id: Annotated[str | None, typer.Option("--user-id", help="The person's user_id.")] = None,
        anonymous_id: Annotated[
            str | None, typer.Option("--anonymous-id", help="The person's anonymous_id.")
        ] = None,
        request_id: Annotated[
            str | None, typer.Option("--request-id", help="Your reference (default: erase-<uuid4>).")
        ] = None,
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="Print the request that would be produced; produce nothing.")
        ] = False,
    ) -> None:
        """Ask the worker to erase a person at every integration and forget them (give at least one
        of --email, --user-id, --anonymous-id)."""
        settings = load_settings(config)
        topic = settings.kafka.erasures_topic
        if not topic:
            raise ConfigError("kafka.erasures_topic: not set; erasures need their own topic")
        request = build_request(request_id, email, user_id, anonymous_id)
        key, value = request.record_key(), orjson.dumps(request.to_json())
        if dry_run:
            line = {"topic": topic, "key": key.decode(), "value": request.to_json()}
            typer.echo(orjson.dumps(line).decode())
            return
        cluster_metadata(settings.kafka)  # unreachable brokers or refused credentials: one clear error
        kafka = client_config(settings.kafka)
        producer = Producer({**kafka, **KEYED_PRODUCER})
        failures: list[str] = []

        def delivered(error: KafkaError | None, _message: object) -> None:
            if error is not None:
                failures.append(str(error))

        producer.produce(topic, key=key, value=value, on_delivery=delivered)
        remaining = producer.flush(FLUSH_TIMEOUT_S)
        if remaining or failures:
            detail = unwritten(settings.kafka, kafka, failures)
            raise SignalSyncError(f"the erasure request was not written: {detail}")
        typer.echo(f"produced erasure request {request.request_id} to {topic}")
