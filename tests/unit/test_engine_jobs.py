"""``engine.jobs``: a batch keeps each contact's order when a withdrawal or re-grant sits between its
upserts (the upserts before it go in the bulk call, it and the operations right after it go alone,
and the upserts after those go in the batcher's next batch, each planned with the state the earlier
ones left), and the state read from the answers is kept."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import pytest

from signal_sync.destinations import mailgun_privacy
from signal_sync.destinations.base import Request
from signal_sync.destinations.delivery import DeliveryResult
from signal_sync.engine.batch_send import make_send_batch
from signal_sync.engine.batcher import AGAIN, Batcher, Group
from signal_sync.engine.gate import IntegrationGate
from signal_sync.engine.jobs import ContactStates, Job, Jobs
from signal_sync.identity import ResolvedEvent, contact_id
from signal_sync.planner import state_key
from tests.unit.factories import consent, event, mailgun

MAILGUN = mailgun(unsubscribe_domain="mg.example.com")


def job(email: str, granted: bool, page: str) -> Job:
    raw = event(type="page", context={**consent(marketing=granted), "page": {"url": page}})
    return Job(ResolvedEvent(raw, {"email": email}), "upsert" if granted else "withdraw_consent")


def ok(status: int = 200) -> DeliveryResult:
    return DeliveryResult("delivered", status, None, 1, None, None, None, reply=b"{}")


class Mailgun:
    """Answers like Mailgun for members that exist; records every call in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.bulk_answered = asyncio.Event()
        self.hold_bulk: asyncio.Event | None = None

    def record(self, request: Request) -> None:
        self.calls.append((request.method, urlsplit(request.url).path.rsplit("/", 2)[-1]))

    async def send(self, request: Request) -> DeliveryResult:
        self.record(request)
        if request.method == "GET":  # the unsubscribe lookup: not there yet
            return DeliveryResult("absent", 404, None, 1, "http_404", None, None, reply=b'{"message": "no"}')
        return ok()

    async def deliver(self, integration: Any, request: Request, watch: Any = None) -> DeliveryResult:
        """The ``Sender`` of the bulk calls."""
        if self.hold_bulk is not None:
            await self.hold_bulk.wait()
        self.record(request)
        self.bulk_answered.set()
        return ok()


def jobs_with(world: Mailgun, table: dict[str, Any]) -> Jobs:
    send_entries = make_send_batch(world, IntegrationGate("g"), MAILGUN, 100)  # type: ignore[arg-type]
    return Jobs(MAILGUN, ContactStates(MAILGUN, table), world.send, send_entries)


async def batched(jobs: Jobs, groups: dict[str, list[Job]]) -> dict[str, list[Any]]:
    """Every job through a ``Batcher`` sending with ``jobs.send_batch`` (as the delivery agent does):
    each contact's results in order."""
    batcher = Batcher(jobs.send_batch, 100, 0)
    tasks = {name: [batcher.put(j.contact, j) for j in js] for name, js in groups.items()}
    placed = {name: await asyncio.wait_for(asyncio.gather(*t), 5) for name, t in tasks.items()}
    return {name: [p.result for p in results] for name, results in placed.items()}


async def test_a_withdrawal_splits_its_contacts_batch_and_goes_alone_with_the_operations_after_it() -> None:
    world, table = Mailgun(), {}
    jobs = jobs_with(world, table)
    jane = [
        job("jane@example.com", True, "https://x.io/1"),
        job("jane@example.com", True, "https://x.io/2"),
        job("jane@example.com", False, "https://x.io/3"),
        job("jane@example.com", False, "https://x.io/4"),
        job("jane@example.com", True, "https://x.io/5"),
    ]
    sam = [job("sam@example.org", True, "https://x.io/s")]
    results = await batched(jobs, {"jane": jane, "sam": sam})
    assert world.calls == [
        ("POST", "members.json"),  # jane's first two upserts (coalesced) and sam's, in one call
        ("PUT", "jane@example.com"),  # the withdrawal: subscribed=no
        ("GET", "jane@example.com"),  # the domain's unsubscribe list: not there
        ("POST", "unsubscribes"),
        # the second withdrawal sends nothing, the first one is in the state by now
        ("POST", "members"),  # the re-grant: the upsert alone
        ("DELETE", "jane@example.com"),  # and the unsubscribe signal-sync added
    ]
    assert [(r.operation, r.status, r.reason) for r in results["jane"]] == [
        ("upsert", "delivered", None),
        ("upsert", "delivered", None),
        ("withdraw_consent", "delivered", None),
        ("withdraw_consent", "dropped", "consent_denied"),
        ("restore_consent", "delivered", None),
    ]
    assert [(r.operation, r.status) for r in results["sam"]] == [("upsert", "delivered")]
    jane_state = table[state_key(MAILGUN, contact_id("jane@example.com"))]
    assert jane_state == {"last_page_url": "https://x.io/5"}, "back to the vars alone once re-granted"


async def test_the_upserts_after_a_regrant_travel_together_again_not_one_request_each() -> None:
    world, table = Mailgun(), {}
    jane = [
        job("jane@example.com", False, "https://x.io/1"),
        job("jane@example.com", True, "https://x.io/2"),
        job("jane@example.com", True, "https://x.io/3"),
        job("jane@example.com", True, "https://x.io/4"),
    ]
    results = await batched(jobs_with(world, table), {"jane": jane})
    assert world.calls == [
        ("PUT", "jane@example.com"),
        ("GET", "jane@example.com"),
        ("POST", "unsubscribes"),
        ("POST", "members"),  # the re-grant
        ("DELETE", "jane@example.com"),
        ("POST", "members"),  # the two upserts after it, coalesced into one member
    ]
    assert [(r.operation, r.status) for r in results["jane"]] == [
        ("withdraw_consent", "delivered"),
        ("restore_consent", "delivered"),
        ("upsert", "delivered"),
        ("upsert", "delivered"),
    ]
    assert table[state_key(MAILGUN, contact_id("jane@example.com"))] == {"last_page_url": "https://x.io/4"}


async def test_a_contact_whose_first_job_goes_alone_does_not_wait_for_the_bulk_call() -> None:
    world, table = Mailgun(), {}
    world.hold_bulk = asyncio.Event()
    jobs = jobs_with(world, table)
    batch = asyncio.create_task(
        jobs.send_batch(
            [
                Group("a", [job("a@example.com", True, "https://x.io/a")]),
                Group("b", [job("b@example.com", True, "https://x.io/b")]),
                Group("w", [job("w@example.com", False, "https://x.io/w")]),
            ]
        )
    )
    while ("POST", "unsubscribes") not in world.calls:  # the withdrawal finishes while the bulk call waits
        await asyncio.sleep(0)
    assert not world.bulk_answered.is_set()
    world.hold_bulk.set()
    a, b, w = await asyncio.wait_for(batch, 5)
    assert [a[0].status, b[0].status, w[0].operation] == ["delivered", "delivered", "withdraw_consent"]


async def test_a_failed_step_fails_the_operation_and_keeps_the_state() -> None:
    table: dict[str, Any] = {}
    failed = DeliveryResult("failed", 400, None, 1, "http_400", "bad address", "hint")

    async def send(request: Request) -> DeliveryResult:
        return failed

    jobs = Jobs(MAILGUN, ContactStates(MAILGUN, table), send)
    result = await jobs.run(job("jane@example.com", False, "https://x.io/"))
    assert (result.operation, result.status, result.reason, result.http_status) == (
        "withdraw_consent",
        "failed",
        "http_400",
        400,
    )
    assert result.shown is not None and len(result.shown.view()["calls"]) == 1
    assert table == {}, "a withdrawal that did not happen is not remembered"


async def test_a_plan_that_raises_is_that_jobs_internal_error_only(monkeypatch) -> None:
    world, table = Mailgun(), {}
    jobs = jobs_with(world, table)
    planned = mailgun_privacy.member_entry

    def member_entry(resolved: ResolvedEvent, known: Any, *mapping: Any) -> dict[str, Any]:
        if resolved.email == "bad@example.com":
            raise OverflowError("a bug in the mapping")
        return planned(resolved, known, *mapping)

    monkeypatch.setattr(mailgun_privacy, "member_entry", member_entry)
    bad, good = await jobs.send_batch(
        [
            Group("bad", [job("bad@example.com", True, "https://x.io/b")]),
            Group("good", [job("good@example.com", True, "https://x.io/g")]),
        ]
    )
    assert (bad[0].status, bad[0].reason, bad[0].error) == (
        "failed",
        "internal_error",
        "OverflowError: a bug in the mapping",
    )
    assert good[0].status == "delivered" and world.calls == [("POST", "members")]


class ChangelogRecorder:
    """Stands in for the table's output producer: which partition each changelog record goes to."""

    def __init__(self) -> None:
        self.partitions: list[int] = []

    def send_soon(self, topic: str, key: Any, value: Any, partition: int = -1, *_: Any, **__: Any) -> None:
        self.partitions.append(partition)


def test_a_batch_writes_each_contacts_state_to_its_own_partition_outside_any_faust_event() -> None:
    """The bulk call's task has no Faust event to take the partition from (a batch mixes contacts
    of several partitions): the job's partition decides where the changelog record goes."""
    from signal_sync.runtime import create_runtime
    from tests.unit.factories import settings

    runtime = create_runtime(settings(), partitions=4)
    recorder = ChangelogRecorder()
    runtime.destination_state.table.outputs = recorder  # type: ignore[attr-defined]
    states = ContactStates(MAILGUN, runtime.destination_state)
    with pytest.raises(TypeError, match="outside of stream iteration"):
        states.put("c0ffee", {"vars": {"plan": "pro"}})
    assert states.put("c0ffee", {"vars": {"plan": "pro"}}, partition=3) is None
    assert recorder.partitions == [3] and states.get("c0ffee") == {"vars": {"plan": "pro"}}


async def test_a_withdrawal_reports_no_created_flag_and_a_regrant_its_upserts() -> None:
    from tests.unit.factories import mautic

    crm = mautic()
    table: dict[str, Any] = {}
    key = state_key(crm, contact_id("jane@example.com"))
    table[key] = {"id": 12}

    async def send(request: Request) -> DeliveryResult:  # Mautic tells 201 from 200 on every call
        body = b'{"contact": {"id": 12, "doNotContact": []}}'
        if request.url.endswith("/dnc/email/add"):
            body = b'{"contact": {"id": 12, "doNotContact": [{"id": 5, "reason": 1, "channel": "email", '
            body += b'"comments": "signal-sync: marketing consent withdrawn"}]}}'
        created = True if request.url.endswith("/api/contacts/new") else False
        return DeliveryResult("delivered", 201 if created else 200, created, 1, None, None, None, reply=body)

    jobs = Jobs(crm, ContactStates(crm, table), send)
    withdrawn = await jobs.run(job("jane@example.com", False, "https://x.io/"))
    assert (withdrawn.operation, withdrawn.status, withdrawn.created) == (
        "withdraw_consent",
        "delivered",
        None,
    )
    assert table[key] == {"id": 12, "withdrawn": True, "dnc": {"12": 5}}
    restored = await jobs.run(job("jane@example.com", True, "https://x.io/"))
    assert (restored.operation, restored.created, restored.http_status) == ("restore_consent", True, 201)
    assert table[key] == {"id": 12}


async def test_an_upsert_is_answered_without_waiting_for_another_contacts_withdrawal() -> None:
    world, table = Mailgun(), {}
    withdrawal_may_end = asyncio.Event()
    send = world.send

    async def slow_withdrawal(request: Request) -> DeliveryResult:
        if request.method == "PUT":
            await withdrawal_may_end.wait()
        return await send(request)

    world.send = slow_withdrawal  # type: ignore[method-assign]
    jobs = jobs_with(world, table)
    batcher = Batcher(jobs.send_batch, 100, 0)
    sam, jane = (
        job("sam@example.org", True, "https://x.io/s"),
        job("jane@example.com", False, "https://x.io/j"),
    )
    upsert = batcher.put(sam.contact, sam)
    withdrawal = batcher.put(jane.contact, jane)
    placed = await asyncio.wait_for(upsert, 5)
    assert (placed.result.operation, placed.result.status) == ("upsert", "delivered")
    assert not withdrawal.done()
    withdrawal_may_end.set()
    assert (await asyncio.wait_for(withdrawal, 5)).result.operation == "withdraw_consent"


async def test_a_regrant_after_a_withdrawal_goes_in_its_round_and_the_upserts_after_it_wait() -> None:
    world, table = Mailgun(), {}
    jobs = jobs_with(world, table)
    batches: list[int] = []

    async def send_batch(groups: list[Group]) -> list[list[Any]]:
        batches.append(sum(len(group.items) for group in groups))
        return await jobs.send_batch(groups)

    jane = [
        job("jane@example.com", False, "https://x.io/1"),
        job("jane@example.com", False, "https://x.io/2"),  # dropped: already withdrawn
        job("jane@example.com", True, "https://x.io/3"),  # the re-grant
        job("jane@example.com", True, "https://x.io/4"),
        job("jane@example.com", True, "https://x.io/5"),
    ]
    batcher = Batcher(send_batch, 100, 0)
    placed = await asyncio.wait_for(asyncio.gather(*(batcher.put(j.contact, j) for j in jane)), 5)
    assert [(p.result.operation, p.result.status) for p in placed] == [
        ("withdraw_consent", "delivered"),
        ("withdraw_consent", "dropped"),
        ("restore_consent", "delivered"),
        ("upsert", "delivered"),
        ("upsert", "delivered"),
    ]
    assert batches == [5, 2], "withdrawal, drop and re-grant in one round; the upserts in the next"
    assert world.calls[-1] == ("POST", "members"), "the two upserts coalesced into one member"
    assert len(world.calls) == 6

    fresh = jobs_with(Mailgun(), {})
    (alone,) = await fresh.send_batch([Group(jane[0].contact, jane)])
    assert alone[3:] == [AGAIN, AGAIN], "send_batch answers AGAIN for the upserts after the operations"
