"""Dry run of the pipeline: events in, the requests the worker would send out. No network.

State (identities, destination state) is kept in dicts exactly as the worker keeps it in
tables, and every request is assumed to succeed, so a sequence of events previews the
same payloads the worker would send for it. A drop for ``invalid_event`` or
``invalid_email`` carries an ``error`` saying what is wrong (never the address itself).

A consent withdrawal or re-grant is several calls whose later ones depend on the answers:
its line carries ``operation`` and every call in ``calls`` (``request`` is the first). So does
an upsert whose event adds its contact to Mautic segments (``segments``): the upsert, then one
segment add per segment, as the worker sends them for a contact alone (a batch of several
contacts adds them with one bulk call per segment). Preview
answers them as a destination that knows the person would (``PreviewDestination``): Mautic finds
one contact and has no do-not-contact entry before the withdrawal, Mailgun has the member and
the address is not on the domain's unsubscribe list yet. The contact id that only Mautic could
assign is shown as ``{contact_id}``.

Erasure requests (``--erasures``) are previewed after the events, with what the events taught
(a request naming only ids resolves its email through them): per integration the deletes an
erasure makes, as a destination that has the person answers them; the person is then forgotten.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

import orjson

from signal_sync.codecs.events import decode_event, peek_message_id
from signal_sync.config import Settings
from signal_sync.destinations import Integration, destination_of
from signal_sync.destinations.delivery import DeliveryResult
from signal_sync.destinations.mautic_privacy import DNC_CHANNEL, DNC_COMMENT, DNC_UNSUBSCRIBED
from signal_sync.destinations.operations import Calls, Drop, Finish, Upsert
from signal_sync.erasure import (
    INVALID_REQUEST,
    UNKNOWN_PERSON,
    InvalidRequestError,
    erased_person,
    keys_to_forget,
    parse_request,
    request_id_for,
    resolve_email,
)
from signal_sync.errors import InvalidEventError
from signal_sync.identity import ResolvedEvent, email_problem, normalize_email
from signal_sync.planner import plan_delivery, plan_event, remember, remembered_for, state_key

CONTACT_ID = 990_000_000_001
"""The id preview's Mautic gives the person; shown as ``{contact_id}``."""
DNC_ID = 990_000_000_002
"""The id of the do-not-contact entry preview's Mautic adds; it appears in no request."""
_CONTACT_ID_IN_URL = re.compile(rf"/{CONTACT_ID}(?=[/?]|$)")


def _answer(status: int, body: Any) -> DeliveryResult:
    reply = orjson.dumps(body)
    if status == 404:
        return DeliveryResult("absent", 404, None, 1, "http_404", None, None, reply=reply)
    return DeliveryResult("delivered", status, None, 1, None, None, None, reply=reply)


class Answerer(Protocol):
    """Answers one call of an operation as the destination would."""

    def answer(self, integration: Integration, method: str, url: str, email: str) -> DeliveryResult: ...


class PreviewDestination:
    """Answers an operation's calls as a destination that knows the person."""

    @staticmethod
    def answer(integration: Integration, method: str, url: str, email: str) -> DeliveryResult:
        path = url.removeprefix(integration.base_url).partition("?")[0]
        if integration.type == "mailgun":
            if method == "GET" and "/unsubscribes/" in path:
                return _answer(404, {"message": "Address not found in unsubscribers table"})
            return _answer(200, {"message": "ok"})
        ours = {
            "id": DNC_ID,
            "reason": DNC_UNSUBSCRIBED,
            "comments": DNC_COMMENT,
            "channel": DNC_CHANNEL,
        }
        contact = {"id": CONTACT_ID, "fields": {"all": {"email": email}}, "doNotContact": []}
        if method == "GET" and path == "/api/contacts":
            return _answer(200, {"total": 1, "contacts": {"0": contact}})
        if path.endswith("/dnc/email/add") or (method == "GET" and path.startswith("/api/contacts/")):
            return _answer(200, {"contact": {**contact, "doNotContact": [ours]}})
        return _answer(200, {"contact": contact})


class Previewer:
    """Runs events through the pure pipeline with in-memory state."""

    def __init__(self, integrations: Sequence[Integration], destination: Answerer | None = None) -> None:
        self.integrations = integrations
        self.destination: Answerer = destination or PreviewDestination()
        self.identities: dict[str, dict[str, Any]] = {}
        self.destination_state: dict[str, Any] = {}

    def preview(self, raw: bytes) -> Iterator[dict[str, Any]]:
        """One line per integration, in config order."""
        try:
            event = decode_event(raw)
        except InvalidEventError as exc:
            message_id = peek_message_id(raw)
            for integration in self.integrations:
                yield self._line(message_id, integration.id, None, "invalid_event", None, error=str(exc))
            return
        plan = plan_event(event, self.integrations, remembered_for(event, self.identities))
        remember(self.identities, event, plan.learned)
        resolved = plan.resolved
        assert event.message_id is not None
        for (integration, reason), operation in zip(plan.decisions, plan.operations, strict=True):
            if reason is not None or operation is None:
                error = None
                if reason == "invalid_email":  # why, without the address itself
                    error = email_problem(normalize_email(resolved.traits.get("email")) or "")
                yield self._line(event.message_id, integration.id, resolved.name, reason, None, error=error)
                continue
            yield self._planned(event.message_id, integration, resolved, operation)

    def _planned(
        self, message_id: str, integration: Integration, resolved: ResolvedEvent, operation: Any
    ) -> dict[str, Any]:
        """The line of an event stage 1 sends, planned with the contact's state as the worker would."""
        destination = destination_of(integration)
        key = state_key(integration, resolved.contact_id or "")
        state = destination.load_state(self.destination_state.get(key))
        work = plan_delivery(resolved, integration, operation, state)
        if isinstance(work, Drop):
            line = self._line(message_id, integration.id, resolved.name, work.reason, None)
            return {**line, "operation": work.operation}
        if isinstance(work, Upsert):
            request = destination.batch.single_request(integration, work.entry)
            answer = self.destination.answer(integration, request.method, request.url, resolved.email or "")
            self.destination_state[key] = destination.dump_state(destination.settle(work.state, answer))
            line = self._line(message_id, integration.id, resolved.name, None, request.view())
            adds = self._segment_adds(integration, resolved, answer)
            return {**line, "calls": shown([request.view(), *adds])} if adds else line
        assert isinstance(work, Calls)
        views: list[dict[str, Any]] = []
        try:
            request = next(work.steps)
            while True:
                views.append(request.view())
                answer = self.destination.answer(
                    integration, request.method, request.url, resolved.email or ""
                )
                request = work.steps.send(answer)
        except StopIteration as stop:
            finish: Finish = stop.value
        if finish.forget:
            self.destination_state.pop(key, None)
        elif finish.state is not None:
            self.destination_state[key] = destination.dump_state(finish.state)
        if work.operation == "restore_consent" and finish.shown is not None:
            views.extend(self._segment_adds(integration, resolved, finish.shown))
        views = shown(views)
        name = None if work.operation == "erase" else resolved.name
        line = self._line(message_id, integration.id, name, finish.reason, views[0] if views else None)
        return {**line, "operation": work.operation, "calls": views}

    def _segment_adds(
        self, integration: Integration, resolved: ResolvedEvent, upserted: DeliveryResult
    ) -> list[dict[str, Any]]:
        """The segment adds a delivered upsert of the event makes (one contact: the single add per
        segment), answered as added; none without segments."""
        fmt = destination_of(integration).segments
        wanted = fmt.wanted(integration, resolved.name) if fmt is not None else ()
        contact = fmt.contact_of(upserted) if fmt is not None and wanted else None
        if fmt is None or contact is None:
            return []
        views = []
        for segment in wanted:
            request = fmt.single_request(integration, segment, contact)
            self.destination.answer(integration, request.method, request.url, resolved.email or "")
            views.append(request.view())
        return views

    def erase(self, raw: bytes) -> Iterator[dict[str, Any]]:
        """One line per integration for an erasure request, planned with what the events previewed
        before it taught (its ids resolve through them); the person is then forgotten."""
        try:
            request = parse_request(raw)
        except InvalidRequestError as exc:
            for integration in self.integrations:
                line = self._line(
                    request_id_for(raw, exc), integration.id, None, INVALID_REQUEST, None, error=str(exc)
                )
                yield {**line, "operation": "erase"}
            return
        email = resolve_email(request, self.identities)
        for integration in self.integrations:
            if email is None:
                line = self._line(request.request_id, integration.id, None, UNKNOWN_PERSON, None)
                yield {**line, "operation": "erase"}
            else:
                yield self._planned(
                    request.request_id, integration, erased_person(request.request_id, email), "erase"
                )
        stored = ((key, orjson.dumps(value)) for key, value in self.identities.items())
        for key in keys_to_forget(request, email, stored):
            self.identities.pop(key, None)

    @staticmethod
    def _line(
        message_id: str,
        integration: str,
        event: str | None,
        reason: str | None,
        request: dict[str, Any] | None,
        error: str | None = None,
    ) -> dict[str, Any]:
        line = {
            "message_id": message_id,
            "integration": integration,
            "event": event,
            "action": "drop" if reason else "send",
            "reason": reason,
            "request": request,
        }
        if error:
            line["error"] = error
        return line


def shown(views: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The views with the id only Mautic could assign shown as ``{contact_id}``."""
    return [{**view, "url": _CONTACT_ID_IN_URL.sub("/{contact_id}", view["url"])} for view in views]


def preview_lines(
    settings: Settings, lines: Iterable[bytes], erasures: Iterable[bytes] = ()
) -> Iterator[dict[str, Any]]:
    """Preview every non-blank input line in order, then every erasure request."""
    previewer = Previewer(settings.integrations)
    for line in lines:
        if line.strip():
            yield from previewer.preview(line.strip())
    for line in erasures:
        if line.strip():
            yield from previewer.erase(line.strip())
