"""Replays are skipped, a gap is reported once (to seek back), and revocation forgets a partition."""

from __future__ import annotations

from faust.types import TP

from signal_sync.streams.replay_guard import ReplayGuard, Seen

P0 = TP("t", 0)
P1 = TP("t", 1)


def test_replay_gap_and_forget() -> None:
    guard = ReplayGuard()
    assert [guard.check(P0, o) for o in (5, 6, 5, 6)] == [Seen.NEW, Seen.NEW, Seen.REPLAY, Seen.REPLAY]
    assert guard.check(P0, 10) is Seen.GAP and guard.resume_offset(P0) == 7
    assert [guard.check(P0, o) for o in (7, 8, 9, 10)] == [Seen.NEW] * 4, "the missing records, then 10"
    assert guard.check(P0, 20) is Seen.GAP
    assert guard.check(P0, 20) is Seen.NEW, "a gap still there after one seek back is real"
    assert guard.check(P1, 100) is Seen.NEW, "partitions are independent; the first offset is never a gap"
    guard.forget({P0})
    assert guard.check(P0, 3) is Seen.NEW, "after revocation the next owner's offsets rule"
    assert (guard.skipped, guard.gaps) == (2, 2)
