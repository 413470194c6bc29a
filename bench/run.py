"""Benchmark: signal-sync against a naive Faust agent and the pass-through limit, in one run.

Same broker, same generated input, same emulators with the same injected latency, one
variant after the other:

0. ``librdkafka_floor``: ``faust_floor``'s work per record in a plain confluent-kafka consume loop,
   without Faust: the floor of a design that leaves Faust's per-record path.
   ``faust_floor``: ``passthrough`` with its record written through librdkafka: what Faust's
   own per-record consume path costs, the floor of any Faust agent on this machine.
1. ``passthrough``: decode each event and write an outcome-sized record; no HTTP. The
   Kafka-side ceiling of this machine.
2. ``naive``: map each event with the worker's planner and await each HTTP call in turn.
   Measured over a time window (``--naive-window-s``), it does ~1/latency events per second.
3. ``work_floor``: signal-sync's own work per event (the worker's decoding, stitching, planning,
   batched bulk calls and outcomes) in ``librdkafka_floor``'s loop, without the internal topics and
   Faust: the floor of a pipeline that reads the source in batches (``bench/work_floor_app.py``).
4. ``signal_sync``: the real worker (``signal-sync worker -c FILE``), both integrations.
5. ``signal_sync_mapped`` (only when named in ``--variants``): the same worker with a ``mapping``
   and ``events`` block on both integrations (``MAPPED_BLOCKS``), against ``signal_sync``: the
   cost of a configured field mapping (ratio ``signal_sync_mapped / signal_sync``).
6. ``signal_sync_baseline`` (with ``--baseline-tree DIR``): the worker of another checkout's
   ``signal_sync`` package, run just before ``signal_sync`` with the same config, for a change's
   before/after in one run (ratio ``signal_sync / signal_sync_baseline``): separate runs on this
   machine drift by more than most changes move.

For each: events/s from the first to the last outcome, p50/p95/p99 latency from the input
record's produce timestamp to the outcome record's timestamp, peak RSS of the worker's
process tree, CPU seconds per 1k events; then the ratios ``signal_sync / naive``,
``signal_sync / passthrough``, ``signal_sync / faust_floor``, ``signal_sync / librdkafka_floor`` and
``work_floor / passthrough``.
``--paced`` re-runs signal-sync with input at half its measured rate (the latency that matters in
steady state); ``--workers 2`` compares one and two worker processes at a higher latency, where the
destination and not the CPU limits.

Prints the result as JSON (without the per-second timelines) and writes the full JSON and a
PNG plot to ``bench/results/<timestamp>.{json,png}``. See ``bench/README.md``.

    python bench/run.py                      # 200k events (the issue's size), 25 ms
    python bench/run.py --events 50000       # a quicker look
    python bench/run.py --million --paced --workers 2
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from array import array
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
for extra in (BENCH, REPO / "dev"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

import many_contacts  # noqa: E402
import numpy as np  # noqa: E402
import orjson  # noqa: E402
import psutil  # noqa: E402
import yaml  # noqa: E402
from confluent_kafka import OFFSET_BEGINNING, Consumer, ConsumerGroupState, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402
from emulators import MAILGUN_KEY, MAUTIC_PASSWORD, MAUTIC_USER, Emulator  # noqa: E402
from harness import WorkerProcess, free_port  # noqa: E402
from restart import measure_restarts  # noqa: E402
from rounds import round_order, summarize_rounds  # noqa: E402
from workload import INTEGRATION_IDS, Workload, WorkloadSpec, expected_outcomes, generate, index_of  # noqa: E402

SCHEMA = "signal-sync.bench/v1"
VARIANTS = ("librdkafka_floor", "faust_floor", "passthrough", "naive", "work_floor", "signal_sync")
WARMING_VARIANTS = VARIANTS[:-1]
"""The variants that drain before ``signal_sync_baseline`` (which runs just before ``signal_sync``)."""
OPTIONAL_VARIANTS = ("signal_sync_mapped",)
MAPPED_BLOCKS: dict[str, dict[str, Any]] = {
    "mautic": {
        "mapping": {
            "signal_plan": "traits.plan",
            "company": ["traits.company", {"const": "none"}],
            "signal_last_page": "context.page.url",
            "signal_sku": "properties.sku",
            "phone": None,
        },
        "events": {"Signed Up": {"mapping": {"signal_signup_source": "context.campaign.source"}}},
    },
    "mailgun": {
        "mapping": {
            "vars.plan_tier": "traits.plan",
            "vars.last_sku": "properties.sku",
            "name": ["traits.name", "traits.first_name"],
        },
        "events": {"Order Completed": {"mapping": {"vars.order_total": "properties.revenue"}}},
    },
}
"""The ``signal_sync_mapped`` variant's blocks: a few fields from traits, properties and context,
a constant fallback, a dropped default and a per-event field per destination. The events taken
stay the default ones, so the expected outcomes are those of ``signal_sync``."""
PARTITIONS = 12
DEFAULT_RESULTS = BENCH / "results"
READY_TIMEOUT_S = 180.0
QUIET = logging.getLogger("bench.librdkafka")
QUIET.setLevel(logging.CRITICAL)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------- measuring


class OutcomeCollector(threading.Thread):
    """Reads the outcome topic from the start; keeps each outcome's timestamp and latency.

    An outcome is matched to its input by message id (the input index) and counted once
    per (event, integration); repeats are counted as duplicates, not twice.
    """

    def __init__(
        self, bootstrap: str, topic: str, events: int, integrations: Sequence[str], produced_ms: array
    ) -> None:
        super().__init__(name=f"collect-{topic}", daemon=True)
        self.topic = topic
        self.events = events
        self.slots = {name: slot for slot, name in enumerate(integrations)}
        self.expected = events * len(integrations)
        self.produced_ms = produced_ms
        self.seen = [bytearray(events) for _ in integrations]
        self.ts_ms = array("d")
        self.latency_ms = array("d")
        self.delivered = array("b")  # per outcome in ts_ms: 1 when it is ``delivered``
        self.statuses: dict[str, Counter[str]] = {name: Counter() for name in integrations}
        self.first_ms: float | None = None
        self.unique = 0
        self.duplicates = 0
        self.foreign = 0
        self.last_progress = time.monotonic()
        self._halt = threading.Event()
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-collector-{topic}",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 50,
                "logger": QUIET,
            }
        )
        self._consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])

    @property
    def done(self) -> bool:
        return self.unique >= self.expected

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                for message in self._consumer.consume(num_messages=2000, timeout=0.2):
                    if message.error() is None:
                        self._take(message)
        finally:
            self._consumer.close()

    def _take(self, message: Any) -> None:
        value = orjson.loads(message.value())
        index = index_of(str(value.get("message_id")))
        slot = self.slots.get(value.get("integration"))
        if index is None or slot is None or index >= self.events:
            self.foreign += 1
            return
        if self.seen[slot][index]:
            self.duplicates += 1
            return
        self.seen[slot][index] = 1
        stamp = float(message.timestamp()[1])
        if self.first_ms is None or stamp < self.first_ms:
            self.first_ms = stamp
        self.ts_ms.append(stamp)
        self.latency_ms.append(stamp - self.produced_ms[index])
        status = value.get("status")
        self.delivered.append(status == "delivered")
        reason = value.get("reason")
        self.statuses[value["integration"]][status if status == "delivered" else f"{status}:{reason}"] += 1
        self.unique += 1
        self.last_progress = time.monotonic()

    def stop(self) -> None:
        self._halt.set()
        self.join(15)


class ResourceSampler(threading.Thread):
    """Samples RSS (peak) and CPU time of process trees every ``interval`` seconds."""

    def __init__(self, pids: Sequence[int], interval: float = 0.2) -> None:
        super().__init__(name="sampler", daemon=True)
        self.pids = list(pids)
        self.interval = interval
        self.peak_rss = 0
        self.peak_rss_per_process = {pid: 0 for pid in self.pids}
        self._halt = threading.Event()

    @staticmethod
    def _tree(pid: int) -> list[psutil.Process]:
        try:
            root = psutil.Process(pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    def cpu_seconds(self) -> float:
        """User+system CPU of every sampled tree (exited children included via the root)."""
        total = 0.0
        for pid in self.pids:
            for index, proc in enumerate(self._tree(pid)):
                with contextlib.suppress(psutil.Error):
                    times = proc.cpu_times()
                    total += times.user + times.system
                    if index == 0:
                        total += times.children_user + times.children_system
        return total

    def sample(self) -> None:
        total = 0
        for pid in self.pids:
            rss = 0
            for proc in self._tree(pid):
                with contextlib.suppress(psutil.Error):
                    rss += proc.memory_info().rss
            self.peak_rss_per_process[pid] = max(self.peak_rss_per_process[pid], rss)
            total += rss
        self.peak_rss = max(self.peak_rss, total)

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self._halt.set()
        self.join(5)
        self.sample()


def main_thread_schedstat(pid: int) -> tuple[float, float] | None:
    """Seconds the main thread of process ``pid`` has run, and has waited for a CPU while it could
    run (Linux ``schedstat``); None where the kernel does not say."""
    try:
        run_ns, wait_ns, _ = Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()
        return int(run_ns) / 1e9, int(wait_ns) / 1e9
    except (OSError, ValueError):
        return None


def main_thread_share(
    before: tuple[float, float] | None, after: tuple[float, float] | None, seconds: float
) -> dict[str, float] | None:
    """What the main thread did over ``seconds``: the share it ran and the share it was ready to run
    but waited for a CPU (taken by other processes: the broker, the emulators, this harness). Their
    sum near 1 means a worker bound by its one thread; a large wait share, by the machine's cores."""
    if before is None or after is None or seconds <= 0:
        return None
    return {
        "run_share": round((after[0] - before[0]) / seconds, 3),
        "runqueue_wait_share": round((after[1] - before[1]) / seconds, 3),
    }


def producer_with_id(config: dict[str, Any], timeout_s: float = 30.0) -> Producer:
    """An idempotent producer that is connected and has its producer id, as a long-lived upstream
    producer has. A new one holds its first records until it gets the id (about 500 ms here, longer
    on a broker that has just started), which the paced run would count as the worker's latency."""
    state: dict[str, str | None] = {}

    def on_stats(raw: str) -> None:
        state["idempotence"] = orjson.loads(raw).get("eos", {}).get("idemp_state")

    producer = Producer({**config, "statistics.interval.ms": 100, "stats_cb": on_stats})
    producer.list_topics(timeout=timeout_s)  # connects now
    deadline = time.monotonic() + timeout_s
    while state.get("idempotence") != "Assigned":
        if time.monotonic() > deadline:
            raise RuntimeError(f"the input producer got no producer id within {timeout_s:.0f} s")
        producer.poll(0.05)
    return producer


def produce(
    bootstrap: str,
    topic: str,
    records: Sequence[tuple[bytes, bytes]],
    produced_ms: array,
    rate: float | None = None,
) -> float:
    """Produce every record, stamping its timestamp into ``produced_ms``; paced at ``rate``/s if set.

    Returns the seconds it took. Fails unless every record is acknowledged.
    """
    errors: list[str] = []

    def delivered(err: Any, _message: Any) -> None:
        if err is not None:
            errors.append(str(err))

    producer = producer_with_id(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "linger.ms": 5,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 2_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
            "logger": QUIET,
        }
    )
    started = time.monotonic()
    for index, (key, value) in enumerate(records):
        if rate is not None:
            due_at = started + index / rate
            delay = due_at - time.monotonic()
            if delay > 0:
                producer.poll(0)
                time.sleep(delay)
        now_ms = time.time() * 1000.0
        produced_ms[index] = now_ms
        while True:
            try:
                producer.produce(topic, value=value, key=key, timestamp=int(now_ms), on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
        if index % 2000 == 0:
            producer.poll(0)
    remaining = producer.flush(120)
    if remaining or errors:
        raise RuntimeError(f"{remaining} records not flushed, {len(errors)} failed: {errors[:3]}")
    return time.monotonic() - started


def percentiles(values: np.ndarray) -> dict[str, float | None]:
    if values.size == 0:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {
        "p50": round(float(p50), 1),
        "p95": round(float(p95), 1),
        "p99": round(float(p99), 1),
        "max": round(float(values.max()), 1),
    }


def timeline(ts_ms: np.ndarray, latency_ms: np.ndarray, per_event: int) -> dict[str, list[float]]:
    """Per-second buckets since the first outcome: completed events/s, p50 and p99 latency."""
    if ts_ms.size == 0:
        return {"t_s": [], "events_per_s": [], "p50_ms": [], "p99_ms": []}
    buckets = ((ts_ms - ts_ms.min()) // 1000).astype(np.int64)
    order = np.argsort(buckets, kind="stable")
    buckets, latency = buckets[order], latency_ms[order]
    edges = np.flatnonzero(np.diff(buckets)) + 1
    out: dict[str, list[float]] = {"t_s": [], "events_per_s": [], "p50_ms": [], "p99_ms": []}
    for bucket, lat in zip(np.split(buckets, edges), np.split(latency, edges), strict=True):
        p50, p99 = np.percentile(lat, [50, 99])
        out["t_s"].append(int(bucket[0]))
        out["events_per_s"].append(round(lat.size / per_event, 1))
        out["p50_ms"].append(round(float(p50), 1))
        out["p99_ms"].append(round(float(p99), 1))
    return out


# ------------------------------------------------------------------------------- variants


def listening_pid(bootstrap: str) -> int | None:
    """The process on this machine that listens on the first bootstrap server's port (the broker,
    when it runs here; None for a remote one), so its CPU can be counted beside the worker's."""
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    if host not in ("127.0.0.1", "localhost", "::1", "[::1]", "0.0.0.0", ""):
        return None
    with contextlib.suppress(psutil.Error, ValueError):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == int(port):
                return conn.pid
    return None


@dataclass
class Context:
    args: argparse.Namespace
    bootstrap: str
    admin: AdminClient
    workload: Workload
    expected: dict[str, Any]
    mautic: Emulator
    mailgun: Emulator
    work: Path
    run_id: str
    results_prefix: Path
    broker_pid: int | None = None
    """The broker's process when it runs on this machine: its CPU is reported per variant."""
    created_topics: list[str] = field(default_factory=list)


@dataclass
class Launched:
    """The processes of one variant and how to tell when they are ready."""

    pids: list[int]
    group: str
    stop: Callable[[], None]
    alive: Callable[[], None]
    ready: Callable[[], bool] = lambda: True
    logs: list[Path] = field(default_factory=list)
    configs: list[Path] = field(default_factory=list)
    """signal-sync's worker configs, for the restart measurement."""


def create_topics(ctx: Context, names: Sequence[str]) -> None:
    futures = ctx.admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names], operation_timeout=30)
    for name, future in futures.items():
        future.result(60)
        ctx.created_topics.append(name)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        topics = ctx.admin.list_topics(timeout=10).topics
        if all(n in topics and len(topics[n].partitions) == PARTITIONS for n in names):
            return
        time.sleep(0.1)
    raise RuntimeError(f"topics {names} not visible")


def delete_topics_with_prefix(ctx: Context, *prefixes: str) -> None:
    names = [t for t in ctx.admin.list_topics(timeout=10).topics if t.startswith(prefixes)]
    if names:
        for future in ctx.admin.delete_topics(names, operation_timeout=30).values():
            with contextlib.suppress(Exception):
                future.result(60)


def group_ready(ctx: Context, group: str, topic: str, members: int) -> bool:
    try:
        description = ctx.admin.describe_consumer_groups([group])[group].result(10)
    except Exception:
        return False
    if description.state != ConsumerGroupState.STABLE or len(description.members) != members:
        return False
    assigned = {
        tp.partition
        for member in description.members
        if member.assignment is not None
        for tp in member.assignment.topic_partitions
        if tp.topic == topic
    }
    return len(assigned) == PARTITIONS


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:  # noqa: S310 (loopback worker)
            return reply.status == 200
    except OSError:
        return False


def launch_bench_app(ctx: Context, label: str, topics: dict[str, str], script: str) -> Launched:
    app_id = f"bench-{ctx.run_id}-{label}"
    config = {
        "app_id": app_id,
        "bootstrap": ctx.bootstrap,
        "partitions": PARTITIONS,
        "state_dir": str(ctx.work / label / "state"),
        "source_topic": topics["source"],
        "outcome_topic": topics["outcomes"],
        "changelog_topic": topics["changelog"],
        "mautic_url": ctx.mautic.url,
        "mailgun_url": ctx.mailgun.url,
    }
    (ctx.work / label).mkdir(parents=True, exist_ok=True)
    config_path = ctx.work / label / "config.json"
    config_path.write_text(json.dumps(config), encoding="utf-8")
    log_path = ctx.work / label / "app.log"
    out = log_path.open("ab")
    proc = subprocess.Popen(
        [sys.executable, str(BENCH / script), str(config_path)],
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        cwd=BENCH,
    )

    def stop() -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        out.close()

    def alive() -> None:
        if proc.poll() is not None:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-40:])
            raise RuntimeError(f"{label} exited with {proc.returncode}:\n{tail}")

    return Launched([proc.pid], app_id, stop, alive, logs=[log_path])


def signal_sync_config(
    ctx: Context,
    label: str,
    index: int,
    topics: dict[str, str],
    app_id: str,
    integration_set: Sequence[str] = (),
    mapped: bool = False,
) -> tuple[Path, int]:
    web_port = free_port()
    config: dict[str, Any] = {
        "kafka": {
            "bootstrap_servers": ctx.bootstrap,
            "app_id": app_id,
            "source_topic": topics["source"],
            "deliveries_topic": topics["outcomes"],
            "dead_letter_topic": topics["dlq"],
        },
        "worker": {"state_dir": str(ctx.work / label / f"state-{index}"), "web_port": web_port},
        "integrations": [
            {
                "id": INTEGRATION_IDS[0],
                "type": "mautic",
                "base_url": ctx.mautic.url,
                "api_user": MAUTIC_USER,
                "api_password": MAUTIC_PASSWORD,
            },
            {
                "id": INTEGRATION_IDS[1],
                "type": "mailgun",
                "base_url": ctx.mailgun.url,
                "api_key": MAILGUN_KEY,
                "list_address": "newsletter@mg.example.com",
            },
        ],
    }
    for item in ctx.args.worker_set:
        dotted, _, raw = item.partition("=")
        section, _, key = dotted.partition(".")
        if not key:
            raise SystemExit(f"--worker-set wants section.key=value, got {item!r}")
        config.setdefault(section, {})[key] = yaml.safe_load(raw)
    for item in integration_set:
        key, _, raw = item.partition("=")
        for integration in config["integrations"]:
            integration[key] = yaml.safe_load(raw)
    if mapped:
        for integration in config["integrations"]:
            integration.update(MAPPED_BLOCKS[integration["type"]])
    path = ctx.work / label / f"worker-{index}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path, web_port


def launch_signal_sync(
    ctx: Context,
    label: str,
    topics: dict[str, str],
    workers: int = 1,
    integration_set: Sequence[str] = (),
    mapped: bool = False,
    tree: Path | None = None,
) -> Launched:
    """``tree``: run the ``signal_sync`` package of that checkout instead of this one (the worker
    starts in the tree: ``python -m`` imports from its working directory first)."""
    app_id = f"bench-{ctx.run_id}-{label}"
    (ctx.work / label).mkdir(parents=True, exist_ok=True)
    processes: list[WorkerProcess] = []
    ports: list[int] = []
    configs: list[Path] = []
    for index in range(workers):
        config, port = signal_sync_config(ctx, label, index, topics, app_id, integration_set, mapped)
        log_path = ctx.work / label / f"worker-{index}.log"
        processes.append(WorkerProcess(config, log_path, cwd=tree).start())
        ports.append(port)
        configs.append(config)

    def stop() -> None:
        for process in processes:
            process.stop(timeout=40)

    def alive() -> None:
        for process in processes:
            process.assert_alive()

    def ready() -> bool:
        return all(http_ok(f"http://127.0.0.1:{port}/ready") for port in ports)

    pids = [p.proc.pid for p in processes if p.proc is not None]
    return Launched(pids, app_id, stop, alive, ready, [p.log_path for p in processes], configs)


def check_tree(tree: Path) -> Path:
    """``tree`` resolved, once a Python started in it imports ``signal_sync`` from it (as the worker
    will); else exits naming ``--baseline-tree``."""
    tree = tree.resolve()
    probe = subprocess.run(
        [sys.executable, "-c", "import signal_sync; print(signal_sync.__file__)"],
        cwd=tree,
        capture_output=True,
        text=True,
        check=False,
    )
    found = Path(probe.stdout.strip()).resolve() if probe.returncode == 0 else None
    if found is None or not found.is_relative_to(tree / "signal_sync"):
        raise SystemExit(
            f"--baseline-tree {tree}: signal_sync is imported from {found or probe.stderr.strip()[-300:]}, "
            "not from that tree (a checkout of this repository, e.g. git worktree add DIR REV)"
        )
    return tree


def tree_revision(tree: Path) -> dict[str, Any]:
    """Where the baseline came from: the tree, its commit and whether it had uncommitted changes."""

    def git(*arguments: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(tree), *arguments], capture_output=True, text=True, check=False
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    return {
        "path": str(tree),
        "commit": git("rev-parse", "HEAD") or None,
        "dirty": bool(git("status", "--porcelain")),
    }


@dataclass
class RunPlan:
    name: str
    label: str
    launch: Callable[[Context, str, dict[str, str]], Launched]
    integrations: tuple[str, ...]
    latency_ms: float
    records: Sequence[tuple[bytes, bytes]]
    workers: int = 1
    window_s: float | None = None
    rate: float | None = None
    profile: bool = False
    check_expected: bool = True
    restart: bool = False
    """After the drain: stop the worker and time two restarts over its tables (``bench/restart.py``)."""


def run_variant(ctx: Context, plan: RunPlan) -> dict[str, Any]:
    """Start the variant on fresh topics, feed it the input, measure, stop it, clean up."""
    log(f"{plan.name}: starting ({len(plan.records):,} events, latency {plan.latency_ms} ms)")
    prefix = f"bench.{ctx.run_id}.{plan.label}"
    topics = {
        "source": f"{prefix}.events",
        "outcomes": f"{prefix}.outcomes",
        "dlq": f"{prefix}.dlq",
        "changelog": f"{prefix}.changelog",
    }
    create_topics(ctx, list(topics.values()))
    for emulator in (ctx.mautic, ctx.mailgun):
        emulator.reset(plan.latency_ms)
    events = len(plan.records)
    produced_ms = array("d", bytes(8 * events))
    collector = OutcomeCollector(ctx.bootstrap, topics["outcomes"], events, plan.integrations, produced_ms)
    collector.start()
    started = time.monotonic()
    launched = plan.launch(ctx, plan.label, topics)
    sampler = ResourceSampler(launched.pids)
    sampler.start()
    emulator_sampler = ResourceSampler([ctx.mautic.proc.pid, ctx.mailgun.proc.pid])
    broker_sampler = ResourceSampler([ctx.broker_pid] if ctx.broker_pid is not None else [])
    profiler: subprocess.Popen[bytes] | None = None
    profile_path = Path(f"{ctx.results_prefix}-{plan.label}.pyspy.txt")
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not (group_ready(ctx, launched.group, topics["source"], plan.workers) and launched.ready()):
            launched.alive()
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{plan.name} not ready after {READY_TIMEOUT_S:.0f}s; logs: {launched.logs}"
                )
            time.sleep(0.25)
        startup_s = time.monotonic() - started
        log(f"{plan.name}: ready after {startup_s:.1f}s; producing")
        if plan.profile:
            profiler = start_profiler(launched.pids[0], profile_path)
        cpu_start = sampler.cpu_seconds()
        emulator_cpu_start = emulator_sampler.cpu_seconds()
        broker_cpu_start = broker_sampler.cpu_seconds()
        sched_start, measured_from = main_thread_schedstat(launched.pids[0]), time.monotonic()
        produce_s = produce(ctx.bootstrap, topics["source"], plan.records, produced_ms, plan.rate)
        log(f"{plan.name}: produced in {produce_s:.1f}s; waiting for outcomes")
        stalled = wait_for_outcomes(ctx, plan, collector, launched)
        main_thread = main_thread_share(
            sched_start, main_thread_schedstat(launched.pids[0]), time.monotonic() - measured_from
        )
        cpu_s = sampler.cpu_seconds() - cpu_start
        emulator_cpu_s = emulator_sampler.cpu_seconds() - emulator_cpu_start
        broker_cpu_s = broker_sampler.cpu_seconds() - broker_cpu_start
        http_requests = {"mautic": ctx.mautic.api_requests(), "mailgun": ctx.mailgun.api_requests()}
        restart = measure_restart(ctx, launched, topics, events) if plan.restart and not stalled else None
    finally:
        profile = stop_profiler(profiler, profile_path) if profiler is not None else None
        for cleanup in (
            sampler.stop,
            launched.stop,
            collector.stop,
            lambda: delete_topics_with_prefix(ctx, prefix, f"bench-{ctx.run_id}-{plan.label}"),
        ):
            try:
                cleanup()
            except Exception as exc:  # keep cleaning up; the original error matters more
                log(f"{plan.name}: cleanup step failed: {exc}")
    result = summarize(ctx, plan, collector, sampler, cpu_s, startup_s, produce_s, stalled)
    result["emulator_cpu_s"] = round(emulator_cpu_s, 2)
    result["broker_cpu_s"] = round(broker_cpu_s, 2) if ctx.broker_pid is not None else None
    result["http_requests"] = http_requests
    result["main_thread"] = main_thread
    if restart is not None:
        result["restart"] = restart
        log(f"{plan.name}: restarts {restart}")
    if profile is not None:
        result["profile"] = profile
    log(
        f"{plan.name}: {result['events_per_s']:,.1f} events/s, p99 {result['latency_ms']['p99']} ms, "
        f"peak RSS {result['peak_rss_mb']} MB, {result['cpu_s_per_1k_events']} CPU s/1k events, "
        f"{result['events_done']:,}/{events:,} events done"
    )
    return result


def measure_restart(ctx: Context, launched: Launched, topics: dict[str, str], events: int) -> dict[str, Any]:
    """Stop the drained worker; time a restart over its kept tables, then one over none."""
    launched.stop()
    count = ctx.args.restart_probe_events
    probes = [many_contacts.probe(count, after=events), many_contacts.probe(count, after=events + count)]

    def produce_probe(records: Sequence[tuple[bytes, bytes]]) -> float:
        return produce(ctx.bootstrap, topics["source"], records, array("d", bytes(8 * len(records))))

    return measure_restarts(launched.configs, ctx.bootstrap, topics, probes, events, produce_probe)


def wait_for_outcomes(ctx: Context, plan: RunPlan, collector: OutcomeCollector, launched: Launched) -> bool:
    """Until every outcome is in, the window is over, or no outcome came for ``--stall-s`` (True)."""
    last_report = time.monotonic()
    while not collector.done:
        launched.alive()
        now = time.monotonic()
        first = collector.first_ms
        if (
            plan.window_s is not None
            and first is not None
            and time.time() * 1000 >= first + plan.window_s * 1000
        ):
            return False
        if now - collector.last_progress > ctx.args.stall_s:
            log(f"{plan.name}: no outcome for {ctx.args.stall_s:.0f}s, giving up")
            return True
        if now - last_report > 10:
            log(f"{plan.name}: {collector.unique:,}/{collector.expected:,} outcomes")
            last_report = now
        time.sleep(0.1)
    return False


def summarize(
    ctx: Context,
    plan: RunPlan,
    collector: OutcomeCollector,
    sampler: ResourceSampler,
    cpu_s: float,
    startup_s: float,
    produce_s: float,
    stalled: bool,
) -> dict[str, Any]:
    per_event = len(plan.integrations)
    ts = np.frombuffer(collector.ts_ms, dtype=np.float64).copy()
    latency = np.frombuffer(collector.latency_ms, dtype=np.float64).copy()
    delivered = np.frombuffer(collector.delivered, dtype=np.int8).astype(bool)
    events = len(plan.records)
    complete = collector.done
    window_s = None
    if ts.size and plan.window_s is not None and not complete:
        keep = ts < ts.min() + plan.window_s * 1000
        ts, latency, delivered = ts[keep], latency[keep], delivered[keep]
        window_s = plan.window_s
        duration_s = plan.window_s
    else:
        duration_s = max(float(ts.max() - ts.min()) / 1000, 0.001) if ts.size else 0.0
    events_done = ts.size / per_event
    fractions: dict[str, float | None] = {}
    if ts.size:
        ordered = np.sort(ts) - ts.min()
        for fraction in (0.5, 0.9, 0.99, 1.0):
            position = int(np.ceil(fraction * events * per_event)) - 1
            fractions[f"{fraction:.0%}"] = (
                round(ordered[position] / 1000, 2) if position < ordered.size else None
            )
    steady: dict[str, float | None] | None = None
    if plan.rate is not None and ts.size:
        produced = ts - latency  # each outcome's input produce time
        steady = percentiles(latency[produced >= produced.min() + ctx.args.paced_warmup_s * 1000])
    statuses = {name: dict(sorted(counts.items())) for name, counts in collector.statuses.items()}
    matches: bool | None = None
    if plan.check_expected and complete:
        if plan.integrations == INTEGRATION_IDS and len(plan.records) == len(ctx.workload.records):
            matches = statuses == ctx.expected["statuses"]
        elif len(plan.integrations) == 1:  # a bench app without destinations: all "delivered"
            matches = statuses == {plan.integrations[0]: {"delivered": events}}
    return {
        "events": events,
        "events_done": round(events_done, 1),
        "complete": complete,
        "stalled": stalled,
        "outcomes": int(collector.unique),
        "outcomes_per_event": per_event,
        "duplicates": collector.duplicates,
        "foreign_records": collector.foreign,
        "events_per_s": round(events_done / duration_s, 1) if duration_s else 0.0,
        # Only the outcomes that needed a destination round trip: the rate the destination limits.
        "delivered_per_s": round(int(delivered.sum()) / duration_s, 1) if duration_s else 0.0,
        "measured_over_s": round(duration_s, 2),
        "window_s": window_s,
        "input_rate_per_s": plan.rate,
        "latency_ms": percentiles(latency),
        "latency_ms_after_warmup": steady,
        "peak_rss_mb": round(sampler.peak_rss / 2**20, 1),
        "peak_rss_mb_per_process": [round(v / 2**20, 1) for v in sampler.peak_rss_per_process.values()],
        "cpu_s": round(cpu_s, 2),
        "cpu_s_per_1k_events": round(cpu_s / (events_done / 1000), 3) if events_done else None,
        "workers": plan.workers,
        "startup_s": round(startup_s, 1),
        "produce_s": round(produce_s, 2),
        "time_to_fraction_s": fractions,
        "statuses": statuses,
        "matches_expected": matches,
        "timeline": timeline(ts, latency, per_event),
    }


# ------------------------------------------------------------------------------- profiling


def start_profiler(pid: int, path: Path) -> subprocess.Popen[bytes] | None:
    """py-spy sampling the worker (collapsed stacks), or None when py-spy is missing."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        log("py-spy not found; --profile skipped (pip install py-spy)")
        return None
    cmd = [spy, "record", "--pid", str(pid), "--rate", "100", "--format", "raw", "--output", str(path)]
    cmd.append("--nonblocking")
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop_profiler(proc: subprocess.Popen[bytes], path: Path, top: int = 20) -> dict[str, Any]:
    """Stop py-spy (SIGINT makes it write its file) and summarize what it sampled."""
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    if not path.exists():
        return {"error": (err or b"").decode(errors="replace")[-500:]}
    return summarize_profile(path, top)


def summarize_profile(path: Path, top: int = 20) -> dict[str, Any]:
    """What the sampled stacks say (py-spy "raw" = collapsed stacks, one ``a;b;c count`` per line).

    ``top_own``: functions the CPU was in; ``top_total_signal_sync``: our functions with the
    time spent under them; ``by_package``: own time per package; ``by_stage``: samples under
    the ingest agent, the delivery agents, or neither (Kafka client loops, Faust, idle polls).
    """
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    stages: Counter[str] = Counter()
    samples = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [parse_frame(f) for f in stack.split(";") if f]
        if not frames:
            continue
        samples += count
        function, module = frames[-1]
        own[f"{module}:{function}"] += count
        packages[package_of(module)] += count
        names = {f"{m}:{f}" for f, m in frames if m.startswith("signal_sync/")}
        for name in names:
            total[name] += count
        modules = {m for _, m in frames}
        stage = (
            "ingest agent"
            if "signal_sync/agents/ingest.py" in modules
            else "delivery agents"
            if "signal_sync/agents/deliver.py" in modules
            else "other (Kafka clients, Faust, event loop)"
        )
        stages[stage] += count

    def shares(counter: Counter[str], key: str, limit: int) -> list[dict[str, Any]]:
        return [{key: name, "share": round(n / samples, 4)} for name, n in counter.most_common(limit)]

    return {
        "file": str(path),
        "samples": samples,
        "top_own": shares(own, "function", top),
        "top_total_signal_sync": shares(total, "function", top),
        "by_package": shares(packages, "package", 15),
        "by_stage": shares(stages, "stage", 3),
    }


def parse_frame(frame: str) -> tuple[str, str]:
    """``f (signal_sync/agents/deliver.py:67)`` → ``("f", "signal_sync/agents/deliver.py")``."""
    function, _, where = frame.partition(" (")
    module = where.rstrip(")").rsplit(":", 1)[0]
    return function.strip(), module


def package_of(module: str) -> str:
    """``faust/streams.py`` → ``faust``; ``signal_sync/agents/deliver.py`` → ``signal_sync/agents``."""
    parts = module.split("/")
    if parts[0] == "signal_sync" and len(parts) > 2:
        return "/".join(parts[:2])
    return parts[0] if len(parts) > 1 else module.removesuffix(".py")


# ------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000, help="input events (default 200000)")
    parser.add_argument("--million", action="store_true", help="1M events, 175k contacts")
    parser.add_argument(
        "--many-contacts",
        action="store_true",
        help="the many-contacts workload (bench/many_contacts.py): every event a new contact's identify, "
        "--events of them (with --million: 1M events over 1M contacts)",
    )
    parser.add_argument(
        "--restart",
        action="store_true",
        help="after signal-sync's drain, time restarts to /ready and to a first new outcome, with its "
        "state_dir kept and then lost (bench/restart.py)",
    )
    parser.add_argument("--restart-probe-events", type=int, default=1000, help="new events after a restart")
    parser.add_argument("--contacts", type=int, default=None, help="known contacts (default 50000)")
    parser.add_argument("--zipf-s", type=float, default=1.0, help="Zipf exponent of contact activity")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--latency-ms", type=float, default=25.0, help="injected destination latency")
    parser.add_argument("--naive-window-s", type=float, default=25.0, help="naive is measured over this")
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"comma-separated subset of {','.join((*VARIANTS, *OPTIONAL_VARIANTS))} (default: all but "
        f"{','.join(OPTIONAL_VARIANTS)})",
    )
    parser.add_argument("--paced", action="store_true", help="also run signal-sync at half its measured rate")
    parser.add_argument("--paced-seconds", type=float, default=30.0)
    parser.add_argument(
        "--paced-rate",
        type=float,
        help="paced run at this input rate (events/s) instead of half the measured one; runs even "
        "without the signal_sync variant (--variants '' for the paced run alone)",
    )
    parser.add_argument(
        "--paced-warmup-s",
        type=float,
        default=5.0,
        help="paced run: latency_ms_after_warmup leaves out events produced in the first seconds",
    )
    parser.add_argument("--workers", type=int, choices=(1, 2), default=1, help="2: compare 1 vs 2 workers")
    parser.add_argument("--workers-latency-ms", type=float, default=1000.0)
    parser.add_argument(
        "--workers-events",
        type=int,
        default=10_000,
        help="input of the 1-vs-2-worker runs: the first N events, drained completely",
    )
    parser.add_argument(
        "--workers-window-s", type=float, default=None, help="measure the worker runs over a window instead"
    )
    parser.add_argument(
        "--workers-integration-set",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="set on both integrations in the 1-vs-2-worker runs only (default: max_concurrency=2 and "
        "batch_max_items=20, so each worker's own destination budget, not the CPU, is the limit)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy the drains of work_floor, the signal-sync worker (and its baseline), and the paced run",
    )
    parser.add_argument(
        "--worker-set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a signal-sync config value, e.g. delivery.max_in_flight=512",
    )
    parser.add_argument(
        "--stall-s", type=float, default=120.0, help="give up after this long without outcomes"
    )
    parser.add_argument(
        "--baseline-tree",
        type=Path,
        metavar="DIR",
        help="also run the worker of this checkout's signal_sync package (variant signal_sync_baseline, "
        "just before signal_sync): a change's before/after in one run",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="with --baseline-tree: drain the baseline and signal_sync this many times each, which goes "
        "first alternating; the result's baseline_rounds has each round's ratios and their median",
    )
    parser.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--keep-logs", action="store_true", help="keep the variants' logs and configs")
    args = parser.parse_args(argv)
    if args.workers_integration_set is None:
        args.workers_integration_set = ["max_concurrency=2", "batch_max_items=20"]
    if args.million:
        args.events = 1_000_000
        args.contacts = args.contacts or 175_000
    args.contacts = args.contacts or 50_000
    if args.baseline_tree is not None:
        args.baseline_tree = check_tree(args.baseline_tree)
    if args.rounds < 1 or (args.rounds > 1 and args.baseline_tree is None):
        raise SystemExit("--rounds: a number from 1, and above 1 only with --baseline-tree")
    return args


def ratio(a: dict[str, Any] | None, b: dict[str, Any] | None, key: str = "events_per_s") -> float | None:
    if not a or not b or not b.get(key):
        return None
    return round(a[key] / b[key], 2)


def without_timelines(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_timelines(v) for k, v in value.items() if k != "timeline"}
    if isinstance(value, list):
        return [without_timelines(v) for v in value]
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(variants) - set(VARIANTS) - set(OPTIONAL_VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variants: {sorted(unknown)}")
    if args.baseline_tree is not None and not set(variants) & set(WARMING_VARIANTS):
        raise SystemExit(
            f"--baseline-tree needs a variant that drains before it ({', '.join(WARMING_VARIANTS)}): the "
            "first drain after the broker starts meets a cold broker and is slower whatever the code"
        )
    if args.rounds > 1 and "signal_sync" not in variants:
        raise SystemExit("--rounds compares signal_sync with the baseline: add signal_sync to --variants")
    started_at = datetime.now(UTC)
    stamp = started_at.strftime("%Y%m%d-%H%M%S")
    run_id = f"{stamp}-{os.getpid()}"
    work = Path(tempfile.mkdtemp(prefix="signal-sync-bench-"))
    load_before = os.getloadavg()
    args.results_dir.mkdir(parents=True, exist_ok=True)
    if args.many_contacts:
        log(f"generating {args.events:,} events over as many new contacts")
        workload = many_contacts.generate(args.events)
        expected = many_contacts.expected_outcomes(workload)
    else:
        log(f"generating {args.events:,} events over {args.contacts:,} contacts")
        spec = WorkloadSpec(events=args.events, contacts=args.contacts, zipf_s=args.zipf_s, seed=args.seed)
        workload = generate(spec)
        expected = expected_outcomes(workload)
    floor = max(expected["longest_contact_chain"].values()) * args.latency_ms / 1000
    try:
        result = run_all(args, workload, expected, work, run_id, stamp)
    except BaseException:
        log(f"failed; logs kept in {work}")
        raise
    result.update(
        started_at=started_at.isoformat(timespec="seconds"),
        finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
        command=["python", "bench/run.py", *(argv if argv is not None else sys.argv[1:])],
    )
    result["machine"]["load_avg_before"] = [round(x, 2) for x in load_before]
    result["workload"]["sequential_floor_s"] = round(floor, 1)
    json_path = args.results_dir / f"{stamp}.json"
    result["files"] = {"json": str(json_path), "plot": None}
    if not args.no_plot:
        from plot import plot

        result["files"]["plot"] = str(plot(result, json_path.with_suffix(".png")))
    json_path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(without_timelines(result), indent=2))
    worker_runs = (result["workers"] or {}).get("runs", {}).values()
    runs = [*result["variants"].values(), result["paced"], *worker_runs]
    if args.keep_logs:
        log(f"logs kept in {work}")
    elif all(run["complete"] or run["window_s"] for run in runs if run):
        shutil.rmtree(work, ignore_errors=True)
    else:
        log(f"a run did not finish; its logs are kept in {work}")
    return 0


def run_all(
    args: argparse.Namespace,
    workload: Workload,
    expected: dict[str, Any],
    work: Path,
    run_id: str,
    stamp: str,
) -> dict[str, Any]:
    """Broker, emulators, then each variant in turn; returns the result without run metadata."""
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    with contextlib.ExitStack() as stack:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
        broker_kind = "env"
        if not bootstrap:
            from local_kafka import LocalKafka

            log("starting a local Kafka broker")
            broker = LocalKafka()
            stack.callback(broker.stop)
            bootstrap = broker.start(work / "kafka")
            broker_kind = "local"
        mautic = Emulator.start("mautic")
        stack.callback(mautic.stop)
        mailgun = Emulator.start("mailgun")
        stack.callback(mailgun.stop)
        admin = AdminClient({"bootstrap.servers": bootstrap, "logger": QUIET})
        prefix = args.results_dir / stamp
        ctx = Context(args, bootstrap, admin, workload, expected, mautic, mailgun, work, run_id, prefix)
        ctx.broker_pid = listening_pid(bootstrap)
        del admin
        # Drop the admin client while the broker still runs: librdkafka's destroy waits on a
        # broker that is gone. The stack runs this before it stops the broker.
        stack.callback(lambda: setattr(ctx, "admin", None))
        both = INTEGRATION_IDS
        results: dict[str, Any] = {}
        common = {"latency_ms": args.latency_ms, "records": workload.records}
        for name in ("librdkafka_floor", "faust_floor", "passthrough"):
            if name in variants:
                launch = functools.partial(launch_bench_app, script=f"{name}_app.py")
                label = name.replace("_", "-")
                results[name] = run_variant(ctx, RunPlan(name, label, launch, (name,), **common))
        if "naive" in variants:
            launch = functools.partial(launch_bench_app, script="naive_app.py")
            results["naive"] = run_variant(
                ctx, RunPlan("naive", "naive", launch, both, window_s=args.naive_window_s, **common)
            )
        if "work_floor" in variants:
            launch = functools.partial(launch_bench_app, script="work_floor_app.py")
            results["work_floor"] = run_variant(
                ctx, RunPlan("work_floor", "work-floor", launch, both, profile=args.profile, **common)
            )
        if args.baseline_tree is not None:
            launch = functools.partial(launch_signal_sync, tree=args.baseline_tree)
            results["signal_sync_baseline"] = run_variant(
                ctx,
                RunPlan(
                    "signal_sync_baseline",
                    "signal-sync-baseline",
                    launch,
                    both,
                    profile=args.profile,
                    **common,
                ),
            )
        if "signal_sync" in variants:
            results["signal_sync"] = run_variant(
                ctx,
                RunPlan(
                    "signal_sync",
                    "signal-sync",
                    launch_signal_sync,
                    both,
                    profile=args.profile,
                    restart=args.restart,
                    **common,
                ),
            )
        baseline_rounds = None
        if args.rounds > 1:
            launches = {
                "signal_sync_baseline": functools.partial(launch_signal_sync, tree=args.baseline_tree),
                "signal_sync": launch_signal_sync,
            }
            pairs = [{name: results[name] for name in launches}]
            for number in range(2, args.rounds + 1):
                pairs.append(
                    {
                        name: run_variant(
                            ctx,
                            RunPlan(
                                name, f"{name.replace('_', '-')}-r{number}", launches[name], both, **common
                            ),
                        )
                        for name in round_order(number)
                    }
                )
            baseline_rounds = summarize_rounds(pairs)
        if "signal_sync_mapped" in variants:
            launch = functools.partial(launch_signal_sync, mapped=True)
            results["signal_sync_mapped"] = run_variant(
                ctx, RunPlan("signal_sync_mapped", "signal-sync-mapped", launch, both, **common)
            )
        paced = None
        measured = results.get("signal_sync", {}).get("events_per_s")
        if args.paced_rate or (args.paced and measured):
            rate = args.paced_rate or round(measured / 2, 1)
            count = max(1, min(len(workload.records), int(rate * args.paced_seconds)))
            paced = run_variant(
                ctx,
                RunPlan(
                    "signal_sync_paced",
                    "signal-sync-paced",
                    launch_signal_sync,
                    both,
                    args.latency_ms,
                    workload.records[:count],
                    rate=rate,
                    check_expected=False,
                    profile=args.profile,
                ),
            )
        workers = None
        if args.workers == 2:
            runs = {}
            drained = workload.records[: args.workers_events]
            for count in (1, 2):
                name = f"signal_sync_{count}_worker{'s' if count > 1 else ''}"

                def launch(c: Context, label: str, t: dict[str, str], n: int = count) -> Launched:
                    return launch_signal_sync(
                        c, label, t, workers=n, integration_set=args.workers_integration_set
                    )

                runs[name] = run_variant(
                    ctx,
                    RunPlan(
                        name,
                        f"signal-sync-w{count}",
                        launch,
                        both,
                        args.workers_latency_ms,
                        drained,
                        workers=count,
                        window_s=args.workers_window_s,
                        check_expected=False,
                    ),
                )
            workers = {
                "latency_ms": args.workers_latency_ms,
                "window_s": args.workers_window_s,
                "events": len(drained),
                "integration_set": args.workers_integration_set,
                "runs": runs,
                "two_over_one": ratio(runs["signal_sync_2_workers"], runs["signal_sync_1_worker"]),
                "two_over_one_delivered": ratio(
                    runs["signal_sync_2_workers"], runs["signal_sync_1_worker"], "delivered_per_s"
                ),
            }
    return {
        "schema": SCHEMA,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_avg_after": [round(x, 2) for x in os.getloadavg()],
            "broker": broker_kind,
        },
        "config": {
            "events": args.events,
            "latency_ms": args.latency_ms,
            "partitions": PARTITIONS,
            "naive_window_s": args.naive_window_s,
            "worker_overrides": args.worker_set,
            **({"baseline_tree": tree_revision(args.baseline_tree)} if args.baseline_tree else {}),
        },
        "workload": {**workload.describe(), "expected": expected},
        "variants": results,
        "ratios": {
            "signal_sync/naive": ratio(results.get("signal_sync"), results.get("naive")),
            "signal_sync/passthrough": ratio(results.get("signal_sync"), results.get("passthrough")),
            "signal_sync/faust_floor": ratio(results.get("signal_sync"), results.get("faust_floor")),
            "signal_sync/librdkafka_floor": ratio(
                results.get("signal_sync"), results.get("librdkafka_floor")
            ),
            "work_floor/passthrough": ratio(results.get("work_floor"), results.get("passthrough")),
            **(
                {
                    "signal_sync/signal_sync_baseline": ratio(
                        results.get("signal_sync"), results.get("signal_sync_baseline")
                    )
                }
                if "signal_sync_baseline" in results
                else {}
            ),
            **(
                {
                    "signal_sync_mapped/signal_sync": ratio(
                        results.get("signal_sync_mapped"), results.get("signal_sync")
                    )
                }
                if "signal_sync_mapped" in results
                else {}
            ),
        },
        "paced": paced,
        "workers": workers,
        **({"baseline_rounds": baseline_rounds} if baseline_rounds is not None else {}),
    }


if __name__ == "__main__":
    raise SystemExit(main())
