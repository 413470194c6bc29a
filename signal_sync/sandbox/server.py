"""Running an emulator app: in a background thread (tests, demo) or in the foreground (CLI).

Tests and the demo need a real socket the worker's HTTP client can reach while their own
code keeps running, whatever event loop (or none) they use; so ``start_in_thread`` gives
the app its own loop in a daemon thread and returns only once the socket listens, which
makes "server not up yet" flakiness impossible. ``serve`` blocks and stops cleanly on
SIGINT/SIGTERM, which is what a container or a terminal needs.

A started server can also go away and come back like a destination in a maintenance window:
``take_down`` stops listening (new connections are refused) and closes the open ones once
their request in progress is answered; ``bring_up`` listens again on the same address. The
app, and so the emulator's state, journal and faults, stay as they were.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from signal_sync.sandbox.journal import KIND_KEY

SHUTDOWN_TIMEOUT_S = 2.0
"""How long in-flight requests get on stop; hung requests are released before that."""
START_TIMEOUT_S = 10.0
REBIND_TIMEOUT_S = 10.0
"""How long ``bring_up`` keeps trying to listen again while the port is still taken."""


@dataclass
class RunningServer:
    """A started emulator: where to reach it, and how to stop it (idempotent)."""

    url: str
    port: int
    host: str
    app: web.Application
    _loop: asyncio.AbstractEventLoop = field(repr=False)
    _thread: threading.Thread = field(repr=False)
    _runner: web.AppRunner = field(repr=False)
    _stopped: bool = field(default=False, repr=False)

    @property
    def listening(self) -> bool:
        """True unless the listener was taken down (or the server stopped)."""
        return not self._stopped and bool(self._runner.sites)

    def take_down(self, grace_s: float = SHUTDOWN_TIMEOUT_S, timeout: float = 10.0) -> None:
        """Stop accepting connections (from then on clients get "connection refused") and close the open
        ones: a request in progress is answered first, for at most ``grace_s``."""
        self._call(self._take_down(grace_s), timeout)

    def bring_up(self, timeout: float = REBIND_TIMEOUT_S + 5.0) -> None:
        """Listen again on the same host and port, with the same app and state."""
        self._call(self._bring_up(), timeout)

    async def _take_down(self, grace_s: float) -> None:
        for site in list(self._runner.sites):
            await site.stop()
        server = self._runner.server
        if server is not None:
            server.pre_shutdown()  # idle keep-alive connections close at once, busy ones after their answer
            await server.shutdown(grace_s)

    async def _bring_up(self) -> None:
        if self._runner.sites:
            return
        deadline = time.monotonic() + REBIND_TIMEOUT_S
        while True:
            site = web.TCPSite(self._runner, self.host, self.port)
            try:
                await site.start()
                return
            except OSError:  # the old socket's port is not free yet
                if site in self._runner.sites:
                    await site.stop()
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)

    def _call(self, coroutine: Any, timeout: float) -> None:
        if self._stopped:
            coroutine.close()
            raise RuntimeError("the server is stopped")
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Close the socket, finish or release in-flight requests, end the thread."""
        if self._stopped:
            return
        self._stopped = True
        future = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
        try:
            future.result(timeout)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_in_thread(app: web.Application, host: str = "127.0.0.1", port: int = 0) -> RunningServer:
    """Serve ``app`` from a daemon thread; returns once it accepts connections.

    ``port=0`` picks a free port; read it from the result. Startup errors (port in use)
    are raised here, in the caller's thread.
    """
    ready = threading.Event()
    box: dict[str, Any] = {}

    def run() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
        try:
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, host, port).start())
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc
            loop.run_until_complete(runner.cleanup())
            loop.close()
            ready.set()
            return
        box.update(loop=loop, runner=runner, port=runner.addresses[0][1])
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    thread = threading.Thread(target=run, name=f"sandbox-{app.get(KIND_KEY, 'app')}", daemon=True)
    thread.start()
    if not ready.wait(START_TIMEOUT_S):
        raise RuntimeError(f"sandbox server did not start within {START_TIMEOUT_S}s")
    if "error" in box:
        raise box["error"]
    bound = box["port"]
    url_host = f"[{host}]" if ":" in host else host
    return RunningServer(
        url=f"http://{url_host}:{bound}",
        port=bound,
        host=host,
        app=app,
        _loop=box["loop"],
        _thread=thread,
        _runner=box["runner"],
    )


def serve(
    app: web.Application, host: str = "127.0.0.1", port: int = 8080, announce: Callable[[str], None] = print
) -> None:
    """Serve in the foreground until SIGINT/SIGTERM, then shut down cleanly."""
    kind = app.get(KIND_KEY, "sandbox")
    url_host = f"[{host}]" if ":" in host else host

    def on_listening(_message: str) -> None:
        announce(f"{kind} sandbox listening on http://{url_host}:{port} (Ctrl+C to stop)")

    web.run_app(
        app,
        host=host,
        port=port,
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
        handle_signals=True,
        print=on_listening,
    )
