"""The chaos suite's summary table: one row per scenario, printed at the end of the pytest run."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

ROWS_KEY = pytest.StashKey[list["Row"]]()

HEADERS = (
    "scenario",
    "events",
    "outcomes",
    "lost",
    "duplicates",
    "re-applied",
    "out-of-order",
    "seconds",
    "",
)


@dataclass
class Row:
    """What one scenario measured.

    ``duplicates``: outcome records beyond the first per (event, integration), i.e. the same
    delivery_id written again. ``reapplied``: upserts an emulator applied more than once.
    ``out_of_order``: events or requests that broke per-contact order (see ``checks.order_of``
    and ``checks.first_delivery_order``).
    """

    scenario: str
    events: int
    outcomes: int
    lost: int
    duplicates: int
    reapplied: int
    out_of_order: int
    seconds: float
    ok: bool
    note: str = ""
    strict: bool = True  # order judged strictly (no crash, rebalance or outage in the run)

    def cells(self) -> tuple[str, ...]:
        return (
            self.scenario,
            str(self.events),
            str(self.outcomes),
            str(self.lost),
            str(self.duplicates),
            str(self.reapplied),
            f"{self.out_of_order}" + ("" if self.strict else "*"),
            f"{self.seconds:.1f}",
            ("ok" if self.ok else "FAILED") + (f"  {self.note}" if self.note else ""),
        )


def render(rows: list[Row]) -> list[str]:
    """A plain-text table, right-aligned numbers, sorted by scenario name."""
    body = [row.cells() for row in sorted(rows, key=lambda r: r.scenario)]
    widths = [max(len(h), *(len(cells[i]) for cells in body)) for i, h in enumerate(HEADERS)]

    def line(cells: tuple[str, ...]) -> str:
        parts = [
            cell.ljust(widths[i]) if i in (0, len(cells) - 1) else cell.rjust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths[:-1])
    total = sum(r.seconds for r in rows)
    footer = [rule, f"total scenario time {total:.1f}s"]
    if any(not r.strict for r in rows):
        footer.append(
            "* run with a crash, rebalance or broker outage: at-least-once may re-apply a contact's "
            "older events after it (re-applied);"
        )
        footer.append(
            "  out-of-order there counts events first delivered after a later event of their contact, "
            "and requests matching no event"
        )
    return [line(HEADERS), rule, *(line(cells) for cells in body), *footer]
