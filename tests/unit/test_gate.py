"""Drop reasons and their order: invalid_event, event_not_mapped, no_email, invalid_email, consent_denied."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from signal_sync.destinations.base import Request, consent_granted, gate
from signal_sync.destinations.operations import Calls
from signal_sync.identity import ResolvedEvent
from signal_sync.planner import plan_event
from signal_sync.preview import Previewer
from tests.unit.factories import MAILGUN_RAW, MAUTIC_RAW, Pipeline, consent, event, mailgun, mautic, settings

JANE = {"email": "jane@example.com"}
ANY_EVENTS = frozenset({"Identified", "page"})


DROP_WITHDRAWALS = {"on_consent_withdrawn": "drop"}


def reasons(raw: bytes, **options: Any) -> list[str | None]:
    """Preview's per-integration verdict for one raw line (Mautic, then Mailgun); withdrawals are
    dropped unless ``options`` say otherwise, as they were before they were propagated."""
    config = settings(
        {**MAUTIC_RAW, **DROP_WITHDRAWALS, **options}, {**MAILGUN_RAW, **DROP_WITHDRAWALS, **options}
    )
    return [line["reason"] for line in Previewer(config.integrations).preview(raw)]


def operations(raw: dict[str, Any], **options: Any) -> list[tuple[str, str | None, str | None]]:
    """Preview's (action, reason, operation) per integration, withdrawals propagated by default."""
    config = settings({**MAUTIC_RAW, **options}, {**MAILGUN_RAW, **options})
    lines = Previewer(config.integrations).preview(orjson.dumps(raw))
    return [(line["action"], line["reason"], line.get("operation")) for line in lines]


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"[]",
        orjson.dumps({"type": "screen", "event": "Order Completed"}),
        # Invalid even though it is also unmapped, email-less and consent-less: invalid comes first.
        orjson.dumps({"type": "track", "event": "Nope", "traits": "jane@example.com"}),
        orjson.dumps(
            {
                "type": "track",
                "event": "Signed Up",
                "context": {"consent": {"canonical": {"marketing": "no"}}},
            }
        ),
    ],
)
def test_invalid_event_comes_first_for_every_integration(raw: bytes) -> None:
    assert reasons(raw) == ["invalid_event", "invalid_event"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # not mapped (for both), no email, no consent → event_not_mapped
        ({"type": "track", "event": "Product Viewed"}, ["event_not_mapped", "event_not_mapped"]),
        # Lead Captured: Mautic maps it, Mailgun does not; no email, no consent
        ({"type": "track", "event": "Lead Captured"}, ["no_email", "event_not_mapped"]),
        # Order Completed: Mailgun maps it, Mautic does not
        (
            {"type": "track", "event": "Order Completed", "traits": JANE},
            ["event_not_mapped", "consent_denied"],
        ),
        # mapped, no email, consent denied → no_email
        ({"type": "page", "context": consent(marketing=False)}, ["no_email", "no_email"]),
        # mapped, invalid email, consent denied → invalid_email
        (
            {"type": "identify", "traits": {"email": "jane@"}, "context": consent(marketing=False)},
            ["invalid_email"] * 2,
        ),
        # mapped, email, consent denied → consent_denied
        ({"type": "identify", "traits": JANE, "context": consent(marketing=False)}, ["consent_denied"] * 2),
        # mapped, email, consent granted → send
        ({"type": "identify", "traits": JANE, "context": consent(marketing=True)}, [None, None]),
    ],
)
def test_reason_order(raw: dict[str, Any], expected: list[str | None]) -> None:
    assert reasons(orjson.dumps(raw)) == expected


def test_gate_checks_mapping_before_email_before_consent() -> None:
    unmapped = ResolvedEvent(event(type="track", event="X"), {})
    assert gate(unmapped, ANY_EVENTS, ["marketing"]) == "event_not_mapped"
    no_email = ResolvedEvent(event(type="page"), {})
    assert gate(no_email, ANY_EVENTS, ["marketing"]) == "no_email"
    denied = ResolvedEvent(event(type="page"), JANE)
    assert gate(denied, ANY_EVENTS, ["marketing"]) == "consent_denied"
    granted = ResolvedEvent(event(type="page", context=consent(marketing=True)), JANE)
    assert gate(granted, ANY_EVENTS, ["marketing"]) is None


@pytest.mark.parametrize(
    ("required", "canonical", "granted"),
    [
        (["marketing"], {"marketing": True}, True),
        (["marketing"], {"marketing": False}, False),
        (["marketing"], {}, False),
        (["marketing"], {"analytics": True}, False),
        (["marketing", "analytics"], {"marketing": True}, False),
        (["marketing", "analytics"], {"marketing": True, "analytics": False}, False),
        (["marketing", "analytics"], {"marketing": True, "analytics": True}, True),
        ([], {}, True),
        ([], {"marketing": False}, True),
    ],
)
def test_consent_granted(required: list[str], canonical: dict[str, bool], granted: bool) -> None:
    resolved = ResolvedEvent(event(type="identify", context=consent(**canonical)), JANE)
    assert consent_granted(resolved, required) is granted


def test_default_consent_is_marketing() -> None:
    pipeline = Pipeline(mautic(), mailgun())
    assert pipeline.run({"type": "identify", "traits": JANE}) == {
        "mautic-main": "consent_denied",
        "mailgun-news": "consent_denied",
    }


def test_missing_consent_section_is_consent_denied() -> None:
    result = Pipeline().run({"type": "identify", "traits": JANE, "context": {"ip": "203.0.113.50"}})
    assert set(result.values()) == {"consent_denied"}


def test_empty_consent_list_disables_gating() -> None:
    result = Pipeline(mautic(consent=[]), mailgun(consent=[])).run(
        {"type": "identify", "traits": JANE, "context": consent(marketing=False)}
    )
    assert all(not isinstance(value, str) for value in result.values())


def test_gating_is_per_integration() -> None:
    pipeline = Pipeline(
        mautic(consent=["analytics"], on_consent_withdrawn="drop"), mailgun(consent=["marketing"])
    )
    result = pipeline.run(
        {"type": "identify", "traits": JANE, "context": consent(marketing=True, analytics=False)}
    )
    assert result["mautic-main"] == "consent_denied"
    assert not isinstance(result["mailgun-news"], str)


def test_plan_keeps_config_order_and_lists_targets() -> None:
    integrations = [mailgun(consent=[]), mautic(consent=[])]
    plan = plan_event(event(type="track", event="Lead Captured", traits=JANE), integrations, {})
    assert [(i.id, reason) for i, reason in plan.decisions] == [
        (MAILGUN_RAW["id"], "event_not_mapped"),
        (MAUTIC_RAW["id"], None),
    ]
    assert [i.id for i in plan.to_send] == [MAUTIC_RAW["id"]]


WITHDRAW = ("send", None, "withdraw_consent")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # explicitly false with a valid email: a withdrawal for every integration, mapped or not
        ({"type": "identify", "traits": JANE, "context": consent(marketing=False)}, [WITHDRAW] * 2),
        (
            {"type": "track", "event": "Product Viewed", "traits": JANE, "context": consent(marketing=False)},
            [WITHDRAW] * 2,
        ),
        # missing or unknown consent is not a withdrawal
        ({"type": "identify", "traits": JANE}, [("drop", "consent_denied", None)] * 2),
        (
            {"type": "track", "event": "Product Viewed", "traits": JANE, "context": consent(analytics=False)},
            [("drop", "event_not_mapped", None)] * 2,
        ),
        # no email, or one the destinations do not take: nothing to withdraw
        ({"type": "page", "context": consent(marketing=False)}, [("drop", "no_email", None)] * 2),
        (
            {"type": "identify", "traits": {"email": "jane@"}, "context": consent(marketing=False)},
            [("drop", "invalid_email", None)] * 2,
        ),
    ],
)
def test_a_withdrawn_category_with_a_valid_email_is_a_withdrawal_before_any_other_check(
    raw: dict[str, Any], expected: list[tuple[str, str | None, str | None]]
) -> None:
    assert operations(raw) == expected


def test_drop_keeps_a_withdrawal_a_consent_denied_drop() -> None:
    raw = {"type": "identify", "traits": JANE, "context": consent(marketing=False)}
    assert operations(raw, on_consent_withdrawn="drop") == [("drop", "consent_denied", None)] * 2


def test_withdrawal_is_per_integration_and_category() -> None:
    pipeline = Pipeline(mautic(consent=["analytics"]), mailgun(consent=["marketing"]))
    result = pipeline.run(
        {"type": "identify", "traits": JANE, "context": consent(marketing=True, analytics=False)}
    )
    assert isinstance(result["mautic-main"], Calls) and result["mautic-main"].operation == "withdraw_consent"
    assert isinstance(result["mailgun-news"], Request)
    both = Pipeline(mautic(consent=["marketing", "analytics"]), mailgun(consent=[]))
    result = both.run(
        {"type": "identify", "traits": JANE, "context": consent(marketing=True, analytics=False)}
    )
    assert isinstance(result["mautic-main"], Calls), "one withdrawn category of several is a withdrawal"
    assert isinstance(result["mailgun-news"], Request), "no category required: nothing to withdraw"
