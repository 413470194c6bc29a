"""The erasure agent: reads ``kafka.erasures_topic``, forwards each erasure to every integration in
its contact's order, then forgets the person in the ``identities`` table.

It runs on the source topic's partitioning (the erasures topic is co-partitioned with it, checked
at start), so a request keyed like its person's events is read where the identities those events
taught live. For each request, before it is acknowledged:

1. read it (``erasure.parse_request``): unusable → one ``invalid`` / ``invalid_request`` outcome
   per integration (and its dead letter), nothing forgotten;
2. resolve the email (the request's, else the one learned for its ids); none → ``dropped`` /
   ``unknown_person`` per integration;
3. otherwise forward one erase envelope per integration to its internal topic on the contact's
   partition, through the ingest stage's forwarder together with every event envelope it holds,
   so the erasure comes after the events read before it; the delivery agents delete the person
   at each destination, write the ``erase`` outcomes and delete the contact's destination state;
4. wait until those records are on the broker, then write tombstones for every identity key of
   the person (``erasure.keys_to_forget``) on every partition of the identities changelog (a key
   may have been written from another partition than the request's), drop the worker's own copy,
   and the event debugger's rows of the person.

A crash before step 4 reads the request again after the restart: the email is still known, the
erasure is forwarded again, and the destinations' deletes are idempotent. An unexpected exception
is a ``failed`` / ``internal_error`` outcome per integration, as for events.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import faust

from signal_sync.agents.ingest import record_fields, reject, source_of, source_of_record
from signal_sync.agents.outputs import emit
from signal_sync.dead_letters import TRANSFORMATION, ErrorContext
from signal_sync.destinations.delivery import exception_text
from signal_sync.erasure import (
    INVALID_REQUEST,
    UNKNOWN_PERSON,
    ErasureRequest,
    InvalidRequestError,
    keys_to_forget,
    parse_request,
    request_id_for,
    resolve_email,
)
from signal_sync.identity import contact_id
from signal_sync.outcomes import SourceRecord
from signal_sync.runtime import Runtime
from signal_sync.streams.json_table import JsonValues
from signal_sync.streams.partition_reader import RawRecord
from signal_sync.streams.sequence import acknowledge
from signal_sync.streams.tail_watch import TailWatch

log = logging.getLogger(__name__)
OPERATION = "erase"


def forget_identities(identities: JsonValues, keys: list[str], partitions: int) -> None:
    """Drop ``keys`` from the worker's copy of the identities table and write a tombstone for each
    on every partition of its changelog: compaction then drops every value the key ever had,
    whichever partition wrote it, and a restarted worker recovers none of them."""
    table: Any = identities.table
    for key in keys:
        try:
            del table.data[key]
        except KeyError:
            pass
        for partition in range(partitions):
            table.send_changelog(partition, key, None, value_serializer="raw")


async def drop_for_everyone(
    runtime: Runtime, source: SourceRecord, request: ErasureRequest, reason: str
) -> None:
    """A ``dropped`` outcome per integration: nothing to send for this request."""
    now = time.time()
    for integration in runtime.integrations.values():
        outcome = runtime.outcomes.build(
            message_id=request.request_id,
            integration=integration,
            event_name=None,
            email=None,
            status="dropped",
            reason=reason,
            source=source,
            now=now,
            operation=OPERATION,
        )
        await emit(runtime, outcome, source)


async def erase_one(runtime: Runtime, source: SourceRecord) -> None:
    """Handle one erasure request completely (steps 1-4 of the module's docstring)."""
    try:
        request = parse_request(source.value)
    except InvalidRequestError as exc:
        await reject(
            runtime,
            source,
            str(exc),
            "invalid",
            INVALID_REQUEST,
            message_id=request_id_for(source.value, exc),
            context=ErrorContext(exception=exc),
            operation=OPERATION,
        )
        return
    email = resolve_email(request, runtime.identities)
    if email is None:
        await drop_for_everyone(runtime, source, request, UNKNOWN_PERSON)
    else:
        contact = contact_id(email)
        envelope = {
            "erase": {"request_id": request.request_id, "email": email},
            "contact": contact,
            **record_fields(source),
            "raw": (source.value or b"").decode("utf-8"),
        }
        runtime.forwarder.add(list(runtime.integrations), contact, envelope, len(source.value or b""))
        forward = runtime.forward_pending
        if forward is None or not await forward():
            raise RuntimeError("the erasure could not be forwarded: the ingest stage is not forwarding")
    await runtime.outputs.flush()  # forwards and outcomes on the broker before anything is forgotten
    keys = keys_to_forget(request, email, runtime.identities.stored().items())
    forget_identities(runtime.identities, keys, runtime.forwarder.partitions)
    runtime.forget_person(email)
    log.info(
        "erasure request handled: request_id=%s identity_keys_forgotten=%d email_known=%s",
        request.request_id,
        len(keys),
        email is not None,
        extra={"request_id": request.request_id, "forgotten_keys": len(keys)},
    )


async def erase_record(runtime: Runtime, source: SourceRecord) -> None:
    """One erasure request: its outcomes (or forwards) for every integration; an unexpected error
    becomes a ``failed`` / ``internal_error`` outcome per integration. Raises only when even that
    cannot be written."""
    try:
        await erase_one(runtime, source)
    except Exception as exc:
        log.exception(
            "erasure failed at %s[%s]@%s",
            source.topic,
            source.partition,
            source.offset,
            extra={"topic": source.topic, "partition": source.partition, "offset": source.offset},
        )
        try:
            message_id = parse_request(source.value).request_id
        except InvalidRequestError as unreadable:
            message_id = request_id_for(source.value, unreadable)
        await reject(
            runtime,
            source,
            exception_text(exc),
            "failed",
            "internal_error",
            message_id=message_id,
            context=ErrorContext(TRANSFORMATION, exc),
            operation=OPERATION,
        )


def attach(runtime: Runtime) -> None:
    """Register the erasure agent when ``kafka.erasures_topic`` is set."""
    topic = runtime.erasures
    if topic is None:
        return

    @runtime.app.agent(topic, name="erase")
    async def erase(stream: faust.StreamT) -> None:
        stream = stream.noack()
        consumer = runtime.app.consumer
        failed = False

        async def handle(source: SourceRecord, item: faust.EventT | RawRecord) -> None:
            nonlocal failed
            if failed:
                return
            try:
                await erase_record(runtime, source)
            except Exception as exc:  # not even an outcome: acknowledge nothing from here on
                failed = True
                log.critical("the erasure request at %s has no outcome", source.position, exc_info=exc)
                await runtime.stop_worker(exc)
                return
            await acknowledge(stream, consumer, item)

        async def handle_raw(record: RawRecord) -> None:
            """A record Faust did not hand to this agent, read by the sequence guard."""
            await handle(source_of_record(record), record)

        watch = TailWatch(runtime.app, runtime.sequence, topic.get_topic_name())
        watcher = asyncio.create_task(watch.run(handle_raw))
        try:
            async for event in stream.events():
                async with watch.lock:
                    message = event.message
                    if await runtime.sequence.admit_after(message.tp, message.offset, handle_raw):
                        await handle(source_of(event), event)
                    else:  # already handled: only its acknowledgement, in order
                        await acknowledge(stream, consumer, event)
        finally:
            watcher.cancel()
