"""``bench/targets.py``: each target read from the run that measures it, and judged against its bound."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.bench.bench_scripts import load


@pytest.fixture(scope="module")
def targets() -> ModuleType:
    return load("targets")


def standard_run(ratio: float, p50: float, p99: float, two_over_one: float, startup: float) -> dict[str, Any]:
    return {
        "_path": "/results/standard.json",
        "ratios": {"signal_sync/passthrough": ratio},
        "paced": {"latency_ms_after_warmup": {"p50": p50, "p99": p99, "max": p99 * 2}},
        "workers": {"two_over_one": two_over_one},
        "variants": {"signal_sync": {"startup_s": startup}},
    }


def many_contacts_run(rss: float, kept: float, lost: float, contacts: int = 1_000_000) -> dict[str, Any]:
    restart = {"kept_state": {"ready_s": kept}, "lost_state": {"ready_s": lost}}
    return {
        "_path": "/results/many.json",
        "variants": {"signal_sync": {"events": contacts, "peak_rss_mb": rss, "restart": restart}},
    }


def verdicts(rows: list[dict[str, Any]]) -> dict[str, bool]:
    return {row["target"]: row["met"] for row in rows}


def test_every_target_met_at_its_bound(targets: ModuleType) -> None:
    rows = targets.evaluate(
        {"standard": standard_run(1.5, 100, 300, 1.6, 2.9), "many_contacts": many_contacts_run(250, 10, 200)}
    )
    assert verdicts(rows) == dict.fromkeys(
        ("throughput", "latency", "two_workers", "startup", "memory", "restart"), True
    )
    by_name = {row["target"]: row for row in rows}
    assert by_name["latency"]["measured"] == {"p50": 100, "p99": 300}
    assert by_name["restart"]["measured"] == {
        "kept_state_ready_s": 10,
        "lost_state_ready_s": 200,
        "contacts": 1_000_000,
    }
    assert by_name["memory"]["result"] == "/results/many.json"
    assert by_name["throughput"]["result"] == "/results/standard.json"


def test_each_target_missed_just_past_its_bound(targets: ModuleType) -> None:
    rows = targets.evaluate(
        {
            "standard": standard_run(1.49, 100.1, 300, 1.59, 3.0),
            "many_contacts": many_contacts_run(250.1, 10.01, 200),
        }
    )
    assert not any(verdicts(rows).values())


def test_latency_needs_both_percentiles(targets: ModuleType) -> None:
    rows = targets.evaluate({"standard": standard_run(2, 50, 301, 2, 1)})
    assert verdicts(rows)["latency"] is False
    run = standard_run(2, 50, 100, 2, 1)
    run["paced"]["latency_ms_after_warmup"] = {"p50": None, "p99": None, "max": None}
    latency = {row["target"]: row for row in targets.evaluate({"standard": run})}["latency"]
    assert latency["measured"] is None and latency["met"] is False, "no event after the warm-up"


def test_a_run_not_made_is_not_measured(targets: ModuleType) -> None:
    rows = targets.evaluate({"standard": standard_run(2, 50, 100, 2, 1)})
    by_name = {row["target"]: row for row in rows}
    assert by_name["memory"] == {
        "target": "memory",
        "asks": by_name["memory"]["asks"],
        "measured": None,
        "met": False,
        "result": None,
    }
    rows.append({**by_name["throughput"], "target": "unmeasured", "measured": None, "met": False})
    table = targets.markdown({"pythons": {"3.13.0": {"targets": rows}}})
    assert "| None | not measured | `standard.json` |" in table
    assert "peak RSS" not in table
    assert "| 3.13.0 | 2 | met | `standard.json` |" in table


def test_memory_and_restart_need_a_million_contacts(targets: ModuleType) -> None:
    rows = targets.evaluate({"many_contacts": many_contacts_run(100, 2, 3, contacts=999_999)})
    assert verdicts(rows)["memory"] is False and verdicts(rows)["restart"] is False


def test_existing_results_are_grouped_by_python_and_kind(targets: ModuleType) -> None:
    def result(python: str, command: list[str], path: str) -> dict[str, Any]:
        return {"machine": {"python": python}, "command": command, "_path": path}

    runs = targets.runs_by_python(
        [
            result("3.13.0", ["python", "bench/run.py", "--events", "200000"], "a"),
            result("3.13.0", ["python", "bench/run.py", "--many-contacts", "--events", "1000000"], "b"),
            result("3.11.7", ["python", "bench/run.py"], "c"),
            result("3.13.0", ["python", "bench/run.py", "--paced"], "d"),
        ]
    )
    assert {v: {k: r["_path"] for k, r in kinds.items()} for v, kinds in runs.items()} == {
        "3.13.0": {"standard": "d", "many_contacts": "b"},
        "3.11.7": {"standard": "c"},
    }


def test_every_interpreter_runs_the_standard_and_the_many_contacts_workload(
    targets: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, bool]] = []

    def bench_run(python: str, args: list[str], results_dir: Path) -> dict[str, Any]:
        many = "--many-contacts" in args
        calls.append((python, many))
        run = many_contacts_run(200, 2, 100) if many else standard_run(1.5, 90, 200, 1.7, 2.5)
        return {**run, "machine": {"python": python.removeprefix("py")}}

    monkeypatch.setattr(targets, "bench_run", bench_run)
    assert targets.main(["--python", "py3.13", "--python", "py3.11", "--results-dir", str(tmp_path)]) == 0
    assert calls == [("py3.13", False), ("py3.13", True), ("py3.11", False), ("py3.11", True)]
    (summary_path,) = tmp_path.glob("*-targets.json")
    summary = json.loads(summary_path.read_text())
    for version in ("3.13", "3.11"):
        assert all(row["met"] for row in summary["pythons"][version]["targets"]), version
