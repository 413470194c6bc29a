"""Dry run of the pipeline: events in, the requests the worker would send out. No network.

State (identities, Mailgun vars) is kept in dicts exactly as the worker keeps it in
tables, and every request is assumed to succeed, so a sequence of events previews the
same payloads the worker would send for it. A drop for ``invalid_event`` or
``invalid_email`` carries an ``error`` saying what is wrong (never the address itself).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from signal_sync.codecs.events import decode_event, peek_message_id
from signal_sync.config import Settings
from signal_sync.errors import InvalidEventError
from signal_sync.identity import email_problem, normalize_email
from signal_sync.planner import build_request, plan_event, remember, remembered_for, state_key


class Previewer:
    """Runs events through the pure pipeline with in-memory state."""

    def __init__(self, settings: Settings) -> None:
        self.integrations = settings.integrations
        self.identities: dict[str, dict[str, Any]] = {}
        self.destination_state: dict[str, dict[str, Any]] = {}

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
        for integration, reason in plan.decisions:
            if reason is not None:
                error = None
                if reason == "invalid_email":  # why, without the address itself
                    error = email_problem(normalize_email(resolved.traits.get("email")) or "")
                yield self._line(event.message_id, integration.id, resolved.name, reason, None, error=error)
                continue
            key = state_key(integration, resolved.contact_id or "")
            request = build_request(resolved, integration, self.destination_state.get(key))
            if request.state is not None:
                self.destination_state[key] = request.state
            yield self._line(event.message_id, integration.id, resolved.name, None, request.view())

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


def preview_lines(settings: Settings, lines: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    """Preview every non-blank input line in order."""
    previewer = Previewer(settings)
    for line in lines:
        if line.strip():
            yield from previewer.preview(line.strip())
