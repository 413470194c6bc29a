"""``bench/run.py --baseline-tree DIR --rounds N``: the baseline worker and this one drained N times
each in one run, which one goes first alternating, and the ratios' median and spread.

Two variants of one run differ by up to about 15% in CPU per 1k events for reasons other than the
code, and the one that runs second tends to look cheaper (docs/performance.md). A change of a few
percent is only told from that by repeating the pair in both orders: round 1 runs the baseline
first, round 2 this worker first, and so on; each round gives one ratio, and the median of the
rounds' ratios is the result.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

BASELINE = "signal_sync_baseline"
CHANGE = "signal_sync"


def round_order(number: int) -> tuple[str, str]:
    """The variants of round ``number`` (from 1) in the order they drain: the baseline first in odd
    rounds, this worker first in even ones."""
    return (BASELINE, CHANGE) if number % 2 else (CHANGE, BASELINE)


def _spread(values: Sequence[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


def summarize_rounds(rounds: Sequence[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Each round's two results (by variant name) → per round: which went first, both variants'
    events/s and CPU seconds per 1k events, and the ratios ``events_per_s`` (this worker / the
    baseline: above 1 drains faster) and ``cpu_per_1k`` (this worker / the baseline: below 1 costs
    less); then each ratio's median, min and max over the rounds."""
    summary: list[dict[str, Any]] = []
    for number, pair in enumerate(rounds, start=1):
        change, baseline = pair[CHANGE], pair[BASELINE]
        summary.append(
            {
                "round": number,
                "first": round_order(number)[0],
                "events_per_s": {CHANGE: change["events_per_s"], BASELINE: baseline["events_per_s"]},
                "cpu_s_per_1k_events": {
                    CHANGE: change["cpu_s_per_1k_events"],
                    BASELINE: baseline["cpu_s_per_1k_events"],
                },
                "ratios": {
                    "events_per_s": round(change["events_per_s"] / baseline["events_per_s"], 3),
                    "cpu_per_1k": round(change["cpu_s_per_1k_events"] / baseline["cpu_s_per_1k_events"], 3),
                },
            }
        )
    return {
        "rounds": summary,
        "events_per_s": _spread([entry["ratios"]["events_per_s"] for entry in summary]),
        "cpu_per_1k": _spread([entry["ratios"]["cpu_per_1k"] for entry in summary]),
    }
