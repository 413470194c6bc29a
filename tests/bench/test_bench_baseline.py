"""``bench/run.py --baseline-tree``: the baseline worker imports ``signal_sync`` from the other
checkout, a tree without it is refused naming the option, and the result records the tree's commit."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import ModuleType

import pytest

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
