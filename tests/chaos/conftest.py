"""Fixtures of the fault-injection suite: emulators, topics, worker processes and the summary table.

Every scenario runs the real ``signal-sync worker`` (a subprocess, as users run it) against
the session's real Kafka broker and two in-process emulators, injects its fault, and ends
with ``checks.verify``. Each records a row; the table is printed after the run
(``pytest_terminal_summary``), so it shows in plain ``pytest -q`` output.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from harness import WorkerProcess, free_port

from signal_sync.sandbox import mailgun, mautic, start_in_thread
from signal_sync.sandbox.server import RunningServer
from tests.chaos.checks import DeadLetterTail, OutcomeLog, TopicTail, Verdict, get_json, verify, wait_quiet
from tests.chaos.report import ROWS_KEY, Row, render
from tests.chaos.workload import Workload
from tests.support.config import write_config

PARTITIONS = 4
SOURCE_MAX_BYTES = 8 * 1024 * 1024  # the poison scenario produces a 5 MB value


def pytest_configure(config: pytest.Config) -> None:
    # Until pyproject registers it (the lead adds `chaos` to [tool.pytest.ini_options].markers).
    config.addinivalue_line("markers", "chaos: fault-injection scenarios against the real broker (minutes)")
    config.stash[ROWS_KEY] = []


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the item, so the fixture knows whether the scenario passed."""
    report = yield
    setattr(item, f"chaos_{report.when}", report)
    return report


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    rows = config.stash.get(ROWS_KEY, [])
    if not rows:
        return
    terminalreporter.write_sep("=", "chaos suite: delivery guarantees under faults")
    for line in render(rows):
        terminalreporter.write_line(line)


@dataclass
class Chaos:
    """One scenario's world: broker address, topics, emulators and the workers it started."""

    tmp_path: Path
    bootstrap: str
    topics: dict[str, str]
    mautic: RunningServer
    mailgun: RunningServer
    rows: list[Row]
    workers: list[WorkerProcess] = field(default_factory=list)
    tails: list[TopicTail] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    scenario: str | None = None  # set by the test: its row in the summary table
    work: Workload | None = None
    verdict: Verdict | None = None
    notes: list[str] = field(default_factory=list)
    epochs: list[datetime] = field(default_factory=list)  # crash/rebalance/outage moments

    def boundary(self) -> None:
        """Record a crash, rebalance or outage: from here on at-least-once may replay events, so
        per-contact order is no longer judged strictly (see ``checks.order_of``)."""
        self.epochs.append(datetime.now(UTC))

    def config(self, name: str = "config.yaml", *, app_id: str | None = None, **sections: Any) -> Path:
        """A worker config for this scenario; ``sections`` update the test defaults per section."""
        sections = {key: dict(value) for key, value in sections.items()}
        sections.setdefault("kafka", {})["app_id"] = app_id or f"chaos-{uuid.uuid4().hex[:8]}"
        worker = sections.setdefault("worker", {})
        worker.setdefault("web_port", free_port())
        worker.setdefault("state_dir", str(self.tmp_path / f"state-{name}"))
        return write_config(
            self.tmp_path / name,
            self.bootstrap,
            self.topics,
            self.mautic.url,
            self.mailgun.url,
            self.tmp_path / f"state-{name}",
            **sections,
        )

    def start_worker(self, config: Path, label: str = "worker") -> WorkerProcess:
        process = WorkerProcess(config, self.tmp_path / f"{label}-{len(self.workers)}.log").start()
        self.workers.append(process)
        return process

    def outcome_log(self, work: Workload) -> OutcomeLog:
        tail = OutcomeLog(self.bootstrap, self.topics["deliveries"], PARTITIONS, work)
        self.tails.append(tail)
        return tail

    def dead_letters(self) -> DeadLetterTail:
        tail = DeadLetterTail(self.bootstrap, self.topics["dlq"], 1)
        self.tails.append(tail)
        return tail

    def finish(
        self,
        log: OutcomeLog,
        *,
        check: Any = lambda: None,
        timeout: float = 180.0,
        allowed_statuses: dict[str, set[str]] | None = None,
    ) -> Verdict:
        """Wait for an outcome of every (event, integration), let late replays land, then verify.

        Never raises: a timeout becomes the first problem of the verdict, so the table still
        shows how much was lost.
        """
        assert self.work is log.work
        waited: list[str] = []
        try:
            log.wait("an outcome for every (event, integration)", log.done, timeout, check)
        except AssertionError as exc:
            waited.append(f"{exc}; {len(log.missing)} pair(s) without outcome")
        try:
            wait_quiet([self.mautic.url, self.mailgun.url])
        except AssertionError as exc:
            waited.append(str(exc))
        log.pump(1.0)
        verdict = verify(
            self.work,
            log,
            self.mautic.url,
            self.mailgun.url,
            strict_order=not self.epochs,
            allowed_statuses=allowed_statuses,
        )
        verdict.problems[:0] = waited
        self.verdict = verdict
        self.dump(log)
        return verdict

    def dump(self, log: OutcomeLog) -> None:
        """With CHAOS_DUMP_DIR set, keep the evidence: outcomes, applied logs, epochs, worker logs."""
        target = os.environ.get("CHAOS_DUMP_DIR")
        if not target:
            return
        folder = Path(target) / (self.scenario or "unnamed").split()[0]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "outcomes.json").write_text(json.dumps(log.records))
        (folder / "boundaries.json").write_text(json.dumps([e.isoformat() for e in self.epochs]))
        for name, server in (("mautic", self.mautic), ("mailgun", self.mailgun)):
            (folder / f"{name}-log.json").write_text(json.dumps(get_json(f"{server.url}/_sandbox/log")))
            requests = get_json(f"{server.url}/_sandbox/requests")
            (folder / f"{name}-requests.json").write_text(json.dumps(requests))
        for worker in self.workers:
            shutil.copy(worker.log_path, folder / worker.log_path.name)

    def row(self, passed: bool) -> Row:
        verdict = self.verdict or Verdict(
            events=self.work.events if self.work else 0,
            outcomes=0,
            lost=-1,
            duplicates=0,
            out_of_order=0,
            reapplied=0,
        )
        return Row(
            scenario=self.scenario or "?",
            events=verdict.events,
            outcomes=verdict.outcomes,
            lost=verdict.lost,
            duplicates=verdict.duplicates,
            reapplied=verdict.reapplied,
            out_of_order=verdict.out_of_order,
            seconds=time.monotonic() - self.started,
            ok=passed,
            note="; ".join(self.notes),
            strict=not self.epochs,
        )

    def logs(self, lines: int = 40) -> str:
        return "\n".join(f"--- {w.log_path.name}\n{w.log_tail(lines)}" for w in self.workers)


@pytest.fixture
def chaos(
    request: pytest.FixtureRequest, tmp_path: Path, kafka_bootstrap: str, kafka_topics: Any
) -> Iterator[Chaos]:
    """Fresh topics and emulators; every worker still running afterwards is stopped, logs printed."""
    topics = {
        "source": kafka_topics(
            "chaos.events", partitions=PARTITIONS, config={"max.message.bytes": str(SOURCE_MAX_BYTES)}
        ),
        "deliveries": kafka_topics("chaos.deliveries", partitions=PARTITIONS),
        "dlq": kafka_topics("chaos.dlq", partitions=1),
    }
    with (
        start_in_thread(mautic.create_app(username="signal", password="sandbox-password")) as crm,
        start_in_thread(mailgun.create_app(api_key="key-sandbox")) as mg,
    ):
        world = Chaos(tmp_path, kafka_bootstrap, topics, crm, mg, request.config.stash[ROWS_KEY])
        try:
            yield world
        finally:
            if world.scenario is not None:
                call = getattr(request.node, "chaos_call", None)
                world.rows.append(world.row(passed=bool(call and call.passed)))
            for tail in world.tails:
                tail.close()
            for worker in world.workers:
                if worker.proc is not None and worker.proc.poll() is None:
                    worker.proc.kill()
                    worker.proc.wait(10)
                worker.stop()
            print(world.logs())
