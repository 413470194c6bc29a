"""The sandbox emulators as the benchmark runs them: one process each, latency set per variant.

Each emulator runs in its own process so that its CPU is neither the worker's nor the
harness's (and its GIL is its own); the harness reads that CPU separately. Two things are
trimmed for long runs, neither changing what a client sees:

* the journal keeps only the last 1,000 requests and no per-contact applied log (over a
  1M-event run the applied log alone would hold millions of contact snapshots);
* a Mautic contact keeps its 20 latest ``utmtags`` (every UTM-carrying upsert appends one,
  so the hottest contact's replies would otherwise grow without bound).

    python bench/emulators.py mautic   # prints "listening <port>" once it accepts connections
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from signal_sync.sandbox import JOURNAL_KEY, mailgun, mautic

MAUTIC_USER, MAUTIC_PASSWORD = "signal", "sandbox-password"  # noqa: S105 (sandbox emulator credentials)
MAILGUN_KEY = "key-sandbox"
KEEP_REQUESTS = 1_000
KEEP_UTMTAGS = 20


def bench_app(kind: str) -> web.Application:
    """An emulator app with the long-run trims described above."""
    if kind == "mautic":
        app = mautic.create_app(username=MAUTIC_USER, password=MAUTIC_PASSWORD)
        store = app[mautic.MAUTIC_STORE]
        upsert = store.upsert

        def trimmed_upsert(payload: Any, header_ip: str | None) -> Any:
            result = upsert(payload, header_ip)
            contact = result[0]
            if len(contact.utmtags) > KEEP_UTMTAGS:
                del contact.utmtags[:-KEEP_UTMTAGS]
            return result

        store.upsert = trimmed_upsert  # type: ignore[method-assign]
    elif kind == "mailgun":
        app = mailgun.create_app(api_key=MAILGUN_KEY)
    else:
        raise ValueError(f"unknown emulator kind {kind!r}")
    journal = app[JOURNAL_KEY]
    journal._requests = deque(maxlen=KEEP_REQUESTS)  # noqa: SLF001 (bench-only trim)
    journal.record_applied = lambda *args, **kwargs: None  # type: ignore[method-assign]
    return app


async def _serve(kind: str, host: str) -> None:
    runner = web.AppRunner(bench_app(kind), handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, 0, backlog=1024)
    await site.start()
    port = runner.addresses[0][1]
    print(f"listening {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    parent = os.getppid()
    while not stop.is_set() and os.getppid() == parent:  # also stop if the harness died
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
    await runner.cleanup()


@dataclass
class Emulator:
    """A running emulator child process and how to steer it over its control endpoints."""

    kind: str
    proc: subprocess.Popen[bytes]
    url: str
    _requests_seen: int = field(default=0, repr=False)

    @classmethod
    def start(cls, kind: str, host: str = "127.0.0.1", timeout: float = 30.0) -> Emulator:
        proc = subprocess.Popen(
            [sys.executable, __file__, kind, "--host", host],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line.startswith(b"listening ") or proc.poll() is not None:
                break
        if not line.startswith(b"listening "):
            proc.kill()
            raise RuntimeError(f"{kind} emulator did not start (exit {proc.poll()})")
        port = int(line.split()[1])
        return cls(kind, proc, f"http://{host}:{port}")

    def _call(self, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 (loopback emulator)
            self.url + path, data=data, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as reply:  # noqa: S310
            return json.loads(reply.read())

    def reset(self, latency_ms: float) -> None:
        """Forget all state and set the injected latency (the only fault used by the benchmark)."""
        self._call("/_sandbox/reset", {})
        self._call("/_sandbox/faults", {"latency_ms": latency_ms})

    def api_requests(self) -> int:
        """API requests answered since the last ``reset`` (faults' request counter)."""
        return int(self._call("/_sandbox/faults")["stats"].get("requests", 0))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            with contextlib.suppress(OSError):
                self.proc.stdout.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=("mautic", "mailgun"))
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    asyncio.run(_serve(args.kind, args.host))


if __name__ == "__main__":
    main()
