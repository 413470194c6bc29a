"""Records this process already handled since its assignment are skipped; revocation forgets them."""

from __future__ import annotations

from faust.types import TP

from signal_sync.streams.replay_guard import ReplayGuard

P0 = TP("t", 0)
P1 = TP("t", 1)


def test_replays_are_skipped_per_partition_until_revoked() -> None:
    guard = ReplayGuard()
    assert [guard.is_replay(P0, o) for o in (5, 6, 5, 6, 7)] == [False, False, True, True, False]
    assert guard.is_replay(P1, 5) is False, "partitions are independent"
    guard.forget({P0})
    assert guard.is_replay(P0, 5) is False, "after revocation the next owner's offsets rule"
    assert guard.skipped == 2
