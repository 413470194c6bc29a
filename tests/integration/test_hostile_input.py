"""Hostile records mixed into a normal stream, on the real broker with the real worker.

The promise under test: one outcome per (record, integration) for *any* record on the source
topic, and a bad record never harms a good one. Hostile records of every kind a producer sends
sooner or later (bytes that are not UTF-8 or JSON, JSON that is not an event, tombstones, null
keys, wrong types, ids and nesting beyond the limits, timestamps that overflow in UTC, header
injection through ``context.ip``, email addresses the destinations refuse or would rewrite, events
too large to forward, bursts of large events of one contact) are produced into the partitions of
good contacts, ahead of and between their events. Then:

* every good event is ``delivered`` to both integrations, within a bound;
* every hostile record has exactly one outcome per integration, the one the input contract
  (README, Contracts) gives it, and each ``invalid`` / ``failed`` outcome its dead letter;
* the worker is still running, and stops within its grace period on SIGTERM with hostile
  records in flight;
* nothing injected reached the destinations: the emulators' journals hold no header or body
  value made from the hostile input (the visitor IP travels only when it is one IP address).
"""

from __future__ import annotations

import ipaddress
import json
import random
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer
from harness import WorkerProcess, produce

from signal_sync.codecs.events import peek_message_id
from signal_sync.dead_letters import read_letter
from signal_sync.sandbox.server import RunningServer
from signal_sync.streams.records import DeadLetterHeaders, Outcome
from tests.support.emails import CRLF_INJECTED, MALFORMED

pytestmark = pytest.mark.integration

INTEGRATIONS = ("mautic-main", "mailgun-news")
GOOD_CONTACTS = 25
GOOD_BOUND_S = 120.0
"""Every good event's outcomes are on the deliveries topic this long after the input was produced."""
HOSTILE_BOUND_S = 60.0
"""And the hostile records' outcomes (and every dead letter) at most this much later."""
SHUTDOWN_GRACE_S = 25.0
INJECTED = ("X-Injected", "<script>", "10.0.0.1", "\x00")
"""Text of the hostile IPs that must not reach any destination."""
CONSENT = {"canonical": {"marketing": True}}
STAMP = "2026-06-06T12:00:00Z"

Verdict = tuple[str, str | None]
DELIVERED: Verdict = ("delivered", None)
INVALID: Verdict = ("invalid", "invalid_event")
TOO_LARGE: Verdict = ("invalid", "event_too_large")
INVALID_EMAIL: Verdict = ("dropped", "invalid_email")
NO_EMAIL: Verdict = ("dropped", "no_email")


@dataclass(frozen=True)
class Hostile:
    """One hostile record and the outcome it must get on both integrations."""

    name: str
    key: bytes | None
    value: bytes | None
    verdict: Verdict

    @property
    def message_id(self) -> str:
        """The id its outcomes carry: its own when usable, else the record's deterministic one."""
        return peek_message_id(self.value)


def event(
    kind: str,
    message_id: Any,
    email: Any = None,
    *,
    anonymous_id: str | None = None,
    ip: Any = "198.51.100.7",
    **fields: Any,
) -> dict[str, Any]:
    """A consenting event; ``fields`` replace or add top-level fields."""
    body: dict[str, Any] = {
        "type": kind,
        "messageId": message_id,
        "anonymousId": anonymous_id or f"anon-{message_id}",
        "timestamp": STAMP,
        "context": {"ip": ip, "consent": CONSENT},
    }
    if email is not None:
        body["traits"] = {"email": email, "first_name": "Hostile"}
    if kind == "page":
        body["context"]["page"] = {"url": "https://www.example.com/pricing"}
    if kind == "track":
        body["event"] = "Signed Up"
        body["properties"] = {"method": "email"}
    body.update(fields)
    return body


def dumps(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def good_stream(run: str) -> tuple[list[tuple[bytes | None, bytes]], set[str]]:
    """Consenting contacts, each: identify, page, Signed Up, page. Every event goes to both."""
    records: list[tuple[bytes | None, bytes]] = []
    ids: set[str] = set()
    for n in range(GOOD_CONTACTS):
        anonymous_id = f"anon-good-{run}-{n}"
        for step, kind in enumerate(("identify", "page", "track", "page")):
            message_id = f"good-{run}-{n}-{step}"
            email = f"good.{n}@example.com" if kind == "identify" else None
            body = event(kind, message_id, email, anonymous_id=anonymous_id, ip=f"198.51.100.{n + 1}")
            records.append((anonymous_id.encode(), dumps(body)))
            ids.add(message_id)
    return records, ids


def hostile_records(run: str, keys: list[bytes]) -> list[Hostile]:
    """Every hostile kind, keyed like good contacts (so they share partitions with good events)."""
    rng = random.Random(run)

    def key() -> bytes:
        return rng.choice(keys)

    def h(name: str, body: Any, verdict: Verdict, raw: bytes | None = None) -> Hostile:
        return Hostile(name, key(), dumps(body) if raw is None else raw, verdict)

    def mid(name: str) -> str:
        return f"hostile-{run}-{name}"

    def ev(name: str, email: Any = None, kind: str = "identify", **fields: Any) -> dict[str, Any]:
        return event(kind, mid(name), email, **fields)

    deep = 10_000
    records = [
        # bytes and JSON that are not an event
        h("not-utf8", None, INVALID, b"\xff\xfe\x00\x81" + run.encode()),
        h(
            "latin1",
            None,
            INVALID,
            f'{{"type":"identify","messageId":"{mid("latin1")}","x":"caf\xe9"}}'.encode("latin-1"),
        ),
        h("not-json", None, INVALID, f"type=identify&run={run}".encode()),
        h("truncated-json", None, INVALID, f'{{"type":"identify","messageId":"{mid("trunc")}"'.encode()),
        h("json-array", None, INVALID, f'[1,2,"{run}"]'.encode()),
        h("json-string", None, INVALID, f'"{run}"'.encode()),
        h("json-number", None, INVALID, f"{rng.randrange(10**9)}".encode()),
        h("json-null", None, INVALID, b"null"),
        h("json-true", None, INVALID, b"true"),
        h(
            "lone-surrogate",
            None,
            INVALID,
            f'{{"type":"identify","messageId":"{mid("sur")}","x":"\\ud800"}}'.encode(),
        ),
        Hostile("tombstone", key(), None, INVALID),
        # wrong types for known fields
        h("type-number", ev("type-number", type=5), INVALID),
        h("type-unknown", ev("type-unknown", type="alias"), INVALID),
        h("traits-string", ev("traits-string", traits="jane@example.com"), INVALID),
        h("context-list", ev("context-list", "wt.context@example.com", context=[1]), INVALID),
        h("event-list", ev("event-list", "wt.event@example.com", kind="track", event=["Signed Up"]), INVALID),
        h("timestamp-object", ev("timestamp-object", "wt.ts@example.com", timestamp={"at": 1}), INVALID),
        h(
            "consent-string",
            ev(
                "consent-string",
                "wt.consent@example.com",
                context={"consent": {"canonical": {"marketing": "yes"}}},
            ),
            INVALID,
        ),
        h(
            "track-without-name",
            ev("track-without-name", "wt.track@example.com", kind="track", event=None),
            INVALID,
        ),
        h("email-number", ev("email-number", 42), NO_EMAIL),
        h("message-id-number", event("identify", rng.randrange(10**12), "wt.id@example.com"), INVALID),
        # beyond the limits
        h(
            "long-message-id",
            event("identify", "m" * 600_000, "long@example.com", anonymous_id="a-long"),
            INVALID,
        ),
        h(
            "long-event-name",
            ev("long-event-name", "long.name@example.com", kind="track", event="E" * 10_000),
            INVALID,
        ),
        h(
            "control-in-id",
            ev("control-in-id", "ctl@example.com", anonymousId="anon\r\nX-Injected: 1"),
            INVALID,
        ),
        h(
            "deep-nesting",
            None,
            INVALID,
            dumps(ev("deep", "deep@example.com")).replace(
                b'"first_name"', b'"deep":' + b"[" * deep + b"]" * deep + b',"first_name"'
            ),
        ),
        h("nesting-100", ev("nesting-100", "nest@example.com", properties=nested(100)), INVALID),
        # timestamps that decode but overflow in UTC
        h("ts-max", ev("ts-max", "ts.max@example.com", timestamp="9999-12-31T23:00:00-05:00"), INVALID),
        h("ts-min", ev("ts-min", "ts.min@example.com", timestamp="0001-01-01T00:00:00+05:00"), INVALID),
        # context.ip: left out of the requests, the event still goes
        h("ip-crlf", ev("ip-crlf", "ip.crlf@example.com", ip="1.2.3.4\r\nX-Injected: yes"), DELIVERED),
        h("ip-lf", ev("ip-lf", "ip.lf@example.com", ip="1.2.3.4\nX-Injected: yes"), DELIVERED),
        h("ip-nul", ev("ip-nul", "ip.nul@example.com", ip="1.2.3.4\x00"), DELIVERED),
        h("ip-list", ev("ip-list", "ip.list@example.com", ip="1.2.3.4, 10.0.0.1"), DELIVERED),
        h("ip-script", ev("ip-script", "ip.script@example.com", ip="<script>alert(1)</script>"), DELIVERED),
        # emails the destinations refuse, or that Mautic would store as another address
        *(
            h(f"email-{n}", ev(f"email-{n}", address), INVALID_EMAIL)
            for n, address in enumerate(
                [
                    *MALFORMED,
                    *CRLF_INJECTED,
                    "jane@bücher.de",  # IDN: Mautic strips the ü; accepted in its xn-- form (below)
                ]
            )
        ),
        h("idn-punycode", ev("idn-punycode", "jane@xn--bcher-kva.de"), DELIVERED),
        # a null key: Kafka picks the partition; the event is a good one
        Hostile("null-key", None, dumps(ev("null-key", "null.key@example.com")), DELIVERED),
        # too large to forward even alone (raw event plus its stitched traits): fits the source topic
        h(
            "large-identify",
            ev(
                "large-identify",
                "large@example.com",
                traits={"email": "large@example.com", "blob": "x" * 900_000},
            ),
            TOO_LARGE,
        ),
    ]
    # a burst of large events of one contact: each fits alone, several do not fit one record
    burst_key = key()
    for n in range(8):
        body = ev(
            f"burst-{n}",
            anonymous_id=f"anon-burst-{run}",
            traits={"email": "burst@example.com", "notes": f"{n}" * 200_000},
        )
        records.append(Hostile(f"burst-{n}", burst_key, dumps(body), DELIVERED))
    return records


def nested(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels):
        value = {"a": value}
    return value


def interleave(
    good: list[tuple[bytes | None, bytes]], hostile: list[Hostile], seed: str
) -> list[tuple[bytes | None, bytes | None]]:
    """Hostile records spread over the first quarter of the good stream (the good events' own order
    is kept), so that most good events are behind hostile ones in their partitions."""
    rng = random.Random(seed)
    mixed: list[tuple[bytes | None, bytes | None]] = list(good)
    for record in hostile:
        mixed.insert(rng.randrange(len(mixed) // 4 + 1), (record.key, record.value))
    return mixed


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as reply:  # loopback emulator
        return json.loads(reply.read())


def json_value(message: Any) -> dict[str, Any]:
    return orjson.loads(message.value())


def dead_letter_headers(message: Any) -> dict[str, Any]:
    """A dead letter's error headers by name (and the record's key and value under ``_key``/``_value``)."""
    letter = read_letter(message.key(), message.value(), message.headers(), None)
    assert letter is not None and not letter.legacy, f"not a dead letter: {message.value()!r:.100}"
    return {**letter.context, "_key": letter.key, "_value": letter.value}


class TopicReader:
    """Reads a topic from the start; ``until`` polls with a deadline."""

    def __init__(self, bootstrap: str, topic: str, decode: Any = json_value) -> None:
        self.decode = decode
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"hostile-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "fetch.message.max.bytes": 2_000_000,
            }
        )
        self.consumer.subscribe([topic])
        self.records: list[dict[str, Any]] = []
        self.arrived: list[float] = []

    def until(self, done: Any, timeout: float, check: Any) -> bool:
        deadline = time.monotonic() + timeout
        while not done(self.records):
            if time.monotonic() > deadline:
                return False
            message = self.consumer.poll(0.5)
            check()
            if message is None or message.error():
                continue
            self.records.append(self.decode(message))
            self.arrived.append(time.monotonic())
        return True

    def close(self) -> None:
        self.consumer.close()


def journal(server: RunningServer) -> list[dict[str, Any]]:
    return get_json(f"{server.url}/_sandbox/requests?limit=50000")["requests"]


def strings(value: Any) -> list[str]:
    """Every string in a journal entry (keys and values, however nested)."""
    found: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def ip_values(value: Any) -> list[Any]:
    """Every ``ipAddress`` in a request body (single upsert, batch list or dict of items)."""
    found: list[Any] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            found.extend(v for k, v in item.items() if k == "ipAddress")
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def test_hostile_records_get_their_outcomes_and_never_harm_good_events(
    kafka_bootstrap: str,
    pipeline_topics: dict[str, str],
    sandboxes: tuple[RunningServer, RunningServer],
    worker: WorkerProcess,
) -> None:
    run = uuid.uuid4().hex[:8]
    good, good_ids = good_stream(run)
    keys = sorted({key for key, _ in good if key is not None})
    hostile = hostile_records(run, keys)
    expected = {record.message_id: record for record in hostile}
    assert len(expected) == len(hostile), "every hostile record must have an id of its own"
    assert not good_ids & set(expected)

    deliveries = TopicReader(kafka_bootstrap, pipeline_topics["deliveries"])
    dead_letters = TopicReader(kafka_bootstrap, pipeline_topics["dlq"], dead_letter_headers)
    try:
        produce(kafka_bootstrap, pipeline_topics["source"], interleave(good, hostile, run))
        produced_at = time.monotonic()

        def seen(records: list[dict[str, Any]], ids: set[str]) -> bool:
            return len(
                {(o["message_id"], o["integration"]) for o in records if o["message_id"] in ids}
            ) >= 2 * len(ids)

        good_done = deliveries.until(lambda got: seen(got, good_ids), GOOD_BOUND_S, worker.assert_alive)
        good_latency = (
            max(
                (
                    at
                    for o, at in zip(deliveries.records, deliveries.arrived, strict=True)
                    if o["message_id"] in good_ids
                ),
                default=produced_at,
            )
            - produced_at
        )
        deliveries.until(
            lambda got: seen(got, good_ids | set(expected)), HOSTILE_BOUND_S, worker.assert_alive
        )
        outcomes = deliveries.records
        letters_expected = sum(o["status"] in ("failed", "invalid") for o in outcomes)
        dead_letters.until(lambda got: len(got) >= letters_expected, 30, worker.assert_alive)
        letters = dead_letters.records
    finally:
        deliveries.close()
        dead_letters.close()

    worker.assert_alive()
    problems: list[str] = []
    pairs = Counter((o["message_id"], o["integration"]) for o in outcomes)
    by_pair = {(o["message_id"], o["integration"]): o for o in outcomes}
    for outcome in outcomes:
        Outcome.model_validate(outcome)

    # every good event: delivered to both integrations, within the bound, once
    if not good_done:
        problems.append(f"good events not all finished within {GOOD_BOUND_S:.0f}s of the input")
    for message_id in sorted(good_ids):
        for integration in INTEGRATIONS:
            got = by_pair.get((message_id, integration))
            verdict = None if got is None else (got["status"], got["reason"])
            if verdict != DELIVERED:
                problems.append(f"good {message_id} -> {integration}: {verdict} ({got and got.get('error')})")

    # every hostile record: exactly one outcome per integration, the contract's
    for message_id, record in expected.items():
        for integration in INTEGRATIONS:
            count = pairs.get((message_id, integration), 0)
            got = by_pair.get((message_id, integration))
            verdict = None if got is None else (got["status"], got["reason"])
            if count != 1 or verdict != record.verdict:
                problems.append(
                    f"hostile {record.name} -> {integration}: {count} outcome(s), {verdict}, "
                    f"expected {record.verdict} ({got and (got.get('error') or '')[:120]})"
                )
    duplicated = [pair for pair, n in pairs.items() if n > 1 and pair[0] in good_ids]
    if duplicated:
        problems.append(f"good events with more than one outcome: {duplicated[:5]}")
    strays = sorted({o["message_id"] for o in outcomes} - good_ids - set(expected))
    if strays:
        problems.append(f"outcomes for records never produced: {[s[:40] for s in strays[:5]]}")

    # each invalid or failed outcome has its dead letter
    for letter in letters:
        DeadLetterHeaders.model_validate({k: v for k, v in letter.items() if k not in ("_key", "_value")})
    lettered = Counter(letter["signal_sync.delivery_id"] for letter in letters)
    for letter in letters:  # each is its record as produced: key and value byte for byte
        record = expected.get(letter["signal_sync.message_id"])
        if record is not None and (letter["_key"], letter["_value"]) != (record.key, record.value):
            problems.append(f"hostile {record.name}: its dead letter is not the record as produced")
    for outcome in outcomes:
        if outcome["status"] in ("failed", "invalid") and lettered[outcome["delivery_id"]] != 1:
            count = lettered[outcome["delivery_id"]]
            problems.append(f"{outcome['message_id'][:40]} {outcome['integration']}: {count} dead letters")

    # nothing injected reached a destination
    for name, server in zip(("mautic", "mailgun"), sandboxes, strict=True):
        for request in journal(server):
            forwarded = request.get("x_forwarded_for")
            for value in ([forwarded] if forwarded is not None else []) + ip_values(request.get("body")):
                try:
                    ipaddress.ip_address(value)
                except (TypeError, ValueError):
                    problems.append(f"{name} got a visitor IP that is not one address: {value!r}")
            for text in strings(request):
                problems.extend(
                    f"{name} request {request['seq']} carries {marker!r}"
                    for marker in INJECTED
                    if marker in text
                )

    # stops inside its grace period with hostile records in flight
    produce(
        kafka_bootstrap,
        pipeline_topics["source"],
        interleave(good[:8], hostile_records(run + "-again", keys), run),
    )
    started = time.monotonic()
    code = worker.stop(timeout=SHUTDOWN_GRACE_S + 10)
    stopped_in = time.monotonic() - started
    if code != 0 or stopped_in > SHUTDOWN_GRACE_S:
        problems.append(f"SIGTERM with hostile records in flight: exit {code} after {stopped_in:.1f}s")

    print(f"good events done {good_latency:.1f}s after the input; {len(outcomes)} outcomes")
    assert not problems, (
        f"run {run}: {len(problems)} problem(s):\n" + "\n".join(problems) + "\n" + worker.log_tail(30)
    )
