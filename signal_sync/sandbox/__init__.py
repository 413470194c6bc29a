"""Strict sandbox emulators of the destination APIs (Mautic, Mailgun), served over real HTTP.

The worker's HTTP client is only tested for real if it talks HTTP to something that says
no the way the destinations do: wrong credentials, malformed bodies, duplicate members,
rate limits, dropped connections. These aiohttp apps enforce those rules, journal every
request and every applied upsert, inject faults on demand, and expose their state under
``/_sandbox/`` so tests can check per-contact order and final state.

    from signal_sync.sandbox import mautic, start_in_thread
    with start_in_thread(mautic.create_app(username="u", password="p")) as server:
        ...  # point the worker at server.url

See ``docs/sandbox.md`` for the control endpoints and the fault model.
"""

from __future__ import annotations

from signal_sync.sandbox import mailgun, mautic
from signal_sync.sandbox.faults import FAULTS_KEY, FaultInjector, Faults, RateLimit
from signal_sync.sandbox.journal import JOURNAL_KEY, Journal
from signal_sync.sandbox.server import RunningServer, serve, start_in_thread

__all__ = [
    "FAULTS_KEY",
    "JOURNAL_KEY",
    "FaultInjector",
    "Faults",
    "Journal",
    "RateLimit",
    "RunningServer",
    "mailgun",
    "mautic",
    "serve",
    "start_in_thread",
]
