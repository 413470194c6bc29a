"""A loopback HTTP server whose every answer the test decides: status, headers, JSON body, or a
dropped connection. It runs on the test's own event loop, so a test can order requests with
asyncio events instead of sleeps, and it records every request it received."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web


@dataclass(frozen=True)
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass(frozen=True)
class Answer:
    """What to reply: a status with an optional JSON body and headers, or ``reset`` (close the
    connection without a status line)."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    reset: bool = False


Script = Callable[[Seen], Answer | Awaitable[Answer]]


class ScriptedServer:
    """``async with ScriptedServer(script) as server:`` — ``server.url``, ``server.seen``."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.seen: list[Seen] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        seen = Seen(request.method, request.path, dict(request.headers), await request.read())
        self.seen.append(seen)
        answer = self.script(seen)
        if inspect.isawaitable(answer):
            answer = await answer
        if answer.reset:
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=499)
        body = b"" if answer.body is None else orjson.dumps(answer.body)
        return web.Response(
            status=answer.status, body=body, headers=answer.headers, content_type="application/json"
        )

    def paths(self, prefix: str = "") -> list[str]:
        """Paths of the requests received so far, optionally only those starting with ``prefix``."""
        return [seen.path for seen in self.seen if seen.path.startswith(prefix)]

    async def __aenter__(self) -> ScriptedServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
