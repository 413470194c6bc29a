"""Reply classification: status (whole call or batch item) or exception → verdict, reason and
``created``, and how long a server asked us to wait (bounded)."""

from __future__ import annotations

import math
from email.utils import formatdate

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from signal_sync.destinations.classify import (
    Classification,
    Verdict,
    classify_exception,
    classify_item,
    classify_status,
    created_of,
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
        (420, Verdict.RETRY),
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
    header = {"Retry-After": formatdate(NOW + 100, usegmt=True)}
    first = retry_after(header, NOW)
    later = retry_after(header, NOW + 10)
    assert first is not None and later is not None
    assert first - later == pytest.approx(10.0)


def test_header_names_are_case_insensitive_as_aiohttp_gives_them() -> None:
    headers = CIMultiDictProxy(CIMultiDict({"retry-after": "9"}))
    assert retry_after(headers, NOW) == 9.0
    headers = CIMultiDictProxy(CIMultiDict({"x-ratelimit-reset": str(int(NOW) + 4)}))
    assert retry_after(headers, NOW) == 4.0


@pytest.mark.parametrize("status", [420, 429, 503])
def test_retryable_status_carries_the_server_delay(status: int) -> None:
    assert classify_status(status, {"Retry-After": "5"}, NOW) == Classification(
        Verdict.RETRY, 5.0, f"http_{status}"
    )


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"Retry-After": "inf"}, 60.0),
        ({"Retry-After": "Infinity"}, 60.0),
        ({"Retry-After": "1e400"}, 60.0),
        ({"Retry-After": "1e12"}, 60.0),
        ({"Retry-After": "3600"}, 60.0),
        ({"Retry-After": "60"}, 60.0),
        ({"Retry-After": "-inf"}, 0.0),
        ({"Retry-After": "-1e12"}, 0.0),
        ({"Retry-After": "nan"}, None),
        ({"Retry-After": formatdate(NOW + 86_400, usegmt=True)}, 60.0),
        ({"Retry-After": "Fri, 31 Dec 9999 23:59:59 GMT"}, 60.0),
        ({"Retry-After": "Mon, 01 Jan 0001 00:00:00 GMT"}, 0.0),
        ({"X-RateLimit-Reset": "inf"}, 60.0),
        ({"X-RateLimit-Reset": "1e300"}, 60.0),
        ({"X-RateLimit-Reset": "nan"}, None),
    ],
)
def test_retry_after_is_bounded(headers: dict[str, str], seconds: float | None) -> None:
    assert retry_after(headers, NOW, max_s=60.0) == seconds


def test_retry_after_cap_reaches_the_classification() -> None:
    decision = classify_status(429, {"Retry-After": "1e12"}, NOW, retry_after_max_s=300.0)
    assert decision == Classification(Verdict.RETRY, 300.0, "http_429")


@given(
    header=st.sampled_from(["Retry-After", "X-RateLimit-Reset"]),
    value=st.one_of(
        st.text(max_size=40),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.integers(min_value=-(10**30), max_value=10**30).map(str),
        st.datetimes().map(lambda when: when.strftime("%a, %d %b %Y %H:%M:%S GMT")),
    ),
    max_s=st.floats(min_value=0.001, max_value=10_000),
)
def test_any_header_value_gives_no_wait_or_a_bounded_one(header: str, value: str, max_s: float) -> None:
    seconds = retry_after({header: value}, NOW, max_s=max_s)
    assert seconds is None or (0.0 <= seconds <= max_s and not math.isnan(seconds))


@pytest.mark.parametrize(
    ("status", "reports", "created"),
    [(201, True, True), (200, True, False), (202, True, None), (201, False, None), (200, False, None)],
)
def test_created_only_where_the_destination_reports_it(
    status: int, reports: bool, created: bool | None
) -> None:
    assert created_of(status, reports) is created
    assert classify_status(status, {}, NOW, reports_created=reports).created is created


@pytest.mark.parametrize(
    ("status", "verdict", "reason"),
    [
        (201, Verdict.DELIVERED, None),
        (200, Verdict.DELIVERED, None),
        (400, Verdict.FAILED, "http_400"),
        (422, Verdict.FAILED, "http_422"),
        (409, Verdict.FAILED, "http_409"),
        (408, Verdict.RETRY, "http_408"),
        (420, Verdict.RETRY, "http_420"),
        (425, Verdict.RETRY, "http_425"),
        (429, Verdict.RETRY, "http_429"),
        (500, Verdict.RETRY, "http_500"),
        (503, Verdict.RETRY, "http_503"),
        (401, Verdict.FAULT, "http_401"),
        (403, Verdict.FAULT, "http_403"),
        (404, Verdict.FAULT, "http_404"),
        (None, Verdict.RETRY, "http_item_unknown"),
    ],
)
def test_batch_items_follow_the_same_rules_as_whole_calls(
    status: int | None, verdict: Verdict, reason: str | None
) -> None:
    decision = classify_item(status, reports_created=True)
    assert (decision.verdict, decision.reason) == (verdict, reason)
    if status is not None:
        assert decision.verdict is classify_status(status, {}, NOW).verdict
    assert decision.destination_down is (verdict is Verdict.RETRY)
    if status == 201:
        assert decision.created is True


@pytest.mark.parametrize("status", [200, 400, 401])
def test_non_retryable_status_has_no_delay(status: int) -> None:
    assert classify_status(status, {"Retry-After": "5"}, NOW).retry_after_s is None


@pytest.mark.parametrize(
    ("exc", "verdict", "reason"),
    [
        (TimeoutError(), Verdict.RETRY, "connection_error"),
        (aiohttp.ClientConnectionError("refused"), Verdict.RETRY, "connection_error"),
        (aiohttp.ServerDisconnectedError(), Verdict.RETRY, "connection_error"),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), Verdict.RETRY, "connection_error"),
        (aiohttp.ClientPayloadError("truncated"), Verdict.RETRY, "connection_error"),
        (
            ValueError("Newline or carriage return character detected in HTTP header"),
            Verdict.FAILED,
            "client_error",
        ),
        (TypeError("Type is not JSON serializable: set"), Verdict.FAILED, "client_error"),
        (RuntimeError("boom"), Verdict.FAILED, "client_error"),
        (aiohttp.InvalidURL("nope"), Verdict.FAILED, "client_error"),
    ],
)
def test_exception_verdict(exc: BaseException, verdict: Verdict, reason: str) -> None:
    result = classify_exception(exc)
    assert (result.verdict, result.reason) == (verdict, reason)
    assert result.retry_after_s is None
    assert result.destination_down is (verdict is Verdict.RETRY)


def test_dns_failure_is_the_destinations() -> None:
    key = aiohttp.client_reqrep.ConnectionKey("mautic.invalid", 443, True, None, None, None, None)
    exc = aiohttp.ClientConnectorDNSError(key, OSError(-2, "Name or service not known"))
    assert classify_exception(exc).verdict is Verdict.RETRY
