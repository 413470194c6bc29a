"""``naive``: the obvious Faust agent, one event at a time, each HTTP call awaited in turn.

It does the same work per event as signal-sync (decode, stitch, gate, map with the
worker's own planner and destination builders, one outcome per event and integration)
but awaits every destination request before touching the next event, so its rate is about
1 / (requests per event x latency). State is kept in plain dicts (no tables, no retries,
no DLQ): it is the baseline, not a second implementation.
"""

from __future__ import annotations

import time

import aiohttp
import faust
import orjson
from faust_common import RAW, load_config, make_app, run
from workload import bench_integrations

from signal_sync.codecs.events import decode_event
from signal_sync.errors import InvalidEventError
from signal_sync.outcomes import OutcomeBuilder, SourceRecord, encode
from signal_sync.planner import build_request, plan_event, remember, remembered_for, state_key


def main() -> None:
    config = load_config()
    app = make_app(config)
    source = app.topic(config["source_topic"], **RAW)
    outcomes = app.topic(config["outcome_topic"], **RAW)
    integrations = bench_integrations(config["mautic_url"], config["mailgun_url"])
    builder = OutcomeBuilder()
    identities: dict[str, dict] = {}
    destination_state: dict[str, dict] = {}

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
                for integration, reason in plan.decisions:
                    fields = {"http_status": None, "attempts": 0, "status": "dropped", "reason": reason}
                    if reason is None:
                        key = state_key(integration, resolved.contact_id or "")
                        request = build_request(resolved, integration, destination_state.get(key))
                        body = request.form if request.form is not None else orjson.dumps(request.json)
                        async with http.request(
                            request.method, request.url, headers=request.headers, data=body
                        ) as reply:
                            await reply.read()
                            ok = 200 <= reply.status < 300
                        if ok and request.state is not None:
                            destination_state[key] = request.state
                        fields = {
                            "http_status": reply.status,
                            "attempts": 1,
                            "status": "delivered" if ok else "failed",
                            "reason": None if ok else f"http_{reply.status}",
                        }
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
