"""Worker configs for integration tests."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import yaml
from harness import free_port


def write_config(
    path: Path,
    bootstrap: str,
    topics: dict[str, str],
    mautic_url: str,
    mailgun_url: str,
    state_dir: Path,
    **overrides: Any,
) -> Path:
    """A worker config for one test: unique app id and topics, emulator URLs, fast retries."""
    config: dict[str, Any] = {
        "kafka": {
            "bootstrap_servers": bootstrap,
            "app_id": f"it-{uuid.uuid4().hex[:8]}",
            "source_topic": topics["source"],
            "deliveries_topic": topics["deliveries"],
            "dead_letter_topic": topics["dlq"],
        },
        "worker": {"state_dir": str(state_dir), "web_port": free_port(), "commit_interval_s": 0.5},
        "delivery": {
            "timeout_s": 5,
            "max_attempts": 4,
            "backoff_initial_s": 0.05,
            "backoff_max_s": 0.5,
            "pause_probe_initial_s": 0.2,
            "pause_probe_max_s": 1.0,
        },
        "integrations": [
            {
                "id": "mautic-main",
                "type": "mautic",
                "base_url": mautic_url,
                "api_user": "signal",
                "api_password": "sandbox-password",
            },
            {
                "id": "mailgun-news",
                "type": "mailgun",
                "base_url": mailgun_url,
                "api_key": "key-sandbox",
                "list_address": "newsletter@mg.example.com",
            },
        ],
    }
    for section, values in overrides.items():
        config.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path
