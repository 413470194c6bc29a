"""``signal-sync emulator mautic|mailgun``: run a sandbox destination in the foreground.

For the demo and manual testing: point a worker's ``base_url`` at the printed URL. The
emulators are the same apps the integration tests start (``signal_sync.sandbox``), so a
behaviour seen here is the behaviour the tests pin. Secrets can come from the
environment (``MAUTIC_PASSWORD``, ``MAUTIC_CLIENT_SECRET``, ``MAILGUN_API_KEY``) so they stay out
of shell history.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
import typer
from pydantic import ValidationError

from signal_sync.sandbox import mailgun, mautic, serve
from signal_sync.sandbox.faults import Faults
from signal_sync.sandbox.mautic_oauth import DEFAULT_ACCESS_TOKEN_LIFETIME_S, OAuthClient

HostOpt = Annotated[str, typer.Option("--host", help="Address to bind; keep loopback unless you mean it.")]
LatencyOpt = Annotated[float, typer.Option("--latency-ms", min=0, help="Delay added to every API answer.")]
JitterOpt = Annotated[float, typer.Option("--jitter-ms", min=0, help="Extra random delay, 0..jitter.")]
ErrorRateOpt = Annotated[
    float, typer.Option("--error-rate", min=0, max=1, help="Fraction of API requests answered with an error.")
]
ErrorStatusOpt = Annotated[int, typer.Option("--error-status", help="Status for --error-rate answers (5xx).")]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="RNG seed, for a reproducible fault sequence.")]
FaultsOpt = Annotated[
    str | None,
    typer.Option("--faults", help='Full fault config as JSON, e.g. \'{"rate_limit": {"burst": 3}}\'.'),
]


def build_faults(
    faults_json: str | None,
    latency_ms: float,
    jitter_ms: float,
    error_rate: float,
    error_status: int,
    seed: int | None,
) -> Faults:
    """Merge ``--faults`` JSON with the single-purpose flags (a flag wins when not at its default)."""
    data: dict[str, Any] = orjson.loads(faults_json) if faults_json else {}
    if not isinstance(data, dict):
        raise typer.BadParameter("--faults must be a JSON object")
    flags = {"latency_ms": latency_ms, "jitter_ms": jitter_ms, "error_rate": error_rate}
    data.update({k: v for k, v in flags.items() if v})
    if error_status != 503:
        data["error_status"] = error_status
    if seed is not None:
        data["seed"] = seed
    return Faults.model_validate(data)


def _faults_or_exit(*args: Any) -> Faults:
    try:
        return build_faults(*args)
    except (ValidationError, orjson.JSONDecodeError) as exc:
        typer.echo(f"{type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(2) from None


def oauth_clients(client_id: str | None, client_secret: str | None) -> list[OAuthClient]:
    """The OAuth2 client of ``--oauth-client-id`` / ``--oauth-client-secret``: both or neither."""
    if client_id is None and client_secret is None:
        return []
    if client_id is None or client_secret is None:
        raise typer.BadParameter(
            "give --oauth-client-id and --oauth-client-secret (or MAUTIC_CLIENT_SECRET) together"
        )
    try:
        return [OAuthClient(client_id, client_secret)]
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def register(app: typer.Typer) -> None:
    """Attach ``emulator mautic`` and ``emulator mailgun`` to the CLI."""
    emulator = typer.Typer(help="Run a sandbox emulator of a destination API.", no_args_is_help=True)

    @emulator.command("mautic")
    def mautic_command(
        password: Annotated[
            str, typer.Option("--password", envvar="MAUTIC_PASSWORD", help="API user's password.")
        ],
        user: Annotated[str, typer.Option("--user", help="API user name.")] = "signal",
        host: HostOpt = "127.0.0.1",
        port: Annotated[int, typer.Option("--port", min=0, max=65535)] = 8081,
        api_disabled: Annotated[
            bool, typer.Option("--api-disabled", help="Answer 403 'API disabled'.")
        ] = False,
        basic_auth_disabled: Annotated[
            bool, typer.Option("--basic-auth-disabled", help="Answer 403: HTTP basic auth off.")
        ] = False,
        no_edit: Annotated[
            bool, typer.Option("--no-edit-permission", help="The user may not edit contacts (403).")
        ] = False,
        custom_field: Annotated[
            list[str] | None,
            typer.Option("--custom-field", help="Custom field alias that exists (repeatable)."),
        ] = None,
        oauth_client_id: Annotated[
            str | None,
            typer.Option(
                "--oauth-client-id",
                help="Public id ('<n>_<random>') of an OAuth2 API credential, for client credentials.",
            ),
        ] = None,
        oauth_client_secret: Annotated[
            str | None,
            typer.Option(
                "--oauth-client-secret", envvar="MAUTIC_CLIENT_SECRET", help="That credential's secret."
            ),
        ] = None,
        access_token_lifetime_s: Annotated[
            int,
            typer.Option("--access-token-lifetime-s", min=1, help="Lifetime of issued access tokens."),
        ] = DEFAULT_ACCESS_TOKEN_LIFETIME_S,
        segment: Annotated[
            list[str] | None,
            typer.Option(
                "--segment", help="Name of a published segment that exists (repeatable; ids from 1)."
            ),
        ] = None,
        latency_ms: LatencyOpt = 0.0,
        jitter_ms: JitterOpt = 0.0,
        error_rate: ErrorRateOpt = 0.0,
        error_status: ErrorStatusOpt = 503,
        seed: SeedOpt = None,
        faults: FaultsOpt = None,
    ) -> None:
        """Emulate Mautic's contact, segment and OAuth2 token API (docs/sandbox.md)."""
        fault_config = _faults_or_exit(faults, latency_ms, jitter_ms, error_rate, error_status, seed)
        clients = oauth_clients(oauth_client_id, oauth_client_secret)
        app_ = mautic.create_app(
            username=user,
            password=password,
            api_enabled=not api_disabled,
            basic_auth_enabled=not basic_auth_disabled,
            can_edit_contacts=not no_edit,
            custom_fields=custom_field if custom_field else mautic.DEFAULT_CUSTOM_FIELDS,
            faults=fault_config,
            oauth_clients=clients,
            access_token_lifetime_s=access_token_lifetime_s,
            segments=segment or (),
        )
        serve(app_, host=host, port=port, announce=typer.echo)

    @emulator.command("mailgun")
    def mailgun_command(
        api_key: Annotated[
            str, typer.Option("--api-key", envvar="MAILGUN_API_KEY", help="Private API key (Basic password).")
        ],
        mailing_list: Annotated[
            list[str] | None,
            typer.Option("--list", help="Address of an existing mailing list (repeatable)."),
        ] = None,
        host: HostOpt = "127.0.0.1",
        port: Annotated[int, typer.Option("--port", min=0, max=65535)] = 8082,
        latency_ms: LatencyOpt = 0.0,
        jitter_ms: JitterOpt = 0.0,
        error_rate: ErrorRateOpt = 0.0,
        error_status: ErrorStatusOpt = 503,
        seed: SeedOpt = None,
        faults: FaultsOpt = None,
    ) -> None:
        """Emulate Mailgun's mailing-list member API (/v3/lists/...)."""
        fault_config = _faults_or_exit(faults, latency_ms, jitter_ms, error_rate, error_status, seed)
        app_ = mailgun.create_app(
            api_key=api_key,
            lists=mailing_list if mailing_list else mailgun.DEFAULT_LISTS,
            faults=fault_config,
        )
        serve(app_, host=host, port=port, announce=typer.echo)

    app.add_typer(emulator, name="emulator")
