"""Structured logs: one JSON object per line, for every logger in the process (Faust's too).

``worker.log_format: json`` (the default) writes ``{"time", "level", "logger", "message", ...}``
with any ``extra={...}`` fields (``integration``, ``message_id``, ``http_status``, ...) after them
and ``exception`` for tracebacks; ``text`` writes the same information for people. Both formats
redact before writing:

* every configured secret (Mautic passwords, Mailgun keys, the Kafka SASL password, OAUTHBEARER
  client secret and key password, secret-looking ``kafka.client_config`` values) and the
  Basic-auth tokens made from them, plus anything else that looks like a ``Basic`` credential
  (base64 of ``user:password``) or a ``Bearer`` token;
* email addresses, unless ``outcomes.include_email`` is on.

``configure`` installs the formatter on the root logger at once (so start-up messages are
covered) and returns the ``logging.config.dictConfig`` that the Faust worker re-applies when
it takes over logging.
"""

from __future__ import annotations

import base64
import binascii
import logging
import logging.config
import re
import sys
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from signal_sync.config import Settings
from signal_sync.destinations.base import basic_auth
from signal_sync.destinations.delivery import redact_emails
from signal_sync.streams.client_properties import is_secret_key

if TYPE_CHECKING:
    from signal_sync.runtime import Runtime

REDACTED = "<redacted>"
_AUTH_TOKEN = re.compile(r"\b(Basic|Bearer)\s+([A-Za-z0-9+/=._~-]{6,})")
BEARER_MIN_LENGTH = 16
MIN_SECRET_LENGTH = 4
"""Shorter "secrets" would redact ordinary words; config validation never allows empty ones."""

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "extra",  # mode's formatters store their rendering of ``data`` here
}

log = logging.getLogger(__name__)


class Redactor:
    """Removes secrets (and, unless allowed, email addresses) from any text."""

    def __init__(self, secrets: Iterable[str] = (), include_email: bool = False) -> None:
        # Longest first, so a secret that contains another is replaced whole.
        self.secrets = sorted({s for s in secrets if len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True)
        self.include_email = include_email

    def text(self, value: str) -> str:
        for secret in self.secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        value = _AUTH_TOKEN.sub(_redact_credential, value)
        return value if self.include_email else redact_emails(value)

    def value(self, value: Any) -> Any:
        """Redact strings inside extra fields, however nested."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {str(k): self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self.value(v) for v in value]
        if value is None or isinstance(value, bool | int | float):
            return value
        return self.text(str(value))


def is_credential(scheme: str, token: str) -> bool:
    """Tell ``Basic dXNlcjpwdw==`` from prose such as "Basic Authentication is not enabled"."""
    if scheme == "Bearer":
        return len(token) >= BEARER_MIN_LENGTH and not token.isalpha()
    try:
        decoded = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
    except (binascii.Error, ValueError):
        return False
    return b":" in decoded


def _redact_credential(match: re.Match[str]) -> str:
    scheme, token = match.group(1), match.group(2)
    return f"{scheme} {REDACTED}" if is_credential(scheme, token) else match.group(0)


def secrets_of(settings: Settings) -> list[str]:
    """Every secret in the config (an OAuth2 client secret too), and the Basic-auth header tokens
    built from them. Access tokens are never in a log line to begin with; a ``Bearer`` header value
    is redacted by its form."""
    found: list[str] = []
    for integration in settings.integrations:
        oauth2 = integration.oauth2 if integration.type == "mautic" else None
        if oauth2 is not None:
            assert oauth2.client_secret is not None
            found.append(oauth2.client_secret.get_secret_value())
            continue
        user, password = integration.credentials()
        found.append(password)
        found.append(basic_auth(user, password).removeprefix("Basic "))
    kafka = settings.kafka
    for secret in (kafka.sasl_password, kafka.sasl_oauthbearer_client_secret, kafka.ssl_key_password):
        if secret is not None:
            found.append(secret.get_secret_value())
    found.extend(str(v) for k, v in kafka.client_config.items() if is_secret_key(k))
    if settings.debugger.token is not None:
        found.append(settings.debugger.token.get_secret_value())
    return found


def redactor_for(settings: Settings) -> Redactor:
    """The redaction the logs use, for any other text the worker shows (``/ready``, ``/health``)."""
    return Redactor(secrets_of(settings), include_email=settings.outcomes.include_email)


def message_of(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:  # bad %-args must not lose the line
        return f"{record.msg} {record.args!r}"


def extras_of(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _RECORD_ATTRIBUTES and not k.startswith("_")}


def iso_time(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redactor = redactor or Redactor()

    def format(self, record: logging.LogRecord) -> str:
        redact = self.redactor
        entry: dict[str, Any] = {
            "time": iso_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": redact.text(message_of(record)),
        }
        for key, value in extras_of(record).items():
            if key not in entry:
                entry[key] = redact.value(value)
        if record.exc_info:
            entry["exception"] = redact.text(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exception"] = redact.text(record.exc_text)
        if record.stack_info:
            entry["stack"] = redact.text(self.formatStack(record.stack_info))
        return orjson.dumps(entry, default=str).decode("utf-8")


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message key=value ...`` for people, redacted the same way."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redactor = redactor or Redactor()

    def format(self, record: logging.LogRecord) -> str:
        redact = self.redactor
        line = f"{iso_time(record.created)} {record.levelname} {record.name}: {message_of(record)}"
        fields = " ".join(f"{k}={v!r}" for k, v in extras_of(record).items())
        if fields:
            line = f"{line} {fields}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        if record.stack_info:
            line = f"{line}\n{self.formatStack(record.stack_info)}"
        return redact.text(line)


def build_formatter(settings: Settings) -> logging.Formatter:
    redactor = redactor_for(settings)
    if settings.worker.log_format == "text":
        return TextFormatter(redactor)
    return JsonFormatter(redactor)


def logging_config(settings: Settings) -> dict[str, Any]:
    """The ``dictConfig`` for the whole process: one stdout handler with our formatter on root."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"signal_sync": {"()": lambda: build_formatter(settings)}},
        "handlers": {
            "stdout": {"class": "logging.StreamHandler", "formatter": "signal_sync", "stream": sys.stdout}
        },
        "root": {"level": settings.worker.log_level.upper(), "handlers": ["stdout"]},
        # One access line per probe and scrape would drown everything else.
        "loggers": {"aiohttp.access": {"level": "WARNING"}},
    }


def configure(settings: Settings) -> dict[str, Any]:
    """Install the formatter now, route warnings and uncaught exceptions through it, and return
    the config for the Faust worker to re-apply (it resets logging when it starts)."""
    logging.config.dictConfig(logging_config(settings))
    logging.captureWarnings(True)

    def log_uncaught(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, value, tb)
            return
        logging.getLogger("signal_sync").critical("uncaught exception", exc_info=(kind, value, tb))

    def log_thread_exception(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit or args.exc_value is None:
            return
        logging.getLogger("signal_sync").critical(
            "uncaught exception in thread %s",
            args.thread.name if args.thread else "?",
            exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
        )

    sys.excepthook = log_uncaught
    threading.excepthook = log_thread_exception
    return logging_config(settings)


def install(runtime: Runtime) -> None:
    """Log every outcome at DEBUG with its fields (integration, message_id, status, reason, ...)."""
    outcome_log = logging.getLogger("signal_sync.outcomes")

    def log_outcome(outcome: dict[str, Any], _request: object) -> None:
        if outcome_log.isEnabledFor(logging.DEBUG):
            fields = {
                k: outcome.get(k)
                for k in (
                    "integration",
                    "message_id",
                    "delivery_id",
                    "contact_id",
                    "event",
                    "status",
                    "reason",
                    "http_status",
                    "attempts",
                )
            }
            outcome_log.debug("outcome %s", outcome.get("status"), extra=fields)

    runtime.observers.append(log_outcome)
