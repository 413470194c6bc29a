"""Talking to the sandbox emulators in tests: their faults, their answers, their CLI start-up."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.request
from typing import Any

import aiohttp


def set_faults(url: str, faults: dict[str, Any]) -> None:
    """Replace the faults of the emulator at ``url`` (``{}``: none)."""
    request = urllib.request.Request(
        f"{url}/_sandbox/faults",
        data=json.dumps(faults).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as reply:  # loopback emulator
        assert reply.status == 200


async def read_body(resp: aiohttp.ClientResponse) -> Any:
    """The answer's JSON, or its text when it is not JSON (Mailgun's ``Forbidden``, HTML 404s)."""
    if resp.content_type == "application/json":
        return await resp.json()
    return await resp.text()


async def request(
    http: aiohttp.ClientSession, method: str, url: str, headers: dict[str, str] | None, **kwargs: Any
) -> tuple[int, Any, aiohttp.ClientResponse]:
    """One call: the status, the body (``read_body``) and the response (for its headers)."""
    async with http.request(method, url, headers=headers, **kwargs) as resp:
        return resp.status, await read_body(resp), resp


async def get(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """GET ``url``: the status and the body (``read_body``)."""
    status, body, _ = await request(http, "GET", url, headers)
    return status, body


async def wait_until_serving(
    http: aiohttp.ClientSession, url: str, proc: subprocess.Popen[bytes], timeout_s: float = 15
) -> None:
    """Poll the emulator that ``proc`` starts until ``url`` answers its health call; fails when the
    process exits or the deadline passes first."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            await get(http, url + "/_sandbox/health")
            return
        except aiohttp.ClientConnectionError:
            assert time.monotonic() < deadline, "emulator did not start"
            assert proc.poll() is None, proc.communicate()
            await asyncio.sleep(0.05)
