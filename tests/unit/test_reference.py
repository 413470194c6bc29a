"""The checked-in reference docs and JSON Schemas match the models, and real records validate."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from signal_sync.config import MauticIntegration
from signal_sync.dead_letters import dead_letter, read_letter
from signal_sync.outcomes import OutcomeBuilder, SourceRecord
from signal_sync.reference import config_reference_markdown, json_schemas

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.mark.parametrize("name", sorted(json_schemas()))
def test_checked_in_schema_is_current(name: str) -> None:
    shipped = json.loads((DOCS / "schemas" / name).read_text(encoding="utf-8"))
    assert shipped == json_schemas()[name], "run `python dev/gen_docs.py`"


def test_checked_in_config_reference_is_current() -> None:
    assert (DOCS / "config-reference.md").read_text(encoding="utf-8") == config_reference_markdown(), (
        "run `python dev/gen_docs.py`"
    )


def test_config_reference_lists_every_secret_as_secret() -> None:
    rows = [line for line in config_reference_markdown().splitlines() if line.startswith("| `")]
    secrets = [row for row in rows if "| yes |" in row]
    assert {row.split("`")[1] for row in secrets} >= {"api_password", "api_key"}


def test_built_outcome_and_dead_letter_validate_against_the_shipped_schemas() -> None:
    integration = MauticIntegration(
        id="m", type="mautic", base_url="https://mautic.example.com", api_user="u", api_password="p"
    )
    source = SourceRecord("signal.events", 3, 42, 1_700_000_000_000.0, b"\xff not utf-8")
    outcome = OutcomeBuilder().build(
        message_id="m-1",
        integration=integration,
        event_name="Signed Up",
        email="a@example.com",
        status="failed",
        reason="http_400",
        source=source,
        now=1_700_000_001.0,
        http_status=400,
        attempts=1,
        hint="x",
        error="bad",
    )
    schemas = {name: json.loads((DOCS / "schemas" / name).read_text()) for name in json_schemas()}
    jsonschema.validate(outcome, schemas["outcome.schema.json"])
    letter = dead_letter(outcome, source, 1_000_000)
    context = read_letter(letter.key, letter.value, letter.headers, letter.timestamp_ms).context  # type: ignore[union-attr]
    jsonschema.validate(context, schemas["dead-letter-headers.schema.json"])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**outcome, "status": "lost"}, schemas["outcome.schema.json"])


def test_seed_events_validate_against_the_event_schema() -> None:
    schema = json.loads((DOCS / "schemas" / "event.schema.json").read_text())
    lines = (DOCS.parent / "examples" / "seed-events.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines if line.startswith("{")]
    for event in events:
        jsonschema.validate(event, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"type": "wat"}, schema)
