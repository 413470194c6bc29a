"""A real single-node Apache Kafka broker for tests and the demo, without Docker.

Why: the service's behaviour (rebalances, offsets, retries, broker outages) can only be
trusted against a real broker, and CI machines here have Java and Maven but no Docker.
So we fetch the broker's jars from Maven Central (pinned by ``dev/kafka/pom.xml``) into
``.cache/kafka/<version>/libs`` and run ``kafka.Kafka`` in KRaft combined mode
(broker + controller in one JVM) on 127.0.0.1.

"Ready" means a real metadata round trip: the AdminClient sees the broker *and* can
create (and delete) a throwaway topic, which proves the controller quorum is up, not
merely that a port accepts connections.

Importable (``LocalKafka``, ``fetch_jars``) and runnable::

    python dev/local_kafka.py fetch                  # download jars (idempotent)
    python dev/local_kafka.py start [--port 9092]    # background broker for the demo
    python dev/local_kafka.py status
    python dev/local_kafka.py stop

Only the standard library and confluent_kafka are used, so this works from a bare venv.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import TracebackType

KAFKA_VERSION = "4.1.1"  # keep in sync with <kafka.version> in dev/kafka/pom.xml
REPO_ROOT = Path(__file__).resolve().parents[1]
POM_PATH = REPO_ROOT / "dev" / "kafka" / "pom.xml"
LOG4J2_CONFIG = REPO_ROOT / "dev" / "kafka" / "log4j2.yaml"
CACHE_ROOT = REPO_ROOT / ".cache" / "kafka"
DEFAULT_LIBS_DIR = CACHE_ROOT / KAFKA_VERSION / "libs"
DEMO_DATA_DIR = CACHE_ROOT / "run"
DEMO_PORT = 9092
HOST = "127.0.0.1"
NODE_ID = 1

_MARKER_NAME = ".fetch-complete"
_PID_FILE_NAME = "broker.pid"
_PROBE_TOPIC_PREFIX = "__local_kafka_ready_"

log = logging.getLogger("local_kafka")


class LocalKafkaError(RuntimeError):
    """The local broker could not be fetched, started or stopped."""


# --------------------------------------------------------------------------- jars


def _require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise LocalKafkaError(
            f"`{name}` is not on PATH; the local Kafka broker needs Java 17+ and Maven 3.8+ "
            f"(e.g. `apt-get install openjdk-17-jre-headless maven`)."
        )
    return path


def _pom_digest() -> str:
    return hashlib.sha256(POM_PATH.read_bytes()).hexdigest()


def fetch_jars(libs_dir: Path | None = None, *, quiet: bool = True) -> Path:
    """Copy the broker's runtime jars into ``libs_dir`` and return it.

    Idempotent: a marker holding the pom's digest is written only after Maven succeeds,
    so an interrupted fetch, or a changed pom, is redone from scratch. A file lock makes
    concurrent callers (parallel pytest workers) wait for one fetch.
    """
    _require_tool("java")  # cached jars are useless without it; fail here, not at start()
    libs_dir = (libs_dir or DEFAULT_LIBS_DIR).resolve()
    marker = libs_dir.parent / _MARKER_NAME
    digest = _pom_digest()
    if marker.is_file() and marker.read_text().strip() == digest and libs_dir.is_dir():
        return libs_dir
    mvn = _require_tool("mvn")
    libs_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(libs_dir.parent / ".fetch.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.is_file() and marker.read_text().strip() == digest and libs_dir.is_dir():
            return libs_dir  # another process finished while we waited
        marker.unlink(missing_ok=True)
        partial = libs_dir.with_name(libs_dir.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        cmd = [
            mvn,
            "-B",
            *(["-q"] if quiet else []),
            "-f",
            str(POM_PATH),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={partial}",
            "-DincludeScope=runtime",
        ]
        log.info("fetching Kafka %s jars: %s", KAFKA_VERSION, " ".join(cmd))
        proc = subprocess.run(cmd, cwd=POM_PATH.parent, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not any(partial.glob(f"kafka_2.13-{KAFKA_VERSION}.jar")):
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
            raise LocalKafkaError(
                f"Maven could not fetch the Kafka {KAFKA_VERSION} jars (exit {proc.returncode}); "
                f"is Maven Central reachable?\n{tail}"
            )
        shutil.rmtree(libs_dir, ignore_errors=True)
        partial.rename(libs_dir)
        marker.write_text(digest + "\n")
    return libs_dir


# --------------------------------------------------------------------------- helpers


def _free_ports(count: int) -> list[int]:
    """Ports the OS considers free right now (sockets held together so they differ)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


def _random_cluster_id() -> str:
    """Same format as ``StorageTool random-uuid`` without paying for a JVM start."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _quiet_logger() -> logging.Logger:
    """librdkafka logs every refused connection to stderr; route that to a quiet logger."""
    lg = logging.getLogger("local_kafka.librdkafka")
    lg.setLevel(logging.CRITICAL)
    return lg


def _server_properties(data_dir: Path, port: int, controller_port: int) -> str:
    props = {
        "process.roles": "broker,controller",
        "node.id": str(NODE_ID),
        "controller.quorum.voters": f"{NODE_ID}@{HOST}:{controller_port}",
        "listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data_dir / "kraft-logs"),
        "auto.create.topics.enable": "false",
        "num.partitions": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        # After a crash (stop(kill=True)) the restarted broker cannot register until the old
        # incarnation's session expires; the 9 s default made crash-restarts take ~13 s.
        "broker.session.timeout.ms": "3000",
        "broker.heartbeat.interval.ms": "500",
        # Modest disk and memory use: this is a laptop/CI broker, not production.
        "log.segment.bytes": str(16 * 1024 * 1024),
        "log.retention.hours": "24",
        "log.retention.bytes": str(256 * 1024 * 1024),
        "log.retention.check.interval.ms": "60000",
        "log.cleaner.dedupe.buffer.size": str(8 * 1024 * 1024),
        "num.network.threads": "2",
        "num.io.threads": "4",
        "num.recovery.threads.per.data.dir": "1",
        "delete.topic.enable": "true",
    }
    header = "# Written by dev/local_kafka.py; regenerated on every start.\n"
    return header + "".join(f"{k}={v}\n" for k, v in props.items())


# Runs in its own small Python process: when the process that started the broker dies
# without stopping it (pytest killed, Ctrl-C twice), the pipe on our stdin closes and the
# orphaned JVM is terminated instead of lingering with ~1 GB of RAM.
_WATCHDOG = """
import os, signal, sys, time
pid = int(sys.argv[1])
sys.stdin.buffer.read()
try:
    os.kill(pid, signal.SIGTERM)
    for _ in range(150):
        time.sleep(0.2)
        os.kill(pid, 0)
    os.kill(pid, signal.SIGKILL)
except ProcessLookupError:
    pass
"""


# --------------------------------------------------------------------------- broker


class LocalKafka:
    """One KRaft combined-mode broker process on 127.0.0.1.

    ``start()`` may be called again after ``stop()``: with no arguments it reuses the
    same data dir and ports, so topics, messages and committed offsets survive, which
    is what fault tests need ("stop the broker for 20 s and restart").
    """

    def __init__(
        self,
        libs_dir: Path | None = None,
        *,
        heap_min_mb: int = 512,
        heap_max_mb: int = 768,
        watchdog: bool = True,
        detach: bool = False,
    ) -> None:
        self.libs_dir = libs_dir
        self.heap_min_mb = heap_min_mb
        self.heap_max_mb = heap_max_mb
        self.watchdog = watchdog
        self.detach = detach  # own session: survives the starting process (CLI `start`)
        self.data_dir: Path | None = None
        self.port: int | None = None
        self.controller_port: int | None = None
        self.startup_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None

    # -- properties -----------------------------------------------------------

    @property
    def bootstrap_servers(self) -> str:
        if self.port is None:
            raise LocalKafkaError("broker has never been started")
        return f"{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def stdout_log(self) -> Path:
        """JVM stdout/stderr (crashes, GC warnings)."""
        return self._require_data_dir() / "broker.out"

    @property
    def server_log(self) -> Path:
        """The broker's own log4j2 log (INFO, chatty subsystems at WARN)."""
        return self._require_data_dir() / "server.log"

    def _require_data_dir(self) -> Path:
        if self.data_dir is None:
            raise LocalKafkaError("broker has never been started")
        return self.data_dir

    # -- lifecycle ------------------------------------------------------------

    def start(
        self,
        data_dir: Path | str | None = None,
        port: int | None = None,
        *,
        controller_port: int | None = None,
        timeout: float = 90.0,
    ) -> str:
        """Start (or restart) the broker and block until it serves metadata.

        ``data_dir`` and the ports default to those of the previous start; on the first
        start ``data_dir`` is required and free ports are picked when none are given.
        Returns the bootstrap address.
        """
        if self.is_running:
            raise LocalKafkaError(f"broker already running (pid {self.pid})")
        if data_dir is not None:
            self.data_dir = Path(data_dir).resolve()
        if self.data_dir is None:
            raise LocalKafkaError("start() needs a data_dir the first time")
        if port is not None:
            self.port = port
        if controller_port is not None:
            self.controller_port = controller_port
        if self.port is None or self.controller_port is None:
            free = [p for p in _free_ports(3) if p not in (self.port, self.controller_port)]
            self.port = self.port or free.pop()
            self.controller_port = self.controller_port or free.pop()
        for p in (self.port, self.controller_port):
            if not _port_is_free(p):
                raise LocalKafkaError(f"port {HOST}:{p} is already in use")

        started = time.monotonic()  # startup_seconds covers format + JVM start + readiness
        libs = fetch_jars(self.libs_dir)
        java = _require_tool("java")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        props_path = self.data_dir / "server.properties"
        props_path.write_text(_server_properties(self.data_dir, self.port, self.controller_port))
        base = [
            java,
            f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
            f"-Dkafka.logs.dir={self.data_dir}",
            "-Djava.awt.headless=true",
            "-cp",
            str(libs / "*"),
        ]
        if not (self.data_dir / "kraft-logs" / "meta.properties").is_file():
            self._format(base, props_path)

        cmd = [
            *base[:1],
            f"-Xms{self.heap_min_mb}m",
            f"-Xmx{self.heap_max_mb}m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExplicitGCInvokesConcurrent",
            *base[1:],
            "kafka.Kafka",
            str(props_path),
        ]
        with open(self.stdout_log, "ab") as out:
            out.write(f"\n=== {time.strftime('%F %T')} starting: {' '.join(cmd)}\n".encode())
            out.flush()
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=self.detach,
            )
        if self.watchdog:
            self._watchdog = subprocess.Popen(
                [sys.executable, "-c", _WATCHDOG, str(self._proc.pid)],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        try:
            self._wait_ready(started + timeout)
        except BaseException:
            self.stop(timeout=5)
            raise
        self.startup_seconds = time.monotonic() - started
        log.debug("Kafka ready on %s after %.1fs", self.bootstrap_servers, self.startup_seconds)
        return self.bootstrap_servers

    def _format(self, base: list[str], props_path: Path) -> None:
        cmd = [
            *base[:1],
            "-Xmx256m",
            "-XX:TieredStopAtLevel=1",  # short-lived tool: start fast, peak speed irrelevant
            *base[1:],
            "kafka.tools.StorageTool",
            "format",
            "-t",
            _random_cluster_id(),
            "-c",
            str(props_path),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
        if proc.returncode != 0:
            raise LocalKafkaError(
                f"kafka-storage format failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}"
            )

    def _wait_ready(self, deadline: float) -> None:
        from confluent_kafka.admin import AdminClient, NewTopic

        assert self._proc is not None and self.port is not None
        last_error: object = "port never opened"
        admin: AdminClient | None = None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise LocalKafkaError(
                    f"Kafka exited with code {self._proc.returncode} during startup.\n"
                    f"--- {self.stdout_log} ---\n{_tail(self.stdout_log)}\n"
                    f"--- {self.server_log} ---\n{_tail(self.server_log)}"
                )
            if admin is None:
                if not _port_open(self.port):
                    time.sleep(0.2)
                    continue
                admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "logger": _quiet_logger()})
            try:
                md = admin.list_topics(timeout=2)
                if not md.brokers:
                    raise LocalKafkaError("metadata lists no brokers")
                probe = f"{_PROBE_TOPIC_PREFIX}{uuid.uuid4().hex[:12]}"
                admin.create_topics([NewTopic(probe, 1, 1)], operation_timeout=5)[probe].result(timeout=10)
                with contextlib.suppress(Exception):  # ready already proven; deletion is hygiene
                    admin.delete_topics([probe], operation_timeout=5)[probe].result(timeout=10)
                return
            except Exception as exc:  # not ready yet: controller electing, metadata loading
                last_error = exc
                time.sleep(0.3)
        raise LocalKafkaError(
            f"Kafka on {self.bootstrap_servers} not ready before the deadline: {last_error}\n"
            f"--- {self.server_log} ---\n{_tail(self.server_log)}"
        )

    def stop(self, timeout: float = 30.0, *, kill: bool = False) -> None:
        """Stop the broker: SIGTERM (clean shutdown), SIGKILL after ``timeout``.

        ``kill=True`` sends SIGKILL at once, simulating a crash. Safe to call twice;
        data dir and ports are kept for a later ``start()``.
        """
        if self._watchdog is not None:
            # Disarm first: closing its stdin would make it signal a pid we are reaping.
            self._watchdog.kill()
            self._watchdog.wait()
            if self._watchdog.stdin is not None:
                self._watchdog.stdin.close()
            self._watchdog = None
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        if not kill:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGCONT)  # in case it was paused
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
                return
            except subprocess.TimeoutExpired:
                log.warning("Kafka did not stop within %.0fs; killing it", timeout)
        proc.kill()
        proc.wait()

    def restart(self, down_seconds: float = 0.0, *, kill: bool = False, timeout: float = 90.0) -> str:
        """Stop, stay down for ``down_seconds``, start again on the same ports and data."""
        self.stop(kill=kill)
        time.sleep(down_seconds)
        return self.start(timeout=timeout)

    def pause(self) -> None:
        """SIGSTOP the JVM: ports stay open but nothing answers (a hung broker)."""
        if self._proc is None or self._proc.poll() is not None:
            raise LocalKafkaError("broker is not running")
        self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after ``pause()``."""
        if self._proc is None or self._proc.poll() is not None:
            raise LocalKafkaError("broker is not running")
        self._proc.send_signal(signal.SIGCONT)

    def __enter__(self) -> LocalKafka:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"LocalKafka({state}, port={self.port}, data_dir={self.data_dir})"


# --------------------------------------------------------------------------- CLI


def _read_pid(data_dir: Path) -> int | None:
    """The pid in the pid file, if that process is still our Kafka broker."""
    try:
        pid = int((data_dir / _PID_FILE_NAME).read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except (OSError, ValueError):
        return None
    props = str(data_dir / "server.properties").encode()
    return pid if b"kafka.Kafka" in cmdline and props in cmdline else None


def _configured_bootstrap(data_dir: Path) -> str | None:
    try:
        for line in (data_dir / "server.properties").read_text().splitlines():
            if line.startswith("advertised.listeners="):
                return line.split("://", 1)[1]
    except OSError:
        pass
    return None


def _cmd_start(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir).resolve()
    pid = _read_pid(data_dir)
    if pid is not None:
        print(_configured_bootstrap(data_dir) or "")
        print(f"Kafka already running (pid {pid})", file=sys.stderr)
        return 0
    if args.fresh:
        shutil.rmtree(data_dir, ignore_errors=True)
    broker = LocalKafka(watchdog=False, detach=True)
    ctl_port = args.controller_port or args.port + 1
    broker.start(data_dir, args.port, controller_port=ctl_port, timeout=args.timeout)
    (data_dir / _PID_FILE_NAME).write_text(f"{broker.pid}\n")
    print(
        f"Kafka {KAFKA_VERSION} ready in {broker.startup_seconds:.1f}s (pid {broker.pid}); "
        f"logs: {broker.server_log}",
        file=sys.stderr,
    )
    print(broker.bootstrap_servers)
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir).resolve()
    pid = _read_pid(data_dir)
    (data_dir / _PID_FILE_NAME).unlink(missing_ok=True)
    if pid is None:
        print("Kafka is not running", file=sys.stderr)
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists() or b"zombie" in _proc_state(pid):
            print(f"Kafka stopped (pid {pid})", file=sys.stderr)
            return 0
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    print(f"Kafka killed after {args.timeout:.0f}s (pid {pid})", file=sys.stderr)
    return 0


def _proc_state(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/status").read_bytes().lower()
    except OSError:
        return b"zombie"


def _cmd_status(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir).resolve()
    pid = _read_pid(data_dir)
    if pid is None:
        print("Kafka is not running")
        return 1
    print(f"Kafka running (pid {pid}) on {_configured_bootstrap(data_dir)}; logs: {data_dir / 'server.log'}")
    return 0


def _cmd_fetch(args: argparse.Namespace) -> int:
    print(fetch_jars(quiet=not args.verbose))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="local_kafka.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_fetch = sub.add_parser("fetch", help="download the broker jars with Maven (idempotent)")
    p_fetch.add_argument("-v", "--verbose", action="store_true")
    p_fetch.set_defaults(func=_cmd_fetch)
    for name, func, helptext in (
        ("start", _cmd_start, "start a background broker and wait until it is ready"),
        ("stop", _cmd_stop, "stop the background broker"),
        ("status", _cmd_status, "exit 0 if the background broker runs, 1 if not"),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--data-dir", default=str(DEMO_DATA_DIR))
        p.add_argument("--timeout", type=float, default=90.0 if name == "start" else 30.0)
        p.set_defaults(func=func)
        if name == "start":
            p.add_argument("--port", type=int, default=DEMO_PORT)
            p.add_argument("--controller-port", type=int, default=None, help="default: port + 1")
            p.add_argument("--fresh", action="store_true", help="wipe the data dir first")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        return int(args.func(args))
    except LocalKafkaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
