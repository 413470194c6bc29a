"""``signal-sync test-connection``: one harmless authenticated call per integration.

Mautic: ``GET {base_url}/api/contacts?limit=1`` (lists one contact); Mailgun:
``GET {base_url}/v3/lists/{list_address}`` (reads the list). Nothing is written. Each
integration prints ``OK <id>`` or ``FAIL <id>: HTTP <status>: <what to do>``, using the
destination's troubleshooting hints for 401/403/404, so a wrong key, region, permission or
base URL is found before the worker runs; the exit status is 1 if any failed.

A Mautic integration with OAuth2 first gets an access token (``POST /oauth/v2/token``), as the
worker does. When Mautic refuses the authentication, the line names the method that failed
(``basic auth``, ``oauth2 token request`` or ``oauth2``) and the hint follows the error's type, not
only its status: API disabled, Basic auth disabled in Mautic's API settings, wrong user or
password, a wrong OAuth2 client or one not allowed the client-credentials grant, a Bearer header
that never reached Mautic.

A Mautic integration with ``segments`` then reads each configured segment
(``GET /api/segments/{id}``): a missing or unpublished segment, to which the worker could add no
contact, is one more ``FAIL <id>: segments.<event>: ...`` line with what to do.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from signal_sync.cli.options import ConfigOption
from signal_sync.config import MAILGUN_HOSTS, Settings, load_settings
from signal_sync.destinations import Integration, destination_of, mailgun, mautic
from signal_sync.destinations.base import Request, basic_auth
from signal_sync.destinations.classify import Verdict
from signal_sync.destinations.delivery import Attempt, Sender, error_text
from signal_sync.destinations.mautic_auth import api_hint, error_type, method_of, static_headers
from signal_sync.destinations.segment_check import check_segments

MAUTIC_PROBE_QUERY = "?limit=1"
MAILGUN_REGIONS = f"US https://{MAILGUN_HOSTS[0]} vs EU https://{MAILGUN_HOSTS[1]}"


def probe_request(integration: Integration) -> Request:
    """The read-only request that proves the base URL, credentials and (Mailgun) list are right."""
    if integration.type == "mautic":
        headers = {**static_headers(integration), "Accept": "application/json"}
        url = integration.base_url + mautic.CONTACT_LIST_PATH + MAUTIC_PROBE_QUERY
    else:
        headers = {"Authorization": basic_auth(*integration.credentials()), "Accept": "application/json"}
        url = integration.base_url + mailgun.list_path(integration.list_address)
    return Request(method="GET", url=url, headers=headers)


def report(integration: Integration, attempt: Attempt) -> str:
    """``OK <id>`` or ``FAIL <id>: ...`` for one probe."""
    verdict = attempt.classification.verdict
    if verdict is Verdict.DELIVERED:
        return f"OK {integration.id}"
    if attempt.status is None:
        where = f"is base_url {integration.base_url} right and reachable?"
        return f"FAIL {integration.id}: connection error: {attempt.error} ({where})"
    where, advice = "", None
    if verdict is Verdict.FAULT:
        where, advice = _auth_failure(integration, attempt)
        advice = advice or destination_of(integration).hints.get(attempt.status)
    if advice is None:
        detail = error_text(attempt.body) or "no details in the reply"
        if verdict is Verdict.RETRY:
            detail += " (temporary: try again later)"
        advice = detail
    if integration.type == "mailgun" and attempt.status == 401:
        advice += f" Region hosts: {MAILGUN_REGIONS}; this config uses {integration.base_url}."
    return f"FAIL {integration.id}: {where}HTTP {attempt.status}: {advice}"


def _auth_failure(integration: Integration, attempt: Attempt) -> tuple[str, str | None]:
    """For a Mautic authentication refusal: ``"<method>: "`` and the hint its error type calls for;
    ``("", None)`` for any other fault (the status's own hint applies)."""
    if integration.type != "mautic":
        return "", None
    method = method_of(integration)
    if attempt.token_request:
        return "oauth2 token request: ", attempt.hint
    hint = attempt.hint or api_hint(attempt.status, error_type(attempt.body), method)
    return (f"{'basic auth' if method == 'basic' else method}: ", hint) if hint else ("", None)


async def probe_one(sender: Sender, integration: Integration) -> list[str]:
    """The integration's line, then (when it answered) a line per configured segment at fault."""
    attempt = await sender.attempt(
        integration.id, probe_request(integration), tokens=sender.tokens_of(integration)
    )
    line = report(integration, attempt)
    if integration.type != "mautic" or not integration.segments or not line.startswith("OK"):
        return [line]
    problems = await check_segments(sender, integration)
    return [line, *(problem.line(integration.id) for problem in problems)]


async def probe_all(settings: Settings, integrations: list[Integration]) -> list[str]:
    """Probe every integration concurrently; lines come back in config order."""
    sender = Sender(settings.delivery)
    try:
        lines = await asyncio.gather(*(probe_one(sender, integration) for integration in integrations))
    finally:
        await sender.close()
    return [line for group in lines for line in group]


def register(app: typer.Typer) -> None:
    """Attach the subcommand to the CLI."""

    @app.command("test-connection")
    def test_connection(
        config: ConfigOption,
        integration: Annotated[
            list[str] | None,
            typer.Option("--integration", "-i", help="Only this integration id (repeatable)."),
        ] = None,
    ) -> None:
        """Make one harmless authenticated call per integration; exit 1 if any fails."""
        settings = load_settings(config)
        chosen = list(settings.integrations)
        if integration:
            known = {i.id for i in chosen}
            unknown = [name for name in integration if name not in known]
            if unknown:
                typer.echo(
                    f"--integration: no integration {unknown[0]!r} in {config}; "
                    f"configured: {', '.join(sorted(known))}",
                    err=True,
                )
                raise typer.Exit(2)
            chosen = [i for i in chosen if i.id in integration]
        lines = asyncio.run(probe_all(settings, chosen))
        for line in lines:
            typer.echo(line)
        if any(line.startswith("FAIL") for line in lines):
            raise typer.Exit(1)
