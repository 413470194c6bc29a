"""Compressed record batches, on the real broker with the real worker.

Producers compress record batches as their ``compression.type`` says (lz4, snappy and zstd are
common defaults in Kafka shops), and the worker's own librdkafka producer compresses the internal,
changelog and outcome records when ``kafka.client_config`` sets it. Faust's consumer (aiokafka)
must read every codec Kafka has: a batch it cannot decompress stops the worker, so no record of
that partition would get its outcome.

The scenario's records are produced in four runs, each with another codec, and the worker compresses
what it writes with zstd (so its internal topics are read back compressed). Every record still gets
the outcome the scenario expects, once per integration.
"""

from __future__ import annotations

from collections import Counter

import pytest
from harness import produce

from tests.support.outcomes import consume_outcomes
from tests.support.scenario import build_scenario

pytestmark = pytest.mark.integration

CODECS = ("gzip", "snappy", "lz4", "zstd")


@pytest.fixture
def worker_overrides() -> dict:
    return {"kafka": {"client_config": {"compression.type": "zstd"}}}


def test_every_codec_is_read_and_every_record_gets_its_outcomes(kafka_bootstrap, pipeline_topics, worker):
    scenario = build_scenario(seed=23, people=24, events_per_person=6)
    records = scenario.records
    size = -(-len(records) // len(CODECS))
    for index, codec in enumerate(CODECS):  # in order: a contact's events stay in order across runs
        chunk = records[index * size : (index + 1) * size]
        produce(kafka_bootstrap, pipeline_topics["source"], chunk, {"compression.type": codec})
    expected_total = len(scenario.expected) + 2 * scenario.invalid_count

    outcomes = consume_outcomes(
        kafka_bootstrap, pipeline_topics["deliveries"], expected_total, worker, timeout=180
    )
    assert max(Counter((o["message_id"], o["integration"]) for o in outcomes).values()) == 1
    got = {(o["message_id"], o["integration"]): (o["status"], o["reason"]) for o in outcomes}
    assert {pair: got.get(pair) for pair in scenario.expected} == scenario.expected
    assert sum(status == "invalid" for status, _ in got.values()) == 2 * scenario.invalid_count
