"""Field and event mapping (issue #21): each rule of docs/mapping.md on the requests the worker
builds, the default tables kept in step with the seed-exact code, and generated events and
mappings that never raise and send exactly the mapped values."""

from __future__ import annotations

import string
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signal_sync.destinations import mailgun as mailgun_module
from signal_sync.destinations import mautic as mautic_module
from signal_sync.destinations.base import text
from signal_sync.field_mapping import MAILGUN, MAUTIC
from signal_sync.identity import stitch
from tests.unit.factories import (
    MAILGUN_SEED_FORM,
    MAUTIC_SEED_PAYLOAD,
    SEED_MAILGUN_IDENTIFY,
    SEED_MAUTIC_IDENTIFY,
    SEED_MAUTIC_SIGNED_UP,
    Pipeline,
    consent,
    event,
    mailgun,
    mautic,
)

JANE = {"email": "jane@example.com"}


def mautic_body(raw: dict[str, Any], **config: Any) -> dict[str, Any] | str:
    """The Mautic body for one event (consent gating off), or the drop reason."""
    result = Pipeline(mautic(consent=[], **config)).run(raw)["mautic-main"]
    if isinstance(result, str):
        return result
    assert result.json is not None and not isinstance(result.json, list)
    return result.json


def mailgun_form(pipeline: Pipeline, raw: dict[str, Any]) -> dict[str, Any]:
    request = pipeline.send(raw, "mailgun-news")
    assert request.form is not None
    return {**request.form, "vars": orjson.loads(request.form["vars"])}


def track(name: str, **fields: Any) -> dict[str, Any]:
    return {"type": "track", "event": name, "traits": JANE, **fields}


# --- the default stays the seed's ----------------------------------------------------------


def test_without_blocks_the_compiled_mapping_is_the_default() -> None:
    assert mautic().field_mapping.default and mailgun().field_mapping.default
    assert mautic().field_mapping.events == mautic_module.MAPPED_EVENTS
    assert mailgun().field_mapping.events == mailgun_module.MAPPED_EVENTS


def test_empty_blocks_are_the_default_too() -> None:
    pipeline = Pipeline(mautic(mapping={}, events={}))
    pipeline.run(SEED_MAUTIC_IDENTIFY)
    request = pipeline.send(SEED_MAUTIC_SIGNED_UP, "mautic-main")
    assert orjson.dumps(request.json) == orjson.dumps(MAUTIC_SEED_PAYLOAD)


def test_mapping_a_default_field_to_its_own_source_keeps_the_seed_request() -> None:
    """Mapping through the compiled path gives the same bytes as the default code path."""
    pipeline = Pipeline(mautic(mapping={"firstname": "traits.first_name"}))
    pipeline.run(SEED_MAUTIC_IDENTIFY)
    request = pipeline.send(SEED_MAUTIC_SIGNED_UP, "mautic-main")
    assert orjson.dumps(request.json) == orjson.dumps(MAUTIC_SEED_PAYLOAD)
    form = Pipeline(mailgun(mapping={"vars.plan": "traits.plan"})).send(SEED_MAILGUN_IDENTIFY, "mailgun-news")
    assert form.form == MAILGUN_SEED_FORM


RICH_TRAITS = {
    "email": "jane@example.com",
    "name": "Jane Doe",
    "first_name": "Jane",
    "last_name": "Doe",
    "phone": "+44 7700 900123",
    "company": "Acme",
    "city": "London",
    "state": "LDN",
    "postal_code": "N1",
    "country": "GB",
    "plan": "pro",
}
RICH_PROPERTIES = {
    "method": "email",
    "lead_source": "form",
    "url": "https://x.io/",
    "order_id": "o-1",
    "revenue": 9.5,
    "currency": "EUR",
}
RICH_CONTEXT = {
    "ip": "203.0.113.50",
    "page": {"url": "https://x.io/"},
    "campaign": {k: k for k in ("source", "medium", "name", "content", "term")},
    **consent(marketing=True),
}


def rich(name: str) -> Any:
    raw: dict[str, Any] = {
        "anonymousId": "anon-1",
        "timestamp": "2026-06-06T10:00:00Z",
        "traits": RICH_TRAITS,
        "properties": RICH_PROPERTIES,
        "context": RICH_CONTEXT,
    }
    if name == "Identified":
        raw["type"] = "identify"
    elif name == "page":
        raw["type"] = "page"
    else:
        raw |= {"type": "track", "event": name}
    return stitch(event(**raw), {})[0]


def test_the_mautic_table_lists_what_the_seed_code_sends_per_event() -> None:
    for name in MAUTIC.events:
        sent = list(mautic_module.contact_fields(rich(name)))
        assert sent == [item.field for item in MAUTIC.defaults_for(name)], name


def test_the_mailgun_table_lists_what_the_seed_code_sends_per_event() -> None:
    for name in MAILGUN.events:
        member = mailgun_module.member_entry(rich(name), {})
        sent = ["address", "name", "subscribed", *(f"vars.{key}" for key in member["vars"]), "upsert"]
        listed = [item.field for item in MAILGUN.defaults_for(name)]
        assert sorted(sent) == sorted(listed), name
        assert [f for f in sent if f.startswith("vars.")] == [f for f in listed if f.startswith("vars.")]


def test_the_tables_events_are_the_seed_events() -> None:
    assert frozenset(MAUTIC.events) == mautic_module.MAPPED_EVENTS
    assert frozenset(MAILGUN.events) == mailgun_module.MAPPED_EVENTS


# --- Mautic rules ----------------------------------------------------------------------------


def test_a_new_mautic_field_from_traits_is_sent_before_the_tags() -> None:
    raw = {"type": "identify", "traits": {**JANE, "company_size": 250}, "context": consent(marketing=True)}
    body = mautic_body(raw, mapping={"company_size": "traits.company_size"})
    assert body == {"email": "jane@example.com", "company_size": "250", "tags": ["signal-marketing-consent"]}
    assert list(body)[-1] == "tags"


def test_a_default_field_takes_its_mapped_source_in_its_place() -> None:
    raw = {"type": "identify", "traits": {**JANE, "first_name": "Jane", "company": "Old", "org": "New"}}
    body = mautic_body(raw, mapping={"company": "traits.org"})
    assert body == {"email": "jane@example.com", "firstname": "Jane", "company": "New"}


def test_a_mapped_source_that_finds_nothing_leaves_the_field_out() -> None:
    raw = {"type": "identify", "traits": {**JANE, "company": "Acme"}}
    body = mautic_body(raw, mapping={"company": "traits.org", "size": "properties.size.employees"})
    assert body == {"email": "jane@example.com"}


def test_null_drops_a_default_field() -> None:
    raw = {"type": "identify", "traits": {**JANE, "phone": "+1 555"}, "timestamp": "2026-06-06T10:00:00Z"}
    assert mautic_body(raw, mapping={"phone": None, "lastActive": None}) == {"email": "jane@example.com"}


def test_mapped_values_are_sent_as_text_as_the_default_fields_are() -> None:
    properties = {"n": 7, "f": 2.5, "yes": True, "blank": "  ", "obj": {"a": 1}, "list": [1], "pad": " x "}
    mapping = {key: f"properties.{key}" for key in properties}
    body = mautic_body({"type": "page", "traits": JANE, "properties": properties}, mapping=mapping)
    assert body == {"email": "jane@example.com", "n": "7", "f": "2.5", "yes": "true", "pad": "x"}


def test_constants_and_the_first_present_of_a_list() -> None:
    raw = {"type": "identify", "traits": {**JANE, "organization": "Acme", "company": " "}}
    body = mautic_body(
        raw,
        mapping={
            "company": ["traits.company", "traits.organization", {"const": "none"}],
            "signal_channel": {"const": "web"},
            "score": {"const": 3},
            "size": ["traits.size", {"const": "unknown"}],
        },
    )
    assert body == {
        "email": "jane@example.com",
        "company": "Acme",
        "signal_channel": "web",
        "score": "3",
        "size": "unknown",
    }


def test_context_and_top_level_sources() -> None:
    raw = {
        "type": "track",
        "event": "Signed Up",
        "userId": "u-1",
        "anonymousId": "a-1",
        "traits": JANE,
        "context": {
            "ip": "198.51.100.4",
            "page": {"url": "https://x.io/p"},
            "campaign": {"name": "spring"},
            **consent(marketing=True, analytics=False),
        },
    }
    mapping = {
        "c_name": "context.campaign.name",
        "c_page": "context.page.url",
        "c_ip": "context.ip",
        "c_analytics": "context.consent.canonical.analytics",
        "c_event": "event",
        "c_type": "type",
        "c_user": "userId",
        "c_anon": "anonymous_id",
        "signal_signup_method": None,
    }
    body = mautic_body(raw, mapping=mapping)
    assert isinstance(body, dict)
    assert {k: v for k, v in body.items() if k.startswith("c_")} == {
        "c_name": "spring",
        "c_page": "https://x.io/p",
        "c_ip": "198.51.100.4",
        "c_analytics": "false",
        "c_event": "Signed Up",
        "c_type": "track",
        "c_user": "u-1",
        "c_anon": "a-1",
    }
    assert "signal_signup_method" not in body


def test_nested_paths_walk_objects_and_stop_at_anything_else() -> None:
    properties = {"plan": {"tier": {"name": "gold"}}, "flat": "text", "items": [{"sku": "a"}]}
    mapping = {
        "tier": "properties.plan.tier.name",
        "below_text": "properties.flat.x",
        "in_list": "properties.items.0",
    }
    body = mautic_body({"type": "page", "traits": JANE, "properties": properties}, mapping=mapping)
    assert body == {"email": "jane@example.com", "tier": "gold"}


def test_stitched_traits_are_the_traits_a_path_reads() -> None:
    pipeline = Pipeline(mautic(consent=[], mapping={"company_size": "traits.company_size"}))
    pipeline.run({"type": "identify", "anonymousId": "a-9", "traits": {**JANE, "company_size": "50"}})
    request = pipeline.send({"type": "page", "anonymousId": "a-9"}, "mautic-main")
    assert request.json == {"email": "jane@example.com", "company_size": "50"}


def test_events_add_an_event_with_its_own_fields_and_narrow_others() -> None:
    config = {
        "events": {
            "Order Completed": {"mapping": {"last_order_id": "properties.order_id"}},
            "page": None,
        }
    }
    order = track("Order Completed", properties={"order_id": "o-7"})
    assert mautic_body(order, **config) == {"email": "jane@example.com", "last_order_id": "o-7"}
    assert mautic_body({"type": "page", "traits": JANE}, **config) == "event_not_mapped"
    assert mautic_body(track("Lead Captured", properties={"source": "ad"}), **config) == {
        "email": "jane@example.com",
        "signal_lead_source": "ad",
    }
    assert mautic_body(track("Order Completed"), **{}) == "event_not_mapped"


def test_a_per_event_field_is_sent_with_that_event_only_and_wins_over_the_integration_mapping() -> None:
    config = {
        "mapping": {"signal_channel": {"const": "web"}},
        "events": {
            "Signed Up": {"mapping": {"signal_channel": {"const": "signup"}, "signal_signup_method": None}},
        },
    }
    signed_up = mautic_body(track("Signed Up", properties={"method": "email"}), **config)
    assert signed_up == {"email": "jane@example.com", "signal_channel": "signup"}
    identify = mautic_body({"type": "identify", "traits": JANE}, **config)
    assert identify == {"email": "jane@example.com", "signal_channel": "web"}


def test_the_integration_mapping_replaces_a_per_event_default_everywhere() -> None:
    body = mautic_body(
        track("Signed Up", properties={"method": "email", "how": "google"}),
        mapping={"signal_signup_method": "properties.how"},
    )
    assert body == {"email": "jane@example.com", "signal_signup_method": "google"}


def test_a_mapped_batch_item_is_the_mapped_body() -> None:
    """Batched upserts take the same body as single ones (``Destination.upsert``)."""
    from signal_sync.destinations import mautic_privacy

    integration = mautic(consent=[], mapping={"company_size": "traits.size"})
    resolved = stitch(event(type="identify", traits={**JANE, "size": 9}), {})[0]
    upsert = mautic_privacy.upsert(resolved, integration, {})
    assert upsert.entry == {"email": "jane@example.com", "company_size": "9"}


# --- Mailgun rules ---------------------------------------------------------------------------


def test_a_mailgun_var_from_properties_merges_into_the_known_vars() -> None:
    pipeline = Pipeline(mailgun(mapping={"vars.plan_tier": "properties.plan"}))
    pipeline.run(SEED_MAILGUN_IDENTIFY)
    form = mailgun_form(
        pipeline,
        {
            "type": "track",
            "event": "Signed Up",
            "anonymousId": "a1b2c3",
            "properties": {"method": "email", "plan": "gold"},
            "context": consent(marketing=True),
        },
    )
    assert form["vars"] == {
        "first_name": "Jane",
        "last_name": "Doe",
        "plan": "pro",
        "company": "Acme Ltd",
        "anonymous_id": "a1b2c3",
        "signup_method": "email",
        "plan_tier": "gold",
    }


def test_mailgun_var_values_keep_numbers_and_booleans_and_send_the_rest_as_text() -> None:
    properties = {"n": 7, "f": 2.5, "yes": True, "blank": "", "obj": {"a": 1}, "pad": " x "}
    mapping = {f"vars.{key}": f"properties.{key}" for key in properties}
    pipeline = Pipeline(mailgun(consent=[], mapping=mapping))
    form = mailgun_form(pipeline, {"type": "page", "traits": JANE, "properties": properties})
    assert form["vars"] == {"n": 7, "f": 2.5, "yes": True, "pad": "x"}


def test_a_dropped_or_unfound_var_keeps_what_the_member_holds() -> None:
    pipeline = Pipeline(mailgun(mapping={"vars.plan": "properties.plan", "vars.company": None}))
    pipeline.run(SEED_MAILGUN_IDENTIFY)  # Identified: plan from properties (none), company dropped
    state = next(iter(pipeline.destination_state.values()))
    assert state == {"first_name": "Jane", "last_name": "Doe", "anonymous_id": "a1b2c3"}
    pipeline.destination_state = {
        key: {**value, "plan": "pro"} for key, value in pipeline.destination_state.items()
    }
    form = mailgun_form(pipeline, {**SEED_MAILGUN_IDENTIFY, "messageId": "again"})
    assert form["vars"]["plan"] == "pro" and "company" not in form["vars"]


def test_mailgun_name_can_be_mapped_or_dropped() -> None:
    mapped = Pipeline(mailgun(mapping={"name": ["traits.full_name", "traits.name"]}))
    raw = {**SEED_MAILGUN_IDENTIFY, "traits": {**SEED_MAILGUN_IDENTIFY["traits"], "full_name": "J. Doe"}}
    assert mailgun_form(mapped, raw)["name"] == "J. Doe"
    dropped = Pipeline(mailgun(mapping={"name": None}))
    assert "name" not in mailgun_form(dropped, SEED_MAILGUN_IDENTIFY)


def test_mailgun_events_narrow_and_extend() -> None:
    pipeline = Pipeline(
        mailgun(
            consent=[],
            events={"page": None, "Lead Captured": {"mapping": {"vars.lead": "properties.source"}}},
        )
    )
    assert pipeline.run({"type": "page", "traits": JANE})["mailgun-news"] == "event_not_mapped"
    form = mailgun_form(pipeline, track("Lead Captured", properties={"source": "ad"}))
    assert form["vars"] == {"lead": "ad"}


# --- generated events and mappings -------------------------------------------------------------

KEYS = st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=4)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=8,
)
PATHS = st.tuples(st.sampled_from(["traits", "properties"]), st.lists(KEYS, min_size=1, max_size=3))
FIELD_NAMES = st.text(alphabet=string.ascii_lowercase, min_size=3, max_size=8).map(lambda name: f"x_{name}")


def expected(raw: dict[str, Any], root: str, keys: list[str]) -> Any:
    value: Any = raw.get(root, {})
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    traits=st.dictionaries(KEYS, JSON, max_size=5),
    properties=st.dictionaries(KEYS, JSON, max_size=5),
    mapping=st.dictionaries(FIELD_NAMES, PATHS, min_size=1, max_size=4),
)
def test_generated_mappings_send_exactly_the_mapped_values_or_leave_the_field_out(
    traits: dict[str, Any], properties: dict[str, Any], mapping: dict[str, tuple[str, list[str]]]
) -> None:
    traits = {key: value for key, value in traits.items() if key not in ("email", "first_name", "last_name")}
    raw = {"type": "page", "traits": {**traits, **JANE}, "properties": properties}
    decoded = orjson.loads(orjson.dumps(raw))  # as the worker reads it
    own_traits = {
        key: value
        for key, value in decoded["traits"].items()
        if text(value) is not None or isinstance(value, dict | list)
    }
    config = {field: ".".join((root, *keys)) for field, (root, keys) in mapping.items()}

    body = mautic_body(raw, mapping=config)
    form = mailgun_form(
        Pipeline(mailgun(consent=[], mapping={f"vars.{k}": v for k, v in config.items()})), raw
    )

    assert isinstance(body, dict)
    for field, (root, keys) in mapping.items():
        source = {"traits": own_traits, "properties": decoded["properties"]}
        value = expected(source, root, keys)
        shown = text(value)
        if shown is None:
            assert field not in body and field not in form["vars"]
        else:
            assert body[field] == shown
            assert form["vars"][field] == (value if isinstance(value, int | float) else shown)
