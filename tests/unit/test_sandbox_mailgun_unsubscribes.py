"""The Mailgun emulator's unsubscribe list: one record per address, tags, RFC 2822 dates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signal_sync.sandbox.mailgun_unsubscribes import BadDate, UnsubscribeStore, rfc2822

WHEN = "Thu, 13 Oct 2011 18:02:00 UTC"


@given(
    st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1)),
    st.integers(min_value=-12 * 60, max_value=14 * 60),
)
def test_created_at_reads_any_rfc2822_date_and_writes_it_in_utc(moment, offset_minutes):
    local = moment.replace(microsecond=0, tzinfo=timezone(timedelta(minutes=offset_minutes)))
    assert rfc2822(format_datetime(local)) == local.astimezone(UTC).strftime("%a, %d %b %Y %H:%M:%S UTC")


@pytest.mark.parametrize("value", ["yesterday", "2011-10-13T18:02:00Z", "Thu, 13 Oct 2011"])
def test_created_at_refuses_what_is_not_rfc2822(value):
    with pytest.raises(BadDate):
        rfc2822(value)


def test_one_record_per_address_with_merged_tags():
    store = UnsubscribeStore(("mg.example.com",))
    table = store.table("MG.example.com")
    assert table is not None and store.table("other.example.com") is None
    store.add(table, "Jane@example.com", [], WHEN)
    store.add(table, "jane@example.com", ["news", "*"], WHEN)
    assert store.snapshot() == {
        "mg.example.com": [{"address": "Jane@example.com", "tags": ["*", "news"], "created_at": WHEN}]
    }


def test_remove_one_tag_then_the_record():
    store = UnsubscribeStore(("mg.example.com",))
    table = store.tables["mg.example.com"]
    store.add(table, "jane@example.com", ["news", "promo"], WHEN)
    assert store.remove(table, "jane@example.com", "other") is None
    assert store.remove(table, "JANE@example.com", "news") is not None
    assert table["jane@example.com"].tags == ["promo"]
    assert store.remove(table, "jane@example.com", "promo") is not None
    assert table == {}
    assert store.remove(table, "jane@example.com", None) is None
