"""``naive``: the obvious Faust agent, one event at a time, each HTTP call awaited in turn.

It does the same work per event as signal-sync (decode, stitch, gate, map with the
worker's own planner and destination builders, one outcome per event and integration)
but awaits every destination request before touching the next event, so its rate is about
1 / (requests per event x latency). State is kept in plain dicts (no tables, no retries,
no DLQ): it is the baseline, not a second implementation.
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import faust
import orjson
from faust_common import RAW, load_config, make_app, run
from workload import bench_integrations

from signal_sync.codecs.events import decode_event
from signal_sync.destinations import Integration, destination_of
from signal_sync.destinations.base import Operation, Request
from signal_sync.destinations.classify import classify_status
from signal_sync.destinations.delivery import Attempt, DeliveryResult, result_of
from signal_sync.destinations.operations import Drop, Finish, Upsert
from signal_sync.errors import InvalidEventError
from signal_sync.identity import ResolvedEvent
from signal_sync.outcomes import OutcomeBuilder, SourceRecord, encode
from signal_sync.planner import plan_delivery, plan_event, remember, remembered_for, state_key


def main() -> None:
    config = load_config()
    app = make_app(config)
    source = app.topic(config["source_topic"], **RAW)
    outcomes = app.topic(config["outcome_topic"], **RAW)
    integrations = bench_integrations(config["mautic_url"], config["mailgun_url"])
    builder = OutcomeBuilder()
    identities: dict[str, dict] = {}
    destination_state: dict[str, dict] = {}

    async def call(http: aiohttp.ClientSession, integration: Integration, request: Request) -> DeliveryResult:
        body = request.form if request.form is not None else orjson.dumps(request.json)
        async with http.request(request.method, request.url, headers=request.headers, data=body) as reply:
            reply_body = await reply.read()
            absent = request.absent is not None and request.absent(reply_body)
            decision = classify_status(reply.status, reply.headers, time.time(), absent=absent)
        return result_of(Attempt(decision, reply.status, reply_body), 1, destination_of(integration))

    async def deliver(
        http: aiohttp.ClientSession, resolved: ResolvedEvent, integration: Integration, operation: Operation
    ) -> dict[str, Any]:
        """The operation's calls one after the other, each awaited; the outcome's fields."""
        destination = destination_of(integration)
        key = state_key(integration, resolved.contact_id or "")
        work = plan_delivery(
            resolved, integration, operation, destination.load_state(destination_state.get(key))
        )
        if isinstance(work, Drop):
            return {"http_status": None, "attempts": 0, "status": "dropped", "reason": work.reason}
        if isinstance(work, Upsert):
            result = await call(http, integration, destination.batch.single_request(integration, work.entry))
            settled = destination.settle(work.state, result) if result.status == "delivered" else None
            finish = Finish("delivered", state=settled)
        else:
            answer: DeliveryResult | None = None
            try:
                request = next(work.steps)
                while True:
                    answer = await call(http, integration, request)
                    request = work.steps.send(answer)
            except StopIteration as stop:
                finish = stop.value
            result = finish.shown or answer
        if finish.status != "dropped" and (result is None or result.status != "delivered"):
            status = result.http_status if result else None
            return {"http_status": status, "attempts": 1, "status": "failed", "reason": f"http_{status}"}
        if finish.state is not None:  # a drop may change it too (a withdrawal nobody had to hear)
            destination_state[key] = destination.dump_state(finish.state)
        if finish.status == "dropped":
            return {"http_status": None, "attempts": 0, "status": "dropped", "reason": finish.reason}
        return {"http_status": result.http_status, "attempts": 1, "status": "delivered", "reason": None}

    @app.agent(source, name="naive")
    async def naive(stream: faust.StreamT) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            async for event in stream.events():
                message = event.message
                src = SourceRecord(
                    message.topic, message.partition, message.offset, message.timestamp * 1000, message.value
                )
                try:
                    decoded = decode_event(message.value)
                except InvalidEventError:
                    continue  # the benchmark's input is valid
                plan = plan_event(decoded, integrations, remembered_for(decoded, identities))
                remember(identities, decoded, plan.learned)
                resolved = plan.resolved
                for (integration, reason), operation in zip(plan.decisions, plan.operations, strict=True):
                    fields = {"http_status": None, "attempts": 0, "status": "dropped", "reason": reason}
                    if reason is None and operation is not None:
                        fields = await deliver(http, resolved, integration, operation)
                    outcome = builder.build(
                        message_id=decoded.message_id or "",
                        integration=integration,
                        event_name=resolved.name,
                        email=resolved.email,
                        source=src,
                        now=time.time(),
                        event=decoded,
                        **fields,
                    )
                    out_key = (outcome["contact_id"] or outcome["message_id"]).encode()
                    await outcomes.send(key=out_key, value=encode(outcome))

    run(app)


if __name__ == "__main__":
    main()
