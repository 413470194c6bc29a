"""``replay-dlq``'s pure parts: ``--since``, the key of an old-format letter, where each integration's
replay starts and what it commits."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import OFFSET_INVALID, TopicPartition

from signal_sync.cli.replay_dlq import Progress, legacy_key, parse_since, progress_group
from signal_sync.errors import SignalSyncError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-01", datetime(2026, 3, 1, tzinfo=UTC)),
        ("2026-03-01T10:00:00", datetime(2026, 3, 1, 10, tzinfo=UTC)),
        ("2026-03-01T10:00:00Z", datetime(2026, 3, 1, 10, tzinfo=UTC)),
        ("2026-03-01T12:00:00+02:00", datetime(2026, 3, 1, 10, tzinfo=UTC)),
    ],
)
def test_since_is_iso_8601_and_naive_means_utc(text: str, expected: datetime) -> None:
    assert parse_since(text) == expected
    assert parse_since(None) is None


def test_a_bad_since_names_the_option() -> None:
    with pytest.raises(SignalSyncError, match="--since"):
        parse_since("yesterday")


@pytest.mark.parametrize(
    ("value", "key"),
    [
        (b'{"anonymousId":"a-1","userId":"u-1"}', b"a-1"),
        (b'{"user_id":"u-1","messageId":"m-1"}', b"u-1"),
        (b'{"messageId":"m-1"}', b"m-1"),
        (b'{"anonymousId":""}', None),
        (b"[1]", None),
        (b"\xff not json", None),
        (None, None),
    ],
)
def test_an_old_format_letter_is_keyed_as_signal_sync_produce_keys_it(
    value: bytes | None, key: bytes | None
) -> None:
    assert legacy_key(value) == key


class Committing:
    """Stands in for an integration's progress consumer: its committed offsets, and what it commits."""

    def __init__(self, committed: dict[int, int]) -> None:
        self.committed_offsets = committed
        self.commits: list[list[tuple[int, int]]] = []

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        return [
            TopicPartition(tp.topic, tp.partition, self.committed_offsets.get(tp.partition, OFFSET_INVALID))
            for tp in partitions
        ]

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        assert not asynchronous
        self.commits.append([(tp.partition, tp.offset) for tp in offsets])


def progress(**consumers: Any) -> Progress:
    return Progress(consumers)  # type: ignore[arg-type]


def test_each_integration_resumes_where_its_group_stopped_and_reading_starts_at_the_earliest() -> None:
    mailgun, mautic = Committing({0: 7, 1: 99}), Committing({0: 3})
    state = progress(mailgun=mailgun, mautic=mautic)
    state.load("dlq", {0: (2, 10), 1: (5, 20)}, from_beginning=False)
    assert state.positions == {"mailgun": {0: 7, 1: 5}, "mautic": {0: 3, 1: 5}}, (
        "none committed, or past the end (a topic made again): the log start"
    )
    assert (state.start(0), state.start(1)) == (3, 5)
    assert not state.wants("mailgun", 0, 6) and state.wants("mailgun", 0, 7) and state.wants("mautic", 0, 3)
    assert not state.wants("other", 0, 9), "a letter of an integration not chosen is left for its own run"

    state.commit("dlq", {0: 10, 1: 5})
    assert mailgun.commits == [[(0, 10)]] and mautic.commits == [[(0, 10)]], "only what moved is committed"
    assert state.positions["mailgun"] == {0: 10, 1: 5}

    state.load("dlq", {0: (2, 10), 1: (5, 20)}, from_beginning=True)
    assert state.positions == {"mailgun": {0: 2, 1: 5}, "mautic": {0: 2, 1: 5}}


def test_the_progress_group_is_derived_from_the_app_and_the_integration() -> None:
    assert progress_group("signal-sync", "mautic-main") == "signal-sync-replay-dlq-mautic-main"
