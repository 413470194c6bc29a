"""Scenario 6: poison records mixed into a normal stream.

Non-JSON, truncated JSON, invalid UTF-8, a 5 MB value (the source topic allows 8 MB), a
5,000-level nested object and array, JSON that is not an object, wrong field types,
null keys and a tombstone: each gets an ``invalid`` outcome and a dead letter per
integration, the record itself with the error in its headers (a huge one keeps only its head,
with its size and hash: ``signal_sync.original.truncated``), and the worker keeps
delivering everything else in order. A valid event with a null key is not poison: it is
delivered like any other.
"""

from __future__ import annotations

import hashlib
import random
from datetime import timedelta

import pytest

from tests.chaos.checks import produce
from tests.chaos.workload import (
    HUGE_BYTES,
    INTEGRATIONS,
    START,
    add_null_key_person,
    build_workload,
    mix_poison,
)

pytestmark = pytest.mark.chaos


def test_poison_records_are_dead_lettered_and_the_stream_goes_on(chaos):
    chaos.scenario = "6 poison inputs"
    chaos.work = work = build_workload(seed=606, people=300, events_per_person=8)
    placed = mix_poison(work, random.Random(606))
    add_null_key_person(work, START - timedelta(days=1))
    worker = chaos.start_worker(chaos.config())
    log = chaos.outcome_log(work)
    dead = chaos.dead_letters()
    produce(chaos.bootstrap, chaos.topics["source"], work.records, **{"message.max.bytes": 8 * 1024 * 1024})

    verdict = chaos.finish(log, check=worker.assert_alive, timeout=180)
    poison_ids = {message_id for message_id, _ in work.poison}
    try:
        dead.wait(
            "a dead letter per poison record and integration",
            lambda: len(dead.records) >= 2 * len(work.poison),
            60,
            worker.assert_alive,
        )
    except AssertionError as exc:
        verdict.problems.append(str(exc))
    dead.pump(1.0)
    chaos.notes.append(f"{len(work.poison)} poison records, {len(dead.records)} dead letters")

    assert not verdict.problems, verdict.summary() + "\n" + chaos.logs()
    invalid = [r for r in log.records if r["status"] == "invalid"]
    assert {(r["message_id"], r["integration"]) for r in invalid} == {
        (m, i) for m in poison_ids for i in INTEGRATIONS
    }, placed
    assert all(r["reason"] == "invalid_event" and r["error"] for r in invalid)
    letters = {(d.get("message_id"), d.letter.integration): d for d in dead.records}
    assert len(dead.records) == len(letters) == 2 * len(work.poison), (
        "one dead letter per poison and integration"
    )
    for message_id, value in work.poison:
        for integration in INTEGRATIONS:
            letter = letters[(message_id, integration)]
            assert (letter.get("status"), letter.get("reason")) == ("invalid", "invalid_event")
            if value is not None and len(value) == HUGE_BYTES:
                assert letter.letter.truncated and letter.get("original.truncated") == "value"
                assert letter.get("original.value_bytes") == str(len(value))
                assert letter.get("original.value_sha256") == hashlib.sha256(value).hexdigest()
                assert letter.value is not None and 0 < len(letter.value) < len(value)
                assert value.startswith(letter.value)
            else:
                assert not letter.letter.truncated and letter.value == value, "the record, byte for byte"
    assert not verdict.history, "\n".join(verdict.history)
