"""Destination registry: what the pipeline needs to know about each destination type."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from signal_sync.config import MailgunIntegration, MauticIntegration
from signal_sync.destinations import mailgun, mautic
from signal_sync.destinations.base import Request
from signal_sync.identity import ResolvedEvent

Integration = MauticIntegration | MailgunIntegration


@dataclass(frozen=True, slots=True)
class Destination:
    """One destination type: its mapped events, request builder, hints and reply reading."""

    name: str
    mapped_events: frozenset[str]
    hints: Mapping[int, str]
    build: Callable[[ResolvedEvent, Any, Mapping[str, Any] | None], Request]
    created: Callable[[int], bool | None]


DESTINATIONS: dict[str, Destination] = {
    "mautic": Destination(
        name=mautic.NAME,
        mapped_events=mautic.MAPPED_EVENTS,
        hints=mautic.HINTS,
        build=lambda resolved, integration, _state: mautic.build_request(resolved, integration),
        created=lambda status: {201: True, 200: False}.get(status),
    ),
    "mailgun": Destination(
        name=mailgun.NAME,
        mapped_events=mailgun.MAPPED_EVENTS,
        hints=mailgun.HINTS,
        build=mailgun.build_request,
        created=lambda _status: None,
    ),
}


def destination_of(integration: Integration) -> Destination:
    """The destination an integration delivers to."""
    return DESTINATIONS[integration.type]
