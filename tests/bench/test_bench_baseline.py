"""``bench/run.py --baseline-tree``: the baseline worker imports ``signal_sync`` from the other
checkout, a tree without it is refused naming the option, and the result records the tree's commit."""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.bench.bench_scripts import load


@pytest.fixture(scope="module")
def run() -> ModuleType:
    return load("run")


def package_tree(root: Path) -> Path:
    """A checkout stand-in whose ``signal_sync`` package is not this repository's: its worker
    command prints where it was imported from."""
    (root / "signal_sync" / "cli").mkdir(parents=True)
    (root / "signal_sync" / "__init__.py").write_text('"""The baseline."""\n', encoding="utf-8")
    (root / "signal_sync" / "cli" / "__init__.py").write_text("", encoding="utf-8")
    (root / "signal_sync" / "cli" / "main.py").write_text("print(__file__)\n", encoding="utf-8")
    return root


def test_the_baseline_worker_runs_the_trees_package(run: ModuleType, tmp_path: Path) -> None:
    tree = package_tree(tmp_path / "before")
    assert run.check_tree(tree) == tree.resolve()
    worker = run.WorkerProcess(tmp_path / "unused.yaml", tmp_path / "worker.log", cwd=tree).start()
    assert worker.proc is not None and worker.proc.wait(30) == 0
    assert worker.stop() == 0
    assert Path((tmp_path / "worker.log").read_text().strip()) == tree / "signal_sync" / "cli" / "main.py"


def test_a_tree_without_the_package_is_refused_naming_the_option(run: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="--baseline-tree") as refused:
        run.check_tree(tmp_path)
    assert "not from that tree" in str(refused.value)


def test_the_result_names_the_baseline_commit_and_whether_it_had_changes(
    run: ModuleType, tmp_path: Path
) -> None:
    tree = package_tree(tmp_path / "repo")
    git = ["git", "-C", str(tree), "-c", "user.email=bench@example.com", "-c", "user.name=bench"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "baseline"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout
    head = head.strip()
    assert run.tree_revision(tree) == {"path": str(tree), "commit": head, "dirty": False}
    (tree / "signal_sync" / "__init__.py").write_text('"""Changed."""\n', encoding="utf-8")
    assert run.tree_revision(tree)["dirty"] is True
    assert run.tree_revision(tmp_path / "not-a-repo")["commit"] is None


def test_a_baseline_is_refused_when_nothing_drains_before_it(run: ModuleType, tmp_path: Path) -> None:
    tree = package_tree(tmp_path / "before")
    with pytest.raises(SystemExit, match="needs a variant that drains before it"):
        run.main(["--variants", "signal_sync", "--baseline-tree", str(tree), "--results-dir", str(tmp_path)])
    assert not list(tmp_path.glob("*.json"))


def test_rounds_alternate_which_worker_drains_first() -> None:
    rounds = load("rounds")
    orders = [rounds.round_order(number) for number in range(1, 6)]
    assert orders[0] == ("signal_sync_baseline", "signal_sync"), "round 1 keeps the order of a single pair"
    assert all(set(order) == {"signal_sync_baseline", "signal_sync"} for order in orders)
    assert [order[0] for order in orders] == [
        "signal_sync_baseline",
        "signal_sync",
        "signal_sync_baseline",
        "signal_sync",
        "signal_sync_baseline",
    ]


@given(
    st.lists(
        st.tuples(st.floats(100, 10_000), st.floats(100, 10_000), st.floats(0.05, 1), st.floats(0.05, 1)),
        min_size=1,
        max_size=9,
    )
)
def test_the_rounds_summary_is_each_rounds_ratio_and_their_median(measured) -> None:  # type: ignore[no-untyped-def]
    rounds = load("rounds")
    pairs = [
        {
            "signal_sync": {"events_per_s": change_rate, "cpu_s_per_1k_events": change_cpu},
            "signal_sync_baseline": {"events_per_s": base_rate, "cpu_s_per_1k_events": base_cpu},
        }
        for change_rate, base_rate, change_cpu, base_cpu in measured
    ]
    summary = rounds.summarize_rounds(pairs)
    rates = [round(c / b, 3) for c, b, _, _ in measured]
    cpus = [round(c / b, 3) for _, _, c, b in measured]
    assert [entry["ratios"] for entry in summary["rounds"]] == [
        {"events_per_s": rate, "cpu_per_1k": cpu} for rate, cpu in zip(rates, cpus, strict=True)
    ]
    assert [entry["first"] for entry in summary["rounds"]] == [
        rounds.round_order(n)[0] for n in range(1, len(measured) + 1)
    ]
    assert summary["events_per_s"] == {
        "median": round(statistics.median(rates), 3),
        "min": min(rates),
        "max": max(rates),
    }
    assert summary["cpu_per_1k"]["median"] == round(statistics.median(cpus), 3)


def test_rounds_are_refused_without_a_baseline(run: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="--rounds"):
        run.main(["--variants", "passthrough,signal_sync", "--rounds", "3", "--results-dir", str(tmp_path)])
    tree = package_tree(tmp_path / "before")
    with pytest.raises(SystemExit, match="add signal_sync"):
        run.main(
            ["--variants", "passthrough", "--baseline-tree", str(tree), "--rounds", "2"]
            + ["--results-dir", str(tmp_path)]
        )
    assert not list(tmp_path.glob("*.json"))


def test_the_main_threads_run_and_wait_shares_come_from_its_schedstat(run: ModuleType) -> None:
    """The harness reads the main thread's schedstat: running busy raises its run time, and the
    shares are the growth of each over the span."""
    before = run.main_thread_schedstat(os.getpid())
    if before is None:
        pytest.skip("no schedstat on this kernel")
    deadline = time.thread_time() + 0.05
    while time.thread_time() < deadline:
        pass
    after = run.main_thread_schedstat(os.getpid())
    assert after is not None and after[0] - before[0] >= 0.04
    shares = run.main_thread_share((1.0, 2.0), (2.5, 2.5), 2.0)
    assert shares == {"run_share": 0.75, "runqueue_wait_share": 0.25}
    assert run.main_thread_share(None, after, 1.0) is None
    assert run.main_thread_schedstat(2**22 + 12345) is None  # no such process
