"""Reply classification: status or exception → verdict, and how long a server asked us to wait."""

from __future__ import annotations

from email.utils import formatdate

import aiohttp
import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from signal_sync.destinations.classify import (
    Classification,
    Verdict,
    classify_exception,
    classify_status,
    retry_after,
)

NOW = 1_780_000_000.0  # a whole second, so HTTP dates (second resolution) compare exactly


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, Verdict.DELIVERED),
        (201, Verdict.DELIVERED),
        (202, Verdict.DELIVERED),
        (204, Verdict.DELIVERED),
        (408, Verdict.RETRY),
        (425, Verdict.RETRY),
        (429, Verdict.RETRY),
        (500, Verdict.RETRY),
        (502, Verdict.RETRY),
        (503, Verdict.RETRY),
        (504, Verdict.RETRY),
        (401, Verdict.FAULT),
        (403, Verdict.FAULT),
        (404, Verdict.FAULT),
        (400, Verdict.FAILED),
        (405, Verdict.FAILED),
        (409, Verdict.FAILED),
        (413, Verdict.FAILED),
        (422, Verdict.FAILED),
    ],
)
def test_status_verdict(status: int, verdict: Verdict) -> None:
    assert classify_status(status, {}, NOW).verdict is verdict


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"Retry-After": "0"}, 0.0),
        ({"Retry-After": "1.5"}, 1.5),
        ({"Retry-After": "-3"}, 0.0),
        ({"Retry-After": formatdate(NOW + 30, usegmt=True)}, 30.0),
        ({"Retry-After": formatdate(NOW + 120, usegmt=True)}, 120.0),
        ({"Retry-After": formatdate(NOW - 60, usegmt=True)}, 0.0),
        ({"X-RateLimit-Reset": str(int(NOW) + 12)}, 12.0),
        ({"X-RateLimit-Reset": str(int(NOW) - 5)}, 0.0),
        ({"Retry-After": "3", "X-RateLimit-Reset": str(int(NOW) + 50)}, 3.0),
        ({"Retry-After": "soon"}, None),
        ({"X-RateLimit-Reset": "tomorrow"}, None),
        ({"Retry-After": ""}, None),
        ({}, None),
    ],
)
def test_retry_after(headers: dict[str, str], seconds: float | None) -> None:
    assert retry_after(headers, NOW) == seconds


def test_retry_after_http_date_is_relative_to_now() -> None:
    header = {"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"}
    first = retry_after(header, NOW)
    later = retry_after(header, NOW + 10)
    assert first is not None and later is not None
    assert first - later == pytest.approx(10.0)


def test_header_names_are_case_insensitive_as_aiohttp_gives_them() -> None:
    headers = CIMultiDictProxy(CIMultiDict({"retry-after": "9"}))
    assert retry_after(headers, NOW) == 9.0
    headers = CIMultiDictProxy(CIMultiDict({"x-ratelimit-reset": str(int(NOW) + 4)}))
    assert retry_after(headers, NOW) == 4.0


@pytest.mark.parametrize("status", [429, 503])
def test_retryable_status_carries_the_server_delay(status: int) -> None:
    assert classify_status(status, {"Retry-After": "5"}, NOW) == Classification(Verdict.RETRY, 5.0)


@pytest.mark.parametrize("status", [200, 400, 401])
def test_non_retryable_status_has_no_delay(status: int) -> None:
    assert classify_status(status, {"Retry-After": "5"}, NOW).retry_after_s is None


@pytest.mark.parametrize(
    ("exc", "verdict"),
    [
        (TimeoutError(), Verdict.RETRY),
        (aiohttp.ClientConnectionError("refused"), Verdict.RETRY),
        (aiohttp.ServerDisconnectedError(), Verdict.RETRY),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), Verdict.RETRY),
        (aiohttp.ClientPayloadError("truncated"), Verdict.RETRY),
        (ValueError("bad"), Verdict.FAILED),
        (RuntimeError("boom"), Verdict.FAILED),
        (aiohttp.InvalidURL("nope"), Verdict.FAILED),
    ],
)
def test_exception_verdict(exc: BaseException, verdict: Verdict) -> None:
    result = classify_exception(exc)
    assert result.verdict is verdict
    assert result.retry_after_s is None
