"""``signal-sync preview``: one JSON line per (event, integration), no network, no Kafka."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from typer.testing import CliRunner

from signal_sync.cli.main import app
from tests.unit.factories import (
    MAILGUN_KEY,
    MAILGUN_RAW,
    MAILGUN_SEED_FORM,
    MAILGUN_SEED_URL,
    MAILGUN_SEED_VARS,
    MAUTIC_PASSWORD,
    MAUTIC_RAW,
    MAUTIC_SEED_PAYLOAD,
    SEED_MAILGUN_IDENTIFY,
    SEED_MAUTIC_IDENTIFY,
    SEED_MAUTIC_SIGNED_UP,
    consent,
)

LINE_KEYS = {"message_id", "integration", "event", "action", "reason", "request"}
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(autouse=True)
def _no_signal_sync_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SIGNAL_SYNC_"):
            monkeypatch.delenv(name)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """Mautic first, then Mailgun: config order differs from alphabetical order."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"integrations": [MAUTIC_RAW, MAILGUN_RAW]}), encoding="utf-8")
    return path


def jsonl(tmp_path: Path, *lines: dict[str, Any] | str | bytes) -> Path:
    path = tmp_path / "events.jsonl"
    with path.open("wb") as out:
        for line in lines:
            if isinstance(line, dict):
                line = orjson.dumps(line)
            out.write((line.encode() if isinstance(line, str) else line) + b"\n")
    return path


def run_preview(
    config: Path, events: Path | str, stdin: bytes | None = None
) -> tuple[list[dict[str, Any]], str]:
    result = CliRunner().invoke(app, ["preview", "-c", str(config), str(events)], input=stdin)
    assert result.exit_code == 0, (result.output, result.exception)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    return lines, result.stdout


def test_seed_examples_through_preview(config: Path, tmp_path: Path) -> None:
    events = jsonl(tmp_path, SEED_MAUTIC_IDENTIFY, SEED_MAUTIC_SIGNED_UP, SEED_MAILGUN_IDENTIFY)
    lines, _ = run_preview(config, events)

    assert [(line["message_id"], line["integration"]) for line in lines] == [
        ("seed-identify-1", "mautic-main"),
        ("seed-identify-1", "mailgun-news"),
        ("seed-signed-up-1", "mautic-main"),
        ("seed-signed-up-1", "mailgun-news"),
        ("seed-mailgun-identify-1", "mautic-main"),
        ("seed-mailgun-identify-1", "mailgun-news"),
    ]
    for line in lines:
        assert set(line) == LINE_KEYS
        assert (line["action"], line["reason"]) == ("send", None)

    signed_up = lines[2]
    assert signed_up["event"] == "Signed Up"
    assert signed_up["request"] == {
        "method": "POST",
        "url": "https://mautic.example.com/api/contacts/new",
        "headers": {
            "Authorization": "Basic <redacted>",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "X-Forwarded-For": "203.0.113.50",
        },
        "json": MAUTIC_SEED_PAYLOAD,
    }

    mailgun = lines[5]
    assert mailgun["event"] == "Identified"
    assert mailgun["request"]["url"] == MAILGUN_SEED_URL
    assert mailgun["request"]["headers"] == {
        "Authorization": "Basic <redacted>",
        "Content-Type": "application/x-www-form-urlencoded",
    }
    assert mailgun["request"]["form"] == MAILGUN_SEED_FORM
    assert mailgun["request"]["form"]["vars"] == MAILGUN_SEED_VARS
    assert "json" not in mailgun["request"] and "form" not in signed_up["request"]


def test_credentials_never_appear(config: Path, tmp_path: Path) -> None:
    _, out = run_preview(config, jsonl(tmp_path, SEED_MAUTIC_IDENTIFY))
    assert out.count("Basic <redacted>") == 2
    for secret in (
        MAUTIC_PASSWORD,
        MAILGUN_KEY,
        base64.b64encode(f"signal:{MAUTIC_PASSWORD}".encode()).decode(),
        base64.b64encode(f"api:{MAILGUN_KEY}".encode()).decode(),
    ):
        assert secret not in out


def test_integrations_follow_config_order(tmp_path: Path) -> None:
    reversed_config = tmp_path / "reversed.yaml"
    reversed_config.write_text(yaml.safe_dump({"integrations": [MAILGUN_RAW, MAUTIC_RAW]}), encoding="utf-8")
    lines, _ = run_preview(reversed_config, jsonl(tmp_path, SEED_MAUTIC_IDENTIFY))
    assert [line["integration"] for line in lines] == ["mailgun-news", "mautic-main"]


def test_invalid_line_is_dropped_for_each_integration_and_preview_goes_on(
    config: Path, tmp_path: Path
) -> None:
    events = jsonl(
        tmp_path,
        SEED_MAUTIC_IDENTIFY,
        "this is not json",
        {"type": "track", "messageId": "bad-types", "event": "Signed Up", "traits": ["x"]},
        b"\xff\xfe\xfa",
        "",
        SEED_MAUTIC_SIGNED_UP,
    )
    lines, _ = run_preview(config, events)

    assert len(lines) == 5 * 2  # the blank line is skipped
    invalid = lines[2:8]
    for line in invalid:
        assert line["action"] == "drop"
        assert line["reason"] == "invalid_event"
        assert line["request"] is None
        assert LINE_KEYS <= set(line)
    assert [line["integration"] for line in invalid] == ["mautic-main", "mailgun-news"] * 3
    assert invalid[2]["message_id"] == invalid[3]["message_id"] == "bad-types"
    assert invalid[0]["message_id"] == invalid[1]["message_id"] != invalid[4]["message_id"]
    # state from before the bad lines survives: the Signed Up is still stitched
    assert lines[8]["message_id"] == "seed-signed-up-1"
    assert lines[8]["request"]["json"] == MAUTIC_SEED_PAYLOAD


def test_drops_show_reason_and_null_request(config: Path, tmp_path: Path) -> None:
    events = jsonl(
        tmp_path,
        {"type": "page", "messageId": "anon", "anonymousId": "z", "context": consent(marketing=True)},
        {
            "type": "track",
            "messageId": "lead",
            "event": "Lead Captured",
            "traits": {"email": "s@example.org"},
        },
    )
    lines, _ = run_preview(config, events)
    assert [
        (line["message_id"], line["event"], line["action"], line["reason"], line["request"]) for line in lines
    ] == [
        ("anon", "page", "drop", "no_email", None),
        ("anon", "page", "drop", "no_email", None),
        ("lead", "Lead Captured", "drop", "consent_denied", None),
        ("lead", "Lead Captured", "drop", "event_not_mapped", None),
    ]


def test_mailgun_form_values_are_strings_and_vars_carry_over(config: Path, tmp_path: Path) -> None:
    order = {
        "type": "track",
        "event": "Order Completed",
        "messageId": "order-1",
        "userId": "user-123",
        "properties": {"order_id": 1001, "revenue": 49.5, "currency": "GBP"},
        "context": consent(marketing=True),
    }
    lines, _ = run_preview(config, jsonl(tmp_path, SEED_MAILGUN_IDENTIFY, order))
    forms = [line["request"]["form"] for line in lines if line["integration"] == "mailgun-news"]
    assert len(forms) == 2
    for form in forms:
        assert all(isinstance(value, str) for value in form.values())
        assert form["upsert"] == "true"
    merged = json.loads(forms[1]["vars"])
    assert merged["plan"] == "pro"
    assert (merged["last_order_id"], merged["last_order_revenue"]) == ("1001", 49.5)


def test_reads_stdin(config: Path) -> None:
    stdin = orjson.dumps(SEED_MAUTIC_IDENTIFY) + b"\n" + orjson.dumps(SEED_MAUTIC_SIGNED_UP) + b"\n"
    lines, _ = run_preview(config, "-", stdin=stdin)
    assert len(lines) == 4
    assert lines[2]["request"]["json"] == MAUTIC_SEED_PAYLOAD


def test_shipped_examples_preview(tmp_path: Path) -> None:
    lines, _ = run_preview(EXAMPLES / "config.local.yaml", EXAMPLES / "seed-events.jsonl")
    input_lines = [
        line for line in (EXAMPLES / "seed-events.jsonl").read_bytes().splitlines() if line.strip()
    ]
    assert len(lines) == 2 * len(input_lines)
    by_message = {(line["message_id"], line["integration"]): line for line in lines}
    assert (
        by_message[("seed-signed-up-1", "mautic-main")]["request"]["json"]["signal_signup_method"] == "email"
    )
    assert by_message[("seed-mailgun-identify-1", "mailgun-news")]["request"]["form"] == MAILGUN_SEED_FORM
    assert lines[-1]["reason"] == lines[-2]["reason"] == "invalid_event"


def test_a_withdrawal_and_a_regrant_show_every_call(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    mailgun = {**MAILGUN_RAW, "unsubscribe_domain": "mg.example.com"}
    config.write_text(yaml.safe_dump({"integrations": [MAUTIC_RAW, mailgun]}), encoding="utf-8")
    page = {"type": "page", "anonymousId": "a-9", "traits": {"email": "pat@example.com"}}
    events = jsonl(
        tmp_path,
        {**page, "messageId": "out", "context": consent(marketing=False)},
        {**page, "messageId": "out-again", "context": consent(marketing=False)},
        {**page, "messageId": "back", "context": consent(marketing=True)},
    )
    lines, out = run_preview(config, events)
    calls = {
        (line["message_id"], line["integration"]): [(c["method"], c["url"]) for c in line.get("calls") or []]
        for line in lines
    }
    mautic, mailgun_base = MAUTIC_RAW["base_url"], MAILGUN_RAW["base_url"]
    member = f"{mailgun_base}/v3/lists/newsletter@mg.example.com/members"
    assert calls[("out", "mautic-main")] == [
        (
            "GET",
            f"{mautic}/api/contacts?where%5B0%5D%5Bcol%5D=email&where%5B0%5D%5Bexpr%5D=in"
            "&where%5B0%5D%5Bval%5D=pat%40example.com&limit=0",
        ),
        ("PATCH", f"{mautic}/api/contacts/{{contact_id}}/edit"),
        ("POST", f"{mautic}/api/contacts/{{contact_id}}/dnc/email/add"),
    ]
    assert calls[("out", "mailgun-news")] == [
        ("PUT", f"{member}/pat@example.com"),
        ("GET", f"{mailgun_base}/v3/mg.example.com/unsubscribes/pat@example.com"),
        ("POST", f"{mailgun_base}/v3/mg.example.com/unsubscribes"),
    ]
    assert calls[("back", "mautic-main")] == [
        ("POST", f"{mautic}/api/contacts/new"),
        ("GET", f"{mautic}/api/contacts/{{contact_id}}"),
        ("POST", f"{mautic}/api/contacts/{{contact_id}}/dnc/email/remove"),
    ]
    assert calls[("back", "mailgun-news")] == [
        ("POST", member),
        ("DELETE", f"{mailgun_base}/v3/mg.example.com/unsubscribes/pat@example.com"),
    ]
    by_id = {(line["message_id"], line["integration"]): line for line in lines}
    for integration in ("mautic-main", "mailgun-news"):
        out_line, again, back = (by_id[(m, integration)] for m in ("out", "out-again", "back"))
        assert (out_line["action"], out_line["reason"], out_line["operation"]) == (
            "send",
            None,
            "withdraw_consent",
        )
        assert out_line["request"] == out_line["calls"][0]
        assert (again["action"], again["reason"], again["operation"]) == (
            "drop",
            "consent_denied",
            "withdraw_consent",
        )
        assert again["request"] is None and "calls" not in again
        assert (back["action"], back["operation"]) == ("send", "restore_consent")
    assert by_id[("out", "mailgun-news")]["calls"][0]["form"] == {"subscribed": "no"}
    assert MAUTIC_PASSWORD not in out and MAILGUN_KEY not in out


def test_drop_config_previews_a_withdrawal_as_a_consent_denied_drop(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    drop = {"on_consent_withdrawn": "drop"}
    config.write_text(
        yaml.safe_dump({"integrations": [{**MAUTIC_RAW, **drop}, {**MAILGUN_RAW, **drop}]}), encoding="utf-8"
    )
    event = {"type": "identify", "messageId": "out", "traits": {"email": "pat@example.com"}}
    lines, _ = run_preview(config, jsonl(tmp_path, {**event, "context": consent(marketing=False)}))
    assert [(line["action"], line["reason"], line["request"]) for line in lines] == [
        ("drop", "consent_denied", None)
    ] * 2
    assert all(set(line) == LINE_KEYS for line in lines)
