"""Mautic segments (issue #21): which events add to which segment, one call per segment per batch
(bulk for several contacts, single for one), per-contact ``details``, and which answers fail the
event rather than pausing the integration (a deleted segment, an unpublished one, a contact gone)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from signal_sync.config import load_settings
from signal_sync.destinations import destination_of, mautic_segments
from signal_sync.destinations.base import Request
from signal_sync.destinations.classify import Verdict, classify_member, classify_status
from signal_sync.destinations.delivery import Attempt, DeliveryResult, result_of
from signal_sync.engine.batch_send import make_send_batch
from signal_sync.engine.batcher import Group
from signal_sync.engine.gate import IntegrationGate, send_through_gate
from signal_sync.engine.jobs import ContactStates, Job, Jobs
from signal_sync.errors import ConfigError
from signal_sync.identity import ResolvedEvent
from tests.unit.factories import MAILGUN_RAW, MAUTIC_RAW, consent, event, mautic

NEWSLETTER, TRIAL = 4, 7
SEGMENTS = {"Signed Up": TRIAL, "*": NEWSLETTER}
NOT_FOUND = orjson.dumps({"errors": [{"code": 404, "message": "Item was not found.", "details": []}]})
CONTACT_GONE = orjson.dumps({"errors": [{"code": 404, "message": "Contact not found.", "details": []}]})
DENIED = orjson.dumps(
    {"errors": [{"code": 403, "message": "You do not have access to the requested area/action."}]}
)
NO_ROUTE = orjson.dumps({"errors": [{"code": 404, "message": "Requested URL not found: /api/x"}]})


# --- config -----------------------------------------------------------------------------------


def load(tmp_path: Path, **mautic_fields: Any) -> Any:
    config = {"integrations": [{**MAUTIC_RAW, **mautic_fields}, MAILGUN_RAW]}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return load_settings(path, environ={})


def test_each_event_adds_to_its_own_segment_then_the_star_segment(tmp_path: Path) -> None:
    integration = load(tmp_path, segments=SEGMENTS).integrations[0]
    assert integration.segment_plan == {
        "Identified": (NEWSLETTER,),
        "Lead Captured": (NEWSLETTER,),
        "Signed Up": (TRIAL, NEWSLETTER),
        "page": (NEWSLETTER,),
    }
    assert mautic_segments.wanted(integration, "Signed Up") == (TRIAL, NEWSLETTER)
    assert mautic_segments.wanted(integration, "Order Completed") == ()


def test_without_segments_the_plan_is_empty_and_jobs_do_no_segment_work(tmp_path: Path) -> None:
    integration = load(tmp_path).integrations[0]
    assert integration.segments == {} and integration.segment_plan == {}
    jobs = Jobs(integration, ContactStates(integration, {}), MauticWorld().send)
    assert jobs.segments is None


def test_an_event_added_by_the_events_block_may_have_a_segment(tmp_path: Path) -> None:
    integration = load(
        tmp_path, events={"Order Completed": {}}, segments={"Order Completed": 9}
    ).integrations[0]
    assert integration.segment_plan == {"Order Completed": (9,)}


SEGMENT_ERRORS = [
    ({"Foo": 3}, "integrations[0].segments.Foo: 'Foo' is not an event this integration takes"),
    ({"identify": 3}, "integrations[0].segments.identify: 'identify' is not an event"),
    ({"page": 0}, "integrations[0].segments.page: Input should be greater than 0"),
    ({"page": -2}, "integrations[0].segments.page: Input should be greater than 0"),
    ({"page": True}, "integrations[0].segments.page: a segment id is a positive integer, not a boolean"),
    ({"page": 1.5}, "integrations[0].segments.page: Input should be a valid integer"),
    ({"page": "news"}, "integrations[0].segments.page: Input should be a valid integer"),
]


@pytest.mark.parametrize(("segments", "message"), SEGMENT_ERRORS, ids=[m for _, m in SEGMENT_ERRORS])
def test_a_segments_mistake_fails_at_start_naming_the_field(
    tmp_path: Path, segments: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, segments=segments)
    assert message in str(caught.value)


def test_a_segment_for_an_event_the_events_block_removed_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"integrations\[0\]\.segments\.page: 'page' is not an event"):
        load(tmp_path, events={"page": None}, segments={"page": 3})


def test_mailgun_has_no_segments(tmp_path: Path) -> None:
    config = {"integrations": [MAUTIC_RAW, {**MAILGUN_RAW, "segments": {"*": 1}}]}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"integrations\[1\]\.segments: Extra inputs"):
        load_settings(path, environ={})


# --- classify -----------------------------------------------------------------------------------


def segment_answer(status: int, body: bytes) -> Any:
    return classify_status(status, {}, 0.0, refused=mautic_segments.refusal(body))


def test_a_missing_segment_fails_the_event_and_is_no_fault_nor_an_outage() -> None:
    decision = segment_answer(404, NOT_FOUND)
    assert (decision.verdict, decision.reason, decision.destination_down) == (
        Verdict.FAILED,
        "segment_not_found",
        False,
    )


def test_a_404_for_the_contact_is_told_apart_from_one_for_the_segment() -> None:
    assert segment_answer(404, CONTACT_GONE).reason == "segment_contact_not_found"
    assert segment_answer(404, CONTACT_GONE).verdict is Verdict.FAILED


def test_an_unpublished_segment_403_fails_the_event() -> None:
    decision = segment_answer(403, DENIED)
    assert (decision.verdict, decision.reason) == (Verdict.FAILED, "segment_forbidden")


@pytest.mark.parametrize("body", [NO_ROUTE, b"<html>Not Found</html>", b""])
def test_a_404_that_names_no_segment_is_still_a_fault_of_the_integration(body: bytes) -> None:
    assert segment_answer(404, body).verdict is Verdict.FAULT


def test_a_segment_call_that_meets_an_outage_is_retried_and_a_401_is_a_fault() -> None:
    assert segment_answer(503, NOT_FOUND).verdict is Verdict.RETRY  # the body does not matter then
    assert segment_answer(401, DENIED).verdict is Verdict.FAULT


@given(st.binary(max_size=300))
def test_the_refusal_reader_takes_any_body(body: bytes) -> None:
    assert mautic_segments.refusal(body) in (None, *mautic_segments.REASONS)


@given(st.text(max_size=80))
def test_only_mauticss_own_messages_are_a_refusal(message: str) -> None:
    body = orjson.dumps({"errors": [{"code": 404, "message": message}]})
    known = {
        "Item was not found.",
        "Contact not found.",
        "You do not have access to the requested area/action.",
    }
    assert (mautic_segments.refusal(body) is not None) == (message in known)


def test_a_bulk_members_flags_are_classified_one_by_one() -> None:
    assert classify_member(True).verdict is Verdict.DELIVERED
    assert (classify_member(False).verdict, classify_member(False).reason) == (
        Verdict.FAILED,
        "segment_add_refused",
    )
    assert classify_member(None).verdict is Verdict.RETRY


@given(st.lists(st.integers(1, 10**9), unique=True, max_size=20), st.data())
def test_members_added_reads_details_keyed_by_contact_id(contacts: list[int], data: st.DataObject) -> None:
    flags = {c: data.draw(st.sampled_from([True, False, None])) for c in contacts}
    details = {str(c): {"success": flag} for c, flag in flags.items() if flag is not None}
    reply = orjson.dumps({"success": 1, "details": details or []})
    assert mautic_segments.members_added(reply, contacts) == [flags[c] for c in contacts]


async def test_a_missing_segment_neither_pauses_the_integration_nor_counts_for_its_circuit() -> None:
    integration = mautic(segments=SEGMENTS)
    gate = IntegrationGate(integration.id, failure_threshold=1)

    class Sender:
        async def deliver(self, integration: Any, request: Request, watch: Any = None) -> DeliveryResult:
            attempt = Attempt(segment_answer(404, NOT_FOUND), 404, NOT_FOUND)
            watch.attempted(attempt.classification)
            return result_of(attempt, 1, destination_of(integration))

    request = mautic_segments.single_add_request(integration, NEWSLETTER, 12)
    result = await send_through_gate(Sender(), gate, integration, request)  # type: ignore[arg-type]
    assert (result.status, result.reason, result.fault) == ("failed", "segment_not_found", False)
    assert not gate.state.paused


# --- planning and sending -------------------------------------------------------------------------

_SINGLE_ADD = re.compile(r"^/api/segments/(\d+)/contact/(\d+)/add$")
_BULK_ADD = re.compile(r"^/api/segments/(\d+)/contacts/add$")


class MauticWorld:
    """Answers like Mautic (contacts by email; segments that exist and members they refuse); every
    answer goes through the real ``classify`` and ``result_of``. Records each call in order."""

    def __init__(self, segments: set[int] | None = None) -> None:
        self.ids: dict[str, int] = {}
        self.segments = {NEWSLETTER, TRIAL} if segments is None else segments
        self.refuse: set[int] = set()
        self.silent: set[int] = set()
        self.members: dict[int, set[int]] = {}
        self.calls: list[tuple[str, Any]] = []

    def contact(self, email: str) -> tuple[int, int]:
        created = email not in self.ids
        self.ids.setdefault(email, 100 + len(self.ids))
        return self.ids[email], 201 if created else 200

    def answer(self, request: Request) -> tuple[int, Any]:
        path = urlsplit(request.url).path
        if path == "/api/contacts/batch/new":
            assert isinstance(request.json, list)
            self.calls.append(("upsert", [body["email"] for body in request.json]))
            made = [self.contact(body["email"]) for body in request.json]
            return 201, {"statusCodes": [s for _, s in made], "contacts": [{"id": i} for i, _ in made]}
        if path == "/api/contacts/new":
            assert isinstance(request.json, dict)
            self.calls.append(("upsert", [request.json["email"]]))
            contact, status = self.contact(request.json["email"])
            return status, {"contact": {"id": contact}}
        if match := _SINGLE_ADD.match(path):
            segment, contact = int(match[1]), int(match[2])
            self.calls.append(("add", segment, [contact]))
            if segment not in self.segments:
                return 404, orjson.loads(NOT_FOUND)
            if contact in self.refuse:
                return 404, orjson.loads(CONTACT_GONE)
            self.members.setdefault(segment, set()).add(contact)
            return 200, {"success": 1}
        if match := _BULK_ADD.match(path):
            segment = int(match[1])
            assert isinstance(request.json, dict)
            ids = request.json["ids"]
            self.calls.append(("bulk", segment, ids))
            if segment not in self.segments:
                return 404, orjson.loads(NOT_FOUND)
            details = {}
            for contact in ids:
                if contact in self.silent:
                    continue
                ok = contact not in self.refuse
                if ok:
                    self.members.setdefault(segment, set()).add(contact)
                details[str(contact)] = {"success": ok}
            return 200, {"success": 1, "details": details}
        self.calls.append((request.method, path))
        return 200, {"contact": {"id": 1}}

    def result(self, request: Request) -> DeliveryResult:
        status, body = self.answer(request)
        reply = orjson.dumps(body)
        refused = request.refused(reply) if request.refused is not None else None
        decision = classify_status(status, {}, 0.0, reports_created=True, refused=refused)
        return result_of(Attempt(decision, status, reply), 1, destination_of(mautic()))

    async def send(self, request: Request) -> DeliveryResult:
        return self.result(request)

    async def deliver(self, integration: Any, request: Request, watch: Any = None) -> DeliveryResult:
        return self.result(request)


def track(email: str, name: str, *, granted: bool = True) -> Job:
    raw = event(type="track", event=name, context=consent(marketing=granted))
    return Job(ResolvedEvent(raw, {"email": email}), "upsert" if granted else "withdraw_consent")


def jobs_for(world: MauticWorld, **overrides: Any) -> Jobs:
    integration = mautic(**({"segments": SEGMENTS} | overrides))
    send_entries = make_send_batch(world, IntegrationGate("g"), integration, 200)  # type: ignore[arg-type]
    return Jobs(integration, ContactStates(integration, {}), world.send, send_entries)


async def test_a_batch_adds_its_contacts_with_one_bulk_call_per_segment_after_the_upserts() -> None:
    world = MauticWorld()
    jobs = jobs_for(world)
    groups = [
        Group("a", [track("a@example.com", "Signed Up")]),
        Group("b", [track("b@example.com", "Signed Up")]),
        Group("c", [track("c@example.com", "Lead Captured")]),
    ]
    results = await jobs.send_batch(groups)

    a, b, c = world.ids["a@example.com"], world.ids["b@example.com"], world.ids["c@example.com"]
    assert world.calls[0] == ("upsert", ["a@example.com", "b@example.com", "c@example.com"])
    assert sorted(world.calls[1:]) == [("bulk", NEWSLETTER, [a, b, c]), ("bulk", TRIAL, [a, b])]
    assert [(r.status, r.segments_added, r.created) for (r,) in results] == [
        ("delivered", (TRIAL, NEWSLETTER), True),
        ("delivered", (TRIAL, NEWSLETTER), True),
        ("delivered", (NEWSLETTER,), True),
    ]
    assert world.members == {NEWSLETTER: {a, b, c}, TRIAL: {a, b}}


async def test_one_contact_alone_in_a_segment_uses_the_single_add() -> None:
    world = MauticWorld()
    jobs = jobs_for(world, segments={"Signed Up": TRIAL})
    results = await jobs.send_batch(
        [Group("a", [track("a@example.com", "Signed Up")]), Group("b", [track("b@example.com", "page")])]
    )
    assert world.calls[1:] == [("add", TRIAL, [world.ids["a@example.com"]])]
    assert [(r.status, r.segments_added) for (r,) in results] == [
        ("delivered", (TRIAL,)),
        ("delivered", None),
    ]


async def test_a_contacts_two_events_in_one_segment_send_its_id_once() -> None:
    world = MauticWorld()
    jobs = jobs_for(world, segments={"*": NEWSLETTER})
    (results,) = await jobs.send_batch(
        [Group("a", [track("a@example.com", "Signed Up"), track("a@example.com", "Identified")])]
    )
    assert world.calls[1:] == [("add", NEWSLETTER, [world.ids["a@example.com"]])]
    assert [(r.status, r.segments_added) for r in results] == [("delivered", (NEWSLETTER,))] * 2


async def test_a_contact_the_bulk_add_refuses_fails_alone() -> None:
    world = MauticWorld()
    world.ids = {"a@example.com": 100, "b@example.com": 101}
    world.refuse = {101}
    jobs = jobs_for(world, segments={"*": NEWSLETTER})
    results = await jobs.send_batch(
        [Group("a", [track("a@example.com", "page")]), Group("b", [track("b@example.com", "page")])]
    )
    (a,), (b,) = results
    assert (a.status, a.segments_added) == ("delivered", (NEWSLETTER,))
    assert (b.status, b.reason, b.segments_added, b.created) == ("failed", "segment_add_refused", (), False)
    assert b.hint is not None and f"segment {NEWSLETTER}" in b.hint
    assert b.error is not None and "contact 101" in b.error


async def test_a_contact_the_bulk_answer_does_not_mention_is_added_again_alone() -> None:
    world = MauticWorld()
    world.ids = {"a@example.com": 100, "b@example.com": 101}
    world.silent = {101}
    jobs = jobs_for(world, segments={"*": NEWSLETTER})
    results = await jobs.send_batch(
        [Group("a", [track("a@example.com", "page")]), Group("b", [track("b@example.com", "page")])]
    )
    assert world.calls[1:] == [("bulk", NEWSLETTER, [100, 101]), ("add", NEWSLETTER, [101])]
    assert [(r.status, r.segments_added) for (r,) in results] == [("delivered", (NEWSLETTER,))] * 2


async def test_a_deleted_segment_fails_its_events_with_a_hint_and_the_other_segment_still_adds() -> None:
    world = MauticWorld(segments={NEWSLETTER})  # TRIAL was deleted in Mautic
    jobs = jobs_for(world)
    results = await jobs.send_batch(
        [
            Group("a", [track("a@example.com", "Signed Up")]),
            Group("b", [track("b@example.com", "Signed Up")]),
            Group("c", [track("c@example.com", "page")]),
        ]
    )
    (a,), (b,), (c,) = results
    for failed in (a, b):
        assert (failed.status, failed.reason, failed.http_status) == ("failed", "segment_not_found", 404)
        assert failed.segments_added == (NEWSLETTER,)
        assert failed.hint is not None and f"segment {TRIAL}" in failed.hint and "segments" in failed.hint
    assert (c.status, c.segments_added) == ("delivered", (NEWSLETTER,))
    kept = jobs.states.get(track("a@example.com", "page").contact)
    assert kept == {"id": world.ids["a@example.com"]}, "the upsert's contact id is kept"


async def test_an_unpublished_segment_fails_the_event_alone() -> None:
    world = MauticWorld()

    def denied(request: Request) -> DeliveryResult:
        decision = classify_status(403, {}, 0.0, refused=mautic_segments.refusal(DENIED))
        return result_of(Attempt(decision, 403, DENIED), 1, destination_of(mautic()))

    async def send(request: Request) -> DeliveryResult:
        return denied(request) if "/api/segments/" in request.url else world.result(request)

    integration = mautic(segments={"page": NEWSLETTER})
    jobs = Jobs(integration, ContactStates(integration, {}), send)
    done = await jobs.run(track("a@example.com", "page"))
    assert (done.status, done.reason, done.http_status, done.segments_added) == (
        "failed",
        "segment_forbidden",
        403,
        (),
    )
    assert done.hint is not None and "unpublished" in done.hint


async def test_alone_an_upsert_is_followed_by_its_segment_adds_in_order() -> None:
    world = MauticWorld()
    integration = mautic(segments=SEGMENTS)
    jobs = Jobs(integration, ContactStates(integration, {}), world.send)
    done = await jobs.run(track("a@example.com", "Signed Up"))
    contact = world.ids["a@example.com"]
    assert world.calls == [
        ("upsert", ["a@example.com"]),
        ("add", TRIAL, [contact]),
        ("add", NEWSLETTER, [contact]),
    ] or world.calls == [
        ("upsert", ["a@example.com"]),
        ("add", NEWSLETTER, [contact]),
        ("add", TRIAL, [contact]),
    ]
    assert (done.status, done.segments_added, done.attempts) == ("delivered", (TRIAL, NEWSLETTER), 3)


async def test_a_withdrawal_adds_to_no_segment_and_goes_after_the_batchs_segment_adds() -> None:
    world = MauticWorld()
    jobs = jobs_for(world, segments={"*": NEWSLETTER})
    (results,) = await jobs.send_batch(
        [Group("a", [track("a@example.com", "page"), track("a@example.com", "page", granted=False)])]
    )
    contact = world.ids["a@example.com"]
    kinds = [call[0] for call in world.calls]
    assert kinds[:2] == ["upsert", "add"] and world.calls[1] == ("add", NEWSLETTER, [contact])
    assert all(kind not in ("add", "bulk") for kind in kinds[2:]), "the withdrawal adds nothing"
    assert [(r.operation, r.segments_added) for r in results] == [
        ("upsert", (NEWSLETTER,)),
        ("withdraw_consent", None),
    ]


async def test_an_upsert_that_failed_adds_to_no_segment() -> None:
    integration = mautic(segments={"*": NEWSLETTER})
    calls: list[str] = []

    async def send(request: Request) -> DeliveryResult:
        calls.append(request.url)
        return DeliveryResult("failed", 422, None, 1, "http_422", "bad", None)

    done = await Jobs(integration, ContactStates(integration, {}), send).run(track("a@example.com", "page"))
    assert (done.status, done.reason, done.segments_added) == ("failed", "http_422", None)
    assert calls == ["https://mautic.example.com/api/contacts/new"]


# --- test-connection and preview ----------------------------------------------------------------


def test_test_connection_reports_a_missing_and_an_unpublished_segment_with_hints(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from signal_sync.cli.main import app
    from signal_sync.sandbox import mautic as sandbox_mautic
    from signal_sync.sandbox import start_in_thread

    crm_app = sandbox_mautic.create_app(
        username="signal",
        password="pw",
        segments=["Newsletter", {"name": "Archive", "isPublished": False}],
    )
    with start_in_thread(crm_app) as crm:
        integration = {
            "id": "mautic-main",
            "type": "mautic",
            "base_url": crm.url,
            "api_user": "signal",
            "api_password": "pw",
            "segments": {"*": 1, "Signed Up": 2, "page": 9},
        }
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump({"integrations": [integration]}), encoding="utf-8")
        result = CliRunner().invoke(app, ["test-connection", "-c", str(path)])
    lines = result.output.splitlines()
    assert result.exit_code == 1, lines
    assert lines[0] == "OK mautic-main"
    assert lines[1].startswith("FAIL mautic-main: segments.Signed Up: segment 2 is unpublished")
    assert lines[2].startswith("FAIL mautic-main: segments.page: HTTP 404: Mautic has no segment 9")
    assert "segments config" in lines[2] and len(lines) == 3


def test_preview_shows_the_upsert_then_one_add_per_segment_and_nothing_more_without_segments() -> None:
    from signal_sync.preview import Previewer

    raw = orjson.dumps(
        {
            "type": "track",
            "event": "Signed Up",
            "message_id": "m1",
            "traits": {"email": "a@example.com"},
            "context": consent(marketing=True),
        }
    )
    (line,) = Previewer([mautic(segments=SEGMENTS)]).preview(raw)
    assert [
        (call["method"], call["url"].removeprefix("https://mautic.example.com")) for call in line["calls"]
    ] == [
        ("POST", "/api/contacts/new"),
        ("POST", f"/api/segments/{TRIAL}/contact/{{contact_id}}/add"),
        ("POST", f"/api/segments/{NEWSLETTER}/contact/{{contact_id}}/add"),
    ]
    assert line["request"] == line["calls"][0]
    (plain,) = Previewer([mautic()]).preview(raw)
    assert "calls" not in plain and plain["request"] == line["request"]
