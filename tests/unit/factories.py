"""Builders shared by the unit tests: integrations, events and a worker-like pipeline.

``Pipeline`` drives the pure planner as the ingest and deliver agents do for upserts
(``plan_event`` → ``remember`` → ``build_request`` with per-contact state), with dicts
in place of the Faust tables and every request assumed delivered.
"""

from __future__ import annotations

import base64
import functools
import tempfile
from typing import Any

import orjson
from faust.types import TP

from signal_sync.codecs.events import decode_event
from signal_sync.config import MailgunIntegration, MauticIntegration, Settings
from signal_sync.destinations.base import Request
from signal_sync.destinations.operations import Calls
from signal_sync.planner import build_request, plan_delivery, plan_event, remember, remembered_for, state_key
from signal_sync.streams.records import SignalEvent


@functools.cache
def state_root() -> tempfile.TemporaryDirectory[str]:
    """Parent of this test process's table state folders, removed when it exits."""
    return tempfile.TemporaryDirectory(prefix="signal-sync-state-")


MAUTIC_PASSWORD = "mautic-secret-pw"
MAILGUN_KEY = "key-mailgun-secret"

MAUTIC_RAW: dict[str, Any] = {
    "id": "mautic-main",
    "type": "mautic",
    "base_url": "https://mautic.example.com",
    "api_user": "signal",
    "api_password": MAUTIC_PASSWORD,
}
MAILGUN_RAW: dict[str, Any] = {
    "id": "mailgun-news",
    "type": "mailgun",
    "base_url": "https://api.mailgun.net",
    "api_key": MAILGUN_KEY,
    "list_address": "newsletter@mg.example.com",
}

# Seed 000, "Example: Signed Up event": the Mautic payload sent by Signal.
MAUTIC_SEED_PAYLOAD = {
    "email": "jane.doe@example.com",
    "firstname": "Jane",
    "lastname": "Doe",
    "ipAddress": "203.0.113.50",
    "lastActive": "2026-06-06 14:32:10",
    "utm_source": "newsletter",
    "utm_medium": "email",
    "signal_signup_method": "email",
    "tags": ["signal-marketing-consent"],
}

# Seed 001, "Example": the form Signal posts for the identify call.
MAILGUN_SEED_VARS = (
    '{"first_name":"Jane","last_name":"Doe","plan":"pro","company":"Acme Ltd","anonymous_id":"a1b2c3"}'
)
MAILGUN_SEED_FORM = {
    "address": "jane@example.com",
    "name": "Jane Doe",
    "subscribed": "true",
    "upsert": "true",
    "vars": MAILGUN_SEED_VARS,
}
MAILGUN_SEED_URL = "https://api.mailgun.net/v3/lists/newsletter@mg.example.com/members"


def mautic(**overrides: Any) -> MauticIntegration:
    return MauticIntegration.model_validate({**MAUTIC_RAW, **overrides})


def mailgun(**overrides: Any) -> MailgunIntegration:
    return MailgunIntegration.model_validate({**MAILGUN_RAW, **overrides})


def settings(*integrations: dict[str, Any], **sections: Any) -> Settings:
    """Settings with the given integrations (default: one Mautic, one Mailgun); table state goes to
    a fresh folder unless ``worker.state_dir`` is given, so no test reads another's RocksDB."""
    raw = list(integrations) or [MAUTIC_RAW, MAILGUN_RAW]
    worker = sections.pop("worker", {})
    if isinstance(worker, dict) and "state_dir" not in worker:
        worker = {**worker, "state_dir": tempfile.mkdtemp(dir=state_root().name)}
    return Settings(integrations=raw, worker=worker, **sections)


def consent(**categories: bool) -> dict[str, Any]:
    """A ``context`` fragment with canonical consent."""
    return {"consent": {"canonical": categories}}


def event(**fields: Any) -> SignalEvent:
    """Decode an event through the real decoder, as the worker does."""
    return decode_event(orjson.dumps(fields))


def decode_basic(header: str) -> str:
    """``Basic dXNlcjpwdw==`` → ``user:pw``."""
    scheme, _, token = header.partition(" ")
    assert scheme == "Basic"
    return base64.b64decode(token).decode()


# The seed events (Mautic identify + Signed Up, Mailgun identify) as the SDK would send them.
SEED_MAUTIC_IDENTIFY = {
    "type": "identify",
    "messageId": "seed-identify-1",
    "userId": "user-123",
    "anonymousId": "anon-jane",
    "timestamp": "2026-06-06T16:30:00+02:00",
    "traits": {"email": "jane.doe@example.com", "firstName": "Jane", "lastName": "Doe"},
    "context": {"ip": "203.0.113.50", **consent(marketing=True)},
}
SEED_MAUTIC_SIGNED_UP = {
    "type": "track",
    "event": "Signed Up",
    "messageId": "seed-signed-up-1",
    "userId": "user-123",
    "anonymousId": "anon-jane",
    "timestamp": "2026-06-06T16:32:10+02:00",
    "properties": {"method": "email"},
    "context": {
        "ip": "203.0.113.50",
        "campaign": {"source": "newsletter", "medium": "email"},
        **consent(marketing=True),
    },
}
SEED_MAILGUN_IDENTIFY = {
    "type": "identify",
    "messageId": "seed-mailgun-identify-1",
    "userId": "user-123",
    "anonymousId": "a1b2c3",
    "timestamp": "2026-06-06T14:40:00Z",
    "traits": {
        "email": "Jane@Example.com",
        "name": "Jane Doe",
        "first_name": "Jane",
        "last_name": "Doe",
        "plan": "pro",
        "company": "Acme Ltd",
    },
    "context": {"ip": "203.0.113.50", **consent(marketing=True)},
}


class Pipeline:
    """The worker's pure path with in-memory state; every request is assumed delivered."""

    def __init__(self, *integrations: MauticIntegration | MailgunIntegration) -> None:
        self.integrations = list(integrations) or [mautic(), mailgun()]
        self.identities: dict[str, dict[str, Any]] = {}
        self.destination_state: dict[str, dict[str, Any]] = {}

    def run(self, raw_event: dict[str, Any]) -> dict[str, Request | Calls | str]:
        """Per integration id: the upsert request sent, the drop reason, or for a consent withdrawal
        its planned calls (``Calls``, not run)."""
        ev = event(**raw_event)
        plan = plan_event(ev, self.integrations, remembered_for(ev, self.identities))
        remember(self.identities, ev, plan.learned)
        result: dict[str, Request | Calls | str] = {}
        for (integration, reason), operation in zip(plan.decisions, plan.operations, strict=True):
            if reason is not None:
                result[integration.id] = reason
                continue
            assert plan.resolved.contact_id is not None
            if operation != "upsert":
                work = plan_delivery(plan.resolved, integration, operation, {})
                assert isinstance(work, Calls)
                result[integration.id] = work
                continue
            key = state_key(integration, plan.resolved.contact_id)
            request = build_request(plan.resolved, integration, self.destination_state.get(key))
            if request.state is not None:
                self.destination_state[key] = request.state
            result[integration.id] = request
        return result

    def send(self, raw_event: dict[str, Any], integration_id: str) -> Request:
        """The request for one integration; fails the test if the event was dropped."""
        outcome = self.run(raw_event)[integration_id]
        assert isinstance(outcome, Request), f"expected a send to {integration_id}, got drop {outcome!r}"
        return outcome


class FakeConsumer:
    """Stands in for Faust's consumer: its assignment, each assigned partition's high-water mark
    as of the last fetch (None: not fetched yet), and the offset of the last record its fetcher
    handed to the agents (``_read_offset``, as Faust names it; by default up to the high-water mark)."""

    def __init__(self, highwaters: dict[TP, int | None]) -> None:
        self.highwaters = highwaters
        self._read_offset = {tp: hw - 1 for tp, hw in highwaters.items() if hw}

    def assignment(self) -> set[TP]:
        return set(self.highwaters)

    def highwater(self, tp: TP) -> int | None:
        assert tp in self.highwaters, "aiokafka asserts the partition is assigned"
        return self.highwaters[tp]
