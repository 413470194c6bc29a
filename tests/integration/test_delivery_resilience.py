"""Delivery under failure, over real HTTP on loopback: the circuit breaker, holding events while
a destination is down, per-item answers of a bulk call, capped Retry-After, and requests that
cannot be sent. Everything goes through ``send_through_gate`` or a batch sender, never the
gate's counters directly; the destinations are the sandbox emulators or a scripted server whose
answers the test orders with events (no Kafka needed)."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from signal_sync.config import DeliverySettings
from signal_sync.destinations import Integration
from signal_sync.destinations import mautic as mautic_mapping
from signal_sync.destinations.base import Request
from signal_sync.destinations.delivery import DeliveryHooks, Sender
from signal_sync.engine.batch_send import make_send_batch
from signal_sync.engine.batcher import Group
from signal_sync.engine.gate import CIRCUIT_OPEN, IntegrationGate, send_through_gate
from signal_sync.sandbox import mailgun as mailgun_emulator
from signal_sync.sandbox import mautic as mautic_emulator
from signal_sync.sandbox import start_in_thread
from tests.support.scripted_server import Answer, ScriptedServer, Seen
from tests.unit.factories import MAILGUN_KEY, MAUTIC_PASSWORD, mailgun, mautic

pytestmark = pytest.mark.integration

DEADLINE_S = 10.0
FAST = {"backoff_initial_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 5.0}
CONTACT_BATCH = "/api/contacts/batch/new"
CONTACT_NEW = "/api/contacts/new"


async def eventually(what: str, ok: Callable[[], bool], timeout: float = DEADLINE_S) -> None:
    """Poll ``ok`` until it holds; fail naming ``what`` at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not ok():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def upsert(url: str, email: str = "jane@example.com", **headers: str) -> Request:
    return Request(
        "POST", url, {"Content-Type": "application/json", **headers}, json={"email": email, "firstname": "J"}
    )


@pytest.fixture
async def sender() -> AsyncIterator[Callable[..., Sender]]:
    made: list[Sender] = []

    def make(**settings: Any) -> Sender:
        made.append(Sender(DeliverySettings(**(FAST | settings))))
        return made[-1]

    yield make
    for one in made:
        await one.close()


class Attempts(DeliveryHooks):
    """Counts requests that got no reply."""

    def __init__(self) -> None:
        self.refused = 0

    def request_finished(self, integration_id: str, status: int | None, seconds: float) -> None:
        self.refused += status is None


def through(send: Sender, breaker: IntegrationGate, integration: Integration, url: str) -> Any:
    """``send_through_gate`` of a small upsert to ``url``."""
    return send_through_gate(send, breaker, integration, upsert(url))


def gate(**options: Any) -> IntegrationGate:
    defaults: dict[str, Any] = {
        "failure_threshold": 20,
        "open_for_s": 0.01,
        "probe_initial_s": 0.01,
        "probe_max_s": 0.05,
    }
    return IntegrationGate("mautic-main", **(defaults | options))


# --- circuit breaker ------------------------------------------------------------------------


async def test_destination_failures_accumulate_across_requests_and_open_the_circuit(sender):
    """503s of one delivery count across the 400s of others (which neither count nor reset the
    run); the third in a row opens the circuit, no fourth attempt is made while it is open, and
    the held event is delivered by the probe once the destination answers."""
    script, answered, release = gated_downs([503, 503, 503, 201])
    async with ScriptedServer(script) as server:
        breaker = gate(failure_threshold=3, open_for_s=0.05)
        send = sender(max_attempts=10)
        integration = mautic(base_url=server.url)
        held = asyncio.create_task(through(send, breaker, integration, server.url + "/down"))
        for n in range(2):
            await asyncio.wait_for(answered[n].wait(), DEADLINE_S)
            for _ in range(3):
                bad = await through(send, breaker, integration, server.url + "/bad")
                assert (bad.status, bad.reason, bad.fault) == ("failed", "http_400", False)
            assert not breaker.state.paused, "per-event 400s never open the circuit"
            release[n + 1].set()
        await eventually("the circuit to open", lambda: breaker.state.paused)
        assert breaker.state.reason == CIRCUIT_OPEN and breaker.state.hint
        assert not held.done(), "the event is held, not failed"
        assert server.paths("/down") == ["/down"] * 3, "no attempt after the third failure in a row"
        release[3].set()
        result = await asyncio.wait_for(held, DEADLINE_S)
    assert (result.status, result.http_status, result.created) == ("delivered", 201, True)
    assert not breaker.state.paused


def gated_downs(
    answers: list[int], released: int = 1
) -> tuple[Callable[[Seen], Any], list[asyncio.Event], list[asyncio.Event]]:
    """A script for ``/down``: its n-th request waits for ``release[n]``, then sets ``answered[n]``
    and gets ``answers[n]``; ``/ok`` gets 200 and ``/bad`` 400 at once."""
    answered = [asyncio.Event() for _ in answers]
    release = [asyncio.Event() for _ in answers]
    for event in release[:released]:
        event.set()
    count = 0

    async def script(seen: Seen) -> Answer:
        nonlocal count
        if seen.path == "/ok":
            return Answer(200, {})
        if seen.path == "/bad":
            return Answer(400, {"message": "bad"})
        n, count = count, count + 1
        await release[n].wait()
        answered[n].set()
        return Answer(answers[n], {"contact": {}} if answers[n] < 300 else {"message": "down"})

    return script, answered, release


async def test_a_success_ends_the_run_of_failures(sender):
    """Two 503s, a 2xx for another request, two more 503s: never three in a row, so the circuit
    stays closed and the retried event is delivered."""
    script, answered, release = gated_downs([503, 503, 503, 503, 201], released=2)
    async with ScriptedServer(script) as server:
        breaker = gate(failure_threshold=3)
        send = sender(max_attempts=6)
        integration = mautic(base_url=server.url)
        down = asyncio.create_task(through(send, breaker, integration, server.url + "/down"))
        await asyncio.wait_for(answered[1].wait(), DEADLINE_S)
        ok = await through(send, breaker, integration, server.url + "/ok")
        assert ok.status == "delivered"
        release[2].set()
        release[3].set()
        await asyncio.wait_for(answered[3].wait(), DEADLINE_S)
        assert not breaker.state.paused
        release[4].set()
        result = await asyncio.wait_for(down, DEADLINE_S)
    assert (result.status, result.attempts) == ("delivered", 5)
    assert not breaker.state.paused


async def test_an_unreachable_destination_holds_the_event_until_it_is_back(sender):
    """Connections refused (the sandbox Mautic's listener is down): the delivery's retries run out
    with nothing answering since it started (an earlier success does not count), so the circuit
    opens and the event is held (no result) instead of failing; once the emulator listens again on
    the same port, with its state, the probe delivers it."""
    with start_in_thread(mautic_emulator.create_app(username="signal", password=MAUTIC_PASSWORD)) as crm:
        integration = mautic(base_url=crm.url)
        breaker = gate(open_for_s=0.05, probe_max_s=0.1)
        send = sender(max_attempts=3)
        first = mautic_mapping.single_request(integration, {"email": "first@example.com"})
        assert (await send_through_gate(send, breaker, integration, first)).status == "delivered"
        crm.take_down()
        assert not crm.listening
        request = mautic_mapping.single_request(integration, {"email": "held@example.com"})
        held = asyncio.create_task(send_through_gate(send, breaker, integration, request))
        await eventually("the circuit to open", lambda: breaker.state.paused)
        assert breaker.state.reason == CIRCUIT_OPEN
        attempts = Attempts()
        send.hooks.append(attempts)
        await eventually("three probes", lambda: attempts.refused >= 3)
        assert not held.done(), "probes that find it still down keep the event held"
        crm.bring_up()
        result = await asyncio.wait_for(held, DEADLINE_S)
        contacts = get_json(crm.url + "/_sandbox/contacts")["contacts"]
    assert (result.status, result.http_status) == ("delivered", 201)
    assert not breaker.state.paused
    assert [c["fields"]["all"]["email"] for c in contacts] == ["first@example.com", "held@example.com"], (
        "the emulator comes back with its state"
    )


async def test_retries_that_run_out_while_the_destination_answers_others_fail_the_event(sender):
    """One event's own 503s, while other requests succeed in between: the destination works, so
    the event ends ``failed`` after its attempts and the integration keeps flowing."""
    script, answered, release = gated_downs([503, 503, 503])
    async with ScriptedServer(script) as server:
        breaker = gate()
        send = sender(max_attempts=3)
        integration = mautic(base_url=server.url)
        down = asyncio.create_task(through(send, breaker, integration, server.url + "/down"))
        for n in range(2):
            await asyncio.wait_for(answered[n].wait(), DEADLINE_S)
            ok = await through(send, breaker, integration, server.url + "/ok")
            assert ok.status == "delivered"
            release[n + 1].set()
        result = await asyncio.wait_for(down, DEADLINE_S)
    assert (result.status, result.reason, result.attempts, result.destination_down) == (
        "failed",
        "http_503",
        3,
        True,
    )
    assert not breaker.state.paused


async def test_answers_before_a_deliverys_first_failure_do_not_count_as_the_destination_working(sender):
    """Another request answered 200 while this one was on its way, then an outage: this delivery's
    503s are all the destination says after its first failure, so when its retries run out the
    circuit opens and the event is held, then delivered once a probe gets an answer."""
    script, answered, release = gated_downs([503, 503, 503, 201], released=0)
    async with ScriptedServer(script) as server:
        breaker = gate()
        send = sender(max_attempts=3)
        integration = mautic(base_url=server.url)
        held = asyncio.create_task(through(send, breaker, integration, server.url + "/down"))
        await eventually("the first request on its way", lambda: server.paths() == ["/down"])
        ok = await through(send, breaker, integration, server.url + "/ok")
        assert ok.status == "delivered"
        for event in release[:3]:
            event.set()
        await eventually("the circuit opening", lambda: breaker.state.paused)
        assert breaker.state.reason == CIRCUIT_OPEN and not held.done(), "the event is held, not failed"
        release[3].set()
        result = await asyncio.wait_for(held, DEADLINE_S)
    assert result.status == "delivered"
    assert server.paths() == ["/down", "/ok", "/down", "/down", "/down"]
    assert not breaker.state.paused


async def test_a_fault_pauses_and_a_probe_resumes(sender):
    answers = iter([401, 401, 201])

    def script(seen: Seen) -> Answer:
        status = next(answers)
        return Answer(status, {"errors": [{"code": status, "message": "API authorization denied."}]})

    async with ScriptedServer(script) as server:
        breaker = gate(probe_initial_s=0.05)
        send = sender(max_attempts=5)
        integration = mautic(base_url=server.url)
        task = asyncio.create_task(through(send, breaker, integration, server.url + "/x"))
        await eventually("the pause", lambda: breaker.state.paused)
        assert breaker.state.reason == "http_401" and "Basic Authentication" in (breaker.state.hint or "")
        result = await asyncio.wait_for(task, DEADLINE_S)
    assert result.status == "delivered" and len(server.seen) == 3, "a 401 is not retried, only probed"
    assert not breaker.state.paused


# --- requests that cannot be sent, Retry-After ----------------------------------------------


async def test_a_request_that_cannot_be_sent_fails_alone(sender):
    """aiohttp refuses a header with CR/LF: that event fails with ``client_error``, nothing is
    sent, the integration neither pauses nor counts it, and the next request goes out."""
    async with ScriptedServer(lambda seen: Answer(201, {"contact": {}})) as server:
        breaker = gate(failure_threshold=1)
        send = sender()
        integration = mautic(base_url=server.url)
        hostile = upsert(server.url + "/x", **{"X-Forwarded-For": "1.2.3.4\r\nX-Injected: jane@example.com"})
        result = await send_through_gate(send, breaker, integration, hostile)
        after = await through(send, breaker, integration, server.url + "/y")
    assert (result.status, result.reason, result.http_status) == ("failed", "client_error", None)
    assert result.error and result.error.startswith("ValueError") and "jane@example.com" not in result.error
    assert not breaker.state.paused
    assert after.status == "delivered"
    assert server.paths() == ["/y"] and all("X-Injected" not in seen.headers for seen in server.seen)


@pytest.mark.parametrize("value", ["1e12", "inf", "3600", "Fri, 31 Dec 9999 23:59:59 GMT"])
async def test_retry_after_is_capped(sender, value: str):
    answers = iter([Answer(429, {"message": "slow down"}, {"Retry-After": value}), Answer(200, {})])
    async with ScriptedServer(lambda seen: next(answers)) as server:
        send = sender(retry_after_max_s=0.05)
        result = await asyncio.wait_for(
            send.deliver(mailgun(base_url=server.url), upsert(server.url + "/m")), DEADLINE_S
        )
    assert (result.status, result.attempts) == ("delivered", 2)


async def test_a_retry_after_past_the_time_budget_ends_the_delivery(sender):
    """The capped wait (10 s) would end past ``max_elapsed_s`` (5 s): no retry is started."""
    async with ScriptedServer(lambda seen: Answer(429, {}, {"Retry-After": "1e12"})) as server:
        send = sender(retry_after_max_s=10, max_elapsed_s=5, max_attempts=50)
        result = await asyncio.wait_for(
            send.deliver(mailgun(base_url=server.url), upsert(server.url + "/m")), DEADLINE_S
        )
    assert (result.status, result.reason, result.attempts, result.destination_down) == (
        "failed",
        "http_429",
        1,
        True,
    )
    assert result.retry_after_s == 10


async def test_mailgun_420_is_retried_like_429(sender):
    answers = iter([Answer(420, {"message": "Try again after 1s"}, {"Retry-After": "0"}), Answer(200, {})])
    async with ScriptedServer(lambda seen: next(answers)) as server:
        result = await sender().deliver(mailgun(base_url=server.url), upsert(server.url + "/m"))
    assert (result.status, result.attempts) == ("delivered", 2)


# --- bulk calls -------------------------------------------------------------------------------


def entry(email: str, n: int) -> dict[str, Any]:
    return {"email": email, "firstname": f"n{n}"}


def marks(seen: Seen) -> list[str]:
    bodies = seen.json() if isinstance(seen.json(), list) else [seen.json()]
    return [f"{body['email'].split('@')[0]}{body['firstname'][1:]}" for body in bodies]


async def test_bulk_items_to_retry_go_again_alone_with_their_contacts_later_items_in_order(sender):
    """Mautic answers the bulk call 201 with per-item statuses. Delivered items and the per-event
    400 are final; the 429 item of ``a`` goes again on its own and so does ``a``'s later item,
    after it; ``c``'s 503 item goes again too; ``b``'s 400 is failed with the redacted error."""
    bulk = {
        "statusCodes": [201, 429, 200, 400, 503],
        "errors": {"3": {"code": 400, "message": "email: jane@example.com is not valid"}},
    }

    def script(seen: Seen) -> Answer:
        if seen.path == CONTACT_BATCH:
            return Answer(201, bulk)
        return Answer(200, {"contact": {}})

    async with ScriptedServer(script) as server:
        integration = mautic(base_url=server.url)
        send_batch = make_send_batch(sender(), gate(), integration, max_entries=10)
        groups = [
            Group("a", items=[entry("a@x.io", 0), entry("a@x.io", 1), entry("a@x.io", 2)]),
            Group("b", items=[entry("b@x.io", 0)]),
            Group("c", items=[entry("c@x.io", 0)]),
        ]
        results = await asyncio.wait_for(send_batch(groups), DEADLINE_S)
    assert [marks(seen) for seen in server.seen][0] == ["a0", "a1", "a2", "b0", "c0"]
    again = [marks(seen)[0] for seen in server.seen[1:]]
    assert sorted(again) == ["a1", "a2", "c0"] and again.index("a1") < again.index("a2")
    a, b, c = results
    assert [(r.status, r.http_status, r.created) for r in a] == [
        ("delivered", 201, True),
        ("delivered", 200, False),
        ("delivered", 200, False),
    ]
    assert [r.attempts for r in a] == [1, 2, 2]
    (failed,) = b
    assert (failed.status, failed.reason, failed.http_status) == ("failed", "http_400", 400)
    assert failed.error == "email: <email> is not valid"
    assert [(r.status, r.attempts) for r in c] == [("delivered", 2)]


async def test_a_bulk_item_fault_pauses_the_integration_until_it_answers(sender):
    """An item answered 401 inside a 201 bulk call is an integration fault: its single request
    pauses the integration and probes; the item is delivered once Mautic accepts again."""
    singles = iter([401, 401, 201])

    def script(seen: Seen) -> Answer:
        if seen.path == CONTACT_BATCH:
            return Answer(201, {"statusCodes": [201, 401]})
        status = next(singles)
        return Answer(status, {"contact": {}} if status == 201 else {"errors": [{"code": status}]})

    async with ScriptedServer(script) as server:
        breaker = gate(probe_initial_s=0.05)
        send_batch = make_send_batch(sender(), breaker, mautic(base_url=server.url), max_entries=10)
        task = asyncio.create_task(
            send_batch([Group("a", items=[entry("a@x.io", 0)]), Group("b", items=[entry("b@x.io", 0)])])
        )
        await eventually("the pause", lambda: breaker.state.paused)
        assert breaker.state.reason == "http_401"
        a, b = await asyncio.wait_for(task, DEADLINE_S)
    assert a[0].status == "delivered" and (b[0].status, b[0].http_status) == ("delivered", 201)
    assert not breaker.state.paused
    assert server.paths() == [CONTACT_BATCH] + [CONTACT_NEW] * 3


async def test_one_bad_mailgun_member_fails_alone_against_the_sandbox(sender):
    """A member the sandbox Mailgun refuses fails the synchronous bulk call as a whole; the
    fallback sends each contact on its own, so only that member fails (HTTP 400, the seed's hint)."""
    with start_in_thread(mailgun_emulator.create_app(api_key=MAILGUN_KEY)) as mg:
        integration = mailgun(base_url=mg.url)
        send_batch = make_send_batch(sender(), gate(), integration, max_entries=100)
        members = [
            {"address": "ok1@example.com", "vars": {"n": 1}},
            {"address": "not-an-address", "vars": {"n": 2}},
            {"address": "ok2@example.com", "vars": {"n": 3}},
        ]
        results = await asyncio.wait_for(
            send_batch([Group(m["address"], items=[m]) for m in members]), DEADLINE_S
        )
        stored = get_json(mg.url + "/_sandbox/members")["members"]["newsletter@mg.example.com"]
        requests = get_json(mg.url + "/_sandbox/requests")["requests"]
    good, bad, other = (group[0] for group in results)
    assert good.status == other.status == "delivered"
    assert (bad.status, bad.reason, bad.http_status) == ("failed", "http_400", 400)
    assert bad.hint and "$traits.email" in bad.hint
    assert sorted(member["address"] for member in stored) == ["ok1@example.com", "ok2@example.com"]
    assert [r["status"] for r in requests][0] == 400 and len(requests) == 4


async def test_an_exception_in_the_fallback_stays_with_its_entry(sender):
    """One entry's body cannot be encoded (an integer beyond 64 bits): the bulk call carrying it
    fails on our side, and in the fallback only that entry fails, with ``client_error``, while the
    entries beside it are delivered."""
    async with ScriptedServer(lambda seen: Answer(201, {"contact": {}})) as server:
        send_batch = make_send_batch(sender(), gate(), mautic(base_url=server.url), max_entries=10)
        hostile = {"email": "h@x.io", "firstname": "n0", "points": 2**70}
        groups = [
            Group("a", items=[entry("a@x.io", 0)]),
            Group("h", items=[hostile]),
            Group("b", items=[entry("b@x.io", 0)]),
        ]
        a, h, b = await asyncio.wait_for(send_batch(groups), DEADLINE_S)
    assert a[0].status == b[0].status == "delivered"
    assert (h[0].status, h[0].reason, h[0].http_status) == ("failed", "client_error", None)
    assert h[0].error and "64-bit" in h[0].error
    assert sorted(marks(seen)[0] for seen in server.seen) == ["a0", "b0"]


# --- helpers ---------------------------------------------------------------------------------


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as reply:  # loopback emulator
        return json.loads(reply.read())
