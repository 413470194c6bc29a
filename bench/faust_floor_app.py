"""``faust_floor``: what Faust's own per-record path costs, the floor of any Faust agent here.

The same agent as ``passthrough`` (decode each record with orjson, write one outcome-sized
record), but the record goes through librdkafka (confluent-kafka, as the worker writes its
outcomes, about 2 µs of the event loop per record) instead of Faust's aiokafka producer. What is
left per event is Faust's consume path: aiokafka's fetch thread, Faust's fetch loop, conductor,
event, queue and stream, and the event loop running them. signal-sync pays that for every source
record before any of its own work, so this rate bounds what the worker's design could reach.
"""

from __future__ import annotations

import time

import faust
import orjson
from confluent_kafka import Producer
from faust_common import RAW, load_config, make_app, run
from passthrough_app import outcome_for

from signal_sync.streams.output_producer import POLL_EVERY, SETTINGS


def produce_queued(producer: Producer, topic: str, value: bytes, key: bytes | None) -> None:
    """Hand one record to librdkafka, waiting while its queue is full."""
    while True:
        try:
            producer.produce(topic, value, key)
            return
        except BufferError:  # librdkafka's queue is full: let it drain
            producer.poll(0.05)


def main() -> None:
    config = load_config()
    app = make_app(config)
    source = app.topic(config["source_topic"], **RAW)
    outcome_topic = config["outcome_topic"]
    producer = Producer({**SETTINGS, "bootstrap.servers": config["bootstrap"]})  # the worker's settings

    @app.agent(source, name="faust_floor")
    async def faust_floor(stream: faust.StreamT) -> None:
        written = 0
        async for event in stream.events():
            data = orjson.loads(event.message.value)
            value = orjson.dumps(outcome_for(data, time.time(), "faust_floor"))
            produce_queued(producer, outcome_topic, value, event.message.key)
            written += 1
            if written % POLL_EVERY == 0:
                producer.poll(0)

    @app.timer(0.05)
    async def serve_delivery_reports() -> None:
        """The last records of a run (fewer than ``POLL_EVERY``) still get their reports served."""
        producer.poll(0)

    run(app)


if __name__ == "__main__":
    main()
