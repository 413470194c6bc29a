"""A server in a background JVM on 127.0.0.1, for tests and the demo: what ``dev/local_kafka.py``
and ``dev/schema_registry.py`` share.

* ``fetch_with_maven``: fills a cache folder from a pinned pom once (a file lock for concurrent
  callers; a marker holding the pom's digest, written only after Maven succeeds);
* ``BackgroundJvm``: the JVM process of one server: free ports, output appended to a log, a
  watchdog that ends the JVM when the starting process dies, a readiness poll with a deadline,
  stop with SIGTERM and then SIGKILL;
* ``ServerCli``: the ``fetch | start | stop | status`` command line around a detached server whose
  pid is kept in a file in its data dir.

Subclasses say what is specific to their server: how it is fetched and configured, its command
line, and what "ready" means. Only the standard library is used, so this works from a bare venv.
"""

from __future__ import annotations

import abc
import argparse
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
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

HOST = "127.0.0.1"

_MARKER_NAME = ".fetch-complete"
_POLL_S = 0.2

log = logging.getLogger("background_jvm")

# Runs in its own small Python process: when the process that started the server dies without
# stopping it (pytest killed, Ctrl-C twice), the pipe on its stdin closes and the orphaned JVM is
# terminated instead of lingering with hundreds of MB of RAM.
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


# --------------------------------------------------------------------------- tools and ports


def require_tool(name: str, hint: str, error: type[Exception]) -> str:
    """The path of ``name`` on PATH; ``error`` with ``hint`` (what needs it, how to install it) if absent."""
    path = shutil.which(name)
    if path is None:
        raise error(f"`{name}` is not on PATH; {hint}")
    return path


def free_ports(count: int) -> list[int]:
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


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --------------------------------------------------------------------------- fetch


def fetch_with_maven(
    target: Path,
    *,
    pom: Path,
    goal: str,
    options: Sequence[str],
    complete: Callable[[Path], bool],
    what: str,
    mvn_hint: str,
    error: type[Exception],
    quiet: bool = True,
) -> Path:
    """Run Maven's ``goal`` on ``pom`` with its output in ``target`` and return ``target``.

    ``complete(folder)`` says whether a folder holds what the server needs. Idempotent: a marker
    holding the pom's digest is written only after Maven succeeds, so an interrupted fetch, or a
    changed pom, is redone from scratch (Maven writes to a ``.partial`` sibling, renamed at the
    end). A file lock makes concurrent callers (parallel pytest workers) wait for one fetch.
    """
    marker = target.parent / _MARKER_NAME
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()

    def fetched() -> bool:
        return marker.is_file() and marker.read_text().strip() == digest and complete(target)

    if fetched():
        return target
    mvn = require_tool("mvn", mvn_hint, error)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".fetch.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if fetched():
            return target  # another process finished while this one waited
        marker.unlink(missing_ok=True)
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        cmd = [
            mvn,
            "-B",
            *(["-q"] if quiet else []),
            "-f",
            str(pom),
            goal,
            f"-DoutputDirectory={partial}",
            *options,
        ]
        log.info("fetching %s: %s", what, " ".join(cmd))
        proc = subprocess.run(cmd, cwd=pom.parent, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not complete(partial):
            output = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
            raise error(
                f"Maven could not fetch {what} (exit {proc.returncode}); "
                f"is Maven Central reachable?\n{output}"
            )
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
        marker.write_text(digest + "\n")
    return target


# --------------------------------------------------------------------------- process


class BackgroundJvm(abc.ABC):
    """One server process in a JVM, started in its data dir.

    A subclass's ``start()`` calls ``_prepare`` (data dir and ports), builds its command line and
    calls ``_run``, which blocks until ``_readiness_probe()`` passes. ``start()`` may be called
    again after ``stop()``: the data dir and ports of the previous start are kept.
    """

    name: ClassVar[str]  # in messages: "Kafka", "Apicurio Registry"
    version: ClassVar[str]
    noun: ClassVar[str]  # what it is: "broker", "registry"
    error: ClassVar[type[RuntimeError]]
    stdout_log_name: ClassVar[str]  # the JVM's stdout and stderr, in the data dir
    server_log_name: ClassVar[str]  # the server's own log, in the data dir (may be the same file)
    not_ready_errors: ClassVar[tuple[type[Exception], ...]] = (Exception,)

    def __init__(self, *, watchdog: bool, detach: bool) -> None:
        self.watchdog = watchdog
        self.detach = detach  # own session: survives the starting process (CLI `start`)
        self.data_dir: Path | None = None
        self.port: int | None = None
        self.startup_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None

    # -- what a subclass says -------------------------------------------------

    @property
    @abc.abstractmethod
    def address(self) -> str:
        """Where clients reach the server: what ``start()`` returns."""

    @abc.abstractmethod
    def _readiness_probe(self) -> Callable[[], None]:
        """A check called until it returns without raising one of ``not_ready_errors``."""

    # -- properties -----------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def stdout_log(self) -> Path:
        return self._require_data_dir() / self.stdout_log_name

    @property
    def server_log(self) -> Path:
        return self._require_data_dir() / self.server_log_name

    def _require_data_dir(self) -> Path:
        if self.data_dir is None:
            raise self.error(f"{self.noun} has never been started")
        return self.data_dir

    def _require_port(self) -> int:
        if self.port is None:
            raise self.error(f"{self.noun} has never been started")
        return self.port

    # -- lifecycle ------------------------------------------------------------

    def _prepare(self, data_dir: Path | str | None, port: int | None, other: int | None) -> tuple[int, int]:
        """Check that the server is not running, set ``data_dir`` (required the first time) and
        return the two ports, free ones picked for any not given; each must be free."""
        if self.is_running:
            raise self.error(f"{self.noun} already running (pid {self.pid})")
        if data_dir is not None:
            self.data_dir = Path(data_dir).resolve()
        if self.data_dir is None:
            raise self.error("start() needs a data_dir the first time")
        if port is None or other is None:
            free = [p for p in free_ports(3) if p not in (port, other)]
            port = port or free.pop()
            other = other or free.pop()
        for p in (port, other):
            if not port_is_free(p):
                raise self.error(f"port {HOST}:{p} is already in use")
        return port, other

    def _run(self, cmd: list[str], *, started: float, timeout: float) -> str:
        """Start ``cmd`` in the data dir, its output appended to ``stdout_log``, and block until it
        is ready; ``startup_seconds`` counts from ``started``. Returns ``address``."""
        data_dir = self._require_data_dir()
        with open(self.stdout_log, "ab") as out:
            out.write(f"\n=== {time.strftime('%F %T')} starting: {' '.join(cmd)}\n".encode())
            out.flush()
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=data_dir,
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
        log.debug("%s ready on %s after %.1fs", self.name, self.address, self.startup_seconds)
        return self.address

    def _wait_ready(self, deadline: float) -> None:
        assert self._proc is not None
        probe = self._readiness_probe()
        last_error: object = "no answer yet"
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise self.error(
                    f"{self.name} exited with code {self._proc.returncode} during startup.\n"
                    + self._log_tails()
                )
            try:
                probe()
                return
            except self.not_ready_errors as exc:  # not listening yet, or still starting
                last_error = exc
                time.sleep(_POLL_S)
        raise self.error(
            f"{self.name} on {self.address} not ready before the deadline: {last_error}\n" + self._log_tails()
        )

    def _log_tails(self) -> str:
        logs = dict.fromkeys((self.stdout_log, self.server_log))
        return "\n".join(f"--- {path} ---\n{tail(path)}" for path in logs)

    def stop(self, timeout: float = 30.0, *, kill: bool = False) -> None:
        """Stop the server: SIGTERM (a clean shutdown), SIGKILL after ``timeout``.

        ``kill=True`` sends SIGKILL at once, simulating a crash. Safe to call twice; the data dir
        and ports are kept for a later ``start()``.
        """
        if self._watchdog is not None:
            # Disarm first: closing its stdin would make it signal a pid being reaped here.
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
                log.warning("%s did not stop within %.0fs; killing it", self.name, timeout)
        proc.kill()
        proc.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"{type(self).__name__}({state}, port={self.port}, data_dir={self.data_dir})"


# --------------------------------------------------------------------------- CLI


class ServerCli(abc.ABC):
    """``fetch | start | stop | status`` for one server kind; ``start`` leaves it running detached,
    its pid in ``<data dir>/<pid_file>``, and ``stop``/``status`` find it there."""

    prog: ClassVar[str]
    description: ClassVar[str]
    name: ClassVar[str]  # in messages: "Kafka", "Schema Registry"
    server: ClassVar[type[BackgroundJvm]]
    fetch_help: ClassVar[str]
    data_dir: ClassVar[Path]  # --data-dir's default
    port: ClassVar[int]  # start --port's default
    pid_file: ClassVar[str]

    @abc.abstractmethod
    def fetch(self, *, quiet: bool) -> Path:
        """Download what the server needs; return where it is."""

    @abc.abstractmethod
    def launch(self, args: argparse.Namespace, data_dir: Path) -> BackgroundJvm:
        """Start the server detached (no watchdog) with ``start``'s arguments; return it ready."""

    @abc.abstractmethod
    def is_ours(self, pid: int, data_dir: Path) -> bool:
        """Whether process ``pid`` is this kind of server, run in ``data_dir``."""

    @abc.abstractmethod
    def address(self, data_dir: Path) -> str | None:
        """The address of the server run in ``data_dir``, from the files it left there."""

    @abc.abstractmethod
    def add_start_options(self, parser: argparse.ArgumentParser) -> None:
        """Add the options of ``start`` besides ``--data-dir``, ``--timeout`` and ``--port``."""

    def running_pid(self, data_dir: Path) -> int | None:
        """The pid in the pid file, if that process is still this server."""
        try:
            pid = int((data_dir / self.pid_file).read_text().strip())
            return pid if self.is_ours(pid, data_dir) else None
        except (OSError, ValueError):
            return None

    def _cmd_fetch(self, args: argparse.Namespace) -> int:
        print(self.fetch(quiet=not args.verbose))
        return 0

    def _cmd_start(self, args: argparse.Namespace) -> int:
        data_dir = Path(args.data_dir).resolve()
        pid = self.running_pid(data_dir)
        if pid is not None:
            print(self.address(data_dir) or "")
            print(f"{self.name} already running (pid {pid})", file=sys.stderr)
            return 0
        server = self.launch(args, data_dir)
        (data_dir / self.pid_file).write_text(f"{server.pid}\n")
        print(
            f"{server.name} {server.version} ready in {server.startup_seconds:.1f}s (pid {server.pid}); "
            f"logs: {server.server_log}",
            file=sys.stderr,
        )
        print(server.address)
        return 0

    def _cmd_stop(self, args: argparse.Namespace) -> int:
        data_dir = Path(args.data_dir).resolve()
        pid = self.running_pid(data_dir)
        (data_dir / self.pid_file).unlink(missing_ok=True)
        if pid is None:
            print(f"{self.name} is not running", file=sys.stderr)
            return 0
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            if not Path(f"/proc/{pid}").exists() or b"zombie" in _proc_state(pid):
                print(f"{self.name} stopped (pid {pid})", file=sys.stderr)
                return 0
            time.sleep(_POLL_S)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        print(f"{self.name} killed after {args.timeout:.0f}s (pid {pid})", file=sys.stderr)
        return 0

    def _cmd_status(self, args: argparse.Namespace) -> int:
        data_dir = Path(args.data_dir).resolve()
        pid = self.running_pid(data_dir)
        if pid is None:
            print(f"{self.name} is not running")
            return 1
        logs = data_dir / self.server.server_log_name
        print(f"{self.name} running (pid {pid}) on {self.address(data_dir)}; logs: {logs}")
        return 0

    def main(self, argv: list[str] | None = None) -> int:
        parser = argparse.ArgumentParser(prog=self.prog, description=self.description)
        sub = parser.add_subparsers(dest="command", required=True)
        p_fetch = sub.add_parser("fetch", help=self.fetch_help)
        p_fetch.add_argument("-v", "--verbose", action="store_true")
        p_fetch.set_defaults(func=self._cmd_fetch)
        noun = self.server.noun
        for name, func, helptext in (
            ("start", self._cmd_start, f"start a background {noun} and wait until it is ready"),
            ("stop", self._cmd_stop, f"stop the background {noun}"),
            ("status", self._cmd_status, f"exit 0 if the background {noun} runs, 1 if not"),
        ):
            p = sub.add_parser(name, help=helptext)
            p.add_argument("--data-dir", default=str(self.data_dir))
            p.add_argument("--timeout", type=float, default=90.0 if name == "start" else 30.0)
            p.set_defaults(func=func)
            if name == "start":
                p.add_argument("--port", type=int, default=self.port)
                self.add_start_options(p)
        args = parser.parse_args(argv)
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
        try:
            return int(args.func(args))
        except self.server.error as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1


def _proc_state(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/status").read_bytes().lower()
    except OSError:
        return b"zombie"
