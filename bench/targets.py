"""Every scale target of the project in one command: runs ``bench/run.py`` on each interpreter
given, then the many-contacts workload, and writes one summary JSON that states each target, what
was measured, whether it is met and which run's JSON says so.

Runs, per interpreter (``--python``, repeatable; default: this one), each a ``bench/run.py`` of its
own with its result under ``--results-dir``:

1. the standard input (``--events``) with every variant side by side, the paced run at 1,000
   events/s and the one-against-two-worker drain. This gives the throughput ratio, the latency, the
   two-worker ratio and the start-up time;
2. the many-contacts workload (``--many-contacts-events`` new contacts, default 1M) with the restart
   measurement. This gives the memory and restart targets.

Every target is judged on every interpreter: the project supports each of them.

The summary (``<stamp>-targets.json``) and a Markdown table on stdout are what the README's
Performance section reports.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
RUN = BENCH / "run.py"
SCHEMA = "signal-sync.bench-targets/v1"
PACED_RATE = 1000
MANY_CONTACTS = 1_000_000
"""The contacts the memory and restart targets ask for: a smaller many-contacts run meets neither."""


@dataclass(frozen=True)
class Target:
    """One target: its name, what it asks, how to read the measurement from a run's JSON, and
    whether the measurement meets it."""

    name: str
    asks: str
    run: str  # "standard" or "many_contacts"
    measure: Callable[[dict[str, Any]], Any]
    met: Callable[[Any], bool]


def _signal_sync(result: dict[str, Any]) -> dict[str, Any]:
    return result["variants"].get("signal_sync") or {}


def _paced_latency(result: dict[str, Any]) -> dict[str, float] | None:
    paced = result.get("paced") or {}
    latency = paced.get("latency_ms_after_warmup") or {}
    if latency.get("p50") is None or latency.get("p99") is None:
        return None  # no paced run, or no event after its warm-up
    return {"p50": latency["p50"], "p99": latency["p99"]}


def _memory(result: dict[str, Any]) -> dict[str, Any] | None:
    run = _signal_sync(result)
    if run.get("peak_rss_mb") is None:
        return None
    return {"peak_rss_mb": run["peak_rss_mb"], "contacts": run["events"]}  # one new contact per event


def _restart(result: dict[str, Any]) -> dict[str, Any] | None:
    run = _signal_sync(result)
    restart = run.get("restart")
    if not restart:
        return None
    return {
        "kept_state_ready_s": restart["kept_state"]["ready_s"],
        "lost_state_ready_s": restart["lost_state"]["ready_s"],
        "contacts": run["events"],
    }


TARGETS = (
    Target(
        "throughput",
        "signal_sync / passthrough >= 1.5 (events/s, both integrations, defaults)",
        "standard",
        lambda r: r["ratios"].get("signal_sync/passthrough"),
        lambda v: v is not None and v >= 1.5,
    ),
    Target(
        "latency",
        f"paced at {PACED_RATE} events/s: p50 <= 100 ms and p99 <= 300 ms after warm-up",
        "standard",
        _paced_latency,
        lambda v: v is not None and v["p50"] <= 100 and v["p99"] <= 300,
    ),
    Target(
        "two_workers",
        "two workers >= 1.6x one, destination-bound",
        "standard",
        lambda r: (r.get("workers") or {}).get("two_over_one"),
        lambda v: v is not None and v >= 1.6,
    ),
    Target(
        "startup",
        "start to /ready < 3 s",
        "standard",
        lambda r: _signal_sync(r).get("startup_s"),
        lambda v: v is not None and v < 3,
    ),
    Target(
        "memory",
        "peak RSS <= 250 MB, 1M-event backlog over >= 1M new contacts, defaults",
        "many_contacts",
        _memory,
        lambda v: v is not None and v["contacts"] >= MANY_CONTACTS and v["peak_rss_mb"] <= 250,
    ),
    Target(
        "restart",
        "ready <= 10 s after a restart over >= 1M contacts' tables, state folder kept",
        "many_contacts",
        _restart,
        lambda v: v is not None and v["contacts"] >= MANY_CONTACTS and v["kept_state_ready_s"] <= 10,
    ),
)


def bench_run(python: str, args: Sequence[str], results_dir: Path) -> dict[str, Any] | None:
    """One ``bench/run.py`` on ``python``: the result JSON it wrote, or None when it wrote none (its
    targets are then reported as not measured; the runs after it still go)."""
    before = set(results_dir.glob("*.json"))
    command = [python, str(RUN), *args, "--results-dir", str(results_dir)]
    print(f"[targets] {' '.join(command)}", file=sys.stderr, flush=True)
    code = subprocess.run(command, check=False, stdout=subprocess.DEVNULL).returncode
    written = sorted(set(results_dir.glob("*.json")) - before - set(results_dir.glob("*-targets.json")))
    if not written:
        print(f"[targets] bench/run.py on {python} exited {code} without a result", file=sys.stderr)
        return None
    return read_result(written[-1])


def evaluate(runs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each target against the runs it reads (a target whose run is missing is not measured)."""
    rows = []
    for target in TARGETS:
        result = runs.get(target.run)
        measured = target.measure(result) if result is not None else None
        rows.append(
            {
                "target": target.name,
                "asks": target.asks,
                "measured": measured,
                "met": target.met(measured),
                "result": result["_path"] if result is not None else None,
            }
        )
    return rows


def markdown(summary: dict[str, Any]) -> str:
    lines = ["| target | Python | measured | met | result |", "|---|---|---|---|---|"]
    for python, entry in summary["pythons"].items():
        for row in entry["targets"]:
            if row["measured"] is None and row["result"] is None:
                continue
            measured = json.dumps(row["measured"]) if isinstance(row["measured"], dict) else row["measured"]
            met = "met" if row["met"] else "not measured" if row["measured"] is None else "**not met**"
            lines.append(f"| {row['asks']} | {python} | {measured} | {met} | `{Path(row['result']).name}` |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--python",
        action="append",
        default=None,
        help="an interpreter with signal-sync and its bench extras installed (repeatable; default: this one)",
    )
    parser.add_argument("--events", type=int, default=200_000, help="standard input events (default 200000)")
    parser.add_argument(
        "--many-contacts-events",
        type=int,
        default=MANY_CONTACTS,
        help="many-contacts workload: new contacts, one identify each (default 1000000; 0 skips it)",
    )
    parser.add_argument("--results-dir", type=Path, default=BENCH / "results")
    parser.add_argument(
        "--from",
        dest="from_results",
        nargs="+",
        type=Path,
        metavar="RESULT_JSON",
        help="judge these bench/run.py results instead of running anything (grouped by their Python; a "
        "--many-contacts run is the memory and restart run, any other the standard run)",
    )
    return parser.parse_args(argv)


def read_result(path: Path) -> dict[str, Any]:
    """A ``bench/run.py`` result, with the path it was read from (``_path``) for the summary."""
    result = json.loads(path.read_text(encoding="utf-8"))
    result["_path"] = str(path)
    return result


def runs_by_python(results: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Existing results as each Python's runs: a ``--many-contacts`` run and a standard one (the
    later of two of a kind)."""
    runs: dict[str, dict[str, dict[str, Any]]] = {}
    for result in results:
        kind = "many_contacts" if "--many-contacts" in result.get("command", []) else "standard"
        runs.setdefault(result["machine"]["python"], {})[kind] = result
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    pythons = args.python or [sys.executable]
    args.results_dir.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    standard = ["--events", str(args.events), "--paced", "--paced-rate", str(PACED_RATE), "--workers", "2"]
    many = ["--many-contacts", "--events", str(args.many_contacts_events), "--variants", "signal_sync"]
    summary: dict[str, Any] = {
        "schema": SCHEMA,
        "started_at": started.isoformat(timespec="seconds"),
        "pythons": {},
    }
    if args.from_results:
        for version, runs in runs_by_python([read_result(path) for path in args.from_results]).items():
            summary["pythons"][version] = {"interpreter": None, "targets": evaluate(runs)}
        pythons = []
    for python in pythons:
        measured = {"standard": bench_run(python, standard, args.results_dir)}
        if args.many_contacts_events:
            measured["many_contacts"] = bench_run(python, [*many, "--restart", "--no-plot"], args.results_dir)
        runs = {name: result for name, result in measured.items() if result is not None}
        version = next((r["machine"]["python"] for r in runs.values()), python)
        summary["pythons"][version] = {"interpreter": python, "targets": evaluate(runs)}
    summary["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    path = args.results_dir / f"{started.strftime('%Y%m%d-%H%M%S')}-targets.json"
    path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(markdown(summary))
    print(f"\n{path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
