"""Field and event mapping in the config (issue #21): every mistake fails at start naming the field,
and ``check-config`` prints the resolved mapping, defaults included."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from signal_sync.cli.main import app
from signal_sync.config import load_settings
from signal_sync.errors import ConfigError
from signal_sync.field_mapping.sources import Const, parse_source
from signal_sync.field_mapping.sources import Path as SourcePath
from tests.unit.factories import MAILGUN_RAW, MAUTIC_RAW


def load(tmp_path: Path, mautic: dict[str, Any] | None = None, mailgun: dict[str, Any] | None = None) -> Any:
    config = {"integrations": [{**MAUTIC_RAW, **(mautic or {})}, {**MAILGUN_RAW, **(mailgun or {})}]}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return load_settings(path, environ={})


def error(tmp_path: Path, **blocks: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, **blocks)
    return str(caught.value)


MAUTIC_ERRORS = [
    ({"company": "foo.bar"}, "integrations[0].mapping.company: unknown source root 'foo'"),
    ({"company": "traits"}, "integrations[0].mapping.company: 'traits' is the whole traits object"),
    ({"x": "event.name"}, "integrations[0].mapping.x: 'event.name' goes below event, which is text"),
    ({"x": "userId.x"}, "integrations[0].mapping.x: 'userId.x' goes below user_id, which is text"),
    ({"x": "traits.email.domain"}, "goes below traits.email, which is text"),
    ({"x": "context.ip.v4"}, "goes below context.ip, which is text"),
    ({"x": "context.campaign.name.first"}, "goes below context.campaign.name, which is text"),
    ({"x": "context.consent.canonical.marketing.x"}, "goes below a consent category"),
    ({"x": "context.library.name"}, "'context.library.name' is not kept by the event model"),
    ({"x": "context.traits.plan"}, "context.traits are merged into traits; write traits.plan"),
    ({"x": "traits.firstName"}, "traits are kept in snake_case; write traits.first_name"),
    ({"x": "traits..plan"}, "is not a path"),
    ({"x": "traits. plan"}, "is not a path"),
    ({"x": 5}, "a source is a path string, {const: <value>} or a list of them, not int"),
    ({"x": []}, "an empty list maps nothing"),
    ({"x": [["traits.a"]]}, "a list of sources holds paths and {const: ...}, not a list"),
    ({"x": {"const": " "}}, "a constant must not be blank"),
    ({"x": {"const": None}}, "a constant is a non-blank string, a finite number or a boolean"),
    ({"x": {"const": "a", "other": 1}}, "a constant is written {const: <value>} with no other key"),
    ({"email": "traits.work_email"}, "integrations[0].mapping.email: email is signal-sync's own field"),
    ({"tags": "traits.segment"}, "integrations[0].mapping.tags: tags is signal-sync's own field"),
    ({"ipAddress": "traits.ip"}, "integrations[0].mapping.ipAddress: ipAddress is signal-sync's own field"),
    ({"email": None}, "integrations[0].mapping.email: email is signal-sync's own field"),
    ({"doNotContact": "traits.dnc"}, "integrations[0].mapping.doNotContact: doNotContact cannot be mapped"),
    ({"overwriteWithBlank": {"const": True}}, "overwriteWithBlank cannot be mapped"),
    ({"Company Size": "traits.size"}, "integrations[0].mapping.Company Size: 'Company Size' is not a Mautic"),
    ({"lastActive": "traits.seen"}, "integrations[0].mapping.lastActive: lastActive can only be dropped"),
    ({"fax": None}, "integrations[0].mapping.fax: null drops a default field, and fax is not one"),
]


@pytest.mark.parametrize(("mapping", "message"), MAUTIC_ERRORS, ids=[m for _, m in MAUTIC_ERRORS])
def test_a_mautic_mapping_mistake_fails_at_start_naming_the_field(
    tmp_path: Path, mapping: dict[str, Any], message: str
) -> None:
    assert message in error(tmp_path, mautic={"mapping": mapping})


MAILGUN_ERRORS = [
    ({"address": "traits.work_email"}, "integrations[1].mapping.address: address is signal-sync's own field"),
    ({"subscribed": {"const": True}}, "integrations[1].mapping.subscribed: subscribed is signal-sync's own"),
    ({"upsert": None}, "integrations[1].mapping.upsert: upsert is signal-sync's own field"),
    ({"vars": "properties.vars"}, "integrations[1].mapping.vars: vars holds the member's custom variables"),
    ({"vars.": "traits.x"}, "integrations[1].mapping.vars.: 'vars.' is not a Mailgun member field"),
    ({"plan": "traits.plan"}, "integrations[1].mapping.plan: 'plan' is not a Mailgun member field"),
    ({"vars.nope": None}, "integrations[1].mapping.vars.nope: null drops a default field"),
]


@pytest.mark.parametrize(("mapping", "message"), MAILGUN_ERRORS, ids=[m for _, m in MAILGUN_ERRORS])
def test_a_mailgun_mapping_mistake_fails_at_start_naming_the_field(
    tmp_path: Path, mapping: dict[str, Any], message: str
) -> None:
    assert message in error(tmp_path, mailgun={"mapping": mapping})


EVENT_ERRORS = [
    ({"identify": {}}, "integrations[0].events.identify: events are named as outcomes name them"),
    ({" page": {}}, "integrations[0].events. page: an event name is non-blank text"),
    (
        {"Signed Up": {"mapping": {"signal_lead_source": None}}},
        "integrations[0].events.Signed Up.mapping.signal_lead_source: null drops a field Signed Up sends",
    ),
    (
        {"Order Completed": {"mapping": {"tags": "traits.t"}}},
        "integrations[0].events.Order Completed.mapping.tags: tags is signal-sync's own field",
    ),
    (
        {"Order Completed": {"mapping": {"x": "order.id"}}},
        "integrations[0].events.Order Completed.mapping.x: unknown source root 'order'",
    ),
    ({"Order Completed": {"fields": {}}}, "integrations[0].events.Order Completed.fields: Extra inputs"),
    (
        {name: None for name in ("page", "Identified", "Signed Up", "Lead Captured")},
        "integrations[0].events: leaves the integration no event to take",
    ),
]


@pytest.mark.parametrize(("events", "message"), EVENT_ERRORS, ids=[m for _, m in EVENT_ERRORS])
def test_an_events_mistake_fails_at_start_naming_the_event(
    tmp_path: Path, events: dict[str, Any], message: str
) -> None:
    assert message in error(tmp_path, mautic={"events": events})


def test_per_event_null_may_drop_a_field_the_integration_mapping_adds(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        mautic={
            "mapping": {"signal_channel": {"const": "web"}},
            "events": {"page": {"mapping": {"signal_channel": None}}},
        },
    )
    edits = settings.integrations[0].field_mapping.edits_for("page")
    assert [(edit.field, edit.get) for edit in edits] == [("signal_channel", None)]


def test_the_blocks_round_trip_through_the_dumped_config(tmp_path: Path) -> None:
    mapping = {"a": "traits.a", "b": {"const": 2}, "c": ["properties.c", {"const": "x"}], "phone": None}
    settings = load(tmp_path, mautic={"mapping": mapping, "events": {"page": None, "X": {}}})
    dumped = settings.integrations[0].model_dump(mode="json")
    assert dumped["mapping"] == mapping
    assert dumped["events"] == {"page": None, "X": {"mapping": {}}}


# --- the path parser, generated --------------------------------------------------------------

SEGMENT = st.text(min_size=1, max_size=6).filter(lambda s: "." not in s and s == s.strip())


@given(st.sampled_from(["traits", "properties"]), st.lists(SEGMENT, min_size=1, max_size=4))
def test_any_key_path_below_traits_or_properties_parses_to_its_keys(root: str, keys: list[str]) -> None:
    text = ".".join((root, *keys))
    if root == "traits" and (
        keys[0] in ("firstName", "lastName", "postalCode") or (keys[0] == "email" and len(keys) > 1)
    ):
        with pytest.raises(ValueError):
            parse_source(text)
        return
    assert parse_source(text).choices == (SourcePath(root, tuple(keys)),)
    assert str(parse_source(text)) == text


@given(st.text(max_size=30))
def test_parsing_any_text_either_gives_a_path_or_a_value_error(text: str) -> None:
    try:
        parsed = parse_source(text)
    except ValueError:
        return
    assert str(parsed) == ".".join((parsed.choices[0].root, *parsed.choices[0].keys))  # type: ignore[union-attr]


@given(st.one_of(st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False)))
def test_scalar_constants_parse_to_themselves(value: Any) -> None:
    assert parse_source({"const": value}).choices == (Const(value),)


# --- check-config ----------------------------------------------------------------------------


def test_check_config_prints_every_field_with_its_source_defaults_included(tmp_path: Path) -> None:
    config = {
        "integrations": [
            {
                **MAUTIC_RAW,
                "mapping": {"company_size": "traits.company_size", "phone": None},
                "events": {"Order Completed": {"mapping": {"last_order_id": "properties.order_id"}}},
            },
            MAILGUN_RAW,
        ]
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")

    result = CliRunner().invoke(app, ["check-config", "-c", str(path)])

    assert result.exit_code == 0, result.output
    out = result.stdout
    mautic_part = out[
        out.index("resolved mapping of mautic-main (mautic)") : out.index("resolved mapping of mailgun")
    ]
    lines = [" ".join(line.split()) for line in mautic_part.splitlines()]
    assert "events: page, Identified, Signed Up, Lead Captured, Order Completed" in lines
    assert "email traits.email (lowercased, trimmed) [signal-sync]" in lines
    assert "firstname traits.first_name [default]" in lines
    assert "phone (dropped) [mapping]" in lines
    assert "company_size traits.company_size [mapping]" in lines
    assert "signal_signup_method properties.method [default]" in lines
    assert "last_order_id properties.order_id [events.Order Completed]" in lines
    mailgun_part = [
        " ".join(line.split()) for line in out[out.index("resolved mapping of mailgun") :].splitlines()
    ]
    assert "vars.plan traits.plan [default]" in mailgun_part
    assert "vars.anonymous_id anonymous_id [default]" in mailgun_part


def test_preview_shows_the_mapped_fields(tmp_path: Path) -> None:
    config = {
        "integrations": [
            {**MAUTIC_RAW, "consent": [], "mapping": {"company_size": "traits.company_size", "phone": None}},
            {**MAILGUN_RAW, "consent": [], "mapping": {"vars.plan_tier": "properties.plan"}},
        ]
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    event = {
        "type": "page",
        "messageId": "m-1",
        "traits": {"email": "jane@example.com", "phone": "+1 555", "company_size": 12},
        "properties": {"plan": "gold"},
    }
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps(event) + "\n", encoding="utf-8")

    result = CliRunner().invoke(app, ["preview", "-c", str(path), str(events)])

    assert result.exit_code == 0, result.output
    mautic_line, mailgun_line = (json.loads(line) for line in result.stdout.splitlines())
    assert mautic_line["request"]["json"] == {"email": "jane@example.com", "company_size": "12"}
    assert json.loads(mailgun_line["request"]["form"]["vars"]) == {"plan_tier": "gold"}
