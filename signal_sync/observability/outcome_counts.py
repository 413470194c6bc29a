"""The per-outcome metrics, counted in plain dicts and read as Prometheus families at scrape time.

Every outcome the worker writes (two per event with two integrations) is counted by integration,
status and reason, by operation, as a dead letter, and its latency goes into a histogram.
``prometheus_client``'s ``Counter.inc`` and ``Histogram.observe`` take a lock each and search the
buckets in Python; here an outcome is a few dict updates and one ``bisect``, in half the time
(docs/performance.md). Only the event loop's thread counts and only it collects
(``Metrics.render`` runs in the web handler), so no lock is needed. The exposition is what the
client's own metric types give, without their ``_created`` series.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from itertools import accumulate
from typing import Any

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

NO_REASON = "none"


class OutcomeCounts(Collector):
    """Outcomes, operations, dead letters and event-to-outcome latency of one worker."""

    def __init__(
        self, prefix: str, latency_buckets: Sequence[float], dead_letter_statuses: frozenset[str]
    ) -> None:
        self._prefix = prefix
        self._bounds = tuple(latency_buckets)
        self._dead_letter_statuses = dead_letter_statuses
        self.outcomes: Counter[tuple[str, str, str]] = Counter()
        self.operations: Counter[tuple[str, str, str]] = Counter()
        self.dead_letters: Counter[tuple[str, str]] = Counter()
        self._latency: dict[tuple[str, str], list[float]] = {}
        """Per integration and status: a count per bucket (the last one above every bound), then the sum."""

    def observe(self, outcome: dict[str, Any]) -> None:
        """Count one outcome written, its operation, its dead letter if it got one, and its latency."""
        integration, status = str(outcome.get("integration")), str(outcome.get("status"))
        reason = outcome.get("reason") or NO_REASON
        self.outcomes[(integration, status, reason)] += 1
        operation = outcome.get("operation")
        if operation is not None:
            self.operations[(integration, str(operation), status)] += 1
        if status in self._dead_letter_statuses:
            self.dead_letters[(integration, reason)] += 1
        latency_ms = outcome.get("latency_ms")
        if isinstance(latency_ms, int | float):
            seconds = max(0.0, latency_ms / 1000)  # a skewed clock's negative latency counts as 0
            counts = self._latency.get((integration, status))
            if counts is None:
                counts = self._latency[(integration, status)] = [0.0] * (len(self._bounds) + 2)
            counts[bisect_left(self._bounds, seconds)] += 1  # the first bucket whose bound is >= it
            counts[-1] += seconds

    def collect(self) -> Iterator[Metric]:
        p = self._prefix
        yield counter_family(
            f"{p}_outcomes",
            "Outcomes written to the deliveries topic, by integration, status and reason.",
            ["integration", "status", "reason"],
            self.outcomes,
        )
        yield counter_family(
            f"{p}_operations",
            "Outcomes of the delivery stage by integration, operation (upsert, withdraw_consent, "
            "restore_consent, erase) and status.",
            ["integration", "operation", "status"],
            self.operations,
        )
        yield counter_family(
            f"{p}_dead_letters",
            "Records written to the dead-letter topic, by integration and reason.",
            ["integration", "reason"],
            self.dead_letters,
        )
        latency = HistogramMetricFamily(
            f"{p}_event_to_outcome_seconds",
            "Time from the input record's Kafka timestamp to its outcome, by integration and status.",
            labels=["integration", "status"],
        )
        bounds = [*map(floatToGoString, self._bounds), "+Inf"]
        for labels, counts in self._latency.items():  # a count per bucket, then the sum
            buckets = list(zip(bounds, accumulate(counts[:-1]), strict=True))
            latency.add_metric(labels, buckets, sum_value=counts[-1])
        yield latency


def counter_family(
    name: str, documentation: str, labels: list[str], counts: Mapping[Any, int]
) -> CounterMetricFamily:
    """A counter family with one sample per label values counted."""
    family = CounterMetricFamily(name, documentation, labels=labels)
    for values, count in counts.items():
        family.add_metric(values, count)
    return family
