"""Reading what the worker wrote and what the emulators applied, and judging it against the workload.

``OutcomeLog`` tails the deliveries topic incrementally (no consumer group, all partitions
from the start), so tests can wait for progress and kill the worker at a chosen point.
``verify`` compares everything with the workload's truth and returns numbers rather than
raising, so a failed scenario still gets its row in the summary table.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from harness import WorkerProcess

from tests.chaos.workload import CONSENT_TAG, MAILGUN, MAUTIC, Person, Workload
from tests.support.dead_letters import Stored, stored_letter
from tests.support.sandbox import set_faults as set_faults  # the scenarios import it from here
from tests.support.workers import assigned as assigned
from tests.support.workers import worker_json as worker_json
from tests.support.workers import worker_metric as worker_metric

LIST_ADDRESS = "newsletter@mg.example.com"


def quiet_logger() -> logging.Logger:
    """librdkafka prints every refused connection (broker outage, session end) to stderr otherwise."""
    logger = logging.getLogger("chaos.librdkafka")
    logger.setLevel(logging.CRITICAL)
    return logger


def get_json(url: str, timeout: float = 30) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as reply:  # loopback emulator
        return json.loads(reply.read())


def produce(
    bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes | None]], **extra: Any
) -> None:
    """Produce in order and fail unless every record is acknowledged."""
    errors: list[str] = []
    config = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "linger.ms": 5,
        "logger": quiet_logger(),
        **extra,
    }
    producer = Producer(config)
    for key, value in records:
        while True:
            try:
                producer.produce(
                    topic,
                    key=key,
                    value=value,
                    on_delivery=lambda err, _msg: errors.append(str(err)) if err else None,
                )
                break
            except BufferError:  # local queue full: let it drain
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(60) == 0, "records not flushed"
    assert not errors, errors[:3]


class StreamProducer(threading.Thread):
    """Produces ``records`` in order at ``rate`` per second in the background: a live stream.

    The producer is idempotent and keeps records in its local queue while the broker is
    unreachable, so a broker outage delays but never reorders or loses the input.
    """

    def __init__(self, bootstrap: str, topic: str, records: list, rate: float, **extra: Any) -> None:
        super().__init__(name="chaos-producer", daemon=True)
        self.topic, self.records, self.rate = topic, records, rate
        self.config = {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "linger.ms": 5,
            "logger": quiet_logger(),
            **extra,
        }
        self.produced = 0
        self.acked = 0
        self.errors: list[str] = []
        self.failure: BaseException | None = None
        self.finished = threading.Event()

    def _on_delivery(self, err: Any, _msg: Any) -> None:
        if err:
            self.errors.append(str(err))
        else:
            self.acked += 1

    def run(self) -> None:
        try:
            producer = Producer(self.config)
            started = time.monotonic()
            for n, (key, value) in enumerate(self.records):
                due = started + n / self.rate
                while time.monotonic() < due:
                    producer.poll(min(0.05, max(0.0, due - time.monotonic())))
                producer.produce(self.topic, key=key, value=value, on_delivery=self._on_delivery)
                self.produced = n + 1
            deadline = time.monotonic() + 300
            while producer.flush(1.0) and time.monotonic() < deadline:
                pass
        except BaseException as exc:  # surfaced by check()
            self.failure = exc
        finally:
            self.finished.set()

    def check(self) -> None:
        if self.failure is not None:
            raise AssertionError(f"producer crashed: {self.failure!r}")
        if self.errors:
            raise AssertionError(f"records not acknowledged: {self.errors[:3]}")

    @property
    def done(self) -> bool:
        return self.finished.is_set() and self.acked == len(self.records)


def wait_until(
    what: str, ok: Callable[[], bool], timeout: float, check: Callable[[], None] = lambda: None, every=0.2
) -> float:
    """Poll ``ok`` until true or the deadline (then AssertionError); returns the seconds it took."""
    started = time.monotonic()
    deadline = started + timeout
    while not ok():
        check()
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)
    return time.monotonic() - started


def last_request_seq(url: str) -> int:
    requests = get_json(f"{url}/_sandbox/requests?limit=1")["requests"]
    return requests[-1]["seq"] if requests else 0


def wait_quiet(urls: list[str], quiet_s: float = 2.0, timeout: float = 60.0) -> float:
    """Wait until no emulator has received a request for ``quiet_s`` (late replays have landed)."""
    started = time.monotonic()
    last = [last_request_seq(u) for u in urls]
    still_since = time.monotonic()
    while time.monotonic() - still_since < quiet_s:
        if time.monotonic() - started > timeout:
            raise AssertionError(f"emulators still receiving requests after {timeout:.0f}s")
        time.sleep(0.25)
        now = [last_request_seq(u) for u in urls]
        if now != last:
            last, still_since = now, time.monotonic()
    return time.monotonic() - started


def kill_mid_stream(chaos: Any, log: OutcomeLog, worker: WorkerProcess, rng: random.Random) -> int:
    """SIGKILL ``worker`` at a random point (up to 0.5 s from now) while the stream still runs;
    the outcomes logged by then."""
    time.sleep(rng.uniform(0.0, 0.5))  # deliberate: a random kill point
    log.pump(0.0)
    proc = worker.proc
    assert proc is not None
    proc.kill()
    proc.wait(10)
    chaos.boundary()
    assert not log.done(), "the stream ended before the kill: not mid-stream any more"
    return len(log.records)


class TopicTail:
    """All records of a topic, read incrementally from the beginning with an unassigned consumer."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self.topic = topic
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": "chaos-unused",  # required by librdkafka; never joined or committed
                "enable.auto.commit": False,
                "fetch.message.max.bytes": 8 * 1024 * 1024,
                "logger": quiet_logger(),
            }
        )
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        self.records: list[dict[str, Any]] = []

    def pump(self, seconds: float = 0.5) -> int:
        """Read what arrives within ``seconds``; returns how many records were new."""
        deadline = time.monotonic() + seconds
        new = 0
        while True:
            left = deadline - time.monotonic()
            batch = self.consumer.consume(num_messages=1000, timeout=max(0.0, min(left, 0.5)))
            for message in batch:
                if message.error():
                    continue
                self.on_record(self.decode(message))
                new += 1
            if left <= 0 or (not batch and new):
                return new

    def decode(self, message: Any) -> Any:
        return json.loads(message.value())

    def on_record(self, record: Any) -> None:
        self.records.append(record)

    def wait(
        self, what: str, ok: Callable[[], bool], timeout: float, check: Callable[[], None] = lambda: None
    ):
        started = time.monotonic()
        while not ok():
            check()
            if time.monotonic() - started > timeout:
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
            self.pump(0.5)
        return time.monotonic() - started

    def close(self) -> None:
        self.consumer.close()


class DeadLetterTail(TopicTail):
    """The dead-letter topic: each record as stored, with the letter read from it."""

    def decode(self, message: Any) -> Stored:
        return stored_letter(message)


class OutcomeLog(TopicTail):
    """The deliveries topic, indexed by (message_id, integration)."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, work: Workload) -> None:
        super().__init__(bootstrap, topic, partitions)
        self.work = work
        self.by_pair: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        self.missing = set(work.expected)

    def on_record(self, record: dict[str, Any]) -> None:
        super().on_record(record)
        pair = (record["message_id"], record["integration"])
        self.by_pair[pair].append(record)
        self.missing.discard(pair)

    def first_delivered(self, pair: tuple[str, str]) -> float | None:
        """When the pair's first ``delivered`` outcome was completed (Unix time), if any."""
        stamps = [r["completed_at"] for r in self.by_pair.get(pair, []) if r["status"] == "delivered"]
        if not stamps:
            return None
        return min(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() for stamp in stamps)

    def done(self, integration: str | None = None) -> bool:
        return not any(integration in (None, pair[1]) for pair in self.missing)

    def count(self, integration: str | None = None) -> int:
        return sum(1 for r in self.records if integration in (None, r["integration"]))


@dataclass
class Verdict:
    """Everything one scenario measured; ``problems`` lists what broke a guarantee."""

    events: int
    outcomes: int
    lost: int
    duplicates: int
    out_of_order: int  # judged strictly only without a crash; see order_of
    reapplied: int
    problems: list[str] = field(default_factory=list)
    # Accumulating fields (Mautic's ipAddresses) that differ from one upsert per event: the
    # last-write-wins state is right, the history is not. Tests assert it last, separately.
    history: list[str] = field(default_factory=list)

    def summary(self) -> str:
        shown = self.problems[:25] + (
            [f"... {len(self.problems) - 25} more"] if len(self.problems) > 25 else []
        )
        return "\n".join(shown)


SIMULTANEOUS_S = 0.25
"""Coalesced events share one request and finish together; their outcomes may be written in
any order within this window."""


def first_delivery_order(message_ids: list[str], finished: list[float | None]) -> list[str]:
    """Events of one contact must be delivered for the first time in event order, crash or not.

    At-least-once may deliver an event again later (a replay), but an event must never be
    delivered for the first time after a later event of the same contact: that means it was
    skipped and picked up afterwards (e.g. by the next worker). ``finished`` is when each
    event's first ``delivered`` outcome was completed (None: never delivered, reported by the
    outcome checks). Coalesced events finish together, hence ``SIMULTANEOUS_S``. Unlike the
    emulators' logs this works with coalescing and across crashes.
    """
    problems = []
    latest, latest_id = float("-inf"), ""
    for message_id, when in zip(message_ids, finished, strict=True):
        if when is None:
            continue
        if when < latest - SIMULTANEOUS_S:
            problems.append(f"{latest_id} first delivered {latest - when:.1f}s after the later {message_id}")
        if when > latest:
            latest, latest_id = when, message_id
    return problems


def order_of(markers: list[str], applied: list[str | None], strict: bool) -> tuple[int, int, list[str]]:
    """(out-of-order count, re-applications, problems) of one contact's applied upserts.

    ``markers`` name the contact's expected upserts in event order; ``applied`` is what the
    emulator applied, in arrival order. Coalescing may skip an event (a later upsert
    carries its effect; the final-state check covers that), so going *back* is what breaks
    order. ``strict`` is for runs without a crash, rebalance or broker outage, where
    nothing may go back. After one, at-least-once legitimately re-applies a contact's
    uncommitted events (possibly twice: the first stage's replay re-forwards copies that
    the second stage delivers after the originals), so going back is counted as
    re-application only. A request that matches no event of the contact is always wrong.
    """
    index = {marker: i for i, marker in enumerate(markers)}
    bad = again = 0
    notes: list[str] = []
    highest = -1  # furthest event applied so far
    previous = -1  # event of the previous request
    for position, marker in enumerate(applied):
        j = index.get(marker) if marker is not None else None
        if j is None:
            bad += 1
            notes.append(f"request #{position} matches no expected event ({marker})")
            continue
        if strict and j < previous:
            bad += 1
            notes.append(f"request #{position} is event {j}, after event {previous}")
        if j <= highest:
            again += 1
        highest = max(highest, j)
        previous = j
    return bad, again, notes


HISTORY = "Mautic ipAddresses (accumulated per request) differ from one upsert per event"


class Findings:
    """Problems grouped by kind: one line per kind with its count and a few examples."""

    def __init__(self) -> None:
        self.kinds: dict[str, list[str]] = {}

    def add(self, kind: str, example: str) -> None:
        self.kinds.setdefault(kind, []).append(example)

    def lines(self, history: bool = False, examples: int = 3) -> list[str]:
        return [
            f"{kind}: {len(items)} case(s), e.g. " + " | ".join(items[:examples])
            for kind, items in self.kinds.items()
            if (kind == HISTORY) == history
        ]


def check_mautic(found: Findings, person: Person, contact: dict[str, Any] | None) -> None:
    who = person.address
    if contact is None:
        found.add("contact missing in Mautic", who)
        return
    fields = contact["fields"]["all"]
    want = person.mautic_fields
    got = {alias: fields.get(alias) for alias in want if alias != "lastActive"}
    got["lastActive"] = contact["lastActive"]
    for alias, value in want.items():
        if got.get(alias) != value:
            found.add(
                f"Mautic {alias} differs from applying the events in order",
                f"{who}: {got.get(alias)!r} != {value!r}",
            )
    for alias in ("signal_signup_method", "signal_lead_source"):
        if alias not in want and fields.get(alias) is not None:
            found.add(f"Mautic {alias} set by no event", f"{who}: {fields.get(alias)!r}")
    if [t["tag"] for t in contact["tags"]] != [CONSENT_TAG]:
        found.add("Mautic tags differ", f"{who}: {contact['tags']}")
    if set(contact["ipAddresses"]) != person.mautic_ips:
        missing = sorted(person.mautic_ips - set(contact["ipAddresses"]))
        extra = sorted(set(contact["ipAddresses"]) - person.mautic_ips)
        found.add(HISTORY, f"{who}: missing {missing} extra {extra}")


def check_mailgun(found: Findings, person: Person, member: dict[str, Any] | None) -> None:
    who = person.address
    if member is None:
        found.add("member missing in Mailgun", who)
        return
    if member["vars"] != person.mailgun_vars:
        diff = {
            k: (member["vars"].get(k), v)
            for k, v in person.mailgun_vars.items()
            if member["vars"].get(k) != v
        }
        diff.update({k: (v, None) for k, v in member["vars"].items() if k not in person.mailgun_vars})
        found.add("Mailgun vars differ from applying the events in order", f"{who}: (got, expected) {diff}")
    if member["name"] != f"{person.first} {person.last}" or member["subscribed"] is not True:
        found.add("Mailgun name/subscribed differ", f"{who}: {member['name']!r}/{member['subscribed']!r}")


def verify(
    work: Workload,
    outcomes: OutcomeLog,
    mautic_url: str,
    mailgun_url: str,
    *,
    strict_order: bool = True,
    allowed_statuses: dict[str, set[str]] | None = None,
) -> Verdict:
    """Judge one finished scenario: outcomes, final state and per-contact order in both emulators."""
    found = Findings()
    for pair in sorted(outcomes.missing):
        found.add("lost: no outcome at all", f"{pair} (expected {work.expected[pair]})")
    for record in outcomes.records:
        pair = (record["message_id"], record["integration"])
        if pair not in work.expected:
            found.add("outcome for an event nobody produced", str(pair))
    allowed = allowed_statuses or {}
    for pair, want in work.expected.items():
        got = {r["status"] for r in outcomes.by_pair.get(pair, [])}
        if got and not got <= ({want} | allowed.get(want, set())):
            reasons = sorted({str(r["reason"]) for r in outcomes.by_pair[pair]})
            found.add(f"outcome status other than {want!r}", f"{pair}: {sorted(got)} {reasons}")
    duplicates = len(outcomes.records) - len(outcomes.by_pair)

    contacts = {
        c["fields"]["all"]["email"].lower(): c
        for c in get_json(f"{mautic_url}/_sandbox/contacts")["contacts"]
    }
    members_raw = get_json(f"{mailgun_url}/_sandbox/members")["members"].get(LIST_ADDRESS, [])
    members = {m["address"].lower(): m for m in members_raw}
    people = work.delivered_people
    wanted = {p.address for p in people}
    for address in sorted((set(contacts) | set(members)) - wanted):
        found.add("contact that no delivered event names", address)
    mautic_logs = get_json(f"{mautic_url}/_sandbox/log")["contacts"]
    mailgun_logs = get_json(f"{mailgun_url}/_sandbox/log")["contacts"]
    out_of_order = reapplied = 0
    for person in people:
        check_mautic(found, person, contacts.get(person.address))
        check_mailgun(found, person, members.get(person.address))
        for name, markers, log, marker_of in (
            (
                MAUTIC,
                person.mautic_markers,
                mautic_logs.get(person.address, []),
                lambda e: e["changes"].get("lastActive"),
            ),
            (
                MAILGUN,
                person.mailgun_markers,
                mailgun_logs.get(person.address, []),
                lambda e: (e["changes"].get("vars") or {}).get("anonymous_id"),
            ),
        ):
            bad, again, notes = order_of(markers, [marker_of(e) for e in log], strict_order)
            out_of_order += bad
            reapplied += again
            for note in notes:
                found.add(f"{name}: a contact's requests out of order", f"{person.address} {note}")
            ids = person.delivered_ids.get(name, [])
            late = first_delivery_order(ids, [outcomes.first_delivered((m, name)) for m in ids])
            out_of_order += len(late)
            for note in late:
                found.add(f"{name}: an event first delivered after a later one of its contact", note)
    return Verdict(
        events=work.events,
        outcomes=len(outcomes.records),
        lost=len(outcomes.missing),
        duplicates=duplicates,
        out_of_order=out_of_order,
        reapplied=reapplied,
        problems=found.lines(),
        history=found.lines(history=True),
    )
