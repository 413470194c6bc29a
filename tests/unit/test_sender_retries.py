"""``Sender.deliver``'s retry budget: the attempts a delivery makes for scripted answers (the HTTP
attempt itself is replaced by the script; everything after it is the sender's own)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from signal_sync.config import DeliverySettings
from signal_sync.destinations.base import Request
from signal_sync.destinations.classify import classify_status
from signal_sync.destinations.delivery import Attempt, DeliveryHooks, Sender
from tests.unit.factories import mailgun

RETRY_AFTER_ZERO = {"Retry-After": "0"}


class Scripted(Sender):
    """A sender whose attempts answer ``statuses`` in turn, each after ``took_s`` seconds."""

    def __init__(self, settings: DeliverySettings, statuses: Sequence[int], took_s: float = 0.0) -> None:
        super().__init__(settings)
        self.statuses = list(statuses)
        self.took_s = took_s
        self.sent = 0

    async def attempt(self, integration_id: str, request: Request, **_: Any) -> Attempt:
        status = self.statuses[min(self.sent, len(self.statuses) - 1)]
        self.sent += 1
        if self.took_s:
            await asyncio.sleep(self.took_s)
        headers = RETRY_AFTER_ZERO if status >= 500 else {}
        return Attempt(classify_status(status, headers, 0.0), status, b"{}")


class Retries(DeliveryHooks):
    def __init__(self) -> None:
        self.count = 0

    def retry_started(self, integration_id: str) -> None:
        self.count += 1


def settings(**values: Any) -> DeliverySettings:
    return DeliverySettings(backoff_initial_s=0.001, backoff_max_s=0.001, **values)


REQUEST = Request("POST", "http://127.0.0.1:9/members", {})


@pytest.mark.parametrize(
    ("statuses", "attempts", "status"),
    [
        ([200], 1, "delivered"),
        ([400], 1, "failed"),
        ([503, 200], 2, "delivered"),
        ([503, 503, 400], 3, "failed"),
        ([503] * 9, 4, "failed"),
    ],
)
async def test_attempts_until_a_final_answer_or_max_attempts(
    statuses: list[int], attempts: int, status: str
) -> None:
    sender = Scripted(settings(max_attempts=4), statuses)
    retries = Retries()
    sender.hooks.append(retries)
    result = await sender.deliver(mailgun(), REQUEST)
    assert (result.status, result.attempts, sender.sent) == (status, attempts, attempts)
    assert retries.count == attempts - 1


async def test_one_attempt_allowed_ends_with_the_answer_to_retry() -> None:
    sender = Scripted(settings(max_attempts=1), [503, 200])
    result = await sender.deliver(mailgun(), REQUEST)
    assert (result.status, result.http_status, result.attempts, result.destination_down) == (
        "failed",
        503,
        1,
        True,
    )


async def test_the_time_budget_counts_the_first_attempt() -> None:
    """A first attempt that took longer than ``max_elapsed_s`` leaves no room for a retry."""
    sender = Scripted(settings(max_attempts=5, max_elapsed_s=0.05), [503, 200], took_s=0.1)
    result = await sender.deliver(mailgun(), REQUEST)
    assert (result.status, result.attempts, sender.sent) == ("failed", 1, 1)


async def test_a_budget_longer_than_the_attempts_allows_the_retry() -> None:
    sender = Scripted(settings(max_attempts=5, max_elapsed_s=30.0), [503, 200], took_s=0.01)
    result = await sender.deliver(mailgun(), REQUEST)
    assert (result.status, result.attempts, sender.sent) == ("delivered", 2, 2)
