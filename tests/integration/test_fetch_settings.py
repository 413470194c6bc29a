"""The worker's Faust consumer fetches with ``kafka.consumer_fetch_min_bytes`` / ``_max_wait_ms``.

Faust builds its aiokafka consumer itself, with ``fetch.min.bytes`` 1; ``streams.faust_fixes``
sets the configured values on it before it starts. Checked on the fetcher aiokafka creates when
the consumer connects to the real broker (the fetcher sends them with every fetch request).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from signal_sync.config import load_settings
from signal_sync.runtime import create_runtime
from tests.unit.factories import MAUTIC_RAW

pytestmark = pytest.mark.integration


def worker_consumer(tmp_path: Path, bootstrap: str, **kafka: Any) -> Any:
    """The aiokafka consumer Faust would run for a worker with these ``kafka`` settings."""
    path = tmp_path / "config.yaml"
    config = {
        "kafka": {"bootstrap_servers": bootstrap, "app_id": f"fetch-{tmp_path.name}", **kafka},
        "integrations": [MAUTIC_RAW],
        "worker": {"state_dir": str(tmp_path / "state")},
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    runtime = create_runtime(load_settings(path, environ={}), partitions=1)
    app = runtime.app
    return app.consumer._thread._create_worker_consumer(app.transport)


async def test_the_fetcher_uses_the_configured_fetch_settings(tmp_path: Path, kafka_bootstrap: str) -> None:
    consumer = worker_consumer(
        tmp_path, kafka_bootstrap, consumer_fetch_min_bytes=32_768, consumer_fetch_max_wait_ms=120
    )
    await consumer.start()
    try:
        fetcher = consumer._fetcher
        assert (fetcher._fetch_min_bytes, fetcher._fetch_max_wait_ms) == (32_768, 120)
    finally:
        await consumer.stop()


async def test_defaults(tmp_path: Path, kafka_bootstrap: str) -> None:
    consumer = worker_consumer(tmp_path, kafka_bootstrap)
    assert (consumer._fetch_min_bytes, consumer._fetch_max_wait_ms) == (65_536, 20)
