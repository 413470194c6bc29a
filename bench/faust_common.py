"""What the benchmark's own Faust apps (passthrough, naive) share with the real worker's app.

Same Faust settings as ``signal_sync.runtime.create_runtime`` where they matter for
throughput (acks=all, commit interval, earliest reset, the consumer on the app's event loop with
the worker's fetch settings, eager hand-over of fetched records, raw bytes in and out) and the
worker's garbage-collector settings (``signal_sync.collector``), so the comparison measures the
work per event and not a different client setup. Each app gets its config as a JSON file:
``python bench/<app>.py CONFIG.json``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import faust

from signal_sync import collector
from signal_sync.config import KafkaSettings
from signal_sync.streams.faust_fixes import (
    ConsumerSettings,
    consume_on_app_loop,
    deliver_fetched_records_eagerly,
)

RAW = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}


def load_config() -> dict[str, Any]:
    """The JSON config named by the only command-line argument."""
    if len(sys.argv) != 2:
        raise SystemExit(f"usage: {sys.argv[0]} CONFIG.json")
    return json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))


def make_app(config: dict[str, Any]) -> faust.App:
    """A Faust app with the worker's client settings, no web server, no tables."""
    app = faust.App(
        config["app_id"],
        broker=f"kafka://{config['bootstrap']}",
        autodiscover=False,
        store="memory://",
        datadir=config["state_dir"],
        topic_partitions=config["partitions"],
        topic_replication_factor=1,
        topic_disable_leader=True,
        web_enabled=False,
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        table_standby_replicas=0,
    )
    deliver_fetched_records_eagerly()
    collector.install(app)
    defaults = KafkaSettings.model_fields
    consume_on_app_loop(
        app,
        ConsumerSettings(
            defaults["consumer_fetch_min_bytes"].default, defaults["consumer_fetch_max_wait_ms"].default
        ),
    )
    return app


def stop_when_orphaned() -> None:
    """SIGTERM ourselves if the harness that started us dies without stopping us."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()


def run(app: faust.App) -> None:
    """Run the worker until SIGTERM/SIGINT (Faust handles both) or until the harness is gone."""
    stop_when_orphaned()
    worker = faust.Worker(app, loglevel="warning", quiet=True)
    worker.spinner = None
    worker.execute_from_commandline()
